"""GroupNorm (`gn`), added as one record of the op table: shapes, counts, errors, drawing, the
passes, and outputs against PyTorch's own nn.GroupNorm and torchvision's GroupNorm ResNet-50."""
from __future__ import annotations

import pytest

from resdsl import ir
from resdsl.backends import draw, summary
from resdsl.errors import ResdslError
from resdsl.graph import totals
from resdsl.pipeline import check_text

NORMS = """
network norms(num_classes = 10) {
  input 3 x 12 x 10
  conv 64, 3x3
  gn
  relu
  gn group_size = 16
  gn 8, eps = 0.001, affine = false
  avgpool
  fc num_classes
}
"""

UNIT = """
block gn_basic(planes, stride = 1) {
  residual {
    conv planes, 3x3, stride = stride; gn; relu
    conv planes, 3x3; gn(zero_init)
  }
  shortcut pad
  merge add
  relu
}
network net {
  input 3 x 16 x 16
  conv 32, 3x3; gn; relu
  stage layer1 = 2 x gn_basic(32)
  stage layer2 = 2 x gn_basic(64, stride = 2)
}
"""


def test_shape_and_counts_follow_the_attributes():
    g = check_text(NORMS).graphs["norms"]
    assert [g.nodes[v]["attrs"]["groups"] for v in ("gn1", "gn2", "gn3")] == [32, None, 8]
    assert g.nodes["gn2"]["attrs"]["group_size"] == 16
    assert all(g.nodes[v]["shape"] == (64, 12, 10) for v in ("gn1", "gn2", "gn3"))
    # affine: weight and bias per channel; no buffers; one op per element
    assert [g.nodes[v]["params"] for v in ("gn1", "gn2", "gn3")] == [128, 128, 0]
    assert all(g.nodes[v]["buffers"] == 0 and g.nodes[v]["macs"] == 0
               and g.nodes[v]["elementwise"] == 64 * 12 * 10 for v in ("gn1", "gn2", "gn3"))
    text = ir.to_text(g)
    assert "gn1 = gn(g=32) : 64x12x10 <- conv1" in text
    assert "gn3 = gn(g=8, eps=0.001, affine=false) : 64x12x10 <- gn2" in text
    assert "gn" in summary.table(g, depth=1)


@pytest.mark.parametrize("text,message", [
    ("conv 48, 3x3; gn", "gn with groups=32: channels 48 are not divisible by 32"),
    ("conv 48, 3x3; gn group_size = 10",
     "gn with group_size=10: channels 48 are not divisible by 10"),
    ("conv 48, 3x3; gn 4, group_size = 12", "gn takes `groups` or `group_size`, not both"),
])
def test_bad_groups_are_e401_at_the_gn(text, message):
    spec = f"network n {{\n  input 3 x 8 x 8\n  {text}\n}}\n"
    with pytest.raises(ResdslError) as info:
        check_text(spec)
    assert info.value.code == "E401" and info.value.message == message
    assert (info.value.span.line, info.value.span.col) == (3, spec.splitlines()[2].index("gn") + 1)


def test_drawn_in_the_norm_colour():
    g = check_text(NORMS).graphs["norms"]
    dot = draw.to_dot(g, "layer").source
    assert 'fillcolor="#fbf0cf"' in dot.split("gn1")[1].split("\n")[0]


torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import resdsl  # noqa: E402
from resdsl.pipeline import lower  # noqa: E402


def test_outputs_equal_pytorch_groupnorm():
    """The built network is PyTorch's own modules with the same weights, forward equal."""
    torch.manual_seed(0)
    model = resdsl.build(NORMS)
    ref = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.GroupNorm(32, 64),
                        nn.ReLU(), nn.GroupNorm(4, 64), nn.GroupNorm(8, 64, eps=1e-3, affine=False),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-1, 1)
    ref.load_state_dict(dict(zip(ref.state_dict(), model.state_dict().values())))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
    assert totals(model.resdsl_graph)["params"] == sum(p.numel() for p in ref.parameters())
    assert [type(m) for m in model.modules() if isinstance(m, nn.GroupNorm)] == [nn.GroupNorm] * 3
    x = torch.randn(2, 3, 12, 10)
    torch.testing.assert_close(model(x), ref(x))


def test_in_residual_units_zero_init_and_the_passes():
    """gn in blocks: listed for zero_init_residual, never fused with its relu or add (the
    fused kernels are BN's), never folded into a conv (its statistics are per sample), and
    the inference model agrees with the eval model."""
    g = check_text(UNIT).graphs["net"]
    fused = lower(g)
    assert all(d["op"] != "bn_act" for _, d in fused.nodes(data=True))
    assert fused.number_of_nodes() == g.number_of_nodes()
    model = resdsl.build(UNIT, zero_init_residual=True)
    assert type(model.layer1[0]).zero_init == ("gn2",)
    assert torch.count_nonzero(model.layer2[1].gn2.weight) == 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 16, 16)
    fast = resdsl.optimize(model)
    assert sum(isinstance(m, nn.GroupNorm) for m in fast.modules()) == 9
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model.eval()(x), atol=1e-5, rtol=1e-4)


GN_RESNET50 = """
block gn_bottleneck(planes, stride = 1) {
  residual {
    conv planes, 1x1; bn1: gn; relu
    conv planes, 3x3, stride = stride; bn2: gn; relu
    conv planes * 4, 1x1; bn3: gn(zero_init)
  }
  shortcut projection
  merge add
  relu
}

network gn_resnet50 {
  input 3 x 224 x 224
  stem { conv 64, 7x7, stride = 2; bn1: gn; relu: relu; maxpool: maxpool 3x3, stride = 2 }
  stage layer1 = 3 x gn_bottleneck(64)
  stage layer2 = 4 x gn_bottleneck(128, stride = 2)
  stage layer3 = 6 x gn_bottleneck(256, stride = 2)
  stage layer4 = 3 x gn_bottleneck(512, stride = 2)
  head { avgpool: avgpool; fc: fc 1000 }
}
"""


def test_resnet50_with_groupnorm_matches_torchvision():
    """torchvision's ResNet-50 with norm_layer = GroupNorm(32, C): the same keys, shapes and
    parameters (25,557,032 counted from torchvision's model), and the same outputs with our
    weights once its shortcut norms are the BNs that `shortcut projection` makes."""
    tv = pytest.importorskip("torchvision")
    from helpers import randomise_bn

    ref = tv.models.resnet50(norm_layer=lambda c: nn.GroupNorm(32, c))
    model = resdsl.build(GN_RESNET50, "gn_resnet50")
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in ref.state_dict().items()}
    downsample = {k for k in ours if ".downsample.1." in k}
    assert {k: s for k, s in ours.items() if k not in downsample} == \
        {k: s for k, s in theirs.items() if ".downsample.1." not in k}
    n_params = sum(p.numel() for p in ref.parameters())
    assert n_params == 25_557_032
    assert sum(p.numel() for p in model.parameters()) == n_params
    for layer in (ref.layer1, ref.layer2, ref.layer3, ref.layer4):
        layer[0].downsample[1] = nn.BatchNorm2d(layer[0].downsample[1].num_channels)
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    randomise_bn(model)
    ref.load_state_dict(model.state_dict())
    model.eval(), ref.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-4, rtol=1e-4)

