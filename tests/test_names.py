"""Any name the grammar accepts either compiles to Python that imports, constructs and runs in
every emit mode (python, --standalone, --inference, --no-fuse; resdsl.build and
resdsl.optimize), with the spec's names as its state_dict keys, or is refused with a located
error (issue 16).

Generated identifiers (class names, constructor parameters, slots) come from one
backends.pytorch.Namespace, which knows what the module-level code and the inlined runtime
bind; submodule attributes stay the spec's names, and the ones that would collide with a name
the generated classes define are E210.
"""
from __future__ import annotations

import importlib.util
import sys

import pytest

torch = pytest.importorskip("torch")
from click.testing import CliRunner
from resdsl.backends.pytorch import Namespace, _runtime_names

import resdsl
from resdsl.cli import main
from resdsl.errors import ResdslError
from resdsl.pipeline import check_text

# One spec with a slot in every role a name can take. The post-merge conv's width is no
# block parameter, so its constructor parameter is named after its slot (the label's).
SPEC = """
block BLOCK(PARAM, stride = 1) {
  residual {
    conv PARAM, 3x3, stride = stride; bn; relu
    conv PARAM, 3x3
    bn(zero_init)
  }
  shortcut projection
  merge add
  relu
  BLABEL: conv 2 * PARAM, 1x1
}
network NET(num_classes = 10) {
  input 3 x 8 x 8
  conv 8, 3x3
  TLABEL: bn
  relu
  KEY.0: conv 8, 1x1
  KEY.1: bn
  stage STAGE = 2 x BLOCK(8)
  stage layer2 = 1 x BLOCK(16, stride = 2)
  avgpool: avgpool
  fc: fc num_classes
}
"""
DEFAULTS = {"BLOCK": "blk", "PARAM": "planes", "BLABEL": "post", "NET": "net",
            "TLABEL": "top", "KEY": "deep", "STAGE": "layer1"}
ROLES = {"network": "NET", "block": "BLOCK", "block parameter": "PARAM",
         "block label": "BLABEL", "top-level label": "TLABEL", "key path": "KEY",
         "stage": "STAGE"}

KEYWORDS = ["class", "def", "lambda", "None", "True", "return", "import", "if", "not",
            "block", "network", "stage", "input", "x"]
BUILTINS = ["print", "super", "object", "type", "len"]
DUNDERS = ["__init__", "__class__", "__dict__", "__x__", "__import__", "__builtins__",
           "__module__", "__qualname__"]
UNDERSCORES = ["_", "__", "_1", "__x", "_2x", "__1"]
RUNTIME = ["torch", "nn", "F", "KERNELS", "ENV", "HAS_TRITON", "bn_act", "BatchNormAct2d",
           "init_weights", "projection", "OrderedDict", "FOLDED", "from_trained", "forward",
           "training", "self", "zero_init", "downsample", "in_channels", "kernels",
           "identity", "features"]
NAMES = KEYWORDS + BUILTINS + DUNDERS + UNDERSCORES + RUNTIME

MODES = {"python": {}, "standalone": {"standalone": True}, "inference": {"inference": True},
         "no-fuse": {"fuse": False}}


def spec(role: str, name: str) -> str:
    text = SPEC
    for slot, default in DEFAULTS.items():
        text = text.replace(slot, name if ROLES[role] == slot else default)
    return text


def refusal(text: str) -> ResdslError | None:
    """The error `resdsl check`, or else the PyTorch backend's own check (E210), gives."""
    try:
        check_text(text)
        resdsl.emit_python(text)   # the backend's own check (E210) runs before it emits
    except ResdslError as e:
        return e
    return None


def load(source: str, cls: str):
    namespace = {"__name__": "resdsl_test_names"}
    exec(compile(source, "<test_names>", "exec"), namespace)  # noqa: S102 - generated code
    return namespace[cls]


def run(model, shape) -> None:
    """A forward on a batch of two 3x8x8 inputs gives the output shape the graph says."""
    with torch.no_grad():
        y = model(torch.randn(2, 3, 8, 8))
    assert tuple(y.shape) == (2, *shape)


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("name", NAMES)
def test_a_name_compiles_in_every_mode_or_is_refused_where_it_stands(role, name):
    text = spec(role, name)
    err = refusal(text)
    if err is not None:
        assert err.span is not None and err.code, (err.code, err.message)
        return
    torch.manual_seed(0)
    built = resdsl.build(text)
    keys = list(built.state_dict())
    for mode, options in MODES.items():
        source, cls, g = resdsl.emit_python(text, **options)
        shape = g.nodes["output"]["shape"]
        model = load(source, cls)()
        if mode == "inference":
            model = load(source, cls).from_trained(built.state_dict())
        else:
            model.eval()
        run(model, shape)
        if mode == "python":
            assert list(model.state_dict()) == keys
    assert all(k.split(".")[0] in {"conv1", "top", "relu1", "deep", "layer1", "layer2",
                                   "avgpool", "fc", name} for k in keys)
    run(built.eval(), shape)
    run(resdsl.optimize(built), shape)


@pytest.mark.parametrize("net,blk", [("_1", "_2"), ("__x", "_"), ("_9", "__2"), ("__", "_x")])
def test_class_names_are_identifiers(net, blk):
    """`_camel` drops underscores: `_1` was `class 1(nn.Module)`; a leading digit keeps a `_`."""
    text = (f"block {blk}(planes) {{ conv planes, 3x3 }}\n"
            f"network {net} {{ input 3 x 8 x 8; conv 8, 3x3; stage s = {blk}(8) }}\n")
    for options in MODES.values():
        source, cls, _ = resdsl.emit_python(text, **options)
        classes = [line.split("(")[0][6:] for line in source.splitlines()   # (any base:
                   if line.startswith("class ") and line.endswith("):")]    # FusedModule)
        assert cls in classes and all(c.isidentifier() and not c.startswith("__")
                                      for c in classes), classes
        assert load(source, cls)().eval()(torch.randn(1, 3, 8, 8)).shape == (1, 8, 8, 8)
    assert resdsl.emit_python(text)[1] == {"_1": "_1", "__x": "X", "_9": "_9", "__": "Block"}[net]


def test_a_network_named_like_a_runtime_name_is_renamed_in_every_mode():
    text = "network KERNELS { input 3 x 8 x 8; conv 8, 3x3; bn; relu }"
    for options in MODES.values():
        source, cls, _ = resdsl.emit_python(text, **options)
        assert cls == "KERNELS2"
        load(source, cls)().eval()(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("label", ["__x", "_", "__", "__import__", "__builtins__", "__x__"])
def test_a_parameter_named_after_a_label_is_not_mangled(label):
    """A constructor parameter named after its slot (`__x_out`) would be `_B__x_out` inside
    the class body: the name the namespace gives it has at most one leading underscore."""
    text = (f"block b(planes) {{ {label}: conv 2 * planes, 3x3 }}\n"
            "network n { input 3 x 8 x 8; stage s = b(4); stage t = b(8) }\n")
    source, cls, _ = resdsl.emit_python(text)
    assert "def __init__(self, in_channels: int, " in source
    assert "(self, __" not in source and ", __" not in source.split("class N(")[0]
    model = load(source, cls)()
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 16, 8, 8)
    assert {k.split(".")[2] for k in model.state_dict()} == {label}


@pytest.mark.parametrize("first,second", [("a.0", "a_0"), ("0", "n0")])
def test_labels_with_one_slot_key_keep_their_own_slots(first, second):
    """`a.0` and `a_0` (and `0` and `n0`) both made the slot `a_0_out`: one constructor
    parameter for two layers of different widths."""
    text = (f"block b(planes) {{\n  {first}: conv planes, 1x1\n  {second}: conv 2 * planes, "
            "1x1\n  relu\n}\nnetwork n {\n  input 3 x 8 x 8\n  stage s = b(4)\n  stage t = "
            "b(8)\n}\n")
    model = resdsl.build(text, fuse=False)
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 16, 8, 8)
    layers = dict(model.t[0].named_modules())
    assert layers[first].in_channels == 8 and layers[first].out_channels == 8
    assert layers[second].out_channels == 16


@pytest.mark.parametrize("label", ["__x", "_", "KERNELS", "class", "_1", "a.0", "init_weights"])
def test_a_nested_block_label(label):
    text = ("block inner(c) { conv 2 * c, 3x3; bn; relu }\n"
            f"block b(planes) {{ conv planes, 1x1\n  {label}: inner(planes)\n"
            "  conv planes, 1x1 }\n"
            "network n { input 3 x 8 x 8; stage s = b(4); stage t = b(8) }\n")
    for options in MODES.values():
        source, cls, _ = resdsl.emit_python(text, **options)
        assert load(source, cls)().eval()(torch.randn(1, 3, 8, 8)).shape == (1, 8, 8, 8)
    model = resdsl.build(text)
    assert f"s.0.{label}.conv1.weight" in model.state_dict()
    assert resdsl.optimize(model)(torch.randn(1, 3, 8, 8)).shape == (1, 8, 8, 8)


@pytest.mark.parametrize("name", ["FOLDED", "from_trained"])
def test_the_network_class_names_are_e210_at_the_top_level_only(name):
    for text in (f"network n {{ input 3 x 8 x 8; conv 8, 3x3; {name}: bn; relu }}",
                 (f"block b(c) {{ conv c, 3x3 }}\nnetwork n {{ input 3 x 8 x 8; stage {name} "
                  "= b(8) }")):
        with pytest.raises(ResdslError) as err:
            resdsl.emit_python(text, inference=True)
        assert err.value.code == "E210" and err.value.span is not None
        assert f"'{name}'" in err.value.message and "network class" in err.value.message
    inside = f"block b(c) {{ conv c, 3x3; {name}: bn }}\nnetwork n {{ input 3 x 8 x 8; " \
             "stage s = b(8) }"
    fast = resdsl.optimize(resdsl.build(inside))
    assert f"s.0.{name}.weight" not in fast.state_dict()   # folded into the conv
    assert fast(torch.randn(1, 3, 8, 8)).shape == (1, 8, 8, 8)


def test_the_namespace_knows_the_standalone_runtime():
    names = _runtime_names()
    # read from the source: definitions, constants, imports and globals bound in functions
    assert {"KERNELS", "ENV", "HAS_TRITON", "bn_act", "BatchNormAct2d", "init_weights",
            "projection", "fold_state_dict", "F", "torch", "nn", "os", "triton", "tl",
            "RESIDUAL_AT", "TILE_ELEMENTS"} <= names
    ns = Namespace.module()
    assert [ns.create(c) for c in ("KERNELS", "KERNELS", "1", "__x", "print", "None", "A")] == \
           ["KERNELS2", "KERNELS3", "_1", "_x", "print2", "None2", "A"]
    local = ns.scope({"planes"})
    assert local.create("planes", "_") == "planes_2" and "planes" not in ns
    assert local.create("__x_out", "_") == "_x_out"


def test_the_cli_output_imports_as_a_module(tmp_path, monkeypatch):
    spec_file = tmp_path / "n.res"
    spec_file.write_text("block _2(planes) { __x: conv planes, 3x3; bn; relu }\n"
                         "network _1 { input 3 x 8 x 8; stage s = _2(4); stage t = _2(8) }\n",
                         encoding="utf-8")
    for i, flags in enumerate([[], ["--standalone"], ["--inference"], ["--no-fuse"]]):
        out = tmp_path / f"m{i}.py"
        r = CliRunner().invoke(main, ["compile", str(spec_file), "-o", str(out), *flags])
        assert r.exit_code == 0, r.output
        loaded = importlib.util.spec_from_file_location(f"resdsl_test_names_m{i}", out)
        module = importlib.util.module_from_spec(loaded)
        monkeypatch.setitem(sys.modules, loaded.name, module)
        loaded.loader.exec_module(module)
        model = module._1().eval()
        assert model(torch.randn(1, 3, 8, 8)).shape == (1, 8, 8, 8)
        assert all(".__x." in k for k in model.state_dict() if "bn" not in k)


def test_the_static_module_attribute_names_cover_the_installed_torch():
    """`resdsl check` tests names against NN_MODULE_ATTRS without importing torch: it must
    hold every attribute an nn.Module instance of this torch has."""
    from torch import nn

    from resdsl.backends.pytorch import NN_MODULE_ATTRS
    import torch._dynamo  # noqa: F401 - it patches nn.Module with names of its own
    torch_names = {n for n in dir(nn.Module()) if not n.startswith("___")}  # dynamo's own
    assert torch_names <= NN_MODULE_ATTRS


@pytest.mark.parametrize("name", ["_parameters", "_modules", "_buffers", "training", "forward",
                                  "FOLDED"])
def test_check_rejects_what_pytorch_reserves_without_importing_torch(name):
    """Issue 16: `_parameters: conv ...` passed check and then failed in add_module."""
    import subprocess
    import sys
    code = (f"import sys\nfrom resdsl.pipeline import check_text\nfrom resdsl.errors import "
            f"ResdslError\ntry:\n    check_text('network n {{\\n  input 3 x 8 x 8\\n  {name}: "
            f"conv 4, 3x3\\n}}\\n')\nexcept ResdslError as e:\n    print(e.code, e.span.line)\n"
            f"print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60).stdout.split()
    assert out == ["E210", "3", "False"]


# ---- found by the name campaign (benchmarks/fuzz.py --names) --------------------------------

SHORTCUT = """block b(planes, stride = 1) {
  residual { conv planes, 3x3, stride = stride; bn; relu }
  LABEL: shortcut projection
  merge add
}
network n { input 3 x 8 x 8; stage s = b(4); stage t = 2 x b(8, stride = 2) }
"""


@pytest.mark.parametrize("label", ["self", "nn", "torch", "super", "projection", "x",
                                   "in_channels", "0", "7", "class", "__x", "_", "None",
                                   "init_weights", "FusedModule", "B", "downsample"])
def test_a_shortcut_label_is_a_key_not_a_parameter_name(label):
    """The shortcut's label was the constructor parameter's name and `self.LABEL`:
    `self` was a duplicate argument, `nn` shadowed torch.nn in __init__, `0` and `class`
    were syntax errors, `__x` was mangled. The parameter now comes from the namespace;
    the label stays the state_dict key. Stage t's second block has no projection, so the
    class reads `x if shortcut is None`."""
    text = SHORTCUT.replace("LABEL", label)
    for options in MODES.values():
        source, cls, _ = resdsl.emit_python(text, **options)
        model = load(source, cls)().eval()
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 8, 4, 4)
    keys = resdsl.build(text).state_dict()
    assert f"t.0.{label}.0.weight" in keys and f"s.0.{label}.0.weight" in keys
    assert not any(f"t.1.{label}" in k for k in keys)


@pytest.mark.parametrize("label", ["forward", "zero_grad", "_parameters", "zero_init",
                                   "_resdsl_source", "training", "__init__"])
def test_a_shortcut_label_that_nn_module_uses_is_e210(label):
    """`zero_grad: shortcut ...` compiled, and forward called the method (TypeError)."""
    with pytest.raises(ResdslError) as err:
        check_text(SHORTCUT.replace("LABEL", label))
    assert err.value.code == "E210" and err.value.span.line == 3, err.value
    assert "shortcut" in err.value.message


@pytest.mark.parametrize("label", ["a.b", "0.1", "downsample.0", "123456789.007"])
def test_a_dotted_shortcut_label_is_refused_by_check(label):
    """`a.b: shortcut projection` passed check, then the emitter wrote `a.b=` as a keyword
    argument (SyntaxError; KeyError in str.format for a pad shortcut)."""
    for kind in ("projection", "pad", "{ conv planes, 1x1, stride = stride }"):
        text = SHORTCUT.replace("LABEL", label).replace("shortcut projection",
                                                        f"shortcut {kind}")
        with pytest.raises(ResdslError) as err:
            check_text(text)
        assert err.value.code == "E202" and err.value.span.line == 3, err.value


@pytest.mark.parametrize("where,label", [
    ("top", "a.forward"), ("top", "a.append"), ("top", "a.pop"), ("top", "a.0.__len__"),
    ("top", "k.zero_init"), ("block", "O0.get_parameter.__setattr__"),
    ("block", "x._buffers"), ("shortcut", "append"), ("shortcut", "forward"),
    ("shortcut", "zero_init"), ("shortcut", "_modules")])
def test_a_key_of_an_nn_sequential_that_it_uses_is_e210(where, label):
    """A key path's inner names and a custom shortcut's layer labels are keys of an
    nn.Sequential: `a.forward`, `a.append` and `O0.get_parameter.__setattr__` passed check
    and failed at construction (KeyError: attribute already exists); `k.zero_init` failed
    in init_weights(zero_init_residual=True), which reads every module's `zero_init`."""
    top, inner, sc = ("bn", "conv planes, 3x3", "conv planes, 1x1")
    if where == "top":
        top = f"{label}: bn"
    elif where == "block":
        inner = f"{label}: conv planes, 3x3"
    else:
        sc = f"{label}: conv planes, 1x1"
    text = (f"block b(planes) {{\n  residual {{\n    {inner}\n  }}\n  shortcut {{\n    {sc}\n"
            f"  }}\n  merge add\n}}\nnetwork n {{\n  input 3 x 8 x 8\n  conv 4, 3x3\n  {top}\n"
            "  stage s = b(8)\n}\n")
    with pytest.raises(ResdslError) as err:
        check_text(text)
    assert err.value.code == "E210" and err.value.span is not None, err.value
    assert err.value.span.line == {"top": 13, "block": 3, "shortcut": 6}[where]
    fine = text.replace(label, label.replace(".", "_") + "_")
    model = resdsl.build(fine, zero_init_residual=True)
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 8, 8, 8)


def test_a_layer_labelled_reset_parameters_builds():
    """resdsl.build reset every module with a `reset_parameters` attribute: a label
    `reset_parameters.0` made the network's container one, and build called it."""
    text = ("network n { input 3 x 8 x 8; reset_parameters.0: conv 8, 3x3; bn; relu; "
            "reset_parameters.1: conv 4, 1x1 }")
    model = resdsl.build(text)
    assert sum(p.numel() for p in model.parameters()) == 3 * 8 * 9 + 16 + 32
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 4, 8, 8)


@pytest.mark.parametrize("text", [
    "stage head = b(8)\n  head { avgpool; fc 10 }",
    "head { avgpool; fc 10 }\n  stage head = b(8)",
    "head: b(8)\n  head { avgpool; fc 10 }",
    "stem { conv 4, 3x3 }\n  stage stem = 2 x b(8)",
    "if true { stem { conv 4, 3x3 } }\n  stem: b(8)"])
def test_a_stage_named_like_the_network_s_group_is_e202(text):
    """`stage head = ...` beside a `head { }` group: both were the IR scope `head`, and the
    stage vanished from the module (90 parameters built, 306 in the summary)."""
    spec_text = f"block b(c) {{ conv c, 3x3 }}\nnetwork n {{\n  input 3 x 8 x 8\n  {text}\n}}\n"
    with pytest.raises(ResdslError) as err:
        check_text(spec_text)
    assert err.value.code == "E202" and err.value.span is not None
    assert "group" in err.value.message


def test_a_stage_or_layer_named_head_without_the_group_compiles():
    text = ("block b(c) { conv c, 3x3 }\nnetwork n { input 3 x 8 x 8; stem: conv 4, 3x3; "
            "stage head = b(8); head { avgpool; fc 10 } }")
    with pytest.raises(ResdslError):
        check_text(text)
    text = text.replace("head { avgpool; fc 10 }", "avgpool; fc 10")
    model = resdsl.build(text)
    assert "head.0.conv1.weight" in model.state_dict() and "stem.weight" in model.state_dict()
    text = ("network n { input 3 x 8 x 8; head: conv 4, 3x3; head.x: bn; "
            "head { avgpool; fc 10 } }")
    with pytest.raises(ResdslError):   # `head` is a layer and the container of `head.x`
        check_text(text)
    model = resdsl.build(text.replace("head.x: ", ""))
    assert sum(p.numel() for p in model.parameters()) == 108 + 8 + 50


def test_the_reserved_names_cover_what_generated_classes_define():
    """Every class attribute of a generated block, network and container (as resdsl.build
    loads them, with the runtime's own) is a name check refuses: nn.Module's and
    nn.Sequential's lists, and the few the generated classes add."""
    from resdsl.backends.pytorch import NN_MODULE_ATTRS, NN_SEQUENTIAL_ATTRS
    text = ("block b(planes) { residual { conv planes, 3x3; bn(zero_init) }\n"
            "  shortcut projection(always)\n  merge add }\n"
            "network n { input 3 x 8 x 8; k.0: conv 4, 3x3; k.1: bn; stage s = b(8) }")
    model = resdsl.build(text)
    fast = resdsl.optimize(model)
    extra = set()
    for m in [*model.modules(), *fast.modules()]:
        names = {n for n in dir(type(m)) if not n.startswith("___")}
        if isinstance(m, torch.nn.Sequential):
            assert names <= NN_SEQUENTIAL_ATTRS, names - NN_SEQUENTIAL_ATTRS
        elif type(m).__module__ == "resdsl_generated":
            extra |= names - NN_MODULE_ATTRS
    assert extra == {"zero_init", "_resdsl_source", "FOLDED", "from_trained"}, extra
    # and what resdsl.build sets on the network it returns
    extra |= set(vars(model)) - set(vars(torch.nn.Module())) - {"_resdsl_source"}
    assert extra >= {"resdsl_graph", "resdsl_options"}, extra
    for name in sorted(extra):
        with pytest.raises(ResdslError) as err:
            check_text(f"network n {{ input 3 x 8 x 8; {name}: conv 4, 3x3 }}")
        assert err.value.code == "E210"


@pytest.mark.parametrize("name", ["resdsl_graph", "resdsl_options", "feature_info"])
def test_what_build_sets_on_the_model_is_e210_at_the_top_level(name):
    """A top-level label `resdsl_graph` compiled, and resdsl.build failed: TypeError,
    cannot assign 'DiGraph' as child module. Inside a block, or as an inner key, it is fine."""
    with pytest.raises(ResdslError) as err:
        check_text(f"network n {{ input 3 x 8 x 8; {name}: conv 4, 3x3 }}")
    assert err.value.code == "E210" and err.value.span.line == 1
    text = (f"block b(c) {{ {name}: conv c, 3x3 }}\nnetwork n {{ input 3 x 8 x 8; "
            f"k.{name}: conv 4, 3x3; stage s = b(8) }}")
    model = resdsl.build(text, features=["s"])
    assert [f.shape for f in model(torch.randn(1, 3, 8, 8))] == [(1, 8, 8, 8)]
    assert f"s.0.{name}.weight" in model.state_dict()
