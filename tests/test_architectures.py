"""Every registered architecture, built-in or plugin, passes these checks.

Registering an architecture is enough to test it.  The per-family files
(test_zoo_*.py) pin each count with its arithmetic written out.
"""

import pytest
import torch

from gonprof.arch import ShapeError, list_archs
from gonprof.summary import build_on_meta, param_totals

SPECS = list_archs()
IDS = [s.name for s in SPECS]

EXPECTED_NAMES = {
    "discriminator": {"gon-mnist-conv", "gon-mnist-mlp", "lsgan-original", "inception-k32", "inception-k16",
                      "inception-k8", "depthwise-inception", "depthwise-inception-dense", "improved-gan-mlp",
                      "mlp-gan", "dcd-mnist-sn", "dcd-mnist"},
    "generator": {"gas-generator", "improved-gan-generator", "mlp-gan-generator", "dcd-mnist-generator"},
}


def test_the_seed_zoo_is_registered():
    for role, names in EXPECTED_NAMES.items():
        assert names <= {s.name for s in list_archs(role=role)}


def test_seed_counts_from_the_design():
    counts = {s.name: s.expected_params for s in SPECS}
    # DESIGN.md section 4, 1x28x28 input
    assert counts["gon-mnist-conv"] == 13_246_482
    assert counts["gon-mnist-mlp"] == 582_914
    assert counts["inception-k32"] == 216_705
    assert counts["inception-k16"] == 54_593
    assert counts["inception-k8"] == 13_857
    assert counts["mlp-gan"] == 1_460_225
    assert counts["dcd-mnist-sn"] == counts["dcd-mnist"] == 1_030_145
    assert counts["mlp-gan-generator"] == 1_486_352
    lsgan = next(s for s in SPECS if s.name == "lsgan-original")
    assert lsgan.expected_trainable == 388_865


def _inputs(spec, n, shape=None):
    shape = shape or spec.input_shape
    if spec.role == "generator":
        return torch.randn(n, spec.latent_dim)
    return torch.rand(n, *shape) * 2 - 1


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_parameter_count_matches_spec(spec):
    model = spec.build()
    total, trainable = param_totals(model)
    assert total == spec.expected_params, spec.params_arithmetic
    if spec.expected_trainable is not None:
        assert trainable == spec.expected_trainable
    assert param_totals(build_on_meta(spec)) == (total, trainable)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("n", [1, 64])
def test_forward_shape(spec, n):
    model = spec.build().eval()
    with torch.no_grad():
        out = model(_inputs(spec, n))
    if spec.role == "generator":
        assert out.shape == (n, *spec.input_shape)
        assert out.min() >= -1 and out.max() <= 1
    else:
        assert out.shape == (n, spec.output_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_colour_32x32_builds_or_refuses_in_one_line(spec):
    try:
        model = spec.build((3, 32, 32)).eval()
    except ShapeError as exc:
        assert "\n" not in str(exc) and spec.name in str(exc)
        return
    with torch.no_grad():
        out = model(_inputs(spec, 2, (3, 32, 32)))
    expected = (2, 3, 32, 32) if spec.role == "generator" else (2, spec.output_dim)
    assert out.shape == expected


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_impossible_shape_is_a_shape_error(spec):
    with pytest.raises(ShapeError):
        spec.build((1, 0, 28))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_metadata_is_complete(spec):
    assert spec.family and spec.source.paper and spec.params_arithmetic
    assert spec.role in ("discriminator", "generator")
    if spec.role == "generator":
        assert spec.latent_dim and spec.latent in ("normal", "uniform")
    else:
        assert spec.output == "score" or spec.output.startswith("logits[")
