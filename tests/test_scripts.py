"""The Lua scripts' texts and their loader. Every script the package defines is pinned by its
SHA1, so a move of the sources (Python strings to ``.lua`` files, a new include, a renamed
constant) that changes a single byte fails here, and a change of a script's behaviour is a
deliberate edit of this table."""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import agentmem
from agentmem.config import MAX_EXACT
from agentmem.scripts import APPEND, CONSTANTS, WRITE_CONTEXT, LuaSourceError, Script, load

#: Per script name: the SHA1 of its text without the ``#!lua`` line (Redis 6.2) and with it.
#: A script whose text changes on purpose gets its new SHAs here (and a word in the commit on why);
#: a new script gets a row.
PINNED_SHAS: dict[str, tuple[str, str]] = {
    "adk_app_state": (
        "bf3835a0007ed643d7285e3926501c6dd6b60931",
        "11a629e3f50dad80e761540e7d2dc388a12d4e23",
    ),
    "adk_append": (
        "0df4d3caef2b92ec26304e7d2cf73560eb904e69",
        "28cdd4f3bc0cca5bf02db1e2f5a6fbba4b9f04e6",
    ),
    "adk_create": (
        "5aab15a90933200fcb6fa42afec42fedb8ebcc09",
        "c44507e8506d6b25798417a99cd3960bbef9323f",
    ),
    "adk_delete": (
        "db2a023d38220e1d63bea9a94299bc8547f7be95",
        "a75405a65474cb4d8967496ac1759e7c94680e34",
    ),
    "adk_prune": (
        "8127ff7dfefb75dfd6cb66c737bd28d389bd7cb9",
        "ff0c32f496ca3fda63509abf9de0a7432a73801b",
    ),
    "adk_read": (
        "78fc3b59238be8b03349f8a8cb668fbf7c6872d5",
        "4eb661029391bec355bebe0ee0ad316449c76b8e",
    ),
    "append": (
        "413d76374a7b5f30891054f31dbf4825b5d50171",
        "b0ebb0436c19a8cced9587b88922c74c3854bc6c",
    ),
    "append_fresh": (
        "38d9089e048fe276555883c5c2cfd03a33c123f3",
        "b2a6278f290201fda7afb5f5322711502396f74f",
    ),
    "delete": (
        "82632103140fc9526f777af20504f0751dfba6e2",
        "7319df7da0fb0f3c32566d8090697a9696eb87a6",
    ),
    "langgraph_add_run": (
        "e7af748b7d75f79c006455a98ddef8ae7249d782",
        "975e9ffe1892d0379e9112031032579a5ee2dc1c",
    ),
    "langgraph_copy_into": (
        "d31f16bff562d34b19ea8b7205234cedf539c78d",
        "8c3f5ba46f1ad4523124112e0acc2ec55ac429af",
    ),
    "langgraph_delete_runs": (
        "a7223314ccd6aa49c113ef94075048947a0cfcf6",
        "c49bcf96f0e4026797138023838be0fb8a3564ce",
    ),
    "langgraph_delete_thread": (
        "1fd68224c5bf082eee3a6c1906578e491634085b",
        "07b7def645e362260cff80b7b49027e0646bbb71",
    ),
    "langgraph_list": (
        "57a31ab817d41f0eb135473275a1add6afc6124e",
        "2fdafd844ff3d64227bc0c706638a74264b60159",
    ),
    "langgraph_prune": (
        "1dd784f52c2297417889e9d70bf835fc032adb11",
        "e25d4aa652a5106006dabdc874e6a789f0008ca4",
    ),
    "langgraph_put": (
        "72e01d8164c5117cb1355fbb196c152b05f22679",
        "c64333590eb1dab94fcffbee67238648c570f890",
    ),
    "langgraph_put_writes": (
        "a37978c72eec5e4cc33f457b92e8cdbb28900b93",
        "54893bf949e657e3ca7f8c07297a02395f93c05e",
    ),
    "langgraph_read": (
        "984e8485686c02cbde5887d7a6e9e9469ff4714e",
        "de75493221f3fd598b77c53dcd132ee8b4180196",
    ),
    "langgraph_read_thread": (
        "83a9239574502826d06d9310d6525a0d2ef05d0d",
        "24adcb3cf3c132610e2d0e3769c9c9ec1efcdec0",
    ),
    "langgraph_store_delete": (
        "6cdc4d68227d8366a8889ec3a999e08e1f561ddf",
        "de1a9ec7264f37f5837dba461b7eb6a11226d6de",
    ),
    "langgraph_store_fetch": (
        "bf75e90ecb69a3a76929bc2225d44ed90eaf5f20",
        "b5f9fca7005abd47d73ce77025fec8287e7d0ac7",
    ),
    "langgraph_store_members": (
        "832db726a8f25fa06c5ba05c40f7a7d5588a95ff",
        "27752b650b8e9e326a29453a089127c459414f41",
    ),
    "langgraph_store_put": (
        "3e7910e47f89b4f7ed09819b73023ba10fa1525d",
        "7699502a6d52882a0b4381a139161c15fdd15e83",
    ),
    "langgraph_store_touch": (
        "c37ba77a7ef4c200024d059525ec07b6c542f82b",
        "969afc5d5f5fbda208eae9c5fadda0e6e292cda5",
    ),
    "memory_add": (
        "24e58bfabe480bfb7bb0e27071858ca825493068",
        "29b6b7eb89a4c22ec6a8bfe2c49a3bf2e41a731d",
    ),
    "openai_agents_pop": (
        "9189f656b34e20f2afdf8e6e0e1a745374436c15",
        "f2c9e5afe99b80562b6a2ebbc4ad3bc4e04976c2",
    ),
    "read_hash": (
        "55ffb9fa10d6807869de1cce8ee87b9f2e1c34dc",
        "c54dc6aa3b91544a8748fedd5d5d8f4f27afb686",
    ),
    "read_session": (
        "ecd8b346d42bb284a2cf00fa73bc817f7a813c94",
        "d88d4fe7d6e16399c7cc40bc06b10b01698b1cec",
    ),
    "replay_append": (
        "b82cc4f0eec0af44fa6b4e3add87f4c48a1b5b74",
        "0d23e3961ae3ae28a890b726ace8c4106eefc856",
    ),
    "write_context": (
        "b1e50ab5aacccf9634a87ed57d09fc84244d3250",
        "45fda8fa5fbea6eec2b37bdccb02bc8d7ec2b4b8",
    ),
    "write_facts": (
        "bf0c1c271309a6545c297ece01c9c925ab3b2cfb",
        "534c078dce50236b8d3dbb27bd46b83947be0d97",
    ),
}


def _defines_scripts(path: Path) -> bool:
    """Whether the module at ``path`` constructs a ``Script`` (found from its source, so a module
    whose framework is not installed, such as Google ADK on Python 3.10, is still found)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Script"
        for node in ast.walk(tree)
    )


def _package_scripts() -> dict[str, Script]:
    root = Path(agentmem.__file__).parent
    found: dict[str, Script] = {}
    for path in sorted(root.rglob("*.py")):
        if not _defines_scripts(path):
            continue
        parts = path.relative_to(root.parent).with_suffix("").parts
        module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        for value in vars(module).values():
            if isinstance(value, Script):
                assert found.setdefault(value.name, value) is value, f"two scripts named {value.name}"
    return found


def test_every_script_text_is_pinned_by_its_sha() -> None:
    """Each script in the package has exactly the text (with and without its ``#!lua`` line) it had
    when its SHA was pinned, and no script is left unpinned."""
    scripts = _package_scripts()
    assert scripts, "no Script found in the package"
    actual = {name: (script.sha(False), script.sha(True)) for name, script in scripts.items()}
    assert actual == PINNED_SHAS


@pytest.fixture
def lua_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], str]:
    """Makes an importable package whose ``lua/`` directory holds the given files; returns its name."""
    made = 0

    def make(sources: dict[str, str]) -> str:
        nonlocal made
        made += 1
        name = f"agentmem_lua_test_{made}"
        package = tmp_path / name
        for relative, text in sources.items():
            path = package / "lua" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        (package / "__init__.py").write_text("", encoding="utf-8")
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    return make


def test_load_resolves_includes_and_constants_and_leaves_out_comment_lines(
    lua_package: Callable[[dict[str, str]], str],
) -> None:
    """An include is looked up in the script's own ``lua/`` first, then in agentmem's (its
    ``lib/int_text``), a part included twice lands once, ``@NAME@`` becomes the constant and
    ``---`` lines are left out."""
    package = lua_package(
        {
            "main.lua": '--- what main takes\n\n--- @include "lib/own"\n--- @include "lib/own"\n'
            '--- @include "lib/int_text"\nreturn @LIMIT@ + own()\n',
            "lib/own.lua": "local function own()\n  --- a comment for the reader only\n  return 1\nend\n",
        }
    )
    text = load("main", package=package, constants={"LIMIT": 7, "MAX_EXACT": 9})
    int_text = load("lib/int_text", constants={"MAX_EXACT": 9})
    assert text == "\nlocal function own()\n  return 1\nend\n" + int_text + "return 7 + own()\n"
    assert int_text.startswith("local MAX_EXACT = 9\n")


def test_load_refuses_an_unreplaced_constant(lua_package: Callable[[dict[str, str]], str]) -> None:
    """An ``@NAME@`` that names no constant raises at load, naming the file and line, instead of
    reaching the server as Lua that fails (or, worse, runs) with the token in it."""
    package = lua_package({"main.lua": "local a = @MAX_EXACT@\nlocal b = @MAX_EXCAT@\nreturn a\n"})
    with pytest.raises(LuaSourceError, match=r"main\.lua:2: @MAX_EXCAT@ is not a constant"):
        load("main", package=package)


def test_load_refuses_a_missing_include(lua_package: Callable[[dict[str, str]], str]) -> None:
    """An include found neither beside the script nor in agentmem's ``lua/`` raises, naming it and
    the file that asked for it."""
    package = lua_package({"main.lua": '--- @include "lib/missing"\nreturn 1\n'})
    with pytest.raises(LuaSourceError, match=r"lib/missing\.lua \(included by main\.lua\) is not in"):
        load("main", package=package)


def test_load_refuses_an_unknown_directive_and_a_circular_include(
    lua_package: Callable[[dict[str, str]], str],
) -> None:
    """A misspelt ``--- @include`` is an error, not a silently dropped comment; includes that
    include each other are an error, not a recursion."""
    package = lua_package(
        {
            "typo.lua": '--- @inlcude "lib/a"\nreturn 1\n',
            "loop.lua": '--- @include "lib/a"\nreturn 1\n',
            "lib/a.lua": '--- @include "lib/b"\n',
            "lib/b.lua": '--- @include "lib/a"\n',
        }
    )
    with pytest.raises(LuaSourceError, match=r"typo\.lua:1: unknown directive @inlcude"):
        load("typo", package=package)
    with pytest.raises(LuaSourceError, match=r"circular include: loop -> lib/a -> lib/b -> lib/a"):
        load("loop", package=package)


def test_constants_reach_the_scripts() -> None:
    """The Python side's limits are the ones the scripts check: each constant's value is in the
    text of a script that uses it."""
    assert f"local MAX_EXACT = {MAX_EXACT}\n" in WRITE_CONTEXT.body
    assert f"if r >= records - ({CONSTANTS['APPEND_LOG_IDS']} - 1) or" in APPEND.body
    assert f"if #id ~= {CONSTANTS['OPERATION_ID_BYTES']} then" in APPEND.body
