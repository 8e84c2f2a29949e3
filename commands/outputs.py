"""Where the offline commands write, and on which device they compute: checked before any work, so
a read-only folder or a mistyped ``--out`` ends in one line instead of after a long computation,
and never overwriting an earlier output without a word."""
from __future__ import annotations

import uuid
from pathlib import Path

import torch


def output_stem(checkpoint: Path, step: int, *tags: str) -> str:
    """``<checkpoint>_step<N>[_tag...]``; a checkpoint whose name already ends in ``_step<N>`` (an
    exported sweep member) keeps it once."""
    stem = checkpoint.stem
    if not stem.endswith(f"_step{step}"):
        stem = f"{stem}_step{step}"
    return "_".join([stem, *tags])


def writable_folder(folder: Path, option: str = "--out") -> Path:
    """``folder``, created if needed, after a test write; ``ValueError`` in one line when it cannot
    be written (read-only, a file in the way, no permission)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{uuid.uuid4().hex}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        if isinstance(err, (FileExistsError, NotADirectoryError)):
            reason = f"{err.filename} is a file, not a folder"
        raise ValueError(f"cannot write to {folder}: {reason}; pass {option} with a folder you can write to") from None
    return folder


def unused(path: Path, suffixes: tuple[str, ...]) -> Path:
    """``path`` (without suffix) if none of ``path + suffix`` exists, else ``path_2``, ``path_3``, ...:
    a second output of the same name does not replace the first."""
    candidate, n = path, 1
    while any(candidate.with_name(candidate.name + s).exists() for s in suffixes):
        n += 1
        candidate = path.with_name(f"{path.name}_{n}")
    return candidate


def device_option(name: str) -> torch.device:
    """``--device``: ``auto`` (the first GPU when there is one, else the CPU), ``cpu``, ``cuda`` or
    ``cuda:N``; ``ValueError`` in one line for one that is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this machine has no CUDA device; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices")
    return device

