"""Limits and safety (issue 7, item 3), one test or more each:

- expansion limits: layers (E501, --max-layers), parameters (E505, --max-params) and MACs
  (E506, --max-macs), checked after shape inference and before PyTorch allocates anything;
- recursion and nesting: brackets and expression depth (E104), nested block instances and
  `use` chains (E502), blocks that use themselves (E205), all without Python recursion
  (long chains check in linear time);
- `use` reads only the bundled libraries and files inside the spec's folder (E211), unless
  --allow-any-path / allow_any_path=True; `check_text(text, file=path)` resolves against
  the file's folder;
- user text is never evaluated as Python, and names cannot inject code into the output;
- compiling a spec twice gives byte-identical outputs, in one process and across processes
  with different hash seeds.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from click.testing import CliRunner

import resdsl
from resdsl import ir
from resdsl.backends import draw, summary
from resdsl.cli import main
from resdsl.elaborate import Elaborator
from resdsl.errors import ResdslError
from resdsl.loader import load_text
from resdsl.pipeline import Limits, check_file, check_text

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def failure(text: str, file: str = "<string>", **limits) -> ResdslError:
    with pytest.raises(ResdslError) as info:
        check_text(text, file, Limits(**limits))
    return info.value


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


# ---- layers, parameters, MACs ---------------------------------------------------------------

LONG = ("block b(p) {\n  conv p, 3x3\n  relu\n}\n\nnetwork n {\n  input 3 x 8 x 8\n"
        "  stage s = 200 x b(8)\n}\n")
# 40,000-channel convs: 14.4 billion parameters, 1.5e13 MACs; nothing may allocate them
WIDE = "network wide {\n  input 3 x 32 x 32\n  conv 40000, 3x3\n  conv 40000, 3x3\n}\n"


def test_layer_limit_and_its_flag(tmp_path):
    assert check_text(LONG).graphs["n"]
    err = failure(LONG, max_layers=100)
    assert err.code == "E501" and "--max-layers" in err.hint
    spec = tmp_path / "long.res"
    spec.write_text(LONG)
    assert cli("check", str(spec), "--max-layers", "100").exit_code == 1
    assert cli("check", str(spec), "--max-layers", "500").exit_code == 0


def test_parameter_limit_names_its_flag():
    err = failure(WIDE)
    assert err.code == "E505"
    assert "14,401,080,000 parameters" in err.message and "1,000,000,000" in err.message
    assert "--max-params" in err.hint and "max_params=" in err.hint
    assert err.span is not None and err.span.line == 1   # the network


def test_mac_limit_names_its_flag():
    err = failure(WIDE, max_params=10 ** 11)
    assert err.code == "E506"
    assert "multiply-accumulates" in err.message
    assert "--max-macs" in err.hint and "max_macs=" in err.hint
    g = check_text(WIDE, limits=Limits(max_params=10 ** 11, max_macs=10 ** 14)).graphs["wide"]
    assert g.nodes["output"]["shape"] == (40000, 32, 32)


def test_limits_apply_per_input_size():
    """MACs grow with the input: ResNet-50 is fine at 224, not at 4096 x 4096."""
    assert check_file(str(SPECS / "resnet.res"), networks=["resnet50"])
    err = None
    with pytest.raises(ResdslError) as info:
        check_file(str(SPECS / "resnet.res"), networks=["resnet50"],
                   input_shape=(3, 4096, 4096))
    err = info.value
    assert err.code == "E506"
    assert check_file(str(SPECS / "resnet.res"), Limits(max_macs=10 ** 13),
                      networks=["resnet50"], input_shape=(3, 4096, 4096))


def test_limits_are_checked_before_pytorch_allocates(monkeypatch):
    pytest.importorskip("torch")
    from resdsl.backends import pytorch

    def no(*a, **k):
        raise AssertionError("the backend ran")
    monkeypatch.setattr(pytorch, "instantiate", no)
    monkeypatch.setattr(pytorch, "emit", no)
    start = time.perf_counter()
    for kw, code in (({}, "E505"), ({"max_params": 10 ** 11}, "E506")):
        with pytest.raises(ResdslError) as info:
            resdsl.build(WIDE, **kw)
        assert info.value.code == code
        with pytest.raises(ResdslError) as info:
            resdsl.emit_python(WIDE, **kw)
        assert info.value.code == code
    assert time.perf_counter() - start < 10


def test_limit_flags_on_every_command(tmp_path):
    spec = tmp_path / "wide.res"
    spec.write_text(WIDE)
    raised = ["--max-params", str(10 ** 11), "--max-macs", str(10 ** 14)]
    for cmd in (["check"], ["summary"], ["compile", "--emit", "ir"], ["draw", "-o",
                                                                      str(tmp_path / "w.dot")]):
        r = cli(*cmd, str(spec))
        assert r.exit_code == 1 and "E505" in r.output, (cmd, r.output)
        r = cli(*cmd, str(spec), *raised)
        assert r.exit_code == 0, (cmd, r.output)


def test_api_keywords_raise_the_limits():
    source, cls, g = resdsl.emit_python(WIDE, max_params=10 ** 11, max_macs=10 ** 14) \
        if _has_torch() else (None, None, None)
    if source is not None:
        assert "nn.Conv2d(40000, 40000" in source.replace("in_channels", "")


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ---- recursion and nesting depth ------------------------------------------------------------

def test_brackets_and_expressions_nested_too_deeply():
    assert failure("n = " + "(" * 65 + "1" + ")" * 65 + "\n").code == "E104"
    assert failure("n = " + "-" * 201 + "1\n").code == "E104"
    check_text("n = " + "(" * 60 + "1" + ")" * 60 + "\n")


def test_block_instances_nested_too_deeply():
    text = "block twice(f) {\n  f f\n}\n\nnetwork n {\n  input 3 x 8 x 8\n  twice twice\n}\n"
    assert failure(text).code == "E502"
    chain = "".join(f"block b{i}(p) {{\n  b{i + 1} p\n}}\n" for i in range(40))
    chain += "block b40(p) {\n  relu\n}\nnetwork n {\n  input 3 x 8 x 8\n  b0 3\n}\n"
    assert failure(chain).code == "E502"


def test_recursive_blocks_and_long_chains_check_in_linear_time():
    """Regression: recursion was found by one walk per block with copied paths (cubic): a
    chain of 4,000 blocks took 72 s."""
    assert failure("block a(p) {\n  b p\n}\nblock b(p) {\n  a p\n}\n").code == "E205"
    n = 3000
    chain = "".join(f"block b{i}(p) {{\n  b{i + 1} p\n}}\n" for i in range(n))
    start = time.perf_counter()
    check_text(chain + f"block b{n}(p) {{\n  relu\n}}\n")
    err = failure(chain + f"block b{n}(p) {{\n  b0 p\n}}\n")
    assert err.code == "E205" and err.message.count("->") == n + 1
    assert time.perf_counter() - start < 20


def test_use_chain_too_deep(tmp_path):
    """Regression: a chain of 3,000 files using each other was a RecursionError from the
    API (the CLI printed E502 for it as a generic "nested too deeply")."""
    def chain(n: int) -> Path:
        for i in range(n):
            body = f'use "a{i + 1}.res"\n' if i < n - 1 else ""
            (tmp_path / f"a{i}.res").write_text(body + f"c{i} = {i}\n")
        return tmp_path / "a0.res"
    check_file(str(chain(60)))
    with pytest.raises(ResdslError) as info:
        check_file(str(chain(200)))
    assert info.value.code == "E502" and "`use` chain" in info.value.message


def test_long_constant_chains_need_no_recursion():
    text = "".join(f"c{i} = c{i + 1} + 1\n" for i in range(20000)) + "c20000 = 1\n"
    check_text(text)


class _Ordered(Elaborator):
    """Constants the way they were evaluated before the direct path: always in order."""

    def constant(self, let, scope):
        key = id(let)
        if key in self.failed:
            raise self.failed[key]
        return self.constants[key] if key in self.constants else self.ordered(let, scope)


def _constants(elab: Elaborator, program) -> list:
    out = []
    for item in program.root.module.items:
        try:
            out.append(elab.constant(item, program.root))
        except ResdslError as e:
            out.append((e.code, e.message, e.span))
    return out


OPS = ["+", "-", "*", "/", "//", "%"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.sampled_from(OPS), st.sampled_from(OPS),
                          st.integers(-1, 2), st.booleans()), min_size=1, max_size=10))
def test_constants_evaluated_directly_equal_the_ordered_way(lets):
    """Elaborator.constant evaluates a constant directly first (no walk to order it: issue
    16's 10 MB spec); forward references, cycles and errors (before or after the use of a
    let with no value yet) fall back to the ordered way, which must give the same values
    and the same errors, first to last."""
    n = len(lets)
    lines = []
    for i, (j, op, op2, k, name_first) in enumerate(lets):
        ref, part = (f"c{j}" if j < n else str(j)), f"(2 {op2} {k})"
        lines.append(f"c{i} = {ref} {op} {part}\n" if name_first else f"c{i} = {part} {op} {ref}\n")
    text = "".join(lines)
    program = load_text(text)
    assert _constants(Elaborator(program), program) == _constants(_Ordered(program), program)


# ---- `use` paths ----------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path):
    """proj/net.res (the spec), proj/lib/common.res, proj/sub/, outside/secret.res."""
    (tmp_path / "proj" / "lib").mkdir(parents=True)
    (tmp_path / "proj" / "sub").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "proj" / "lib" / "common.res").write_text("width = 16\n")
    (tmp_path / "outside" / "secret.res").write_text("width = 99\n")
    return tmp_path


NET = "network n {{\n  input 3 x 8 x 8\n  conv {w}, 3x3\n}}\n"


def _spec(tree: Path, use: str, name: str = "net.res") -> Path:
    path = tree / "proj" / name
    path.write_text(f'use "{use}"\n' + NET.format(w="width"))
    return path


@pytest.mark.parametrize("use", ["lib/common.res", "./lib/common.res", "sub/../lib/common.res"])
def test_use_inside_the_spec_folder(tree, use):
    assert check_file(str(_spec(tree, use))).graphs["n"]


@pytest.mark.parametrize("use,why", [
    ("../outside/secret.res", "outside the spec's folder"),
    ("lib/../../outside/secret.res", "outside the spec's folder"),
    ("ABS", "an absolute path"),
])
def test_use_outside_the_spec_folder_is_e211(tree, use, why):
    use = str(tree / "outside" / "secret.res") if use == "ABS" else use
    path = _spec(tree, use)
    with pytest.raises(ResdslError) as info:
        check_file(str(path))
    e = info.value
    assert e.code == "E211" and why in e.message
    assert e.span.line == 1 and "--allow-any-path" in e.hint
    # the flag lets it through, from the API and the command line
    assert check_file(str(path), Limits(allow_any_path=True)).graphs["n"]
    assert cli("check", str(path)).exit_code == 1
    assert cli("check", str(path), "--allow-any-path").exit_code == 0
    assert cli("summary", str(path), "--allow-any-path").exit_code == 0


def test_use_through_a_symlink_out_of_the_folder(tree):
    link = tree / "proj" / "link.res"
    link.symlink_to(tree / "outside" / "secret.res")
    with pytest.raises(ResdslError) as info:
        check_file(str(_spec(tree, "link.res")))
    assert info.value.code == "E211"


def test_nested_use_is_confined_to_the_root_spec_folder(tree):
    """A used file may use its neighbours inside the root's folder, not escape it."""
    (tree / "proj" / "lib" / "more.res").write_text('use "common.res"\nw2 = width\n')
    (tree / "proj" / "lib" / "bad.res").write_text('use "../../outside/secret.res"\n')
    ok = tree / "proj" / "ok.res"
    ok.write_text('use "lib/more.res"\n' + NET.format(w="w2"))
    assert check_file(str(ok)).graphs["n"]
    bad = _spec(tree, "lib/bad.res", "bad.res")
    with pytest.raises(ResdslError) as info:
        check_file(str(bad))
    assert "E211" in [e.code for e in info.value.errors]


def test_bundled_specs_and_libraries_keep_working(tree):
    for path in sorted(SPECS.glob("*.res")):
        check_file(str(path))
    # a spec elsewhere using a bundled library that uses its neighbours ("cifar.res")
    net = tree / "proj" / "mine.res"
    net.write_text("use std\nuse preact\n\nnetwork mine = preact_cifar(unit_full_preact, 1)\n")
    assert check_file(str(net)).graphs["mine"]


def test_check_text_resolves_use_against_the_files_folder(tree, monkeypatch):
    """Regression: check_text(text, file=path) resolved `use` against the current folder."""
    monkeypatch.chdir(tree / "outside")
    text = 'use "lib/common.res"\n' + NET.format(w="width")
    g = check_text(text, file=str(tree / "proj" / "net.res")).graphs["n"]
    assert g.nodes["conv1"]["shape"][0] == 16
    assert failure('use "secret.res"\n', file=str(tree / "proj" / "net.res")).code == "E207"


# ---- user text is never Python --------------------------------------------------------------

HOSTILE = """\
use std

block import(planes, stride = 1) {
  residual {
    exec: conv planes, 3x3, stride = stride
    __import__: bn
    relu
    open: conv planes, 3x3
    bn
  }
  shortcut {
    system: conv planes, 1x1, stride = stride
    getattr: bn
  }
  merge add
  self: relu
}

network class(lambda = 10) {
  input 3 x 32 x 32
  stem { os: conv 16, 3x3; torch: bn; nn: relu }
  stage def = 2 x import(16)
  stage x = 1 x import(32, stride = 2)
  stage return = 1 x import(32)
  head { super: avgpool; init_weights: fc lambda }
}
"""
CALLABLE_NAMES = {"super", "init_weights", "projection", "avg_down", "PadShortcut",
                  "BatchNormAct2d", "isinstance", "OrderedDict"}
DANGEROUS = {"eval", "exec", "compile", "__import__", "open", "getattr", "setattr", "globals",
             "locals", "vars", "os", "sys", "subprocess", "builtins", "importlib"}


def _audit(source: str) -> None:
    """The generated module is plain class definitions: calls only to known helpers, its own
    classes and attributes; no dangerous name loaded; every string a name from the spec."""
    tree = ast.parse(source)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    for node in tree.body:
        assert isinstance(node, (ast.Expr, ast.Import, ast.ImportFrom, ast.ClassDef,
                                 ast.FunctionDef, ast.Assign)), ast.dump(node)[:200]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id in CALLABLE_NAMES | classes, node.func.id
        if isinstance(node, ast.Name):
            assert node.id not in DANGEROUS, node.id
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node is not getattr(tree.body[0], "value", None):
            doc = any(isinstance(p, (ast.ClassDef, ast.FunctionDef)) and p.body and
                      getattr(p.body[0], "value", None) is node for p in ast.walk(tree))
            assert doc or re.fullmatch(r"[A-Za-z_]\w*", node.value), node.value


def test_hostile_names_compile_to_safe_python(tmp_path):
    torch = pytest.importorskip("torch")
    source, cls, _ = resdsl.emit_python(HOSTILE, "class")
    _audit(source)
    # names Python reserves go through add_module/get_submodule as string literals
    assert "self.add_module('def'," in source and "get_submodule('return')" in source
    assert "self.add_module('__import__'," in source
    model = resdsl.build(HOSTILE, "class").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_a_hostile_file_name_stays_a_comment(tmp_path):
    pytest.importorskip("torch")
    name = 'x"""\nimport os; os.system("touch PWNED")\n""".res'
    spec = tmp_path / name
    spec.write_text(HOSTILE.replace("network class(lambda = 10)", "network net(lambda = 10)"))
    out = tmp_path / "model.py"
    r = cli("compile", str(spec), "-n", "net", "-o", str(out))
    assert r.exit_code == 0, r.output
    source = out.read_text()
    _audit(source)
    proc = subprocess.run([sys.executable, str(out)], cwd=tmp_path, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "PWNED").exists()


def test_python_in_use_strings_and_comments_is_inert(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = ("# __import__('os').system('touch PWNED')\n"
            "use \"__import__('os').system('touch PWNED').res\"\n")
    assert failure(text).code == "E207"
    assert not (tmp_path / "PWNED").exists()


def test_the_compiler_has_one_exec_and_no_eval():
    """Static guarantee: nothing in resdsl evaluates text, except runtime.load_generated, which
    executes the source the PyTorch backend generated (resdsl.build, and the unpickling of a
    model it built)."""
    found = []
    for path in sorted([*(ROOT / "resdsl").glob("*.py"), *(ROOT / "backends").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("eval", "exec"):
                found.append((path.name, node.func.id))
    assert found == [("runtime.py", "exec")]


# ---- determinism ----------------------------------------------------------------------------

DET_SPEC = SPECS / "preact.res"
DET_NET = "resnet110_unit_b"


def _outputs(path: str, network: str) -> dict[str, str]:
    """Every textual output of one network: Python source, IR text and JSON, summary table
    and JSON, DOT at each level."""
    checked = check_file(path, networks=[network])
    g = checked.graphs[network]
    out = {"ir": ir.to_text(g), "json": ir.to_json(g), "summary": summary.table(g, 3),
           "summary_json": summary.to_json(g, 3)}
    for level in ("stage", "block", "layer"):
        out[f"dot_{level}"] = draw.to_dot(g, level).source
    if _has_torch():
        out["python"] = resdsl.emit_python(path, network)[0]
        out["python_standalone"] = resdsl.emit_python(path, network, standalone=True)[0]
    return out


def test_compiling_twice_is_byte_identical():
    a = _outputs(str(DET_SPEC), DET_NET)
    b = _outputs(str(DET_SPEC), DET_NET)
    assert a == b


def test_outputs_do_not_depend_on_the_hash_seed():
    script = ("import json, sys\nsys.path.insert(0, sys.argv[1])\n"
              "from tests.test_limits import _outputs\n"
              "print(json.dumps(_outputs(sys.argv[2], sys.argv[3])))\n")
    runs = []
    for seed in ("1", "2"):
        proc = subprocess.run([sys.executable, "-c", script, str(ROOT), str(DET_SPEC), DET_NET],
                              capture_output=True, text=True, cwd=ROOT, timeout=300,
                              env=dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT)))
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout))
    assert runs[0] == runs[1]
    assert runs[0] == _outputs(str(DET_SPEC), DET_NET)
