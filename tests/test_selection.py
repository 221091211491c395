"""Data selection by class and shot, the train / held-out split, and scoring against the same classes."""

import gzip
import struct

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gonprof.cli import app
from gonprof.data import EMBEDDED_TRAIN, Selection, SelectionError, load_dataset, load_split
from gonprof.metrics.scores import class_stats, floor_n, held_out, real_floor, reference_sets, score_with_floor

# Labels of the embedded MNIST test split (the real one): 980 zeros in all, of which
# 460 lie in the training part (images 0-4,999) and 520 in the held-out part (5,000-9,999).
ZEROS_TRAIN, ZEROS_HELD = 460, 520


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(img.numpy().tobytes()) for img in images}


def test_embedded_split_counts_and_disjoint_halves():
    whole = load_dataset()
    train, held = load_split()
    assert (len(train), len(held)) == (EMBEDDED_TRAIN, 10_000 - EMBEDDED_TRAIN)
    assert torch.equal(train.images, whole.images[:5000]) and torch.equal(held.images, whole.images[5000:])


def test_class_selection_counts():
    train, held = load_split(None, Selection.parse("0"))
    assert (len(train), len(held)) == (ZEROS_TRAIN, ZEROS_HELD)
    assert set(train.labels.tolist()) == {0} and set(held.labels.tolist()) == {0}
    train, held = load_split(None, Selection.parse("0,3,7"))
    whole = load_dataset()
    want = [int(((whole.labels[:5000] == c)).sum()) for c in (0, 3, 7)]
    assert torch.bincount(train.labels, minlength=10)[[0, 3, 7]].tolist() == want
    assert set(held.labels.tolist()) == {0, 3, 7}


def test_per_class_keeps_the_first_n_of_each_class_in_file_order():
    train, held = load_split(None, Selection.parse("0,1", 10))
    whole = load_dataset()
    first_zeros = (whole.labels[:5000] == 0).nonzero(as_tuple=True)[0][:10]
    first_ones = (whole.labels[:5000] == 1).nonzero(as_tuple=True)[0][:10]
    want = torch.cat([first_zeros, first_ones]).sort().values
    assert len(train) == 20
    assert torch.equal(train.images, whole.images[want])
    # held-out images keep every image of the kept classes, not the first 10
    assert len(held) == int(((whole.labels[5000:] == 0) | (whole.labels[5000:] == 1)).sum())


def test_selection_is_deterministic():
    a, _ = load_split(None, Selection.parse("5", 7))
    b, _ = load_split(None, Selection(classes=(5,), per_class=7))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


@pytest.mark.parametrize("classes, per_class", [("0", None), ("0,3", 10), (None, 5)])
def test_held_out_images_never_overlap_training_images(classes, per_class):
    train, held = load_split(None, Selection.parse(classes, per_class))
    # MNIST's test split has no duplicate images, so disjoint indices mean disjoint pixels
    assert not (_rows(train.images) & _rows(held.images))


@pytest.mark.parametrize("classes, per_class, message", [
    ("", None, "selects nothing"),
    ("0,x", None, "labels separated by commas"),
    ("12", None, "no image of class 12"),
    ("-1", None, "non-negative"),
    ("0,0", None, "twice"),
    ("0", 0, "at least 1"),
])
def test_bad_selections_are_one_line_errors(classes, per_class, message):
    with pytest.raises(SelectionError) as info:
        load_split(None, Selection.parse(classes, per_class))
    assert message in str(info.value) and "\n" not in str(info.value)


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_idx_folder_with_both_splits_holds_out_t10k(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 6)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 4, 4)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 3)
    train, held = load_split(str(tmp_path), Selection.parse("1", 2))
    assert len(train) == 2 and train.labels.tolist() == [1, 1]
    assert len(held) == 2 and held.labels.tolist() == [1, 1]  # t10k labels 0,1,2,0,1,2


def test_class_stats_over_the_kept_classes():
    # 6 samples: 4 predicted as 0, 1 as 6, 1 as 8 (one-hot logits)
    logits = torch.full((6, 10), -20.0)
    for i, c in enumerate([0, 0, 0, 0, 6, 8]):
        logits[i, c] = 20.0
    s = class_stats(logits, classes=[0])
    assert s["on_class_fraction"] == pytest.approx(4 / 6)
    assert s["predicted_classes"] == {"0": 4, "6": 1, "8": 1}
    assert s["class_coverage"] == 1.0 and s["class_entropy_nats"] == 0.0
    s2 = class_stats(logits, classes=[0, 6])
    # on-class predictions: 4 zeros, 1 six -> entropy of (0.8, 0.2)
    assert s2["class_entropy_nats"] == pytest.approx(-(0.8 * np.log(0.8) + 0.2 * np.log(0.2)))
    assert s2["on_class_fraction"] == pytest.approx(5 / 6)
    everything = class_stats(logits)
    assert everything["on_class_fraction"] is None and everything["class_coverage"] == pytest.approx(3 / 10)


def test_reference_sets_are_disjoint_and_shared_by_rows_and_floor():
    pool = torch.arange(20.0).view(20, 1, 1, 1)
    a, b = reference_sets(pool, 8, seed=3)
    assert len(a) == len(b) == 8 and not (set(a.flatten().tolist()) & set(b.flatten().tolist()))
    a2, b2 = reference_sets(pool, 8, seed=3)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    none, only = reference_sets(pool, 15, seed=3)  # 2n > 20: no floor images
    assert none is None and len(only) == 15
    assert floor_n(1000, ZEROS_HELD) == 260 and floor_n(100, ZEROS_HELD) == 100


def test_per_selection_floor_scores_held_out_zeros_against_held_out_zeros():
    zeros = held_out([0])
    assert len(zeros) == ZEROS_HELD
    q, floor = score_with_floor(zeros[:120], classes=[0], n=60)
    assert floor.n_samples == floor.n_reference == 60 and floor.n_held_out == ZEROS_HELD
    assert floor.classes == [0] and q.classes == [0]
    assert floor.on_class_fraction > 0.9  # real zeros read as zeros
    # the floor is real-vs-real on the same reference: the same call again gives the same figure
    assert real_floor(zeros, n=60, classes=[0]).fid == pytest.approx(floor.fid)
    noise = torch.rand(60, 1, 28, 28) * 2 - 1
    qn, floor2 = score_with_floor(noise, classes=[0])
    assert floor2.fid == pytest.approx(floor.fid) and qn.fid > 10 * floor.fid
    assert qn.n_samples == 60


def test_floor_needs_two_n_held_out_images():
    with pytest.raises(ValueError, match="needs 600 held-out"):
        score_with_floor(torch.zeros(400, 1, 28, 28), classes=[0], n=300)


@pytest.mark.parametrize("args", [
    ["train", "--arch", "gon-mnist-mlp", "--classes", "11", "--steps", "1"],
    ["train", "--arch", "gon-mnist-mlp", "--classes", "0", "--per-class", "0", "--steps", "1"],
    ["train", "--arch", "gon-mnist-mlp", "--classes", "", "--steps", "1"],
    ["profile", "--arch", "gon-mnist-mlp", "--classes", "a"],
    ["compare", "gon", "--classes", "10", "--steps", "1"],
])
def test_cli_selection_errors_exit_2_with_one_line(args, tmp_path):
    res = CliRunner().invoke(app, args + (["--out", str(tmp_path / "o")] if args[0] != "profile" else []))
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1 and "error" in res.output
    assert not (tmp_path / "o").exists()  # nothing started


def test_an_mnist_folder_never_scores_against_the_extractors_training_images(tmp_path):
    """With MNIST's own t10k beside a train split, the held-out images are t10k's last 5,000 only."""
    import shutil

    from gonprof.data import EMBEDDED_DIR

    for split in ("train", "t10k"):  # the embedded test split stands in for both
        shutil.copy(EMBEDDED_DIR / "t10k-images-idx3-ubyte.gz", tmp_path / f"{split}-images-idx3-ubyte.gz")
        shutil.copy(EMBEDDED_DIR / "t10k-labels-idx1-ubyte.gz", tmp_path / f"{split}-labels-idx1-ubyte.gz")
    train, held = load_split(str(tmp_path))
    assert len(train) == 10_000 and len(held) == 5_000
    assert torch.equal(held.images, load_dataset().images[5000:])
