"""Does the dcd preset's pretraining collapse its generator, and which change stops it?

    python benchmarks/dcd_saturation.py [--mode wgan-gp|sngan] [--lr LR] [--gp-weight 10] [--unit-range]
        [--critic source|fan-in|no-sn] [--generator-init torch|he] [--steps 300] [--every 25] [--grid PNG]

Trains dcd-mnist-sn and its generator (dcd-mnist-generator) on the offline split, batch 50, as wgan-gp
(the preset's pretraining) or as an SN-GAN (the dcd mode's hinge loss without Langevin steps), and every
``--every`` steps prints, for 256 fixed latents: the share of output pixels at the sigmoid's ends
(|x| > 0.99 on the [-1, 1] scale; 0.85 for real digits) and the mean over pixels of the output's standard
deviation across the latents (how much the image depends on z; 0.36 for real digits).  The options change
one thing each from the preset's settings, to find what makes every z draw the same image (docs: claims
page, DCD; logs in benchmarks/dcd-probe/).
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision.utils import save_image

import gonprof
from gonprof.data import Selection, load_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=None, help="default: the mode's (wgan-gp 1e-4, dcd 2e-4)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--gp-weight", type=float, default=10.0,
                    help="the gradient penalty's weight (the DCD source's MNIST script has it commented out: 0)")
    ap.add_argument("--unit-range", action="store_true",
                    help="feed the critic pixels in [0, 1] as the source does (gonprof's images are in [-1, 1])")
    ap.add_argument("--critic", choices=("source", "fan-in", "no-sn"), default="source",
                    help="the critic's weights N(0, 1) under spectral norm as the source; rescaled to std "
                    "1/sqrt(fan_in) (spectral norm makes the function the same; Adam's steps are then larger "
                    "relative to them); or dcd-mnist, the critic without spectral norm (torch's default init)")
    ap.add_argument("--generator-init", choices=("torch", "he"), default="torch",
                    help="the transposed convolutions as torch initialises them (as the source), or He-normal on "
                    "their real fan-in (in_channels * k * k / stride^2), which keeps z's variation through the layers")
    ap.add_argument("--grid", default=None, help="write 64 of the fixed latents' images here (PNG) at each report")
    ap.add_argument("--mode", choices=("wgan-gp", "sngan"), default="wgan-gp",
                    help="wgan-gp, or the hinge loss of the dcd mode without Langevin steps (SN-GAN: Adam 2e-4, "
                    "betas (0, 0.9), 5 critic updates)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data, _ = load_split(None, Selection.parse(None, None))
    hparams: dict = {"gp_weight": args.gp_weight} if args.mode == "wgan-gp" else {"langevin_steps": 0, "g_steps": 1}
    if args.lr is not None:
        hparams["lr"] = args.lr
    critic_arch = "dcd-mnist" if args.critic == "no-sn" else "dcd-mnist-sn"
    step = gonprof.StepSpec(critic_arch, "wgan-gp" if args.mode == "wgan-gp" else "dcd",
                            hparams=hparams).build(input_shape=tuple(data.shape))
    G = step.models["G"]
    if args.critic == "fan-in":  # in place: the optimizer keeps the same parameters
        with torch.no_grad():
            for m in step.models["D"].modules():
                if hasattr(m, "parametrizations"):
                    w = m.parametrizations.weight.original
                    w.mul_(w[0].numel() ** -0.5)
    if args.generator_init == "he":
        with torch.no_grad():
            for m in G.modules():
                if isinstance(m, torch.nn.ConvTranspose2d):
                    fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1] / (m.stride[0] * m.stride[1])
                    m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
                    m.bias.zero_()
    if args.unit_range:
        critic = step.models["D"]
        forward = critic.forward
        critic.forward = lambda x: forward((x + 1) / 2)
    z = torch.randn(256, 128)
    t = time.perf_counter()
    for i in range(1, args.steps + 1):
        step.step(data.images[torch.randint(0, len(data), (50,))])
        if i % args.every == 0:
            with torch.no_grad():
                out = G(z)
            if args.grid:
                save_image((out[:64] + 1) / 2, args.grid, nrow=8)
            print(f"{i} saturated {(out.abs() > 0.99).float().mean():.3f} std_z {out.std(0).mean():.4f} "
                  f"{time.perf_counter() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()
