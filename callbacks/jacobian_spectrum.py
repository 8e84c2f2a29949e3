"""A live view of the game Jacobian's eigenvalues during training (phase and conditioning factors)."""
from __future__ import annotations

from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from callbacks.figures import eigenvalue_figure, history_figure
from callbacks.periodic import PeriodicEvaluation, Plot, Report
from datamodules.contracts import RealSamples
from gans.spectrum import MAX_FULL_PARAMS, compute_spectrum

AUTO_K = 20


class JacobianSpectrum(PeriodicEvaluation):
    """Eigenvalues of the game Jacobian on a fixed evaluation batch, every ``every_n_steps`` iterations
    (and before the first one).

    Args:
        field: ``update`` (the Jacobian of the model's own direction; H for a method whose
            direction has none, the optimistic one), ``gradient`` (H of the plain field xi), or ``both``.
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
        super().__init__(every_n_steps, at_start=True, at_end=False)
        self.k, self.num_batches, self.batch_size = k, num_batches, batch_size
        self.fields = ["update", "gradient"] if field == "both" else [field]
        self.max_full_params, self.lr, self.seed = max_full_params, lr, seed
        self._real: torch.Tensor | None = None
        self._told = self._told_fields = False

    # -- the fixed evaluation batch ------------------------------------------------------------

    def _eval_batches(self, trainer: pl.Trainer, module) -> tuple[list, list]:
        n = self.batch_size * self.num_batches
        if self._real is None:
            data = trainer.datamodule
            if not isinstance(data, RealSamples):
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
        if self._real is None and not isinstance(trainer.datamodule, RealSamples):
            real = batch[0] if isinstance(batch, (tuple, list)) else batch
            self._real = real.detach().cpu()[: self.batch_size * self.num_batches]
            self.batch_size = len(self._real) // self.num_batches

    def on_train_start(self, trainer, pl_module) -> None:
        if isinstance(trainer.datamodule, RealSamples):  # otherwise the first training batch is the data
            super().on_train_start(trainer, pl_module)

    def measure(self, trainer: pl.Trainer, module) -> Report:
        """The spectra at the current parameters (every rank takes part)."""
        reals, zs = self._eval_batches(trainer, module)
        n_params = sum(p.numel() for p in module.params_g + module.params_d)
        k = self.k if self.k is not None else (None if n_params <= self.max_full_params else AUTO_K)
        fields = list(dict.fromkeys(self.fields if module.method.has_jacobian else
                                    ["gradient" if f == "update" else f for f in self.fields]))
        if fields != self.fields and not self._told_fields:
            rank_zero_warn(f"JacobianSpectrum: {type(module.method).__name__}'s direction has no Jacobian of its own "
                           f"(it reads the previous iteration's field): the spectrum is the game's H (field='gradient')")
            self._told_fields = True
        results = {name: compute_spectrum(module, reals, zs, field=name, k=k, max_full_params=self.max_full_params)
                   for name in fields}
        lr = self.lr if self.lr is not None else trainer.optimizers[0].param_groups[0]["lr"]
        it = trainer.global_step
        records = [{"iteration": it, "field": name, **res.scalars(lr)} for name, res in results.items()]
        metrics = {f"spectrum/{name}/{key}": value for name, res in results.items()
                   for key, value in res.scalars(lr).items()}
        arrays = {"iteration": it, "lr": lr, **{f"{name}_eigenvalues": res.eigenvalues for name, res in results.items()},
                  **{f"{name}_{key}": np.float64(value) for name, res in results.items()
                     for key, value in res.scalars(lr).items()}}
        plots = []
        if trainer.is_global_zero:
            plots = [Plot(f"spectrum_{it:06d}", "spectrum/eigenvalues", eigenvalue_figure(results, f"iteration {it}")),
                     Plot("spectrum_history", None, history_figure([*self.history, *records]))]
        return Report(records, metrics, plots, (f"spectra/spectrum_{it:06d}", arrays))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "real": self._real}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._real = state_dict.get("real")
