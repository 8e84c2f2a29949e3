"""Training batches indexed by the iteration: exact resume and exact multi-process training.

Batch ``i`` of a run is a pure function of (seed, i). Every process builds the *global* batch of
``world * batch_size`` samples and keeps its slice, so W processes with batch B train on exactly
the data one process with batch W * B would; and a run resumed at iteration ``i`` continues with
the very batch the interrupted run would have drawn next. Lightning's samplers offer neither
(a resumed epoch restarts, ``DistributedSampler`` splits by sample, not by global batch).
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate, get_worker_info

from runtime.streams import seeded
from runtime.threads import usable_cores


class IndexedBatches(IterableDataset):
    """Yields ``batch(i)`` for i from ``position()`` (the trainer's iteration count: one batch per
    iteration) to the end of its epoch of ``length`` batches. With DataLoader workers, worker k
    yields batches k, k + n, ...; the DataLoader's round-robin then restores the order.
    Subclasses define ``batch``."""

    def __init__(self, length: int, rank: int = 0, world: int = 1, position: Callable[[], int] = lambda: 0):
        if length < 1:
            raise ValueError(f"an epoch must hold at least one batch, got length {length}")
        self.length, self.rank, self.world, self.position = length, rank, world, position
        self._epoch_end: int | None = None

    def batch(self, index: int):
        raise NotImplementedError

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator:
        # A persistent worker keeps its copy of this object from one epoch to the next, and the
        # trainer it sees is frozen at the moment it started: the epoch it ended says where the next begins.
        start = max(self.position(), self._epoch_end or 0)
        self._epoch_end = (start // self.length + 1) * self.length
        worker = get_worker_info()
        k, n = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        return (self.batch(i) for i in range(start + k, self._epoch_end, n))


def training_loader(data: IterableDataset, trainer, num_workers: int = 0) -> DataLoader:
    """The DataLoader of a run's training batches (an iterable of whole batches, ``IndexedBatches``):
    at most as many workers as this process's cores (more would only compete with training),
    kept from one epoch to the next instead of started anew (their start is a fork of the whole
    process), and batches in pinned memory when training runs on a GPU (a copy from pageable
    memory makes the host wait for the GPU). Its generator is its own: the DataLoader draws a
    worker seed at every epoch start, which the global generator (the run's other draws) must not
    see, or a resumed run would be shifted."""
    workers = min(num_workers, usable_cores())
    device = getattr(getattr(trainer, "strategy", None), "root_device", None)
    on_gpu = device is not None and device.type == "cuda"
    return DataLoader(data, batch_size=None, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=on_gpu, generator=torch.Generator())


class ShuffledBatches(IndexedBatches):
    """Batches of a map-style data set without replacement: epoch e visits the samples in the
    order of a permutation seeded by (seed, e); the last incomplete global batch is dropped."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1,
                 position: Callable[[], int] = lambda: 0):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        global_batch = batch_size * world
        if len(dataset) < global_batch:
            raise ValueError(f"the data set has {len(dataset)} samples, fewer than one global batch of {global_batch} "
                             f"(batch_size {batch_size} x {world} processes); lower batch_size")
        super().__init__(len(dataset) // global_batch, rank, world, position)
        self._perm: tuple[int, Tensor] | None = None

    def permutation(self, epoch: int) -> Tensor:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, torch.randperm(len(self.dataset), generator=seeded(self.seed, epoch)))
        return self._perm[1]

    def batch(self, index: int):
        epoch, j = divmod(index, self.length)
        size = self.batch_size * self.world
        start = j * size + self.rank * self.batch_size
        indices = self.permutation(epoch)[start:start + self.batch_size].tolist()
        return default_collate([self.dataset[i] for i in indices])


class WithLabelledBatches(IndexedBatches):
    """``main``'s batches, each followed by a batch of labelled items drawn with replacement from
    ``labelled`` (indices into ``dataset``): batch i is ``(*main.batch(i), images, codes)``. The
    labelled draw of iteration i is seeded by (seed, i), and every process keeps its slice of the
    global labelled batch, like the main batches."""

    def __init__(self, main: IndexedBatches, dataset: Dataset, labelled: np.ndarray, batch_size: int, seed: int):
        if len(labelled) == 0:
            raise ValueError("labelled_batch_size > 0 needs labelled items, but the data set has none "
                             "(raise labelled_fraction or set labelled_batch_size to 0)")
        super().__init__(main.length, main.rank, main.world, main.position)
        self.main, self.dataset, self.batch_size, self.seed = main, dataset, batch_size, seed
        self.labelled = torch.as_tensor(labelled, dtype=torch.long)

    def batch(self, index: int):
        picks = torch.randint(len(self.labelled), (self.batch_size * self.world,), generator=seeded(self.seed, -1, index))
        mine = self.labelled[picks[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]].tolist()
        images, codes, _ = default_collate([self.dataset[i] for i in mine])
        return (*self.main.batch(index), images, codes)
