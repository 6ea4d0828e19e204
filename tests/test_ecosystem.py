"""Built models under the tools PyTorch users apply to torchvision's (issue 15): pickle and
torch.save, torch.fx and torchvision's feature extraction, TorchScript, torch.jit.trace,
ONNX whatever kernels were chosen, torch's and timm's BN converters, frozen BN, timm's
feature_info and loading a whole network's weights into a features model.

The references are the tools' own results on the model before (outputs of the eager model),
torchvision's FrozenBatchNorm2d resnet50 and timm's features_only models.
"""
from __future__ import annotations

import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import resdsl  # noqa: E402
from helpers import randomise_bn  # noqa: E402
from resdsl import kernels, runtime  # noqa: E402
from resdsl.elaborate import concrete_networks  # noqa: E402
from resdsl.errors import ResdslError  # noqa: E402
from resdsl.pipeline import load_spec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
BUNDLED = [(f.name, n) for f in sorted(SPECS.glob("*.res")) if f.name != "timm.res"
           for n in concrete_networks(load_spec(f).root)]
# every unit ordering of the fused BN: (a) bn-add-relu, (b) add-bn-relu, (c) bn-relu-add,
# (d) pre-activation with the add after a BN, (e) full pre-activation; stems, projections
UNITS = [("preact.res", f"resnet110_unit_{u}") for u in "abcde"] + [
    ("cifar.res", "resnet20"), ("preact.res", "preact_resnet18"), ("resnet.res", "resnet50")]
# the runtime's other modules: ECA and SE gates, blur pooling, drop path, deep stems
TIMM = [("timm.res", n) for n in ("ecaresnet26t", "seresnet18", "resnetblur18",
                                  "resnet18d", "resnetaa50d")]
SCRIPTED = [UNITS[i] for i in (0, 1, 2, 3, 4, 5, 7)] + TIMM


def _input(model, batch: int = 2):
    c, h, w = model.resdsl_graph.graph["input"]
    return torch.randn(batch, c, min(h, 64), min(w, 64))


def _built(spec: str, net: str, randomise: bool = True, **kw):
    torch.manual_seed(0)
    if spec == "timm.res" and net == "resnet18d":   # and a DropPath in every block
        kw.setdefault("drop_path_rate", 0.1)
    model = resdsl.build(SPECS / spec, net, **kw)
    if randomise:
        randomise_bn(model)
    return model.eval()


def _close(a, b, tol: float = 1e-5) -> None:
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ---- pickle ---------------------------------------------------------------------------------

FRESH = """
import sys, torch
model, x, want = torch.load(sys.argv[1], weights_only=False)
with torch.no_grad():
    torch.testing.assert_close(model(x), want, rtol=0, atol=0)
print(type(model).__name__, sum(p.numel() for p in model.parameters()))
"""


@pytest.mark.parametrize("kind", ["build", "optimize", "features"])
def test_torch_save_round_trips_in_a_fresh_process_without_the_spec(tmp_path, kind):
    model = _built("cifar.res", "resnet20", **({"features": ["layer2", "layer3"]}
                                              if kind == "features" else {}))
    model = resdsl.optimize(model) if kind == "optimize" else model
    x = _input(model)
    with torch.no_grad():
        want = model(x)
    torch.save((model, x, want), tmp_path / "m.pt")
    p = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "m.pt")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [type(model).__name__, str(sum(q.numel()
                                                              for q in model.parameters()))]
    again = pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        _close(again(x), want, 0)
    if kind == "features":
        assert again.feature_info.channels() == [32, 64]


def test_pickled_models_share_their_classes_and_keep_their_changes():
    model = _built("cifar.res", "resnet20")
    model.fc = nn.Linear(64, 3)   # a replaced head travels with the model
    a, b = pickle.loads(pickle.dumps(model)), pickle.loads(pickle.dumps(model))
    assert type(a) is type(b) and type(a.layer1[0]) is type(b.layer1[0])
    assert a.fc.out_features == 3
    x = _input(model)
    with torch.no_grad():
        _close(a(x), model(x), 0)


def test_a_loop_of_builds_keeps_the_lines_of_networks_in_use_only():
    """Each build's source goes into linecache (TorchScript and tracebacks read it there):
    200 distinct networks built and dropped leave those of the last 64 texts (the namespace
    cache) and of the network still in use, which still scripts."""
    import gc
    import linecache

    spec = "network n(w = 4) {\n  input 3 x 8 x 8\n  conv w, 3x3; bn; relu\n  avgpool\n  fc 10\n}\n"
    before = set(linecache.cache)
    kept = resdsl.build(spec, w=3)
    for w in range(4, 204):
        resdsl.build(spec, w=w)
    gc.collect()
    assert len(set(linecache.cache) - before) == 64 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # torch 2.14: jit is deprecated
        scripted = torch.jit.script(kept)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        _close(scripted.eval()(x), kept.eval()(x), 0)


# ---- torch.fx and torchvision's feature extraction -----------------------------------------

@pytest.mark.parametrize("spec,net", BUNDLED)
def test_fx_and_feature_extraction_on_every_bundled_network(spec, net):
    from torchvision.models.feature_extraction import (create_feature_extractor,
                                                       get_graph_node_names)
    model = _built(spec, net, randomise=False)
    x = _input(model, 1)
    with torch.no_grad():
        while not model(x).isfinite().all():   # 1,001 layers overflow float32: smaller convs
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.mul_(0.5)
    stages = [name for name, m in model.named_children()
              if isinstance(m, nn.Sequential) and isinstance(m[0], runtime.FusedModule)]
    with torch.no_grad():
        want = model(x)
        assert want.isfinite().all()
        _close(torch.fx.symbolic_trace(model)(x), want)
        _, eval_nodes = get_graph_node_names(model)
        assert any(v.startswith(f"{stages[-1]}.") for v in eval_nodes), eval_nodes
        assert "bn1.bn_act" in eval_nodes, eval_nodes   # the fused BN: one leaf call
        out = create_feature_extractor(model, {stages[-1]: "out"})(x)["out"]
        seen = []
        hook = getattr(model, stages[-1]).register_forward_hook(lambda m, i, o: seen.append(o))
        model(x)
        hook.remove()
        _close(out, seen[0])


def test_fx_trace_in_training_mode_records_the_statistics_update():
    model = _built("cifar.res", "resnet20").train()
    ref = _built("cifar.res", "resnet20").train()
    gm = torch.fx.symbolic_trace(model)
    x = _input(model, 4)
    _close(gm(x), ref(x))
    _close(model.bn1.running_mean, ref.bn1.running_mean)


# ---- TorchScript and torch.jit.trace -------------------------------------------------------

@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("spec,net", SCRIPTED)
def test_torchscript_of_built_models(spec, net):
    model = _built(spec, net)
    x = _input(model)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        _close(scripted(x), model(x))
    scripted.train()
    model.train()
    torch.manual_seed(1)
    got = scripted(x)
    torch.manual_seed(1)
    _close(got, model(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_of_a_standalone_file(tmp_path):
    from click.testing import CliRunner

    from resdsl.cli import main
    out = tmp_path / "r20_standalone.py"
    r = CliRunner().invoke(main, ["compile", str(SPECS / "cifar.res"), "-n", "resnet20",
                                  "--standalone", "-o", str(out)])
    assert r.exit_code == 0, r.output
    sys.path.insert(0, str(tmp_path))
    try:
        import r20_standalone
    finally:
        sys.path.remove(str(tmp_path))
    model = r20_standalone.Resnet20().eval()
    randomise_bn(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _close(torch.jit.script(model)(x), model(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
@pytest.mark.parametrize("kind", ["build", "optimize"])
@pytest.mark.parametrize("spec,net", [UNITS[0], UNITS[5], UNITS[7], TIMM[0]])
def test_jit_trace_with_the_default_check(spec, net, kind):
    model = _built(spec, net)
    model = resdsl.optimize(model) if kind == "optimize" else model
    x = _input(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, x)   # check_trace=True: reruns and compares
        y = _input(model, 3)
        _close(traced(y), model(y))


# ---- ONNX ------------------------------------------------------------------------------------

def test_onnx_export_of_a_model_on_the_triton_path_runs_in_onnxruntime(tmp_path):
    """kernels="triton" on CPU would need TRITON_INTERPRET=1 to run at all: the exporter
    records the PyTorch ops instead (runtime.bn_act), so no kernel runs here."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _built("preact.res", "resnet110_unit_b", kernels="triton")
    x = _input(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the exporter's own deprecations
        program = torch.onnx.export(model, (x,), dynamo=True, verbose=False,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
    program.save(str(tmp_path / "m.onnx"))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    y = _input(model, 3)
    (got,) = session.run(None, {session.get_inputs()[0].name: y.numpy()})
    model.kernels = None
    for m in model.modules():
        if isinstance(m, runtime.BatchNormAct2d):
            m.kernels = "torch"
    with torch.no_grad():
        _close(torch.from_numpy(got), model(y))


# ---- torch's and timm's converters, frozen BN ----------------------------------------------

@pytest.mark.parametrize("spec,net", UNITS)
def test_torch_sync_batchnorm_converter_keeps_every_fusion(spec, net):
    model = _built(spec, net)
    ref = pickle.loads(pickle.dumps(model))
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    norms = [m for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(type(m) is runtime.SyncBatchNormAct2d for m in norms)
    x = _input(ref, 4)
    with torch.no_grad():
        _close(converted(x), ref(x))
    converted.train(), ref.train()   # one process: the batch's own statistics
    _close(converted(x), ref(x))
    for a, b in zip(converted.state_dict().values(), ref.state_dict().values()):
        _close(a, b)


@pytest.mark.parametrize("spec,net", UNITS)
def test_timm_freeze_batch_norm_keeps_every_fusion(spec, net):
    timm_layers = pytest.importorskip("timm.layers")
    model = _built(spec, net)
    ref = pickle.loads(pickle.dumps(model))
    frozen = timm_layers.freeze_batch_norm_2d(model)
    assert not [m for m in frozen.modules() if isinstance(m, nn.BatchNorm2d)]
    x = _input(ref, 4)
    with torch.no_grad():
        want = ref(x)
        _close(frozen(x), want)
        _close(frozen.train()(x), want)   # frozen: the running statistics in training too


@pytest.mark.parametrize("spec,net", UNITS[:3])
def test_resdsl_freeze_and_sync_keep_every_fusion(spec, net):
    model = _built(spec, net)
    ref = pickle.loads(pickle.dumps(model))
    x = _input(ref, 4)
    frozen = resdsl.freeze_batch_norm(pickle.loads(pickle.dumps(model))).train()
    with torch.no_grad():
        _close(frozen(x), ref(x))
    synced = resdsl.convert_sync_batchnorm(model).train()
    _close(synced(x), ref.train()(x))


def test_replacing_a_fused_bn_with_anything_else_names_the_resdsl_functions():
    model = _built("cifar.res", "resnet20")
    for replace in (lambda: setattr(model.layer1[0], "bn2", nn.Identity()),
                    lambda: model.layer1[0].add_module("bn2", nn.BatchNorm2d(16)),
                    lambda: model.add_module("bn1", nn.GroupNorm(4, 16))):
        with pytest.raises(TypeError, match=r"resdsl\.convert_sync_batchnorm.*"
                                            r"resdsl\.freeze_batch_norm.*fuse=False"):
            replace()
    plain = resdsl.build(SPECS / "resnet.res", "resnet50", fuse=False)
    plain.bn1 = nn.Identity()    # nothing fused: anything may go there


def test_freeze_batch_norm_equals_torchvision_frozen_batchnorm():
    tv = pytest.importorskip("torchvision")
    from torchvision.ops.misc import FrozenBatchNorm2d
    model = _built("resnet.res", "resnet50")
    ref = tv.models.resnet50(norm_layer=FrozenBatchNorm2d)
    ref.load_state_dict(model.state_dict())
    frozen = resdsl.freeze_batch_norm(model).train()
    assert frozen.state_dict().keys() == ref.state_dict().keys()
    assert all(not isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert sum(p.numel() for p in frozen.parameters()) == sum(
        p.numel() for p in ref.parameters())   # the BNs' affine is no longer trained
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():   # both: the running statistics, in training too
        got, want = frozen(x), ref.train()(x)
    assert float((got - want).abs().max() / want.abs().max()) < 1e-5
    frozen(x).sum().backward()
    assert all(p.grad is not None for p in frozen.parameters())
    frozen.load_state_dict(ref.state_dict())   # and it loads a frozen (or plain) BN layout


def test_sync_batchnorm_merges_moments_stably():
    """Chan's merge in float64 of float32 parts whose mean dwarfs their spread."""
    g = torch.Generator().manual_seed(0)
    parts = [1e4 + torch.randn(n, 3, generator=g) for n in (1, 7, 64, 0)]
    stats = torch.stack([torch.stack([torch.full((3,), float(len(p))),
                                      p.mean(0) if len(p) else torch.zeros(3),
                                      ((p - p.mean(0)) ** 2).sum(0) if len(p) else torch.zeros(3)])
                         for p in parts]).double()
    n, mean, m2 = kernels.merge_moments(stats)
    every = torch.cat(parts).double()
    _close(n, torch.full((3,), 72.0, dtype=torch.float64), 0)
    _close(mean, every.mean(0), 1e-6)   # the parts' float32 means: no closer
    _close(m2 / 72, every.var(0, unbiased=False), 1e-4)


# ---- timm's feature_info, loading a whole network into a features model --------------------

def test_feature_info_offers_timms_interface():
    timm = pytest.importorskip("timm")
    ours = resdsl.build(SPECS / "resnet.res", "resnet50",
                        features=["layer1", "layer2", "layer3", "layer4"]).feature_info
    theirs = timm.create_model("resnet50", features_only=True, out_indices=(1, 2, 3, 4))
    info = theirs.feature_info
    assert ours.channels() == info.channels() and ours.reduction() == info.reduction()
    assert ours.module_name() == info.module_name()
    assert ours.channels([0, 3]) == [256, 2048]   # (an index is into the features asked for)
    assert [{k: f[k] for k in ("num_chs", "reduction", "module")} for f in ours] == \
        info.get_dicts(keys=("num_chs", "reduction", "module"))
    assert ours[0]["channels"] == 256 and ours[0]["name"] == "layer1"


def test_load_backbone_takes_a_whole_networks_state_dict():
    tv = pytest.importorskip("torchvision")
    from torchvision.models.feature_extraction import create_feature_extractor
    ref = tv.models.resnet50().eval()
    randomise_bn(ref)
    model = resdsl.build(SPECS / "resnet.res", "resnet50", features=["layer2", "layer4"])
    assert resdsl.load_backbone(model, ref.state_dict()) == ["fc.weight", "fc.bias"]
    x = torch.randn(1, 3, 64, 64)
    want = create_feature_extractor(ref, {"layer2": "a", "layer4": "b"})(x)
    with torch.no_grad():
        got = model.eval()(x)
    _close(got[0], want["a"])
    _close(got[1], want["b"])
    with pytest.raises(ResdslError, match="lacks") as e:
        resdsl.load_backbone(model, {k: v for k, v in ref.state_dict().items()
                                     if not k.startswith("layer1")})
    assert e.value.code == "E214"


@pytest.mark.parametrize("standalone", [False, True])
def test_compile_sync_bn_writes_a_file_whose_bns_are_synchronized(tmp_path, standalone):
    from click.testing import CliRunner

    from resdsl.cli import main
    out = tmp_path / f"r20_sync_{int(standalone)}.py"
    r = CliRunner().invoke(main, ["compile", str(SPECS / "cifar.res"), "-n", "resnet20",
                                  "--sync-bn", "-o", str(out)]
                           + (["--standalone"] if standalone else []))
    assert r.exit_code == 0, r.output
    assert "convert_sync_batchnorm(self)" in out.read_text()
    namespace: dict = {"__name__": out.stem}
    exec(compile(out.read_text(), str(out), "exec"), namespace)  # noqa: S102
    model = namespace["Resnet20"]()
    norms = [type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__]
    assert norms and set(norms) == {"SyncBatchNormAct2d"}
    x = torch.randn(2, 3, 32, 32)
    plain = resdsl.build(SPECS / "cifar.res", "resnet20")
    plain.load_state_dict(model.state_dict())
    _close(model(x), plain(x))   # one process: the batch's own statistics
