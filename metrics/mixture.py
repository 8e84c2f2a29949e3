"""Mode coverage and sample quality on mixture-of-Gaussians data.

The metric follows the PacGAN/VEEGAN protocol: a generated sample is *high quality* when it lies
within ``threshold`` standard deviations of its nearest mode; a mode is *covered* when at least one
sample lies that close to it.
"""
from __future__ import annotations

import torch
from torch import Tensor


def mixture_metrics(samples: Tensor, modes: Tensor, std: float, threshold: float = 3.0) -> dict[str, float]:
    """Coverage metrics of ``samples`` (N, dim) against the mixture with centres ``modes`` (K, dim).

    Returns:
        modes_covered: number of modes with at least one sample within ``threshold * std``.
        high_quality: percentage of samples within ``threshold * std`` of their nearest mode.
        kl_uniform: KL(p || uniform) of the histogram p of nearest-mode assignments (0 when the
            samples spread evenly over the modes, log K when they all sit at one mode).
    """
    dist = torch.cdist(samples.detach().double().cpu(), modes.double().cpu())
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist < threshold * std
    k = len(modes)
    covered = torch.bincount(nearest[good], minlength=k) > 0
    p = torch.bincount(nearest, minlength=k).double() / len(samples)
    nonzero = p > 0
    kl = (p[nonzero] * (p[nonzero] * k).log()).sum()
    return {
        "modes_covered": int(covered.sum()),
        "high_quality": 100.0 * float(good.double().mean()),
        "kl_uniform": float(kl),
    }
