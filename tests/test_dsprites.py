"""Procedural dSprites: the exact factor grid and storage order, deterministic rendering in which
each factor does what it says, and a fixed labelled subset of the requested size."""
import numpy as np
import pytest
import torch

from datamodules.dsprites import FACTOR_SIZES, DSprites, DSpritesImages, factor_values, labelled_mask, render


def centroid(image):
    ys, xs = np.nonzero(image)
    return xs.mean(), ys.mean()


def test_grid_sizes_and_storage_order():
    values = factor_values()
    assert [len(v) for v in values] == [3, 6, 40, 32, 32] and FACTOR_SIZES == (3, 6, 40, 32, 32)
    assert values[1][0] == 0.5 and values[1][-1] == 1.0 and values[2][-1] == pytest.approx(2 * np.pi)
    data = DSpritesImages(np.zeros(737280, dtype=bool))
    assert len(data) == 737280 == 3 * 6 * 40 * 32 * 32
    assert data.classes(1).tolist() == [0, 0, 0, 0, 1]                 # pos_y varies fastest
    assert data.classes(32).tolist() == [0, 0, 0, 1, 0]
    assert data.classes(245760).tolist() == [1, 0, 0, 0, 0]             # the original bases
    assert data.classes(737279).tolist() == [2, 5, 39, 31, 31]


def test_rendering_is_binary_deterministic_and_each_factor_acts():
    base = [2, 5, 5, 16, 16]                                            # a large heart in the middle
    image = render(base)
    assert image.shape == (64, 64) and set(np.unique(image)) == {0, 1}
    assert np.array_equal(image, render(base))
    # position moves the sprite right / down, monotonically
    xs = [centroid(render([2, 5, 5, px, 16]))[0] for px in (0, 10, 20, 31)]
    ys = [centroid(render([2, 5, 5, 16, py]))[1] for py in (0, 10, 20, 31)]
    assert np.all(np.diff(xs) > 3) and np.all(np.diff(ys) > 3)
    # scale grows the area; shapes differ at the same pose; orientation turns the heart
    areas = [render([1, s, 0, 16, 16]).sum() for s in range(6)]
    assert np.all(np.diff(areas) > 0)
    assert len({render([s, 5, 5, 16, 16]).tobytes() for s in range(3)}) == 3
    assert (render([2, 5, 0, 16, 16]) != render([2, 5, 20, 16, 16])).sum() > 50
    # every sprite stays inside the frame
    for classes in ([2, 5, 0, 0, 0], [0, 5, 5, 31, 31], [1, 5, 10, 0, 31]):
        img = render(classes)
        assert img[0].sum() + img[-1].sum() + img[:, 0].sum() + img[:, -1].sum() == 0


def test_labelled_subset_is_fixed_and_of_the_requested_size():
    a, b = DSprites(labelled_fraction=0.005, seed=1), DSprites(labelled_fraction=0.005, seed=1)
    assert a.mask.sum() == round(0.005 * 737280) == 3686
    assert np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.mask, DSprites(labelled_fraction=0.005, seed=2).mask)
    assert labelled_mask(1000, 0.0, 0).sum() == 0 and labelled_mask(1000, 1e-6, 0).sum() == 1
    index = int(np.flatnonzero(a.mask)[0])
    image, codes, labelled = a.dataset[index]
    assert labelled and image.shape == (1, 64, 64) and set(image.unique().tolist()) == {-1.0, 1.0}
    torch.testing.assert_close(codes, torch.tensor(a.dataset.classes(index) / (np.array(FACTOR_SIZES) - 1)).float())
    with pytest.raises(ValueError, match="labelled_fraction must be in"):
        DSprites(labelled_fraction=1.5)


def test_batches_carry_images_codes_and_labelled_flags():
    data = DSprites(labelled_fraction=0.5, batch_size=8, seed=3)
    images, codes, labelled = next(iter(data.train_dataloader()))
    assert images.shape == (8, 1, 64, 64) and codes.shape == (8, 5) and labelled.dtype == torch.bool
    assert 0 <= codes.min() and codes.max() <= 1
    assert data.sample_shape == (1, 64, 64) and data.fingerprint() == DSprites(labelled_fraction=0.5, seed=3).fingerprint()


def test_the_coloured_variant_paints_object_and_background():
    from datamodules.dsprites import BACKGROUND_COLOURS, OBJECT_COLOURS

    data = DSprites(coloured=True, labelled_fraction=0.001, seed=0)
    assert data.factor_sizes == (3, 6, 40, 32, 32, 4, 4) and data.sample_shape == (3, 64, 64)
    assert len(data.dataset) == 737280 * 16 and data.mask.sum() == round(0.001 * 737280 * 16)
    index = int(np.ravel_multi_index((2, 5, 5, 16, 16, 1, 3), data.factor_sizes))
    image, codes, _ = data.dataset[index]
    mask = torch.from_numpy(render([2, 5, 5, 16, 16])).bool()
    rgb = (image + 1) / 2
    torch.testing.assert_close(rgb[:, mask].mean(1), torch.tensor(OBJECT_COLOURS[1]))
    torch.testing.assert_close(rgb[:, ~mask].mean(1), torch.tensor(BACKGROUND_COLOURS[3]))
    torch.testing.assert_close(codes[-2:], torch.tensor([1 / 3, 1.0]))
    assert DSprites().factor_sizes == FACTOR_SIZES                       # the grey set is unchanged


def test_a_separate_labelled_batch_draws_only_labelled_items_and_slices_by_rank():
    from datamodules.batches import WithLabelledBatches

    data = DSprites(labelled_fraction=0.001, labelled_batch_size=4, batch_size=8, seed=3)
    images, codes, labelled, l_images, l_codes = next(iter(data.train_dataloader()))
    assert images.shape == (8, 1, 64, 64) and l_images.shape == (4, 1, 64, 64) and l_codes.shape == (4, 5)
    labelled_codes = {tuple(data.dataset[int(i)][1].tolist()) for i in data.labelled_indices()}
    assert all(tuple(c.tolist()) in labelled_codes for c in l_codes)
    one = data.train_batches(0, 1, lambda: 0)
    halves = [data.train_batches(r, 2, lambda: 0) for r in (0, 1)]
    assert isinstance(one, WithLabelledBatches)
    whole = WithLabelledBatches(one.main, data.dataset, data.labelled_indices(), 8, data.seed).batch(5)
    parts = [h.batch(5) for h in halves]
    torch.testing.assert_close(torch.cat([p[4] for p in parts]), whole[4])   # the global labelled batch, split
    torch.testing.assert_close(parts[0][4], halves[0].batch(5)[4])           # a function of (seed, iteration)
    with pytest.raises(ValueError, match="needs labelled items"):
        next(iter(DSprites(labelled_fraction=0.0, labelled_batch_size=2, batch_size=4).train_dataloader()))


def test_half_resolution_and_evaluation_keys():
    small = DSprites(resolution=32, labelled_fraction=0.01)
    image, _, _ = small.dataset[7]
    assert image.shape == (1, 32, 32) and small.sample_shape == (1, 32, 32)
    assert len(small.evaluation_indices()) == 737280                 # every factor is known
    # the evaluator encoder's cache key ignores which items training may use
    assert small.factor_digest() == DSprites(resolution=32, labelled_fraction=0.05, seed=9).factor_digest()
    assert small.factor_digest() != DSprites(resolution=64).factor_digest()
    with pytest.raises(ValueError, match="resolution 64 .* or 32"):
        DSprites(resolution=48)
