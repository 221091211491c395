"""Corruptions against hand-computed cases, and the shipped extractor validated under them."""

from __future__ import annotations

import math

import pytest
import torch

from gonprof.metrics import corruptions as C
from gonprof.metrics.classifier import V1_WEIGHTS_PATH, accuracy, augment, load_classifier, outliers, reference_split
from gonprof.metrics.validation import CLEAN, NOISE, ValidationTable, main, markdown, validate

N = 300  # images per set in the validation tests (the README's table uses 1,000)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _lit(h=28, w=28, points=((14, 14),)):
    x = torch.full((1, 1, h, w), -1.0)
    for y, xx in points:
        x[0, 0, y, xx] = 1.0
    return x


def _lit_set(x: torch.Tensor) -> set[tuple[int, int]]:
    return {tuple(p) for p in (x[0, 0] > 0).nonzero().tolist()}


# ----------------------------------------------------------------------------- corruptions


def test_salt_and_pepper_flips_about_p_of_the_pixels_to_black_or_white():
    x = torch.zeros(50, 1, 28, 28)  # constant mid-grey: every changed pixel is a hit
    for p in (0.05, 0.1, 0.2):
        y = C.salt_and_pepper(x, p, seed=3)
        hit = y != 0
        assert hit.float().mean().item() == pytest.approx(p, abs=0.01)
        assert set(y[hit].unique().tolist()) == {-1.0, 1.0}
        assert (y[hit] > 0).float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert torch.equal(C.salt_and_pepper(x, 0.1, seed=3), C.salt_and_pepper(x, 0.1, seed=3))
    assert not torch.equal(C.salt_and_pepper(x, 0.1, seed=3), C.salt_and_pepper(x, 0.1, seed=4))
    assert torch.equal(C.salt_and_pepper(x, 0.0), x)
    assert set(C.salt_and_pepper(x, 1.0).unique().tolist()) == {-1.0, 1.0}
    # Same seed, higher p: the pixels hit at 5% are hit at 10% too (strengths are nested).
    assert ((C.salt_and_pepper(x, 0.05, 1) != 0) <= (C.salt_and_pepper(x, 0.1, 1) != 0)).all()
    with pytest.raises(ValueError):
        C.salt_and_pepper(x, 1.5)


def test_gaussian_noise_has_the_given_spread_and_is_clamped():
    x = torch.zeros(20, 1, 28, 28)
    y = C.gaussian_noise(x, 0.1, seed=0)
    assert y.std().item() == pytest.approx(0.1, rel=0.05) and abs(y.mean().item()) < 0.005
    assert torch.equal(C.gaussian_noise(x, 0.0), x)
    big = C.gaussian_noise(x, 5.0, seed=0)
    assert big.min() == -1 and big.max() == 1


def test_blur_of_a_single_lit_pixel_is_the_outer_product_of_the_kernel():
    k = C.gaussian_kernel1d(1.0)
    # Hand-computed: radius ceil(3 sigma) = 3, weights exp(-t^2 / 2) / 2.505950 for t = -3..3.
    assert len(k) == 7
    assert k[3].item() == pytest.approx(1 / 2.505950, rel=1e-5)
    assert k[0].item() == pytest.approx(math.exp(-4.5) / 2.505950, rel=1e-4)
    y = C.blur(_lit(), 1.0)[0, 0]
    expected = torch.full((28, 28), -1.0)
    expected[11:18, 11:18] += 2 * torch.outer(k, k)  # linear, and the -1 background is blurred to itself
    assert torch.allclose(y, expected, atol=1e-6)
    assert y.sum().item() == pytest.approx(-28 * 28 + 2, abs=1e-4)  # mass kept away from the frame
    assert torch.equal(C.blur(_lit(), 0.0), _lit())


def test_binarise_thresholds():
    x = torch.tensor([[-1.0, -0.2, 0.0, 0.3, 1.0]])
    assert C.binarise(x, 0.0).tolist() == [[-1.0, -1.0, -1.0, 1.0, 1.0]]
    assert C.binarise(x, -0.5).tolist() == [[-1.0, 1.0, 1.0, 1.0, 1.0]]


def test_translate_and_shift_move_a_single_lit_pixel_exactly():
    x = _lit(points=((10, 12),))
    assert _lit_set(C.translate(x, 2, -3)) == {(12, 9)}
    assert _lit_set(C.translate(x, -10, 0)) == {(0, 12)}
    assert _lit_set(C.translate(x, -11, 0)) == set()  # out of the frame; background comes in
    assert (C.translate(x, 0, 0) == x).all()
    many = x.expand(40, 1, 28, 28)
    out = C.shift(many, 2, seed=0)
    seen = {next(iter(_lit_set(o[None]))) for o in out}
    assert seen == {(8, 12), (12, 12), (10, 10), (10, 14)}  # up, down, left, right by exactly 2
    assert torch.equal(out, C.shift(many, 2, seed=0))
    assert (out.sum(dim=(1, 2, 3)) == x.sum()).all()  # one lit pixel each, nothing else changed


def test_thicken_and_thin_use_discs_of_the_given_radius():
    assert len(C.disc_offsets(1.0)) == 5 and len(C.disc_offsets(1.5)) == 9 and len(C.disc_offsets(2.0)) == 13
    one = _lit()
    assert _lit_set(C.thicken(one, 1.0)) == {(14, 14), (13, 14), (15, 14), (14, 13), (14, 15)}
    assert _lit_set(C.thicken(one, 1.5)) == {(14 + dy, 14 + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    assert len(_lit_set(C.thicken(one, 2.0))) == 13
    square = _lit(points=[(y, x) for y in range(10, 15) for x in range(10, 15)])  # 5x5 lit square
    inner = {(y, x) for y in range(11, 14) for x in range(11, 14)}
    assert _lit_set(C.thin(square, 1.0)) == inner
    assert _lit_set(C.thin(square, 1.5)) == inner
    assert _lit_set(C.thin(square, 2.0)) == {(12, 12)}
    assert _lit_set(C.thin(one, 1.0)) == set()


def test_corruptions_keep_shape_and_leave_the_input_alone():
    x = torch.rand(4, 28, 28) * 2 - 1
    before = x.clone()
    for name in C.CORRUPTIONS:
        for level in C.STRENGTHS:
            y = C.corrupt(x, name, level, seed=1)
            assert y.shape == x.shape and y.dtype == torch.float32
            assert y.min() >= -1 and y.max() <= 1
    assert torch.equal(x, before)
    assert C.blur(x[0], 1.0).shape == (28, 28)
    with pytest.raises(ValueError, match="unknown corruption"):
        C.corrupt(x, "sepia", 0)
    with pytest.raises(ValueError):
        C.blur(torch.zeros(2, 2, 2, 2, 2), 1.0)
    assert C.CORRUPTIONS["salt-and-pepper"].label(1) == "10%"
    assert C.CORRUPTIONS["blur"].label(2) == "sigma 1.5 px"


def test_training_augmentations_and_outliers_are_seeded_and_in_range():
    x = reference_split()[0].images[:64]
    a = augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, augment(x, torch.Generator().manual_seed(1)))
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    changed = (a != x).flatten(1).any(1).float().mean().item()
    assert 0.4 < changed < 0.95  # a share stays clean
    o = outliers(60, (1, 28, 28), torch.Generator().manual_seed(2), digits=x)
    assert o.shape == (60, 1, 28, 28) and o.min() >= -1 and o.max() <= 1
    assert torch.equal(o, outliers(60, (1, 28, 28), torch.Generator().manual_seed(2), digits=x))


# ----------------------------------------------------------------------------- the shipped extractor, validated


@pytest.fixture(scope="module")
def table() -> ValidationTable:
    return validate(load_classifier(), n=N, seed=0)


@pytest.fixture(scope="module")
def table_v1() -> ValidationTable:
    return validate(load_classifier(V1_WEIGHTS_PATH), n=N, seed=0)


def test_clean_heldout_accuracy_at_least_98_percent():
    assert accuracy(load_classifier(), reference_split()[1]) >= 0.98


def test_fid_grows_with_the_strength_of_every_corruption(table):
    for name in C.CORRUPTIONS:
        fids = [r.fid for r in table.series(name)]
        assert fids == sorted(fids) and fids[0] < fids[-1], (name, fids)
        assert table.series(name)[-1].fid > table.row(CLEAN).fid, name
    noise = table.row(NOISE).fid
    assert noise > max(r.fid for r in table.rows if r.corruption != NOISE)


def test_digits_are_read_through_salt_and_pepper_noise(table):
    assert table.row("salt-and-pepper", "moderate").parameter == "10%"
    assert table.row("salt-and-pepper", "moderate").accuracy >= 0.95
    assert table.row(CLEAN).accuracy >= 0.98
    for name in ("gaussian-noise", "blur", "binarise"):
        assert table.row(name, "moderate").accuracy >= 0.95, name


def test_uniform_noise_is_not_read_as_a_digit_with_confidence(table):
    real = table.row(CLEAN).mean_confidence
    noise = table.row(NOISE)
    assert real > 0.95 and noise.mean_confidence < 0.5 and real - noise.mean_confidence > 0.4
    assert noise.accuracy is None and noise.precision == noise.recall == 0.0


def test_v1_fails_where_v2_holds(table, table_v1):
    """What the issue measured on v1: speckled digits misread, noise read as 8 with confidence 1."""
    assert table_v1.extractor == "gonprof-mnist-cnn-v1" and table.extractor == "gonprof-mnist-cnn-v2"
    assert table_v1.row("salt-and-pepper", "moderate").accuracy < 0.9
    noise_v1 = table_v1.row(NOISE)
    assert noise_v1.mean_confidence > 0.99 and max(noise_v1.predicted_classes.values()) == N
    text = markdown([table_v1, table])
    assert "v1 accuracy" in text and "v2 FID" in text and table.weights_hash in text
    assert sum(line.startswith("| ") for line in text.splitlines()) == len(table.rows) + 1  # header + rows


def test_validation_command_prints_a_markdown_table(capsys):
    assert main(["--n", "40", "--corruption", "shift", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| images (N = 40 each) | v1 accuracy")
    assert "| shift by 3 px |" in out and "| uniform-noise |" in out and "salt-and-pepper" not in out
    with pytest.raises(ValueError, match="two disjoint sets"):
        validate(n=2600)
