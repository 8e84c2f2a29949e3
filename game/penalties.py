"""Gradient penalties on the discriminator's input gradient, terms of L_D.

    R1  (Mescheder et al. 2018)   gamma / 2 * E_real ||grad_x D(x)||^2
    R2                            gamma / 2 * E_fake ||grad_x D(x)||^2        (generated samples)
    WGAN-GP (Gulrajani et al. 2017) lam * E (||grad_x D(x_hat)|| - 1)^2,  x_hat = x + a (x_fake - x), a ~ U[0, 1]

The generated samples are detached, as in the reference codes: the penalty depends on the
discriminator's parameters only, so it enters xi_theta (and H22), not xi_phi, and a zero-sum game
keeps L_G = -(L_D without the penalty) with the same field. The input gradient keeps its graph:
the penalty is differentiated with respect to D's weights (and again by the Jacobian methods).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Penalty = Literal["none", "r1", "r2", "wgan_gp"]
PENALTIES = ("none", "r1", "r2", "wgan_gp")


def input_gradients(logits: Tensor, inputs: Tensor) -> Tensor:
    """grad_x D(x_i) per sample, flattened to (B, dim), for ``logits`` = D(``inputs``) (``inputs``
    must require grad), with its graph."""
    (g,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return g.flatten(1)


def squared_gradient_norm(logits: Tensor, inputs: Tensor) -> Tensor:
    """E ||grad_x D(x)||^2: R1 on real samples, R2 on generated ones (without the weight gamma / 2)."""
    return input_gradients(logits, inputs).square().sum(dim=1).mean()


def unit_gradient_gap(logits: Tensor, inputs: Tensor) -> Tensor:
    """E (||grad_x D(x)|| - 1)^2: WGAN-GP's term on interpolates (without the weight lam). The norm
    is ``vector_norm``, whose derivative at a zero gradient (a ReLU discriminator's flat region) is
    zero; that of sqrt(sum of squares) is NaN there."""
    return (torch.linalg.vector_norm(input_gradients(logits, inputs), dim=1) - 1).square().mean()


def interpolates(real: Tensor, fake: Tensor, a: Tensor) -> Tensor:
    """x + a (x_fake - x) with one a per sample (``a`` of shape (B,)), detached, requiring grad."""
    a = a.to(real).reshape(-1, *([1] * (real.ndim - 1)))
    return (real.detach() + a * (fake.detach() - real.detach())).requires_grad_(True)


def weight(kind: Penalty, penalty_weight: float) -> float:
    """The factor in front of each penalty's expectation: gamma / 2 for R1 and R2, lam for WGAN-GP."""
    return penalty_weight / 2 if kind in ("r1", "r2") else penalty_weight
