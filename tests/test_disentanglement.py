"""MIG: the extremes it must reach and agreement with a plain histogram computation."""
import numpy as np
import pytest

from metrics.disentanglement import discretize, mig


def factors(n=20000, sizes=(3, 6, 10), seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, n) for s in sizes], axis=1)


def test_a_code_equal_to_the_factors_gives_one():
    f = factors()
    assert mig(f.astype(float), f) == pytest.approx(1.0, abs=2e-3)
    rng = np.random.default_rng(1)
    scrambled = f[:, [2, 0, 1]] + 0.01 * rng.random(f.shape)      # any order, a little noise within bins
    assert mig(scrambled, f) == pytest.approx(1.0, abs=2e-3)


def test_independent_noise_gives_zero():
    f = factors()
    noise = np.random.default_rng(2).normal(size=(len(f), 4))
    assert abs(mig(noise, f)) < 5e-3


def test_two_dimensions_copying_a_factor_leave_no_gap_for_it():
    f = factors()
    codes = np.stack([f[:, 0], f[:, 0], f[:, 1], f[:, 2]], axis=1).astype(float)
    # factor 0's gap is 0; factors 1 and 2 keep theirs: MIG = (0 + 1 + 1) / 3
    assert mig(codes, f) == pytest.approx(2 / 3, abs=2e-3)


def reference_mig(codes, f, num_bins):
    """Straight from the definition: joint histograms, I = sum p log(p / (p_x p_y))."""
    def mi(a, b):
        joint = np.zeros((a.max() + 1, b.max() + 1))
        np.add.at(joint, (a, b), 1)
        p = joint / joint.sum()
        px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
        nz = p > 0
        return float((p[nz] * np.log(p[nz] / (px @ py)[nz])).sum())

    d = discretize(codes, num_bins)
    gaps = []
    for k in range(f.shape[1]):
        infos = sorted((mi(d[:, j], f[:, k]) for j in range(codes.shape[1])), reverse=True)
        gaps.append((infos[0] - infos[1]) / mi(f[:, k], f[:, k]))
    return float(np.mean(gaps))


@pytest.mark.parametrize("num_bins", [5, 20])
def test_agrees_with_a_plain_computation_on_random_data(num_bins):
    rng = np.random.default_rng(3)
    f = factors(n=3000, seed=4)
    codes = np.stack([f[:, 0] + rng.normal(0, 0.7, len(f)), rng.normal(size=len(f)),
                      f[:, 1] * 0.3 + rng.normal(0, 0.5, len(f))], axis=1)
    value = mig(codes, f, num_bins)
    assert 0.05 < value < 0.9
    assert value == pytest.approx(reference_mig(codes, f, num_bins), abs=1e-12)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least 2 code dimensions"):
        mig(np.zeros((10, 1)), np.zeros((10, 2), dtype=int))
    with pytest.raises(ValueError, match="integer class indices"):
        mig(np.zeros((10, 2)), np.zeros((10, 2)))


def test_l2_error_and_factor_classes():
    from metrics.disentanglement import factor_classes, l2_error

    assert l2_error([[3.0, 4.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]) == pytest.approx(3.0)
    codes = np.array([[0.0, 1.0], [0.5, 0.25], [1.0, 0.75]])
    assert factor_classes(codes, [3, 5]).tolist() == [[0, 4], [1, 1], [2, 3]]
    assert factor_classes(codes, None, num_bins=2).tolist() == [[1, 2], [2, 1], [2, 2]]
