"""The two-player GAN LightningModule: Lightning plumbing around a game (``game.twoplayer``).

    model = TwoPlayerGAN(G, D, latent_dim=64, loss="zero_sum", method=JacobianRegularization(gamma=100))

The game (``model.game``, a ``TwoPlayerGame``: plain PyTorch) owns the players' losses on a batch,
the gradient penalty, the field and the method's direction. The model composes it with what a
training run adds: the update schedule (simultaneous or alternating), the training stream, the
optimizer and its flat buffers, the divergence guard, the generator EMA, checkpoints and logging.
A model with other losses overrides ``player_losses`` (the game's ``forward`` by default).
"""
from __future__ import annotations

import contextlib
import copy
import os
import warnings
from typing import Callable, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn

from game import algebra, compiled
from game.losses import is_zero_sum
from game.methods import Method, Players
from game.twoplayer import GameOnBatch, Training, TwoPlayerGame, preserved_buffers
from gans import current_path
from runtime import flat
from runtime.distributed import mean_across_processes, rank_and_world
from runtime.divergence import DivergenceGuard, PendingVerdict, nonfinite
from runtime.ema import WeightAverage
from runtime.precision import full_float32
from runtime.streams import global_states, restore_global_states, seed_for_rank, seeded

DRY_BATCH = 4
#: the key of the training stream (latent codes and every other draw of a training step), after the run's seed
TRAINING_STREAM = 0x6C6174
#: constructor arguments that are Python objects rather than hyperparameters: the networks' weights
#: are in the state dict, and train.py records their ``class_path`` configs in the hyperparameters
#: itself (``gans.checkpoint.record_object_arguments``), which is what lets ``load_from_checkpoint`` rebuild a model without arguments
OBJECT_ARGUMENTS = ("generator", "discriminator", "optimizer", "method")


def method_class(method) -> str:
    """The class path of a method object (what a checkpoint records of it)."""
    return f"{type(method).__module__}.{type(method).__qualname__}"


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """A CPU tensor on ``device``; to a GPU through pinned memory without waiting (a copy from
    pageable memory synchronises the host with the GPU's queue: once per iteration for the latent
    codes)."""
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def on_device(metrics: dict[str, Tensor | float], device: torch.device) -> dict[str, Tensor]:
    """Logged scalars as float32 tensors on the model's device: ``sync_dist`` all-reduces them, and
    NCCL takes CUDA tensors only, even in a world of one process."""
    return {k: torch.as_tensor(v).detach().to(device=device, dtype=torch.float32) for k, v in metrics.items()}


def check_learning_rates(optimizer: torch.optim.Optimizer) -> None:
    """Refuse, in one line, a learning rate that the parameters' dtype cannot hold (1e200 in float32):
    the optimizer would fail inside its step with a conversion error rather than diverge."""
    for group in optimizer.param_groups:
        lr, params = group.get("lr"), [p for p in group["params"] if p.is_floating_point()]
        if not isinstance(lr, (int, float)) or not params:
            continue
        largest = torch.finfo(params[0].dtype).max
        if not abs(lr) <= largest:
            raise ValueError(f"learning rate {lr:g} of the {group.get('name', 'parameter')} group does not fit in "
                             f"{params[0].dtype} (largest {largest:.3g}): lower the learning rate, or train in float64 "
                             f"(--trainer.precision 64-true) to study such steps")


class TwoPlayerGAN(pl.LightningModule):
    """A GAN as a two-player game: both players step along a method's direction u.

    Args:
        generator: any ``nn.Module`` called as ``G(z)`` with ``z`` of shape ``(B, latent_dim)``.
        discriminator: any ``nn.Module`` returning one logit per sample, ``(B,)`` or ``(B, 1)``.
        latent_dim: size of the latent code.
        loss: ``ns`` (non-saturating), ``zero_sum`` (L_G = -L_D), ``hinge`` or ``wasserstein``.
        method: the update rule, a ``game.methods.Method`` (None: plain gradient descent); from the
            command line ``--model.method game.methods.Extragradient --model.method.extrapolation 0.1``.
        update: ``simultaneous`` (both players step along u at the same parameters) or
            ``alternating`` (each player's step is recomputed after the other has moved).
        order: with ``alternating``, who moves first: ``g_first`` (the JARE code, the Dirac-GAN
            analysis) or ``d_first`` (the ConOpt code, StyleGAN).
        n_d: discriminator steps per generator step with ``alternating``. The steps of one
            iteration share its real batch; each draws fresh latent codes.
        penalty: a gradient penalty added to L_D (``game.penalties``): ``none``, ``r1``
            (gamma / 2 E_real ||grad_x D||^2), ``r2`` (the same on generated samples) or ``wgan_gp``
            (lam E (||grad_x D(x_hat)|| - 1)^2 on random interpolates).
        penalty_weight: gamma of R1/R2, lam of WGAN-GP.
        penalty_every: lazy regularisation (StyleGAN2): the penalty enters L_D every this many
            iterations, scaled by it. ``losses``, ``update_direction`` and the spectra take it every
            time, unscaled: the field of the average iteration.
        latent_std: z ~ N(0, latent_std^2 I) (the JARE ring experiment uses 2).
        optimizer: called with the two parameter groups ``generator`` and ``discriminator``; from
            the command line ``--model.optimizer Adam --model.optimizer.lr 1e-4``. One optimizer
            with two groups means one optimizer step per iteration, so ``trainer.global_step``
            counts iterations.
        lr_d: the discriminator's learning rate when it differs from the optimizer's ``lr``.
        on_nonfinite: what a non-finite loss or update does: ``stop`` raises ``NonFiniteError``
            before the parameters are touched (the last checkpoint stays as it was); ``skip``
            leaves the parameters as they are for that iteration and counts it in
            ``nonfinite/skipped``; a run that skips more than half of the last
            ``runtime.divergence.SKIP_WINDOW`` iterations has diverged and stops with ``NonFiniteError`` too.
        ema_half_life: keep ``generator_ema``, an exponential moving average of the generator's
            weights whose half-life is this many training images (StyleGAN2-ADA's ``ema_kimg``
            times 1000; 10,000 there). ``sample`` and the metric callbacks use it. None: no EMA.
        ema_rampup: early in training, shorten the half-life to at most ``ema_rampup`` times the
            images seen so far (StyleGAN2-ADA uses 0.05), so the average forgets the random
            initialisation quickly. None: a constant half-life.
        flat_buffers: keep each player's parameters in one contiguous buffer that the optimizer
            steps (``runtime.flat``: a faster iteration, the same arithmetic) when the optimizer acts
            elementwise (Adam, RMSProp, SGD, ...); other optimizers always see the tensors.
        compile_step: compute the field and the update direction with the torch.compile'd
            torch.func form of the method (``game.compiled``): the same formulas, rounded
            differently, faster on small networks after a compilation (docs/speed.md). One process,
            float32/64, networks without buffers (no BatchNorm), simultaneous updates, no
            penalty, a method with a compiled rule; refused with the reasons otherwise. If
            compilation fails, training warns and continues on the eager path.
        discriminator_pass: ``separate`` evaluates D on the real and on the generated batch, as
            the papers' code does; ``joint`` once on the two concatenated (half the operations,
            larger products): the same numbers up to rounding, faster or slower depending on the
            method and the networks (docs/benchmarks.md). ``joint`` needs a D without buffers whose
            logits do not depend on the rest of the batch (no BatchNorm, spectral norm, minibatch
            statistics or dropout): checked on a dry batch, refused otherwise.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        latent_dim: int,
        loss: Literal["ns", "zero_sum", "hinge", "wasserstein"] = "ns",
        method: Method | None = None,
        update: Literal["simultaneous", "alternating"] = "simultaneous",
        order: Literal["g_first", "d_first"] = "g_first",
        n_d: int = 1,
        penalty: Literal["none", "r1", "r2", "wgan_gp"] = "none",
        penalty_weight: float = 10.0,
        penalty_every: int = 1,
        latent_std: float = 1.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_d: float | None = None,
        on_nonfinite: Literal["stop", "skip"] = "stop",
        ema_half_life: float | None = None,
        ema_rampup: float | None = None,
        flat_buffers: bool = True,
        compile_step: bool = False,
        discriminator_pass: Literal["separate", "joint"] = "separate",
    ):
        super().__init__()
        self.save_hyperparameters(ignore=list(self.unsaved_arguments))
        self.automatic_optimization = False
        self.generator, self.discriminator = generator, discriminator
        # the game holds the same networks; it is not a submodule (the state dict names them once)
        object.__setattr__(self, "game", self.game_class(
            generator, discriminator, latent_dim, loss=loss, method=method, penalty=penalty,
            penalty_weight=penalty_weight, penalty_every=penalty_every, latent_std=latent_std,
            discriminator_pass=discriminator_pass))
        self.lr_d = lr_d
        if update not in ("simultaneous", "alternating") or order not in ("g_first", "d_first"):
            raise ValueError(f"update must be 'simultaneous' or 'alternating' and order 'g_first' or 'd_first', "
                             f"got update={update!r}, order={order!r}")
        if n_d < 1:
            raise ValueError(f"n_d must be >= 1, got {n_d}")
        self.update, self.order, self.n_d = update, order, n_d
        self.optimizer_factory = optimizer
        self.on_nonfinite, self.divergence = on_nonfinite, DivergenceGuard(on_nonfinite)
        self.ema = WeightAverage(ema_half_life, ema_rampup) if ema_half_life is not None else None
        self.generator_ema = copy.deepcopy(generator).requires_grad_(False).eval() if self.ema else None
        self._images_per_iteration = 0
        self.flat_buffers, self._flat = flat_buffers, None
        self.compile_step, self._compiled = compile_step, None
        self._training_rng: torch.Generator | None = None
        self._learning_rates: tuple[float, float] | None = None
        self._global_rngs: dict | None = None  # the global generators a checkpoint holds, restored when fitting starts
        self._pending_verdict: PendingVerdict | None = None  # an iteration's finiteness, read later on a GPU

    #: the parameters are stacked games along a leading member axis (``gans.sweep.SweepGAN``)
    stacked: bool = False
    #: the game the model composes (a model whose D has another output overrides it)
    game_class: type[TwoPlayerGame] = TwoPlayerGame
    #: constructor arguments left out of the hyperparameters
    unsaved_arguments: tuple[str, ...] = OBJECT_ARGUMENTS

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets ``_current_fx_name`` around every hook it calls, 24 times an iteration, and
        # nn.Module.__setattr__ checks every assignment against parameters, buffers and submodules:
        # a measurable share of a small network's iteration (docs/benchmarks.md). A string is none of those.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)
        if name in ("generator", "discriminator") and "game" in self.__dict__:
            setattr(self.game, name, value)  # a network put in place later is the game's player too

    # -- the game's settings and players (stored once, in the game) -------------------------------

    method = property(lambda self: self.game.method)
    loss_name = property(lambda self: self.game.loss_name)
    loss_fn = property(lambda self: self.game.loss_fn)
    latent_dim = property(lambda self: self.game.latent_dim)
    latent_std = property(lambda self: self.game.latent_std)
    penalty = property(lambda self: self.game.penalty)
    penalty_weight = property(lambda self: self.game.penalty_weight)
    penalty_every = property(lambda self: self.game.penalty_every)
    discriminator_pass = property(lambda self: self.game.discriminator_pass)
    second_order = property(lambda self: self.game.second_order)
    params_g = property(lambda self: self.game.params_g, doc="Trainable generator parameters phi.")
    params_d = property(lambda self: self.game.params_d, doc="Trainable discriminator parameters theta.")

    def parameter_names(self) -> list[str]:
        """The names in this module of ``params_g`` then ``params_d`` (for ``functional_call``)."""
        return self.game.parameter_names()

    def learning_rates(self) -> tuple[float, float]:
        """(generator's, discriminator's) learning rate: the optimizer's while fitting, else those the
        optimizer would be built with."""
        if self._trainer is not None and self.trainer.optimizers:
            groups = {g.get("name"): g["lr"] for g in self.trainer.optimizers[0].param_groups}
            return groups["generator"], groups["discriminator"]
        if self._learning_rates is None:
            probe = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
            groups = self._optimizer([probe[0]], [probe[1]]).param_groups
            self._learning_rates = (groups[0]["lr"], groups[1]["lr"])
        return self._learning_rates

    def on_fit_start(self) -> None:
        self.game.hold_players(True)  # the players are fixed while fitting (the optimizer holds them)
        self.method.to(self.device)  # a resumed method's state was read on the CPU
        seed = self.run_seed()
        self.restore_global_generators(seed)
        if self._training_rng is None:  # not restored from a checkpoint, nor left by an earlier fit
            self._training_rng = seeded(seed, TRAINING_STREAM)
        self._compiled = self.build_compiled_step() if self.compile_step else None

    def restore_global_generators(self, seed: int) -> None:
        """Each process's global generators (the randomness inside the networks: dropout, noise
        inputs) as the checkpoint left them, or, in a new run, of a stream of its own per process
        (``runtime.streams.seed_for_rank``)."""
        rank, world = rank_and_world()
        state, self._global_rngs = self._global_rngs, None
        if state is not None and restore_global_states(state, rank, world):
            return
        if state is not None and rank == 0:
            warnings.warn(f"the checkpoint holds the random state of {len(state.get('ranks') or [0])} process(es) and "
                          f"this run has {world}: the random draws inside the networks (dropout, noise inputs) do not "
                          f"continue as the uninterrupted run's (processes the checkpoint has no state for start "
                          f"streams of their own)")
        if world > 1 and (state is None or rank >= len(state.get("ranks") or [0])):
            seed_for_rank(seed, rank)

    def on_fit_end(self) -> None:
        self.game.hold_players(False)
        self._compiled = None

    # -- randomness ----------------------------------------------------------------------------

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n latent codes z ~ N(0, latent_std^2 I), drawn on the CPU from ``generator`` (torch's
        global one by default), on the model's device."""
        return to_device(self.game.sample_latent(n, generator, device=torch.device("cpu")), self.device)

    def run_seed(self) -> int:
        """The seed of this run: ``seed_everything``'s (Lightning records it in ``PL_GLOBAL_SEED``,
        which launched processes inherit), else the seed torch's global generator was last given;
        rank 0's on every process."""
        seed = int(os.environ.get("PL_GLOBAL_SEED", torch.initial_seed()))
        return int(self.trainer.strategy.broadcast(seed)) if self._trainer is not None else seed

    @property
    def training_rng(self) -> torch.Generator:
        """The generator of every draw of a training step (latent codes, ...): seeded from the run's
        seed when fitting starts and saved in checkpoints, so what training draws depends on nothing
        else that consumed random numbers, on one process or several."""
        if self._training_rng is None:
            self._training_rng = seeded(self.run_seed(), TRAINING_STREAM)
        return self._training_rng

    def draw_shard(self, n: int, draw: Callable[[int, torch.Generator], Tensor],
                   stream: torch.Generator | None = None) -> Tensor:
        """This process's n rows of a draw of the iteration: every process draws the global n * world
        rows from the training stream (or ``stream``) with ``draw(count, generator)`` and keeps its
        slice, so W processes with batch n draw exactly what one process with batch W * n would."""
        rank, world = rank_and_world()
        return draw(n * world, stream or self.training_rng)[rank * n:(rank + 1) * n]

    def training_draws(self, training: bool) -> Training | None:
        """What a training step's losses take (``game.twoplayer.Training``): the iteration and this
        process's shard of the training stream (``draw_shard``); None outside a training step
        (``losses`` and ``update_direction`` have no side effects and give the same field every time)."""
        return Training(self.global_step, self.draw_shard) if training else None

    def draw(self, n: int, draw: Callable[[int, torch.Generator], Tensor], training: bool) -> Tensor:
        """n rows of a draw inside the losses (``TwoPlayerGame.draw`` of ``training_draws``)."""
        return self.game.draw(n, draw, self.training_draws(training))

    def latent_shard(self, n: int) -> Tensor:
        """This process's n latent codes of the iteration (``draw_shard``)."""
        return self.draw_shard(n, self.sample_latent)

    @staticmethod
    def reduce() -> algebra.Reduce:
        """How to average a list of tensors over processes: identity on one process."""
        return mean_across_processes if rank_and_world()[1] > 1 else algebra.no_reduce

    # -- the game ------------------------------------------------------------------------------

    def unpack(self, batch):
        """A training batch as the losses take it: the real samples (in the players' dtype)."""
        return self.game.unpack(batch)

    def training_latent(self, batch) -> Tensor:
        """The latent codes of a training step on ``batch`` (this process's shard)."""
        return self.latent_shard(batch.shape[0])

    def discriminator_logits(self, x: Tensor) -> Tensor:
        """D's logits as a vector (B,) (the game's)."""
        return self.game.discriminator_logits(x)

    def forward(self, batch, z: Tensor, players: Players = "gd", training: bool = False
                ) -> tuple[Tensor | None, Tensor | None]:
        """(L_G, L_D) on a batch, the gradient penalty included in L_D. ``players`` names the losses
        needed (a model may skip the others: None); ``training`` takes a training step's draws."""
        return self.player_losses(batch, z, players, training)

    def player_losses(self, real: Tensor, z: Tensor, players: Players = "gd", training: bool = False
                      ) -> tuple[Tensor | None, Tensor | None]:
        """The game's losses (``TwoPlayerGame.forward``)."""
        return self.game(real, z, players, self.training_draws(training))

    def penalty_now(self, training: bool) -> str:
        """The penalty the losses of this call include (``TwoPlayerGame.penalty_now``)."""
        return self.game.penalty_now(self.training_draws(training))

    def penalty_factor(self, training: bool) -> float:
        """The penalty's weight in L_D (``TwoPlayerGame.penalty_factor``)."""
        return self.game.penalty_factor(self.training_draws(training))

    def penalty_value(self, penalty: str, real: Tensor, fake: Tensor, logits_real: Tensor | None,
                      training: bool) -> Tensor:
        """The penalty's expectation (``TwoPlayerGame.penalty_value``)."""
        return self.game.penalty_value(penalty, real, fake, logits_real, self.training_draws(training))

    def on_batch(self, batch, z: Tensor, training: bool = False) -> GameOnBatch:
        """The game on a batch, with this model's losses (``player_losses``) and learning rates:
        ``on_batch(real, z).field(create_graph=True)`` is xi with its graph."""
        return GameOnBatch(self, batch, z, loss=self.loss_name, learning_rates=self.learning_rates,
                           members=self.stacked, training=training)

    def losses(self, batch, z: Tensor) -> tuple[Tensor, Tensor]:
        """(L_G, L_D) at the current parameters; buffers (e.g. BatchNorm statistics) are left as they were."""
        with preserved_buffers(self.generator, self.discriminator):
            return self(self.unpack(batch), z)

    def update_direction(self, batch, z: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The direction the method hands the optimizer as ``.grad`` at the current parameters: one
        tensor per trainable parameter of G, then of D, in ``parameters()`` order. No side effects
        (buffers, the method's state and every random stream are left as they were)."""
        with preserved_buffers(self.generator, self.discriminator):
            batch_game = self.on_batch(self.unpack(batch), z)
            update = self.method.direction(batch_game, batch_game.field(create_graph=self.second_order))
        return update.g, update.d

    def resolve_discriminator_pass(self, samples: Tensor) -> bool:
        """Whether D sees the real and generated batches as one (``TwoPlayerGame.resolve_discriminator_pass``)."""
        return self.game.resolve_discriminator_pass(samples)

    # -- sampling ------------------------------------------------------------------------------

    @property
    def sampling_generator(self) -> nn.Module:
        """The generator that samples and metrics use: the EMA generator when there is one."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    @torch.no_grad()
    def generate(self, z: Tensor) -> Tensor:
        """G(z) with the sampling generator in eval mode (BatchNorm uses its running statistics)."""
        net = self.sampling_generator
        was_training = net.training
        net.eval()
        try:
            return net(z.to(self.device))
        finally:
            net.train(was_training)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n generated samples from the sampling generator in eval mode."""
        return self.generate(self.sample_latent(n, generator))

    def update_ema(self, num_images: int) -> None:
        """Move ``generator_ema`` towards the generator after an iteration that saw ``num_images``
        training images (``runtime.ema.WeightAverage``)."""
        if self.generator_ema is not None:
            self.ema.update(self.generator_ema, self.generator, num_images, self.global_step)

    ema_half_life = property(lambda self: self.ema.half_life if self.ema else None)
    ema_rampup = property(lambda self: self.ema.rampup if self.ema else None)

    # -- set-up and checks ---------------------------------------------------------------------

    def configure_optimizers(self):
        params_g, params_d = self.params_g, self.params_d
        optimizer = self._optimizer(params_g, params_d)
        check_learning_rates(optimizer)
        self._flat = None
        if self.flat_buffers and isinstance(optimizer, flat.ELEMENTWISE) and all(map(flat.flattenable, (params_g, params_d))):
            self._flat = (flat.flatten_(params_g), flat.flatten_(params_d))
            optimizer = self._optimizer([self._flat[0]], [self._flat[1]])
        return optimizer

    def _optimizer(self, params_g: list[Tensor], params_d: list[Tensor]) -> torch.optim.Optimizer:
        group_d = {"params": params_d, "name": "discriminator"}
        if self.lr_d is not None:
            group_d["lr"] = self.lr_d
        return self.optimizer_factory([{"params": params_g, "name": "generator"}, group_d])

    def setup(self, stage: str) -> None:
        if self._trainer is not None and getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            raise ValueError(f"precision={self.trainer.precision!r} is not supported: float16 needs a gradient scaler, "
                             f"and these models write their update directions into .grad by hand, past the scaler. "
                             f"Use precision='bf16-mixed' (no scaler needed) or '32-true'.")
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        self.check_networks(getattr(datamodule, "sample_shape", None))

    def check_networks(self, sample_shape: tuple[int, ...] | None = None) -> None:
        """Run G and D on a tiny dry batch and fail with a clear message if they break the contract."""
        g_name, d_name = type(self.generator).__name__, type(self.discriminator).__name__
        z = self.sample_latent(DRY_BATCH)
        with torch.no_grad(), preserved_buffers(self.generator, self.discriminator):
            try:
                fake = self.generator(z)
            except Exception as err:
                raise ValueError(f"generator {g_name} failed on z of shape {tuple(z.shape)} (latent_dim="
                                 f"{self.latent_dim}): {err}") from err
            if not isinstance(fake, Tensor) or fake.ndim < 2 or fake.shape[0] != DRY_BATCH:
                got = tuple(fake.shape) if isinstance(fake, Tensor) else type(fake).__name__
                raise ValueError(f"generator {g_name} must return a tensor of shape ({DRY_BATCH}, ...) for z of "
                                 f"shape {tuple(z.shape)}, got {got}")
            if sample_shape is not None and tuple(fake.shape[1:]) != tuple(sample_shape):
                raise ValueError(f"generator {g_name} returns samples of shape {tuple(fake.shape[1:])} but the "
                                 f"data has samples of shape {tuple(sample_shape)}")
            try:
                out = self.discriminator(fake)
            except Exception as err:
                raise ValueError(f"discriminator {d_name} failed on a batch of shape {tuple(fake.shape)}: {err}") from err
            self.check_discriminator_output(out)
        self.resolve_discriminator_pass(fake)

    def check_discriminator_output(self, logits) -> None:
        """Raise a clear error unless D's output on the dry batch is one logit per sample."""
        if not isinstance(logits, Tensor) or tuple(logits.shape) not in ((DRY_BATCH,), (DRY_BATCH, 1)):
            got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"discriminator {type(self.discriminator).__name__} must return one logit per sample, "
                             f"shape ({DRY_BATCH},) or ({DRY_BATCH}, 1) for a batch of {DRY_BATCH}, but returned {got}")

    def compiled_step_problems(self) -> list[str]:
        """Why ``compile_step`` cannot apply to this model as configured (empty: it can)."""
        problems = []
        try:
            self.method.compiled_rule(self.params_g, self.params_d, self.learning_rates())
        except ValueError as err:
            problems.append(str(err))
        if self.update != "simultaneous":
            problems.append("it computes simultaneous updates only (update='alternating' was asked)")
        if self.penalty != "none":
            problems.append(f"the gradient penalty ({self.penalty}) is not in its step")
        if rank_and_world()[1] > 1:
            problems.append("it runs on one process (the products of several need all-reduces between them)")
        if any(True for net in (self.generator, self.discriminator) for _ in net.buffers()):
            problems.append("the networks have buffers (BatchNorm statistics, spectral-norm vectors), which the "
                            "functional step does not update")
        if str(self.trainer.precision) not in ("32-true", "64-true", "32", "64"):
            problems.append(f"precision {self.trainer.precision!r} is not float32/float64")
        return problems

    def check_compiled_step(self) -> None:
        """Raise, naming every reason, when ``compile_step`` cannot apply."""
        problems = self.compiled_step_problems()
        if problems:
            raise ValueError("compile_step=True cannot be used: " + "; ".join(problems) +
                             ". Pass --model.compile_step false to train on the eager path.")

    def build_compiled_step(self) -> compiled.CompiledStep:
        self.check_compiled_step()
        rule = self.method.compiled_rule(self.params_g, self.params_d, self.learning_rates())
        flat_update = self._flat is not None
        fn = compiled.step_function(self.generator, self.discriminator, self.loss_fn, is_zero_sum(self.loss_name), rule,
                                    flat_update, bool(self.game.joint))
        return compiled.CompiledStep(fn, compiled.CompiledStep.trainable(self.generator, self.discriminator),
                                     flat_update=flat_update, cpp_wrapper=self.device.type == "cpu",
                                     cuda_graphs=self.device.type == "cuda")

    # -- training ------------------------------------------------------------------------------

    def apply_update(self, opt, loss_g: Tensor | None, loss_d: Tensor | None, grads_g: list[Tensor] | Tensor | None,
                     grads_d: list[Tensor] | Tensor | None, *, counted: bool = True) -> bool:
        """Check that the losses and directions are finite (``finite_or_stop``), write the directions
        into ``.grad`` (None leaves that player where it is) and step; returns whether it stepped.
        A loss that was not computed (one player's half of an alternating iteration) is None. A
        direction is a list of tensors in parameter order, or one flat vector with flat buffers.

        Lightning counts every step of a LightningOptimizer as a global step; the extra player
        updates inside one alternating iteration go to the wrapped optimizer (``counted=False``)
        so that ``global_step`` counts iterations."""
        if self._flat is not None:
            if not (flat.is_view_of(self.params_g, self._flat[0]) and flat.is_view_of(self.params_d, self._flat[1])):
                raise RuntimeError("the parameters no longer live in the optimizer's flat buffers (was the model moved "
                                   "or converted with .to() after training started?); pass flat_buffers=False to "
                                   "train such a model")
            grads_g, grads_d = (flat.flat_grad(g) if g is not None else None for g in (grads_g, grads_d))
        if not self.finite_or_stop(loss_g, loss_d, grads_g, grads_d):
            grads_g = grads_d = None  # a skipped iteration still counts: a step without gradients moves nothing
        if self._flat is not None:
            self._flat[0].grad, self._flat[1].grad = grads_g, grads_d
        else:
            for params, grads in ((self.params_g, grads_g), (self.params_d, grads_d)):
                for p, g in zip(params, grads if grads is not None else [None] * len(params)):
                    p.grad = g
        (opt if counted else opt.optimizer).step()
        opt.zero_grad(set_to_none=True)
        if counted:  # the iteration is complete: callbacks that sample after it see the updated EMA
            self.update_ema(self._images_per_iteration)
        return grads_g is not None or grads_d is not None

    def finite_or_stop(self, loss_g: Tensor | None, loss_d: Tensor | None, grads_g: Tensor | list[Tensor] | None,
                       grads_d: Tensor | list[Tensor] | None) -> bool:
        """Whether the iteration may step (``runtime.divergence``). The directions are flat vectors or
        lists of tensors. Every process reaches the same verdict (one tiny all-reduce), so none is
        left waiting. Where the verdict is read later (``verdict_later``) the step goes ahead and
        the previous iteration's verdict is read instead."""
        bad = nonfinite((loss_g, loss_d), (grads_g, grads_d))
        if rank_and_world()[1] > 1:
            bad = mean_across_processes([bad])[0]
        if self.verdict_later():
            previous = self._pending_verdict
            self._pending_verdict = PendingVerdict(self.global_step, bad, (loss_g, loss_d), (grads_g, grads_d))
            if previous is not None:
                self.divergence.stop_late(previous)
            return True
        if not bad.item():
            return True
        may_step = self.divergence.may_step(True, self.global_step, (loss_g, loss_d), (grads_g, grads_d))
        self.log("nonfinite/skipped", float(self.skipped), on_step=True, on_epoch=False)
        return may_step

    def verdict_later(self) -> bool:
        """Whether an iteration's finiteness is read an iteration later rather than before it steps:
        on a GPU under ``on_nonfinite="stop"``, so that the host never waits for the GPU inside the
        training loop. The non-finite iteration has then stepped when the run stops, and no
        checkpoint or evaluation sees it: each reads the verdict first (``settle_verdict``).
        ``skip`` must know before it steps, and reads at once."""
        return self.on_nonfinite == "stop" and self.device.type == "cuda"

    def settle_verdict(self) -> None:
        """Read the verdict left for later (``verdict_later``): raises ``NonFiniteError`` if that
        iteration was not finite. Checkpoints, evaluations and the end of training call it."""
        pending, self._pending_verdict = self._pending_verdict, None
        if pending is not None:
            self.divergence.stop_late(pending)

    def on_train_end(self) -> None:
        self.settle_verdict()

    @property
    def skipped(self) -> int:
        """Iterations skipped as non-finite (``on_nonfinite="skip"``)."""
        return self.divergence.skipped

    def full_precision(self):
        """A context of full float32 for the second-order methods: without autocast (under
        ``bf16-mixed`` their field and its Jacobian products are computed in float32: the backward
        of a bfloat16 forward would stay bfloat16) and without TF32 on GPUs (``runtime.precision``:
        products with 1e-3 errors would keep a solver from its tolerance). First-order training
        keeps autocast and the process's TF32 setting."""
        if not self.second_order:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast(self.device.type, enabled=False))
        stack.enter_context(full_float32())
        return stack

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        self._images_per_iteration = real.shape[0] * rank_and_world()[1]

    def training_step(self, batch, batch_idx: int) -> None:
        batch = self.unpack(batch)
        if self.update == "simultaneous":
            self.simultaneous_step(batch)
        else:
            self.alternating_step(batch)

    def simultaneous_step(self, batch) -> None:
        """Both players step along the method's direction at the same parameters."""
        z = self.training_latent(batch)
        step = update = None
        if self._compiled is not None:
            step = self._compiled(batch, z)
            if step is None:  # compilation failed (it warned): the eager path takes over for good
                self._compiled = None
        if step is None:
            with self.full_precision():
                batch_game = self.on_batch(batch, z, training=True)
                field = batch_game.field(create_graph=self.second_order)
                update = self.method.direction(batch_game, field, reduce=self.reduce())
            step = algebra.Step(field.loss_g, field.loss_d, field.xi_g, field.xi_d, update.g, update.d, update.stats)
        if self.apply_update(self.optimizers(), step.loss_g, step.loss_d, step.u_g, step.u_d) and update is not None:
            self.method.commit(update)
        if self._should_log():
            self.log_step(step.loss_g, step.loss_d, step.xi_g, step.xi_d, step.stats)

    def alternating_step(self, batch) -> None:
        """Each player steps in turn (``order``, ``n_d``), its direction recomputed after the other has
        moved, each phase with fresh latent codes. A method whose direction needs both players'
        fields (``separable`` False) computes the whole direction in each phase and applies its
        player's part."""
        players = ["g"] + ["d"] * self.n_d if self.order == "g_first" else ["d"] * self.n_d + ["g"]
        opt, reduce, last = self.optimizers(), self.reduce(), {}
        for k, player in enumerate(players):
            with self.full_precision():
                batch_game = self.on_batch(batch, self.training_latent(batch), training=True)
                field = batch_game.field(create_graph=self.second_order, players=player if self.method.separable else "gd")
                update = self.method.direction(batch_game, field, reduce=reduce)
            u_g, u_d = (update.g, None) if player == "g" else (None, update.d)
            if self.apply_update(opt, field.loss_g, field.loss_d, u_g, u_d, counted=k == len(players) - 1):
                self.method.commit(update, player)
            last[player] = field
        if self._should_log():
            self.log_step(last["g"].loss_g, last["d"].loss_d, last["g"].xi_g, last["d"].xi_d, update.stats)

    # -- checkpoints and logging ---------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.settle_verdict()  # a checkpoint never holds a state a later verdict finds non-finite
        # The training stream's state makes a resumed run draw the codes the interrupted one would
        # have drawn next; the global generator's, the randomness inside the networks (dropout, noise).
        checkpoint["training_rng"] = self.training_rng.get_state()
        checkpoint["method"] = method_class(self.method)
        checkpoint["method_state"] = self.method.state_dict()
        checkpoint["nonfinite_skipped"] = self.divergence.state_dict()
        checkpoint["rng_state"] = global_states()  # every process's (a collective: every process saves)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        recorded = checkpoint.get("method")
        if recorded is not None:
            recorded = current_path(recorded)  # an earlier version's gans.methods.X is game.methods.X
        if recorded is not None and recorded != method_class(self.method):
            # the method is an object, not a hyperparameter: a model built in Python and loaded with
            # load_from_checkpoint(path, generator=..., discriminator=...) would train on as another
            raise ValueError(f"the checkpoint was trained with the method {recorded}, this model has "
                             f"{method_class(self.method)}: pass method={recorded.rsplit('.', 1)[-1]}(...) "
                             f"to load_from_checkpoint (a train.py run loads with gans.checkpoint.load_model(path))")
        self.method.load_state_dict(checkpoint.get("method_state", {}))
        self.divergence.load_state_dict(checkpoint.get("nonfinite_skipped", {}))
        if "training_rng" in checkpoint:
            self._training_rng = torch.Generator()
            self._training_rng.set_state(checkpoint["training_rng"])
        # restored when fitting starts, on each process its own (loading a model to sample from it
        # leaves the caller's generators alone)
        self._global_rngs = checkpoint.get("rng_state")

    def _should_log(self) -> bool:
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def step_metrics(self) -> dict[str, Tensor]:
        """Metrics of the iteration beyond losses, gradient norms and the method's statistics (a
        model with loss terms of its own adds them)."""
        return {}

    def log_step(self, loss_g: Tensor | None, loss_d: Tensor | None, xi_g, xi_d, stats: dict[str, Tensor]) -> None:
        metrics = {name: loss for name, loss in (("loss/generator", loss_g), ("loss/discriminator", loss_d))
                   if loss is not None}
        if xi_g is not None:
            metrics["grad_norm/generator"] = algebra.norm(algebra.detach(xi_g))
        if xi_d is not None:
            metrics["grad_norm/discriminator"] = algebra.norm(algebra.detach(xi_d))
        metrics.update(stats)
        metrics.update(self.step_metrics())
        self.log_dict(on_device(metrics, self.device), on_step=True, on_epoch=False, sync_dist=rank_and_world()[1] > 1)
