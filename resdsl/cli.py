"""The `resdsl` command line: check, fmt (and the later stages' commands).

Errors go to stderr rendered with the source line and a caret; colour only on a terminal and
never under NO_COLOR. Exit codes: 0 ok, 1 errors in the input, 2 usage errors.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import click

from . import __version__
from .errors import Renderer, ResdslError


def _color(stream) -> bool:
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def report(err: ResdslError, sources: dict[str, str] | None = None) -> None:
    """Print an error (or a group of them) to stderr."""
    merged = dict(sources or {})
    merged.update(err.sources)
    text = Renderer(merged, color=_color(sys.stderr)).render(err)
    click.echo(text, err=True)
    count = len(err.errors)
    if count > 1:
        click.echo(f"{count} errors", err=True)


def guarded(fn: Callable[[], int]) -> int:
    """Run a command body: user errors are reported, and a bug is reported as one, briefly."""
    try:
        return fn()
    except ResdslError as e:
        report(e)
        return 1
    except RecursionError:
        click.echo("error[E502]: input nested too deeply to process", err=True)
        return 1
    except MemoryError:
        click.echo("error[E504]: out of memory; the spec is too large to build", err=True)
        return 1
    except Exception as e:  # noqa: BLE001 - the last line of defence: never a traceback
        if os.environ.get("RESDSL_DEBUG"):
            raise
        click.echo(f"internal error: {type(e).__name__}: {e}\n"
                   "This is a bug in resdsl, not in your spec; please report it with the spec "
                   "(set RESDSL_DEBUG=1 to see the traceback).", err=True)
        return 70


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="resdsl")
def main() -> None:
    """resdsl: declarative residual-network specs compiled to PyTorch, diagrams and summaries."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--network", "networks", multiple=True, metavar="NAME",
              help="Check only this network (repeatable); default: every buildable one.")
@click.option("--max-layers", type=click.IntRange(min=1), default=None,
              help="Expansion limit in layers (default 100,000).")
def check(files: tuple[str, ...], networks: tuple[str, ...], max_layers: int | None) -> None:
    """Parse and validate spec files; one OK line per file, or the errors."""
    from .elaborate import MAX_LAYERS
    from .pipeline import check_file

    failed = 0
    for path in files:
        def one(path: str = path) -> int:
            result = check_file(path, networks=list(networks) or None,
                                max_layers=max_layers or MAX_LAYERS)
            names = list(result.networks)
            shown = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
            detail = f"{len(names)} network{'s' if len(names) != 1 else ''}" + (
                f" ({shown})" if names else "")
            click.echo(f"{path}: ok, {detail}")
            return 0
        failed += guarded(one) != 0
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--check", "check_only", is_flag=True,
              help="Change nothing; exit 1 if any file is not formatted.")
@click.option("--diff", is_flag=True, help="Print a unified diff instead of rewriting.")
def fmt(files: tuple[str, ...], check_only: bool, diff: bool) -> None:
    """Rewrite spec files in the one canonical layout (comments kept)."""
    from .fmt import format_text, unified_diff
    from .loader import read_text

    status = 0
    for path in files:
        def one(path: str = path) -> int:
            text = read_text(path)
            new = format_text(text, path)
            if new == text:
                return 0
            if diff:
                click.echo(unified_diff(text, new, path), nl=False)
            if check_only:
                click.echo(f"{path}: would reformat", err=True)
            elif not diff:
                Path(path).write_text(new, encoding="utf-8")
                click.echo(f"{path}: reformatted", err=True)
            return 1 if check_only else 0
        status = max(status, guarded(one))
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    main()
