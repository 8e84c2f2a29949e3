"""Shortcuts for the four methods the project started with: ``gans.JARE(G, D, latent_dim, gamma=100)``
is ``TwoPlayerGAN(G, D, latent_dim, method=JacobianRegularization(100))``, and so on. Each is a
thin LightningModule that stores its hyperparameters once, in its method; checkpoints of earlier
versions name them (``class_path: gans.JARE``) and load with them. Configs and the command line
build every model one way: ``gans.TwoPlayerGAN`` with a ``method`` (``configs/models/``,
``--model.method.gamma``).
"""
from __future__ import annotations

from typing import Literal

from game.methods import ConsensusOptimization, JacobianRegularization, SymplecticGradientAdjustment
from gans.base import TwoPlayerGAN


class Vanilla(TwoPlayerGAN):
    """Plain gradient descent for both players (``TwoPlayerGAN``'s default method), simultaneous or
    alternating (``update``, ``order``, ``n_d``)."""


class ConOpt(TwoPlayerGAN):
    """Consensus optimization: ``TwoPlayerGAN(method=ConsensusOptimization(gamma))``.

    Args:
        gamma: weight of the consensus regulariser 1/2 ||xi||^2 (10 in the paper's experiments).
    """

    def __init__(self, *args, gamma: float = 10.0, **kwargs):
        super().__init__(*args, method=ConsensusOptimization(gamma), **kwargs)

    gamma = property(lambda self: self.method.gamma, doc="the method's gamma (stored once, in the method)")


class JARE(TwoPlayerGAN):
    """Jacobian regularization: ``TwoPlayerGAN(method=JacobianRegularization(gamma))``.

    Args:
        gamma: weight of each player's regulariser, the other player's 1/2 ||gradient||^2
            (1000 in the paper's ring experiment, 100 on CIFAR-10).
    """

    def __init__(self, *args, gamma: float = 100.0, **kwargs):
        super().__init__(*args, method=JacobianRegularization(gamma), **kwargs)

    gamma = property(lambda self: self.method.gamma, doc="the method's gamma (stored once, in the method)")


class SGA(TwoPlayerGAN):
    """Symplectic gradient adjustment: ``TwoPlayerGAN(method=SymplecticGradientAdjustment(...))``.

    Args:
        lam: magnitude of the adjustment (1 in the papers).
        align: choose the sign of lam by the alignment rule of Letcher et al. (2019).
        align_dim: the d of that rule: ``scalars`` (number of parameters, Letcher's code and the
            JMLR paper) or ``tensors`` (number of parameter tensors, DeepMind's colab).
    """

    def __init__(self, *args, lam: float = 1.0, align: bool = True,
                 align_dim: Literal["scalars", "tensors"] = "scalars", **kwargs):
        super().__init__(*args, method=SymplecticGradientAdjustment(lam, align, align_dim), **kwargs)

    # the method's hyperparameters, stored once (in the method: a sweep's member_model sets them there)
    lam = property(lambda self: self.method.lam)
    align = property(lambda self: self.method.align)
    align_dim = property(lambda self: self.method.align_dim)
