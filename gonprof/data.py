"""Image data: an IDX reader of gonprof's own, the embedded MNIST test split,
and a synthetic dataset for fast tests.

IDX is the format of MNIST, Fashion-MNIST and KMNIST: a 4-byte magic number
(two zero bytes, a type code, the number of dimensions), one big-endian uint32
per dimension, then the data.  Files may be gzip-compressed (``.gz``) or raw.

A folder is read by split: ``<split>-images-idx3-ubyte[.gz]`` with
``<split>-labels-idx1-ubyte[.gz]``, where split is ``train`` or ``t10k``.
Every problem with a file raises :class:`DataError` with one line naming the
file and what is wrong.

Images come out as float32 ``(N, 1, H, W)`` scaled to ``[-1, 1]``.

Training and held-out images
----------------------------
:func:`load_split` gives every tool the same two disjoint parts of a source:
the images it trains on and the images it scores against.  The embedded MNIST
test split trains on its first 5,000 images and holds out the last 5,000 (the
quality classifier's training and reference halves); an IDX folder holding
both a ``train`` and a ``t10k`` split trains on ``train`` and holds out
``t10k`` (for MNIST's own ``t10k``, only its last 5,000 images: the first
5,000 trained the quality extractor); any other single-split source trains
on its first half and holds out the second.

A :class:`Selection` (``--classes 0,3 --per-class 10``) keeps the training
images of some classes, the first N of each (in file order, so it is
deterministic), and the held-out images of the same classes (all of them).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

EMBEDDED_DIR = Path(__file__).parent / "data"
SPLITS = {"train": "train", "test": "t10k", "t10k": "t10k"}
_DTYPES: dict[int, np.dtype[Any]] = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
                                     0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DataError(Exception):
    """A dataset file is missing, truncated or corrupt; the message is one line."""


class SelectionError(ValueError):
    """A data selection that cannot be made (no such class, N < 1, nothing kept); one line."""


EMBEDDED_TRAIN = 5000  # the embedded split's training part: images 0-4,999; held out: 5,000-9,999


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip or raw) into a numpy array, validating it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip stream ({exc})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in _DTYPES or not 1 <= ndim <= 4:
        raise DataError(f"{path}: bad IDX magic number 0x{raw[:4].hex()} (not an IDX file)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_DTYPES[dtype_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        kind = "truncated" if got < expected else "has trailing bytes"
        raise DataError(f"{path}: {kind}: header says shape {shape} ({expected} bytes), found {got} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def available_splits(folder: str | os.PathLike) -> list[str]:
    folder = Path(folder)
    return [s for s in ("train", "t10k") if _find(folder, f"{s}-images-idx3-ubyte")]


@dataclass
class ImageData:
    """Images in [-1, 1], shape (N, C, H, W), with integer labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str = ""
    num_classes: int = 10

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])

    def subset(self, idx: torch.Tensor, name: str) -> ImageData:
        return ImageData(self.images[idx], self.labels[idx], name, self.num_classes)

    def split(self, n_first: int) -> tuple[ImageData, ImageData]:
        """The first ``n_first`` images and the rest (a fixed, documented split)."""
        a = ImageData(self.images[:n_first], self.labels[:n_first], self.name + f"[:{n_first}]", self.num_classes)
        b = ImageData(self.images[n_first:], self.labels[n_first:], self.name + f"[{n_first}:]", self.num_classes)
        return a, b

    def batches(self, batch_size: int, seed: int = 0, start_step: int = 0
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless shuffled batches ``(images, labels)``; reshuffled every epoch.

        The order depends only on ``seed``; ``start_step`` skips ahead so that a
        resumed run sees exactly the batches the uninterrupted one would have.
        """
        n = len(self)
        if batch_size > n:
            raise DataError(f"{self.name}: batch size {batch_size} exceeds the {n} images available")
        per_epoch = n // batch_size
        step = start_step
        while True:
            epoch, i = divmod(step, per_epoch)
            gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=gen)
            idx = order[i * batch_size:(i + 1) * batch_size]
            yield self.images[idx], self.labels[idx]
            step += 1


def load_idx_folder(folder: str | os.PathLike, split: str | None = None) -> ImageData:
    """Read a split of an IDX folder; by default the training split when present, else t10k."""
    folder = Path(folder)
    if folder.is_file():
        raise DataError(f"{folder}: is a file; --data takes the folder that holds the IDX files")
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found")
    present = available_splits(folder)
    if split is None:
        if not present:
            raise DataError(f"{folder}: no IDX images found (expected train-images-idx3-ubyte[.gz] "
                            f"or t10k-images-idx3-ubyte[.gz])")
        split = present[0]
    prefix = SPLITS.get(split)
    if prefix is None:
        raise DataError(f"unknown split {split!r}; use train or test")
    img_path = _find(folder, f"{prefix}-images-idx3-ubyte")
    lab_path = _find(folder, f"{prefix}-labels-idx1-ubyte")
    if img_path is None:
        raise DataError(f"{folder}: {prefix}-images-idx3-ubyte[.gz] not found (present splits: {present or 'none'})")
    if lab_path is None:
        raise DataError(f"{folder}: {prefix}-labels-idx1-ubyte[.gz] not found")
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    if images.ndim != 3:
        raise DataError(f"{img_path}: expected a 3-d image array (N, H, W), got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{lab_path}: expected a 1-d label array, got shape {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"{lab_path}: {len(labels)} labels for {len(images)} images in {img_path.name}")
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1).div_(127.5).sub_(1.0)
    y = torch.from_numpy(labels.astype(np.int64))
    classes = int(y.max().item()) + 1 if len(y) else 0
    return ImageData(x, y, f"{folder.name}/{prefix}", max(classes, 1))


def load_dataset(data: str | os.PathLike | None = None, split: str | None = None) -> ImageData:
    """The dataset the tools train and score on.

    ``None`` or ``"mnist-test"`` is the MNIST test split embedded in the
    package (10,000 images, no download); ``"synthetic"`` is :func:`synthetic`;
    anything else is an IDX folder.
    """
    if data is None or str(data) == "mnist-test":
        d = load_idx_folder(EMBEDDED_DIR, "t10k")
        d.name = "mnist-test (embedded)"
        return d
    if str(data) == "synthetic":
        return synthetic()
    return load_idx_folder(data, split)


@dataclass(frozen=True)
class Selection:
    """Which images to keep: ``classes`` (None: all) and the first ``per_class`` of each (None: all)."""

    classes: tuple[int, ...] | None = None
    per_class: int | None = None

    def __post_init__(self) -> None:
        if self.classes is not None:
            if len(self.classes) == 0:
                raise SelectionError("--classes selects nothing; name at least one class (e.g. --classes 0)")
            bad = [c for c in self.classes if not isinstance(c, int) or isinstance(c, bool) or c < 0]
            if bad:
                raise SelectionError(f"--classes takes non-negative integer labels, not {bad[0]!r}")
            if len(set(self.classes)) != len(self.classes):
                raise SelectionError(f"--classes names a class twice: {','.join(map(str, self.classes))}")
        if self.per_class is not None and (not isinstance(self.per_class, int) or isinstance(self.per_class, bool)
                                           or self.per_class < 1):
            raise SelectionError(f"--per-class must be an integer of at least 1, not {self.per_class!r}")

    @classmethod
    def parse(cls, classes: str | list | tuple | None = None, per_class: int | None = None) -> Selection:
        """From CLI text (``"0,3,7"``) or a sequence of labels."""
        if isinstance(classes, str):
            text: str = classes
            shown = text if len(text) <= 40 else text[:37] + "..."
            parts = [p.strip() for p in text.split(",")]
            if "" in parts and any(parts):
                raise SelectionError(f"--classes {shown!r} has an empty item; name labels separated by single "
                                     "commas (e.g. 0,3,7)")
            try:
                classes = tuple(int(p) for p in parts if p)
            except ValueError:
                raise SelectionError(f"--classes takes labels separated by commas (e.g. 0,3,7), not {shown!r}") \
                    from None
        elif classes is not None:
            classes = tuple(classes)
        return cls(classes, per_class)

    @property
    def everything(self) -> bool:
        return self.classes is None and self.per_class is None

    def label(self) -> str:
        """Short text for names and titles: ``all``, ``class 0``, ``classes 0,3 x10``."""
        if self.everything:
            return "all classes"
        what = "all classes" if self.classes is None else \
            ("class " if len(self.classes) == 1 else "classes ") + ",".join(map(str, self.classes))
        return what + (f", {self.per_class} per class" if self.per_class else "")

    def to_dict(self) -> dict:
        return {"classes": list(self.classes) if self.classes is not None else None, "per_class": self.per_class}

    def _check_classes(self, data: ImageData) -> None:
        present = set(torch.unique(data.labels).tolist())
        missing = [c for c in (self.classes or ()) if c not in present]
        if missing:
            have = ",".join(map(str, sorted(present))) or "none"
            raise SelectionError(f"{data.name} has no image of class {missing[0]} (classes present: {have})")

    def keep(self, data: ImageData, per_class: bool = True) -> ImageData:
        """The images of ``data`` this selection keeps, in their original order.

        ``per_class=False`` applies the classes only (held-out images are all kept).
        """
        if self.everything or (self.classes is None and not per_class):
            return data
        self._check_classes(data)
        labels = data.labels
        classes = self.classes if self.classes is not None else tuple(sorted(set(labels.tolist())))
        mask = torch.zeros(len(labels), dtype=torch.bool)
        for c in classes:
            idx = (labels == c).nonzero(as_tuple=True)[0]
            if per_class and self.per_class is not None:
                idx = idx[:self.per_class]
            mask[idx] = True
        idx = mask.nonzero(as_tuple=True)[0]
        label = self.label() if per_class else Selection(self.classes).label()
        return data.subset(idx, f"{data.name}{{{label}}}")


def load_split(data: str | os.PathLike | None = None,
               selection: Selection | None = None) -> tuple[ImageData, ImageData]:
    """(training images, held-out images) of a source, disjoint, with ``selection`` applied.

    See the module docstring for which images each source holds out.  The
    held-out part keeps every image of the selected classes.
    """
    selection = selection or Selection()
    if data is None or str(data) == "mnist-test":
        train, held = load_dataset(data).split(EMBEDDED_TRAIN)
    elif str(data) != "synthetic" and Path(data).is_dir() and set(available_splits(data)) >= {"train", "t10k"}:
        train, held = load_idx_folder(data, "train"), load_idx_folder(data, "t10k")
        if _is_embedded_split(held):  # MNIST's own test split: its first half trained the quality extractor
            held = held.split(EMBEDDED_TRAIN)[1]
    else:
        whole = load_dataset(data)
        train, held = whole.split(len(whole) // 2)
    train = selection.keep(train)
    held = selection.keep(held, per_class=False)
    if len(train) == 0:
        raise SelectionError(f"the selection ({selection.label()}) keeps no training image of {train.name}")
    return train, held


def _is_embedded_split(data: ImageData) -> bool:
    """Whether ``data`` holds exactly the embedded MNIST test split's images."""
    if tuple(data.images.shape) != (10_000, 1, 28, 28):
        return False
    return bool(torch.equal(data.images, load_dataset(None).images))


def synthetic(n: int = 512, shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10,
              seed: int = 0) -> ImageData:
    """Class-dependent blobs in [-1, 1]: cheap, deterministic, and learnable.

    Image ``i`` of class ``c`` is a Gaussian bump centred at a class-specific
    position plus a little noise, so a classifier can tell classes apart.
    """
    c, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    angles = labels.float() * (2 * torch.pi / num_classes)
    cy = h / 2 + (h / 4) * torch.sin(angles)
    cx = w / 2 + (w / 4) * torch.cos(angles)
    yy = torch.arange(h).float().view(1, h, 1)
    xx = torch.arange(w).float().view(1, 1, w)
    sigma = max(h, w) / 8
    bump = torch.exp(-((yy - cy.view(-1, 1, 1)) ** 2 + (xx - cx.view(-1, 1, 1)) ** 2) / (2 * sigma**2))
    images = bump.unsqueeze(1).expand(n, c, h, w) * 2 - 1
    images = (images + 0.05 * torch.randn(n, c, h, w, generator=gen)).clamp(-1, 1)
    return ImageData(images.contiguous(), labels, f"synthetic{shape}", num_classes)
