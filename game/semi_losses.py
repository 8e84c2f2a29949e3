"""The loss terms of Semi-StyleGAN (Nie et al. 2020) as small functions of network outputs.

Notation: c in [0, 1]^K the factor codes, E the encoder head of the discriminator, ``e = E(x)``.
How the terms are weighted into each player's loss is in ``gans.semistylegan``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def code_errors(pred: Tensor, target: Tensor, squared: bool = False) -> Tensor:
    """Per sample ||pred - target||_2 (the authors' code: the norm, not its square), or
    ||pred - target||_2^2 with ``squared``; shape (B,)."""
    sq = (pred - target).square().sum(dim=1)
    return sq if squared else (sq + 1e-12).sqrt()  # the epsilon keeps the gradient finite at a perfect code


def code_error(pred: Tensor, target: Tensor, squared: bool = False) -> Tensor:
    """E_i ||pred_i - target_i||: the unsupervised code reconstruction ||E(G(c, z)) - c||."""
    return code_errors(pred, target, squared).mean()


def supervised_error(parts: list[tuple[Tensor, Tensor, Tensor | None]], squared: bool = False,
                     mean_count: Callable[[Tensor], Tensor] = lambda count: count) -> Tensor:
    """The mean of ||E(x) - c|| over the labelled items of several batches: ``parts`` holds
    (prediction, codes, mask or None for all) per batch. Zero, still attached to the graph, when
    no item is labelled, so that every process runs the same backward.

    Processes hold different numbers of labelled items: ``mean_count`` turns this process's count
    into the mean count over processes, so that the mean of the processes' values (what averaging
    their gradients computes) is the mean over all labelled items of the global batch."""
    total = count = 0
    for pred, codes, mask in parts:
        errors = code_errors(pred, codes, squared)
        weight = torch.ones_like(errors) if mask is None else mask.to(errors.dtype)
        total, count = total + (errors * weight).sum(), count + weight.sum()
    return total / mean_count(count.detach()).clamp(min=1)


def mix(a: Tensor, b: Tensor, lam: Tensor) -> Tensor:
    """Mix_lam(a, b) = lam a + (1 - lam) b with one lam per sample (broadcast over the other dims)."""
    lam = lam.reshape(-1, *[1] * (a.ndim - 1))
    return lam * a + (1 - lam) * b


__all__ = ["code_error", "code_errors", "mix", "supervised_error"]
