"""Mixtures of isotropic Gaussians: the ring and grid benchmarks of the GAN-dynamics literature."""
from __future__ import annotations

from typing import Literal, Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.batches import training_loader
from datamodules.mixture_samples import MixtureBatches, grid_modes, ring_modes, sample_mixture
from runtime.streams import seeded

DEFAULT_STD = {"ring": 0.01, "grid": 0.05}


class MixtureOfGaussians(pl.LightningDataModule):
    """An equal-weight mixture of isotropic Gaussians, sampled fresh for every batch.

    Args:
        kind: ``ring`` (``num_modes`` on a circle of ``radius``; std 0.01 by default, the ConOpt
            setting), ``grid`` (``grid_size``^2 modes ``grid_spacing`` apart; std 0.05), or
            ``custom`` (the points in ``modes``, any dimension; ``modes=[[0.0]]`` with ``std=0``
            is the Dirac-GAN's data).
        std: standard deviation of every component; ``None`` picks the kind's default.
        batch_size: samples per training batch (per process under multi-process training: the
            global batch is ``batch_size`` times the number of processes).
        batches_per_epoch: length of an epoch; ``None`` makes one epoch span the whole run
            (``trainer.max_steps``), so the progress bar counts iterations.
        eval_size: size of the fixed evaluation set (``eval_samples``).
        seed: seeds both the training batches and the evaluation set.
    """

    def __init__(
        self,
        kind: Literal["ring", "grid", "custom"] = "ring",
        num_modes: int = 8,
        radius: float = 1.0,
        grid_size: int = 5,
        grid_spacing: float = 2.0,
        modes: Sequence[Sequence[float]] | None = None,
        std: float | None = None,
        batch_size: int = 256,
        batches_per_epoch: int | None = None,
        eval_size: int = 2500,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        if kind == "ring":
            self.modes = ring_modes(num_modes, radius)
        elif kind == "grid":
            self.modes = grid_modes(grid_size, grid_spacing)
        elif kind == "custom":
            if not modes:
                raise ValueError("kind='custom' needs the mode centres: pass modes=[[x1, y1], [x2, y2], ...]")
            self.modes = torch.tensor(modes, dtype=torch.float64)
            if self.modes.ndim != 2:
                raise ValueError(f"modes must be a list of points (K, dim), got shape {list(self.modes.shape)}")
        else:
            raise ValueError(f"unknown kind {kind!r}; choose one of: ring, grid, custom")
        if std is None:
            if kind == "custom":
                raise ValueError("kind='custom' needs an explicit std")
            std = DEFAULT_STD[kind]
        if std < 0:
            raise ValueError(f"std must be >= 0, got {std}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer (samples per batch and process), got {batch_size}")
        self.kind, self.std, self.batch_size, self.seed = kind, float(std), batch_size, seed
        self.batches_per_epoch, self.eval_size = batches_per_epoch, eval_size

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.modes.shape[1],)

    def _epoch_length(self) -> int:
        if self.batches_per_epoch is not None:
            return self.batches_per_epoch
        max_steps = self.trainer.max_steps if self.trainer is not None else -1
        return max_steps if max_steps and max_steps > 0 else 1000

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        # An iterable dataset: Lightning leaves it alone under DDP (each process slices the global
        # batch itself) instead of splitting the batch indices between processes.
        data = MixtureBatches(self.modes, self.std, self.batch_size, self.seed, self._epoch_length(), rank, world,
                              position=lambda: trainer.global_step if trainer is not None else 0)
        return training_loader(data, trainer)

    def eval_samples(self, n: int | None = None) -> Tensor:
        """A fixed set of ``n`` (default ``eval_size``) data samples, independent of training batches."""
        gen = seeded(self.seed, -1)  # a stream no training batch uses
        return sample_mixture(self.modes.float(), self.std, n or self.eval_size, gen)
