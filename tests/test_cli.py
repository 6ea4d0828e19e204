"""The command line: exit codes (0 ok, 1 input errors, 2 usage errors), and never a Python
traceback, whatever the input. In-process with click's CliRunner, and as `python -m resdsl`."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from resdsl import __version__
from resdsl import cli as cli_module
from resdsl.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
BUNDLED = sorted(SPECS.glob("*.res"))

TINY = "network tiny {\n  input 3 x 8 x 8\n  conv 4, 3x3\n}\n"
REPEAT = ("block b(p) {{\n  conv p, 3x3\n  relu\n}}\n"
          "network n {{\n  input 3 x 8 x 8\n  stage s = {} x b(4)\n}}\n")


def run(*args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(main, list(args), env=env)
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"exception escaped the CLI: {result.exception!r}")
    return result


def write(tmp_path: Path, name: str, data: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return str(path)


# ---- check: good input --------------------------------------------------------------------------

@pytest.mark.parametrize("spec", BUNDLED, ids=[p.name for p in BUNDLED])
def test_check_every_bundled_spec(spec):
    r = run("check", str(spec))
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith(f"{spec}: ok, ")
    assert r.stderr == ""


def test_check_several_files_one_ok_line_each():
    r = run("check", *map(str, BUNDLED))
    assert r.exit_code == 0
    assert len(r.stdout.splitlines()) == len(BUNDLED)
    assert "specs/resnet.res: ok, 12 networks (resnet18, resnet34, resnet50, resnet101, " \
           "resnet152, resnext50_32x4d, …)" in r.stdout
    assert "specs/std.res: ok, 0 networks\n" in r.stdout


def test_check_one_network(tmp_path):
    r = run("check", str(SPECS / "resnet.res"), "--network", "resnet18")
    assert r.exit_code == 0
    assert r.stdout.endswith(": ok, 1 network (resnet18)\n")


def test_empty_file_is_a_valid_spec_with_no_networks(tmp_path):
    """An empty spec defines nothing, which is not an error: like an empty module."""
    r = run("check", write(tmp_path, "empty.res", ""))
    assert r.exit_code == 0
    assert r.stdout == f"{tmp_path / 'empty.res'}: ok, 0 networks\n"


def test_comments_only_and_bom(tmp_path):
    r = run("check", write(tmp_path, "c.res", "\ufeff# nothing here\n\n"))
    assert r.exit_code == 0


# ---- check: bad input ---------------------------------------------------------------------------

def test_binary_garbage(tmp_path):
    r = run("check", write(tmp_path, "garbage.res", bytes(range(256)) * 4))
    assert r.exit_code == 1
    assert r.stderr.startswith("error[E004]: ")
    assert r.stdout == ""


def test_invalid_utf8_without_nul(tmp_path):
    r = run("check", write(tmp_path, "latin.res", b"x = 1 \xff\xfe\n"))
    assert r.exit_code == 1
    assert "error[E004]" in r.stderr


def test_missing_file(tmp_path):
    r = run("check", str(tmp_path / "nope.res"))
    assert r.exit_code == 1
    assert r.stderr == f"error[E001]: no such file: '{tmp_path / 'nope.res'}'\n"


def test_directory(tmp_path):
    r = run("check", str(tmp_path))
    assert r.exit_code == 1
    assert r.stderr.startswith(f"error[E002]: '{tmp_path}' is a directory")


def test_unreadable_file(tmp_path):
    path = write(tmp_path, "secret.res", TINY)
    os.chmod(path, 0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who can read mode-000 files (root)")
        r = run("check", path)
        assert r.exit_code == 1
        assert r.stderr == f"error[E003]: cannot read '{path}': permission denied\n"
    finally:
        os.chmod(path, 0o600)


def test_use_cycle(tmp_path):
    write(tmp_path, "a.res", 'use "b.res"\n')
    write(tmp_path, "b.res", 'use "a.res"\n')
    r = run("check", str(tmp_path / "a.res"))
    assert r.exit_code == 1
    assert "error[E206]: `use` cycle: a.res -> b.res -> a.res" in r.stderr


def test_use_of_a_missing_file(tmp_path):
    r = run("check", write(tmp_path, "n.res", 'use "missing.res"\n'))
    assert r.exit_code == 1
    assert f"{tmp_path / 'n.res'}:1:1: error[E207]: `use`: no such file 'missing.res'" in r.stderr


def test_ten_thousand_nested_parentheses(tmp_path):
    r = run("check", write(tmp_path, "p.res", "x = " + "(" * 10_000 + "1" + ")" * 10_000 + "\n"))
    assert r.exit_code == 1
    assert "error[E104]: brackets nested more than 64 deep" in r.stderr


def test_ten_thousand_nested_brackets_and_braces(tmp_path):
    r = run("check", write(tmp_path, "p.res", "x = " + "[" * 10_000 + "\n"))
    assert r.exit_code == 1 and "E104" in r.stderr
    r = run("check", write(tmp_path, "q.res", "block b() " + "{" * 10_000 + "\n"))
    assert r.exit_code == 1 and "error[E1" in r.stderr


def test_five_thousand_digits(tmp_path):
    r = run("check", write(tmp_path, "d.res", "x = " + "9" * 5000 + "\n"))
    assert r.exit_code == 1
    assert "error[E105]: number literal has 5000 digits" in r.stderr


def test_repeat_count_of_ten_to_the_twelve(tmp_path):
    path = write(tmp_path, "r.res", REPEAT.format(10 ** 12))
    start = time.perf_counter()
    r = run("check", path)
    assert time.perf_counter() - start < 1.0
    assert r.exit_code == 1
    assert "error[E501]: stage 's' expands to 1,000,000,000,000 blocks" in r.stderr
    assert "hint: raise the limit with --max-layers if you mean it" in r.stderr


def test_max_layers_raises_and_lowers_the_limit(tmp_path):
    path = write(tmp_path, "r.res", REPEAT.format(60))
    assert run("check", path).exit_code == 0
    low = run("check", "--max-layers", "100", path)
    assert low.exit_code == 1 and "limit of 100 layers" in low.stderr
    assert run("check", "--max-layers", "120", path).exit_code == 0


def test_several_errors_are_counted(tmp_path):
    r = run("check", write(tmp_path, "e.res", "use stdd\nx = 1\nx = 2\n"))
    assert r.exit_code == 1
    assert r.stderr.count("error[") == 1  # the failed `use` stops the file
    r = run("check", write(tmp_path, "f.res", "x = 1\nx = 2\nblock b() { conv 8, foo = 1 }\n"))
    assert r.stderr.count("error[") == 2
    assert r.stderr.endswith("2 errors\n")


def test_one_bad_file_among_good_ones(tmp_path):
    bad = write(tmp_path, "bad.res", "x = (\n")
    r = run("check", str(SPECS / "std.res"), bad, str(SPECS / "plain.res"))
    assert r.exit_code == 1
    assert r.stdout.count(": ok, ") == 2
    assert f"{bad}:1:" in r.stderr


def test_error_text_shows_the_source_line_and_caret(tmp_path):
    path = write(tmp_path, "net.res", "use std\nnetwork n {\n  input 3 x 32 x 32\n"
                                      "  stage s = 2 x bottlneck(16)\n}\n")
    r = run("check", path)
    assert r.stderr == (f"{path}:4:17: error[E201]: unknown block 'bottlneck'\n"
                        "  |\n"
                        "4 |   stage s = 2 x bottlneck(16)\n"
                        "  |                 ^^^^^^^^^\n"
                        "  hint: did you mean 'bottleneck'?\n")


BUILD_COMMANDS = sorted(set(main.commands) - {"check", "fmt"})


@pytest.mark.parametrize("command", BUILD_COMMANDS)
def test_other_commands_report_bad_input(tmp_path, command):
    """Every command that builds a network reports input errors the same way as `check`."""
    for data, code in [(b"\x00garbage\xff", "E004"), (REPEAT.format(10 ** 12), "E501"),
                       ("x = " + "(" * 10_000, "E104"), ("x = " + "9" * 5000, "E105")]:
        r = run(command, write(tmp_path, "bad.res", data))
        assert r.exit_code == 1, (command, code, r.stderr)
        assert f"error[{code}]" in r.stderr, (command, code, r.stderr)
    r = run(command, str(tmp_path / "missing.res"))
    assert r.exit_code == 1 and "error[E001]" in r.stderr


def test_compile_to_an_unwritable_place(tmp_path):
    spec = write(tmp_path, "t.res", TINY)
    for out in (str(tmp_path / "no" / "such" / "dir.py"), str(tmp_path)):
        r = run("compile", spec, "--emit", "ir", "-o", out)
        assert r.exit_code == 1, r.stderr
        assert r.stderr.startswith(f"error[E604]: cannot write '{out}': ")


UNFORMATTED = "network tiny {input 3 x 8 x 8\nconv 4,3x3}\n" + "# a long comment\n" * 200


def test_fmt_cannot_write_back(tmp_path, monkeypatch):
    spec = write(tmp_path, "t.res", UNFORMATTED)

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli_module.os, "replace", refuse)
    r = run("fmt", spec)
    assert r.exit_code == 1
    assert r.stderr == f"error[E604]: cannot write '{spec}': Permission denied\n"
    assert Path(spec).read_text(encoding="utf-8") == UNFORMATTED
    assert os.listdir(tmp_path) == ["t.res"]          # no temporary file left behind


def test_fmt_write_that_fails_midway_leaves_the_spec_byte_identical(tmp_path, monkeypatch):
    """Issue 16: fmt wrote in place, so a full disk left the spec cut off mid-line."""
    spec = write(tmp_path, "t.res", UNFORMATTED)
    os.chmod(spec, 0o640)

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli_module.os, "fsync", full)
    r = run("fmt", spec)
    assert r.exit_code == 1 and "No space left on device" in r.stderr
    assert Path(spec).read_bytes() == UNFORMATTED.encode()
    assert os.listdir(tmp_path) == ["t.res"]
    monkeypatch.undo()
    assert run("fmt", spec).exit_code == 0           # and when it can, it does, keeping the mode
    assert Path(spec).read_text(encoding="utf-8").startswith("network tiny {\n  input")
    assert os.stat(spec).st_mode & 0o777 == 0o640


@pytest.mark.skipif(sys.platform == "win32", reason="ulimit")
def test_fmt_under_a_file_size_limit_keeps_the_spec(tmp_path):
    """`ulimit -f 1` (1 KiB): the rewrite cannot be written; the spec stays as it was."""
    spec = write(tmp_path, "t.res", UNFORMATTED + "# padding\n" * 300)
    before = Path(spec).read_bytes()
    assert len(before) > 4096
    r = subprocess.run(["bash", "-c", f'ulimit -f 1; "{sys.executable}" -m resdsl fmt "{spec}"'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "E604" in r.stderr and "Traceback" not in r.stderr
    assert Path(spec).read_bytes() == before
    assert os.listdir(tmp_path) == ["t.res"]


def test_fmt_in_a_read_only_folder_is_an_error_and_changes_nothing(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    spec = write(folder, "t.res", UNFORMATTED)
    os.chmod(folder, 0o555)
    try:
        r = run("fmt", spec)
        assert r.exit_code == 1 and "E604" in r.stderr
        assert Path(spec).read_text(encoding="utf-8") == UNFORMATTED
    finally:
        os.chmod(folder, 0o755)


def test_fmt_leaves_a_formatted_file_untouched(tmp_path):
    spec = write(tmp_path, "t.res", TINY)
    before = os.stat(spec).st_mtime_ns
    time.sleep(0.01)
    assert run("fmt", spec).exit_code == 0
    assert os.stat(spec).st_mtime_ns == before


# ---- usage errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("check",), ("check", "--max-layers", "0", "x.res"), ("check", "--max-layers", "many", "x.res"),
    ("check", "--no-such-option", "x.res"), ("no-such-command",), ("fmt",),
])
def test_usage_errors_exit_2(args):
    r = run(*args)
    assert r.exit_code == 2
    assert "Usage:" in r.stderr or "Error:" in r.stderr


def test_version():
    for flag in ("--version", "-V"):
        r = run(flag)
        assert r.exit_code == 0
        assert r.stdout == f"resdsl, version {__version__}\n"


def test_help_on_every_command():
    r = run("--help")
    assert r.exit_code == 0 and "Usage:" in r.stdout
    assert set(main.commands) >= {"check", "fmt"}
    for name in main.commands:
        for flag in ("--help", "-h"):
            r = run(name, flag)
            assert r.exit_code == 0, name
            assert r.stdout.startswith(f"Usage: main {name}") or "Usage:" in r.stdout, name


# ---- colour -------------------------------------------------------------------------------------

class _Tty:
    def isatty(self) -> bool:
        return True


def test_no_ansi_escapes_when_not_a_terminal(tmp_path):
    r = run("check", write(tmp_path, "e.res", "x = 1 +\n"))
    assert r.exit_code == 1
    assert "\x1b[" not in r.stderr


def test_no_color_and_dumb_terminal_switch_colour_off(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert cli_module._color(_Tty()) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli_module._color(_Tty()) is False
    monkeypatch.setenv("NO_COLOR", "")  # any value, even empty, per no-color.org
    assert cli_module._color(_Tty()) is False
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert cli_module._color(_Tty()) is False


def test_spec_text_cannot_inject_escapes(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    r = run("check", write(tmp_path, "esc.res", "x = \x1b[2J\x1b]0;title\x07\n"))
    assert r.exit_code == 1
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr


# ---- the last line of defence -------------------------------------------------------------------

@pytest.mark.parametrize("exc, code, text", [
    (ValueError("boom"), 70, "internal error: ValueError: boom"),
    (RecursionError(), 1, "error[E502]: input nested too deeply to process"),
    (MemoryError(), 1, "error[E504]: out of memory; the spec is too large to build"),
])
def test_unexpected_exceptions_are_reported_briefly(monkeypatch, tmp_path, exc, code, text):
    import resdsl.pipeline

    def explode(*a, **k):
        raise exc

    monkeypatch.delenv("RESDSL_DEBUG", raising=False)
    monkeypatch.setattr(resdsl.pipeline, "check_file", explode)
    r = run("check", write(tmp_path, "t.res", TINY))
    assert r.exit_code == code
    assert text in r.stderr


def test_fmt_reports_bad_input_without_traceback(tmp_path):
    r = run("fmt", "--check", write(tmp_path, "g.res", b"\x00\x01"))
    assert r.exit_code == 1 and "error[E004]" in r.stderr
    r = run("fmt", "--check", write(tmp_path, "s.res", "block {\n"))
    assert r.exit_code == 1 and "error[E101]" in r.stderr
    r = run("fmt", str(tmp_path / "missing.res"))
    assert r.exit_code == 1 and "error[E001]" in r.stderr


# ---- as a subprocess ----------------------------------------------------------------------------

def sub(*args: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    env.pop("RESDSL_DEBUG", None)
    p = subprocess.run([sys.executable, "-m", "resdsl", *args], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=120, **kw)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    assert "\x1b[" not in p.stderr
    return p


def test_subprocess_version_and_bundled_specs():
    p = sub("--version")
    assert (p.returncode, p.stdout) == (0, f"resdsl, version {__version__}\n")
    p = sub("check", *(str(s.relative_to(ROOT)) for s in BUNDLED))
    assert p.returncode == 0, p.stderr
    assert p.stdout.count(": ok, ") == len(BUNDLED)


def test_subprocess_hostile_inputs(tmp_path):
    files = [
        write(tmp_path, "garbage.res", os.urandom(4096) + b"\x00"),
        write(tmp_path, "parens.res", "x = " + "(" * 10_000 + "1" + ")" * 10_000),
        write(tmp_path, "digits.res", "x = " + "1" * 5000),
        write(tmp_path, "repeat.res", REPEAT.format(10 ** 12)),
        str(tmp_path / "missing.res"),
        str(tmp_path),
    ]
    p = sub("check", *files)
    assert p.returncode == 1
    for code in ("E004", "E104", "E105", "E501", "E001", "E002"):
        assert f"error[{code}]" in p.stderr, code


def test_subprocess_usage_error():
    p = sub("check")
    assert p.returncode == 2
    assert "Usage:" in p.stderr


def test_subprocess_stdin_is_not_waited_for(tmp_path):
    """`check` reads its files only: with no input on stdin it still finishes."""
    p = sub("check", write(tmp_path, "t.res", TINY), stdin=subprocess.DEVNULL)
    assert p.returncode == 0


def test_the_program_flushes_runs_exit_functions_and_keeps_exit_codes(tmp_path):
    """`resdsl.cli.run`, the program (console script and `python -m resdsl`), ends with
    os._exit: its output still arrives whole through a pipe, exit functions still run, and
    the exit codes are click's. Full collections are off in its process (issue 16: a 10 MB
    spec's AST is millions of objects the collector would walk, seconds each time)."""
    code = ("import atexit, gc, sys\nfrom resdsl.cli import run\n"
            "atexit.register(lambda: print('exit functions ran', gc.get_threshold()[2]))\n"
            "sys.argv = ['resdsl'] + sys.argv[1:]\nrun()\n")
    spec = write(tmp_path, "t.res", TINY)
    for args, rc in [(["check", spec], 0), (["check", str(tmp_path / "no.res")], 1),
                     (["chek"], 2), (["summary", str(SPECS / "resnet.res"), "-n", "resnet50"], 0)]:
        p = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=120, env=dict(os.environ, NO_COLOR="1"))
        assert p.returncode == rc, (args, p.stderr)
        assert p.stdout.endswith(f"exit functions ran {2**31 - 1}\n"), p.stdout
    whole = run("summary", str(SPECS / "resnet.res"), "-n", "resnet50").stdout   # in-process
    assert p.stdout == whole + f"exit functions ran {2**31 - 1}\n" and "25,557,032" in whole
    assert "[project.scripts]\nresdsl = \"resdsl.cli:run\"" in (ROOT / "pyproject.toml").read_text()


def test_check_imports_neither_torch_nor_networkx():
    """`resdsl check` stays fast: the front end never imports torch, and checking shapes
    builds the graph as a `Draft`, so networkx (slower to import than all of check) is
    left out too (benchmarks/frontend.py)."""
    code = ("import sys\nfrom resdsl.cli import main\n"
            "sys.argv = ['resdsl', 'check', 'specs/resnet.res', 'specs/cifar.res']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'networkx'}))\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "[]", p.stdout


def test_check_takes_n_for_network_as_the_other_commands_do():
    r = run("check", str(SPECS / "resnet.res"), "-n", "resnet18")
    assert r.exit_code == 0 and r.stdout.strip().endswith("ok, 1 network (resnet18)")


@pytest.mark.parametrize("package", ["onnx", "onnxscript"])
def test_onnx_without_the_onnx_package_is_e602(tmp_path, monkeypatch, package):
    """Issue 17: it was `internal error: OnnxExporterError` (exit 70); issue 15: the exporter
    torch recommends needs onnxscript too."""
    pytest.importorskip("torch")
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == package else real(name, *a))
    spec = write(tmp_path, "tiny.res", TINY)
    r = run("compile", spec, "--emit", "onnx", "-o", str(tmp_path / "t.onnx"))
    assert r.exit_code == 1 and r.stderr.startswith(
        f"error[E602]: ONNX export needs the `{package}` package")
    assert "pip install onnx onnxscript onnxruntime" in r.stderr
    assert not (tmp_path / "t.onnx").exists()
