"""Stage 0: files -> parsed modules with their `use`s resolved into name scopes.

A scope holds a module's own definitions and those of the modules it uses (not transitively).
Reading never raises anything but ResdslError: missing files, directories, binary data and
`use` cycles are all user errors with codes.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from . import nodes as n
from .errors import (Collector, InputError, LimitError, ResdslError, Span, SpecNameError,
                     did_you_mean)
from .parse import parse
from .resources import specs_dir

Definition = Union[n.BlockDef, n.NetworkDef, n.NetworkInst, n.Let]
MAX_FILE_BYTES = 10_000_000
MAX_USE_DEPTH = 64  # files `use`ing each other in a chain
MAX_CACHED = 1_000_000  # characters of a text whose parse is remembered (32 at most)


@dataclass
class Scope:
    """The names visible inside one module: its own definitions shadow imported ones."""

    module: n.Module
    names: dict[str, tuple[Definition, "Scope"]] = field(default_factory=dict)
    own: dict[str, Definition] = field(default_factory=dict)
    # names defined twice: the first definition stands, so the checks can go on and report
    # these together with everything else they find (check_scope raises them)
    duplicates: list[ResdslError] = field(default_factory=list)

    def lookup(self, name: str) -> tuple[Definition, "Scope"] | None:
        return self.names.get(name)


@dataclass
class Program:
    """The root module, every module it reached, and the sources for error rendering."""

    root: Scope
    scopes: dict[str, Scope]
    sources: dict[str, str]


@functools.lru_cache(maxsize=32)
def _parse(text: str, file: str) -> n.Module:
    """`parse`, remembered: the AST is immutable, and the bundled libraries are used by most
    specs (a syntax error is raised again each time: exceptions are not cached)."""
    if Path(file).parent == specs_dir() and _bundled_text(file) == text:
        return _parse_bundled(text, file)
    return parse(text, file)


def _bundled_text(file: str) -> str | None:
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=None)
def _parser_identity() -> str:
    """What an AST depends on besides its text: resdsl's version, the grammar, and the
    parser's and the AST's code, Span's (errors.py) included (read once per process)."""
    from . import __version__, errors, nodes, parse
    from .resources import grammar_file

    code = [Path(m.__file__).read_text(encoding="utf-8") for m in (nodes, parse, errors)]
    return "\0".join([__version__, grammar_file().read_text(), *code])


def _parse_bundled(text: str, file: str) -> n.Module:
    """A bundled spec's AST from the on-disk cache (~1 ms instead of ~15 ms for std.res, at
    every `resdsl check`), keyed by resdsl's version, the grammar, the parser's and the AST's
    code with Span's (two checkouts of one version share the folder), the path and the text;
    parsed and stored when absent. Only resdsl's own files are cached: they are few and fixed,
    and a cache that cannot be read or written is skipped silently."""
    import hashlib
    import pickle

    folder = os.environ.get("RESDSL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "resdsl")
    key = hashlib.sha256("\0".join([_parser_identity(), file, text])
                         .encode()).hexdigest()[:32]
    path = Path(folder) / f"{Path(file).stem}-{key}.pickle"
    try:
        module = pickle.loads(path.read_bytes())
        if isinstance(module, n.Module):
            return module
    except Exception:  # absent, unreadable or stale: parse again
        pass
    module = parse(text, file)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(module, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
    except OSError:
        pass
    return module


def read_text(path: str, span: Span | None = None) -> str:
    """A spec file's text, or an InputError saying why it cannot be read. Only a regular file
    is read: it is opened without blocking (a FIFO with no writer would wait forever) and
    checked on the open descriptor, so nothing can swap it in between."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"no such file: '{path}'", span, code="E001") from None
    except PermissionError:
        raise InputError(f"cannot read '{path}': permission denied", span, code="E003") from None
    except (OSError, ValueError) as e:
        if isinstance(e, IsADirectoryError):   # (where a directory cannot be opened)
            raise InputError(f"'{path}' is a directory, not a spec file", span,
                             "pass a .res file", code="E002") from None
        why = getattr(e, "strerror", None) or e
        raise InputError(f"cannot read '{path}': {why}", span, code="E003") from None
    kind = _not_regular(os.fstat(fd).st_mode)
    if kind:
        os.close(fd)
        if kind == "a directory":
            raise InputError(f"'{path}' is a directory, not a spec file", span,
                             "pass a .res file", code="E002")
        raise InputError(f"'{path}' is {kind}, not a regular file", span,
                         "specs are read from regular files", code="E002")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise InputError(f"cannot read '{path}': {e.strerror or e}", span,
                             code="E003") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"'{path}' is larger than {MAX_FILE_BYTES:,} bytes, the most a spec "
                         "may be", span, code="E005")
    return decode(data, path, span)


def _not_regular(mode: int) -> str | None:
    """What a file that is not a regular one is, in words (None: a regular file)."""
    import stat
    if stat.S_ISREG(mode):
        return None
    return ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a file")


def decode(data: bytes, path: str, span: Span | None = None) -> str:
    if b"\x00" in data:
        raise InputError(f"'{path}' is binary data, not a spec", span,
                         "specs are plain UTF-8 text", code="E004")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"'{path}' is not UTF-8 text (byte {e.start})", span,
                         "specs are plain UTF-8 text", code="E004") from None


def library_names() -> list[str]:
    return sorted(p.stem for p in specs_dir().glob("*.res"))


@functools.lru_cache(maxsize=None)
def library_blocks() -> dict[str, frozenset[str]]:
    """The blocks each bundled library defines (for the hint that names the `use` a spec
    lacks)."""
    out = {}
    for lib in library_names():
        path = specs_dir() / f"{lib}.res"
        module = _parse(path.read_text(encoding="utf-8"), str(path))
        out[lib] = frozenset(i.name for i in module.items if isinstance(i, n.BlockDef))
    return out


class Loader:
    """Loads a spec and what it `use`s. `use "path"` must stay inside the root spec's folder
    (or, from a bundled library, inside the library's), unless `allow_any_path`."""

    def __init__(self, allow_any_path: bool = False) -> None:
        self.scopes: dict[str, Scope] = {}
        self.sources: dict[str, str] = {}
        self.loading: list[str] = []
        self.allow_any_path = allow_any_path
        self.root_dir: str | None = None  # the folder of the spec being compiled

    def load_text(self, text: str, file: str, base_dir: str) -> Scope:
        if self.root_dir is None:
            self.root_dir = base_dir
        key = file if file.startswith("<") else os.path.realpath(file)
        if key in self.scopes:
            return self.scopes[key]
        self.sources[file] = text
        module = _parse(text, file) if len(text) <= MAX_CACHED else parse(text, file)
        self.loading.append(key)
        try:
            scope = self._scope(module, base_dir)
        finally:
            self.loading.pop()
        self.scopes[key] = scope
        return scope

    def load_file(self, path: str, span: Span | None = None) -> Scope:
        key = os.path.realpath(path)
        if len(self.loading) >= MAX_USE_DEPTH:
            raise LimitError(f"`use` chain more than {MAX_USE_DEPTH} files deep", span,
                             "use the files you need directly from the spec", code="E502")
        if key in self.loading:
            chain = " -> ".join(Path(k).name for k in self.loading[self.loading.index(key):])
            raise SpecNameError(f"`use` cycle: {chain} -> {Path(key).name}", span,
                                "move the shared definitions into a file both can use",
                                code="E206")
        if key in self.scopes:
            return self.scopes[key]
        text = read_text(path, span)
        scope = self.load_text(text, path, str(Path(path).parent))
        if span is not None and scope.duplicates:  # a used file: its own errors stop here
            Collector.raise_all(scope.duplicates)
        return scope

    def _scope(self, module: n.Module, base_dir: str) -> Scope:
        scope = Scope(module)
        errors = Collector()
        imported: dict[str, tuple[Definition, Scope, n.Use]] = {}
        own = {item.name for item in module.items if not isinstance(item, n.Use)}
        for item in module.items:
            if isinstance(item, n.Use):
                try:
                    used = self.load_file(self._resolve(item, base_dir), item.span)
                except ResdslError as e:
                    errors.add(e)
                    continue
                clashes: dict[int, tuple[n.Use, list[str]]] = {}
                for name, d in used.own.items():
                    if name in imported and imported[name][0] is not d and name not in own:
                        first = imported[name][2]
                        clashes.setdefault(id(first), (first, []))[1].append(name)
                    imported[name] = (d, used, item)
                for first, names in clashes.values():
                    errors.add(_clash(names, first, item))
        for name, (d, used, _) in imported.items():
            scope.names[name] = (d, used)
        for item in module.items:
            if isinstance(item, n.Use):
                continue
            name = item.name
            if name in scope.own:
                first = scope.own[name]
                scope.duplicates.append(SpecNameError(
                    f"'{name}' is defined twice", _name_span(item), "rename one of them",
                    code="E202", notes=[(_name_span(first), "first defined here")]))
                continue
            scope.own[name] = item
            scope.names[name] = (item, scope)
        errors.raise_if_any()
        return scope

    def _resolve(self, use: n.Use, base_dir: str) -> str:
        if use.is_path:
            if not self.allow_any_path:
                self._confine(use, base_dir)
            path = Path(base_dir) / use.target
            if not _exists(path):
                raise SpecNameError(f"`use`: no such file '{use.target}'", use.span,
                                    f"paths are relative to the spec's folder ({base_dir})",
                                    code="E207")
            return str(path)
        path = specs_dir() / f"{use.target}.res"
        if not path.is_file():
            raise SpecNameError(f"no bundled library named '{use.target}'", use.span,
                                did_you_mean(use.target, library_names())
                                or f"bundled: {', '.join(library_names())}; "
                                   'use "file.res" for a file of your own', code="E207")
        return str(path)

    def _confine(self, use: n.Use, base_dir: str) -> None:
        """E211 unless the path is relative and, symlinks followed, stays inside the root
        spec's folder (a bundled library's own `use`s: inside the library folder)."""
        library = os.path.realpath(specs_dir())
        here = os.path.realpath(base_dir)
        root = library if _inside(here, library) else os.path.realpath(self.root_dir or base_dir)
        target = use.target
        if os.path.isabs(target) or target.startswith(("~", "\\")) or re.match(r"[A-Za-z]:", target):
            why = "an absolute path"
        else:
            try:
                resolved = os.path.realpath(os.path.join(here, target))
            except (OSError, ValueError):
                resolved = ""
            if resolved and _inside(resolved, root):
                return
            why = "a path outside the spec's folder"
        where = "the library's folder" if root == library else "the spec's folder"
        raise SpecNameError(f"`use \"{target}\"` is {why}", use.span,
                            f"`use` reads the bundled libraries and files in {where} and "
                            "below; pass --allow-any-path (API: allow_any_path=True) to read "
                            "others", code="E211")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _clash(names: list[str], first: n.Use, second: n.Use) -> SpecNameError:
    """One error for all the names two `use`s both bring in."""
    shown = [f"'{x}'" for x in names[:3]]
    if len(names) > 3:
        shown.append(f"{len(names) - 3} more")
    listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    verb = "is" if len(names) == 1 else "are"
    return SpecNameError(f"{listed} {verb} defined both by `use {first.target}` and by "
                         f"`use {second.target}`", second.span,
                         "define each name in one file only, or define it here to choose",
                         code="E202", notes=[(first.span, "first brought in here")])


def _exists(path: Path) -> bool:
    """False only for a path that is certainly missing; read_text explains other troubles."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return True


def _name_span(item: Definition) -> Span:
    return getattr(item, "name_span", None) or item.span


def load(path: str, allow_any_path: bool = False) -> Program:
    """Read and parse a spec file and everything it `use`s."""
    loader = Loader(allow_any_path)
    try:
        root = loader.load_file(path)
    except ResdslError as e:
        e.sources.update(loader.sources)
        raise
    return Program(root, loader.scopes, loader.sources)


def load_text(text: str, file: str = "<string>", base_dir: str | None = None,
              allow_any_path: bool = False) -> Program:
    """Parse spec text given directly (the API's `build(text)`). `use "path"` resolves
    against `base_dir`: by default the folder of `file`, or the current one for `<string>`."""
    if base_dir is None:
        base_dir = "." if file.startswith("<") else str(Path(file).parent)
    loader = Loader(allow_any_path)
    try:
        root = loader.load_text(text, file, base_dir)
    except ResdslError as e:
        e.sources.update(loader.sources)
        raise
    return Program(root, loader.scopes, loader.sources)
