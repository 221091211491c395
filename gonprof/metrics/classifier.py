"""The project's own MNIST feature extractor: a small CNN, trained by a command.

No pretrained network can be downloaded here, so FID, KID and precision /
recall are computed in the feature space of a classifier the project trains
itself and ships in ``gonprof/weights/mnist_classifier.pt`` (float16, about
280 kB).  Every score records the extractor's name and the first 12 hex
digits of the weights file's sha256 (:func:`weights_hash`), so two scores are
comparable only when both say the same.

Split (fixed, documented): the classifier trains on the first
:data:`TRAIN_SPLIT` (5,000) images of the embedded MNIST test split and is
evaluated on the last 5,000, which also serve as the reference set for the
quality metrics (:func:`reference_split`).

Reproduce the shipped weights (a few minutes on one CPU core)::

    python -m gonprof.metrics.classifier --epochs 12 --seed 0 --threads 1 \
        --out gonprof/weights/mnist_classifier.pt

``--data DIR`` trains on any IDX folder instead (its first 5,000 images, held
out the rest).  Training is deterministic for a given seed, torch version and
thread count (deterministic algorithms on, seeded initialisation and batch
order); a different thread count or torch version may change the last bits,
and so the hash, but not the accuracy to speak of.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from gonprof.data import ImageData, load_dataset

EXTRACTOR_NAME = "gonprof-mnist-cnn-v1"
WEIGHTS_PATH = Path(__file__).resolve().parent.parent / "weights" / "mnist_classifier.pt"
TRAIN_SPLIT = 5000
FEATURE_DIM = 128


class MnistClassifier(nn.Module):
    """Three 3x3 convolutions (BatchNorm, ReLU, each followed by 2x2 max pooling) and two linear layers.

    ``features(x)`` is the penultimate layer (``(N, feature_dim)``, after ReLU);
    ``forward(x)`` the logits ``(N, num_classes)``.  Inputs are ``(N, 1, 28, 28)``
    in ``[-1, 1]``.
    """

    def __init__(self, width: int = 32, feature_dim: int = FEATURE_DIM, num_classes: int = 10,
                 in_channels: int = 1, dropout: float = 0.3):
        super().__init__()
        c = width
        self.config = dict(width=width, feature_dim=feature_dim, num_classes=num_classes,
                           in_channels=in_channels, dropout=dropout)

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(in_channels, c), nn.MaxPool2d(2),        # 28 -> 14
            *block(c, 2 * c), nn.MaxPool2d(2),              # 14 -> 7
            *block(2 * c, 2 * c), nn.MaxPool2d(2),          # 7 -> 3
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * c * 9, feature_dim), nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    @property
    def feature_dim(self) -> int:
        return self.config["feature_dim"]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return f, self.head(f)


@dataclass(frozen=True)
class TrainReport:
    epochs: int
    seed: int
    n_train: int
    n_heldout: int
    train_accuracy: float
    heldout_accuracy: float
    seconds: float
    params: int
    data: str

    def to_dict(self) -> dict:
        return asdict(self)


def reference_split(data: ImageData | None = None, n_train: int = TRAIN_SPLIT) -> tuple[ImageData, ImageData]:
    """(classifier training images, held-out reference images): the first ``n_train`` and the rest."""
    data = load_dataset() if data is None else data
    if len(data) <= n_train:
        raise ValueError(f"{data.name}: {len(data)} images; need more than {n_train} to hold some out")
    return data.split(n_train)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits for ``images`` in batches (eval mode, no grad)."""
    was = model.training
    model.eval()
    try:
        return torch.cat([model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    finally:
        model.train(was)


def accuracy(model: nn.Module, data: ImageData, batch_size: int = 1000) -> float:
    if len(data) == 0:
        return float("nan")
    pred = predict(model, data.images, batch_size).argmax(1)
    return (pred == data.labels).float().mean().item()


def _to_half(model: MnistClassifier) -> None:
    """Round the floating-point parameters and buffers to float16 and back (what gets shipped)."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())


def train_classifier(data: ImageData | None = None, epochs: int = 12, seed: int = 0, *,
                     n_train: int = TRAIN_SPLIT, batch_size: int = 64, lr: float = 2e-3,
                     weight_decay: float = 5e-4, width: int = 32, feature_dim: int = FEATURE_DIM,
                     log=None) -> tuple[MnistClassifier, TrainReport]:
    """Train the extractor on the first ``n_train`` images of ``data``; evaluate on the rest.

    Adam with a one-cycle schedule, no augmentation.  The returned model has its
    weights already rounded to float16 (as shipped), and the report's accuracies
    are those of the rounded model.
    """
    data = load_dataset() if data is None else data
    train, held = reference_split(data, n_train)
    # Same as torch.use_deterministic_algorithms(True, warn_only=True), without the
    # torch._inductor import that function does (seconds, for a config this run never uses).
    prev_det = torch.get_deterministic_debug_mode()
    torch.set_deterministic_debug_mode("warn")
    t0 = time.perf_counter()
    try:
        torch.manual_seed(seed)
        model = MnistClassifier(width=width, feature_dim=feature_dim, num_classes=max(data.num_classes, 10),
                                in_channels=data.shape[0])
        steps_per_epoch = len(train) // batch_size
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                    pct_start=0.2)
        batches = train.batches(batch_size, seed=seed)
        model.train()
        for epoch in range(epochs):
            total = 0.0
            for _ in range(steps_per_epoch):
                x, y = next(batches)
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
            if log is not None:
                log(f"epoch {epoch + 1}/{epochs}: loss {total / steps_per_epoch:.4f} "
                    f"({time.perf_counter() - t0:.0f} s)")
    finally:
        torch.set_deterministic_debug_mode(prev_det)
    seconds = time.perf_counter() - t0
    model.eval()
    _to_half(model)
    report = TrainReport(epochs=epochs, seed=seed, n_train=len(train), n_heldout=len(held),
                         train_accuracy=accuracy(model, train), heldout_accuracy=accuracy(model, held),
                         seconds=round(seconds, 1), params=sum(p.numel() for p in model.parameters()),
                         data=data.name)
    return model, report


def save_classifier(model: MnistClassifier, path: str | os.PathLike, report: TrainReport | None = None) -> str:
    """Save float16 weights plus config and report; returns the new weights hash.

    The file's bytes depend only on the weights, config and report (not on the
    file name or the training time), so a reproduced training reproduces the hash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    meta = report.to_dict() if report is not None else {}
    meta.pop("seconds", None)
    buf = io.BytesIO()  # a file object: torch.save would otherwise name the archive after the file
    torch.save({"extractor": EXTRACTOR_NAME, "config": dict(model.config), "state_dict": state,
                "report": meta}, buf)
    path.write_bytes(buf.getvalue())
    return weights_hash(path)


def weights_hash(path: str | os.PathLike | None = None) -> str:
    """First 12 hex digits of the sha256 of the weights file (default: the shipped one)."""
    path = Path(WEIGHTS_PATH if path is None else path)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _load(path: Path) -> tuple[MnistClassifier, dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: classifier weights not found; train them with "
                                f"`python -m gonprof.metrics.classifier --out {path}`")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = MnistClassifier(**blob["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.extractor_name = blob.get("extractor", EXTRACTOR_NAME)
    model.weights_hash = weights_hash(path)
    model.train_report = blob.get("report", {})
    return model, blob


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> MnistClassifier:
    return _load(Path(path))[0]


def load_classifier(path: str | os.PathLike | None = None) -> MnistClassifier:
    """The shipped extractor (or the one at ``path``), in eval mode with frozen weights.

    The model carries ``extractor_name``, ``weights_hash`` and ``train_report``
    attributes.  Loaded once per file and cached; do not modify it in place.
    """
    path = Path(WEIGHTS_PATH if path is None else path).resolve()
    if not path.is_file():
        _load(path)  # raises the explanatory FileNotFoundError
    return _load_cached(str(path), path.stat().st_mtime_ns)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gonprof.metrics.classifier",
                                 description="Train gonprof's MNIST feature extractor on the first 5,000 images "
                                             "and report accuracy on the rest.")
    ap.add_argument("--data", default=None, help="IDX folder (default: the embedded MNIST test split)")
    ap.add_argument("--split", default=None, help="split of --data to read: train or test (default: train if present)")
    ap.add_argument("--out", default=str(WEIGHTS_PATH), help="where to write the weights (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=TRAIN_SPLIT)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for this run (bit-for-bit results need the same count; "
                         "the shipped weights used 1)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.data, args.split)
    print(f"training {EXTRACTOR_NAME} on {data.name}: first {args.n_train} images, "
          f"holding out {len(data) - args.n_train}; {args.epochs} epochs, seed {args.seed}, "
          f"{torch.get_num_threads()} threads", flush=True)
    model, report = train_classifier(data, args.epochs, args.seed, n_train=args.n_train,
                                     log=lambda m: print(m, flush=True))
    digest = save_classifier(model, args.out, report)
    size = Path(args.out).stat().st_size
    print(f"params {report.params:,}; training {report.seconds:.0f} s; "
          f"train accuracy {report.train_accuracy:.4f}; held-out accuracy {report.heldout_accuracy:.4f} "
          f"on {report.n_heldout} images")
    print(f"wrote {args.out} ({size / 1024:.0f} KiB), sha256[:12] {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
