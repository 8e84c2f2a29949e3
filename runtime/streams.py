"""Named random streams: a generator per purpose, seeded from a key of integers.

Training draws from streams of its own rather than from torch's global generator, so what it
draws does not depend on what else consumed random numbers before (building the networks, a
launcher, a callback): the same seed gives the same run, on one process or several.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

#: the key of a process's global generators after the run's seed and its rank (``seed_for_rank``)
GLOBAL_STREAM = 0x676C6F


def derived_seed(*key: int) -> int:
    """A 32-bit seed for the stream named by integers: distinct seeds for distinct keys. (A CPU
    generator keeps only 32 bits of its seed, so the key is hashed into 32 bits rather than packed
    into a wide integer.)"""
    return int(np.random.SeedSequence([k % 2**63 for k in key]).generate_state(1)[0])


def seeded(*key: int) -> torch.Generator:
    """A CPU generator for the stream named by integers, e.g. (seed, batch index): distinct streams
    for distinct keys."""
    return torch.Generator().manual_seed(derived_seed(*key))


@contextlib.contextmanager
def cpu_seeded(seed: int) -> Iterator[None]:
    """A block in which torch's global CPU generator is seeded with ``seed``, restored afterwards,
    and every CUDA generator untouched (``torch.manual_seed`` would reseed them all for good: the
    random draws inside the networks, StyleGAN's noise, would restart after each evaluation)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


# -- the global generators of each process (randomness inside the networks) ------------------------


def global_states() -> dict:
    """Every process's global generators, gathered (a collective under torch.distributed: every
    process saves a checkpoint's state): ``{"ranks": [{"cpu": ..., "cuda": ...}, ...], "cpu": rank
    0's}``. "cuda" is the generator of the process's own CUDA device (None before CUDA is used)."""
    own = {"cpu": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None}
    ranks = [own]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        ranks = [None] * dist.get_world_size()
        dist.all_gather_object(ranks, own)
    return {"cpu": ranks[0]["cpu"], "ranks": ranks}


def restore_global_states(state: dict, rank: int, world: int) -> bool:
    """Restore process ``rank``'s global generators from ``global_states()`` (or from a checkpoint
    written before states were kept per process: rank 0's CPU state, every device's CUDA state);
    False when the state holds no entry for this process or was written by another number of
    processes (the caller seeds those)."""
    ranks = state.get("ranks")
    if ranks is None:
        torch.set_rng_state(state["cpu"])
        cuda = state.get("cuda")
        if cuda and torch.cuda.is_available() and torch.cuda.current_device() < len(cuda):
            torch.cuda.set_rng_state(cuda[torch.cuda.current_device()])
        return world == 1
    if rank >= len(ranks):
        return False
    own = ranks[rank]
    torch.set_rng_state(own["cpu"])
    if own.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(own["cuda"])
    return len(ranks) == world


def seed_for_rank(seed: int, rank: int) -> None:
    """Seed process ``rank``'s global generators (CPU and its CUDA device) for a run of ``seed``:
    rank 0 keeps the run's own seed, so one process draws as it always has; the others draw
    streams of their own, so the networks' random draws (dropout, noise inputs) differ between
    processes as they differ between the samples of one process's batch."""
    if rank > 0:
        torch.manual_seed(derived_seed(seed, GLOBAL_STREAM, rank))
