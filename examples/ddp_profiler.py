"""Profile every rank of your own DistributedDataParallel script, and gather the records to rank 0.

The loop below is ordinary PyTorch DDP: a small convolutional classifier trained on random data, each
rank on its own batches.  Profiling it takes the lines marked ``# gonprof``: a Profiler around the loop
on each rank (it measures that rank), a counter of what DDP all-reduces, ``prof.step()`` and
``counter.step()`` after each step, and one call that gathers every rank's record to rank 0.

Run:  python examples/ddp_profiler.py [--nproc 2] [--json out.json]
      (it starts itself under torch.distributed.run with that many gloo ranks on this machine), or
      torchrun --standalone --nproc-per-node 2 examples/ddp_profiler.py [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def launch_ranks() -> None:
    """Not under a launcher: start ``--nproc`` ranks of this very script (before importing torch here)."""
    nproc = argparse.ArgumentParser(add_help=False)
    nproc.add_argument("--nproc", type=int, default=2)
    n = nproc.parse_known_args()[0].nproc
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           os.path.abspath(__file__), *sys.argv[1:]]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    sys.exit(subprocess.call(cmd, env=env))


if __name__ == "__main__" and "RANK" not in os.environ and "-h" not in sys.argv and "--help" not in sys.argv:
    launch_ranks()

import torch  # noqa: E402 - after the launcher check, so that the launching process stays light
import torch.distributed as dist  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from rich.console import Console  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

import gonprof  # noqa: E402 gonprof
from gonprof.records import save_records  # noqa: E402 gonprof
from gonprof.render import render_distributed  # noqa: E402 gonprof


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
    parser.add_argument("--nproc", type=int, default=2, help="ranks to start when not already under a launcher")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16, help="per rank")
    parser.add_argument("--json", default=None, help="rank 0 saves the gathered record as JSON here")
    args = parser.parse_args()

    dist.init_process_group("gloo")  # the launcher set RANK, WORLD_SIZE and the rendezvous address
    rank = dist.get_rank()
    torch.manual_seed(0)  # the same initial weights on every rank
    model = DistributedDataParallel(SmallConvNet())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    counter = gonprof.count_allreduce(model)  # gonprof: count the bytes DDP all-reduces
    torch.manual_seed(1 + rank)  # each rank its own data

    # warmup=3: DDP rebuilds its gradient buckets once, in the second step; the measuring step (the last
    # warmup step) then sees the steady state
    with gonprof.Profiler(models=model.module, optimizers=optimizer, warmup=3, active=8) as prof:  # gonprof
        for _ in range(args.steps):
            images = torch.randn(args.batch_size, 1, 28, 28)
            labels = torch.randint(0, 10, (args.batch_size,))
            with prof.phase("forward+backward"), counter.phase("forward+backward"):  # gonprof (optional)
                loss = F.cross_entropy(model(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            with prof.phase("optimizer"):  # gonprof (optional)
                optimizer.step()
            prof.step()  # gonprof
            counter.step()  # gonprof
            if prof.done:
                break

    record = gonprof.gather_records(prof.report(), comm=counter)  # gonprof: every rank's record, on rank 0
    if record is not None:  # rank 0
        Console().print(render_distributed(record))
        if args.json:  # a results file that `gonprof report` renders
            save_records([record], args.json)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
