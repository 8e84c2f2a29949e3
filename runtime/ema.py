"""An exponential moving average of a network's weights (StyleGAN2-ADA's generator EMA), as a small
part a training loop calls once per iteration."""
from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """w_ema <- beta w_ema + (1 - beta) w after an iteration that saw ``num_images`` images, with
    beta = 0.5 ** (num_images / half_life): the average's half-life is ``half_life`` images
    (StyleGAN2-ADA's ``ema_kimg`` times 1000). With ``rampup``, early in training the half-life is
    at most ``rampup`` times the images seen so far (StyleGAN2-ADA uses 0.05), so the average
    forgets the random initialisation quickly. Buffers (BatchNorm statistics) are copied."""

    def __init__(self, half_life: float, rampup: float | None = None):
        if not half_life > 0:
            raise ValueError(f"ema_half_life must be a positive number of images (or None for no EMA), got {half_life}")
        self.half_life, self.rampup = half_life, rampup

    def beta(self, num_images: int, iteration: int) -> float:
        half_life = self.half_life
        if self.rampup is not None:
            half_life = min(half_life, max(iteration * num_images * self.rampup, 1e-8))
        return 0.5 ** (num_images / half_life)

    @torch.no_grad()
    def update(self, average: nn.Module, net: nn.Module, num_images: int, iteration: int) -> None:
        """Move ``average`` towards ``net`` after iteration ``iteration`` (``num_images`` images)."""
        beta = self.beta(num_images, iteration)
        for p_ema, p in zip(average.parameters(), net.parameters()):
            p_ema.lerp_(p.detach(), 1 - beta)
        for b_ema, b in zip(average.buffers(), net.buffers()):
            b_ema.copy_(b)
