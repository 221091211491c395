"""Embed gonprof's Profiler in a plain PyTorch training loop.

The loop below is ordinary PyTorch, written without gonprof in mind: a small
convolutional classifier trained on random data, epochs of batches from a
DataLoader.  Profiling it takes the lines marked ``# gonprof``: create the
Profiler around the loop, loop over ``prof.iterate(loader)`` instead of
``loader`` (it calls ``prof.step()`` after each batch, fetches each batch
outside the measured step, and ends every loop once the profile is done, so
neither loop needs a ``break``), optionally label two phases, and print the
report.

Run:  python examples/embed_profiler.py [--json out.json] [--compile]

With ``--compile`` the model is ``torch.compile``'d: the record then says which
figures describe the compiled step (step peak, step times) and which the eager
maths (FLOPs, tensor-level peak).  Compiling takes a minute on a small CPU.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import gonprof  # gonprof
from gonprof.render import print_record  # gonprof


class SmallConvNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.head = nn.Linear(16 * 14 * 14, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), 0.2)
        x = F.leaky_relu(self.conv2(x), 0.2)
        return self.head(x.flatten(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="batches per epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", default=None, help="also save the record as JSON here")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = SmallConvNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    if args.compile:
        model = torch.compile(model)

    data = TensorDataset(torch.randn(args.steps * args.batch_size, 1, 28, 28),
                         torch.randint(0, 10, (args.steps * args.batch_size,)))
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)

    with gonprof.Profiler(models=model, optimizers=optimizer, warmup=2, active=8) as prof:  # gonprof
        for _epoch in range(args.epochs):
            for images, labels in prof.iterate(loader):  # gonprof: was `in loader`
                with prof.phase("forward+backward"):  # gonprof (optional)
                    loss = F.cross_entropy(model(images), labels)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                with prof.phase("optimizer"):  # gonprof (optional)
                    optimizer.step()

    record = prof.report()
    print_record(record)  # gonprof
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(record.to_json())


if __name__ == "__main__":
    main()
