"""How fast the WGAN-GP generator of the dcd preset saturates its output sigmoid.

    python benchmarks/dcd_saturation.py [--lr 1e-4] [--steps 300] [--every 25] [--threads 1]

Trains wgan-gp on dcd-mnist-sn (with its generator, dcd-mnist-generator) on the offline split, and every
``--every`` steps prints, for 256 fixed latents: the share of output pixels at the sigmoid's ends
(|x| > 0.99 on the [-1, 1] scale) and the mean over pixels of the output's standard deviation across the
latents (how much the image depends on z).  The dcd preset's quality gate never passed because this share
reaches 99% (docs: claims page, DCD).
"""

from __future__ import annotations

import argparse
import time

import torch

import gonprof
from gonprof.data import Selection, load_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data, _ = load_split(None, Selection.parse(None, None))
    step = gonprof.StepSpec("dcd-mnist-sn", "wgan-gp", hparams={"lr": args.lr}).build(input_shape=tuple(data.shape))
    G = step.models["G"]
    z = torch.randn(256, 128)
    t = time.perf_counter()
    for i in range(1, args.steps + 1):
        step.step(data.images[torch.randint(0, len(data), (50,))])
        if i % args.every == 0:
            with torch.no_grad():
                out = G(z)
            print(f"{i} saturated {(out.abs() > 0.99).float().mean():.3f} std_z {out.std(0).mean():.4f} "
                  f"{time.perf_counter() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()
