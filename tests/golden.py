"""What `resdsl compile` writes for every bundled network in every emit mode, and the digests
of it that tests/golden/emit.sha256 records (tests/test_golden.py compares them).

    python tests/golden.py --update      # rewrite the digests (say why in the commit)
    python tests/golden.py --write DIR   # the outputs themselves, one file each, to diff

The digests pin the compiler's output byte for byte across refactorings: a change to any of
them is either a bug or a deliberate difference its commit explains.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = Path(__file__).resolve().parent / "golden" / "emit.sha256"

# mode -> the compile options that make it
MODES = {
    "python": ["--emit", "python"],
    "standalone": ["--emit", "python", "--standalone"],
    "inference": ["--emit", "python", "--inference"],
    "no-fuse": ["--emit", "python", "--no-fuse"],
    "ir": ["--emit", "ir"],
    "json": ["--emit", "json"],
    "summary": ["--emit", "summary"],
}


def networks() -> list[tuple[str, str]]:
    """(spec file relative to the repository, network) for every bundled concrete network."""
    from resdsl.elaborate import concrete_networks
    from resdsl.loader import load

    out = []
    for path in sorted((ROOT / "specs").glob("*.res")):
        rel = path.relative_to(ROOT).as_posix()
        out += [(rel, name) for name in concrete_networks(load(str(path)).root)]
    return out


def output(spec: str, network: str, mode: str) -> str:
    """What `resdsl compile SPEC -n NETWORK` writes to stdout in `mode`, the version and the
    checkout's own path left out (run from the repository root, so the header names the spec
    as `specs/...`; spans into `use`d files are absolute)."""
    from resdsl import __version__
    from resdsl.cli import main

    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        result = runner.invoke(main, ["compile", spec, "-n", network, *MODES[mode]],
                               catch_exceptions=False)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, (spec, network, mode, result.output)
    return (result.stdout.replace(f"resdsl {__version__} ", "resdsl VERSION ")
            .replace(str(ROOT) + os.sep, ""))


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def key(spec: str, network: str, mode: str) -> str:
    return f"{spec} {network} {mode}"


def recorded() -> dict[str, str]:
    """The manifest: key -> sha256."""
    out = {}
    for line in MANIFEST.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            sha, rest = line.split("  ", 1)
            out[rest] = sha
    return out


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--update"]:
        lines = ["# sha256 of `resdsl compile SPEC -n NETWORK` per mode (tests/golden.py)"]
        for spec, net in networks():
            for mode in MODES:
                lines.append(f"{digest(output(spec, net, mode))}  {key(spec, net, mode)}")
        MANIFEST.parent.mkdir(exist_ok=True)
        MANIFEST.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{MANIFEST}: {len(lines) - 1} digests")
        return 0
    if argv[:1] == ["--write"] and len(argv) == 2:
        out = Path(argv[1])
        out.mkdir(parents=True, exist_ok=True)
        for spec, net in networks():
            for mode in MODES:
                name = f"{Path(spec).stem}.{net}.{mode}.txt"
                (out / name).write_text(output(spec, net, mode), encoding="utf-8")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
