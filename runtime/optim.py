"""Optimizers that the reference experiments need and torch does not ship."""
from __future__ import annotations

import torch
from torch.optim import Optimizer


class RMSpropTF(Optimizer):
    """RMSProp exactly as TensorFlow 1's ``tf.train.RMSPropOptimizer`` (its defaults included)::

        ms  <- decay * ms + (1 - decay) * g^2          ms starts at ONE
        mom <- momentum * mom + lr * g / sqrt(ms + eps)  eps INSIDE the square root
        p   <- p - mom

    The JARE, ConOpt and SGA reference codes train with this optimizer. ``torch.optim.RMSprop``
    starts the accumulator at zero and adds eps outside the root, which makes its first steps
    about 1/sqrt(1 - decay) times larger; no option of it reproduces TF, hence this class.
    """

    def __init__(self, params, lr: float = 1e-3, decay: float = 0.9, momentum: float = 0.0, eps: float = 1e-10):
        if lr < 0 or not 0 <= decay < 1 or momentum < 0 or eps < 0:
            raise ValueError(f"invalid RMSpropTF hyperparameters: lr={lr}, decay={decay}, momentum={momentum}, eps={eps}")
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            states = [self.state[p] for p in params]
            for p, state in zip(params, states):
                if not state:
                    state["ms"] = torch.ones_like(p)
                    if group["momentum"]:
                        state["mom"] = torch.zeros_like(p)
            ms = [s["ms"] for s in states]
            torch._foreach_mul_(ms, group["decay"])
            torch._foreach_addcmul_(ms, grads, grads, value=1 - group["decay"])
            denom = torch._foreach_add(ms, group["eps"])
            torch._foreach_sqrt_(denom)
            if group["momentum"]:
                mom = [s["mom"] for s in states]
                torch._foreach_mul_(mom, group["momentum"])
                torch._foreach_addcdiv_(mom, grads, denom, value=group["lr"])
                torch._foreach_sub_(params, mom)
            else:
                torch._foreach_addcdiv_(params, grads, denom, value=-group["lr"])
        return loss


def preconditioner(optimizer: Optimizer) -> torch.Tensor:
    """The vector d with which ``optimizer`` steps x <- x - lr * d * g, one entry per parameter in
    its ``param_groups`` order: d = 1 / P with P = diag(sqrt(v) + eps) from its second-moment
    estimate v (momentum left out: with a slowly changing gradient Adam's bias-corrected first moment
    is g), times each group's learning rate over the first group's. The spectrum of diag(d) J is
    then the local Jacobian of the optimizer's steps in units of the first group's learning rate.

    Supported: ``RMSpropTF`` (P = sqrt(ms + eps)), ``torch.optim.RMSprop`` (centered too), ``Adam``
    and ``AdamW`` (bias-corrected v, amsgrad's maximum), ``Adagrad``, and ``SGD`` (P = I).
    """
    ref_lr = optimizer.param_groups[0]["lr"]
    parts = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            scale = _second_moment_scale(optimizer, group, state, p)
            parts.append((group["lr"] / ref_lr / scale).reshape(-1))
    return torch.cat(parts)


def _second_moment_scale(optimizer: Optimizer, group: dict, state: dict, p: torch.Tensor) -> torch.Tensor:
    """P for one parameter (see ``preconditioner``)."""
    name = type(optimizer).__name__
    if isinstance(optimizer, torch.optim.SGD):
        return torch.ones_like(p)
    if isinstance(optimizer, RMSpropTF):
        return torch.sqrt(state.get("ms", torch.ones_like(p)) + group["eps"])  # TF starts ms at one
    if not isinstance(optimizer, (torch.optim.RMSprop, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adagrad)):
        raise TypeError(f"no preconditioner for {name}: the preconditioned spectrum needs a second-moment "
                        f"estimate it knows how to read (RMSpropTF, RMSprop, Adam, AdamW, Adagrad) or SGD (none); "
                        f"use preconditioned=False for the plain spectrum")
    if not state or float(state.get("step", 1)) == 0:  # Adagrad's state exists before its first step
        raise ValueError(f"{name} has no second-moment estimate before its first step: the preconditioned "
                         f"spectrum starts after it")
    eps = group["eps"]
    if isinstance(optimizer, torch.optim.RMSprop):
        v = state["square_avg"]
        if group.get("centered"):
            v = v - state["grad_avg"] ** 2
        return torch.sqrt(v) + eps
    if isinstance(optimizer, torch.optim.Adagrad):
        return torch.sqrt(state["sum"]) + eps
    v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
    bias = 1 - group["betas"][1] ** float(state["step"])
    return torch.sqrt(v / bias) + eps
