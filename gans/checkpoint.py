"""Reading the checkpoints ``train.py`` writes, with errors that name the file and what to do.

    model = load_model("runs/jare/version_0/checkpoints/last.ckpt")       # networks included
    data = load_datamodule("runs/jare/version_0/checkpoints/last.ckpt")   # or None

The files themselves (reading, atomic writing) are ``runtime.checkpoint``'s.
"""
from __future__ import annotations

import pydoc
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.plugins import TorchCheckpointIO

from gans.base import OBJECT_ARGUMENTS, TwoPlayerGAN
from runtime.checkpoint import CheckpointError, atomic_save, read_checkpoint


def _class(class_path: str, base: type) -> type:
    cls = pydoc.locate(class_path)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise CheckpointError(f"{class_path} in the checkpoint is not a {base.__name__}")
    return cls


def record_object_arguments(model: pl.LightningModule, model_config: dict) -> None:
    """Put the ``class_path`` configs of the networks and the optimizer into the model's
    hyperparameters (the model leaves the objects out): checkpoints then rebuild the whole model
    with ``load_from_checkpoint(path)``, no arguments needed."""
    init_args = model_config.get("init_args", {})
    for name in OBJECT_ARGUMENTS:
        if name in init_args:
            model.hparams[name] = init_args[name]


def model_class_path(checkpoint: dict) -> str | None:
    """The class path of the model that wrote the checkpoint (None: not written by train.py)."""
    return checkpoint.get("hyper_parameters", {}).get("_class_path")


def load_model(path: str | Path) -> TwoPlayerGAN:
    """The model of a ``train.py`` checkpoint, networks included (their class paths are saved with it),
    in eval mode on the CPU."""
    class_path = model_class_path(read_checkpoint(path))
    if class_path is None:
        raise CheckpointError(f"{path} was not written by train.py (no model class path in its hyperparameters); "
                              f"use YourModel.load_from_checkpoint(path, generator=..., discriminator=...)")
    cls = _class(class_path, TwoPlayerGAN)
    return cls.load_from_checkpoint(path, map_location="cpu", weights_only=False).eval()


def load_datamodule(path: str | Path) -> pl.LightningDataModule | None:
    """The datamodule a ``train.py`` checkpoint was trained on, or None when it did not record one."""
    class_path = read_checkpoint(path).get("datamodule_hyper_parameters", {}).get("_class_path")
    if class_path is None:
        return None
    return _class(class_path, pl.LightningDataModule).load_from_checkpoint(path, weights_only=False)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on local disks: the checkpoint is written to a
    hidden temporary file beside its target, synced, and renamed over it, so a run killed while
    saving leaves the previous checkpoint intact. (Lightning's own writer stages the file in the
    system's temporary folder and moves it: a rename only when that folder is on the same file
    system, otherwise a copy that a kill can cut short, as on cluster nodes with a local /tmp.)
    Remote paths (``s3://``, ...) go to Lightning's writer."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_save(checkpoint, Path(path))
