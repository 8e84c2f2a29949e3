"""Checkpoint files: reading them with errors that name the file and what to do, writing them
atomically, and comparing the settings they record. Plain torch: a loop of one's own reads and
writes with these too (the models' checkpoints are ``gans.checkpoint``'s).

A checkpoint is read memory-mapped: metadata (hyperparameters, the iteration) costs no more than
reading the file's index, whatever the size of the weights.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch


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
