"""Game methods as small components: each one's hyperparameters and its update direction u, in
its eager form (on autograd graphs, ``game.algebra``) and its compiled form (``game.compiled``) side
by side, so one method's difference from another is a few lines here.

Both players step ``x <- x - lr * u(x)``. A method sees the game on the step's batch (``BatchGame``:
the field at any parameters, the players' learning rates) and the field xi already computed
there, and returns an ``Update``. Any model takes any method (``TwoPlayerGAN(..., method=...)``;
from YAML ``method: {class_path: game.methods.Extragradient, init_args: {...}}``).

``reduce`` averages lists of tensors across processes (identity on one process): every method
reduces the detached field and each Jacobian product, which makes W processes with batch B
compute the update of one process with batch W * B. ``differentiable=True`` (one process) keeps
the direction's whole graph, so that its Jacobian, the spectrum of the method, can be taken.
"""
from __future__ import annotations

import warnings
from typing import ClassVar, Literal, Protocol, Sequence

import torch
from torch import Tensor

from game import compiled
from game.algebra import (
    Field,
    Reduce,
    Update,
    agreed,
    agreed_flag,
    axpy,
    detach,
    dot,
    grad,
    ht_field,
    jvp,
    no_reduce,
    norm,
    reduced,
    vjp,
    vjp_and_jvp,
)
from game.krylov import conjugate_gradient, conjugate_gradient_members, gmres, implicit_solution

Players = Literal["g", "d", "gd"]


class BatchGame(Protocol):
    """The game on one batch, as a method sees it (``game.twoplayer.GameOnBatch``)."""

    @property
    def learning_rates(self) -> tuple[float, float]:
        """(generator's, discriminator's) learning rate."""

    @property
    def loss(self) -> str:
        """The name of the players' losses (``game.losses``)."""

    @property
    def members(self) -> bool:
        """Whether the parameters are stacked games along a leading member axis (``gans.sweep``):
        inner products and norms are then taken per member, and a hyperparameter may be a vector
        with one value per member."""

    def field(self, at: tuple[Sequence[Tensor], Sequence[Tensor]] | None = None, *, create_graph: bool = False,
              players: Players = "gd") -> Field:
        """The field at the model's parameters, or at ``at`` = (phi, theta) (tensors that require grad,
        or that carry a graph to the model's parameters); ``players`` which parts to compute."""


class Method:
    """An update rule. Subclasses set ``name`` (``python train.py --model NAME`` trains it with
    ``configs/models/NAME.yaml``) and define ``direction``; stateful ones (the previous field, a solver's
    warm start) keep their state with ``commit``, ``state_dict`` and ``load_state_dict``, which
    checkpoints and resumes save and restore."""

    name: ClassVar[str]
    #: ``direction`` differentiates xi again: the field is built with its graph
    second_order: ClassVar[bool] = False
    #: a player's direction needs only its own part of the field: an alternating phase computes one
    separable: ClassVar[bool] = False
    #: the direction is the field itself, so its Jacobian is H and the average of per-batch ones
    direction_is_field: ClassVar[bool] = False
    #: the direction is a function of the parameters, with a Jacobian of its own (its spectrum)
    has_jacobian: ClassVar[bool] = True

    def direction(self, game: BatchGame, field: Field, *, reduce: Reduce = no_reduce, differentiable: bool = False) -> Update:
        raise NotImplementedError

    def compiled_rule(self, params_g: Sequence[Tensor], params_d: Sequence[Tensor],
                      learning_rates: tuple[float, float]) -> compiled.Rule:
        """The direction in torch.func form for ``compile_step``; raises ``ValueError`` saying why
        when the method has none."""
        raise ValueError(f"{type(self).__name__} has no compiled step")

    def validate(self, loss: str) -> None:
        """Raise ``ValueError``, saying why and what to change, when this method cannot train a game
        with these losses (``game.losses``); a model calls it when it is built."""

    def commit(self, update: Update, players: Players = "gd") -> None:
        """Keep the state ``update`` leaves (the players that stepped: ``players``)."""

    def reset(self) -> None:
        """Forget the state (a new run)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def to(self, device: torch.device | str) -> Method:
        """Move the state and any tensor hyperparameter (a sweep's per-member values) to ``device``:
        a checkpoint is read on the CPU, and a resumed GPU run must not mix its state with CUDA
        tensors. Returns the method."""
        self.load_state_dict(_moved(self.state_dict(), device))
        for name, value in vars(self).items():
            if isinstance(value, Tensor):
                setattr(self, name, value.to(device))
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def stacked(game: BatchGame | None) -> bool:
    """Whether ``game`` is stacked games (``BatchGame.members``); a game without that property, or none
    at all (the methods whose direction needs no game accept None), is one game."""
    return bool(getattr(game, "members", False))


def _present(*parts: list[Tensor] | None) -> list[list[Tensor]]:
    return [p for p in parts if p is not None]


def _nonnegative_weight(method: str, gamma: float, regulariser: str) -> None:
    """Refuse a negative regulariser weight: the method would reward a larger gradient norm, which
    its theory gives no meaning."""
    if gamma < 0:
        raise ValueError(f"{method}: gamma must be >= 0 (the weight of the regulariser {regulariser}), got {gamma:g}; "
                         f"a negative weight would reward a larger gradient norm")


def _moved(tree, device):
    """A state (tensors in dicts, lists and tuples) with every tensor on ``device``."""
    if isinstance(tree, Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: _moved(v, device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_moved(v, device) for v in tree)
    return tree


def _reference(field: Field) -> Tensor:
    """A tensor of the field's device and dtype, for the scalars a method makes."""
    return next(t for part in (field.xi_g, field.xi_d, field.params_g, field.params_d) if part for t in part)


# -- first order --------------------------------------------------------------------------------


class GradientDescent(Method):
    """Plain gradient descent: u = xi. With ``update: alternating`` on the model, each player's
    gradient is recomputed after the other has moved."""

    name = "vanilla"
    separable = True
    direction_is_field = True

    def direction(self, game, field, *, reduce=no_reduce, differentiable=False):
        xi_g, xi_d = field.xi_g, field.xi_d
        if not differentiable:
            xi_g, xi_d = (None if xi is None else detach(xi) for xi in (xi_g, xi_d))
        parts = iter(reduced(reduce, *(list(xi) for xi in _present(xi_g, xi_d))))
        return Update(None if xi_g is None else next(parts), None if xi_d is None else next(parts), {})

    def compiled_rule(self, params_g, params_d, learning_rates):
        return compiled.Rule(lambda xi_g, xi_d, products: (xi_g, xi_d, {}))


class Extragradient(Method):
    """Extragradient (Korpelevich 1976; Gidel et al. 2019): the field one plain step ahead,

        u(x) = xi(x - eta_e * xi(x)),

    two field evaluations and no Jacobian product per iteration. The extrapolation is a plain step
    of the raw field, whatever the optimizer: the direction is a function of x, with Jacobian
    H(x - eta_e xi) (I - eta_e H(x)), H (I - eta_e H) at a fixed point.

    Args:
        extrapolation: eta_e; None takes each player's learning rate.
    """

    name = "extragradient"

    def __init__(self, extrapolation: float | None = None):
        if extrapolation is not None and extrapolation < 0:
            raise ValueError(f"extrapolation must be >= 0 (or None for the learning rate), got {extrapolation}")
        self.extrapolation = extrapolation

    def steps(self, learning_rates: tuple[float, float]) -> tuple[float, float]:
        """(eta_e for G, eta_e for D): ``extrapolation``, or the players' learning rates."""
        return (self.extrapolation,) * 2 if self.extrapolation is not None else learning_rates

    def direction(self, game, field, *, reduce=no_reduce, differentiable=False):
        eta_g, eta_d = self.steps(game.learning_rates)
        if differentiable:
            ahead = game.field((axpy(-eta_g, field.xi_g, field.params_g), axpy(-eta_d, field.xi_d, field.params_d)),
                               create_graph=True)
            return Update(ahead.xi_g, ahead.xi_d, {})
        bar_g, bar_d = reduced(reduce, detach(field.xi_g), detach(field.xi_d))
        with torch.no_grad():
            at = tuple([t.requires_grad_() for t in axpy(-eta, bar, [p.detach() for p in params])]
                       for eta, bar, params in ((eta_g, bar_g, field.params_g), (eta_d, bar_d, field.params_d)))
        ahead = game.field(at)
        u_g, u_d = reduced(reduce, detach(ahead.xi_g), detach(ahead.xi_d))
        move = torch.sqrt((eta_g * norm(bar_g, stacked(game))) ** 2 + (eta_d * norm(bar_d, stacked(game))) ** 2)
        return Update(u_g, u_d, {"extragradient/extrapolation_norm": move})

    def compiled_rule(self, params_g, params_d, learning_rates):
        eta_g, eta_d = self.steps(learning_rates)

        def rule(xi_g, xi_d, products):
            pg, pd = products.params
            u_g, u_d = products.field(compiled.axpy(-eta_g, xi_g, pg), compiled.axpy(-eta_d, xi_d, pd))
            move = torch.sqrt(eta_g ** 2 * 2 * compiled.half_sq_norm(xi_g) + eta_d ** 2 * 2 * compiled.half_sq_norm(xi_d))
            return u_g, u_d, {"extragradient/extrapolation_norm": move}
        return compiled.Rule(rule)


class OptimisticGradient(Method):
    """Optimistic gradient descent (Daskalakis et al. 2018; Popov 1980): the field extrapolated from
    the previous iteration's,

        u_t = 2 xi(x_t) - xi(x_{t-1}),

    one field per iteration. The previous field (reduced across processes, like xi) is the
    method's state: checkpointed, so a resume is exact. Under alternating updates each player keeps
    its own previous gradient (as the reference code, which alternates).

    Args:
        previous_at_start: what stands for xi(x_{-1}) at the first iteration: ``current``, xi(x_0)
            (the first step is a plain gradient step) or ``zero`` (a doubled first step, the
            convention of the reference codes).
    """

    name = "optimistic"
    separable = True
    has_jacobian = False

    def __init__(self, previous_at_start: Literal["current", "zero"] = "current"):
        if previous_at_start not in ("current", "zero"):
            raise ValueError(f"previous_at_start must be 'current' or 'zero', got {previous_at_start!r}")
        self.previous_at_start = previous_at_start
        self._previous: dict[str, list[Tensor] | None] = {"g": None, "d": None}

    def direction(self, game, field, *, reduce=no_reduce, differentiable=False):
        if differentiable:
            raise ValueError("the optimistic direction reads the previous iteration's field, so it is not a function "
                             "of the parameters and has no Jacobian of its own: take field='gradient' (with "
                             "step h, each eigenvalue lambda of H gives the optimistic step's multipliers mu, "
                             "mu^2 - (1 - 2 h lambda) mu - h lambda = 0)")
        present = {p: xi for p, xi in (("g", field.xi_g), ("d", field.xi_d)) if xi is not None}
        bars = dict(zip(present, reduced(reduce, *(detach(xi) for xi in present.values()))))
        u = {}
        for player, bar in bars.items():
            previous = self._previous[player]
            if previous is None:
                previous = bar if self.previous_at_start == "current" else [torch.zeros_like(t) for t in bar]
            u[player] = list(torch._foreach_sub(torch._foreach_mul(bar, 2.0), previous)) if bar else []
        return Update(u.get("g"), u.get("d"), {}, state=bars)

    def compiled_rule(self, params_g, params_d, learning_rates):
        raise ValueError("OptimisticGradient has no compiled step (its direction reads the previous iteration's field)")

    def commit(self, update, players="gd"):
        for player in players:
            if update.state.get(player) is not None:
                self._previous[player] = [t.clone() for t in update.state[player]]

    def reset(self):
        self._previous = {"g": None, "d": None}

    def state_dict(self):
        return {"previous": self._previous}

    def load_state_dict(self, state):
        self._previous = {"g": None, "d": None, **state.get("previous", {})}


# -- second order: a Jacobian term added to xi ----------------------------------------------------


class ConsensusOptimization(Method):
    """ConOpt (Mescheder et al. 2017): u = xi + gamma * grad(1/2 ||xi||^2) = xi + gamma * H^T xi.

    Args:
        gamma: weight of the consensus regulariser 1/2 ||xi||^2 (10 in the paper's experiments).
    """

    name = "conopt"
    second_order = True

    def __init__(self, gamma: float = 10.0):
        _nonnegative_weight("ConsensusOptimization", gamma, "||xi||^2")
        self.gamma = gamma

    def direction(self, game, field, *, reduce=no_reduce, differentiable=False):
        xi_field, params = [*field.xi_g, *field.xi_d], [*field.params_g, *field.params_d]
        xi = reduced(reduce, detach(xi_field))[0]
        (ht_xi,) = reduced(reduce, ht_field(xi_field, params, xi, differentiable))
        base = xi_field if differentiable else xi
        u = axpy(self.gamma, ht_xi, base)
        n = len(field.xi_g)
        return Update(u[:n], u[n:], {"reg/consensus": 0.5 * norm(xi, stacked(game)) ** 2})

    def compiled_rule(self, params_g, params_d, learning_rates):
        gamma = self.gamma

        def rule(xi_g, xi_d, products):
            corr_g, corr_d = products.ht(xi_g, xi_d)
            stats = {"reg/consensus": compiled.half_sq_norm(xi_g, xi_d)}
            return compiled.axpy(gamma, corr_g, xi_g), compiled.axpy(gamma, corr_d, xi_d), stats
        return compiled.Rule(rule)


class JacobianRegularization(Method):
    """JARE (Nie & Patel 2019): each player is regularised by the *other* player's gradient norm,

        u_phi   = xi_phi   + gamma * grad_phi   (1/2 ||xi_theta||^2) = xi_phi   + gamma * H21^T xi_theta
        u_theta = xi_theta + gamma * grad_theta (1/2 ||xi_phi||^2)   = xi_theta + gamma * H12^T xi_phi

    Only the off-diagonal blocks of H^T enter; ConOpt adds H11 xi_phi and H22 xi_theta too.

    Args:
        gamma: weight of each player's regulariser (1000 in the paper's ring experiment, 100 on CIFAR-10).
    """

    name = "jare"
    second_order = True

    def __init__(self, gamma: float = 100.0):
        _nonnegative_weight("JacobianRegularization", gamma, "the other player's ||xi||^2")
        self.gamma = gamma

    def direction(self, game, field, *, reduce=no_reduce, differentiable=False):
        xi_g, xi_d = field.xi_g, field.xi_d
        bar_g, bar_d = reduced(reduce, detach(xi_g), detach(xi_d))
        corr_g, corr_d = reduced(
            reduce,
            ht_field(xi_d, field.params_g, bar_d, differentiable),  # grad_phi 1/2 ||xi_theta||^2 = H21^T xi_theta
            ht_field(xi_g, field.params_d, bar_g, differentiable),  # grad_theta 1/2 ||xi_phi||^2 = H12^T xi_phi
        )
        base_g, base_d = (xi_g, xi_d) if differentiable else (bar_g, bar_d)
        stats = {"reg/generator": 0.5 * norm(bar_d, stacked(game)) ** 2,
                 "reg/discriminator": 0.5 * norm(bar_g, stacked(game)) ** 2}
        return Update(axpy(self.gamma, corr_g, base_g), axpy(self.gamma, corr_d, base_d), stats)

    def compiled_rule(self, params_g, params_d, learning_rates):
        gamma = self.gamma

        def rule(xi_g, xi_d, products):  # the off-diagonal products only: ``cross``
            corr_g, corr_d = products.cross(xi_g, xi_d)
            stats = {"reg/generator": compiled.half_sq_norm(xi_d), "reg/discriminator": compiled.half_sq_norm(xi_g)}
            return compiled.axpy(gamma, corr_g, xi_g), compiled.axpy(gamma, corr_d, xi_d), stats
        return compiled.Rule(rule, cross=True)


class SymplecticGradientAdjustment(Method):
    """SGA (Balduzzi et al. 2018; Letcher et al. 2019):

        u = xi + lam * A^T xi,   A^T xi = (H^T xi - H xi) / 2

    With ``align`` the sign of lam follows the Hamiltonian H_am = 1/2 ||xi||^2:

        lam <- |lam| * sign(<xi, H^T xi> <A^T xi, H^T xi> / d + eps)

    Args:
        lam: magnitude of the adjustment (1 in the papers).
        align: choose the sign of lam by the alignment rule.
        align_dim: the d of that rule: ``scalars`` (the number of parameters, Letcher's code and the
            JMLR paper) or ``tensors`` (the number of parameter tensors, DeepMind's colab).
        eps: the rule's offset (0.1 in both codes).
    """

    name = "sga"
    second_order = True

    def __init__(self, lam: float = 1.0, align: bool = True, align_dim: Literal["scalars", "tensors"] = "scalars",
                 eps: float = 0.1):
        if align_dim not in ("scalars", "tensors"):
            raise ValueError(f"align_dim must be 'scalars' or 'tensors', got {align_dim!r}")
        if lam < 0:  # a sign the alignment rule may choose itself: allowed, but said
            warnings.warn(f"SGA lam={lam:g}: with align the alignment rule chooses lam's sign, so only |lam| = "
                          f"{abs(lam):g} is used" if align else
                          f"SGA lam={lam:g} < 0 subtracts the adjustment (Balduzzi et al. take lam > 0; the "
                          f"alignment rule, --model.method.align true, chooses the sign by itself)")
        self.lam, self.align, self.align_dim, self.eps = lam, align, align_dim, eps

    def dimension(self, params: Sequence[Tensor], members: bool = False) -> int:
        """The d of the alignment rule for these parameters (one member's, when stacked)."""
        return len(params) if self.align_dim == "tensors" else sum((p[0] if members else p).numel() for p in params)

    def direction(self, game, field, *, reduce=no_reduce, differentiable=False):
        xi_field, params = [*field.xi_g, *field.xi_d], [*field.params_g, *field.params_d]
        xi = reduced(reduce, detach(xi_field))[0]
        if differentiable:
            ht_xi, h_xi = ht_field(xi_field, params, xi, True), jvp(xi_field, params, xi_field, create_graph=True)
        else:
            ht_xi, h_xi = vjp_and_jvp(xi_field, params, xi)
        ht_xi, h_xi = reduced(reduce, ht_xi, h_xi)
        at_xi = [(a - b) / 2 for a, b in zip(ht_xi, h_xi)]
        lam = self.lam
        if self.align:
            # The sign is a choice, not part of the differentiable map: take it from detached values.
            each = stacked(game)
            sign = torch.sign(dot(xi, ht_xi, each).detach() * dot(at_xi, ht_xi, each).detach()
                              / self.dimension(params, each) + self.eps)
            lam = abs(lam) * agreed(reduce, sign)  # every process takes the first one's sign
        u = axpy(lam, at_xi, xi_field if differentiable else xi)
        n = len(field.xi_g)
        lam_t = lam if isinstance(lam, Tensor) else _reference(field).new_tensor(float(lam))
        return Update(u[:n], u[n:], {"sga/lambda": lam_t})

    def compiled_rule(self, params_g, params_d, learning_rates):
        lam, align, eps, dim = self.lam, self.align, self.eps, self.dimension([*params_g, *params_d])

        def rule(xi_g, xi_d, products):
            (ht_g, ht_d), (h_g, h_d) = products.ht(xi_g, xi_d), products.hv(xi_g, xi_d)
            at_g, at_d = ({k: (a[k] - b[k]) / 2 for k in a} for a, b in ((ht_g, h_g), (ht_d, h_d)))
            weight = torch.as_tensor(lam, dtype=torch.get_default_dtype())  # a number, or a member's value in a sweep
            if align:
                def dot_(a, b):
                    return sum((a[k] * b[k]).sum() for k in a)
                alignment = (dot_(xi_g, ht_g) + dot_(xi_d, ht_d)) * (dot_(at_g, ht_g) + dot_(at_d, ht_d))
                weight = abs(lam) * torch.sign(alignment / dim + eps)
            return compiled.axpy(weight, at_g, xi_g), compiled.axpy(weight, at_d, xi_d), {"sga/lambda": weight}
        return compiled.Rule(rule)


class CompetitiveGradient(Method):
    """Competitive gradient descent (Schäfer & Anandkumar 2019): each player's step is the Nash
    equilibrium of the local bilinear game,

        u = (I + eta K)^-1 xi,   K = [[0, H12], [H21, 0]],

    solved for the generator and completed for the discriminator:

        u_phi   = (I - eta^2 H12 H21)^-1 (xi_phi - eta H12 xi_theta)
        u_theta = xi_theta - eta H21 u_phi

    The inverse is a Krylov solve on Jacobian products (``game.krylov``), warm-started from the
    previous iteration's u_phi (the method's state: checkpointed). Where H21 = -H12^T (the zero-sum
    and Wasserstein losses, with or without a gradient penalty on D) the system is
    I + eta^2 H12 H12^T, symmetric positive definite: conjugate gradient, two vector-Jacobian
    products of the field per iteration. For the other losses it is not symmetric: GMRES, on the
    products H12 w = grad_phi <grad_theta L_G, w> and H21 v = grad_theta <grad_phi L_D, v> (mixed
    partials commute), one backward pass each. On bilinear games the step is the proximal point
    step, x_{t+1} = x_t - eta xi(x_{t+1}).

    Args:
        eta: the step the players anticipate each other with (the learning rate in the paper, whose
            optimizer is SGD at that rate).
        solver: ``auto`` (conjugate gradient where the loss makes the system symmetric, GMRES
            otherwise), ``cg`` or ``gmres``.
        tol: stop when ||b - A u|| <= tol * ||b||.
        max_iter: at most this many matrix-vector products per solve.
        warm_start: start each solve from the previous iteration's solution.
    """

    name = "cgd"
    second_order = True
    #: losses whose mixed blocks satisfy H21 = -H12^T (the Wasserstein loss's real term does not depend on phi)
    SYMMETRIC_LOSSES = ("zero_sum", "wasserstein")

    def __init__(self, eta: float = 1e-3, solver: Literal["auto", "cg", "gmres"] = "auto", tol: float = 1e-6,
                 max_iter: int = 50, warm_start: bool = True):
        if eta < 0 or tol <= 0 or max_iter < 1 or solver not in ("auto", "cg", "gmres"):
            raise ValueError(f"invalid CompetitiveGradient options: eta={eta} (>= 0), tol={tol} (> 0), "
                             f"max_iter={max_iter} (>= 1), solver={solver!r} ('auto', 'cg' or 'gmres')")
        self.eta, self.solver, self.tol, self.max_iter, self.warm_start = eta, solver, tol, max_iter, warm_start
        self._previous: list[Tensor] | None = None

    def symmetric(self, loss: str) -> bool:
        """Whether the system of a game with ``loss`` is solved as a symmetric positive definite one
        (conjugate gradient). Raises for ``cg`` on a loss whose system is not symmetric: its
        products would use H12 w = -H21^T w, which holds only in zero-sum games, and solve
        another system without a word."""
        if self.solver == "cg" and loss not in self.SYMMETRIC_LOSSES:
            raise ValueError(f"CompetitiveGradient(solver='cg') needs a loss whose system is symmetric "
                             f"({' or '.join(self.SYMMETRIC_LOSSES)}); with loss {loss!r} H21 is not -H12^T: "
                             f"use solver 'auto' or 'gmres' (or a zero-sum loss)")
        return loss in self.SYMMETRIC_LOSSES if self.solver == "auto" else self.solver == "cg"

    def validate(self, loss: str) -> None:
        self.symmetric(loss)

    @staticmethod
    def reachable_tolerance(tol: float, dtype: torch.dtype) -> float:
        """The tolerance of the solves inside the direction's Jacobian (the implicit function theorem
        needs an accurate solution): ``tol`` and at most 1e-12, but no tighter than the products'
        precision reaches (100 eps): in float32, the spectra's default, 1e-12 is never reached and
        every solve ran to its cap of products, 200 per Jacobian product of the spectrum."""
        return max(min(tol, 1e-12), 100 * torch.finfo(dtype).eps)

    def products(self, game: BatchGame, field: Field, reduce: Reduce, create_graph: bool):
        """(w -> H12 w, v -> H21 v), each reduced across processes."""
        if self.symmetric(game.loss):  # H12 w = -H21^T w and H21 v = -H12^T v: vector-Jacobian products of xi
            def h12(w):
                return [-t for t in reduced(reduce, vjp(field.xi_d, field.params_g, w, create_graph=create_graph))[0]]

            def h21(v):
                return [-t for t in reduced(reduce, vjp(field.xi_g, field.params_d, v, create_graph=create_graph))[0]]
            return h12, h21
        cross_g = grad(field.loss_g, field.params_d, create_graph=True)  # grad_theta L_G
        cross_d = grad(field.loss_d, field.params_g, create_graph=True)  # grad_phi L_D

        def h12(w):
            return reduced(reduce, vjp(cross_g, field.params_g, w, create_graph=create_graph))[0]

        def h21(v):
            return reduced(reduce, vjp(cross_d, field.params_d, v, create_graph=create_graph))[0]
        return h12, h21

    def direction(self, game, field, *, reduce=no_reduce, differentiable=False):
        eta, symmetric = self.eta, self.symmetric(game.loss)
        solve = conjugate_gradient if symmetric else gmres
        if stacked(game):
            if not symmetric or differentiable:
                raise ValueError("stacked games (a sweep) solve CGD's system by conjugate gradient per member, which "
                                 "needs a loss for which it is symmetric (zero_sum or wasserstein); the spectrum of a "
                                 "member is taken on the member's own model")
            solve = conjugate_gradient_members
        h12, h21 = self.products(game, field, reduce, create_graph=False)
        ref = _reference(field)

        def matvec(v):  # A v = v - eta^2 H12 H21 v
            return axpy(-eta * eta, h12(h21(v)), v)

        if not differentiable:
            xi_g, xi_d = reduced(reduce, detach(field.xi_g), detach(field.xi_d))
            b = axpy(-eta, h12(xi_d), xi_g)
            result = solve(matvec, b, self._previous if self.warm_start else None, tol=self.tol,
                           max_iter=self.max_iter, agree=lambda flag: agreed_flag(reduce, flag, ref))
            u_g = detach(result.x)
            u_d = detach(axpy(-eta, h21(u_g), xi_d))
        else:  # the solution as a function of the parameters: the implicit function theorem
            h12_graph, h21_graph = self.products(game, field, reduce, create_graph=True)
            b = axpy(-eta, h12_graph(field.xi_d), field.xi_g)

            def transposed(v):  # A^T v = v - eta^2 H21^T H12^T v, vector-Jacobian products of xi
                return axpy(-eta * eta, vjp(field.xi_d, field.params_g, vjp(field.xi_g, field.params_d, v)), v)

            def tight(op, rhs):
                return solve(op, rhs, tol=self.reachable_tolerance(self.tol, ref.dtype), max_iter=max(self.max_iter, 200))

            result = tight(matvec, detach(b))
            u_g = implicit_solution(result.x, b, [*field.params_g, *field.params_d],
                                    lambda v: axpy(-eta * eta, h12_graph(h21_graph(v)), v),
                                    transposed if not symmetric else matvec, tight)
            u_d = axpy(-eta, h21_graph(u_g), field.xi_d)
        stats = {"cgd/iterations": torch.as_tensor(result.iterations, device=ref.device).to(ref.dtype),
                 "cgd/residual": torch.as_tensor(result.residual, device=ref.device)}
        return Update(u_g, u_d, stats, state=detach(u_g))

    def compiled_rule(self, params_g, params_d, learning_rates):
        raise ValueError("CompetitiveGradient has no compiled step (its Krylov solve stops on its residual: "
                         "data-dependent control flow that torch.compile does not trace)")

    def commit(self, update, players="gd"):
        if "g" in players and update.state is not None:
            self._previous = [t.clone() for t in update.state]

    def reset(self):
        self._previous = None

    def state_dict(self):
        return {"previous": self._previous}

    def load_state_dict(self, state):
        self._previous = state.get("previous")


#: every method by the name ``train.py --model NAME`` knows it by
METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (
    GradientDescent, SymplecticGradientAdjustment, ConsensusOptimization, JacobianRegularization, Extragradient,
    OptimisticGradient, CompetitiveGradient)}
