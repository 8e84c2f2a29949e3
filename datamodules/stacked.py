"""The data of a sweep whose members each draw their own data stream: one datamodule per member
(each as the member's single run builds it, with its own seed), their batches stacked along a
leading member axis."""
from __future__ import annotations

from typing import Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader


class StackedData(pl.LightningDataModule):
    """Batch ``i`` is (N, B, ...): member m's batch ``i`` of ``members[m]``. Everything else (the
    evaluation samples, the mixture's modes, the sample shape) is member 0's.

    The members' loaders are the single runs' loaders, driven by this trainer (a resumed run
    continues each member's stream where it stopped, as the single runs do)."""

    def __init__(self, members: Sequence[pl.LightningDataModule]):
        super().__init__()
        if not members:
            raise ValueError("StackedData needs at least one member datamodule")
        self.members = list(members)

    def __getattr__(self, name: str):
        # the rest of the contract (modes, std, eval_samples, sample_shape, ...) is member 0's
        if name == "members" or name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.members[0], name)

    @property
    def hparams_initial(self):
        """Member 0's (what a checkpoint records; each member's own is in the sweep's state)."""
        return self.members[0].hparams_initial

    def setup(self, stage: str) -> None:
        for data in self.members:
            data.trainer = self.trainer
            data.setup(stage)

    def train_dataloader(self):
        loaders = [data.train_dataloader() for data in self.members]
        return DataLoader(_Zipped(loaders), batch_size=None, generator=torch.Generator())


class _Zipped(torch.utils.data.IterableDataset):
    """The members' loaders side by side, their batches stacked."""

    def __init__(self, loaders: list[DataLoader]):
        self.loaders = loaders

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self):
        for batches in zip(*self.loaders):
            first = batches[0]
            if isinstance(first, (tuple, list)):
                yield type(first)(torch.stack(parts) for parts in zip(*batches))
            else:
                yield torch.stack(batches)
