"""The comparison presets: each seed study's rows, budgets and short (``--quick``) budgets, as data.  The
claims each preset carries live in :mod:`gonprof.claims`."""

from __future__ import annotations

from typing import Any

from .. import claims

#: GON's chains in the gon-chains study, each row's settings written out (so that a change of the mode's
#: defaults leaves the study as it was): fresh noise with the early-stopped inner loop (the fast path before
#: persistent chains), persistent chains from a replay buffer, and those with noise on the real images.
GON_NOISE = {"init": "noise", "inner_steps": 1000, "inner_t_max": 50, "inner_lr": 0.02, "lr": 1e-4,
             "data_noise": 0.0}
GON_BUFFER = {"init": "buffer", "replay_size": 1000, "replay_restart": 0.05, "inner_steps": 20, "inner_t_max": 20,
              "inner_lr": 0.05, "lr": 1e-4, "data_noise": 0.0, "replay_reset": 0.0, "sample_realness": 0.0}
GON_BUFFER_DATA_NOISE = {**GON_BUFFER, "data_noise": 0.03}
#: and those with stuck chains reset in the buffer and passed over in samples (the default since 2026-12-06)
GON_BUFFER_RESET = {**GON_BUFFER_DATA_NOISE, "replay_reset": 0.2, "replay_reset_age": 100,
                    "replay_reset_noise": 0.03, "sample_realness": 0.2}
_CHAINS = [("gon", "gon-mnist-mlp", GON_NOISE, "noise"), ("gon", "gon-mnist-mlp", GON_BUFFER, "buffer"),
           ("gon", "gon-mnist-mlp", GON_BUFFER_DATA_NOISE, "buffer-data-noise"),
           ("gon", "gon-mnist-mlp", GON_BUFFER_RESET, "buffer-reset"), ("lsgan", "lsgan-original")]


def _dcd(critic: str) -> dict[str, Any]:
    """The DCD study on one critic: WGAN-GP until the generator draws digits (the quality gate, checked every
    DCD_GATE["every"] steps, capped at DCD_PRETRAIN_CAP), then from those models the critic fine-tuned as the
    source's released updater does (critic-only: G fixed) with Langevin negatives in pixel and in latent
    space; each scores the same G(z) before and after refinement."""
    return {"pairs": [("wgan-gp", critic, {}, "pretrain",
                       {"steps": claims.DCD_PRETRAIN_CAP, "gate": claims.DCD_GATE,
                        "quick": {"steps": 20, "gate": {**claims.DCD_GATE, "every": 10, "n": 200}}}),
                      ("dcd", critic, {"langevin": "pixel", "g_steps": 0}, "pixel", {"init_from": "pretrain"}),
                      ("dcd", critic, {"langevin": "latent", "g_steps": 0}, "latent", {"init_from": "pretrain"})],
            "steps": claims.DCD_STEPS, "quick": {"steps": 5}}


PRESETS: dict[str, dict[str, Any]] = {
    # The GAS study: six discriminators under LSGAN, 2000 iterations of batch 32.
    "gas": {"pairs": [("lsgan", a) for a in ("lsgan-original", "depthwise-inception", "inception-k32",
                                              "depthwise-inception-dense", "inception-k16", "inception-k8")],
            "steps": claims.GAS_STEPS, "batch_size": 32, "quick": {"steps": 100}},
    # GON's discriminators trained as GONs, against GANs with their own seed architectures.
    "gon-vs-gan": {"pairs": [("gon", "gon-mnist-conv"), ("gon", "gon-mnist-mlp"), ("gan", "mlp-gan"),
                             ("lsgan", "lsgan-original")], "quick": {"time_budget_s": 30.0}},
    # The study GON users ask for: GON (MLP and conv) and the GAN modes on one digit, one budget.
    "gon-digit": {"pairs": [("gon", "gon-mnist-mlp"), ("gon", "gon-mnist-conv"), ("gan", "mlp-gan"),
                            ("lsgan", "lsgan-original"), ("wgan-gp", "dcd-mnist-sn"), ("dcd", "dcd-mnist-sn")],
                  "classes": [0], "time_budget_s": 300.0, "quick": {"time_budget_s": 60.0}},
    # GON's inner optimiser on the one-digit task: the seed's Adam on the input against the others.
    "gon-inner": {"pairs": [("gon", "gon-mnist-mlp", {"inner_opt": "adam"}, "adam"),
                            ("gon", "gon-mnist-mlp", {"inner_opt": "normalized"}, "normalized"),
                            ("gon", "gon-mnist-mlp", {"inner_opt": "langevin"}, "langevin"),
                            ("gon", "gon-mnist-mlp", {"inner_opt": "sgd", "inner_lr": 50.0}, "sgd")],
                  "classes": [0], "time_budget_s": 300.0, "quick": {"steps": 30}},
    # GON's chains at equal wall-clock budgets, beside LSGAN: on zeros, and on all ten digits.
    "gon-chains": {"pairs": _CHAINS, "classes": [0], "time_budget_s": 120.0, "quick": {"time_budget_s": 30.0}},
    "gon-chains-all": {"pairs": _CHAINS, "time_budget_s": 120.0, "quick": {"time_budget_s": 30.0}},
    # GON's inner loop under bf16 autocast against float32, on the one-digit task at the zeros target's budget.
    "gon-bf16": {"pairs": [("gon", "gon-mnist-mlp", {}, "fp32", {"precision": "fp32"}),
                           ("gon", "gon-mnist-mlp", {}, None, {"precision": "bf16"})],
                 "classes": [0], "time_budget_s": 300.0, "quick": {"time_budget_s": 30.0}},
    # GON_MNIST's setting, 10 shots of one digit, and a GAN training the same discriminator on the same images.
    "gon": {"pairs": [("gon", "gon-mnist-mlp"), ("gan", "gon-mnist-mlp")], "classes": [0], "per_class": 10,
            "batch_size": 10, "time_budget_s": claims.GON_TIME_S, "quick": {"time_budget_s": 60.0}},
    # Improved-GAN's semi-supervised test error at the paper's four label counts (openai: 300 epochs of 600).
    "improved-gan": {"pairs": [("improved-gan", "improved-gan-mlp", {"labels": n}, f"labels-{n}")
                               for n in (20, 50, 100, 200)],
                     "steps": claims.IGAN_STEPS, "quick": {"steps": 1500}},
    # The paper's headline row alone (100 labels), to run for hours in parts: --resume trains it on from its
    # checkpoint, and a row run for fewer steps first is extended by the full budget's --resume.
    "improved-gan-100": {"pairs": [("improved-gan", "improved-gan-mlp", {"labels": 100}, "labels-100")],
                         "steps": claims.IGAN_STEPS, "quick": {"steps": 1500}},
    # DCD on the source's spectral-norm critic (see _dcd).
    "dcd": _dcd("dcd-mnist-sn"),
    # The same on the critic without spectral norm: against dcd-mnist-sn the generator draws one image for
    # every z under every pretraining tried (benchmarks/dcd_saturation.py), against this one it learns digits.
    "dcd-no-sn": _dcd("dcd-mnist"),
    # The Keras MLP GAN tutorial: BCE, batch 128, 500 epochs of 469 batches.
    "mlp-gan": {"pairs": [("gan", "mlp-gan")], "steps": claims.MLP_GAN_STEPS, "quick": {"steps": 2000}},
}

#: RunSpec fields a preset may set (explicit settings win).
PRESET_SETTINGS = ("steps", "batch_size", "classes", "per_class", "time_budget_s")


def _rows(pairs) -> list[tuple[str, str, dict, str | None, dict]]:
    """A preset's rows as (mode, arch, hparams, variant, the row's own RunSpec settings)."""
    return [(p[0], p[1], dict(p[2]) if len(p) > 2 else {}, p[3] if len(p) > 3 else None,
             dict(p[4]) if len(p) > 4 else {}) for p in pairs]


