"""Tiny players whose games have closed-form Jacobians (test oracles and didactic examples).

* Dirac-GAN (Mescheder et al. 2018): data at 0, ``DiracGenerator`` puts all mass at theta,
  ``LinearDiscriminator`` is D(x) = psi * x. The equilibrium is (0, 0), where the game Jacobian
  has eigenvalues +-0.5i.
* JARE's affine toy: ``AffineGenerator`` G(z) = z + phi against a ``LinearDiscriminator``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


def _vector(init: float | Sequence[float], dim: int) -> nn.Parameter:
    value = torch.full((dim,), float(init)) if isinstance(init, (int, float)) else torch.tensor(init, dtype=torch.float32)
    if value.shape != (dim,):
        raise ValueError(f"init must be a number or {dim} numbers, got {list(value.shape)}")
    return nn.Parameter(value)


class DiracGenerator(nn.Module):
    """G(z) = theta for every z: a point mass at theta in R^dim."""

    def __init__(self, dim: int = 1, init: float | Sequence[float] = 1.0):
        super().__init__()
        self.theta = _vector(init, dim)

    def forward(self, z: Tensor) -> Tensor:
        return self.theta.expand(z.shape[0], -1)


class AffineGenerator(nn.Module):
    """G(z) = z + phi (latent_dim equals the data dimension)."""

    def __init__(self, dim: int = 2, init: float | Sequence[float] = 0.0):
        super().__init__()
        self.phi = _vector(init, dim)

    def forward(self, z: Tensor) -> Tensor:
        return z + self.phi


class LinearDiscriminator(nn.Module):
    """D(x) = psi^T x, without bias."""

    def __init__(self, dim: int = 1, init: float | Sequence[float] = 1.0):
        super().__init__()
        self.psi = _vector(init, dim)

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.psi
