import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gonprof.data import EMBEDDED_DIR, DataError, load_dataset, load_idx_folder, read_idx, synthetic

SHARED_RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "MNIST" / "raw"


def write_idx(path: Path, array: np.ndarray, compress: bool = True, code: int = 0x08) -> Path:
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def test_embedded_split_is_the_real_mnist_test_split():
    d = load_dataset()
    assert d.images.shape == (10_000, 1, 28, 28) and d.images.dtype == torch.float32
    assert d.images.min() == -1.0 and d.images.max() == 1.0
    # the first labels of the MNIST test split are well known
    assert d.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(d.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.skipif(not SHARED_RAW.is_dir(), reason="../shared/data not beside the checkout")
def test_reads_the_shared_folder_and_matches_embedded():
    shared = load_idx_folder(SHARED_RAW)
    assert torch.equal(shared.images, load_dataset().images)


def test_raw_and_gzip_agree_and_scale_to_minus1_1(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    (tmp_path / "raw").mkdir(), (tmp_path / "gz").mkdir()
    write_idx(tmp_path / "raw" / "train-images-idx3-ubyte", arr, compress=False)
    write_idx(tmp_path / "raw" / "train-labels-idx1-ubyte", np.array([3, 4]), compress=False)
    write_idx(tmp_path / "gz" / "train-images-idx3-ubyte.gz", arr)
    write_idx(tmp_path / "gz" / "train-labels-idx1-ubyte.gz", np.array([3, 4]))
    a, b = load_idx_folder(tmp_path / "raw"), load_idx_folder(tmp_path / "gz")
    assert torch.equal(a.images, b.images) and a.labels.tolist() == [3, 4]
    assert a.images[0, 0, 0, 1].item() == pytest.approx(10 / 127.5 - 1)


def test_default_split_prefers_train(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((1, 2, 2)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(1))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 2, 2)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3))
    assert len(load_idx_folder(tmp_path)) == 3
    assert len(load_idx_folder(tmp_path, "test")) == 1


@pytest.mark.parametrize("corruption, message", [
    ("truncated", "truncated"),
    ("badmagic", "bad IDX magic"),
    ("badgzip", "corrupt gzip"),
    ("empty", "too short"),
    ("trailing", "trailing bytes"),
])
def test_corrupt_files_give_one_line_naming_the_file(tmp_path, corruption, message):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((4, 5, 5)))
    raw = gzip.decompress(path.read_bytes())
    if corruption == "truncated":
        path.write_bytes(gzip.compress(raw[:-7]))
    elif corruption == "badmagic":
        path.write_bytes(gzip.compress(b"\x12\x34" + raw[2:]))
    elif corruption == "badgzip":
        path.write_bytes(path.read_bytes()[:30])
    elif corruption == "empty":
        path.write_bytes(b"")
    elif corruption == "trailing":
        path.write_bytes(gzip.compress(raw + b"xx"))
    with pytest.raises(DataError) as info:
        read_idx(path)
    msg = str(info.value)
    assert message in msg and str(path) in msg and "\n" not in msg


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_idx_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="no IDX images"):
        load_idx_folder(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 2, 2)))
    with pytest.raises(DataError, match="labels"):
        load_idx_folder(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3))
    with pytest.raises(DataError, match="3 labels for 2 images"):
        load_idx_folder(tmp_path)


def test_embedded_files_ship_in_the_package():
    assert sorted(p.name for p in EMBEDDED_DIR.glob("*.gz")) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_batches_are_reproducible_and_resume_exactly():
    d = synthetic(100)
    full = [y for _, y in zip(range(7), d.batches(16, seed=3))]
    resumed = [y for _, y in zip(range(3), d.batches(16, seed=3, start_step=4))]
    for a, b in zip(full[4:], resumed):
        assert torch.equal(a[1], b[1])
    with pytest.raises(DataError, match="exceeds"):
        next(d.batches(1000))


def test_synthetic_shape_range_and_determinism():
    a, b = synthetic(64, (3, 32, 32), seed=1), synthetic(64, (3, 32, 32), seed=1)
    assert a.images.shape == (64, 3, 32, 32) and torch.equal(a.images, b.images)
    assert a.images.min() >= -1 and a.images.max() <= 1
