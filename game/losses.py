"""GAN losses as small functions of the discriminator logits.

Each function takes the logits on real and on generated samples and returns
``(loss_g, loss_d)``; both players *minimise* their own loss. The logits of the
generated samples must not be detached: the game field xi = (grad_phi L_G,
grad_theta L_D) and its Jacobian need both losses to see both players.
"""
from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _d_loss_logistic(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """L_D = E[-log sigmoid(D(x))] + E[-log(1 - sigmoid(D(G(z))))]."""
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def non_saturating(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """Goodfellow's non-saturating game: L_G = E[-log sigmoid(D(G(z)))]."""
    return F.softplus(-d_fake).mean(), _d_loss_logistic(d_real, d_fake)


def zero_sum(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """The minimax game: L_G = -L_D (the JARE/ConOpt synthetic experiments)."""
    loss_d = _d_loss_logistic(d_real, d_fake)
    return -loss_d, loss_d


def hinge(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))], L_G = -E[D(G(z))]."""
    loss_d = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    return -d_fake.mean(), loss_d


def wasserstein(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """L_D = E[D(G(z))] - E[D(x)], L_G = -E[D(G(z))] (no Lipschitz constraint here)."""
    return -d_fake.mean(), d_fake.mean() - d_real.mean()


LOSSES: dict[str, LossFn] = {
    "ns": non_saturating,
    "zero_sum": zero_sum,
    "hinge": hinge,
    "wasserstein": wasserstein,
}


def get_loss(name: str) -> LossFn:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}") from None


def is_zero_sum(name: str) -> bool:
    """True when L_G = -L_D, so one gradient of L_D gives both players' fields."""
    return name == "zero_sum"


__all__ = ["LOSSES", "get_loss", "hinge", "is_zero_sum", "non_saturating", "wasserstein", "zero_sum"]
