"""Many games in one run: N members (seeds, hyperparameters) trained together as one stacked model.

    members = [gans.JARE(G_i, D_i, latent_dim=64, gamma=g) for ...]   # each exactly as a single run builds it
    sweep = SweepGAN(members, seeds=[0, 1, 2], settings=[{"gamma": 10.0}, ...])
    trainer.fit(sweep, datamodule=...)
    sweep.member_model(2)                                                # member 2 as an ordinary model
    member_checkpoint(torch.load(path), 2)                               # ... and as an ordinary checkpoint

The members' networks become ``StackedNetworks`` (parameters along a leading member axis, one
vmapped forward), and everything else is ``TwoPlayerGAN``'s: the method's direction, the update
schedule, the optimizer, checkpoints. The members share no parameter, so autograd on the sum of
their losses gives each member's own field and every Jacobian product separates by member; what
does not separate is taken per member (``BatchGame.members``): inner products and norms (SGA's
alignment, logged norms), CGD's conjugate gradient, the divergence guard. A hyperparameter that
differs between members (gamma, lam, eta, the learning rate) is a vector with one value per member.

Each member draws what its single run draws: its own training stream (its latent codes) from its
seed, and either the real batches every member shares (a single run's data seed does not follow
its run's seed) or, with ``datamodules.StackedData``, its own data stream. A member whose loss or
direction is not finite is frozen where its single run would have stopped, and the others go on.
"""
from __future__ import annotations

import copy
import numbers
from typing import Sequence

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor
from torch.func import vmap

from game import algebra, compiled
from game.algebra import per_member
from game.losses import is_zero_sum
from game.methods import Method
from game.stacked import StackedNetworks
from gans.base import OBJECT_ARGUMENTS, TRAINING_STREAM, TwoPlayerGAN, check_learning_rates, on_device
from runtime.distributed import mean_across_processes, rank_and_world
from runtime.divergence import SKIP_WINDOW, DivergenceGuard, NonFiniteError
from runtime.flat import ELEMENTWISE
from runtime.streams import seeded


def stacked_method(methods: Sequence[Method]) -> tuple[Method, list[str]]:
    """One method for all members: member 0's, with each hyperparameter that differs between
    members as a vector of their values; and the names of those hyperparameters."""
    first = methods[0]
    for i, method in enumerate(methods[1:], 1):
        if type(method) is not type(first):
            raise ValueError(f"member {i} trains with {type(method).__name__}, member 0 with {type(first).__name__}: "
                             f"the members of a sweep share one method")
    method, swept = copy.deepcopy(first), []
    method.reset()
    for name, value in vars(first).items():
        if name.startswith("_"):
            continue
        values = [vars(m)[name] for m in methods]
        if all(v == value for v in values):
            continue
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            raise ValueError(f"the members' {type(first).__name__}.{name} differ ({', '.join(map(repr, values))}): a "
                             f"sweep can vary numeric hyperparameters only")
        setattr(method, name, torch.tensor([float(v) for v in values], dtype=torch.float64))
        swept.append(name)
    return method, swept


def copy_model(model: TwoPlayerGAN) -> TwoPlayerGAN:
    """A deep copy sharing the optimizer factory (a command line's factory holds a lock)."""
    return copy.deepcopy(model, memo={id(model.optimizer_factory): model.optimizer_factory})


def member_slice(tree, index: int):
    """Member ``index``'s part of a state (tensors with a leading member axis, in dicts and lists)."""
    if isinstance(tree, Tensor):
        return tree[index].clone() if tree.ndim else tree.clone()
    if isinstance(tree, dict):
        return {k: member_slice(v, index) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(member_slice(v, index) for v in tree)
    return tree


#: How a sweep treats each argument of ``TwoPlayerGAN`` (``tests/test_sweep.py`` fails when an
#: argument is missing here, so a new setting is honoured or refused from the day it exists):
#: ``members``, each member's own (its networks, stacked); ``swept``, may differ between members
#: (the method's numeric hyperparameters; the optimizer's learning rates, one parameter group per
#: member); ``shared``, the members must agree and the sweep trains with their value (passed on
#: by name below, so none is dropped); ``refused``, a value other than the default is refused in
#: one line (``refusal``).
SETTINGS = {
    "generator": "members", "discriminator": "members", "method": "swept", "optimizer": "swept",
    "latent_dim": "shared", "loss": "shared", "update": "shared", "order": "shared", "n_d": "shared",
    "penalty": "refused", "penalty_weight": "shared", "penalty_every": "shared", "latent_std": "shared",
    "lr_d": "shared", "on_nonfinite": "shared", "ema_half_life": "shared", "ema_rampup": "shared",
    # a sweep always steps member-major buffers: elementwise optimizers only (refused otherwise in
    # configure_optimizers), whose arithmetic on a buffer is the arithmetic on the tensors
    "flat_buffers": "shared",
    "compile_step": "shared", "discriminator_pass": "shared",
}


def refusal(name: str, value) -> str | None:
    """Why a sweep cannot train with ``name=value`` (None: it can)."""
    if name == "penalty" and value != "none":
        where = {"r1": "its real samples", "r2": "its generated samples",
                 "wgan_gp": "random interpolates of its real and generated samples"}.get(value, "its inputs")
        return (f"the gradient penalty {value} is not available in a sweep: it differentiates each member's "
                f"discriminator with respect to {where}, input gradients that the stacked forward pass does not keep "
                f"apart by member; drop --model.penalty or train separate runs")
    return None


def shared_settings(members: Sequence[TwoPlayerGAN]) -> dict:
    """The ``shared`` settings of the members (``SETTINGS``), as recorded in their hyperparameters;
    raises when two members differ in one, or when one is refused."""
    first, values = members[0], {}
    for name, kind in SETTINGS.items():
        if kind not in ("shared", "refused"):
            continue
        values[name] = first.hparams[name]
        problem = refusal(name, values[name])
        if problem is not None:
            raise ValueError(problem)
    for i, m in enumerate(members):
        problems = [name for name, value in values.items() if m.hparams[name] != value]
        if type(m) is not type(first) or problems:
            raise ValueError(f"member {i} differs from member 0 in {', '.join(problems) or 'its class'}: the members "
                             f"of a sweep differ only by seed, the method's numeric hyperparameters and the "
                             f"learning rate")
    return values


class SweepGAN(TwoPlayerGAN):
    """N ``TwoPlayerGAN`` members trained together, each as its single run would train it.

    Args:
        members: the members' models, built as their single runs build them (the networks'
            initialisation included). They must agree on everything but the method's numeric
            hyperparameters and the learning rates; gradient penalties are not available in a
            sweep. With ``compile_step`` the members' step is vmapped and compiled.
        seeds: each member's seed (its training stream: latent codes), the ``seed_everything`` of
            its single run.
        settings: each member's swept settings, for the results table (``{"gamma": 10.0}``, ...).
        member_hparams: each member's hyperparameters as its single run records them (what
            ``member_checkpoint`` writes, so that ``gans.checkpoint.load_model`` rebuilds it).
        member_data_hparams: when each member draws its own data stream (``datamodules.StackedData``:
            batches of shape (N, B, ...)), each member's datamodule hyperparameters; None when the
            members share one stream (batches (B, ...)).
    """

    stacked = True
    unsaved_arguments = (*OBJECT_ARGUMENTS, "members", "member_hparams", "member_data_hparams")

    def __init__(self, members: Sequence[TwoPlayerGAN], seeds: Sequence[int], settings: Sequence[dict] | None = None,
                 member_hparams: Sequence[dict] | None = None, member_data_hparams: Sequence[dict] | None = None):
        if not members or len(seeds) != len(members):
            raise ValueError(f"a sweep needs at least one member and one seed per member, got {len(members)} members "
                             f"and {len(seeds)} seeds")
        first = members[0]
        if type(first).player_losses is not TwoPlayerGAN.player_losses:
            raise ValueError(f"{type(first).__name__} has losses of its own (player_losses), which a sweep does not stack: "
                             f"a sweep trains models whose losses are the two players' (vanilla, conopt, jare, sga and "
                             f"the method models); train its seeds as separate runs")
        shared = shared_settings(members)
        method, swept = stacked_method([m.method for m in members])
        super().__init__(StackedNetworks([m.generator for m in members]),
                         StackedNetworks([m.discriminator for m in members]), method=method,
                         optimizer=first.optimizer_factory, **shared)
        self.count, self.seeds, self.swept_method = len(members), [int(s) for s in seeds], swept
        self.settings = [dict(s) for s in settings] if settings is not None else [{} for _ in seeds]
        self.member_hparams = [dict(h) for h in member_hparams] if member_hparams is not None else \
            [dict(m.hparams) for m in members]
        self.member_rates = [m.learning_rates() for m in members]
        self.member_data_hparams = None if member_data_hparams is None else [dict(h) for h in member_data_hparams]
        # member 0 as an ordinary model (CPU, small), the template of ``member_model``
        object.__setattr__(self, "_template", copy_model(first).cpu())
        self.alive = torch.ones(self.count, dtype=torch.bool)
        self.diverged_at: dict[int, int] = {}
        self.member_guards = [DivergenceGuard(self.on_nonfinite) for _ in members]
        self._member_rngs: list[torch.Generator] | None = None
        self._member_losses: dict[str, Tensor] | None = None  # each member's losses at the step's parameters
        self._stepped: tuple[list[Tensor], list[Tensor]] | None = None
        self._member_buffers: list[Tensor] = []  # G's and D's member-major buffers (N, parameters of one member)
        self._logged_losses: dict[str, Tensor] = {}

    # -- what each member draws ------------------------------------------------------------------

    @property
    def member_rngs(self) -> list[torch.Generator]:
        """Each member's training stream, seeded as its single run seeds it (``training_rng``)."""
        if self._member_rngs is None:
            self._member_rngs = [seeded(s, TRAINING_STREAM) for s in self.seeds]
        return self._member_rngs

    def on_fit_start(self) -> None:
        dtype, device = self.params_g[0].dtype, self.params_g[0].device
        for name in self.swept_method:
            setattr(self.method, name, getattr(self.method, name).to(dtype=dtype, device=device))
        self.alive = self.alive.to(device)
        super().on_fit_start()

    @property
    def own_data(self) -> bool:
        """Whether each member draws its own data (batches (N, B, ...)) rather than one shared stream."""
        return self.member_data_hparams is not None

    def batch_size_of(self, real: Tensor) -> int:
        return real.shape[1] if self.own_data else real.shape[0]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        self._images_per_iteration = self.batch_size_of(real) * rank_and_world()[1]
        self._member_losses = None

    def training_latent(self, batch) -> Tensor:
        """(N, B, latent_dim): member m's codes from its own training stream."""
        n = self.batch_size_of(batch)
        return torch.stack([self.draw_shard(n, self.sample_latent, rng) for rng in self.member_rngs])

    def learning_rates(self) -> tuple[float | Tensor, float | Tensor]:
        """(generator's, discriminator's) learning rate: a number, or one per member when they differ."""
        rates = []
        for player in (0, 1):
            values = [r[player] for r in self.member_rates]
            same = all(v == values[0] for v in values)
            rates.append(values[0] if same else torch.tensor(values, dtype=self.params_g[0].dtype,
                                                              device=self.params_g[0].device))
        return rates[0], rates[1]

    # -- the members' losses ----------------------------------------------------------------------

    def player_losses(self, real: Tensor, z: Tensor, players="gd", training: bool = False):
        """The sums over members of each member's (L_G, L_D): their gradients are each member's
        own, on its own real batch or on the batch they share. With ``discriminator_pass="joint"``
        each member's D sees its real and generated batches as one, as its single run's does."""
        fake = self.generator(z)
        reals = real if self.own_data else real.expand(self.count, *real.shape)
        if self.game.joint is None:
            self.check_networks()
        if self.game.joint:
            logits = self.discriminator(torch.cat([reals, fake], dim=1)).reshape(self.count, -1)
            logits_real, logits_fake = logits[:, :reals.shape[1]], logits[:, reals.shape[1]:]
        else:
            logits_real = self.discriminator(reals).reshape(self.count, -1)
            logits_fake = self.discriminator(fake).reshape(self.count, -1)
        loss_g, loss_d = vmap(self.loss_fn)(logits_real, logits_fake)
        if training and self._member_losses is None:  # the losses at the step's own parameters
            self._member_losses = {f"loss/{name}": loss.detach() for name, loss, player in
                                   (("generator", loss_g, "g"), ("discriminator", loss_d, "d")) if player in players}
        return (loss_g.sum() if "g" in players else None), (loss_d.sum() if "d" in players else None)

    def check_networks(self, sample_shape=None) -> None:
        """Member 0's single-run checks (its networks' contract, and whether its D can take the
        joint pass): the members share their networks' classes and settings."""
        self._template.check_networks(sample_shape)
        self.game.joint = bool(self._template.game.joint)

    def build_compiled_step(self) -> compiled.CompiledStep:
        """The members' step vmapped and compiled (``game.compiled.stacked_step_function``): each
        member's rule gets its own swept hyperparameters and learning rates."""
        self.check_compiled_step()
        rates, template = self.learning_rates(), self._template
        hyper = {name: getattr(self.method, name) for name in self.swept_method}
        lr_swept = any(isinstance(r, Tensor) for r in rates)
        if lr_swept:
            hyper.update({f"lr_{p}": torch.as_tensor(r, dtype=self.params_g[0].dtype).expand(self.count)
                          for p, r in zip("gd", rates)})

        def rule_of(values: dict[str, Tensor]) -> compiled.Rule:
            method = copy.copy(self.method)
            for name in self.swept_method:
                setattr(method, name, values[name])
            return method.compiled_rule(template.params_g, template.params_d,
                                        (values["lr_g"], values["lr_d"]) if lr_swept else rates)

        fn = compiled.stacked_step_function(self.generator.template, self.discriminator.template, self.loss_fn,
                                            is_zero_sum(self.loss_name), rule_of, self.own_data, bool(self.game.joint))
        params = [{n: p.detach() for n, p in net.stacked_parameters().items()} for net in (self.generator, self.discriminator)]
        return compiled.CompiledStep(fn, params, flat_update=False, cpp_wrapper=self.device.type == "cpu", extra=(hyper,),
                                     cuda_graphs=self.device.type == "cuda")

    @torch.no_grad()
    def generate(self, z: Tensor) -> Tensor:
        """(N, n, ...) samples: every member's sampling generator on the same codes z (n, latent_dim)
        (or on its own, z of shape (N, n, latent_dim))."""
        return super().generate(z if z.ndim == 3 else z.expand(self.count, *z.shape))

    # -- the optimizer and the per-member guard -----------------------------------------------------

    def configure_optimizers(self):
        """Each player's parameters as one member-major buffer (N, parameters of one member): row m
        is member m's parameters in the layout of a single run's flat buffer. The optimizer steps
        the whole buffer when the members share their learning rates, else each row in a parameter
        group of its own with its member's rates."""
        self._flat, buffers = None, []
        for params in (self.params_g, self.params_d):
            buffer = algebra.flatten_members([p.detach() for p in params])
            offset = 0
            for p in params:
                size = p[0].numel()
                p.data = buffer[:, offset:offset + size].view(p.shape)
                offset += size
            buffers.append(buffer)
        self._member_buffers = buffers
        # under on_nonfinite=skip each member's row is a parameter of its own, so that a skipped member's
        # optimizer state (Adam's moments and step count) stays as its single run's does
        shared = all(r == self.member_rates[0] for r in self.member_rates) and self.on_nonfinite != "skip"
        if shared:
            self._stepped = ([buffers[0]], [buffers[1]])
            optimizer = self._optimizer([buffers[0]], [buffers[1]])
        else:
            self._stepped = (list(buffers[0].unbind(0)), list(buffers[1].unbind(0)))
            groups = [{"params": [row], "name": f"{name}/{m}", "lr": self.member_rates[m][player]}
                      for player, name in enumerate(("generator", "discriminator"))
                      for m, row in enumerate(self._stepped[player])]
            optimizer = self.optimizer_factory(groups)
        check_learning_rates(optimizer)
        if not isinstance(optimizer, ELEMENTWISE):
            raise ValueError(f"a sweep steps its members' parameters as one buffer, which needs an optimizer that acts "
                             f"elementwise ({', '.join(c.__name__ for c in ELEMENTWISE)}), got {type(optimizer).__name__}")
        return optimizer

    def apply_update(self, opt, loss_g, loss_d, grads_g, grads_d, *, counted: bool = True) -> bool:
        """Step every living member along its direction. A member whose loss or direction is not
        finite does what its single run does (``on_nonfinite``): under ``stop`` it is frozen from
        this iteration on (its parameters stay where its single run stops) and the others go on;
        under ``skip`` it moves nothing this iteration (nor its optimizer state), and is frozen once
        its own guard finds it diverged."""
        losses, self._member_losses = self._member_losses or {}, None
        if not losses:  # the compiled step: its losses are the members' own
            losses = {f"loss/{name}": loss.detach() for name, loss in (("generator", loss_g), ("discriminator", loss_d))
                      if loss is not None and loss.ndim == 1}
        self._logged_losses.update(losses)
        directions = [None if g is None else algebra.flatten_members(g) for g in (grads_g, grads_d)]
        checks = [*losses.values(), *(d.sum(dim=1) for d in directions if d is not None)]
        bad = ~torch.isfinite(torch.stack(checks)).all(dim=0)
        if rank_and_world()[1] > 1:  # the losses are each process's own: every process freezes the same members
            bad = mean_across_processes([bad.float()])[0] > 0
        skip = torch.zeros_like(bad)
        for m in (bad & self.alive).nonzero().flatten().tolist():
            try:
                if self.on_nonfinite == "skip" and not self.member_guards[m].may_step(True, self.global_step,
                                                                                    (None, None), (None, None)):
                    skip[m] = True
                    continue
                reason = "a non-finite loss or update"
            except NonFiniteError:
                reason = (f"more than half of its last {SKIP_WINDOW} iterations had a non-finite loss or update "
                          f"(on_nonfinite=skip)")
            self.diverged_at[m] = self.global_step
            self.alive[m] = False
            rank_zero_warn(f"sweep member {m} ({self.describe(m)}) diverged at iteration {self.global_step}: "
                           f"{reason}; it is frozen there and the other members go on")
        if not bool(self.alive.any()):
            raise NonFiniteError(f"iteration {self.global_step}: every member of the sweep has diverged; the last "
                                 f"checkpoint is intact")
        idle = skip | ~self.alive
        frozen = None
        if bool(idle.any()):
            directions = [None if d is None else torch.where(per_member(~idle, d), d, 0.0) for d in directions]
            frozen = [buffer[idle].clone() for buffer in self._member_buffers]
        for stepped, direction in zip(self._stepped, directions):
            if direction is None:
                parts = [None] * len(stepped)
            elif len(stepped) == 1:
                parts = [direction]
            else:  # a row per member: an idle member's row is left out of the step (its optimizer state too)
                parts = [None if still else g for g, still in zip(direction.unbind(0), idle.tolist())]
            for tensor, g in zip(stepped, parts):
                tensor.grad = g
        (opt if counted else opt.optimizer).step()
        opt.zero_grad(set_to_none=True)
        if frozen is not None:
            with torch.no_grad():
                for buffer, value in zip(self._member_buffers, frozen):
                    buffer[idle] = value
        if counted:
            self.update_ema(self._images_per_iteration)
        return any(d is not None for d in directions)

    @property
    def skipped(self) -> int:
        """Iterations skipped as non-finite, summed over members (``on_nonfinite="skip"``)."""
        return sum(guard.skipped for guard in self.member_guards)

    def describe(self, m: int) -> str:
        """Member m's seed and swept settings, in words."""
        return ", ".join([f"seed {self.seeds[m]}", *(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                     for k, v in self.settings[m].items())])

    # -- logging, checkpoints, members as ordinary models ------------------------------------------

    def log_step(self, loss_g, loss_d, xi_g, xi_d, stats: dict[str, Tensor]) -> None:
        """The mean over living members of each member's losses, gradient norms and method statistics,
        and the number of members that diverged."""
        alive = self.alive
        per = {"grad_norm/generator": algebra.norm(algebra.detach(xi_g), True) if xi_g is not None else None,
               "grad_norm/discriminator": algebra.norm(algebra.detach(xi_d), True) if xi_d is not None else None}
        metrics = {k: v for k, v in {**self._logged_losses, **per}.items() if v is not None}
        metrics.update({k: v for k, v in stats.items() if v.ndim == 1 and v.shape[0] == self.count})
        scalars = {k: v.detach().float() for k, v in stats.items() if k not in metrics}
        logged = {k: v.detach().float()[alive].mean() for k, v in metrics.items()}
        logged.update(scalars)
        logged["sweep/diverged"] = self.count - alive.sum()
        if self.on_nonfinite == "skip":
            logged["nonfinite/skipped"] = float(self.skipped)
        self.log_dict(on_device(logged, self.device), on_step=True, on_epoch=False, sync_dist=rank_and_world()[1] > 1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["sweep"] = {"member_rngs": [g.get_state() for g in self.member_rngs], "alive": self.alive.cpu(),
                               "diverged_at": dict(self.diverged_at), "member_hparams": self.member_hparams,
                               "guards": [guard.state_dict() for guard in self.member_guards],
                               "rates": [tuple(r) for r in self.member_rates],
                               "member_data_hparams": self.member_data_hparams,
                               "settings": self.settings, "seeds": self.seeds, "names": self.member_names()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("sweep")
        if state is None:
            raise ValueError("the checkpoint was not written by a sweep (it has no member states)")
        if list(state["seeds"]) != self.seeds or state["settings"] != self.settings:
            raise ValueError(f"the checkpoint's sweep has other members (seeds {state['seeds']}, settings "
                             f"{state['settings']}) than this one (seeds {self.seeds}, settings {self.settings})")
        self._member_rngs = []
        for rng_state in state["member_rngs"]:
            rng = torch.Generator()
            rng.set_state(rng_state)
            self._member_rngs.append(rng)
        self.alive = state["alive"].clone()
        self.diverged_at = {int(k): int(v) for k, v in state["diverged_at"].items()}
        for guard, guard_state in zip(self.member_guards, state.get("guards", [])):
            guard.load_state_dict(guard_state)

    def member_model(self, index: int) -> TwoPlayerGAN:
        """Member ``index`` as an ordinary model (a copy: training the sweep does not change it), with
        its hyperparameters, weights and method state."""
        model = copy_model(self._template)
        for name in self.swept_method:
            setattr(model.method, name, float(getattr(self.method, name)[index]))
        model._learning_rates = self.member_rates[index]
        model.load_state_dict(self.member_state_dict(index))
        model.method.load_state_dict(member_slice(self.method.state_dict(), index))
        model.divergence.load_state_dict(self.member_guards[index].state_dict())
        model._hparams = type(model.hparams)(self.member_hparams[index])
        return model

    def member_names(self) -> dict[str, str]:
        """This model's state-dict names of the stacked tensors -> a single run's names."""
        return {f"{prefix}.{stacked}": f"{prefix}.{name}" for prefix in ("generator", "discriminator", "generator_ema")
                if getattr(self, prefix) is not None for stacked, name in getattr(self, prefix).names().items()}

    def member_state_dict(self, index: int) -> dict[str, Tensor]:
        """Member ``index``'s model state dict under a single run's names."""
        state = {}
        for prefix in ("generator", "discriminator", "generator_ema"):
            net = getattr(self, prefix)
            if net is not None:
                state.update({f"{prefix}.{k}": v for k, v in net.member_state(index).items()})
        return state


def member_checkpoint(checkpoint: dict, index: int) -> dict:
    """Member ``index`` of a sweep's checkpoint as the checkpoint its single run would write at that
    iteration: its weights, hyperparameters, method state, training stream and optimizer state
    (``gans.checkpoint.load_model``, ``commands.sample`` and ``commands.spectrum`` read it)."""
    sweep = checkpoint.get("sweep")
    if sweep is None:
        raise ValueError("not a sweep's checkpoint (it has no member states)")
    count = len(sweep["seeds"])
    if not 0 <= index < count:
        raise ValueError(f"the sweep has members 0 to {count - 1}, not {index}")
    names = sweep["names"]
    out = {key: checkpoint[key] for key in ("epoch", "global_step", "pytorch-lightning_version", "method",
                                           "datamodule_hyper_parameters", "datamodule_hparams_name", "rng_state")
           if key in checkpoint}
    out["state_dict"] = {names[k]: v[index].clone() for k, v in checkpoint["state_dict"].items() if k in names}
    out["hyper_parameters"] = dict(sweep["member_hparams"][index])
    if sweep.get("member_data_hparams"):
        out["datamodule_hyper_parameters"] = dict(sweep["member_data_hparams"][index])
    out["method_state"] = member_slice(checkpoint.get("method_state", {}), index)
    out["training_rng"] = sweep["member_rngs"][index]
    if "guards" in sweep:
        out["nonfinite_skipped"] = dict(sweep["guards"][index])
    out["sweep_member"] = {"index": index, "seed": sweep["seeds"][index], "settings": sweep["settings"][index],
                           "diverged_at": sweep["diverged_at"].get(index)}
    optimizer = (checkpoint.get("optimizer_states") or [None])[0]
    if optimizer is not None and out["hyper_parameters"].get("flat_buffers", True):
        out["optimizer_states"] = [member_optimizer_state(optimizer, index, count, sweep["rates"][index])]
    return out


def member_optimizer_state(state: dict, index: int, count: int, rates: tuple[float, float]) -> dict:
    """Member ``index``'s part of a sweep optimizer's state dict, in the layout of its single run's
    (two groups, generator and discriminator, each stepping one flat buffer: a row of the sweep's)."""
    groups, param_groups, states = state["param_groups"], [], {}
    for player, name in enumerate(("generator", "discriminator")):
        if len(groups) == 2:  # shared rates: each group steps the whole (N, P) buffer
            group = groups[player]
            own = state["state"].get(group["params"][0])
            own = None if own is None else member_slice(own, index)
        else:  # one group per member and player
            group = groups[player * count + index]
            own = state["state"].get(group["params"][0])
        param_groups.append({**group, "params": [player], "name": name, "lr": rates[player]})
        if own is not None:
            states[player] = own
    return {"state": states, "param_groups": param_groups}
