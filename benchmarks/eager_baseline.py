"""The straightforward eager PyTorch step of each method: the baseline our training path is timed
against (and checked against: the same arithmetic must give the same parameters).

Written the way one would write it without the framework: two ``autograd.grad`` calls for the two
players (with ``create_graph=True`` for the second-order methods), the regulariser gradients,
``p.grad = ...`` per parameter, a stock optimizer. Deliberately independent of ``game.algebra``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

METHODS = ("simgd", "altgd", "conopt", "jare", "sga")


def losses(generator: nn.Module, discriminator: nn.Module, real: Tensor, z: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    d_real, d_fake = discriminator(real).reshape(-1), discriminator(generator(z)).reshape(-1)
    loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    loss_g = -loss_d if loss == "zero_sum" else F.softplus(-d_fake).mean()
    return loss_g, loss_d


def _grads(output: Tensor, params: list[Tensor], create_graph: bool) -> list[Tensor]:
    grads = torch.autograd.grad(output, params, create_graph=create_graph, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _half_sq(tensors: list[Tensor]) -> Tensor:
    return 0.5 * sum((t * t).sum() for t in tensors)


class EagerGame:
    """Generator, discriminator and one optimizer over both (two parameter groups)."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, optimizer, *, method: str, loss: str = "zero_sum",
                 gamma: float = 1.0, lam: float = 1.0):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.g, self.d, self.method, self.loss, self.gamma, self.lam = generator, discriminator, method, loss, gamma, lam
        self.pg, self.pd = list(generator.parameters()), list(discriminator.parameters())
        self.opt = optimizer([{"params": self.pg}, {"params": self.pd}])

    def _apply(self, grads_g: list[Tensor] | None, grads_d: list[Tensor] | None) -> None:
        for params, grads in ((self.pg, grads_g), (self.pd, grads_d)):
            for p, g in zip(params, grads if grads is not None else [None] * len(params)):
                p.grad = None if g is None else g.detach()
        self.opt.step()

    def step(self, real: Tensor, z: Tensor, z2: Tensor | None = None) -> None:
        """One iteration; ``altgd`` updates G on ``z`` then D on ``z2``."""
        if self.method == "altgd":
            loss_g, _ = losses(self.g, self.d, real, z, self.loss)
            self._apply(_grads(loss_g, self.pg, False), None)
            _, loss_d = losses(self.g, self.d, real, z if z2 is None else z2, self.loss)
            self._apply(None, _grads(loss_d, self.pd, False))
            return
        second = self.method != "simgd"
        loss_g, loss_d = losses(self.g, self.d, real, z, self.loss)
        gg, gd = _grads(loss_g, self.pg, second), _grads(loss_d, self.pd, second)
        if self.method == "simgd":
            return self._apply(gg, gd)
        if self.method == "jare":
            reg_g, reg_d = _grads(_half_sq(gd), self.pg, False), _grads(_half_sq(gg), self.pd, False)
            return self._apply([a + self.gamma * b for a, b in zip(gg, reg_g)],
                               [a + self.gamma * b for a, b in zip(gd, reg_d)])
        if self.method == "conopt":
            reg = _grads(_half_sq(gg + gd), self.pg + self.pd, False)
            u = [a + self.gamma * b for a, b in zip(gg + gd, reg)]
            return self._apply(u[:len(self.pg)], u[len(self.pg):])
        # SGA with alignment: A^T xi = (H^T xi - H xi) / 2, H xi by the double-backward trick
        xi, params = gg + gd, self.pg + self.pd
        ht_xi = _grads(sum((a * b.detach()).sum() for a, b in zip(xi, xi)), params, False)
        u_dummy = [torch.zeros_like(t, requires_grad=True) for t in xi]
        ht_u = _grads(sum((a * b).sum() for a, b in zip(xi, u_dummy)), params, True)
        h_xi = _grads(sum((a * b.detach()).sum() for a, b in zip(ht_u, xi)), u_dummy, False)
        at_xi = [(a - b) / 2 for a, b in zip(ht_xi, h_xi)]
        dim = sum(p.numel() for p in params)
        dot = lambda a, b: sum((x * y).sum() for x, y in zip(a, b))  # noqa: E731
        sign = torch.sign(dot(xi, ht_xi).detach() * dot(at_xi, ht_xi).detach() / dim + 0.1)
        u = [a + self.lam * sign * b for a, b in zip(xi, at_xi)]
        self._apply(u[:len(self.pg)], u[len(self.pg):])
