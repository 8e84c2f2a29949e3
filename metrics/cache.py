"""What the metrics compute once and keep: trained feature networks and real statistics, in a
cache folder shared by runs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from runtime.checkpoint import atomic_save
from runtime.distributed import from_rank0


def cache_root() -> Path:
    """``$GAN_DYNAMICS_CACHE``, else ``~/.cache/gan-dynamics``."""
    return Path(os.environ.get("GAN_DYNAMICS_CACHE") or Path.home() / ".cache" / "gan-dynamics")


def cached(path: Path, compute: Callable[[], dict]) -> dict:
    """The dict at ``path``, or ``compute()`` saved there atomically (``runtime.checkpoint.atomic_save``)
    when the file is missing. Rank 0 alone reads or computes it (a network is trained once) and every
    process receives its value (``runtime.distributed.from_rank0``): the other processes need not see
    the file (a cache on a node-local disk), and if rank 0 fails they fail with it instead of waiting."""
    def load_or_compute() -> dict:
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)
        value = compute()
        atomic_save(value, path)
        return value
    return from_rank0(load_or_compute)
