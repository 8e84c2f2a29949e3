"""Disentanglement and controllability metrics of a Semi-StyleGAN during training, and factor
traversal grids.

* MIG (``callbacks.disentanglement.mig``) and L2 of the model's encoder E on real images whose
  factors are known: does E read the factors off real images?
* MIG-gen and L2-gen: generate G(c, z) and read the codes back with an evaluator encoder; with
  the default independent evaluator E* (``callbacks.evaluator``, trained fully supervised and
  cached) they measure whether c controls the factors. ``evaluator="own"`` uses the model's E.
* A traversal grid: one row per factor, its code swept from 0 to 1 with the others fixed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor

from callbacks.disentanglement import factor_classes, l2_error, mig
from callbacks.evaluator import cached_evaluator
from callbacks.progress import progress
from callbacks.fid import cache_root
from callbacks.image_grid import image_grid
from callbacks.periodic import PeriodicEvaluation

CURVES = (("mig", "MIG"), ("mig_gen", "MIG-gen"), ("l2", "L2"), ("l2_gen", "L2-gen"))


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

    Args:
        num_bins: MIG's histogram bins (disentanglement_lib: 20; the authors' code: 10).
        evaluator: ``independent`` (E*, trained on all known factors, cached under ``cache_dir``)
            or ``own`` (the model's encoder) for the -gen metrics.
        evaluator_steps: E*'s training iterations (batch 64).
        traversal_steps: columns of the traversal grid.
        seed: fixes the real images, the generated codes and the traversal's latent.
    """

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
        if not hasattr(datamodule, "evaluation_indices"):
            raise ValueError(f"DisentanglementMetrics needs data with known factors (datamodules.DSprites, "
                             f"FactorImageFolder), got {type(datamodule).__name__}")
        if stage == "fit" and self.evaluator == "independent" and self.encoder_star is None:
            with progress(trainer, "evaluator encoder (once per data set)", self.evaluator_steps, "steps",
                          enabled=trainer.is_global_zero) as report:
                self.encoder_star, self.evaluator_error = cached_evaluator(
                    datamodule, pl_module.factor_indices, self.cache_dir, steps=self.evaluator_steps,
                    barrier=trainer.strategy.barrier, report=report)

    def _batched(self, fn, inputs: Tensor) -> np.ndarray:
        return torch.cat([fn(chunk).float().cpu() for chunk in inputs.split(self.batch_size)]).numpy()

    @torch.no_grad()
    def score(self, pl_module, datamodule) -> dict:
        sizes = pl_module.code_sizes
        data = datamodule.eval_dataset()
        known = datamodule.evaluation_indices()
        picks = np.random.default_rng(self.seed).choice(len(known), min(self.num_samples, len(known)), replace=False)
        items = [data[int(known[i])] for i in picks]
        images = torch.stack([x[0] for x in items])
        codes = torch.stack([x[1] for x in items])[:, pl_module.factor_indices].numpy()
        encoded = self._batched(pl_module.encode, images)
        latents = pl_module.sample_latent(self.num_samples, torch.Generator().manual_seed(self.seed)).cpu()
        asked = latents[:, :pl_module.code_dim].numpy()
        if self.encoder_star is not None:
            star = self.encoder_star.to(pl_module.device)
            read = lambda z: star(pl_module.generate(z).to(next(star.parameters()).dtype))  # noqa: E731
        else:
            read = lambda z: pl_module.encode(pl_module.generate(z))  # noqa: E731
        read_back = self._batched(read, latents)
        return {"mig": mig(encoded, factor_classes(codes, sizes, self.num_bins), self.num_bins),
                "l2": l2_error(encoded, codes),
                "mig_gen": mig(read_back, factor_classes(asked, sizes, self.num_bins), self.num_bins),
                "l2_gen": l2_error(read_back, asked),
                # per factor mean |error|: some factors are not identifiable from the image (the
                # orientation of a square), which the norm over all factors hides
                "l2_per_factor": [round(float(e), 4) for e in np.abs(encoded - codes).mean(0)],
                "l2_gen_per_factor": [round(float(e), 4) for e in np.abs(read_back - asked).mean(0)],
                "num_samples": len(items), "evaluator": self.evaluator}

    def evaluate(self, trainer: pl.Trainer, pl_module) -> dict:
        record = {"iteration": trainer.global_step, **self.score(pl_module, trainer.datamodule)}
        self.history.append(record)
        grid = image_grid(pl_module.generate(traversal_latents(pl_module, self.traversal_steps, self.seed)),
                          nrow=self.traversal_steps)
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective under DDP: every rank asks
        if trainer.is_global_zero:
            self._write(trainer, run_dir, record, grid)
        return record

    def _write(self, trainer: pl.Trainer, run_dir: Path, record: dict, grid: Tensor) -> None:
        it = record["iteration"]
        for logger in trainer.loggers:
            logger.log_metrics({f"disentanglement/{k}": record[k] for k, _ in CURVES}, step=it)
        (run_dir / "plots").mkdir(parents=True, exist_ok=True)
        with open(run_dir / "disentanglement.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        traversal_figure(grid, self.row_labels(trainer), self.traversal_steps,
                         f"iteration {it}: each row sweeps one code from 0 to 1").savefig(
            run_dir / "plots" / f"traversal_{it:06d}.png")
        fig = metric_curves(self.history)
        fig.savefig(run_dir / "plots" / "disentanglement.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("disentanglement/traversal", grid, global_step=it)
                logger.experiment.add_figure("disentanglement/curves", fig, global_step=it)

    def row_labels(self, trainer: pl.Trainer) -> list[str]:
        """The traversal rows' factors: ``code k: <factor name>`` (the data's names where it has them)."""
        module, names = trainer.lightning_module, getattr(trainer.datamodule, "factor_names", None)
        return [f"code {k}: {names[i]}" if names is not None and i < len(names) else f"code {k}"
                for k, i in enumerate(module.factor_indices)]

    def summary(self) -> str | None:
        if not self.history:
            return None
        last = self.history[-1]
        return f"MIG {last['mig']:.3f}, L2 {last['l2']:.3f}, MIG-gen {last['mig_gen']:.3f}, L2-gen {last['l2_gen']:.3f}"


def traversal_figure(grid: Tensor, labels: list[str], steps: int, title: str) -> Figure:
    """The traversal grid with each row named after its factor and the columns after the code's value."""
    image = grid.permute(1, 2, 0).numpy()
    rows, height = len(labels), image.shape[0]
    fig = Figure(figsize=(1.2 + 0.9 * steps, 0.4 + 0.9 * rows), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
    ax.set_yticks([(k + 0.5) * height / rows for k in range(rows)], labels, fontsize=8)
    ax.set_xticks([(j + 0.5) * image.shape[1] / steps for j in range(steps)],
                  [f"{v:.2f}" for v in torch.linspace(0, 1, steps).tolist()], fontsize=7)
    ax.set_xlabel("code value")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def metric_curves(history: list[dict]) -> Figure:
    """The four metrics against iterations."""
    fig = Figure(figsize=(10, 2.8), dpi=100)
    for i, (key, label) in enumerate(CURVES):
        ax = fig.add_subplot(1, len(CURVES), i + 1)
        ax.plot([r["iteration"] for r in history], [r[key] for r in history], marker="o")
        ax.set_title(label)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
