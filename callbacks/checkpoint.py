"""The end of training always writes the final state to ``last.ckpt``."""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from runtime.checkpoint import CheckpointError, iteration, read_checkpoint


class FinalCheckpoint(pl.Callback):
    """When training ends, rewrite the ``last.ckpt`` of every ``ModelCheckpoint(save_last=True)``
    that holds an earlier iteration. Lightning saves "last" at the end only when it saved nothing
    before, so a run of 2,100 iterations with a cadence of 2,000 would leave the model of iteration
    2,000 there, and everything that reads ``last.ckpt`` (sampling, spectra, a resume) would see an
    older model. (It runs after the checkpoint callbacks' own end of training.)"""

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        for callback in trainer.checkpoint_callbacks:
            if not (isinstance(callback, ModelCheckpoint) and callback.save_last):
                continue
            # a resumed run whose checkpoint folder is spelled differently (a relative and an absolute
            # path) has no last_model_path: Lightning reloads it only for the same spelling
            path = callback.last_model_path or (callback.dirpath and str(
                Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"))
            if not path:
                continue
            try:
                current = iteration(read_checkpoint(path)) == trainer.global_step
            except CheckpointError:
                current = False
            # every rank asks (trainer.save_checkpoint is a collective); rank 0's file decides
            if not trainer.strategy.broadcast(current):
                trainer.save_checkpoint(path, weights_only=callback.save_weights_only)
                callback.last_model_path = path
