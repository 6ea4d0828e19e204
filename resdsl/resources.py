"""Where the grammar and the bundled specs live, in a source checkout and in an installed wheel."""
from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _package_dir(name: str, fallback: Path) -> Path:
    """The directory of subpackage `resdsl.<name>`, else the checkout's top-level folder."""
    installed = _PKG / name
    if installed.is_dir():
        return installed
    try:
        import importlib.util

        spec = importlib.util.find_spec(f"resdsl.{name}")
        if spec and spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0])
    except ImportError:
        pass
    return fallback


def grammar_file() -> Path:
    return _package_dir("grammar", _PKG.parent / "grammar") / "resdsl.lark"


def specs_dir() -> Path:
    return _package_dir("specs", _PKG.parent / "specs")
