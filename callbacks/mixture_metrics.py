"""Mode coverage and sample quality on mixture-of-Gaussians data, with scatter plots.

The metric follows the PacGAN/VEEGAN protocol: a generated sample is *high quality* when it lies
within ``threshold`` standard deviations of its nearest mode; a mode is *covered* when at least one
sample lies that close to it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor

from callbacks.periodic import PeriodicEvaluation


def mixture_metrics(samples: Tensor, modes: Tensor, std: float, threshold: float = 3.0) -> dict[str, float]:
    """Coverage metrics of ``samples`` (N, dim) against the mixture with centres ``modes`` (K, dim).

    Returns:
        modes_covered: number of modes with at least one sample within ``threshold * std``.
        high_quality: percentage of samples within ``threshold * std`` of their nearest mode.
        kl_uniform: KL(p || uniform) of the histogram p of nearest-mode assignments (0 when the
            samples spread evenly over the modes, log K when they all sit at one mode).
    """
    dist = torch.cdist(samples.detach().double().cpu(), modes.double().cpu())
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist < threshold * std
    k = len(modes)
    covered = torch.bincount(nearest[good], minlength=k) > 0
    p = torch.bincount(nearest, minlength=k).double() / len(samples)
    nonzero = p > 0
    kl = (p[nonzero] * (p[nonzero] * k).log()).sum()
    return {
        "modes_covered": int(covered.sum()),
        "high_quality": 100.0 * float(good.double().mean()),
        "kl_uniform": float(kl),
    }


def scatter_figure(samples: Tensor, modes: Tensor, std: float, threshold: float, title: str) -> Figure:
    """Generated samples (dots) over the true modes (crosses, with their threshold circles)."""
    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot()
    s, m = samples.detach().cpu().numpy(), modes.cpu().numpy()
    ax.scatter(s[:, 0], s[:, 1] if s.shape[1] > 1 else 0 * s[:, 0], s=3, alpha=0.4, color="tab:blue", label="generated")
    ax.scatter(m[:, 0], m[:, 1] if m.shape[1] > 1 else 0 * m[:, 0], marker="x", color="tab:red", label="modes")
    if m.shape[1] > 1:
        for x, y in m[:, :2]:
            ax.add_patch(Circle((x, y), threshold * std, fill=False, color="tab:red", lw=0.6, alpha=0.6))
    span = max(float(abs(m if len(m) else s).max()) * 1.5, 1.0)
    ax.set_xlim(-span, span)
    ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    return fig


def curves_figure(history: list[dict], num_modes: int) -> Figure:
    """Modes covered, high-quality percentage and KL to uniform against iterations."""
    fig = Figure(figsize=(11, 3), dpi=100)
    its = [r["iteration"] for r in history]
    panels = (("modes_covered", "modes covered", num_modes), ("high_quality", "high-quality samples (%)", 100),
              ("kl_uniform", "KL to uniform (0: even)", math.log(max(num_modes, 2))))
    for i, (key, label, top) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.plot(its, [r[key] for r in history], marker="o")
        ax.set_ylim(0, top * 1.05)
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


class MixtureMetrics(PeriodicEvaluation):
    """Every ``every_n_steps`` iterations (and at the end of training), draw ``num_samples`` from the
    generator with a fixed z, log the coverage metrics under ``mixture/``, and log a scatter plot of
    the samples over the true modes (TensorBoard, and ``plots/mixture_<iteration>.png`` in the run
    folder). The history is appended to ``mixture_metrics.jsonl`` in the run folder and drawn in
    ``plots/mixture_curves.png``.

    Needs a datamodule with ``modes`` and ``std`` (``datamodules.MixtureOfGaussians``).
    """

    def __init__(self, every_n_steps: int = 500, num_samples: int = 2500, threshold: float = 3.0,
                 plot: bool = True, seed: int = 1234):
        super().__init__(every_n_steps)
        self.num_samples, self.threshold, self.plot, self.seed = num_samples, threshold, plot, seed
        self._num_modes = 0

    @property
    def last(self) -> dict | None:
        return self.history[-1] if self.history else None

    def summary(self) -> str | None:
        """The last evaluation in one line (train.py prints it when training ends)."""
        if not self.history:
            return None
        last = self.history[-1]
        return (f"modes covered {last['modes_covered']}/{self._num_modes}, high quality {last['high_quality']:.1f}%, "
                f"KL to uniform {last['kl_uniform']:.3f}")

    def evaluate(self, trainer: pl.Trainer, pl_module) -> dict:
        data = trainer.datamodule
        if not hasattr(data, "modes") or not hasattr(data, "std"):
            raise TypeError(f"MixtureMetrics needs a datamodule with `modes` and `std` (such as "
                            f"datamodules.MixtureOfGaussians), got {type(data).__name__}")
        samples = pl_module.sample(self.num_samples, torch.Generator().manual_seed(self.seed)).float()
        metrics = mixture_metrics(samples, data.modes, data.std, self.threshold)
        self._num_modes = len(data.modes)
        record = {"iteration": trainer.global_step, **metrics}
        self.history.append(record)
        # trainer.log_dir is a collective under DDP: every rank asks, rank 0 writes
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if trainer.is_global_zero:
            self._write(trainer, run_dir, samples, data, record)
        return record

    def _write(self, trainer: pl.Trainer, run_dir: Path, samples: Tensor, data, record: dict) -> None:
        it = record["iteration"]
        for logger in trainer.loggers:
            logger.log_metrics({f"mixture/{k}": v for k, v in record.items() if k != "iteration"}, step=it)
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "mixture_metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if not self.plot:
            return
        title = (f"iteration {it}: {record['modes_covered']}/{len(data.modes)} modes, "
                 f"{record['high_quality']:.1f}% high quality")
        fig = scatter_figure(samples, data.modes, data.std, self.threshold, title)
        (run_dir / "plots").mkdir(exist_ok=True)
        fig.savefig(run_dir / "plots" / f"mixture_{it:06d}.png")
        curves_figure(self.history, len(data.modes)).savefig(run_dir / "plots" / "mixture_curves.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("mixture/samples", fig, global_step=it)



__all__ = ["MixtureMetrics", "mixture_metrics", "scatter_figure"]
