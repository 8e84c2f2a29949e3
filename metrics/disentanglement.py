"""Disentanglement metrics of Semi-StyleGAN: the mutual information gap (MIG) and the L2 error of codes.

MIG (Chen et al. 2018), as computed by disentanglement_lib (``evaluation/metrics/mig.py``): each
code dimension is discretised into ``num_bins`` equal-width bins over its range, the mutual
information of every (code dimension, factor) pair is taken with scikit-learn (natural log), and
for each factor the gap between the two most informative code dimensions is divided by the
factor's entropy; MIG is the mean over factors.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import mutual_info_score
from torch import Tensor, nn


def discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
    """Each column into ``num_bins`` equal-width bins over its own min..max (disentanglement_lib's
    ``histogram_discretizer``)."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        out[:, j] = np.digitize(codes[:, j], np.histogram(codes[:, j], num_bins)[1][:-1])
    return out


def mutual_information(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(C, K) matrix of I(code_j; factor_k) in nats."""
    return np.array([[mutual_info_score(factors[:, k], discrete_codes[:, j]) for k in range(factors.shape[1])]
                     for j in range(discrete_codes.shape[1])])


def mig(codes, factors, num_bins: int = 20) -> float:
    """The mutual information gap of ``codes`` (float array (N, C), C >= 2) about ``factors``
    (integer classes (N, K)): mean over factors of (largest - second largest I(code_j; factor)) /
    H(factor). 1 when each factor is captured by exactly one code dimension, 0 when none is (or
    when two dimensions share it). Factors with a single value (zero entropy) are left out."""
    codes, factors = np.asarray(codes, dtype=np.float64), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"codes must be (N, C) and factors (N, K) with the same N, got {codes.shape} and "
                         f"{factors.shape}")
    if codes.shape[1] < 2:
        raise ValueError(f"MIG needs at least 2 code dimensions (it compares the best two), got {codes.shape[1]}")
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"factors must be integer class indices, got dtype {factors.dtype}")
    info = mutual_information(discretize(codes, num_bins), factors)
    entropy = np.array([mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])
    top = np.sort(info, axis=0)[::-1]
    varying = entropy > 0
    return float(np.mean((top[0, varying] - top[1, varying]) / entropy[varying]))


def l2_error(predicted, codes) -> float:
    """Mean ||predicted - codes||_2 over the rows: the L2 metric (encoder on real images) and
    L2-gen (evaluator on generated images)."""
    predicted, codes = np.asarray(predicted, dtype=np.float64), np.asarray(codes, dtype=np.float64)
    return float(np.linalg.norm(predicted - codes, axis=1).mean())


def factor_classes(codes, sizes=None, num_bins: int = 20) -> np.ndarray:
    """Integer classes of normalised codes: ``round(c * (m - 1))`` for factors on a grid of m values
    (``sizes``), else ``num_bins`` equal-width bins."""
    codes = np.asarray(codes, dtype=np.float64)
    if sizes is None:
        return discretize(codes, num_bins)
    return np.rint(codes * (np.asarray(sizes) - 1)).astype(np.int64)


def _batched(fn, inputs: Tensor, batch_size: int) -> np.ndarray:
    return torch.cat([fn(chunk).float().cpu() for chunk in inputs.split(batch_size)]).numpy()


@torch.no_grad()
def scores(model, datamodule, evaluator: nn.Module | None = None, *, num_samples: int = 2000, num_bins: int = 20,
           batch_size: int = 128, seed: int = 0) -> dict:
    """MIG and L2 of a Semi-StyleGAN's encoder on ``num_samples`` real images whose factors are
    known, and MIG-gen and L2-gen of its generator: G(c, z) read back by ``evaluator`` (the
    independent E*; None: the model's own encoder). ``seed`` fixes the images and the codes."""
    sizes = model.code_sizes
    data = datamodule.eval_dataset()
    known = datamodule.evaluation_indices()
    picks = np.random.default_rng(seed).choice(len(known), min(num_samples, len(known)), replace=False)
    items = [data[int(known[i])] for i in picks]
    images = torch.stack([x[0] for x in items])
    codes = torch.stack([x[1] for x in items])[:, model.factor_indices].numpy()
    encoded = _batched(model.encode, images, batch_size)
    latents = model.sample_latent(num_samples, torch.Generator().manual_seed(seed)).cpu()
    asked = latents[:, :model.code_dim].numpy()
    if evaluator is not None:
        star = evaluator.to(model.device)
        read = lambda z: star(model.generate(z).to(next(star.parameters()).dtype))  # noqa: E731
    else:
        read = lambda z: model.encode(model.generate(z))  # noqa: E731
    read_back = _batched(read, latents, batch_size)
    return {"mig": mig(encoded, factor_classes(codes, sizes, num_bins), num_bins),
            "l2": l2_error(encoded, codes),
            "mig_gen": mig(read_back, factor_classes(asked, sizes, num_bins), num_bins),
            "l2_gen": l2_error(read_back, asked),
            # per factor mean |error|: some factors are not identifiable from the image (the
            # orientation of a square), which the norm over all factors hides
            "l2_per_factor": [round(float(e), 4) for e in np.abs(encoded - codes).mean(0)],
            "l2_gen_per_factor": [round(float(e), 4) for e in np.abs(read_back - asked).mean(0)],
            "num_samples": len(items)}
