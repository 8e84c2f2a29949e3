"""A GAN as a two-player game in plain PyTorch: two networks, a loss and a method give the losses,
the field, the method's direction (returned, or written into ``.grad``) and, through ``spectra``,
the spectra, in a training loop of one's own::

    game = TwoPlayerGame(G, D, latent_dim=64, loss="zero_sum", method=JacobianRegularization(gamma=100))
    optimizer = torch.optim.Adam([{"params": game.params_g}, {"params": game.params_d}], lr=1e-4)
    for real in data:
        update = game.direction(real, game.sample_latent(len(real)), learning_rates=(1e-4, 1e-4))
        game.write_grad(update)
        optimizer.step()
        game.method.commit(update)

``gans.TwoPlayerGAN`` (Lightning) composes one: the schedules, the optimizer, the divergence guard,
checkpoints and logging are the model's; the algebra is here (``examples/plain_loop.py``,
docs/plain_pytorch.md).
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Callable, Iterator, Literal, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from game import algebra, penalties
from game.algebra import Field, Reduce, Update, no_reduce
from game.losses import get_loss, is_zero_sum
from game.methods import GradientDescent, Method, Players

#: a draw of a training step: ``draw(count, generator)`` -> count rows
DrawFn = Callable[[int, torch.Generator], Tensor]


@contextlib.contextmanager
def preserved_buffers(*modules: nn.Module) -> Iterator[None]:
    """Restore every buffer (BatchNorm running statistics, spectral-norm vectors) on exit, so that a
    forward pass in training mode leaves no trace."""
    saved = [(b, b.detach().clone()) for m in modules for b in m.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


class Training(NamedTuple):
    """What the losses of a training step take that an evaluation does not: the iteration (a lazy
    penalty's schedule) and where the step's random draws come from (``draw(n, fn)``: n rows of
    ``fn(count, generator)``). An evaluation passes None: every draw is then fixed, and the same
    losses give the same field every time."""

    iteration: int
    draw: Callable[[int, DrawFn], Tensor]

    @classmethod
    def from_generator(cls, iteration: int, generator: torch.Generator) -> Training:
        """A training step whose draws come from ``generator`` (one process)."""
        return cls(iteration, lambda n, fn: fn(n, generator))


class GameOnBatch:
    """The game on one batch (real data, latent codes), as a method sees it
    (``game.methods.BatchGame``): the field at the players' parameters or at any others.

    ``module`` computes the losses: ``module(real, z, players=..., training=...)`` -> (L_G, L_D),
    with ``generator``, ``discriminator``, ``params_g``, ``params_d`` and ``parameter_names()``
    (a ``TwoPlayerGame``, or a model composing one). ``learning_rates`` is a pair, or a function
    giving it when a method asks."""

    def __init__(self, module: nn.Module, real, z: Tensor, *, loss: str,
                 learning_rates: tuple | Callable[[], tuple] | None = None, members: bool = False, training=None):
        self.module, self.real, self.z, self.training = module, real, z, training
        self.loss, self.members, self._learning_rates = loss, members, learning_rates

    @property
    def learning_rates(self) -> tuple:
        rates = self._learning_rates
        if rates is None:
            raise ValueError("this method steps by the learning rates (extragradient, ...): give the game "
                             "learning_rates=(lr_g, lr_d) (TwoPlayerGame(..., learning_rates=...) or on_batch/direction)")
        return rates() if callable(rates) else rates

    def field(self, at: tuple[Sequence[Tensor], Sequence[Tensor]] | None = None, *, create_graph: bool = False,
              players: Players = "gd") -> Field:
        module = self.module
        params_g, params_d = (module.params_g, module.params_d) if at is None else (list(at[0]), list(at[1]))
        args, options = (self.real, self.z), {"players": players, "training": self.training}
        if at is None:
            loss_g, loss_d = module(*args, **options)
        else:  # the same losses at other parameters, on copies of the buffers (BatchNorm statistics stay)
            tensors = dict(zip(module.parameter_names(), [*params_g, *params_d]))
            buffers = {f"{prefix}.{name}": b.clone() for prefix, net in
                       (("generator", module.generator), ("discriminator", module.discriminator))
                       for name, b in net.named_buffers()}
            loss_g, loss_d = functional_call(module, (tensors, buffers), args, options)
        if players == "gd":
            xi_g, xi_d = algebra.vector_field(loss_g, loss_d, params_g, params_d, create_graph=create_graph,
                                              zero_sum=is_zero_sum(self.loss))
        else:  # one player's half of an alternating iteration
            xi_g = algebra.grad(loss_g, params_g, create_graph=create_graph) if players == "g" else None
            xi_d = algebra.grad(loss_d, params_d, create_graph=create_graph) if players == "d" else None
        return Field(loss_g, loss_d, xi_g, xi_d, params_g, params_d)


class TwoPlayerGame(nn.Module):
    """A GAN as a two-player game: G and D, their losses on a batch (``loss`` of D's logits, a
    gradient penalty on D), and a method's direction.

    Args:
        generator: any ``nn.Module`` called as ``G(z)`` with ``z`` of shape ``(B, latent_dim)``.
        discriminator: any ``nn.Module`` returning one logit per sample, ``(B,)`` or ``(B, 1)``.
        latent_dim: size of the latent code.
        loss: ``ns`` (non-saturating), ``zero_sum`` (L_G = -L_D), ``hinge`` or ``wasserstein``.
        method: the update rule, a ``game.methods.Method`` (None: plain gradient descent); the game
            keeps a copy (the method's state is this game's).
        penalty: a gradient penalty added to L_D (``game.penalties``): ``none``, ``r1``
            (gamma / 2 E_real ||grad_x D||^2), ``r2`` (the same on generated samples) or ``wgan_gp``
            (lam E (||grad_x D(x_hat)|| - 1)^2 on random interpolates).
        penalty_weight: gamma of R1/R2, lam of WGAN-GP.
        penalty_every: lazy regularisation (StyleGAN2): in a training step (``Training``) the
            penalty enters L_D every this many iterations, scaled by it; an evaluation takes it
            every time, unscaled (the field of the average iteration).
        latent_std: z ~ N(0, latent_std^2 I).
        discriminator_pass: ``separate`` evaluates D on the real and on the generated batch;
            ``joint`` once on the two concatenated (the same numbers up to rounding), for a D whose
            logits do not depend on the rest of the batch (checked on the first batch, refused otherwise).
        learning_rates: (generator's, discriminator's) learning rate, for the methods that step by
            them (extragradient, optimistic GD: their look-ahead); ``on_batch`` and ``direction``
            take them too. A method that needs them refuses to work without.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, latent_dim: int,
                 loss: Literal["ns", "zero_sum", "hinge", "wasserstein"] = "ns", method: Method | None = None,
                 penalty: Literal["none", "r1", "r2", "wgan_gp"] = "none", penalty_weight: float = 10.0,
                 penalty_every: int = 1, latent_std: float = 1.0,
                 discriminator_pass: Literal["separate", "joint"] = "separate",
                 learning_rates: tuple[float, float] | None = None):
        super().__init__()
        self.learning_rates = learning_rates
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim, self.latent_std = latent_dim, latent_std
        self.loss_name, self.loss_fn = loss, get_loss(loss)
        # a copy: each game owns its method's state (the previous field, a solver's warm start)
        self.method = copy.deepcopy(method) if method is not None else GradientDescent()
        if not isinstance(self.method, Method):
            raise TypeError(f"method must be a game.methods.Method (such as game.methods.JacobianRegularization(100)), "
                            f"got {type(self.method).__name__}")
        self.method.validate(loss)
        if penalty not in penalties.PENALTIES or penalty_every < 1 or penalty_weight < 0:
            raise ValueError(f"penalty must be one of {', '.join(penalties.PENALTIES)}, penalty_every >= 1 and "
                             f"penalty_weight >= 0; got penalty={penalty!r}, penalty_every={penalty_every}, "
                             f"penalty_weight={penalty_weight}")
        self.penalty, self.penalty_weight, self.penalty_every = penalty, penalty_weight, penalty_every
        if penalty == "none" and penalty_every != 1:
            warnings.warn(f"penalty_every={penalty_every} has no effect without a gradient penalty (penalty='none'); "
                          f"add --model.penalty r1, r2 or wgan_gp, or drop it")
        if discriminator_pass not in ("separate", "joint"):
            raise ValueError(f"discriminator_pass must be 'separate' or 'joint', got {discriminator_pass!r}")
        # joint only once D has passed the check (``resolve_discriminator_pass``, or on the first batch)
        self.discriminator_pass, self.joint = discriminator_pass, None if discriminator_pass == "joint" else False
        self.players: tuple[list[nn.Parameter], list[nn.Parameter]] | None = None  # ``hold_players``

    @property
    def second_order(self) -> bool:
        """Whether the method differentiates the field again (then xi keeps its graph)."""
        return self.method.second_order

    # -- parameters ----------------------------------------------------------------------------

    @property
    def params_g(self) -> list[nn.Parameter]:
        """Trainable generator parameters phi, in ``generator.parameters()`` order."""
        return self.players[0] if self.players else [p for p in self.generator.parameters() if p.requires_grad]

    @property
    def params_d(self) -> list[nn.Parameter]:
        """Trainable discriminator parameters theta, in ``discriminator.parameters()`` order."""
        return self.players[1] if self.players else [p for p in self.discriminator.parameters() if p.requires_grad]

    def hold_players(self, hold: bool) -> None:
        """Keep the lists of trainable parameters while they cannot change (an optimizer holds them):
        walking the module tree for them dozens of times per iteration is a measurable share of a
        small network's step."""
        self.players = None
        if hold:
            self.players = (self.params_g, self.params_d)

    def parameter_names(self) -> list[str]:
        """The names in this module of ``params_g`` then ``params_d`` (for ``functional_call``)."""
        return [f"{prefix}.{name}" for prefix, net in (("generator", self.generator), ("discriminator", self.discriminator))
                for name, p in net.named_parameters() if p.requires_grad]

    @property
    def device(self) -> torch.device:
        ref = next(self.generator.parameters(), None)
        return ref.device if ref is not None else torch.device("cpu")

    def write_grad(self, update: Update | tuple[list[Tensor] | None, list[Tensor] | None]) -> None:
        """Write a direction into the players' ``.grad`` (None for a player leaves its ``.grad`` None:
        a torch optimizer then leaves it where it is)."""
        for params, grads in ((self.params_g, update[0]), (self.params_d, update[1])):
            for p, g in zip(params, grads if grads is not None else [None] * len(params)):
                p.grad = g

    # -- draws -----------------------------------------------------------------------------------

    def sample_latent(self, n: int, generator: torch.Generator | None = None,
                      device: torch.device | None = None) -> Tensor:
        """n latent codes z ~ N(0, latent_std^2 I), drawn on the CPU from ``generator`` (torch's
        global one by default) in the players' dtype, then moved to ``device`` (default: the
        players' device)."""
        ref = next(iter(self.params_g), None) if self.players else next(self.generator.parameters(), None)
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        z = self.latent_std * torch.randn(n, self.latent_dim, generator=generator, dtype=dtype, device="cpu")
        return z.to(device if device is not None else self.device)

    @staticmethod
    def draw(n: int, fn: DrawFn, training: Training | None) -> Tensor:
        """n rows of a draw inside the losses: the training step's (``Training.draw``), or from a
        fixed generator in an evaluation."""
        return training.draw(n, fn) if training is not None else fn(n, torch.Generator().manual_seed(0))

    # -- the losses --------------------------------------------------------------------------------

    def unpack(self, batch) -> Tensor:
        """A batch as the losses take it: the real samples (the first element of a tuple), in the
        players' dtype."""
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        params_d = self.params_d
        return real.to(dtype=params_d[0].dtype if params_d else real.dtype)

    def discriminator_logits(self, x: Tensor) -> Tensor:
        """D's logits as a vector (B,)."""
        return self.discriminator(x).reshape(-1)

    def forward(self, real: Tensor, z: Tensor, players: Players = "gd", training: Training | None = None
                ) -> tuple[Tensor | None, Tensor | None]:
        """(L_G, L_D) from D's logits on the real and the generated batch, the gradient penalty
        included in L_D. ``players`` names the losses needed (the other is None)."""
        penalty = self.penalty_now(training)
        if penalty == "r1":
            real = real.detach().requires_grad_(True)
        fake = self.generator(z)
        if self.joint is None:
            self.resolve_discriminator_pass(fake.detach())
        if self.joint:
            logits = self.discriminator_logits(torch.cat([real, fake]))
            logits_real, logits_fake = logits[:real.shape[0]], logits[real.shape[0]:]
        else:
            logits_real, logits_fake = self.discriminator_logits(real), self.discriminator_logits(fake)
        loss_g, loss_d = self.loss_fn(logits_real, logits_fake)
        if penalty != "none" and "d" in players:
            loss_d = loss_d + self.penalty_factor(training) * self.penalty_value(penalty, real, fake, logits_real,
                                                                                 training)
        return (loss_g if "g" in players else None), (loss_d if "d" in players else None)

    def penalty_now(self, training: Training | None) -> str:
        """The penalty the losses of this call include: a lazy one only every ``penalty_every``
        iterations of training."""
        if self.penalty == "none" or (training is not None and training.iteration % self.penalty_every):
            return "none"
        return self.penalty

    def penalty_factor(self, training: Training | None) -> float:
        """The penalty's weight in L_D, scaled by the lazy interval in training."""
        return penalties.weight(self.penalty, self.penalty_weight) * (self.penalty_every if training is not None else 1)

    def penalty_value(self, penalty: str, real: Tensor, fake: Tensor, logits_real: Tensor | None,
                      training: Training | None) -> Tensor:
        """The penalty's expectation (``game.penalties``). R1 differentiates ``logits_real``, D's
        logits on ``real``, with respect to ``real`` (when ``real`` requires grad; otherwise, as in a
        call under ``torch.no_grad``, D is evaluated on it again)."""
        with torch.enable_grad():  # an input gradient, whatever the caller's mode
            if penalty == "r1":
                if not (real.requires_grad and logits_real is not None and logits_real.grad_fn is not None):
                    real = real.detach().requires_grad_(True)
                    logits_real = self.discriminator_logits(real)
                return penalties.squared_gradient_norm(logits_real, real)
            if penalty == "r2":
                x = fake.detach().requires_grad_(True)
                return penalties.squared_gradient_norm(self.discriminator_logits(x), x)
            a = self.draw(real.shape[0], lambda n, g: torch.rand(n, generator=g), training)
            x = penalties.interpolates(real, fake, a)
            return penalties.unit_gradient_gap(self.discriminator_logits(x), x)

    def resolve_discriminator_pass(self, samples: Tensor) -> bool:
        """Whether D sees the real and generated batches as one batch: with ``joint``, after a check
        on ``samples`` (a batch of at least two) that raises if D cannot take it."""
        if self.discriminator_pass == "joint":
            problem = self.joint_pass_problem(samples)
            if problem is not None:
                raise ValueError(f"discriminator_pass='joint' cannot be used with discriminator "
                                 f"{type(self.discriminator).__name__}: {problem}. Pass --model.discriminator_pass "
                                 f"separate.")
        self.joint = self.discriminator_pass == "joint"
        return self.joint

    def joint_pass_problem(self, samples: Tensor) -> str | None:
        """Why D's logits on a concatenated batch could differ from its logits on the parts (None: they
        do not, on ``samples`` split in two)."""
        if any(True for _ in self.discriminator.buffers()):
            return ("it has buffers (BatchNorm statistics, spectral-norm vectors), which one pass on the "
                    "concatenated batch updates differently from two passes")
        if samples.shape[0] < 2:
            return "a batch of one sample cannot show whether its logits depend on the rest of the batch"
        half = samples.shape[0] // 2
        with torch.no_grad(), preserved_buffers(self.discriminator):
            joint = self.discriminator_logits(samples)
            parts = torch.cat([self.discriminator_logits(samples[:half]), self.discriminator_logits(samples[half:])])
        if not torch.allclose(joint, parts, rtol=1e-4, atol=1e-5 * max(1.0, float(parts.abs().max()))):
            return ("its logit for a sample depends on the other samples of the batch (BatchNorm, minibatch "
                    "statistics, dropout)")
        return None

    # -- the field and the direction -----------------------------------------------------------------

    def on_batch(self, real, z: Tensor, *, learning_rates: tuple | None = None,
                 training: Training | None = None) -> GameOnBatch:
        """The game on a batch: ``on_batch(real, z).field(create_graph=True)`` is xi with its graph.
        ``learning_rates`` (generator's, discriminator's; default: the game's) serve the methods
        that step ahead (extragradient, ...)."""
        return GameOnBatch(self, real, z, loss=self.loss_name, training=training,
                           learning_rates=learning_rates if learning_rates is not None else self.learning_rates)

    def direction(self, real, z: Tensor, *, learning_rates: tuple | None = None, reduce: Reduce = no_reduce,
                  training: Training | None = None) -> Update:
        """The method's update direction u at the players' parameters on a batch: ``u.g`` and ``u.d``
        (one tensor per trainable parameter, in ``parameters()`` order), ``u.stats`` and the state
        ``method.commit(u)`` keeps once the step is taken. ``reduce`` averages across processes
        (``runtime.distributed.mean_across_processes``)."""
        batch = self.on_batch(real, z, learning_rates=learning_rates, training=training)
        return self.method.direction(batch, batch.field(create_graph=self.second_order), reduce=reduce)
