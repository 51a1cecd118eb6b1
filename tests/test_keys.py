"""The key schema, on its own: no server needed to prove ids cannot collide or escape."""

from __future__ import annotations

import re

import pytest

from agentmem import InvalidKeyError
from agentmem.keys import KeySchema, ParsedKey, escape_glob

NASTY_IDS = [
    "plain",
    "a:b",
    "a*",
    "a?",
    "[a]",
    "{a}",
    "}{",
    "a b",
    "李伟",
    "%41",  # must not collide with "A"
    "A",
    "x" * 512,
    "\\",
    "emoji 🙂",
]


def _hash_tag(key: str) -> str:
    start = key.index("{")
    return key[start + 1 : key.index("}", start + 1)]


def test_distinct_ids_give_distinct_keys() -> None:
    """Percent-encoding is injective: no two ids share a key."""
    schema = KeySchema("p")
    contexts = {schema.session(i).context for i in NASTY_IDS}
    profiles = {schema.profile(i) for i in NASTY_IDS}
    assert len(contexts) == len(NASTY_IDS)
    assert len(profiles) == len(NASTY_IDS)
    assert not contexts & profiles


@pytest.mark.parametrize("session_id", NASTY_IDS)
def test_keys_hold_no_special_characters(session_id: str) -> None:
    """Encoded ids hold no glob, brace, colon, space or non-ASCII characters."""
    keys = KeySchema("app").session(session_id)
    for key in keys.all():
        encoded = _hash_tag(key)[2:]
        assert re.fullmatch(r"[A-Za-z0-9._~%-]+", encoded), key
        assert key.startswith("app:{s:")


def test_session_keys_share_one_hash_tag() -> None:
    """Context, history, append log and a session map to one cluster slot."""
    keys = KeySchema("app").session("{weird}:id")
    tags = {_hash_tag(k) for k in keys.all()}
    assert len(tags) == 1


@pytest.mark.parametrize(
    "bad",
    ["", "x" * 513, "é" * 257, 42, None, b"bytes", "\ud800"],
)
def test_invalid_ids_are_refused(bad: object) -> None:
    """Ids that are not non-empty str of at most 512 UTF-8 bytes raise InvalidKeyError."""
    with pytest.raises(InvalidKeyError):
        KeySchema("p").session(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        KeySchema("p").profile(bad)  # type: ignore[arg-type]


def test_escape_glob() -> None:
    """Glob characters are backslash-escaped for SCAN MATCH."""
    assert escape_glob("a*b?c[d]e\\") == "a\\*b\\?c\\[d\\]e\\\\"


def test_match_all_is_confined_to_the_prefix() -> None:
    """The store's SCAN pattern cannot match another store whose prefix extends this one."""
    assert KeySchema("a*b").match_all() == "a\\*b:{*"


@pytest.mark.parametrize("nasty_id", NASTY_IDS)
def test_parse_inverts_every_key(nasty_id: str) -> None:
    """parse() gives back the id and part of every key the schema builds, whatever the id."""
    schema = KeySchema("app:v1")
    session = schema.session(nasty_id)
    for part, key in zip(("ctx", "base", "hist", "log", "appends", "deleted"), session.all(), strict=True):
        assert schema.parse(key) == ParsedKey("session", nasty_id, part)
        assert schema.parse(key.encode()) == ParsedKey("session", nasty_id, part)
    for part, key in zip(("facts", "forgotten"), schema.profile_keys(nasty_id), strict=True):
        assert schema.parse(key) == ParsedKey("user", nasty_id, part)


@pytest.mark.parametrize(
    "key",
    [
        "other:{s:a}:ctx",  # another prefix
        "app:v1:{s:a}:nope",  # not a part the schema builds
        "app:v1:{u:a}:ctx",  # a session part under a user tag
        "app:v1:{s:}:ctx",  # empty id
        "app:v1:{s:%zz}:ctx",  # not percent-encoding
        "app:v1:{s:%61}:ctx",  # non-canonical: the schema writes "a"
        "app:v1:{s:%FF}:ctx",  # not UTF-8
        "app:v1:{s:a:ctx",
    ],
)
def test_parse_refuses_foreign_keys(key: str) -> None:
    """A key the schema would never build parses to None."""
    assert KeySchema("app:v1").parse(key) is None


def test_match_sessions_is_a_superset_of_the_glob() -> None:
    """The SCAN pattern encodes literal text, keeps *, widens ? and [..] (filtered client-side)."""
    schema = KeySchema("p*")
    assert schema.match_sessions() == "p\\*:{s:*}:*"
    assert schema.match_sessions("call 1*") == "p\\*:{s:call%201*}:*"
    assert schema.match_sessions("李?") == "p\\*:{s:%E6%9D%8E*}:*"
    assert schema.match_sessions("[ab]c") == "p\\*:{s:*}:*"


@pytest.mark.parametrize("value", ["a", "a:b", "{x}", "*?[", "call 1", "李", "%41", "~._-"])
def test_encode_id_is_the_key_encoding_and_decode_id_inverts_it(value: str) -> None:
    """encode_id is what session keys hold (and the LangGraph keys use); decode_id gives the id back."""
    from agentmem.integrations.langgraph import _keys as langgraph_keys
    from agentmem.keys import decode_id, encode_id

    assert KeySchema("p").session(value).base == f"p:{{s:{encode_id(value)}}}:base"
    assert langgraph_keys.encode_id is encode_id
    assert decode_id(encode_id(value)) == value


@pytest.mark.parametrize("encoded", ["%61", "a%3a", "%ZZ", "%FF", "a:b"])
def test_decode_id_refuses_what_encode_id_cannot_make(encoded: str) -> None:
    """A non-canonical or invalid encoding is no id of ours: None, so it never aliases another id."""
    from agentmem.keys import decode_id

    assert decode_id(encoded) is None
