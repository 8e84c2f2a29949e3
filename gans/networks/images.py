"""Convolutional players for 32x32 and 64x64 images (CIFAR-10, CelebA), as in the JARE and SN-GAN papers.

Generators map z of shape (B, latent_dim) to images (B, channels, resolution, resolution) in [-1, 1];
discriminators map such images to one logit per sample, shape (B,).

* ``DCGAN*``: the JARE code's ``dcgan4_nobn`` (Nie & Patel 2019; Mescheder et al. 2017), no normalization.
* ``Conv4*``: the "standard CNN" of SN-GAN (Miyato et al. 2018, Table 3), the JARE code's ``conv4``.
* ``ResNet*``: the SN-GAN CIFAR-10 ResNet (Miyato et al. 2018, Table 4; after Gulrajani et al. 2017).

No activation is in-place: the second-order methods differentiate the forward pass twice.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


def _check_resolution(owner: object, resolution: int, ok: Callable[[int], bool], rule: str) -> None:
    if not (isinstance(resolution, int) and resolution > 0 and ok(resolution)):
        raise ValueError(f"{type(owner).__name__}: resolution must be {rule} (e.g. 32, 64), got {resolution!r}")


def _multiple_of_16(owner: object, resolution: int) -> int:
    """The side of the smallest feature map, resolution / 16."""
    _check_resolution(owner, resolution, lambda r: r % 16 == 0, "a multiple of 16")
    return resolution // 16


def _doublings_from_4(owner: object, resolution: int) -> int:
    """How many times 4x4 doubles to reach ``resolution`` (a power of two >= 16)."""
    _check_resolution(owner, resolution, lambda r: r >= 16 and r & (r - 1) == 0, "a power of two >= 16")
    return resolution.bit_length() - 3


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(module) if enabled else module


# -- DCGAN ---------------------------------------------------------------------------------------


class UpConv5x5(nn.ConvTranspose2d):
    """``ConvTranspose2d(k=5, stride=2, padding=2, output_padding=1)``: doubles H and W.

    Computed as padding=1 and cropping the first row and column, the same map: the third
    derivative that SGA takes fails in PyTorch for a transposed convolution with output_padding
    ("output_padding is not supported for non-transposed convolutions", torch 2.14).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 5, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x)[..., 1:, 1:]


class DCGANGenerator(nn.Module):
    """The JARE/ConOpt ``dcgan4_nobn`` generator: Linear -> (resolution/16)^2 x width, ReLU; four 5x5
    stride-2 transposed convolutions (width, width, width, channels), ReLU between them; tanh."""

    def __init__(self, latent_dim: int = 128, channels: int = 3, resolution: int = 32, width: int = 64):
        super().__init__()
        self.side, self.width = _multiple_of_16(self, resolution), width
        self.fc = nn.Linear(latent_dim, self.side ** 2 * width)
        layers: list[nn.Module] = []
        for out in (width, width, width, channels):
            layers += [UpConv5x5(width, out), nn.ReLU()]
        self.convs = nn.Sequential(*layers[:-1])

    def forward(self, z: Tensor) -> Tensor:
        h = F.relu(self.fc(z)).view(-1, self.width, self.side, self.side)
        return self.convs(h).tanh()


class DCGANDiscriminator(nn.Module):
    """The JARE/ConOpt ``dcgan4_nobn`` discriminator: four 5x5 stride-2 convolutions of ``width``
    filters, LeakyReLU(0.1); Linear -> 1 logit."""

    def __init__(self, channels: int = 3, resolution: int = 32, width: int = 64):
        super().__init__()
        side = _multiple_of_16(self, resolution)
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(channels if i == 0 else width, width, 5, stride=2, padding=2), nn.LeakyReLU(0.1)]
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(side ** 2 * width, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.convs(x).flatten(1)).squeeze(-1)


# -- SN-GAN standard CNN -------------------------------------------------------------------------


class Conv4Generator(nn.Module):
    """SN-GAN's standard CNN generator (Miyato et al. 2018, Table 3a): Linear -> 4x4 x width, BN,
    ReLU; 4x4 stride-2 transposed convolutions halving the channels up to ``resolution`` (three for
    32x32, four for 64x64), each with BN and ReLU; 3x3 convolution -> channels; tanh."""

    def __init__(self, latent_dim: int = 128, channels: int = 3, resolution: int = 32, width: int = 512,
                 batchnorm: bool = True):
        super().__init__()
        n_up = _doublings_from_4(self, resolution)
        if width % 2 ** n_up:
            raise ValueError(f"{type(self).__name__}: width must be divisible by 2^{n_up} = {2 ** n_up} at "
                             f"resolution {resolution} (the channels halve {n_up} times), got {width}")
        self.width = width
        # a bias in front of BatchNorm is cancelled by it
        self.fc = nn.Linear(latent_dim, 16 * width, bias=not batchnorm)
        layers: list[nn.Module] = [nn.BatchNorm2d(width) if batchnorm else nn.Identity(), nn.ReLU()]
        for i in range(n_up):
            c_in, c_out = width >> i, width >> (i + 1)
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=not batchnorm),
                       nn.BatchNorm2d(c_out) if batchnorm else nn.Identity(), nn.ReLU()]
        layers.append(nn.Conv2d(width >> n_up, channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.fc(z).view(-1, self.width, 4, 4)).tanh()


class Conv4Discriminator(nn.Module):
    """SN-GAN's standard CNN discriminator (Miyato et al. 2018, Table 3b): pairs of a 3x3 stride-1
    and a 4x4 stride-2 convolution with width, 2 width, 4 width filters (a fourth pair of 8 width for
    64x64), a last 3x3 convolution of 8 width on the 4x4 map, LeakyReLU(0.1) after each; Linear -> 1.

    ``spectral_norm`` normalizes every convolution and the linear layer (SN-GAN); ``batchnorm``
    adds BatchNorm2d after each convolution (the JARE code's ``conv4`` without ``_nobn``).
    """

    def __init__(self, channels: int = 3, resolution: int = 32, width: int = 64, spectral_norm: bool = False,
                 batchnorm: bool = False):
        super().__init__()
        n_down = _doublings_from_4(self, resolution)
        # (out channels, kernel, stride); doubling per pair, capped at 8 width as in the 32x32 net
        specs = [(width * min(2 ** i, 8), k, s) for i in range(n_down) for k, s in ((3, 1), (4, 2))]
        specs.append((width * 8, 3, 1))
        layers: list[nn.Module] = []
        c_in = channels
        for c_out, k, s in specs:
            layers += [_sn(nn.Conv2d(c_in, c_out, k, stride=s, padding=1, bias=not batchnorm), spectral_norm),
                       nn.BatchNorm2d(c_out) if batchnorm else nn.Identity(), nn.LeakyReLU(0.1)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.fc = _sn(nn.Linear(16 * c_in, 1), spectral_norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.convs(x).flatten(1)).squeeze(-1)


# -- SN-GAN ResNet -------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """A residual block of two 3x3 convolutions (Gulrajani et al. 2017; Miyato et al. 2018).

    Residual branch: [BN] ReLU, [up x2], conv3x3, [BN] ReLU, conv3x3, [avgpool /2]; shortcut:
    identity, or a 1x1 convolution (with the same resampling) when the block resamples or changes
    the channels. ``preactivate=False`` drops the first [BN] ReLU: SN-GAN's "optimized" first
    discriminator block, which sees the raw image.
    """

    def __init__(self, in_channels: int, out_channels: int, resample: Literal["up", "down"] | None = None, *,
                 batchnorm: bool = False, spectral_norm: bool = False, preactivate: bool = True):
        super().__init__()
        if resample not in ("up", "down", None):
            raise ValueError(f"resample must be 'up', 'down' or None, got {resample!r}")
        self.resample, self.preactivate = resample, preactivate
        self.bn1 = nn.BatchNorm2d(in_channels) if batchnorm and preactivate else nn.Identity()
        self.conv1 = _sn(nn.Conv2d(in_channels, out_channels, 3, padding=1), spectral_norm)
        self.bn2 = nn.BatchNorm2d(out_channels) if batchnorm else nn.Identity()
        self.conv2 = _sn(nn.Conv2d(out_channels, out_channels, 3, padding=1), spectral_norm)
        learnable = resample is not None or in_channels != out_channels
        self.shortcut = _sn(nn.Conv2d(in_channels, out_channels, 1), spectral_norm) if learnable else nn.Identity()

    def _resize(self, x: Tensor, where: Literal["up", "down"]) -> Tensor:
        if self.resample != where:
            return x
        return F.interpolate(x, scale_factor=2, mode="nearest") if where == "up" else F.avg_pool2d(x, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(x)) if self.preactivate else x
        h = self.conv1(self._resize(h, "up"))
        h = self._resize(self.conv2(F.relu(self.bn2(h))), "down")
        # average pooling commutes with the 1x1 convolution: pooling first is cheaper and serves both
        # SN-GAN orders (pool-then-conv in the optimized block, conv-then-pool in the others)
        return h + self.shortcut(self._resize(self._resize(x, "up"), "down"))


class ResNetGenerator(nn.Module):
    """SN-GAN's CIFAR-10 ResNet generator (Miyato et al. 2018, Table 4a): Linear -> 4x4 x width;
    log2(resolution / 4) up-sampling residual blocks of ``width`` channels (three for 32x32);
    BN, ReLU, 3x3 convolution -> channels; tanh."""

    def __init__(self, latent_dim: int = 128, channels: int = 3, resolution: int = 32, width: int = 256):
        super().__init__()
        n_up = _doublings_from_4(self, resolution)
        self.width = width
        self.fc = nn.Linear(latent_dim, 16 * width)
        self.blocks = nn.Sequential(*[ResBlock(width, width, "up", batchnorm=True) for _ in range(n_up)])
        self.bn = nn.BatchNorm2d(width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.blocks(self.fc(z).view(-1, self.width, 4, 4))
        return self.out(F.relu(self.bn(h))).tanh()


class ResNetDiscriminator(nn.Module):
    """SN-GAN's CIFAR-10 ResNet discriminator (Miyato et al. 2018, Table 4b): an optimized
    down-sampling block, log2(resolution / 16) more down-sampling blocks (one for 32x32, two for
    64x64), two blocks without resampling, all of ``width`` channels; ReLU, sum over the 8x8 map;
    Linear -> 1. ``spectral_norm`` normalizes every convolution and the linear layer."""

    def __init__(self, channels: int = 3, resolution: int = 32, width: int = 128, spectral_norm: bool = True):
        super().__init__()
        n_down = _doublings_from_4(self, resolution) - 1       # the final map is 8x8
        blocks = [ResBlock(channels, width, "down", spectral_norm=spectral_norm, preactivate=False)]
        blocks += [ResBlock(width, width, "down", spectral_norm=spectral_norm) for _ in range(n_down - 1)]
        blocks += [ResBlock(width, width, spectral_norm=spectral_norm) for _ in range(2)]
        self.blocks = nn.Sequential(*blocks)
        self.fc = _sn(nn.Linear(width, 1), spectral_norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.relu(self.blocks(x)).sum(dim=(2, 3))).squeeze(-1)
