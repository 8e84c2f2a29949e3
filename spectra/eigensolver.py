"""Eigenvalues at both ends of a real operator known only through products: Krylov-Schur.

    found = both_ends(matvec, v0, k_largest=6, k_smallest=1, tol=1e-4)
    found.largest, found.smallest, found.products, found.converged, found.restart

The spectrum diagnostics ask for two ends of a game Jacobian's spectrum: the eigenvalues of largest
magnitude (spectral radius, phase factor) and of smallest real part (stability, the stable step).
ARPACK (scipy's ``eigs``) serves one end per search, so each end's search rebuilds the Krylov basis
the other already had, and its implicit restarts keep a fixed number of vectors. Krylov-Schur
(Stewart, SIAM J. Matrix Anal. Appl. 23, 2001) restarts by truncating a sorted real Schur form, so
one basis can keep the wanted values of both ends at once, with fewer products for the same
accuracy (measured in docs/spectra.md, "What it costs"). scipy, torch and the other libraries this
project uses offer no Krylov-Schur, hence this file.

The algorithm keeps A V = V S + v b^T with V (n x p) orthonormal, v orthogonal to V and S small:
  1. Arnoldi extends V to m columns (classical Gram-Schmidt twice), S to m x m, b to beta e_m.
  2. The Ritz pairs (theta, y) of S; a wanted one has converged when |b^T y| <= tol * max(|theta|,
     floor * max|theta|) for a unit y (ARPACK's relative test; ``floor`` keeps values that count as
     zero from needing absolute accuracy).
  3. Restart: the real Schur form S = Q T Q^T sorted so that the kept Ritz values (the wanted ones
     and half the rest, from both ends) lead; V <- V Q[:, :p], S <- T[:p, :p], b <- Q[:, :p]^T b.
The basis lives on the products' device, in float64 unless told otherwise (``basis_dtype``: the
spectra take float32 on a GPU with float32 products, half the memory of a large model's basis);
the small dense algebra in scipy, in float64.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import Tensor


@dataclass
class BothEnds:
    """The converged Ritz values of largest magnitude (descending) and of smallest real part
    (ascending), whether every wanted one converged, the products taken, and a starting vector for
    a later search near this operator (the sum of the wanted Ritz vectors' real and imaginary parts)."""

    largest: np.ndarray
    smallest: np.ndarray
    converged: bool
    products: int
    restart: np.ndarray


def basis_size(n: int, wanted: int) -> int:
    """Krylov vectors m for ``wanted`` values of an n x n operator: room for them, as many again to
    restart with, and at least 30 (the clustered small end of a GAN's spectrum converges in fewer
    products in all with a larger basis: docs/spectra.md)."""
    return min(n, max(2 * wanted + 8, 30))


def _orthogonalise(basis: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """w minus its projection on the orthonormal columns of ``basis`` (twice: one pass loses
    orthogonality when w lies close to their span), and the coefficients."""
    h = basis.T @ w
    w = w - basis @ h
    h2 = basis.T @ w
    return w - basis @ h2, h + h2


def both_ends(matvec: Callable[[Tensor], Tensor], v0: Tensor, *, k_largest: int, k_smallest: int, tol: float,
              max_products: int | None = None, floor: float = 0.0, m: int | None = None,
              basis_dtype: torch.dtype = torch.float64) -> BothEnds:
    """The ``k_largest`` eigenvalues of largest magnitude and the ``k_smallest`` of smallest real part
    of the real n x n operator ``matvec`` (vectors of n entries in ``basis_dtype``), from the start
    ``v0``.

    Stops when every wanted value has converged (module docstring, step 2) or when the next
    extension would pass ``max_products``; then only the converged ones are returned. ``m`` is the
    basis size (``basis_size`` by default): the basis holds n x (m + 1) numbers of ``basis_dtype``.
    """
    n = v0.numel()
    wanted = k_largest + k_smallest
    if wanted + 2 > n:
        raise ValueError(f"{wanted} eigenvalues of a {n} x {n} operator need a basis of {wanted + 2} vectors")
    if max_products is not None and max_products < wanted + 2:
        raise ValueError(f"a budget of {max_products} products cannot hold one search for {wanted} eigenvalues: "
                         f"give max_products at least {wanted + 2} (k + k_smallest + 2)")
    m = max(min(n, m or basis_size(n, wanted), max_products or n), wanted + 2)
    V = torch.zeros(n, m + 1, dtype=basis_dtype, device=v0.device)
    V[:, 0] = (v0 / torch.linalg.vector_norm(v0)).to(basis_dtype)
    S = np.zeros((m + 1, m))
    generator = torch.Generator(device=v0.device).manual_seed(0)
    p = products = 0
    while True:
        for j in range(p, m):
            w, h = _orthogonalise(V[:, :j + 1], matvec(V[:, j]).to(basis_dtype))
            products += 1
            beta = float(torch.linalg.vector_norm(w))
            S[:j + 1, j] = h.cpu().numpy()
            if beta <= 1e-12 * max(1.0, float(np.abs(S[:j + 1, :j + 1]).max())) and j + 1 < n:
                # an invariant subspace: its Ritz values are exact; go on from a fresh direction
                w = _orthogonalise(V[:, :j + 1], torch.randn(n, dtype=basis_dtype, device=v0.device,
                                                             generator=generator))[0]
                beta, S[j + 1, j] = float(torch.linalg.vector_norm(w)), 0.0
            else:
                S[j + 1, j] = beta
            if beta > 0:  # zero only when the basis spans the whole space (m = n), which ends the search
                V[:, j + 1] = w / beta
        H, b = S[:m, :m].copy(), S[m, :m].copy()  # copies: the restart overwrites S
        theta, Y = scipy.linalg.eig(H)
        Y /= np.linalg.norm(Y, axis=0)
        residual = np.abs(b @ Y)
        radius = float(np.abs(theta).max())
        done = residual <= tol * np.maximum(np.abs(theta), floor * radius)
        largest = np.argsort(-np.abs(theta), kind="stable")[:k_largest]
        smallest = np.argsort(theta.real, kind="stable")[:k_smallest]
        converged = bool(done[largest].all() and done[smallest].all()) or m == n
        T, Q, p = _sorted_schur(H, theta, k_largest, k_smallest, m)
        if converged or (max_products is not None and products + m - p > max_products):
            y = Y[:, np.concatenate([largest, smallest])]
            restart = V[:, :m] @ torch.as_tensor((y.real + y.imag).sum(axis=1), dtype=basis_dtype, device=v0.device)
            return BothEnds(largest=theta[largest][done[largest]], smallest=theta[smallest][done[smallest]],
                            converged=converged, products=products, restart=restart.cpu().numpy())
        V[:, :p] = V[:, :m] @ torch.as_tensor(Q[:, :p], dtype=basis_dtype, device=v0.device)
        V[:, p] = V[:, m]
        S[:] = 0
        S[:p, :p] = T[:p, :p]
        S[p, :p] = b @ Q[:, :p]


def _sorted_schur(H: np.ndarray, theta: np.ndarray, k_largest: int, k_smallest: int,
                  m: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The real Schur form H = Q T Q^T whose leading p x p block holds the Ritz values a restart
    keeps: the wanted ones and half the others, split between the two ends (conjugate pairs stay
    together, p <= m - 2)."""
    extra = (m - k_largest - k_smallest) // 2
    magnitude = np.sort(np.abs(theta))[::-1][k_largest + extra // 2 - 1]
    real = np.sort(theta.real)[k_smallest + extra - extra // 2 - 1]
    slack = 1e-12 * float(np.abs(theta).max())
    T, Q, p = scipy.linalg.schur(H, output="real",
                                 sort=lambda re, im: bool(np.hypot(re, im) >= magnitude - slack or re <= real + slack))
    p = min(p, m - 2)
    if T[p, p - 1] != 0:  # the cut would split a 2 x 2 block (a conjugate pair): keep one fewer
        p -= 1
    return T, Q, p
