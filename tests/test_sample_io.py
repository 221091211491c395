"""Reading samples for `gonprof score`: PNG grids, folders of PNGs, .pt and .npy tensors, and every error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.utils as vutils
from PIL import Image

from gonprof.data import DataError
from gonprof.sample_io import SampleError, grid_layout, read_samples

STEP = 2 / 255 + 1e-6  # one 8-bit level, in [-1, 1] units


def _images(n=12, seed=0):
    """Digit-like test images in [-1, 1]: background -1, a bright random blob in the middle."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n, 1, 28, 28), -1.0)
    x[:, :, 6:22, 8:20] = torch.rand(n, 1, 16, 12, generator=g) * 2 - 1
    return x


def _save_grid(x, path, **kw):
    vutils.save_image((x + 1) / 2, str(path), **kw)
    return path


def test_sample_error_is_a_data_error():
    assert issubclass(SampleError, DataError)  # the CLI maps DataError to exit 1


# ----------------------------------------------------------------------------- PNG grids


def test_grid_written_by_save_image_reads_back_tile_by_tile(tmp_path):
    x = _images(64)
    s = read_samples(_save_grid(x, tmp_path / "g.png", nrow=8))
    assert s.format == "png-grid" and s.layout == "8 x 8 tiles, padding 2" and s.value_range == "[0, 255]"
    assert s.images.shape == (64, 1, 28, 28) and s.images.dtype == torch.float32
    assert (s.images - x).abs().max().item() <= STEP
    assert s.describe()["n_images"] == 64 and "images" not in s.describe()


def test_grid_with_unused_tiles_other_paddings_and_pad_values(tmp_path):
    x = _images(10)
    s = read_samples(_save_grid(x, tmp_path / "g10.png", nrow=8))  # 2 rows of 8: six tiles unused
    assert len(s) == 10 and "6 unused tiles at the end dropped" in s.layout
    assert (s.images - x).abs().max().item() <= STEP
    for padding, pad_value in ((0, 0.0), (5, 1.0), (1, 0.5)):
        s = read_samples(_save_grid(x, tmp_path / f"p{padding}.png", nrow=5, padding=padding, pad_value=pad_value))
        assert len(s) == 10 and s.layout == f"2 x 5 tiles, padding {padding}", s.layout
        assert (s.images - x).abs().max().item() <= STEP


def test_grid_layout_from_size_alone():
    assert grid_layout(242, 242) == (8, 8, 2)
    assert grid_layout(56, 84) == (2, 3, 0)
    assert grid_layout(28, 28) == (1, 1, 0)
    assert grid_layout(50, 50) is None
    # Stripes of more than one value are not padding: 62x62 is 2x2 tiles with padding 2 only if the stripes agree.
    px = np.zeros((62, 62))
    assert grid_layout(62, 62, px) == (2, 2, 2)
    px[0, 5] = 1.0
    assert grid_layout(62, 62, px) is None


def test_grayscale_and_16_bit_png_grids(tmp_path):
    x = _images(8)
    grid = vutils.make_grid((x + 1) / 2, nrow=4)[0]  # (H, W) in [0, 1]
    Image.fromarray((grid.numpy() * 255 + 0.5).astype(np.uint8), mode="L").save(tmp_path / "l.png")
    s = read_samples(tmp_path / "l.png")
    assert len(s) == 8 and (s.images - x).abs().max().item() <= STEP
    Image.fromarray((grid.numpy() * 65535 + 0.5).astype(np.uint16)).save(tmp_path / "i16.png")
    s = read_samples(tmp_path / "i16.png")
    assert len(s) == 8 and s.value_range == "[0, 65535]"
    assert (s.images - x).abs().max().item() <= 2 / 65535 + 1e-5


# ----------------------------------------------------------------------------- folders of PNGs


def test_folder_of_pngs_in_name_order(tmp_path):
    x = _images(7)
    for i in range(7):
        vutils.save_image((x[i] + 1) / 2, str(tmp_path / f"s{i:02d}.png"))
    (tmp_path / "notes.txt").write_text("not an image")
    s = read_samples(tmp_path)
    assert s.format == "png-folder" and len(s) == 7 and s.layout == "7 files of 28x28"
    assert (s.images - x).abs().max().item() <= STEP


def test_folder_errors(tmp_path):
    with pytest.raises(SampleError, match="no .png files"):
        read_samples(tmp_path)
    x = _images(8)
    for i in range(7):
        vutils.save_image((x[i] + 1) / 2, str(tmp_path / f"s{i}.png"))
    _save_grid(x, tmp_path / "grid.png", nrow=4)
    with pytest.raises(SampleError, match=r"grid\.png: 122x62 pixels; every PNG in a samples folder must be 28x28"):
        read_samples(tmp_path)


# ----------------------------------------------------------------------------- tensors and arrays


@pytest.mark.parametrize("suffix", [".pt", ".npy"])
def test_tensors_in_either_range_and_layout(tmp_path, suffix):
    x = _images(9)

    def save(arr, name):
        path = tmp_path / (name + suffix)
        if suffix == ".pt":
            torch.save(torch.as_tensor(arr), path)
        else:
            np.save(path, np.asarray(arr))
        return path

    s = read_samples(save(x, "pm1"))
    assert s.value_range == "[-1, 1]" and s.format == ("torch" if suffix == ".pt" else "numpy")
    assert torch.allclose(s.images, x, atol=1e-6)
    s = read_samples(save(((x + 1) / 2)[:, 0], "01"))  # N x 28 x 28 in [0, 1]
    assert s.value_range == "[0, 1]" and s.images.shape == (9, 1, 28, 28)
    assert torch.allclose(s.images, x, atol=1e-6)
    s = read_samples(save(((x + 1) / 2 * 255).round().to(torch.uint8), "u8"))
    assert s.value_range == "[0, 255]" and (s.images - x).abs().max().item() <= STEP


def test_pt_dict_and_npz(tmp_path):
    x = _images(6)
    torch.save({"images": x, "step": 100}, tmp_path / "d.pt")
    assert torch.allclose(read_samples(tmp_path / "d.pt").images, x)
    np.savez(tmp_path / "a.npz", samples=x.numpy())
    assert torch.allclose(read_samples(tmp_path / "a.npz").images, x)


# ----------------------------------------------------------------------------- errors, each one line


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_unreadable_files(tmp_path):
    with pytest.raises(SampleError, match="not found") as e:
        read_samples(tmp_path / "missing.png")
    _one_line(e)
    (tmp_path / "junk.png").write_bytes(b"this is not a png at all")
    with pytest.raises(SampleError, match="junk.png: cannot read as a PNG image") as e:
        read_samples(tmp_path / "junk.png")
    _one_line(e)
    _save_grid(_images(8), tmp_path / "cut.png", nrow=4)
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SampleError, match="cut.png: cannot read as a PNG image") as e:
        read_samples(tmp_path / "cut.png")
    _one_line(e)
    Image.new("L", (28, 28)).save(tmp_path / "fake.png", format="BMP")
    with pytest.raises(SampleError, match="not a PNG file"):
        read_samples(tmp_path / "fake.png")
    (tmp_path / "bad.pt").write_bytes(b"\x00\x01garbage")
    with pytest.raises(SampleError, match="bad.pt: cannot read as a torch tensor file") as e:
        read_samples(tmp_path / "bad.pt")
    _one_line(e)
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(SampleError, match="bad.npy: cannot read as a numpy array"):
        read_samples(tmp_path / "bad.npy")
    (tmp_path / "s.txt").write_text("1 2 3")
    with pytest.raises(SampleError, match="unsupported file type '.txt'"):
        read_samples(tmp_path / "s.txt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(SampleError, match="holds a list, not a tensor"):
        read_samples(tmp_path / "list.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "dict.pt")
    with pytest.raises(SampleError, match="without an 'images' or 'samples' entry"):
        read_samples(tmp_path / "dict.pt")


def test_wrong_shapes_values_and_too_few_images(tmp_path):
    for name, arr in (("rgb", np.zeros((8, 3, 28, 28))), ("big", np.zeros((8, 32, 32))), ("flat", np.zeros(784))):
        np.save(tmp_path / f"{name}.npy", arr)
        with pytest.raises(SampleError, match=r"shape .*; expected N x 1 x 28 x 28 or N x 28 x 28"):
            read_samples(tmp_path / f"{name}.npy")
    np.save(tmp_path / "range.npy", np.linspace(-3, 5, 8 * 784).reshape(8, 28, 28))
    with pytest.raises(SampleError, match=r"values span \[-3, 5\]; expected images in \[-1, 1\] or \[0, 1\]"):
        read_samples(tmp_path / "range.npy")
    nan = np.zeros((8, 28, 28))
    nan[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(SampleError, match="1 NaN or infinite values"):
        read_samples(tmp_path / "nan.npy")
    np.save(tmp_path / "words.npy", np.array([["a"] * 28] * 28)[None].repeat(8, 0))
    with pytest.raises(SampleError, match="expected numbers"):
        read_samples(tmp_path / "words.npy")
    Image.new("L", (50, 50)).save(tmp_path / "odd.png")
    with pytest.raises(SampleError, match="50x50 pixels is not a grid of 28x28 tiles"):
        read_samples(tmp_path / "odd.png")
    torch.save(_images(5), tmp_path / "five.pt")
    with pytest.raises(SampleError, match="five.pt: 5 images; scoring needs at least 6"):
        read_samples(tmp_path / "five.pt")
    Image.new("L", (28, 28)).save(tmp_path / "one.png")
    with pytest.raises(SampleError, match="1 image; scoring needs at least 6"):
        read_samples(tmp_path / "one.png")
    assert len(read_samples(tmp_path / "five.pt", min_images=2)) == 5
