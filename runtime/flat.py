"""One contiguous buffer per player.

Each trainable parameter becomes a view of its player's flat buffer, and the optimizer steps the
two buffers. The optimizer update and the writing of the update direction then run as a few large
kernels instead of several per parameter tensor, which on small networks is most of an
iteration's cost outside the matrix products (docs/benchmarks.md). Only for optimizers that act elementwise
(Adam, RMSProp, SGD, ...): one that keeps statistics per tensor (Adafactor's row and column
factors, say) would compute something else on a flat vector.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from runtime.optim import RMSpropTF

ELEMENTWISE = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad,
               torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam, RMSpropTF)


def flattenable(params: list[nn.Parameter]) -> bool:
    """Whether the parameters can share one buffer (same dtype and device, dense)."""
    return bool(params) and all(p.dtype == params[0].dtype and p.device == params[0].device and p.layout == torch.strided
                                for p in params)


def flatten_(params: list[nn.Parameter]) -> Tensor:
    """Copy ``params`` into one new contiguous buffer and make each parameter a view of it; returns
    the buffer (a leaf tensor the optimizer can step)."""
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    offset = 0
    for p in params:
        p.data = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


def flat_grad(grads: list[Tensor] | Tensor) -> Tensor:
    """The per-parameter update directions as one vector, in the buffer's order (a vector already
    flat, as ``compile_step`` makes it, passes through)."""
    return grads if isinstance(grads, Tensor) else torch.cat([g.reshape(-1) for g in grads])


def is_view_of(params: list[nn.Parameter], flat: Tensor) -> bool:
    """Whether the parameters still live in ``flat`` (a module moved with ``.to()`` afterwards gets
    new tensors, and the optimizer would step a buffer nobody reads). Such a move replaces every
    tensor, so the first and the last tell: this runs every iteration."""
    base = flat.untyped_storage().data_ptr()
    return all(p.untyped_storage().data_ptr() == base for p in (params[0], params[-1]))
