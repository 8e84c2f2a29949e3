"""A live view of the game Jacobian's eigenvalues during training (phase and conditioning factors)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.loggers import TensorBoardLogger

from callbacks.spectrum import MAX_FULL_PARAMS, SpectrumResult, compute_spectrum

AUTO_K = 20


def eigenvalue_figure(results: dict[str, SpectrumResult], title: str) -> Figure:
    """The eigenvalues in the complex plane, one panel per field, side by side."""
    fig = Figure(figsize=(4.5 * len(results), 4), dpi=100)
    for i, (name, res) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), i + 1)
        ev = res.eigenvalues
        ax.scatter(ev.real, ev.imag, s=12, alpha=0.7)
        ax.axvline(0, color="gray", lw=0.6)
        ax.axhline(0, color="gray", lw=0.6)
        ax.set_xlabel("Re λ")
        ax.set_ylabel("Im λ")
        ax.set_title(f"{name} field ({res.mode}, {res.num_params} params)\nphase {res.phase_factor:.3g}, "
                     f"condition {res.condition_number:.3g}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def history_figure(history: list[dict]) -> Figure:
    """Phase factor and condition number against iterations, one line per field."""
    fig = Figure(figsize=(9, 3.2), dpi=100)
    for i, key in enumerate(("phase_factor", "condition_number")):
        ax = fig.add_subplot(1, 2, i + 1)
        positive = False
        for name in sorted({r["field"] for r in history}):
            rows = [r for r in history if r["field"] == name and np.isfinite(r[key])]
            ax.plot([r["iteration"] for r in rows], [r[key] for r in rows], marker="o", label=name)
            positive |= any(r[key] > 0 for r in rows)
        if positive:  # a phase factor of 0 everywhere (real spectrum) has no log scale
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


class JacobianSpectrum(pl.Callback):
    """Eigenvalues of the game Jacobian on a fixed evaluation batch, every ``every_n_steps`` iterations
    (and before the first one).

    Args:
        field: ``update`` (the Jacobian of the model's own direction), ``gradient`` (H of the plain
            field xi), or ``both``.
        k: eigenvalues per evaluation: ``None`` for the full spectrum when the model has at most
            ``max_full_params`` parameters and the top 20 (plus the smallest real parts) otherwise;
            an int for top-k with ARPACK.
        num_batches, batch_size: the evaluation data: ``num_batches`` fixed batches whose fields are
            averaged (as in the ConOpt analysis). Real data come from the datamodule's
            ``eval_samples`` (or the first training batch); z from a fixed seed. Under several
            processes each takes its share of every batch and the spectrum is that of the whole.
        lr: the step size for the predicted contraction max|1 - lr * lambda| (default: the
            generator's learning rate).

    Writes ``spectra/spectrum_<iteration>.npz`` (eigenvalues and scalars per field),
    ``plots/spectrum_<iteration>.png`` and ``plots/spectrum_history.png`` in the run folder, and
    logs ``spectrum/<field>/<scalar>``. Its history survives checkpoint and resume.
    """

    def __init__(self, every_n_steps: int = 1000, field: Literal["update", "gradient", "both"] = "both",
                 k: int | None = None, num_batches: int = 1, batch_size: int = 256,
                 max_full_params: int = MAX_FULL_PARAMS, lr: float | None = None, seed: int = 4321):
        if field not in ("update", "gradient", "both"):
            raise ValueError(f"field must be 'update', 'gradient' or 'both', got {field!r}")
        self.every_n_steps, self.k, self.num_batches, self.batch_size = every_n_steps, k, num_batches, batch_size
        self.fields = ["update", "gradient"] if field == "both" else [field]
        self.max_full_params, self.lr, self.seed = max_full_params, lr, seed
        self.history: list[dict] = []
        self._real: torch.Tensor | None = None
        self._told = False

    # -- the fixed evaluation batch ------------------------------------------------------------

    def _eval_batches(self, trainer: pl.Trainer, module) -> tuple[list, list]:
        n = self.batch_size * self.num_batches
        if self._real is None:
            data = trainer.datamodule
            if data is None or not hasattr(data, "eval_samples"):
                raise TypeError("JacobianSpectrum needs real data: a datamodule with eval_samples(n), or a first "
                                "training batch (it takes that one when training starts)")
            self._real = data.eval_samples(n)
        z = module.sample_latent(n, torch.Generator().manual_seed(self.seed)).cpu()
        world, rank = trainer.world_size, trainer.global_rank
        share = self.batch_size // world  # every process takes an equal share: the remainder is left out
        if share * world != self.batch_size and not self._told:
            rank_zero_warn(f"JacobianSpectrum: a batch of {self.batch_size} does not split over {world} processes; "
                           f"the spectrum takes {share * world} samples per batch")
            self._told = True
        reals, zs = [], []
        for real_b, z_b in zip(self._real.split(self.batch_size), z.split(self.batch_size)):
            reals.append(real_b[rank * share:(rank + 1) * share].to(module.device))
            zs.append(z_b[rank * share:(rank + 1) * share].to(module.device))
        return reals, zs

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._real is None and not hasattr(trainer.datamodule, "eval_samples"):
            real = batch[0] if isinstance(batch, (tuple, list)) else batch
            self._real = real.detach().cpu()[: self.batch_size * self.num_batches]
            self.batch_size = len(self._real) // self.num_batches

    # -- cadence -------------------------------------------------------------------------------

    def on_train_start(self, trainer, pl_module) -> None:
        if not self.history and hasattr(trainer.datamodule, "eval_samples"):
            self.evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.evaluate(trainer, pl_module)

    def evaluate(self, trainer: pl.Trainer, module) -> dict[str, SpectrumResult]:
        """Compute, log and save the spectra at the current parameters (every rank takes part)."""
        reals, zs = self._eval_batches(trainer, module)
        n_params = sum(p.numel() for p in module.params_g + module.params_d)
        k = self.k if self.k is not None else (None if n_params <= self.max_full_params else AUTO_K)
        results = {name: compute_spectrum(module, reals, zs, field=name, k=k, max_full_params=self.max_full_params)
                   for name in self.fields}
        lr = self.lr if self.lr is not None else trainer.optimizers[0].param_groups[0]["lr"]
        it = trainer.global_step
        for name, res in results.items():
            self.history.append({"iteration": it, "field": name, **res.scalars(lr)})
        # trainer.log_dir is a collective under DDP: every rank asks, rank 0 writes
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if trainer.is_global_zero:
            self._write(trainer, run_dir, results, it, lr)
        return results

    def _write(self, trainer: pl.Trainer, run_dir: Path, results: dict[str, SpectrumResult], it: int, lr: float) -> None:
        metrics = {f"spectrum/{name}/{key}": value for name, res in results.items()
                   for key, value in res.scalars(lr).items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=it)
        (run_dir / "spectra").mkdir(parents=True, exist_ok=True)
        arrays = {f"{name}_eigenvalues": res.eigenvalues for name, res in results.items()}
        arrays.update({f"{name}_{key}": np.float64(value) for name, res in results.items()
                       for key, value in res.scalars(lr).items()})
        np.savez(run_dir / "spectra" / f"spectrum_{it:06d}.npz", iteration=it, lr=lr, **arrays)
        (run_dir / "plots").mkdir(exist_ok=True)
        fig = eigenvalue_figure(results, f"iteration {it}")
        fig.savefig(run_dir / "plots" / f"spectrum_{it:06d}.png")
        history_figure(self.history).savefig(run_dir / "plots" / "spectrum_history.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("spectrum/eigenvalues", fig, global_step=it)

    def state_dict(self) -> dict:
        return {"history": self.history, "real": self._real}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
        self._real = state_dict.get("real")
