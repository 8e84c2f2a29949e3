"""Semi-StyleGAN (Nie et al., ICML 2020): a StyleGAN whose code c controls the factors of variation,
learned from a few labelled images, with an encoder (heads on the discriminator) that reads the
factors off real images.

The player losses, with the terms of ``game.semi_losses`` (see the README for which parts are
verified against the authors' code and which are switches)::

    L_G = softplus(-D(G(c, z))) + unsup_weight_g * ||E(G(c, z)) - c||
          + smooth_weight * ||E(G(Mix(c1, c2), z)) - Mix(c1, c2)||            (smoothness="codes")
          + sup_weight_g * ||E(G(c_l, z)) - c_l||                            (c_l: labelled codes)
    L_D = softplus(D(G(c, z))) + softplus(-D(x)) + penalty_weight / 2 * ||grad_x D(x)||^2   (lazy R1)
          + unsup_weight_d * ||E(G(c, z)) - c|| + sup_weight * ||E(x_l) - c_l||
          + smooth_weight * ||E(Mix(x1, x2)) - Mix(c1, c2)||                 (smoothness="images")

Updates are those of every model: alternating (D then G, the authors' schedule: the default) or
simultaneous, along any method's direction (``game.methods``: plain gradients by default, or
JARE, ConOpt, extragradient, ...), with the shared gradient penalty (R1, lazy, by default).
The Semi-StyleGAN-fine variant is the same model with a generator built with ``input_resolution``:
its latent carries the downsampled real image (``StyleGANGenerator``).
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from game.methods import Method, Players
from game.semi_losses import code_error, mix, supervised_error
from game.twoplayer import TwoPlayerGame
from gans.base import DRY_BATCH, TwoPlayerGAN


class FactorBatch(NamedTuple):
    """A training batch of factor data (``datamodules.factors``); codes are None for plain images."""

    images: Tensor
    codes: Tensor | None = None
    labelled: Tensor | None = None
    labelled_images: Tensor | None = None
    labelled_codes: Tensor | None = None


class EncodingGame(TwoPlayerGame):
    """The game of a discriminator that also encodes: D(x) -> (logits, codes); its logits are the
    first output (the gradient penalties differentiate them)."""

    def discriminator_logits(self, x: Tensor) -> Tensor:
        return self.discriminator(x)[0].reshape(-1)


class SemiStyleGAN(TwoPlayerGAN):
    """Semi-supervised StyleGAN disentangler.

    Args:
        generator: called as ``G(latent)`` with ``latent = [c, z]`` (or ``[c, z, x_low]``); must
            expose ``code_dim`` and ``noise_dim`` (and ``condition_dim``, ``input_resolution`` and
            ``channels`` for the fine variant), as ``gans.networks.StyleGANGenerator`` does.
        discriminator: ``D(x) -> (logit (B,), codes (B, K))``, e.g. ``StyleGANDiscriminator``.
        factor_sizes: values per data factor; None takes the data module's ``factor_sizes``.
        factors: which data factors the K codes model (indices); None: the first K.
        code_sampling: generated codes drawn uniformly from the factor ``grid`` (the authors'
            code) or ``uniform`` in [0, 1]^K (for continuous factors).
        unsup_weight_g, unsup_weight_d: gamma, the weight of the code reconstruction on generated
            images in L_G and in L_D (1 in the authors' dSprites and Isaac3D scripts).
        sup_weight: beta, the weight of the supervised encoder loss on labelled real images.
        sup_weight_g: a generator-side supervised term on labelled codes (0: off; unverified).
        smooth_weight: alpha, the weight of the smoothness regulariser (0: off).
        smoothness: ``codes`` mixes codes fed to G (the generator learns smooth control) or
            ``images`` mixes labelled real images fed to E (needs a labelled batch). Unverified.
        squared: squared L2 errors instead of the L2 norm (the authors' code uses the norm).
        method, update, order: as ``TwoPlayerGAN``, with the authors' schedule by default: plain
            gradients, alternating, a D step then a G step with fresh codes.
        penalty, penalty_weight, penalty_every: as ``TwoPlayerGAN``, with StyleGAN2's lazy R1 by
            default (gamma 10 every 16 iterations, scaled by the interval).
        num_reference: fine variant: real images kept (downsampled, in the checkpoint) for
            sampling without a data set.
        latent_dim: derived from the generator; when given it must agree.
        loss: the non-saturating logistic loss (the only one this model uses).
    Other arguments (``optimizer``, ``lr_d``, ``ema_half_life``, ...) as ``TwoPlayerGAN``.
    """

    game_class = EncodingGame

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        factor_sizes: list[int] | None = None,
        factors: list[int] | None = None,
        code_sampling: Literal["grid", "uniform"] = "grid",
        unsup_weight_g: float = 1.0,
        unsup_weight_d: float = 1.0,
        sup_weight: float = 1.0,
        sup_weight_g: float = 0.0,
        smooth_weight: float = 1.0,
        smoothness: Literal["codes", "images"] = "codes",
        squared: bool = False,
        method: Method | None = None,
        update: Literal["simultaneous", "alternating"] = "alternating",
        order: Literal["g_first", "d_first"] = "d_first",
        penalty: Literal["none", "r1", "r2", "wgan_gp"] = "r1",
        penalty_weight: float = 10.0,
        penalty_every: int = 16,
        num_reference: int = 64,
        latent_dim: int | None = None,
        loss: Literal["ns"] = "ns",
        **kwargs,
    ):
        missing = [a for a in ("code_dim", "noise_dim") if not isinstance(getattr(generator, a, None), int)]
        if missing:
            raise ValueError(f"SemiStyleGAN's generator must say how its latent splits: {type(generator).__name__} "
                             f"has no integer attribute(s) {missing} (use gans.networks.StyleGANGenerator)")
        self.code_dim, self.noise_dim = generator.code_dim, generator.noise_dim
        self.condition_dim = getattr(generator, "condition_dim", 0)
        derived = self.code_dim + self.noise_dim + self.condition_dim
        if latent_dim is not None and latent_dim != derived:
            raise ValueError(f"latent_dim={latent_dim} disagrees with the generator's codes + noise + image = {derived}; "
                             f"leave latent_dim out")
        if loss != "ns" or smoothness not in ("codes", "images") or code_sampling not in ("grid", "uniform"):
            raise ValueError(f"invalid option: loss must be 'ns', smoothness 'codes' or 'images', code_sampling "
                             f"'grid' or 'uniform'; got loss={loss!r}, smoothness={smoothness!r}, "
                             f"code_sampling={code_sampling!r}")
        if kwargs.pop("discriminator_pass", "separate") == "joint":
            raise ValueError("discriminator_pass='joint' does not apply to SemiStyleGAN: its discriminator also "
                             "encodes codes and sees each batch of its phases separately")
        super().__init__(generator, discriminator, latent_dim=derived, loss="ns", method=method, update=update,
                         order=order, penalty=penalty, penalty_weight=penalty_weight, penalty_every=penalty_every,
                         discriminator_pass="separate", **kwargs)
        self.factor_sizes = list(factor_sizes) if factor_sizes is not None else None
        self.factors = list(factors) if factors is not None else None
        self.code_sampling, self.squared = code_sampling, squared
        self.unsup_weight_g, self.unsup_weight_d = unsup_weight_g, unsup_weight_d
        self.sup_weight, self.sup_weight_g = sup_weight, sup_weight_g
        self.smooth_weight, self.smoothness = smooth_weight, smoothness
        self._terms: dict[str, Tensor] = {}  # the loss terms of the training step, for logging
        if self.condition_dim:
            res = generator.input_resolution
            self.register_buffer("reference", torch.zeros(num_reference, generator.channels, res, res))
        else:
            self.reference = None

    # -- codes and latents -------------------------------------------------------------------------

    @property
    def factor_indices(self) -> list[int]:
        return self.factors if self.factors is not None else list(range(self.code_dim))

    @property
    def code_sizes(self) -> list[int] | None:
        """Values per modelled factor (None when the factor grid is unknown)."""
        return None if self.factor_sizes is None else [self.factor_sizes[i] for i in self.factor_indices]

    def sample_codes(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n codes: a uniform draw over the factor grid (value k of a factor with m values is
        k / (m - 1)), or uniform in [0, 1]^K."""
        u = torch.rand(n, self.code_dim, generator=generator)
        if self.code_sampling == "uniform":
            return u
        if self.code_sizes is None:
            raise ValueError("code_sampling='grid' needs the factor grid: the data module has no factor_sizes; pass "
                             "--model.factor_sizes [m1, ..., mK] or --model.code_sampling uniform")
        sizes = torch.tensor(self.code_sizes, dtype=u.dtype)
        return (u * sizes).floor() / (sizes - 1).clamp(min=1)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """[c, z] with c from ``sample_codes`` and z ~ N(0, latent_std^2 I); the fine variant appends
        downsampled reference images."""
        parts = [self.sample_codes(n, generator), self.latent_std * torch.randn(n, self.noise_dim, generator=generator)]
        if self.reference is not None:
            picks = torch.randint(len(self.reference), (n,), generator=generator)
            parts.append(self.reference.cpu()[picks].flatten(1))
        ref = next(iter(self.params_g), None)
        return torch.cat(parts, dim=1).to(dtype=ref.dtype if ref is not None else torch.get_default_dtype(),
                                          device=self.device)

    def downsample(self, images: Tensor) -> Tensor:
        """The fine variant's generator input: images averaged down to ``input_resolution``."""
        return F.adaptive_avg_pool2d(images, self.generator.input_resolution)

    def with_images(self, latent: Tensor, images: Tensor) -> Tensor:
        """The latent with its image part replaced by ``images`` downsampled (fine variant only)."""
        return torch.cat([latent[:, :self.code_dim + self.noise_dim], self.downsample(images).flatten(1)], dim=1)

    def training_latent(self, batch: FactorBatch) -> Tensor:
        latent = self.latent_shard(len(batch.images))
        return self.with_images(latent, batch.images) if self.condition_dim else latent

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """E(x): the discriminator's code prediction."""
        return self.discriminator(images.to(self.device, self.params_d[0].dtype if self.params_d else None))[1]

    @torch.no_grad()
    def edit(self, image: Tensor, factor: int, value: float, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """(codes read from ``image`` (1, C, H, W) in [-1, 1], the image generated with them, the image
        generated with code ``factor`` set to ``value``). The fine variant also takes the image itself,
        downsampled, so the edit keeps its coarse content; the plain model regenerates from the codes."""
        if not 0 <= factor < self.code_dim:
            raise ValueError(f"--factor must index one of the model's {self.code_dim} codes (0..{self.code_dim - 1}), "
                             f"got {factor}")
        codes = self.encode(image).clamp(0, 1).cpu()
        latent = self.sample_latent(1, torch.Generator().manual_seed(seed))
        if self.condition_dim:
            latent = self.with_images(latent, image.to(latent))
        latents = latent.repeat(2, 1)
        latents[:, :self.code_dim] = codes.to(latent)
        latents[1, factor] = value
        out = self.generate(latents).cpu()
        return codes[0], out[:1], out[1:]

    # -- losses ------------------------------------------------------------------------------------

    def unpack(self, batch) -> FactorBatch:
        """(images[, codes, labelled[, labelled images, labelled codes]]) with the modelled factors."""
        if isinstance(batch, FactorBatch):
            return batch
        if isinstance(batch, Tensor):
            batch = (batch,)
        images = super().unpack(batch)
        if len(batch) < 3 or batch[1].ndim != 2:
            return FactorBatch(images)
        pick = lambda codes: codes[:, self.factor_indices].to(images.dtype)  # noqa: E731
        extra = (batch[3].to(images.dtype), pick(batch[4])) if len(batch) >= 5 else (None, None)
        return FactorBatch(images, pick(batch[1]), batch[2].bool(), *extra)

    def mix_weights(self, n: int, training: bool) -> Tensor:
        """n weights in [0, 1] for the smoothness term's mixes (``TwoPlayerGAN.draw``)."""
        return self.draw(n, lambda count, generator: torch.rand(count, generator=generator), training)

    def loss_terms(self, batch: FactorBatch, latent: Tensor, players: Players = "gd",
                   penalty: str = "none", training: bool = False) -> dict[str, Tensor]:
        """The unweighted loss terms the ``players`` need (``weighted_losses`` weighs them); ``gd``
        shares the generated batch between the players, as the simultaneous field needs. ``penalty``: the
        gradient penalty to include (its term is named after it); ``training``: the random draws come
        from the training stream."""
        G, D, sq, k = self.generator, self.discriminator, self.squared, self.code_dim
        c = latent[:, :k]
        with torch.set_grad_enabled(torch.is_grad_enabled() and "g" in players):
            fake = G(latent)
        d_fake, e_fake = D(fake)
        terms = {"unsup": code_error(e_fake, c, sq)}
        if "g" in players:
            terms["g_adv"] = F.softplus(-d_fake.reshape(-1)).mean()
            if self.smooth_weight and self.smoothness == "codes":
                c_mix = mix(c, c.roll(1, 0), self.mix_weights(len(c), training).to(c))
                terms["smooth"] = code_error(D(G(torch.cat([c_mix, latent[:, k:]], dim=1)))[1], c_mix, sq)
            if self.sup_weight_g and batch.labelled_codes is not None:
                codes = batch.labelled_codes[:len(latent)]
                terms["g_sup"] = code_error(D(G(torch.cat([codes, latent[:len(codes), k:]], dim=1)))[1], codes, sq)
        if "d" in players:
            real = batch.images.detach().requires_grad_(penalty == "r1")
            d_real, e_real = D(real)
            terms["d_adv"] = F.softplus(d_fake.reshape(-1)).mean() + F.softplus(-d_real.reshape(-1)).mean()
            parts = [(e_real, batch.codes, batch.labelled)] if batch.codes is not None else []
            if batch.labelled_images is not None:
                parts.append((D(batch.labelled_images)[1], batch.labelled_codes, None))
            if parts:
                reduce = self.reduce()
                terms["sup"] = supervised_error(parts, sq, mean_count=lambda count: reduce([count])[0])
            if self.smooth_weight and self.smoothness == "images":
                x, y = batch.labelled_images, batch.labelled_codes
                lam = self.mix_weights(len(x), training).to(x)
                terms["smooth"] = code_error(D(mix(x, x.roll(1, 0), lam))[1], mix(y, y.roll(1, 0), lam), sq)
            if penalty != "none":
                terms[penalty] = self.penalty_value(penalty, real, fake, d_real, training)
        return terms

    def weighted_losses(self, terms: dict[str, Tensor], training: bool = False) -> tuple[Tensor | None, Tensor | None]:
        """(L_G, L_D) from the terms of ``loss_terms`` (None for a player whose terms are absent). A
        lazy penalty is scaled by its interval in training, so its average weight is its own."""
        zero = terms["unsup"].new_zeros(())
        loss_g = loss_d = None
        if "g_adv" in terms:
            loss_g = (terms["g_adv"] + self.unsup_weight_g * terms["unsup"] + self.sup_weight_g * terms.get("g_sup", zero)
                      + (self.smooth_weight * terms.get("smooth", zero) if self.smoothness == "codes" else 0))
        if "d_adv" in terms:
            loss_d = (terms["d_adv"] + self.unsup_weight_d * terms["unsup"] + self.sup_weight * terms.get("sup", zero)
                      + (self.smooth_weight * terms.get("smooth", zero) if self.smoothness == "images" else 0)
                      + self.penalty_factor(training) * terms.get(self.penalty, zero))
        return loss_g, loss_d

    def player_losses(self, batch: FactorBatch, z: Tensor, players: Players = "gd", training: bool = False):
        terms = self.loss_terms(batch, z, players, self.penalty_now(training) if "d" in players else "none", training)
        if training:  # logged with the iteration (the first phase's value of a term both phases have)
            for name, value in terms.items():
                self._terms.setdefault(name, value.detach())
        return self.weighted_losses(terms, training)

    # -- Lightning ---------------------------------------------------------------------------------

    def compiled_step_problems(self) -> list[str]:
        return ["SemiStyleGAN's losses are its own (loss_terms), not a loss of the discriminator's logits"]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        self._terms = {}

    def step_metrics(self) -> dict[str, Tensor]:
        return {f"terms/{name}": value for name, value in self._terms.items()}

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.factor_sizes is None:
            sizes = getattr(datamodule, "factor_sizes", None)
            self.factor_sizes = list(sizes) if sizes is not None else None
        if self.factor_sizes is not None and (len(self.factor_indices) != self.code_dim or
                                              not all(0 <= i < len(self.factor_sizes) for i in self.factor_indices)):
            raise ValueError(f"the generator has {self.code_dim} codes but factors={self.factors} picks "
                             f"{len(self.factor_indices)} of the data's {len(self.factor_sizes)} factors "
                             f"{self.factor_sizes}: set --model.factors to {self.code_dim} factor indices")
        if self.smooth_weight and self.smoothness == "images" and not getattr(datamodule, "labelled_batch_size", 1):
            raise ValueError("smoothness='images' mixes labelled real images: set --data.labelled_batch_size > 0")
        if self.reference is not None and stage == "fit" and datamodule is not None:
            data = datamodule.eval_dataset()
            picks = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:len(self.reference)]
            images = torch.stack([data[int(i)][0] for i in picks]).to(self.reference)
            self.reference.copy_(self.downsample(images))
        super().setup(stage)

    def check_discriminator_output(self, out) -> None:
        name = type(self.discriminator).__name__
        ok = (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out)
              and tuple(out[0].shape) in ((DRY_BATCH,), (DRY_BATCH, 1)) and tuple(out[1].shape) == (DRY_BATCH, self.code_dim))
        if not ok:
            got = tuple(tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in out) \
                if isinstance(out, tuple) else type(out).__name__
            raise ValueError(f"discriminator {name} must return (logits, codes) of shapes ({DRY_BATCH},) and "
                             f"({DRY_BATCH}, {self.code_dim}) for a batch of {DRY_BATCH}, but returned {got}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["factor_sizes"] = self.factor_sizes  # taken from the data at setup: sampling needs it later

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.factor_sizes is None:
            self.factor_sizes = checkpoint.get("factor_sizes")
