"""The Frechet distance's statistics: torchmetrics' ``FrechetInceptionDistance`` and
``KernelInceptionDistance`` states, fed with features extracted beforehand (by any extractor),
with a reference set loaded from cached statistics."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance


class Precomputed(nn.Module):
    """The metrics' "extractor": the features are extracted before ``update``."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def feature_statistics(features: Tensor) -> dict[str, Tensor]:
    """The sufficient statistics of a Gaussian fit to ``features`` (N, d): their sum, the sum of
    their outer products and their count (what FrechetInceptionDistance keeps per set)."""
    return {"sum": features.sum(0), "cov_sum": features.T @ features, "n": torch.tensor(len(features))}


def frechet_with_reference(stats: dict[str, Tensor], device, holds_reference: bool = True) -> FrechetInceptionDistance:
    """A FrechetInceptionDistance whose real set is ``stats``. Under several processes only one
    holds the reference (``holds_reference``): torchmetrics sums the states over processes."""
    fid = FrechetInceptionDistance(feature=Precomputed(stats["sum"].shape[0]), reset_real_features=False).to(device)
    scale = 1 if holds_reference else 0
    fid.real_features_sum = stats["sum"].to(device) * scale
    fid.real_features_cov_sum = stats["cov_sum"].to(device) * scale
    fid.real_features_num_samples = stats["n"].to(device) * scale
    return fid


def kernel_with_reference(features: Tensor, device, subsets: int, subset_size: int) -> KernelInceptionDistance:
    """A KernelInceptionDistance whose real features are this process's block of the reference
    (contiguous blocks gathered in rank order: the same reference order as one process)."""
    kid = KernelInceptionDistance(feature=Precomputed(features.shape[1]), subsets=subsets, subset_size=subset_size,
                                  reset_real_features=False).to(device)
    kid.real_features = [features.to(device)]
    return kid
