import math

import pytest
import torch

from datamodules import MixtureOfGaussians, grid_modes, ring_modes
from metrics.mixture import mixture_metrics


def test_ring_and_grid_modes():
    ring = ring_modes(8, 2.0)
    assert ring.shape == (8, 2)
    torch.testing.assert_close(ring.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(ring[2], torch.tensor([0.0, 2.0], dtype=torch.float64), atol=1e-12, rtol=0)
    grid = grid_modes()
    assert grid.shape == (25, 2)
    assert sorted(set(grid[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


def test_datamodule_defaults_and_fresh_reproducible_batches():
    dm = MixtureOfGaussians(kind="grid", batch_size=64, batches_per_epoch=3, seed=7)
    assert dm.std == 0.05 and dm.sample_shape == (2,)
    assert MixtureOfGaussians().std == 0.01
    loader = dm.train_dataloader()
    first = list(loader)
    assert len(loader) == 3 and len(first) == 3 and first[0].shape == (64, 2)
    assert not torch.equal(first[0], first[1])                              # fresh each batch
    again = list(dm.train_dataloader())
    assert all(torch.equal(a, b) for a, b in zip(first, again))             # reproducible
    loader.dataset.position = lambda: 4                                     # a run resumed at iteration 4
    assert [b.tolist() for b in loader] == [loader.dataset.batch(i).tolist() for i in (4, 5)]
    # samples sit at the modes: 98.9% within 3 std in 2-d; 96% is 4 binomial std below that for 192 samples
    stats = mixture_metrics(torch.cat(first), dm.modes, dm.std)
    assert stats["high_quality"] > 96 and stats["modes_covered"] > 15


def test_processes_slice_the_global_batch():
    """Two processes with batch 32 see exactly what one process with batch 64 sees."""
    dm = MixtureOfGaussians(batch_size=64, batches_per_epoch=2)
    whole = dm.train_dataloader().dataset
    halves = [type(whole)(dm.modes, dm.std, 32, dm.seed, 2, rank=r, world=2) for r in (0, 1)]
    for i in (0, 1, 63, 64, 130):  # within a block of batches and across its edges
        assert torch.equal(torch.cat([h.batch(i) for h in halves]), whole.batch(i))


def test_a_batch_depends_on_its_index_only():
    """Batches are drawn in blocks, but batch i is the same whatever was asked before it (resume)."""
    data = MixtureOfGaussians(batch_size=16, batches_per_epoch=200).train_dataloader().dataset
    forward = [data.batch(i) for i in range(130)]
    fresh = type(data)(data.modes, data.std, 16, data.seed, 200)
    for i in (129, 64, 63, 0, 65):
        assert torch.equal(fresh.batch(i), forward[i])
    assert len({tuple(b[0].tolist()) for b in forward}) == 130  # no batch repeats another
    forward[3].add_(1.0)  # a batch is the caller's own tensor
    assert not torch.equal(data.batch(3), forward[3])


def test_seeds_give_distinct_streams_and_a_separate_evaluation_set():
    batches = {seed: MixtureOfGaussians(seed=seed, batches_per_epoch=2).train_dataloader().dataset for seed in (0, 1)}
    assert not torch.equal(batches[0].batch(0), batches[1].batch(0))
    assert not torch.equal(batches[0].batch(0), batches[0].batch(1))
    eval_set = MixtureOfGaussians(seed=0, batch_size=256).eval_samples(256)
    assert not any(torch.equal(eval_set, batches[0].batch(i)[:256]) for i in range(2))


def test_datamodule_errors():
    with pytest.raises(ValueError, match="unknown kind 'spiral'"):
        MixtureOfGaussians(kind="spiral")
    with pytest.raises(ValueError, match="needs the mode centres"):
        MixtureOfGaussians(kind="custom", std=0.1)


def test_metrics_by_hand():
    modes = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    samples = torch.tensor([[0.05, 0.0], [0.0, 0.29], [0.0, 0.31], [10.0, 0.1], [5.0, 5.0], [9.0, 9.0]])
    out = mixture_metrics(samples, modes, std=0.1)
    assert out["modes_covered"] == 2                   # modes 0 and 1
    assert out["high_quality"] == pytest.approx(100 * 3 / 6)
    # nearest modes: 0, 0, 0, 1, 0 (tie -> first), 3
    p = torch.tensor([4, 1, 0, 1]) / 6
    kl = sum(pi * math.log(pi * 4) for pi in p.tolist() if pi > 0)
    assert out["kl_uniform"] == pytest.approx(kl)


def test_metrics_extremes():
    modes = ring_modes(8)
    perfect = modes.repeat(10, 1)
    assert mixture_metrics(perfect, modes, 0.01) == {"modes_covered": 8, "high_quality": 100.0, "kl_uniform": 0.0}
    collapsed = modes[:1].repeat(50, 1)
    out = mixture_metrics(collapsed, modes, 0.01)
    assert out["modes_covered"] == 1 and out["kl_uniform"] == pytest.approx(math.log(8))
