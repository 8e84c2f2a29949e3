"""spectra/eigensolver.py: Krylov-Schur for both ends of a spectrum, against dense eigenvalues."""
import numpy as np
import pytest
import torch

from spectra.eigensolver import basis_size, both_ends


def operator_with(eigenvalues: np.ndarray, seed: int = 0) -> np.ndarray:
    """A real non-normal matrix with exactly these eigenvalues (complex ones in conjugate pairs):
    a real block-diagonal form in a random, non-orthogonal basis."""
    rng = np.random.default_rng(seed)
    blocks, done = [], set()
    for i, z in enumerate(eigenvalues):
        if i in done:
            continue
        if z.imag == 0:
            blocks.append(np.array([[z.real]]))
        else:
            blocks.append(np.array([[z.real, z.imag], [-z.imag, z.real]]))
            done.add(int(np.flatnonzero(eigenvalues == np.conj(z))[0]))
    n = sum(len(b) for b in blocks)
    D, start = np.zeros((n, n)), 0
    for b in blocks:
        D[start:start + len(b), start:start + len(b)] = b
        start += len(b)
    X = np.eye(n) + 0.3 * rng.standard_normal((n, n)) / np.sqrt(n)
    return X @ D @ np.linalg.inv(X)


def gan_like_spectrum(n: int, seed: int = 0) -> np.ndarray:
    """Rotational pairs of large imaginary part, a real bulk, and a tight cluster near zero with one
    negative real part: the shape of a trained GAN's update Jacobian."""
    rng = np.random.default_rng(seed)
    pairs = rng.uniform(0.05, 0.3, 10) + 1j * rng.uniform(0.5, 3.0, 10)
    cluster = np.concatenate([[-0.02, -0.019], rng.uniform(-0.01, 0.02, 8)])
    bulk = rng.uniform(0.05, 1.5, n - 2 * len(pairs) - len(cluster))
    return np.concatenate([pairs, pairs.conj(), cluster, bulk]).astype(complex)


def search(A: np.ndarray, **options):
    At = torch.as_tensor(A)
    calls = []

    def matvec(v):
        calls.append(1)
        return At @ v

    v0 = torch.as_tensor(np.random.default_rng(1).standard_normal(len(A)))
    return both_ends(matvec, v0, **options), len(calls)


def test_both_ends_agree_with_dense_eigenvalues():
    truth = gan_like_spectrum(300)
    A = operator_with(truth)
    found, calls = search(A, k_largest=6, k_smallest=2, tol=1e-10)
    assert found.converged and found.products == calls
    largest = truth[np.argsort(-np.abs(truth))[:6]]
    np.testing.assert_allclose(np.sort(np.abs(found.largest))[::-1], np.abs(largest), rtol=1e-8)
    np.testing.assert_allclose(np.sort(found.smallest.real), [-0.02, -0.019], atol=1e-9)
    for z in found.largest:  # each one an eigenvalue, not only its magnitude
        assert np.abs(truth - z).min() <= 1e-8


def test_the_tolerance_is_relative_to_each_eigenvalue():
    """ARPACK's test: a loose tol leaves the values near zero as accurate, relative to themselves,
    as the large ones; a tighter tol takes more products."""
    truth = gan_like_spectrum(300, seed=2)
    A = operator_with(truth, seed=2)
    loose, _ = search(A, k_largest=6, k_smallest=1, tol=1e-4)
    tight, _ = search(A, k_largest=6, k_smallest=1, tol=1e-10)
    assert loose.converged and loose.products < tight.products
    assert abs(loose.smallest[0] - (-0.02)) <= 1e-3 * 0.02


def test_a_budget_is_never_exceeded_and_only_converged_values_come_back():
    A = operator_with(gan_like_spectrum(300))
    free, _ = search(A, k_largest=6, k_smallest=1, tol=1e-12)
    for budget in (10, 31, 45, 80):
        cut, calls = search(A, k_largest=6, k_smallest=1, tol=1e-12, max_products=budget)
        assert calls == cut.products <= budget
        assert not cut.converged and len(cut.largest) + len(cut.smallest) < 7
    assert free.products > 80 and free.converged


def test_a_conjugate_pair_is_never_split_by_a_restart():
    """Every wanted eigenvalue is one of a conjugate pair on the circle of largest magnitude: a
    restart that cut a 2 x 2 block would lose the factorisation's relation and the accuracy."""
    angles = np.linspace(0.3, 1.4, 20)
    pairs = 2.0 * np.exp(1j * angles)
    truth = np.concatenate([pairs, pairs.conj(), np.linspace(0.1, 1.0, 160)]).astype(complex)
    found, _ = search(operator_with(truth, seed=3), k_largest=7, k_smallest=1, tol=1e-10, m=16)
    assert found.converged
    np.testing.assert_allclose(np.abs(found.largest), 2.0, rtol=1e-8)
    assert abs(found.smallest[0] - 0.1) <= 1e-9


def test_an_invariant_start_goes_on_from_a_fresh_direction():
    """v0 inside a 3-dimensional invariant subspace: Arnoldi breaks down after 3 products; the search
    must still find the ends of the whole spectrum."""
    A = np.diag(np.arange(1.0, 41.0))
    A[0, 39] = 0.5  # not normal
    v0 = torch.zeros(40, dtype=torch.float64)
    v0[1:4] = 1.0
    found = both_ends(lambda v: torch.as_tensor(A) @ v, v0, k_largest=2, k_smallest=1, tol=1e-10, m=12)
    assert found.converged
    np.testing.assert_allclose(np.sort(found.largest.real), [39.0, 40.0], rtol=1e-9)
    assert found.smallest[0].real == pytest.approx(1.0, abs=1e-9)


def test_an_operator_no_larger_than_the_basis_is_solved_exactly():
    truth = np.array([3.0, 1 + 2j, 1 - 2j, 0.5, -0.1, 2.0], dtype=complex)
    found, calls = search(operator_with(truth), k_largest=2, k_smallest=1, tol=1e-12)
    assert found.converged and calls == basis_size(6, 3) == 6
    np.testing.assert_allclose(np.abs(found.largest), [3.0, np.sqrt(5)], rtol=1e-10)
    assert found.smallest[0].real == pytest.approx(-0.1, abs=1e-12)


def test_the_restart_vector_warm_starts_a_nearby_search():
    truth = gan_like_spectrum(300, seed=4)
    A = operator_with(truth, seed=4)
    first, _ = search(A, k_largest=6, k_smallest=1, tol=1e-6)
    nearby = A + 1e-4 * np.random.default_rng(5).standard_normal(A.shape) / np.sqrt(len(A))
    cold, _ = search(nearby, k_largest=6, k_smallest=1, tol=1e-6)
    warm = both_ends(lambda v: torch.as_tensor(nearby) @ v, torch.as_tensor(first.restart), k_largest=6,
                     k_smallest=1, tol=1e-6)
    assert warm.converged
    np.testing.assert_allclose(np.sort(np.abs(warm.largest)), np.sort(np.abs(cold.largest)), rtol=1e-5)
    assert warm.smallest[0] == pytest.approx(cold.smallest[0], abs=1e-5)


def test_a_restart_that_would_cut_a_conjugate_pair_keeps_one_vector_fewer():
    """Every Ritz value but one ties on the circle |lambda| = 2, so the restart selects more than the
    m - 2 vectors it may keep; the cut at m - 2 falls inside a 2 x 2 block, and one fewer is kept."""
    from spectra.eigensolver import _sorted_schur

    pairs = 2.0 * np.exp(1j * np.array([0.5, 1.0, 1.5, 2.0]))
    theta = np.concatenate([[2.0], pairs, pairs.conj(), [0.1]]).astype(complex)
    H = operator_with(theta, seed=6)
    T, Q, p = _sorted_schur(H, np.linalg.eigvals(H), k_largest=1, k_smallest=1, m=10)
    assert p == 7 and T[p, p - 1] == 0
    np.testing.assert_allclose(Q @ T @ Q.T, H, atol=1e-12)
    kept = np.linalg.eigvals(T[:p, :p])
    np.testing.assert_allclose(np.sort_complex(kept), np.sort_complex(kept.conj()), atol=1e-12)  # pairs whole


def test_a_float32_basis_finds_the_same_ends_within_the_tolerance():
    """On a GPU with float32 products the basis is float32 (half the memory of a large model's):
    the wanted eigenvalues agree with the float64 basis's within the search's tolerance."""
    matrix = torch.as_tensor(operator_with(gan_like_spectrum(120, seed=3), seed=3))
    v0 = torch.randn(120, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = both_ends(lambda v: matrix @ v, v0, k_largest=6, k_smallest=1, tol=1e-6)
    single = both_ends(lambda v: (matrix.float() @ v.float()), v0, k_largest=6, k_smallest=1, tol=1e-4,
                       basis_dtype=torch.float32)
    radius = np.abs(exact.largest).max()
    for ours, theirs in ((single.largest, exact.largest), (single.smallest, exact.smallest)):
        assert len(ours) == len(theirs)
        assert max(np.abs(ours - theirs)) <= 1e-3 * radius
