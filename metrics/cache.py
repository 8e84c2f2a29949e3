"""What the metrics compute once and keep: trained feature networks and real statistics, in a
cache folder shared by runs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from gans.distributed import rank_and_world


def cache_root() -> Path:
    """``$GAN_DYNAMICS_CACHE``, else ``~/.cache/gan-dynamics``."""
    return Path(os.environ.get("GAN_DYNAMICS_CACHE") or Path.home() / ".cache" / "gan-dynamics")


def atomic_save(obj, path: Path) -> None:
    """Write to a temporary file and rename, so an interrupted write never leaves a broken cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cached(path: Path, compute: Callable[[], dict], barrier: Callable[[], None] = lambda: None) -> dict:
    """The dict at ``path``, computed by ``compute()`` on rank 0 when the file is missing and saved
    atomically; the other ranks wait at ``barrier`` and read it (so a network is trained once)."""
    if rank_and_world()[0] == 0 and not path.is_file():
        atomic_save(compute(), path)
    barrier()
    return torch.load(path, map_location="cpu", weights_only=True)
