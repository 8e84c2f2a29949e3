"""Disentanglement and controllability metrics of a Semi-StyleGAN during training, and factor
traversal grids (the metrics: ``metrics.disentanglement``).

* MIG and L2 of the model's encoder E on real images whose factors are known: does E read the
  factors off real images?
* MIG-gen and L2-gen: generate G(c, z) and read the codes back with an evaluator encoder; with
  the default independent evaluator E* (``metrics.evaluator``, trained fully supervised and
  cached) they measure whether c controls the factors. ``evaluator="own"`` uses the model's E.
* A traversal grid: one row per factor, its code swept from 0 to 1 with the others fixed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from torch import Tensor

from callbacks.periodic import PeriodicEvaluation, Plot, Report
from callbacks.progress import progress
from datamodules.contracts import FactorImages
from figures import DISENTANGLEMENT_CURVES, disentanglement_curves, image_grid, traversal_figure
from metrics.cache import cache_root
from metrics.disentanglement import scores
from metrics.evaluator import cached_evaluator


def traversal_latents(model, steps: int, seed: int = 0) -> Tensor:
    """(K * steps, latent_dim): one latent from ``seed`` with code k swept over ``steps`` values in
    [0, 1], for k = 0..K-1 (row k of the traversal grid)."""
    base = model.sample_latent(1, torch.Generator().manual_seed(seed)).cpu()
    latents = base.repeat(model.code_dim * steps, 1)
    values = torch.linspace(0, 1, steps, dtype=latents.dtype)
    for k in range(model.code_dim):
        latents[k * steps:(k + 1) * steps, k] = values
    return latents


class DisentanglementMetrics(PeriodicEvaluation):
    """Every ``every_n_steps`` iterations (and when training ends): MIG and L2 of the encoder on
    ``num_samples`` real images, MIG-gen and L2-gen on ``num_samples`` generated ones, and a
    traversal grid; written to the loggers (``disentanglement/*``), ``disentanglement.jsonl``,
    ``plots/traversal_<iteration>.png`` and ``plots/disentanglement.png``. Each process computes
    the same values (nothing to gather); rank 0 writes.

    Needs factor data (``datamodules.contracts.FactorImages``: DSprites, FactorImageFolder).

    Args:
        num_bins: MIG's histogram bins (disentanglement_lib: 20; the authors' code: 10).
        evaluator: ``independent`` (E*, trained on all known factors, cached under ``cache_dir``)
            or ``own`` (the model's encoder) for the -gen metrics.
        evaluator_steps: E*'s training iterations (batch 64).
        traversal_steps: columns of the traversal grid.
        seed: fixes the real images, the generated codes and the traversal's latent.
    """

    journal = "disentanglement.jsonl"

    def __init__(self, every_n_steps: int = 1000, num_samples: int = 2000, num_bins: int = 20,
                 evaluator: Literal["independent", "own"] = "independent", evaluator_steps: int = 4000,
                 traversal_steps: int = 8, batch_size: int = 128, seed: int = 0, cache_dir: str | None = None):
        super().__init__(every_n_steps)
        if evaluator not in ("independent", "own"):
            raise ValueError(f"evaluator must be 'independent' or 'own', got {evaluator!r}")
        self.num_samples, self.num_bins, self.evaluator = num_samples, num_bins, evaluator
        self.evaluator_steps, self.traversal_steps = evaluator_steps, traversal_steps
        self.batch_size, self.seed = batch_size, seed
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root()
        self.encoder_star = None
        self.evaluator_error: float | None = None

    def setup(self, trainer: pl.Trainer, pl_module, stage: str) -> None:
        datamodule = trainer.datamodule
        if not isinstance(datamodule, FactorImages):
            raise ValueError(f"DisentanglementMetrics needs data with known factors (datamodules.DSprites, "
                             f"FactorImageFolder), got {type(datamodule).__name__}")
        if stage == "fit" and self.evaluator == "independent" and self.encoder_star is None:
            with progress(trainer, "evaluator encoder (once per data set)", self.evaluator_steps, "steps",
                          enabled=trainer.is_global_zero) as report:
                self.encoder_star, self.evaluator_error = cached_evaluator(
                    datamodule, pl_module.factor_indices, self.cache_dir, steps=self.evaluator_steps, report=report,
                    device=pl_module.device)

    def score(self, pl_module, datamodule) -> dict:
        """The four metrics and their per-factor errors (``metrics.disentanglement.scores``)."""
        return scores(pl_module, datamodule, self.encoder_star, num_samples=self.num_samples, num_bins=self.num_bins,
                      batch_size=self.batch_size, seed=self.seed) | {"evaluator": self.evaluator}

    def measure(self, trainer, pl_module) -> Report:
        it = trainer.global_step
        record = {"iteration": it, **self.score(pl_module, trainer.datamodule)}
        plots = []
        if trainer.is_global_zero:
            grid = image_grid(pl_module.generate(traversal_latents(pl_module, self.traversal_steps, self.seed)),
                              nrow=self.traversal_steps)
            title = f"iteration {it}: each row sweeps one code from 0 to 1"
            plots = [Plot(f"traversal_{it:06d}", None, traversal_figure(grid, self.row_labels(trainer),
                                                                        self.traversal_steps, title)),
                     Plot(None, "disentanglement/traversal", grid),
                     Plot("disentanglement", "disentanglement/curves", disentanglement_curves([*self.history, record]))]
        return Report([record], {f"disentanglement/{k}": record[k] for k, _ in DISENTANGLEMENT_CURVES}, plots)

    def row_labels(self, trainer: pl.Trainer) -> list[str]:
        """The traversal rows' factors: ``code k: <factor name>`` (the data's names where it has them)."""
        module, names = trainer.lightning_module, trainer.datamodule.factor_names
        return [f"code {k}: {names[i]}" if names is not None and i < len(names) else f"code {k}"
                for k, i in enumerate(module.factor_indices)]

    def summary(self) -> str | None:
        if not self.history:
            return None
        last = self.history[-1]
        return f"MIG {last['mig']:.3f}, L2 {last['l2']:.3f}, MIG-gen {last['mig_gen']:.3f}, L2-gen {last['l2_gen']:.3f}"


