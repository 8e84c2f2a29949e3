"""Reading the checkpoints ``train.py`` writes, with errors that name the file and what to do.

    model = load_model("runs/jare/version_0/checkpoints/last.ckpt")       # networks included
    data = load_datamodule("runs/jare/version_0/checkpoints/last.ckpt")   # or None

A checkpoint is read memory-mapped: metadata (hyperparameters, the iteration) costs no more than
reading the file's index, whatever the size of the weights.
"""
from __future__ import annotations

import os
import pydoc
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins import TorchCheckpointIO

from gans.base import OBJECT_ARGUMENTS, TwoPlayerGAN


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not fit what it is used for."""


def _load(path: Path) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise TypeError("it holds no Lightning state_dict")
    return checkpoint


def iteration(checkpoint: dict) -> int:
    return int(checkpoint.get("global_step", 0))


def readable_checkpoints(folder: Path, skip: Path | None = None) -> list[tuple[Path, int]]:
    """The readable ``*.ckpt`` files of ``folder`` (but ``skip``) with their iterations, newest last."""
    found = []
    for path in sorted(Path(folder).glob("*.ckpt")):
        if skip is not None and path.resolve() == Path(skip).resolve():
            continue
        try:
            found.append((path, iteration(_load(path))))
        except Exception:  # noqa: BLE001 (an unreadable neighbour is simply not listed)
            continue
    return sorted(found, key=lambda item: item[1])


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint at ``path`` (tensors memory-mapped). Raises ``CheckpointError`` in one line
    naming the file when it is missing or unreadable (empty, truncated, not a checkpoint), with the
    readable checkpoints beside it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return _load(path)
    except Exception as err:  # noqa: BLE001 (torch reports each kind of damage differently)
        with open(path, "rb") as f:
            head = f.read(4)
        if not head:
            why = "it is empty"
        elif head != b"PK\x03\x04":  # torch.save writes a zip archive
            why = "it is not a zip archive, as torch checkpoints are"
        else:
            why = f"{type(err).__name__}: {str(err).split('. ')[0].splitlines()[0]}"
        others = readable_checkpoints(path.parent, skip=path)
        if others:
            newest = others[-1][0]
            listed = ", ".join(f"{p.name} (iteration {step})" for p, step in others)
            hint = f"readable checkpoints beside it: {listed}; resume from one with --ckpt_path {newest}"
        else:
            hint = "no other readable checkpoint is beside it"
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated? still being written? {why}); "
                              f"{hint}") from None


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


def atomic_save(obj, path: Path) -> None:
    """``torch.save(obj)`` to a hidden temporary file beside ``path``, synced and renamed over it: a
    process killed while saving leaves the previous file intact (and its half-written temporary
    file, which the next save removes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):   # of a process killed while saving
        if not _running(leftover.name.rsplit(".", 2)[-2]):
            leftover.unlink(missing_ok=True)
    try:
        with open(staging, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def _running(pid: str) -> bool:
    """Whether a process of this id is alive (a pid that is not a number is not)."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _leaves(tree, prefix: str = "") -> dict[str, object]:
    """A nested config as {dotted key: value}; lists are leaves."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def changed_settings(recorded: dict, current: dict, prefix: str) -> list[str]:
    """``prefix.key: recorded -> current`` for every setting both configs name with different values.
    ``recorded`` is a checkpoint's hyperparameters (``_class_path`` and the init arguments, as
    LightningCLI stores them), ``current`` the same section of a config (``class_path``,
    ``init_args``). A setting only one of them names (an option added to the code since) is left out."""
    old = _leaves({k: v for k, v in recorded.items() if not k.startswith("_")})
    new = _leaves(current.get("init_args", {}))
    return [f"{prefix}.{key}: {old[key]!r} -> {new[key]!r}" for key in old if key in new and old[key] != new[key]]
