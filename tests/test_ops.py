"""The op table (resdsl/ops.py): every record complete, the compiler asking it instead of
comparing op names, and a new op joining through one record."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from resdsl import check, ops
from resdsl.ops import BOOL, OPS, PAIR, REQUIRED, Look

ROOT = Path(__file__).resolve().parent.parent
TYPES = {ops.INT, ops.POS, ops.NONNEG, PAIR, ops.FLOAT, ops.PROB, BOOL, "str"}


@pytest.mark.parametrize("name", list(OPS))
def test_every_record_is_complete(name):
    op = OPS[name]
    assert op.name == name and op.doc and op.kind in ("io", "layer", "merge", "shortcut", "fused")
    assert len(set(op.attrs)) == len(op.attrs)
    for p in op.params:
        assert p.type in TYPES, (name, p)
        assert not p.flag or p.type == BOOL, (name, p)
        assert p.default is REQUIRED or p.default is None or op.default(p.name) is not None
    # every op but the ends and the merges (an operator in forward) lowers to a module
    assert (op.torch is None) == (op.kind in ("io", "merge")), name
    assert (op.infix is not None) == (op.kind == "merge"), name
    assert isinstance(op.look, Look)


def test_the_spec_vocabulary_comes_from_the_table():
    assert list(ops.LAYERS) == [k for k, op in OPS.items() if op.kind == "layer"]
    assert ops.MERGES == ("add", "mul") and ops.DEFAULT_MERGE in ops.MERGES
    assert set(ops.SHORTCUTS) == {"identity", "pad", "projection", "avgdown", "none"}


def _op_comparisons(path: Path) -> list[str]:
    """Comparisons (==, !=, in, not in) with a string constant, or a tuple / list / set of
    them, that names an op."""
    def strings(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [s for e in node.elts for s in strings(e)]
        return []
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            values = strings(node.left) + [s for c in node.comparators for s in strings(c)]
            if any(v in OPS for v in values):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_outside_the_passes_the_compiler_asks_the_table():
    """Issue 13: at most 8 comparisons on op names in resdsl/ and backends/ outside the
    passes (fuse.py and fold.py pattern-match the ops they rewrite)."""
    files = [p for d in ("resdsl", "backends") for p in sorted((ROOT / d).glob("*.py"))
             if p.name not in ("fuse.py", "fold.py")]
    found = [c for p in files for c in _op_comparisons(p)]
    assert len(found) <= 8, "\n".join(found)


# ---- a new merge joins through one record ----------------------------------------------------

GATED = """
block gated(planes) {
  residual { conv planes, 3x3; bn }
  shortcut identity
  merge sub
  relu
}
network net {
  input 4 x 8 x 8
  stage s = 2 x gated(4)
}
"""


@pytest.fixture
def sub(monkeypatch):
    """A merge written as one more record: `sub`, x - y (the `mul` of issue 14 joined the
    same way)."""
    record = dataclasses.replace(
        OPS["add"], name="sub", doc="the residual branch less the shortcut", infix="-",
        fusion="", look=Look("#ffffff", "#333333", lambda a, table: "\u2212", junction=True))
    monkeypatch.setitem(OPS, "sub", record)
    monkeypatch.setattr(check, "MERGES", (*ops.MERGES, "sub"))
    return record


def test_a_new_merge_op_joins_without_touching_the_backends(sub):
    torch = pytest.importorskip("torch")
    import resdsl
    from resdsl import ir
    from resdsl.backends import draw, summary
    from resdsl.pipeline import check_text

    g = check_text(GATED).graphs["net"]
    assert g.nodes["s.0.sub"]["op"] == "sub" and g.nodes["s.0.sub"]["elementwise"] == 4 * 8 * 8
    assert "s.0.sub = sub() : 4x8x8 <- s.0.bn1, input [identity]" in ir.to_text(g)
    assert "sub" in summary.table(g, depth=3)
    assert 'label="\u2212"' in draw.to_dot(g, "block").source
    source, _, lowered = resdsl.emit_python(GATED)
    assert "out -= identity" in source          # not fused: bn_act adds, it does not subtract
    assert any(d["op"] == "sub" for _, d in lowered.nodes(data=True))
    model = resdsl.build(GATED).eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        block = model.s[0]
        want = torch.relu(block.bn1(block.conv1(x)) - x)
        torch.testing.assert_close(block(x), want)


def test_docs_ir_md_is_generated_from_the_table():
    """docs/ir.md is what docs/gen_ir.py makes of the op table now (run it after a change)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("gen_ir", ROOT / "docs" / "gen_ir.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (ROOT / "docs" / "ir.md").read_text(encoding="utf-8") == gen.render(), \
        "docs/ir.md is stale: python docs/gen_ir.py"
    for op in OPS:
        assert f"| `{op}`: " in gen.render()


def test_the_language_reference_lists_every_layer():
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    for name in ops.LAYERS:
        assert f"| `{name}` |" in text, name
