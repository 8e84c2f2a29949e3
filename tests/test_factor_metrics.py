"""The disentanglement callback's numbers on models whose answers are known, the traversal latents,
and the independent evaluator encoder (trained, better than guessing, cached)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from callbacks.factor_metrics import DisentanglementMetrics, traversal_latents
from datamodules import DSprites
from metrics.evaluator import cached_evaluator, train_evaluator

SIZES = [4, 5, 3]


class CodesAsImages:
    """Items (image, codes, labelled) where the 'image' is the code itself, (K, 1, 1)."""

    def __init__(self, n=600, seed=0):
        rng = np.random.default_rng(seed)
        classes = np.stack([rng.integers(0, m, n) for m in SIZES], axis=1)
        self.codes = torch.tensor(classes / (np.array(SIZES) - 1), dtype=torch.float32)

    def eval_dataset(self):
        return [(c.view(-1, 1, 1), c, True) for c in self.codes]

    def evaluation_indices(self):
        return np.arange(len(self.codes))


class ReadsCodes:
    """A 'model' whose encoder reads the code image and whose generator draws the code image of c
    (``controls=True``) or of a constant (``controls=False``)."""

    code_dim, code_sizes, factor_indices, device = 3, SIZES, [0, 1, 2], torch.device("cpu")

    def __init__(self, controls=True):
        self.controls = controls

    def sample_latent(self, n, generator=None):
        u = torch.rand(n, 3, generator=generator)
        sizes = torch.tensor(SIZES, dtype=torch.float32)
        return torch.cat([(u * sizes).floor() / (sizes - 1), torch.randn(n, 2, generator=generator)], dim=1)

    def generate(self, latent):
        codes = latent[:, :3] if self.controls else torch.full_like(latent[:, :3], 0.5)
        return codes.reshape(-1, 3, 1, 1)

    def encode(self, images):
        return images.flatten(1)


@pytest.mark.parametrize("controls", [True, False])
def test_scores_of_a_perfect_encoder_and_a_generator_with_or_without_control(controls):
    metrics = DisentanglementMetrics(num_samples=500, evaluator="own")
    record = metrics.score(ReadsCodes(controls), CodesAsImages())
    assert record["mig"] == pytest.approx(1.0, abs=0.02) and record["l2"] == pytest.approx(0.0, abs=1e-6)
    if controls:
        assert record["mig_gen"] == pytest.approx(1.0, abs=0.02) and record["l2_gen"] == pytest.approx(0.0, abs=1e-6)
    else:
        assert record["mig_gen"] == pytest.approx(0.0, abs=1e-6) and record["l2_gen"] > 0.3


def test_traversal_latents_sweep_one_code_per_row():
    model = ReadsCodes()
    latents = traversal_latents(model, steps=4, seed=1).reshape(3, 4, -1)
    base = model.sample_latent(1, torch.Generator().manual_seed(1))[0]
    for k in range(3):
        torch.testing.assert_close(latents[k, :, k], torch.linspace(0, 1, 4))
        others = [j for j in range(5) if j != k]
        torch.testing.assert_close(latents[k][:, others], base[others].expand(4, -1))


def test_evaluator_beats_guessing_and_is_cached(tmp_path, monkeypatch):
    data = DSprites(resolution=32, labelled_fraction=0.001)
    indices = np.random.default_rng(0).choice(len(data.dataset), 3000, replace=False)
    net, error = train_evaluator(data.dataset, indices, [3, 4], channels=1, steps=300, held_out=500)
    codes = torch.stack([data.dataset[int(i)][1][[3, 4]] for i in indices])
    guessing = float((codes - codes.mean(0)).norm(dim=1).mean())                 # ~0.38 for uniform x, y
    assert error < 0.5 * guessing, (error, guessing)

    first, err1 = cached_evaluator(data, [3, 4], tmp_path, steps=5)
    monkeypatch.setattr("metrics.evaluator.train_evaluator", lambda *a, **k: pytest.fail("trained twice"))
    again, err2 = cached_evaluator(DSprites(resolution=32, labelled_fraction=0.01), [3, 4], tmp_path, steps=5)
    assert err1 == err2 and all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                                   again.state_dict().values()))
