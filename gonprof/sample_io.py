"""Read a set of 28x28 grayscale samples from anywhere, for ``gonprof score``.

:func:`read_samples` takes:

- a **PNG grid** (``.png``), as ``torchvision.utils.save_image`` / ``make_grid``
  write it: tiles of 28x28 separated and framed by ``padding`` pixels (default
  2). The layout is found from the image size: rows and columns of
  ``28 + padding`` pixels plus one more ``padding``, trying padding 2 first,
  then 0, 1 and 3-10; for a padding above 0 the separating stripes must be of
  one value.  Unused tiles at the end of the last row (``make_grid`` leaves
  them the padding colour) are dropped.  A single 28x28 PNG is a grid of one.
- a **folder of PNGs**: every ``*.png`` in it (sorted by name), each 28x28.
- a **tensor or array**: ``.pt`` / ``.pth`` (``torch.load(weights_only=True)``:
  a tensor, or a dict holding one under ``images`` or ``samples``) or ``.npy``
  (``numpy.load``, no pickles; ``.npz`` with one array also works), of shape
  ``N x 1 x 28 x 28`` or ``N x 28 x 28``.

PNG pixels (8- or 16-bit; colour is converted to luminance) are scaled to
``[-1, 1]``.  Tensor values in ``[0, 1]`` are read as ``[0, 1]`` images,
values in ``[-1, 1]`` with some below 0 as ``[-1, 1]``, integers up to 255 as
8-bit pixels; anything else is an error.  :class:`Samples` says which
(``value_range``).  Every problem raises :class:`SampleError` (a
:class:`~gonprof.data.DataError`, exit status 1 on the command line) with one
line naming the file.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gonprof.data import DataError

if TYPE_CHECKING:
    import torch

TILE = 28
GRID_PADDINGS = (2, 0, 1, 3, 4, 5, 6, 7, 8, 9, 10)
MIN_IMAGES = 6  # precision / recall and density / coverage need more than k = 5 neighbours
RANGE_TOLERANCE = 1e-3
PNG_SUFFIXES = (".png",)
TORCH_SUFFIXES = (".pt", ".pth")
NUMPY_SUFFIXES = (".npy", ".npz")


class SampleError(DataError):
    """A samples file or folder that cannot be read, has the wrong shape, or holds too few images."""


@dataclass(frozen=True)
class Samples:
    """Images read by :func:`read_samples`: ``images`` is float32 ``(N, 1, 28, 28)`` in ``[-1, 1]``."""

    images: torch.Tensor
    source: str
    format: str  # png-grid, png-folder, torch, numpy
    value_range: str  # how the stored values were read: "[-1, 1]", "[0, 1]", "[0, 255]" or "[0, 65535]"
    layout: str  # e.g. "8 x 8 tiles, padding 2" or "shape (64, 1, 28, 28) float32"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def describe(self) -> dict:
        """Everything but the images (for JSON)."""
        d = asdict(self)
        d.pop("images")
        d["n_images"] = len(self)
        return d


def read_samples(path: str | os.PathLike, min_images: int = MIN_IMAGES) -> Samples:
    """Read samples from a PNG grid, a folder of PNGs, or a ``.pt`` / ``.npy`` tensor (see the module doc)."""
    path = Path(path)
    if not path.exists():
        raise SampleError(f"{path}: not found")
    if path.is_dir():
        s = _read_folder(path)
    else:
        suffix = path.suffix.lower()
        if suffix in PNG_SUFFIXES:
            s = _read_grid(path)
        elif suffix in TORCH_SUFFIXES:
            s = _from_array(_load_torch(path), path, "torch")
        elif suffix in NUMPY_SUFFIXES:
            s = _from_array(_load_numpy(path), path, "numpy")
        else:
            raise SampleError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; expected a .png grid, "
                              f"a folder of .png files, or a .pt / .npy tensor")
    if len(s) < min_images:
        raise SampleError(f"{path}: {len(s)} image{'s' if len(s) != 1 else ''}; scoring needs at least {min_images}")
    return s


# -- PNG ------------------------------------------------------------------------------


def read_png(path: Path) -> tuple[np.ndarray, int]:
    """(pixels as a 2-d float64 array, the pixel maximum: 255 or 65535) of a grayscale or colour PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise SampleError(f"{path}: not a PNG file ({im.format or 'unknown'} image)")
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float64)
                return a, 65535
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA").convert("RGB")
            return np.asarray(im.convert("L"), dtype=np.float64), 255
    except SampleError:
        raise
    except FileNotFoundError:
        raise SampleError(f"{path}: not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SampleError(f"{path}: cannot read as a PNG image ({why})") from None


def grid_layout(height: int, width: int, pixels: np.ndarray | None = None, tile: int = TILE,
                paddings: tuple[int, ...] = GRID_PADDINGS) -> tuple[int, int, int] | None:
    """(rows, columns, padding) of a ``make_grid`` image of this size, or None.

    With ``pixels``, a padding above 0 counts only when its stripes hold a single value.
    """
    for p in paddings:
        if (height - p) % (tile + p) or (width - p) % (tile + p):
            continue
        rows, cols = (height - p) // (tile + p), (width - p) // (tile + p)
        if rows < 1 or cols < 1:
            continue
        if p and pixels is not None:
            stripes = np.ones((height, width), dtype=bool)
            for y in range(rows):
                for x in range(cols):
                    y0, x0 = y * (tile + p) + p, x * (tile + p) + p
                    stripes[y0:y0 + tile, x0:x0 + tile] = False
            values = pixels[stripes]
            if values.size and values.min() != values.max():
                continue
        return rows, cols, p
    return None


def _read_grid(path: Path) -> Samples:
    px, top = read_png(path)
    h, w = px.shape
    layout = grid_layout(h, w, px)
    if layout is None:
        raise SampleError(f"{path}: {w}x{h} pixels is not a grid of {TILE}x{TILE} tiles "
                          f"(with padding 0-10 between and around them, as make_grid / save_image write)")
    rows, cols, p = layout
    pad_value = px[0, 0] if p else 0.0
    tiles = [px[y * (TILE + p) + p:y * (TILE + p) + p + TILE, x * (TILE + p) + p:x * (TILE + p) + p + TILE]
             for y in range(rows) for x in range(cols)]
    dropped = 0
    while rows > 1 and dropped < cols - 1 and (tiles[-1] == pad_value).all():  # make_grid's unused tiles
        tiles.pop()
        dropped += 1
    what = f"{rows} x {cols} tiles, padding {p}" + (f"; {dropped} unused tile{'s' if dropped > 1 else ''} "
                                                      f"at the end dropped" if dropped else "")
    return Samples(_to_images(np.stack(tiles), top), str(path), "png-grid", f"[0, {top}]", what)


def _read_folder(path: Path) -> Samples:
    try:
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in PNG_SUFFIXES and f.is_file())
    except OSError as exc:
        raise SampleError(f"{path}: cannot list the folder ({exc.strerror or exc})") from None
    if not files:
        raise SampleError(f"{path}: no .png files in the folder")
    arrays, tops = [], set()
    for f in files:
        a, top = read_png(f)
        if a.shape != (TILE, TILE):
            raise SampleError(f"{f}: {a.shape[1]}x{a.shape[0]} pixels; every PNG in a samples folder must be "
                              f"{TILE}x{TILE} (pass a grid as a file)")
        arrays.append(a / top)
        tops.add(top)
    top = max(tops)
    return Samples(_to_images(np.stack(arrays), 1.0), str(path), "png-folder", f"[0, {top}]",
                   f"{len(files)} files of {TILE}x{TILE}")


def _to_images(pixels: np.ndarray, top: float):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    return (x / float(top) * 2 - 1).clamp_(-1, 1).unsqueeze(1).contiguous()


# -- tensors and arrays --------------------------------------------------------------


def _load_torch(path: Path):
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SampleError(f"{path}: cannot read as a torch tensor file ({first[:160]})") from None
    if isinstance(obj, dict):
        keys = [k for k in ("images", "samples") if k in obj]
        if not keys:
            raise SampleError(f"{path}: holds a dict without an 'images' or 'samples' entry "
                              f"(keys: {', '.join(map(str, list(obj)[:8]))})")
        obj = obj[keys[0]]
    if isinstance(obj, np.ndarray):
        return obj
    if not isinstance(obj, torch.Tensor):
        raise SampleError(f"{path}: holds a {type(obj).__name__}, not a tensor")
    return obj.detach().cpu().numpy() if obj.dtype != torch.bfloat16 else obj.float().numpy()


def _load_numpy(path: Path) -> np.ndarray:
    try:
        obj = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SampleError(f"{path}: cannot read as a numpy array ({first[:160]})") from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            names = list(obj.files)
            if len(names) != 1:
                raise SampleError(f"{path}: an .npz file must hold exactly one array, it holds {len(names)}")
            try:
                return obj[names[0]]
            except (ValueError, OSError) as exc:
                raise SampleError(f"{path}: cannot read its array ({exc})") from None
    return obj


def _from_array(a: np.ndarray, path: Path, fmt: str) -> Samples:
    shape = tuple(a.shape)
    if a.dtype.kind not in "biuf":
        raise SampleError(f"{path}: {a.dtype} values; expected numbers")
    if not (len(shape) == 4 and shape[1:] == (1, TILE, TILE)) and not (len(shape) == 3 and shape[1:] == (TILE, TILE)):
        raise SampleError(f"{path}: shape {shape}; expected N x 1 x {TILE} x {TILE} or N x {TILE} x {TILE}")
    a = a.reshape(shape[0], TILE, TILE)
    layout = f"shape {shape} {a.dtype}"
    if a.size == 0:
        return Samples(_to_images(a.astype(np.float32), 1.0), str(path), fmt, "[-1, 1]", layout)
    f = a.astype(np.float64)
    if not np.isfinite(f).all():
        raise SampleError(f"{path}: {int((~np.isfinite(f)).sum())} NaN or infinite values")
    lo, hi = float(f.min()), float(f.max())
    tol = RANGE_TOLERANCE
    if a.dtype.kind in "biu" and hi > 1:
        if lo < 0 or hi > 255:
            raise SampleError(f"{path}: integer values span [{lo:g}, {hi:g}]; expected 0-255 pixels")
        return Samples(_to_images(f, 255.0), str(path), fmt, "[0, 255]", layout)
    if lo >= -tol and hi <= 1 + tol:
        return Samples(_to_images(f, 1.0), str(path), fmt, "[0, 1]", layout)
    if lo >= -1 - tol and hi <= 1 + tol:
        return Samples(_to_images((f + 1) / 2, 1.0), str(path), fmt, "[-1, 1]", layout)
    raise SampleError(f"{path}: values span [{lo:.4g}, {hi:.4g}]; expected images in [-1, 1] or [0, 1]")
