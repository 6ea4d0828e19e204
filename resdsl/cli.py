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
from .dispatch import KERNELS
from .errors import Renderer, ResdslError
from .limits import MAX_LAYERS, MAX_MACS, MAX_PARAMS, Limits


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


def _write(path: str, text: str) -> None:
    """Write an output file (a spec `fmt` rewrites, a compiled model) atomically: a temporary
    file in the same folder, flushed and fsynced, given the old file's mode, then put in its
    place with os.replace (through a symbolic link, at the link's target). A write that fails
    (a full disk, a read-only folder) leaves the old file byte for byte as it was, and is the
    user's error (E604, as for `draw`)."""
    import tempfile

    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode & 0o7777 if target.exists() else _default_mode()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError as e:
        raise ResdslError(f"cannot write '{path}': {e.strerror or e}", code="E604") from None


def _default_mode() -> int:
    """A new file's mode: 0o666 less the umask, as open() would give it."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def guarded(fn: Callable[[], int]) -> int:
    """Run a command body: user errors are reported, and a bug is reported as one, briefly."""
    try:
        return fn()
    except click.ClickException:
        raise  # usage errors: click prints them and exits 2
    except BrokenPipeError:  # `resdsl ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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


_MAX_LAYERS = click.option("--max-layers", type=click.IntRange(min=1), default=None,
                           help=f"Expansion limit in layers (default {MAX_LAYERS:,}).")
_limit_options = [
    click.option("--max-params", type=click.IntRange(min=1), default=None, metavar="N",
                 help=f"Limit on a network's parameters (default {MAX_PARAMS:,})."),
    click.option("--max-macs", type=click.IntRange(min=1), default=None, metavar="N",
                 help=f"Limit on multiply-accumulates per sample (default {MAX_MACS:,})."),
    click.option("--allow-any-path", is_flag=True,
                 help='Let `use "path"` read files outside the spec\'s folder.'),
]


def limit_options(fn):
    for opt in reversed(_limit_options):
        fn = opt(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="resdsl")
def main() -> None:
    """resdsl: declarative residual-network specs compiled to PyTorch, diagrams and summaries."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("-n", "--network", "networks", multiple=True, metavar="NAME",
              help="Check only this network (repeatable); default: every buildable one.")
@_MAX_LAYERS
@limit_options
def check(files: tuple[str, ...], networks: tuple[str, ...], **limits) -> None:
    """Parse and validate spec files; one OK line per file, or the errors."""
    from .pipeline import check_file

    status = 0
    for path in files:
        def one(path: str = path) -> int:
            result = check_file(path, Limits.given(**limits), networks=list(networks) or None)
            names = list(result.networks)
            shown = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
            detail = f"{len(names)} network{'s' if len(names) != 1 else ''}" + (
                f" ({shown})" if names else "")
            click.echo(f"{path}: ok, {detail}")
            return 0
        status = max(status, guarded(one))  # 1 for input errors, 70 for a bug of ours
    sys.exit(status)


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
                _write(path, new)
                click.echo(f"{path}: reformatted", err=True)
            return 1 if check_only else 0
        status = max(status, guarded(one))
    sys.exit(status)


def _shape(text: str | None) -> tuple[int, int, int] | None:
    """`3x224x224` -> (3, 224, 224), for --input."""
    if text is None:
        return None
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 3 or not all(p.isdigit() and 0 < len(p) < 7 and int(p) > 0 for p in parts):
        raise click.BadParameter(f"'{text}' is not CxHxW, e.g. 3x224x224", param_hint="--input")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def _select(path: str, network: str | None, limits, all_ok: bool = False):
    """(program, the networks to make): the one named, or the file's; several only if
    `all_ok`."""
    from .elaborate import concrete_networks
    from .loader import load

    program = load(path, limits.allow_any_path)
    names = [network] if network else concrete_networks(program.root)
    if not names:
        raise click.UsageError(f"{path} defines no buildable network")
    if len(names) > 1 and not all_ok:
        raise click.UsageError(f"{path} defines {len(names)} networks; choose one with "
                               f"--network ({', '.join(names)})")
    return program, names


def _checked(path: str, network: str | None, input_shape, limits, all_ok: bool = False):
    """Check a file and make its selected networks' graphs."""
    from .pipeline import check_program

    program, names = _select(path, network, limits, all_ok)
    return check_program(program, names, input_shape=input_shape, limits=limits)


_net_options = [
    click.option("--network", "-n", metavar="NAME", help="Which network of the file."),
    click.option("--input", "input_text", metavar="CxHxW", callback=lambda c, p, v: _shape(v),
                 help="Input size (default: the spec's)."),
    _MAX_LAYERS,
]


def net_options(fn):
    for opt in reversed(_net_options):
        fn = opt(fn)
    return limit_options(fn)


@main.command()
@click.argument("file", type=click.Path(dir_okay=True))
@net_options
@click.option("--depth", "-d", type=click.IntRange(min=1), default=2, show_default=True,
              help="1: stages, 2: blocks, 3: layers, deeper for nested blocks.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def summary(file: str, network: str | None, input_text: str | None, depth: int, as_json: bool,
            **limits) -> None:
    """Parameters, MACs and output shapes, per stage, block or layer.

    Without --network, a file of several networks gets one line per network."""
    from .backends import summary as s

    def run() -> int:
        result = _checked(file, network, input_text, Limits.given(**limits), all_ok=True)
        graphs = result.graphs
        if len(graphs) == 1:
            g = next(iter(graphs.values()))
            click.echo(s.to_json(g, depth) if as_json else s.table(g, depth), nl=False)
        elif as_json:
            import json
            click.echo(json.dumps({k: json.loads(s.to_json(g, depth)) for k, g in graphs.items()},
                                  indent=1))
        else:
            click.echo(s.overview(graphs), nl=False)
        return 0
    sys.exit(guarded(run))


@main.command("compile")
@click.argument("file", type=click.Path(dir_okay=True))
@net_options
@click.option("--emit", type=click.Choice(["python", "ir", "json", "summary", "onnx"]),
              default="python", show_default=True, help="What to write.")
@click.option("-o", "--output", metavar="PATH", default="-", show_default=True,
              help="Where to write it ('-' for stdout; ONNX needs a file).")
@click.option("--standalone", is_flag=True,
              help="Python: inline resdsl's runtime so the file needs only torch.")
@click.option("--features", metavar="NAMES", default=None,
              help="Comma-separated stages or top-level layers whose outputs forward returns "
                   "(e.g. layer2,layer4).")
@click.option("--inference", is_flag=True,
              help="Fold each BN after a conv into the conv (eval mode, channels_last); the "
                   "network's from_trained(state_dict) loads trained weights (docs/passes.md).")
@click.option("--no-fuse", is_flag=True,
              help="Keep bn, relu and add apart (no fusion pass; docs/passes.md).")
@click.option("--kernels", type=click.Choice(KERNELS), default=None,
              help="Fused BN kernels: Triton on CUDA tensors (auto), always, or PyTorch ops "
                   "[default: $RESDSL_KERNELS at run time, else auto].")
@click.option("--sync-bn", is_flag=True,
              help="Python: every BN's training statistics over all processes of the default "
                   "group (torch.distributed, any backend; docs/pytorch.md).")
def compile_(file: str, network: str | None, input_text: str | None, emit: str, output: str,
             standalone: bool, features: str | None, inference: bool, no_fuse: bool,
             kernels: str | None, sync_bn: bool, **limits) -> None:
    """Compile a network of a spec file: Python source of its nn.Module (default), the graph
    IR as text or JSON (fused unless --no-fuse), a summary table, or ONNX. A one-line summary
    goes to stderr."""
    from . import ir
    from .graph import totals
    from .pipeline import compile_network

    feats = [f.strip() for f in features.split(",") if f.strip()] if features else None

    def run() -> int:
        lim = Limits.given(**limits)
        program, (name,) = _select(file, network, lim)
        as_written = emit == "summary"  # the spec's own graph: no passes (same numbers)
        c = compile_network(program, name, input_shape=input_text, limits=lim,
                            fuse=not (no_fuse or as_written), inference=inference and not
                            as_written, features=feats)
        g = c.lowered
        if emit in ("python", "onnx"):
            from .backends.pytorch import emit as emit_python
            text = emit_python(g, c.file, feats, standalone, kernels, sync_bn)[0]
            if emit == "onnx":
                if output == "-":
                    raise click.UsageError("--emit onnx needs a file: -o model.onnx")
                _onnx(text, g, output)
                text = None
        else:
            from .backends import summary as s
            text = {"ir": ir.to_text, "json": ir.to_json, "summary": s.table}[emit](g)
        if text is not None:
            if output == "-":
                click.echo(text, nl=False)
            else:
                _write(output, text)
        t = totals(g)
        out_shape = ir.shape_str(g.nodes["output"]["shape"])
        if feats:
            from .api import feature_info
            out_shape = ", ".join(f"{f['name']} {f['channels']}ch/{f['reduction']}"
                                  for f in feature_info(g, feats))
        click.echo(f"{name}: {t['params']:,} params, {t['macs'] / 1e9:.3f} GMACs, output "
                   f"{out_shape}", err=True)
        return 0
    sys.exit(guarded(run))


def _onnx(source: str, g, path: str) -> None:
    """Export the generated module to ONNX (needs torch and onnx)."""
    from .backends.pytorch import export_onnx

    export_onnx(source, g, path)


@main.command()
@click.argument("file", type=click.Path(dir_okay=True))
@net_options
@click.option("-o", "--output", metavar="PATH", default=None,
              help="Picture to write; .svg .png .pdf or .dot picks the format "
                   "[default: NETWORK.svg].")
@click.option("--level", type=click.Choice(["stage", "block", "layer"]), default="block",
              show_default=True, help="One box per stage, per residual unit, or per op.")
@click.option("--rankdir", type=click.Choice(["TB", "LR"], case_sensitive=False), default="TB",
              show_default=True, help="Top to bottom or left to right.")
@click.option("--expand", is_flag=True,
              help="Layer level: draw every block (runs of identical blocks otherwise "
                   "collapse to one marked × n).")
@click.option("--dpi", type=click.IntRange(min=1), default=None, metavar="N",
              help="Pixels per inch of a .png [default: 192, twice Graphviz's].")
def draw(file: str, network: str | None, input_text: str | None, output: str | None,
         level: str, rankdir: str, expand: bool, dpi: int | None, **limits) -> None:
    """Draw a network with Graphviz: stages, residual units or every layer.

    At the layer level a spec with a shape error is drawn up to the error, the offending
    node in red; the error is reported and the exit code is 1."""
    from .backends import draw as d

    def picture(g, name: str, error=None) -> str:
        path = output or f"{name}.svg"
        d.write(d.to_dot(g, level, rankdir, expand, error), path, dpi or d.PNG_DPI)
        return path

    def run() -> int:
        if output:
            try:
                d.format_of(output)
            except ResdslError as e:
                raise click.BadParameter(e.message + f" ({e.hint})", param_hint="-o") from None
        if dpi and (not output or d.format_of(output) != "png"):
            raise click.BadParameter("a resolution is for a .png picture only (-o NAME.png); "
                                     "the other formats are vector", param_hint="--dpi")
        d.graphviz_module()
        try:
            result = _checked(file, network, input_text, Limits.given(**limits))
        except ResdslError as e:
            partial = d.located(e)
            if partial is None:
                raise
            report(e)
            if level != "layer":
                click.echo("(--level layer draws the graph up to the error)", err=True)
                return 1
            g, where = partial
            path = picture(g, g.graph["name"], where)
            click.echo(f"{path}: {g.graph['name']} drawn up to the error, marked in red",
                       err=True)
            return 1
        name, g = next(iter(result.graphs.items()))
        path = picture(g, name)
        click.echo(f"{path}: {name}, {level} level", err=True)
        return 0
    sys.exit(guarded(run))


def _sizes(ctx, param, text: str) -> tuple[int, int]:
    """`1..256` -> (1, 256) (`64` -> (64, 64)), for --sizes."""
    from .verification import MAX_SIZE

    lo, dots, hi = text.replace(" ", "").partition("..")
    hi = hi if dots else lo
    if lo.isdigit() and hi.isdigit() and 1 <= int(lo) <= int(hi) <= MAX_SIZE:
        return int(lo), int(hi)
    raise click.BadParameter(f"'{text}' is not LO..HI with 1 <= LO <= HI <= {MAX_SIZE:,}, "
                             "e.g. 1..256", param_hint="--sizes")


@main.command("verify")
@click.argument("file", type=click.Path(dir_okay=True))
@click.option("-n", "--network", "networks", multiple=True, metavar="NAME",
              help="Verify only this network (repeatable); default: every buildable one.")
# the defaults are resdsl.verify's (verification.DEFAULT_SIZES, DEFAULT_EXAMPLES; a test
# keeps them equal: importing the module here would slow every command's start)
@click.option("--sizes", default="1..256", show_default=True, metavar="LO..HI",
              callback=_sizes, help="The H and W to check (every one, statically).")
@click.option("--examples", type=click.IntRange(min=0), default=20, show_default=True,
              help="Inputs hypothesis draws to run in PyTorch per network (0: static only, "
                   "no torch needed).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="hypothesis' seed.")
@_MAX_LAYERS
@limit_options
def verify_(file: str, networks: tuple[str, ...], sizes: tuple[int, int], examples: int,
            seed: int, **limits) -> None:
    """Which input sizes H x W a network accepts (every size of --sizes, checked
    statically), the smallest refused with the reason, the output size; then PyTorch's
    shapes and counts, layer by layer, at sizes hypothesis draws. Exit 1 if a size is
    refused or PyTorch disagrees."""
    from .verification import Verified, analyse, check_pytorch

    def one(program, name: str, lim: Limits) -> int:
        color = _color(sys.stdout)
        result = Verified(analyse(program, name, sizes, lim), None)
        click.echo("\n".join(result.sizes.lines(color)))  # before PyTorch's part, which
        if examples:                                      # takes longer
            result.pytorch = check_pytorch(program, name, result.sizes, examples, seed,
                                           limits=lim)
            click.echo("\n".join(result.pytorch.lines()))
        click.echo(result.verdict())
        return 0 if result.ok else 1

    def run() -> int:
        lim = Limits.given(**limits)
        program, found = _select(file, networks[0] if len(networks) == 1 else None, lim, True)
        return max(guarded(lambda name=name: one(program, name, lim))
                   for name in networks or found)
    sys.exit(guarded(run))


def run() -> None:
    """The `resdsl` program (and `python -m resdsl`): one command in a process of its own.

    The collector's full collections are off: a big spec's AST is millions of objects with no
    cycles, and each full collection walks all of them (seconds for a 10 MB spec; the younger
    generations, where cyclic garbage dies, are still collected). At the end the output is
    flushed and the exit functions run, then the process exits without freeing its heap
    object by object, as mypy does: that alone takes seconds more for a big spec."""
    import atexit
    import gc

    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 2**31 - 1)
    code: object = 0
    try:
        main(prog_name="resdsl")
    except SystemExit as e:
        code = e.code
    if not isinstance(code, int):   # sys.exit(None) or sys.exit("message"), as Python takes it
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left, or a stream already closed
            pass
    getattr(atexit, "_run_exitfuncs", lambda: None)()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
