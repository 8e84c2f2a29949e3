"""Named random streams: a generator per purpose, seeded from a key of integers.

Training draws from streams of its own rather than from torch's global generator, so what it
draws does not depend on what else consumed random numbers before (building the networks, a
launcher, a callback): the same seed gives the same run, on one process or several.
"""
from __future__ import annotations

import numpy as np
import torch


def seeded(*key: int) -> torch.Generator:
    """A CPU generator for the stream named by integers, e.g. (seed, batch index): distinct streams
    for distinct keys. (A CPU generator keeps only 32 bits of its seed, so the key is hashed into 32
    bits rather than packed into a wide integer.)"""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([k % 2**63 for k in key]).generate_state(1)[0]))
