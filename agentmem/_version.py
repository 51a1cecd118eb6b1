"""The installed package's version, read from its metadata (a leaf: modules that report the
version import it from here, not from the package root, which imports the whole store)."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("agentmem")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
