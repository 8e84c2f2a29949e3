"""TF32: whether float32 matrix products and convolutions on NVIDIA GPUs round their inputs to 10
bits of mantissa.

On Ampere and Hopper GPUs cuDNN convolutions run in TF32 unless told not to (PyTorch's default),
so products carry about 1e-3 relative error: a Jacobian product that feeds a Krylov solve (CGD's
tolerance 1e-6) or an eigenvalue search, and the features a Frechet distance is computed from,
would be that inexact. Training sets the precision explicitly: full float32 everywhere by
default (``set_tf32(False)``; ``train.py --tf32 true`` allows TF32 for the first-order training
step), and the second-order methods, the spectra and FID always run in full float32
(``full_float32``). On a CPU these switches change nothing.

Torch 2.9 introduced per-backend ``fp32_precision`` settings and refuses to mix them with the older
``allow_tf32`` flags; the oldest torch this project supports (2.6) has only the older flags, so
both are handled here.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def _new_api() -> dict[str, object]:
    """The settings with an ``fp32_precision`` ("ieee" or "tf32") this torch has, by name (none
    before torch 2.9)."""
    owners = {"cuda.matmul": getattr(torch.backends.cuda, "matmul", None),
              "cudnn.conv": getattr(torch.backends.cudnn, "conv", None),
              "cudnn.rnn": getattr(torch.backends.cudnn, "rnn", None)}
    return {name: owner for name, owner in owners.items() if hasattr(owner, "fp32_precision")}


def tf32_state() -> dict[str, object]:
    """The current settings, to restore them later."""
    new = _new_api()
    if new:
        return {name: owner.fp32_precision for name, owner in new.items()}
    return {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}


def _restore(state: dict[str, object]) -> None:
    new = _new_api()
    if new:
        for name, owner in new.items():
            owner.fp32_precision = state[name]
    else:
        torch.backends.cuda.matmul.allow_tf32 = state["matmul"]
        torch.backends.cudnn.allow_tf32 = state["cudnn"]


def set_tf32(enabled: bool) -> None:
    """Allow (True) or forbid (False) TF32 in float32 matrix products and cuDNN convolutions."""
    new = _new_api()
    if new:
        for owner in new.values():
            owner.fp32_precision = "tf32" if enabled else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def tf32_enabled() -> bool:
    """Whether float32 products or convolutions may use TF32 now."""
    new = _new_api()
    if new:
        return any(owner.fp32_precision == "tf32" for owner in new.values())
    return bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """A block whose float32 products and convolutions are exact float32 (no TF32), whatever the
    process's setting; the setting is restored afterwards."""
    state = tf32_state()
    set_tf32(False)
    try:
        yield
    finally:
        _restore(state)
