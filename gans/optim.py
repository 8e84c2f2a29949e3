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
