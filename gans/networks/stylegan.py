"""StyleGAN2-style players for Semi-StyleGAN (Karras et al. 2020; Nie et al. 2020).

Written here because no maintained package offers StyleGAN2 layers as plain modules to inject
(NVlabs' code is a training program, not a library, and its licence forbids reuse). Kept to what
Semi-StyleGAN needs; the differences from StyleGAN2-ADA are stated where they occur.

* ``StyleGANGenerator(latent)``: the latent is ``[c, z]`` (factor codes in [0, 1]^K, then noise),
  or ``[c, z, x_low]`` in the fine variant (``input_resolution``), where ``x_low`` is a real image
  downsampled to ``input_resolution`` and flattened. A mapping network turns ``[pixel_norm(z),
  embed(c)]`` into the style w (the conditional input of the authors' code); with ``fine_codes``
  a second mapping network reads the last ``fine_codes`` codes and styles the layers at
  ``fine_resolution`` and above.
* ``StyleGANDiscriminator(x) -> (logit (B,), codes (B, K))``: a residual StyleGAN2 discriminator
  whose encoder head predicts c (linear outputs); the last ``fine_codes`` codes come from a head
  on the features of the ``fine_resolution`` block.

Equalised learning rates everywhere; no activation is in-place (JARE differentiates twice).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import Tensor, nn

GAIN = math.sqrt(2.0)


def lrelu(x: Tensor) -> Tensor:
    """Leaky ReLU (0.2) with StyleGAN's variance-preserving gain."""
    return F.leaky_relu(x, 0.2) * GAIN


def pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """x / sqrt(mean(x^2)) over the feature dimension."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: ``min(channel_base / resolution, channel_max)`` (StyleGAN2-ADA's rule)."""
    return max(1, min(channel_base // resolution, channel_max))


def _check_resolution(owner: object, name: str, resolution: int, low: int = 8) -> int:
    if not (isinstance(resolution, int) and low <= resolution <= 1024 and resolution & (resolution - 1) == 0):
        raise ValueError(f"{type(owner).__name__}: {name} must be a power of two from {low} to 1024, got {resolution!r}")
    return resolution.bit_length() - 1


class EqualLinear(nn.Module):
    """A dense layer with an equalised learning rate: weights N(0, 1/lr_mul^2) scaled at run time."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init) / lr_mul)) if bias else None
        self.scale, self.lr_mul, self.activation = lr_mul / math.sqrt(in_dim), lr_mul, activation

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight * self.scale, None if self.bias is None else self.bias * self.lr_mul)
        return lrelu(out) if self.activation else out


class EqualConv2d(nn.Module):
    """A same-padded convolution with an equalised learning rate."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.weight.shape[-1] // 2)


class MappingNetwork(nn.Module):
    """w = MLP([pixel_norm(z), c W_embed]): the codes enter through a learned linear embedding
    concatenated with the normalised noise (the authors' ``g_mapping``)."""

    def __init__(self, noise_dim: int, code_dim: int, w_dim: int, depth: int, lr_mul: float = 0.01):
        super().__init__()
        if noise_dim + code_dim == 0:
            raise ValueError("MappingNetwork needs noise or codes (noise_dim + code_dim > 0)")
        self.noise_dim, self.code_dim = noise_dim, code_dim
        self.embed = EqualLinear(code_dim, w_dim, bias=False) if code_dim else None
        dims = [noise_dim + (w_dim if code_dim else 0)] + [w_dim] * depth
        self.layers = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, activation=True) for a, b in zip(dims, dims[1:])])

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        parts = ([pixel_norm(z)] if self.noise_dim else []) + ([self.embed(c)] if self.code_dim else [])
        return self.layers(torch.cat(parts, dim=1))


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution, in its non-fused form (scale the input by the style,
    convolve with the shared weight, scale the output by the demodulation coefficients): the same
    arithmetic as the grouped form and cheaper to differentiate twice. Upsampling is bilinear
    before the convolution (StyleGAN2 uses a transposed convolution and a FIR blur)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, w_dim: int, demodulate: bool = True,
                 upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.demodulate, self.upsample = demodulate, upsample

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        style = self.affine(w)
        weight = self.weight * self.scale
        if self.upsample:
            x = upsample2x(x)
        out = F.conv2d(x * rearrange(style, "b i -> b i 1 1"), weight, padding=weight.shape[-1] // 2)
        if self.demodulate:  # 1 / ||W * s|| per sample and output channel
            energy = style.square() @ weight.square().sum(dim=(2, 3)).T  # (b, o): sum_i s_i^2 ||W_oi||^2
            out = out * rearrange(torch.rsqrt(energy + 1e-8), "b o -> b o 1 1")
        return out


def upsample2x(x: Tensor) -> Tensor:
    """Bilinear upsampling by 2 (``align_corners=False``, edges clamped). Under
    ``torch.use_deterministic_algorithms`` (``--trainer.deterministic true``) it is written out as
    slices and weighted sums, whose backward is deterministic: CUDA's bilinear-upsample backward adds
    with atomics, in an order that changes from run to run (and refuses deterministic mode)."""
    if not torch.are_deterministic_algorithms_enabled():
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return _linear2x(_linear2x(x, -1), -2)


def _linear2x(x: Tensor, dim: int) -> Tensor:
    """Linear upsampling by 2 along ``dim``: output 2i = 1/4 x[i-1] + 3/4 x[i], 2i+1 = 3/4 x[i] + 1/4 x[i+1],
    the neighbours beyond an edge being the edge itself."""
    n = x.shape[dim]
    before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    even, odd = 0.25 * before + 0.75 * x, 0.75 * x + 0.25 * after
    dim = dim % x.ndim
    return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)


class StyledLayer(nn.Module):
    """Modulated 3x3 convolution, optional per-pixel noise, bias, leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, upsample: bool = False, noise: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, upsample=upsample)
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.noise_strength = nn.Parameter(torch.zeros(())) if noise else None

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = self.conv(x, w)
        if self.noise_strength is not None:
            x = x + self.noise_strength * torch.randn_like(x[:, :1])
        return lrelu(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """A modulated 1x1 convolution without demodulation, as in StyleGAN2."""

    def __init__(self, in_ch: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class SynthesisBlock(nn.Module):
    """Double the resolution: two styled layers, then add this resolution's RGB to the upsampled
    RGB of the block below (StyleGAN2's skip generator)."""

    def __init__(self, in_ch: int, out_ch: int, channels: int, w_dim: int, noise: bool):
        super().__init__()
        self.conv0 = StyledLayer(in_ch, out_ch, w_dim, upsample=True, noise=noise)
        self.conv1 = StyledLayer(out_ch, out_ch, w_dim, noise=noise)
        self.to_rgb = ToRGB(out_ch, channels, w_dim)

    def forward(self, x: Tensor, rgb: Tensor | None, w: Tensor) -> tuple[Tensor, Tensor]:
        x = self.conv1(self.conv0(x, w), w)
        y = self.to_rgb(x, w)
        if rgb is not None:
            y = y + upsample2x(rgb)
        return x, y


class StyleGANGenerator(nn.Module):
    """The Semi-StyleGAN generator G(c, z) (see the module docstring for the latent's layout).

    Args:
        code_dim: K, the number of factor codes.
        noise_dim: size of z (0: the image is a function of c alone).
        resolution: output side, a power of two from 8 to 1024.
        channels: image channels.
        channel_base, channel_max: feature maps per resolution, ``min(channel_base / res, channel_max)``
            (StyleGAN2 at 1024: 32768 and 512; a CPU-sized model: 2048 and 64).
        w_dim: size of the style vector w.
        mapping_depth: dense layers of each mapping network (StyleGAN: 8; the default 3 follows
            the small, better-disentangling setting Khrulkov et al. took from the paper).
        fine_codes: the last ``fine_codes`` codes drive a second mapping network that styles the
            layers at ``fine_resolution`` and above; the others style the lower layers (0: one
            mapping network for all layers).
        fine_resolution: where fine styles take over.
        input_resolution: Semi-StyleGAN-fine: the real image downsampled to this side replaces the
            constant input and the blocks up to it; all codes are then fine codes.
        noise: per-pixel noise inputs (off in the authors' code).
        output: ``tanh`` (the authors' code) or ``linear`` (StyleGAN2).
    """

    def __init__(self, code_dim: int, noise_dim: int = 32, resolution: int = 64, channels: int = 1,
                 channel_base: int = 2048, channel_max: int = 64, w_dim: int = 64, mapping_depth: int = 3,
                 fine_codes: int = 0, fine_resolution: int = 32, input_resolution: int | None = None,
                 noise: bool = False, output: Literal["tanh", "linear"] = "tanh"):
        super().__init__()
        top = _check_resolution(self, "resolution", resolution)
        if input_resolution is not None:
            bottom = _check_resolution(self, "input_resolution", input_resolution, low=4)
            if input_resolution >= resolution:
                raise ValueError(f"StyleGANGenerator: input_resolution ({input_resolution}) must be below the "
                                 f"resolution ({resolution})")
            fine_codes, fine_resolution = code_dim, 2 * input_resolution
        else:
            bottom = 2
            _check_resolution(self, "fine_resolution", fine_resolution)
        if not 0 <= fine_codes <= code_dim or output not in ("tanh", "linear"):
            raise ValueError(f"StyleGANGenerator: fine_codes must be in [0, code_dim={code_dim}] and output 'tanh' or "
                             f"'linear', got fine_codes={fine_codes}, output={output!r}")
        self.code_dim, self.noise_dim, self.resolution, self.channels = code_dim, noise_dim, resolution, channels
        self.fine_codes, self.fine_resolution, self.input_resolution = fine_codes, fine_resolution, input_resolution
        self.output = output
        ch = lambda res: channels_at(res, channel_base, channel_max)  # noqa: E731
        coarse = code_dim - fine_codes
        self.mapping = MappingNetwork(noise_dim, coarse, w_dim, mapping_depth) if input_resolution is None else None
        self.mapping_fine = MappingNetwork(noise_dim, fine_codes, w_dim, mapping_depth) if fine_codes else None
        if input_resolution is None:
            self.const = nn.Parameter(torch.randn(ch(4), 4, 4))
            self.input_layer = StyledLayer(ch(4), ch(4), w_dim, noise=noise)
            self.input_rgb = ToRGB(ch(4), channels, w_dim)
        else:
            self.from_image = EqualConv2d(channels, ch(input_resolution), 1)
        self.blocks = nn.ModuleList(SynthesisBlock(ch(2 ** (k - 1)), ch(2 ** k), channels, w_dim, noise)
                                    for k in range(bottom + 1, top + 1))
        self.block_resolutions = [2 ** k for k in range(bottom + 1, top + 1)]

    @property
    def condition_dim(self) -> int:
        """Entries of the latent that hold the downsampled real image (fine variant), else 0."""
        return 0 if self.input_resolution is None else self.channels * self.input_resolution ** 2

    @property
    def latent_dim(self) -> int:
        return self.code_dim + self.noise_dim + self.condition_dim

    def split_latent(self, latent: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """(c, z, x_low or None) from a latent of shape (B, latent_dim)."""
        if latent.ndim != 2 or latent.shape[1] != self.latent_dim:
            raise ValueError(f"StyleGANGenerator expects latents of shape (B, {self.latent_dim}) = codes "
                             f"({self.code_dim}) + noise ({self.noise_dim}) + image ({self.condition_dim}), "
                             f"got {tuple(latent.shape)}")
        c, z, image = latent.split([self.code_dim, self.noise_dim, self.condition_dim], dim=1)
        if self.input_resolution is None:
            return c, z, None
        return c, z, image.reshape(-1, self.channels, self.input_resolution, self.input_resolution)

    def forward(self, latent: Tensor) -> Tensor:
        c, z, image = self.split_latent(latent)
        coarse = self.code_dim - self.fine_codes
        w_coarse = self.mapping(z, c[:, :coarse]) if self.mapping is not None else None
        w_fine = self.mapping_fine(z, c[:, coarse:]) if self.mapping_fine is not None else w_coarse
        if image is None:
            x = self.input_layer(self.const.expand(len(latent), -1, -1, -1), w_coarse)
            rgb = self.input_rgb(x, w_coarse)
        else:
            x, rgb = lrelu(self.from_image(image)), None
        for res, block in zip(self.block_resolutions, self.blocks):
            x, rgb = block(x, rgb, w_fine if res >= self.fine_resolution else w_coarse)
        return torch.tanh(rgb) if self.output == "tanh" else rgb


# -- the discriminator / encoder ------------------------------------------------------------------


class DiscriminatorBlock(nn.Module):
    """Two 3x3 convolutions and a 2x average-pool, with a residual 1x1 path (StyleGAN2's resnet D)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0, self.conv1 = EqualConv2d(in_ch, in_ch, 3), EqualConv2d(in_ch, out_ch, 3)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = F.avg_pool2d(lrelu(self.conv1(lrelu(self.conv0(x)))), 2)
        return (x + skip) / math.sqrt(2)


def minibatch_stddev(x: Tensor, group: int) -> Tensor:
    """Append the mean standard deviation over groups of ``group`` samples as one more feature map
    (StyleGAN's minibatch-stddev layer); the group shrinks to the largest divisor of the batch."""
    n, _, h, w = x.shape
    g = max(d for d in range(1, min(group, n) + 1) if n % d == 0)
    y = rearrange(x, "(g m) c h w -> g m c h w", g=g)  # groups of g samples, n / g apart in the batch
    std = reduce((y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt(), "m c h w -> m", "mean")
    return torch.cat([x, repeat(std, "m -> (g m) 1 h w", g=g, h=h, w=w)], dim=1)


class StyleGANDiscriminator(nn.Module):
    """The Semi-StyleGAN discriminator with its encoder heads: ``D(x) -> (logit (B,), codes (B, K))``.

    Args:
        code_dim: K, the number of predicted factor codes (linear outputs, targets in [0, 1]).
        resolution, channels, channel_base, channel_max: as for the generator.
        fine_codes: the last ``fine_codes`` codes are read from the features of the
            ``fine_resolution`` block (Semi-StyleGAN-fine; the authors' ``D_mode separate``);
            the others from the final head.
        mbstd_group: group size of the minibatch-stddev layer (0: none).
    """

    def __init__(self, code_dim: int, resolution: int = 64, channels: int = 1, channel_base: int = 2048,
                 channel_max: int = 64, fine_codes: int = 0, fine_resolution: int = 32, mbstd_group: int = 4):
        super().__init__()
        top = _check_resolution(self, "resolution", resolution)
        if fine_codes:
            _check_resolution(self, "fine_resolution", fine_resolution)
            if not (fine_resolution <= resolution and 0 < fine_codes <= code_dim):
                raise ValueError(f"StyleGANDiscriminator: fine_resolution ({fine_resolution}) must not exceed the "
                                 f"resolution ({resolution}) and fine_codes ({fine_codes}) must be in [1, {code_dim}]")
        self.code_dim, self.fine_codes, self.fine_resolution = code_dim, fine_codes, fine_resolution
        self.resolution, self.channels, self.mbstd_group = resolution, channels, mbstd_group
        ch = lambda res: channels_at(res, channel_base, channel_max)  # noqa: E731
        self.from_rgb = EqualConv2d(channels, ch(resolution), 1)
        self.blocks = nn.ModuleList(DiscriminatorBlock(ch(2 ** k), ch(2 ** (k - 1))) for k in range(top, 2, -1))
        self.block_resolutions = [2 ** (k - 1) for k in range(top, 2, -1)]  # output side of each block
        self.conv = EqualConv2d(ch(4) + (1 if mbstd_group else 0), ch(4), 3)
        self.dense = EqualLinear(ch(4) * 16, ch(4), activation=True)
        self.logit = EqualLinear(ch(4), 1)
        self.codes = EqualLinear(ch(4), code_dim - fine_codes) if code_dim > fine_codes else None
        self.fine_head = EqualLinear(ch(fine_resolution) * fine_resolution ** 2, fine_codes) if fine_codes else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.channels, self.resolution, self.resolution):
            raise ValueError(f"StyleGANDiscriminator expects images of shape (B, {self.channels}, {self.resolution}, "
                             f"{self.resolution}), got {tuple(x.shape)}")
        h, fine = lrelu(self.from_rgb(x)), None
        if self.fine_head is not None and self.fine_resolution == self.resolution:
            fine = self.fine_head(h.flatten(1))
        for res, block in zip(self.block_resolutions, self.blocks):
            h = block(h)
            if self.fine_head is not None and res == self.fine_resolution:
                fine = self.fine_head(h.flatten(1))
        if self.mbstd_group:
            h = minibatch_stddev(h, self.mbstd_group)
        h = self.dense(lrelu(self.conv(h)).flatten(1))
        parts = ([self.codes(h)] if self.codes is not None else []) + ([fine] if fine is not None else [])
        return self.logit(h).reshape(-1), torch.cat(parts, dim=1) if parts else h.new_zeros(len(x), 0)
