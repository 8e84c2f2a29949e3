"""Samples of mixtures of isotropic Gaussians, in plain PyTorch: the modes of the ring and the grid,
a sampler, and the training batches indexed by the iteration (``MixtureBatches``, a torch
``IterableDataset``: ``datamodules.MixtureOfGaussians`` serves them to Lightning, and a loop of its
own iterates them directly)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from datamodules.batches import IndexedBatches
from runtime.streams import seeded


def ring_modes(num_modes: int = 8, radius: float = 1.0) -> Tensor:
    """``num_modes`` points evenly spaced on a circle, the first at (radius, 0)."""
    angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def grid_modes(size: int = 5, spacing: float = 2.0) -> Tensor:
    """A ``size`` x ``size`` grid centred at the origin: {-4, -2, 0, 2, 4}^2 by default."""
    axis = (torch.arange(size, dtype=torch.float64) - (size - 1) / 2) * spacing
    return torch.cartesian_prod(axis, axis)


class MixtureBatches(IndexedBatches):
    """Fresh mixture samples for every batch. Batches come in blocks of ``BLOCK`` global batches,
    block ``b`` drawn from a generator seeded by (seed, b), so batch ``index`` is the same batch for
    the same index (see ``datamodules.batches``). Seeding a generator costs as much as drawing a
    small batch; drawing a block at once keeps the data out of a small network's step time."""

    BLOCK = 64

    def __init__(self, modes: Tensor, std: float, batch_size: int, seed: int, length: int, rank: int = 0,
                 world: int = 1, position: Callable[[], int] = lambda: 0):
        super().__init__(length, rank, world, position)
        self.modes, self.std, self.batch_size, self.seed = modes.float(), std, batch_size, seed
        self._block: tuple[int, Tensor] | None = None

    def batch(self, index: int) -> Tensor:
        block, offset = divmod(index, self.BLOCK)
        if self._block is None or self._block[0] != block:
            n = self.batch_size * self.world
            samples = sample_mixture(self.modes, self.std, n * self.BLOCK, seeded(self.seed, block))
            self._block = (block, samples.view(self.BLOCK, n, -1))
        start = self.rank * self.batch_size
        return self._block[1][offset, start:start + self.batch_size].clone()


def sample_mixture(modes: Tensor, std: float, n: int, generator: torch.Generator | None = None) -> Tensor:
    """n samples of the equal-weight mixture of N(mode, std^2 I)."""
    which = torch.randint(len(modes), (n,), generator=generator)
    noise = torch.randn(n, modes.shape[1], generator=generator, dtype=modes.dtype)
    return modes[which] + std * noise
