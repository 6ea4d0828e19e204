"""Issue 16: the Python API raises only resdsl's errors, with codes, for bad arguments (E212)
and for models `optimize` cannot take (E213); how a str is told apart from spec text."""
from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import resdsl  # noqa: E402
from resdsl.errors import ResdslError  # noqa: E402

CIFAR_SPEC = Path(__file__).resolve().parent.parent / "specs" / "cifar.res"
SPEC = "network n {\n  input 3 x 8 x 8\n  conv 4, 3x3; bn; relu\n  avgpool: avgpool\n  fc: fc 10\n}\n"


def code(fn, *args, **kw) -> str:
    with pytest.raises(ResdslError) as info:
        fn(*args, **kw)
    return info.value.code


@pytest.mark.parametrize("kw", [
    dict(network=123), dict(network=["x"]), dict(features=[1]), dict(features="fc"),
    dict(max_layers="10"), dict(max_params="1e9"), dict(max_macs=0), dict(max_layers=True),
    dict(kernels="cuda"), dict(allow_any_path="no"), dict(fuse=1), dict(zero_init_residual=None),
])
def test_bad_arguments_of_build_are_e212(kw):
    assert code(resdsl.build, SPEC, **kw) == "E212"


@pytest.mark.parametrize("kw", [dict(standalone="yes"), dict(inference=0), dict(kernels=3)])
def test_bad_arguments_of_emit_python_are_e212(kw):
    assert code(resdsl.emit_python, SPEC, **kw) == "E212"


@pytest.mark.parametrize("spec", [12, None, b"network n {}", ["a.res"]])
def test_a_spec_is_a_path_or_text(spec):
    assert code(resdsl.build, spec) == "E212"


def test_optimize_takes_only_a_model_build_made_as_built():
    assert code(resdsl.optimize, nn.Linear(2, 2)) == "E213"
    model = resdsl.build(SPEC)
    assert code(resdsl.optimize, resdsl.optimize(model)) == "E213"     # already optimized
    model.fc = nn.Linear(4, 3)                                         # head replaced
    assert code(resdsl.optimize, model) == "E213"
    model = resdsl.build(SPEC)
    del model.resdsl_options
    assert code(resdsl.optimize, model) == "E213"


def test_a_str_ending_in_res_or_naming_a_file_is_a_path(tmp_path, monkeypatch):
    assert code(resdsl.build, "a{b}.res") == "E001"      # a path, though it has a brace
    odd = tmp_path / "net{1}"
    odd.write_text(SPEC, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert resdsl.build("net{1}")(torch.randn(1, 3, 8, 8)).shape == (1, 10)
    assert resdsl.build(Path("net{1}"))(torch.randn(1, 3, 8, 8)).shape == (1, 10)
    assert code(resdsl.build, "nosuch") == "E001"
    assert resdsl.build(SPEC)(torch.randn(1, 3, 8, 8)).shape == (1, 10)  # text


def test_a_misspelt_keyword_of_build_is_named_in_the_hint():
    """Issue 17: `feature=` was E203 without the suggestion the CLI gives for its options."""
    from resdsl.errors import ResdslError
    with pytest.raises(ResdslError) as e:
        resdsl.build(CIFAR_SPEC, "resnet20", feature=["layer1"])
    assert e.value.code == "E203"
    assert e.value.hint == ("did you mean 'features', an argument of resdsl.build "
                            "(not a network parameter)?")
    with pytest.raises(ResdslError) as e:
        resdsl.build(CIFAR_SPEC, "resnet20", num_clases=10)
    assert e.value.hint == "did you mean 'num_classes'?"   # the network's own comes first


def test_the_public_functions_have_their_signatures():
    import inspect
    params = inspect.signature(resdsl.build).parameters
    assert list(params)[:2] == ["spec", "network"] and "sync_bn" in params
    assert "Compile a network of a spec" in resdsl.build.__doc__
    assert list(inspect.signature(resdsl.optimize).parameters) == ["model"]
