"""Second-order methods: each adds a Jacobian term to the simultaneous field xi.

The algebra lives in ``gans.game``; a method here is its hyperparameters and one call.
"""
from __future__ import annotations

from typing import Literal

from gans import compiled, game
from gans.base import TwoPlayerGAN


class ConOpt(TwoPlayerGAN):
    """Consensus optimization (Mescheder et al. 2017): u = xi + gamma * H^T xi.

    Args:
        gamma: weight of the consensus regulariser 1/2 ||xi||^2 (10 in the paper's experiments).
    """

    second_order = True

    def __init__(self, *args, gamma: float = 10.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.gamma = gamma

    def direction(self, xi_g, xi_d, params_g, params_d, *, reduce=game.no_reduce,
                  differentiable=False) -> game.Update:
        return game.consensus(xi_g, xi_d, params_g, params_d, gamma=self.gamma, reduce=reduce,
                              differentiable=differentiable)

    def functional_rule(self) -> compiled.Rule:
        return compiled.consensus(self.gamma)


class JARE(TwoPlayerGAN):
    """Jacobian regularization (Nie & Patel 2019): u = xi + gamma * [[0, H21^T], [H12^T, 0]] xi.

    Args:
        gamma: weight of each player's regulariser, the other player's 1/2 ||gradient||^2
            (1000 in the paper's ring experiment, 100 on CIFAR-10).
    """

    second_order = True

    def __init__(self, *args, gamma: float = 100.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.gamma = gamma

    def direction(self, xi_g, xi_d, params_g, params_d, *, reduce=game.no_reduce,
                  differentiable=False) -> game.Update:
        return game.jare(xi_g, xi_d, params_g, params_d, gamma=self.gamma, reduce=reduce,
                         differentiable=differentiable)

    def functional_rule(self) -> compiled.Rule:
        return compiled.jare(self.gamma)


class SGA(TwoPlayerGAN):
    """Symplectic gradient adjustment (Balduzzi et al. 2018): u = xi + lam * (H^T xi - H xi) / 2.

    Args:
        lam: magnitude of the adjustment (1 in the papers).
        align: choose the sign of lam by the alignment rule of Letcher et al. (2019).
        align_dim: the d of that rule: ``scalars`` (number of parameters, Letcher's code and the
            JMLR paper) or ``tensors`` (number of parameter tensors, DeepMind's colab).
    """

    second_order = True

    def __init__(self, *args, lam: float = 1.0, align: bool = True,
                 align_dim: Literal["scalars", "tensors"] = "scalars", **kwargs):
        super().__init__(*args, **kwargs)
        if align_dim not in ("scalars", "tensors"):
            raise ValueError(f"align_dim must be 'scalars' or 'tensors', got {align_dim!r}")
        self.lam, self.align, self.align_dim = lam, align, align_dim

    def direction(self, xi_g, xi_d, params_g, params_d, *, reduce=game.no_reduce,
                  differentiable=False) -> game.Update:
        dim = len(xi_g) + len(xi_d) if self.align_dim == "tensors" else None
        return game.sga(xi_g, xi_d, params_g, params_d, lam=self.lam, align=self.align, align_dim=dim,
                        reduce=reduce, differentiable=differentiable)

    def functional_rule(self) -> compiled.Rule:
        params = self.params_g + self.params_d
        dim = len(params) if self.align_dim == "tensors" else sum(p.numel() for p in params)
        return compiled.sga(self.lam, self.align, dim)
