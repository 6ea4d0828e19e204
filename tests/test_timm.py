"""specs/timm.res against timm itself: every network there is timm's model of the same name.

For each network (parametrised by name; every reference number comes from timm or fvcore,
computed here):

- (a) the parameter count equals timm's (our graph's count and our module's);
- (b) timm's state_dict loads into ours strictly (same keys, same shapes);
- (c) after loading (BN statistics and affine values randomised first, so eval mode is not
  the identity), both in eval mode, the outputs on a seeded random 2x3x65x65 input agree to
  1e-5 relative (65 is odd, so the ceil-mode / count_include_pad=False average pools of the
  avg_down shortcuts and the conv paddings meet odd sizes);
- (d) resdsl's MACs for that input size equal fvcore's conv + linear count (fvcore counts one
  multiply-accumulate as one flop).

Also: the file names every model of timm's resnet registry, the networks that
specs/resnet.res defines under the same name are the same architecture, and drop_path_rate
places timm's DropPath rates.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
with warnings.catch_warnings():   # fvcore scripts a loss at import: torch.jit deprecation
    warnings.simplefilter("ignore")
    FlopCountAnalysis = pytest.importorskip("fvcore.nn").FlopCountAnalysis
from timm.layers import BlurPool2d
from torch import nn

import resdsl
from resdsl.elaborate import concrete_networks
from resdsl.graph import totals
from resdsl.pipeline import check_file, load_spec

ROOT = Path(__file__).resolve().parent.parent
TIMM_SPEC = ROOT / "specs" / "timm.res"
RESNET_SPEC = ROOT / "specs" / "resnet.res"

INPUT = (3, 65, 65)   # odd: exercises ceil_mode pools and paddings at odd sizes
BATCH = 2
# models written in timm.res on purpose left out of timm's registry: none; models of the
# registry that timm.res does not write (with the reason): none
NOT_WRITTEN: dict[str, str] = {}


def _spec_networks(path: Path) -> list[str]:
    try:
        return concrete_networks(load_spec(path).root)
    except Exception:  # noqa: BLE001 - a spec that does not load fails in test_registry
        return []


NAMES = _spec_networks(TIMM_SPEC)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: the inputs are tiny, and on a loaded machine (tests run in
    parallel) OpenMP's spinning workers made a 0.15 s forward take 1-9 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Own affine values and running statistics for every BN (and GN affine values), so a
    norm loaded into the wrong place changes the output and eval mode is not trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                n = m.weight.numel()
                m.weight.copy_(torch.rand(n, generator=gen) * 0.4 + 0.2)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def fvcore_macs(model: nn.Module, x) -> int:
    """fvcore's conv + linear count for one sample (it counts a MAC as one flop)."""
    flops = (FlopCountAnalysis(model, x).unsupported_ops_warnings(False)
             .uncalled_modules_warnings(False).tracer_warnings("none"))
    with warnings.catch_warnings():   # torch.jit.trace's own deprecation warnings
        warnings.simplefilter("ignore")
        ops = flops.by_operator()
    return sum(v for k, v in ops.items() if k in ("conv", "linear", "addmm", "matmul", "bmm"))


def test_registry():
    """timm.res writes exactly timm's resnet registry (less what it lists as not written)."""
    assert NAMES, "specs/timm.res did not load"
    registry = set(timm.list_models(module="resnet"))
    assert len(registry) == 81
    assert set(NAMES) == registry - set(NOT_WRITTEN)
    assert len(NAMES) == len(set(NAMES))


def compare(name: str, ours_args: dict | None = None, timm_args: dict | None = None) -> None:
    """(a)-(d) of the module docstring for one network of timm.res (with template arguments
    `ours_args`) against timm.create_model(name, **timm_args)."""
    torch.manual_seed(0)
    theirs = timm.create_model(name, pretrained=False, **(timm_args or {}))
    ours = resdsl.build(TIMM_SPEC, network=name, input_shape=INPUT, **(ours_args or {}))

    # (a) parameters
    want_params = sum(p.numel() for p in theirs.parameters())
    assert totals(ours.resdsl_graph)["params"] == want_params
    assert sum(p.numel() for p in ours.parameters()) == want_params

    # (b) strict load of timm's weights
    randomise_norms(theirs)
    theirs_sd = theirs.state_dict()
    ours_sd = ours.state_dict()
    missing, extra = sorted(set(theirs_sd) - set(ours_sd)), sorted(set(ours_sd) - set(theirs_sd))
    assert not missing and not extra, f"keys timm has and we lack: {missing[:8]}; " \
                                      f"keys we have and timm lacks: {extra[:8]}"
    ours.load_state_dict(theirs_sd, strict=True)
    del theirs_sd, ours_sd

    # (c) same eval outputs
    ours.eval()
    theirs.eval()
    x = torch.randn(BATCH, *INPUT, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        got, want = ours(x), theirs(x)
    assert got.shape == want.shape == (BATCH, theirs.num_classes)
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)
    if ours_args is None:   # every bundled network traces with torch.fx (issue 15)
        with torch.inference_mode():
            traced = torch.fx.symbolic_trace(ours)(x)
        torch.testing.assert_close(traced, got, rtol=1e-5, atol=1e-5 * scale)

    # (d) MACs per sample
    assert totals(ours.resdsl_graph)["macs"] == fvcore_macs(theirs, x[:1])


@pytest.mark.parametrize("name", NAMES)
def test_matches_timm(name):
    compare(name)


# the template's codes, as specs/timm.res defines them
SE, ECA, BLUR, AVG = 1, 2, 1, 2
OPTIONS = {
    # timm options that no registered model combines, through the template's other branches:
    # case: (network, our template arguments, timm.create_model's arguments)
    "stem pool conv + blur": ("resnet26t", {"replace_stem_pool": True, "aa_layer": BLUR},
                              {"replace_stem_pool": True, "aa_layer": BlurPool2d}),
    "stem pool conv + avg": ("resnet26t", {"replace_stem_pool": True, "aa_layer": AVG},
                             {"replace_stem_pool": True, "aa_layer": nn.AvgPool2d}),
    "groupnorm + deep stem + avg_down": ("resnet26d", {"group_norm": True},
                                         {"norm_layer": "groupnorm"}),
    "groupnorm + 3x3 downsample + se": (
        "resnet26", {"group_norm": True, "down_kernel_size": 3, "attn": SE},
        {"norm_layer": "groupnorm", "down_kernel_size": 3, "block_args": {"attn_layer": "se"}}),
    "basic + eca + blur + reduce_first + 3x3 downsample": (
        "resnet18",
        {"attn": ECA, "aa_layer": BLUR, "block_reduce_first": 2, "down_kernel_size": 3},
        {"block_args": {"attn_layer": "eca"}, "aa_layer": BlurPool2d, "block_reduce_first": 2,
         "down_kernel_size": 3}),
    "mixed blocks + se + avg aa": ("test_resnet", {"attn": SE, "aa_layer": AVG},
                                   {"block_args": {"attn_layer": "se"},
                                    "aa_layer": nn.AvgPool2d}),
}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_template_options(case):
    name, ours_args, timm_args = OPTIONS[case]
    compare(name, ours_args, timm_args)


def _layers(g) -> list[tuple]:
    """What an architecture is, names aside: each node in network order as (op, attributes,
    output shape, parameters), and the totals."""
    nodes = [(d["op"], tuple(sorted(d["attrs"].items())), tuple(d["shape"]), d["params"])
             for _, d in g.nodes(data=True)]
    return [nodes, totals(g)]


def _resnet_res_names() -> list[str]:
    return [n for n in _spec_networks(RESNET_SPEC) if n in set(NAMES)]


@pytest.mark.parametrize("name", _resnet_res_names())
def test_same_architecture_as_resnet_res(name):
    """A network that specs/resnet.res also defines is the same architecture in both (graphs
    only: parameterised layers in order with their shapes, and parameter / MAC totals)."""
    ours = check_file(str(TIMM_SPEC), networks=[name]).graphs[name]
    theirs = check_file(str(RESNET_SPEC), networks=[name]).graphs[name]
    assert _layers(ours) == _layers(theirs)


def test_drop_path_rates():
    """drop_path_rate gives each block timm's DropPath at rate * block_index / (blocks - 1):
    the same modules, and in train mode, from one seed, the same outputs (timm's DropPath
    draws one keep mask per sample and block, in forward order); eval outputs agree too."""
    rate = 0.1
    theirs = timm.create_model("resnet18", pretrained=False, drop_path_rate=rate)
    ours = resdsl.build(TIMM_SPEC, network="resnet18", drop_path_rate=rate)

    def rates(model):
        found = {}
        for n, m in model.named_modules():
            if n.rsplit(".", 1)[-1] == "drop_path":
                found[n] = getattr(m, "drop_prob", getattr(m, "p", None))
        return found

    want = rates(theirs)
    assert len(want) == 7          # block 0 gets rate 0: no DropPath at all
    got = rates(ours)
    assert set(got) == set(want)
    for n in want:
        assert got[n] == pytest.approx(want[n])
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    outs = []
    for model in (ours.train(), theirs.train()):
        torch.manual_seed(5)
        outs.append(model(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18d", "resnet26", "resnet50_gn", "seresnext26t_32x4d"])
def test_zero_init_last(name):
    """`bn zero_init` sits where timm's zero_init_last zeroes a norm (bn2 / bn3, BN or GN):
    built with zero_init_residual, exactly those weights start at zero."""
    def zeroed(model):
        return {k for k, v in model.state_dict().items()
                if k.endswith(".weight") and v.dim() == 1 and not v.any()}

    theirs = timm.create_model(name, pretrained=False)
    ours = resdsl.build(TIMM_SPEC, network=name, zero_init_residual=True)
    assert zeroed(ours) == zeroed(theirs) != set()
