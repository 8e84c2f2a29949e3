"""The models of each method by name: ``gans.MODELS[name](generator=..., discriminator=...,
latent_dim=..., **hyperparameters)``.

A model is ``TwoPlayerGAN`` with a method (``game.methods``). The four methods the project started
with keep a class of their own (``gans.JARE(..., gamma=100)``; checkpoints name them as
``class_path: gans.JARE``); every other method's entry builds ``TwoPlayerGAN(method=...)`` from the
method's hyperparameters, so adding a method is its component and its config.
"""
from __future__ import annotations

import inspect
from typing import Callable, Literal

from game.methods import METHODS, ConsensusOptimization, JacobianRegularization, Method, SymplecticGradientAdjustment
from gans.base import TwoPlayerGAN
from gans.semistylegan import SemiStyleGAN


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


def model_of(method: type[Method]) -> Callable[..., TwoPlayerGAN]:
    """A builder of ``TwoPlayerGAN(method=method(**its hyperparameters), **the rest)`` that takes the
    method's hyperparameters by name among the model's arguments."""
    names = set(inspect.signature(method).parameters)

    def build(*args, **kwargs) -> TwoPlayerGAN:
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        return TwoPlayerGAN(*args, method=method(**options), **kwargs)

    build.__name__ = build.__qualname__ = f"{method.__name__}GAN"
    build.__doc__ = f"TwoPlayerGAN(method={method.__name__}(...)); {method.__doc__.splitlines()[0]}"
    return build


SHORTCUTS = {"vanilla": Vanilla, "conopt": ConOpt, "jare": JARE, "sga": SGA}
MODELS: dict[str, Callable[..., TwoPlayerGAN]] = {name: SHORTCUTS.get(name) or model_of(cls)
                                                  for name, cls in METHODS.items()}
# the fine-grained editing variant is configs/models/semistylegan_fine.yaml
MODELS.update(semistylegan=SemiStyleGAN, semistylegan_fine=SemiStyleGAN)
