"""The bundled specs (specs/*.res) parse, and define the blocks and networks we ship."""
from __future__ import annotations

from pathlib import Path

import pytest

from resdsl import nodes as n
from resdsl.parse import parse

SPECS = Path(__file__).resolve().parent.parent / "specs"

BLOCKS = {
    "std.res": {
        "basic", "bottleneck", "bottleneck_v1", "basic_a", "bottleneck_a", "basic_c",
        "plain_basic", "plain_bottleneck",
        "unit_original", "unit_bn_after_add", "unit_relu_before_add", "unit_relu_preact",
        "unit_full_preact", "preact_basic", "preact_bottleneck", "bottleneck_d",
    },
}

TEMPLATES = {
    "resnet.res": {"resnet", "resnet_d"},
    "cifar.res": {"cifar_resnet"},
    "preact.res": {"preact_cifar", "preact_resnet"},
}

NETWORKS = {
    "resnet.res": {
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
        "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
        "wide_resnet50_2", "wide_resnet101_2", "resnet50d", "resnet101d",
    },
    "resnet_v1.res": {
        "resnet18_v1", "resnet34_v1", "resnet50_v1", "resnet101_v1", "resnet152_v1",
        "resnet18_a", "resnet34_a", "resnet34_c",
    },
    "cifar.res": {
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
        "plain20", "plain32", "plain44", "plain56",
    },
    "plain.res": {"plain18", "plain34"},
    "preact.res": {
        "preact_resnet110", "preact_resnet164", "preact_resnet1001",
        "preact_resnet18", "preact_resnet34", "preact_resnet50", "preact_resnet101",
        "preact_resnet152", "preact_resnet200",
        "resnet110_unit_a", "resnet110_unit_b", "resnet110_unit_c", "resnet110_unit_d",
        "resnet110_unit_e",
    },
}

ALL_FILES = sorted(p.name for p in SPECS.glob("*.res"))


def _parse(name: str) -> n.Module:
    path = SPECS / name
    return parse(path.read_text(encoding="utf-8"), str(path))


def _names(module: n.Module, *kinds: type) -> set[str]:
    return {item.name for item in module.items if isinstance(item, kinds)}


def _visible(name: str, seen: set[str] | None = None) -> dict[str, n.Item]:
    """Definitions of `name` and of every file it uses, transitively (`use std` is std.res)."""
    seen = set() if seen is None else seen
    if name in seen:
        return {}
    seen.add(name)
    found: dict[str, n.Item] = {}
    for item in _parse(name).items:
        if isinstance(item, n.Use):
            found.update(_visible(item.target if item.is_path else f"{item.target}.res", seen))
        elif isinstance(item, (n.BlockDef, n.NetworkDef, n.NetworkInst)):
            found[item.name] = item
    return found


def test_expected_files_exist():
    assert set(BLOCKS) | set(NETWORKS) <= set(ALL_FILES)


@pytest.mark.parametrize("name", ALL_FILES)
def test_spec_parses(name):
    module = _parse(name)
    assert module.items


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_networks_present(name):
    module = _parse(name)
    assert NETWORKS[name] <= _names(module, n.NetworkInst)
    assert TEMPLATES.get(name, set()) <= _names(module, n.NetworkDef)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_blocks_present(name):
    assert BLOCKS[name] <= _names(_parse(name), n.BlockDef)


# timm.res writes timm's registry under timm's names, which resnet.res shares for the
# torchvision-style models (tests/test_timm.py checks they are one architecture); everywhere
# else a name belongs to one file.
SHARED = {"resnet.res", "timm.res"}


def test_no_name_defined_twice():
    owner: dict[str, str] = {}
    for name in ALL_FILES:
        for item in _parse(name).items:
            if isinstance(item, (n.BlockDef, n.NetworkDef, n.NetworkInst)):
                shared = {name, owner.get(item.name)} == SHARED and \
                    isinstance(item, n.NetworkInst)
                assert item.name not in owner or shared, \
                    f"{item.name} in {name} and {owner[item.name]}"
                owner[item.name] = name


@pytest.mark.parametrize("name", ALL_FILES)
def test_uses_resolve(name):
    for item in _parse(name).items:
        if isinstance(item, n.Use):
            target = item.target if item.is_path else f"{item.target}.res"
            assert (SPECS / target).is_file(), f"{name}: use {item.target!r} not found"


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_instances_name_a_template_and_blocks(name):
    """Each `network x = t(blk, ...)` names a visible template and, positionally, a visible block."""
    visible = _visible(name)
    for item in _parse(name).items:
        if not isinstance(item, n.NetworkInst):
            continue
        assert isinstance(visible.get(item.call.name), n.NetworkDef), item.name
        first = item.call.args[0].value
        assert isinstance(first, n.Name) and isinstance(visible.get(first.id), n.BlockDef), item.name


def test_std_blocks_share_one_signature():
    """Any standard block fits any template: all take (planes, stride, groups, width)."""
    for item in _parse("std.res").items:
        if isinstance(item, n.BlockDef):
            assert [p.name for p in item.params] == ["planes", "stride", "groups", "width"], item.name
