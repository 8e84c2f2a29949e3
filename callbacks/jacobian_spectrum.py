"""A live view of the game Jacobian's eigenvalues during training (phase and conditioning factors)."""
from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from callbacks.periodic import PeriodicEvaluation, Plot, Report
from callbacks.progress import progress
from datamodules.contracts import RealSamples
from figures import eigenvalue_figure, history_figure
from runtime.optim import preconditioner
from spectra.spectrum import MAX_FULL_PARAMS, SpectrumSettings, evaluate_spectra


class JacobianSpectrum(PeriodicEvaluation):
    """Eigenvalues of the game Jacobian on a fixed evaluation batch, every ``every_n_steps`` iterations
    (and before the first one).

    Args:
        field: ``update`` (the Jacobian of the model's own direction; H for a method whose
            direction has none, the optimistic one), ``gradient`` (H of the plain field xi), or ``both``.
        k: eigenvalues per evaluation: ``None`` for the full spectrum when the model has at most
            ``max_full_params`` parameters and the top 20 (plus the smallest real parts) otherwise;
            an int for the k of largest magnitude (one Krylov-Schur search, spectra.eigensolver).
        k_smallest: with top-k, how many eigenvalues of smallest real part to find besides.
        num_batches, batch_size: the evaluation data: ``num_batches`` fixed batches whose fields are
            averaged (as in the ConOpt analysis). Real data come from the datamodule's
            ``eval_samples`` (or the first training batch); z from a fixed seed. Under several
            processes each takes its share of every batch and the spectrum is that of the whole.
        lr: the step size for the predicted contraction max|1 - lr * lambda| (default: the
            generator's learning rate).
        dtype: the precision of the Jacobian products (``float32``: eigenvalues within about 1e-7 of
            the spectral radius of float64's, at a lower cost; ``float64`` for small eigenvalues).
        tol: the search's relative tolerance (1e-4: the eigenvalues a diagnostic reads).
        max_products: the budget of Jacobian products per field and evaluation (None: no limit);
            when it runs out the eigenvalues that converged are reported, with a warning.
        warm_start: begin each search from the previous evaluation's Ritz vectors (kept in
            checkpoints, so a resumed run searches as an uninterrupted one).
        preconditioned: the spectrum of P^-1 J, with P = diag(sqrt(v) + eps) from the optimizer's
            second-moment estimates (RMSProp, Adam, ...: ``runtime.optim.preconditioner``): the local
            Jacobian of the steps an adaptive optimizer takes, which its stable step size is about.
        progress: show the products of a running evaluation below the progress bar.

    The evaluation settings (all but the cadence, ``lr``, ``warm_start``, ``preconditioned`` and
    ``progress``) are ``settings``, a ``spectra.spectrum.SpectrumSettings``: the offline command and a
    sweep's members evaluate the run's spectra with the same ones.

    Writes ``spectra/spectrum_<iteration>.npz`` (eigenvalues and scalars per field),
    ``plots/spectrum_<iteration>.png`` and ``plots/spectrum_history.png`` in the run folder, and
    logs ``spectrum/<field>/<scalar>``: phase_factor, condition_number, spectral_radius, min_real,
    num_negative_real, contraction (max|1 - lr lambda| at the learning rate in use), stable_step
    (the largest step size that contracts; absent when none does), products and seconds. Warns
    once when the learning rate in use is above the stable step of a spectrum the optimizer's
    steps follow (plain SGD, or ``preconditioned``). Its history survives checkpoint and resume.
    """

    def __init__(self, every_n_steps: int = 1000, field: Literal["update", "gradient", "both"] = "both",
                 k: int | None = None, k_smallest: int = 1, num_batches: int = 1, batch_size: int = 256,
                 max_full_params: int = MAX_FULL_PARAMS, lr: float | None = None, seed: int = 4321,
                 dtype: Literal["float32", "float64"] = "float32", tol: float = 1e-4, max_products: int | None = 600,
                 warm_start: bool = False, preconditioned: bool = False, progress: bool = True):
        self.settings = SpectrumSettings(field=field, k=k, k_smallest=k_smallest, num_batches=num_batches,
                                         batch_size=batch_size, seed=seed, dtype=dtype, tol=tol,
                                         max_products=max_products, max_full_params=max_full_params)
        super().__init__(every_n_steps, at_start=True, at_end=False)
        self.lr, self.warm_start, self.preconditioned, self.progress = lr, warm_start, preconditioned, progress
        self._real: torch.Tensor | None = None
        self._start: dict[str, dict[str, torch.Tensor]] = {}
        self._told: set[str] = set()

    def _tell_once(self, topic: str, message: str) -> None:
        if topic not in self._told:
            rank_zero_warn(f"JacobianSpectrum: {message}")
            self._told.add(topic)

    # -- the fixed evaluation batch ------------------------------------------------------------

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._real is None and not isinstance(trainer.datamodule, RealSamples):
            real = batch[0] if isinstance(batch, (tuple, list)) else batch
            self._real = real.detach().cpu()[: self.settings.batch_size * self.settings.num_batches]
            self.settings = replace(self.settings, batch_size=len(self._real) // self.settings.num_batches)

    def on_train_start(self, trainer, pl_module) -> None:
        if isinstance(trainer.datamodule, RealSamples):  # otherwise the first training batch is the data
            super().on_train_start(trainer, pl_module)

    def _real_samples(self, trainer: pl.Trainer) -> torch.Tensor:
        if self._real is None:
            data = trainer.datamodule
            if not isinstance(data, RealSamples):
                raise TypeError("JacobianSpectrum needs real data: a datamodule with eval_samples(n), or a first "
                                "training batch (it takes that one when training starts)")
            self._real = data.eval_samples(self.settings.batch_size * self.settings.num_batches)
        return self._real

    def measure(self, trainer: pl.Trainer, module) -> Report:
        """The spectra at the current parameters (every rank takes part)."""
        real, world = self._real_samples(trainer), trainer.world_size
        share = self.settings.batch_size // world
        if share * world != self.settings.batch_size:
            self._tell_once("split", f"a batch of {self.settings.batch_size} does not split over {world} processes; "
                                     f"the spectrum takes {share * world} samples per batch")
        if "update" in self.settings.fields and not module.method.has_jacobian:
            self._tell_once("fields", f"{type(module.method).__name__}'s direction has no Jacobian of its own (it reads "
                                      f"the previous iteration's field): the spectrum is the game's H (field='gradient')")
        optimizer = trainer.optimizers[0]
        scale = self._preconditioner(optimizer)
        it = trainer.global_step
        if self.preconditioned and scale is None:
            return Report([])
        lr = self.lr if self.lr is not None else module.learning_rates()[0]
        evaluated = evaluate_spectra(
            module, real, self.settings, rank=trainer.global_rank, world=world, preconditioner=scale,
            starts={name: self._warm(name) for name in self._start} if self.warm_start else None,
            progress=lambda what, total: progress(trainer, what, total, "products", enabled=self.progress))
        results = {name: result for name, (result, _) in evaluated.items()}
        for name, result in results.items():
            self._keep_start(name, result)
        self._check(it, lr, results, optimizer)
        scalars = {name: {**res.scalars(lr), "products": float(res.products), "seconds": seconds}
                   for name, (res, seconds) in evaluated.items()}
        records = [{"iteration": it, "field": name, "lr": lr, "preconditioned": self.preconditioned, **values}
                   for name, values in scalars.items()]
        metrics = {f"spectrum/{name}/{key}": value for name, values in scalars.items() for key, value in values.items()}
        arrays = {"iteration": it, "lr": lr, "preconditioned": self.preconditioned,
                  **{f"{name}_eigenvalues": res.eigenvalues for name, res in results.items()},
                  **{f"{name}_{key}": np.float64(value) for name, values in scalars.items() for key, value in values.items()}}
        plots = []
        if trainer.is_global_zero:
            title = f"iteration {it}" + (" (preconditioned: P^-1 J)" if self.preconditioned else "")
            plots = [Plot(f"spectrum_{it:06d}", "spectrum/eigenvalues", eigenvalue_figure(results, title)),
                     Plot("spectrum_history", None, history_figure([*self.history, *records]))]
        return Report(records, metrics, plots, (f"spectra/spectrum_{it:06d}", arrays))

    # -- what the optimizer sees, warm starts and warnings ---------------------------------------

    def _preconditioner(self, optimizer) -> torch.Tensor | None:
        """d of ``runtime.optim.preconditioner`` when ``preconditioned``; None before the optimizer's
        first step (no second-moment estimate yet: that evaluation is left out, with a note)."""
        if not self.preconditioned:
            return None
        try:
            return preconditioner(optimizer)
        except ValueError as err:
            self._tell_once("no state", f"{err}; this evaluation is left out")
            return None

    def _warm(self, name: str) -> dict[str, np.ndarray] | None:
        if not self.warm_start or name not in self._start:
            return None
        return {which: v.numpy() for which, v in self._start[name].items()}

    def _keep_start(self, name: str, result) -> None:
        if self.warm_start and result.start:
            self._start[name] = {which: torch.from_numpy(v) for which, v in result.start.items() if v.size}

    def _check(self, it: int, lr: float, results: dict, optimizer) -> None:
        """The warnings of one evaluation: a budget that cut a search short, and a learning rate
        above the stable step of a spectrum the optimizer's steps follow."""
        for name, res in results.items():
            if res.truncated:
                self._tell_once("budget", f"the budget of {self.settings.max_products} products ran out before every eigenvalue "
                                          f"of the {name} field converged (iteration {it}; the scalars use the ones "
                                          f"found): raise max_products, lower k or raise tol")
        plain_sgd = isinstance(optimizer, torch.optim.SGD) and not any(g.get("momentum") for g in optimizer.param_groups)
        if not (self.preconditioned or plain_sgd):
            return  # the steps do not follow -lr * u: its stable step says nothing about this optimizer
        for name, res in results.items():
            if res.stable_step is not None and lr > res.stable_step:
                self._tell_once("step", f"the learning rate {lr:.4g} is above the largest stable step "
                                        f"{res.stable_step:.4g} of the {name} field's spectrum at iteration {it} "
                                        f"(max|1 - lr lambda| = {res.contraction(lr):.4g} > 1: the steps move away "
                                        f"from this point); a learning rate below {res.stable_step:.4g} contracts")

    def state_dict(self) -> dict:
        return {**super().state_dict(), "real": self._real, "start": self._start}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._real = state_dict.get("real")
        self._start = dict(state_dict.get("start", {}))
