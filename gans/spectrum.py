"""Eigenvalues of the game Jacobian: the phase factor and the conditioning factor.

    result = compute_spectrum(model, real, z, field="update", k=None)   # full spectrum, float64
    result = compute_spectrum(model, real, z, k=20)                      # ARPACK, top-20 + smallest real parts

(``python -m commands.spectrum CHECKPOINT`` for a saved checkpoint; ``callbacks.JacobianSpectrum``
during training.)

``field="gradient"`` is the Jacobian H of the plain field xi = (grad_phi L_G, grad_theta L_D);
``field="update"`` the Jacobian of the direction the model's method follows (H for vanilla,
H + gamma * (...) for ConOpt/JARE, ...). Descent convention: a fixed point is locally stable for small
steps when every eigenvalue has a positive real part.

Every product is a vector-Jacobian product J^T v (one backward pass through the field's graph);
J^T has the eigenvalues of J. Under torch.distributed the products of the local shards are averaged,
so the spectrum is that of the global batch.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Iterator, Literal

import numpy as np
import torch
import torch.distributed as dist
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigs
from torch import Tensor, nn

from gans.base import TwoPlayerGAN, preserved_buffers

#: the vector field whose Jacobian a spectrum is of: H (xi itself) or the update direction u
SpectrumField = Literal["gradient", "update"]
#: above this many parameters a dense eigendecomposition stops being cheap on a CPU (its cost
#: grows with the cube; ``benchmarks/spectrum_cost.py`` measures it)
MAX_FULL_PARAMS = 2000


@dataclass
class SpectrumResult:
    """Eigenvalues of a game Jacobian and the scalars that summarise them.

    In top-k mode only the computed eigenvalues (largest magnitude and smallest real part) enter the
    scalars: ``condition_number`` is then max|lambda| over the smallest |lambda| *found*, a lower
    bound of the true ratio, and ``phase_factor`` a lower bound of the true maximum.
    Eigenvalues with |lambda| <= zero_tol * max|lambda| count as zero (they come from parameter
    symmetries, e.g. a bias in front of BatchNorm) and are left out of both factors; ``num_zero``
    says how many there were.
    """

    eigenvalues: np.ndarray
    field: str
    mode: str
    num_params: int
    zero_tol: float = 1e-9
    phase_factor: float = dc_field(init=False)
    condition_number: float = dc_field(init=False)
    spectral_radius: float = dc_field(init=False)
    min_real: float = dc_field(init=False)
    num_negative_real: int = dc_field(init=False)
    num_zero: int = dc_field(init=False)

    def __post_init__(self) -> None:
        ev = np.asarray(self.eigenvalues, dtype=complex)
        self.eigenvalues = ev
        mags = np.abs(ev)
        self.spectral_radius = float(mags.max()) if len(ev) else 0.0
        nonzero = mags > self.zero_tol * self.spectral_radius
        self.num_zero = int((~nonzero).sum())
        ev_nz = ev[nonzero]
        self.min_real = float(ev.real.min()) if len(ev) else 0.0
        self.num_negative_real = int((ev_nz.real < 0).sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.abs(ev_nz.imag) / np.abs(ev_nz.real)
        self.phase_factor = float(ratios.max()) if len(ratios) else 0.0
        self.condition_number = float(mags[nonzero].max() / mags[nonzero].min()) if nonzero.any() else math.inf

    def contraction(self, lr: float) -> float:
        """max |1 - lr * lambda|: the predicted local contraction of one step x <- x - lr * u
        (below 1: the fixed point attracts; the closer to 1, the slower)."""
        return float(np.abs(1 - lr * self.eigenvalues).max())

    def scalars(self, lr: float | None = None) -> dict[str, float]:
        out = {"phase_factor": self.phase_factor, "condition_number": self.condition_number,
               "spectral_radius": self.spectral_radius, "min_real": self.min_real,
               "num_negative_real": float(self.num_negative_real)}
        if lr is not None:
            out["contraction"] = self.contraction(lr)
        return out


# -- the field and its products -------------------------------------------------------------------


@contextlib.contextmanager
def converted(module: nn.Module, dtype: torch.dtype | None) -> Iterator[None]:
    """Run ``module`` in ``dtype`` and put back the very same parameter and buffer tensors afterwards
    (bit for bit: the optimizer state and the training run are untouched)."""
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    if dtype is None or all(t.dtype == dtype for t in tensors):
        yield
        return
    originals = [t.data for t in tensors]
    try:
        for t in tensors:
            t.data = t.data.to(dtype)
        yield
    finally:
        for t, data in zip(tensors, originals):
            t.data = data


def field_with_graph(module, batches: list[tuple[Tensor, Tensor]], field: SpectrumField) -> tuple[list[Tensor], list[Tensor]]:
    """The chosen field averaged over ``batches`` of (real, z), with its graph, and the parameters."""
    if field not in ("gradient", "update"):
        raise ValueError(f"field must be 'gradient' or 'update', got {field!r}")
    total = None
    for real, z in batches:
        game = module.game(module.unpack(real), z)
        xi = game.field(create_graph=True)
        if field == "gradient":
            u = [*xi.xi_g, *xi.xi_d]
        else:
            update = module.method.direction(game, xi, differentiable=True)
            u = [*update.g, *update.d]
        total = u if total is None else [a + b for a, b in zip(total, u)]
    return [t / len(batches) for t in total], [*module.params_g, *module.params_d]


class JacobianProducts:
    """J^T v for the Jacobian J of ``field`` with respect to ``params``, as float64 numpy vectors;
    with ``distributed``, the average of the products over all processes."""

    def __init__(self, field: list[Tensor], params: list[Tensor], distributed: bool = False):
        self.field, self.params, self.distributed = field, params, distributed
        self.n = sum(p.numel() for p in params)
        self.ref = params[0]
        self.matvecs = 0

    def _local(self, v: Tensor) -> Tensor:
        """This process's J^T v; ``v`` is one vector (n,) or a batch of them (b, n)."""
        lead, chunks, start = v.shape[:-1], [], 0
        for t in self.field:
            chunks.append(v[..., start:start + t.numel()].reshape(*lead, *t.shape))
            start += t.numel()
        grads = torch.autograd.grad(self.field, self.params, grad_outputs=chunks, retain_graph=True,
                                    allow_unused=True, is_grads_batched=bool(lead))
        return torch.cat([torch.zeros(*lead, p.numel(), dtype=v.dtype, device=v.device) if g is None
                          else g.reshape(*lead, -1) for g, p in zip(grads, self.params)], dim=-1)

    def _mean(self, t: Tensor) -> Tensor:
        if self.distributed:
            dist.all_reduce(t)
            t /= dist.get_world_size()
        return t

    def rmatvec(self, v: np.ndarray) -> np.ndarray:
        self.matvecs += 1
        vt = torch.as_tensor(np.ascontiguousarray(v.real), dtype=self.ref.dtype, device=self.ref.device)
        return self._mean(self._local(vt)).double().cpu().numpy()

    def dense(self, chunk: int = 256) -> np.ndarray:
        """J itself from rows J^T e_i, ``chunk`` rows per backward pass (a vmap over the backward), one
        row at a time for an op vmap lacks."""
        eye = torch.eye(self.n, dtype=self.ref.dtype, device=self.ref.device)
        rows = []
        for block in eye.split(chunk):
            try:
                rows.append(self._local(block))
            except RuntimeError:
                rows.append(torch.stack([self._local(e) for e in block]))
        return self._mean(torch.cat(rows)).double().cpu().numpy()


# -- eigenvalues -----------------------------------------------------------------------------------


def _topk(ops: JacobianProducts, k: int, tol: float, seed: int) -> np.ndarray:
    """ARPACK on rank 0; under torch.distributed the other ranks serve products until told to stop."""
    n = ops.n
    if not 0 < k < n - 1:
        raise ValueError(f"k must be between 1 and {n - 2} for {n} parameters, got {k}")
    rank0 = not ops.distributed or dist.get_rank() == 0
    if ops.distributed and not rank0:
        while True:
            msg = torch.empty(n + 1, dtype=torch.float64, device=ops.ref.device)
            dist.broadcast(msg, 0)
            if msg[0] == 0:
                return _broadcast_array(None)
            ops.rmatvec(msg[1:].cpu().numpy())

    def matvec(v):
        if ops.distributed:
            msg = torch.cat([torch.ones(1, dtype=torch.float64), torch.as_tensor(v.real, dtype=torch.float64)])
            dist.broadcast(msg.to(ops.ref.device), 0)
        return ops.rmatvec(v)

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)

    def search(which: str, count: int) -> np.ndarray:
        try:
            return eigs(op, k=count, which=which, tol=tol, v0=v0, maxiter=max(300, 20 * count),
                        return_eigenvectors=False)
        except ArpackNoConvergence as err:  # keep what converged rather than fail a training run
            return err.eigenvalues

    values = np.concatenate([search("LM", k), search("SR", min(k, 6))])
    # the two searches overlap: keep each eigenvalue once
    keep = [i for i, z in enumerate(values) if not np.any(np.isclose(values[:i], z, rtol=1e-8, atol=0))]
    values = values[keep]
    if ops.distributed:
        dist.broadcast(torch.zeros(n + 1, dtype=torch.float64, device=ops.ref.device), 0)
        return _broadcast_array(values)
    return values


def _broadcast_array(values: np.ndarray | None) -> np.ndarray:
    box = [values]
    dist.broadcast_object_list(box, 0)
    return box[0]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _gather(t: Tensor) -> Tensor:
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def compute_spectrum(module: TwoPlayerGAN, real: Tensor | list[Tensor], z: Tensor | list[Tensor], *, field: SpectrumField = "update",
                     k: int | None = None, dtype: torch.dtype | None = torch.float64, tol: float = 1e-8,
                     max_full_params: int = MAX_FULL_PARAMS, seed: int = 0) -> SpectrumResult:
    """Eigenvalues of the Jacobian of a two-player model's field at its current parameters.

    Args:
        module: a ``gans.TwoPlayerGAN`` (any method).
        real: an evaluation batch of real samples, or a list of batches whose fields are averaged
            (the Jacobian of the average field). Under torch.distributed each process passes its shard.
        z: the latent codes of each batch, as ``real``.
        field: ``gradient`` (H of xi) or ``update`` (the Jacobian of the method's direction).
        k: ``None`` for the full spectrum (dense Jacobian, numpy eigvals); an int for the k
            eigenvalues of largest magnitude plus the (up to 6) of smallest real part, by ARPACK.
        dtype: the precision of the computation (float64 by default; ``None`` keeps the model's).
        tol: ARPACK's relative tolerance (top-k only).
        max_full_params: refuse a dense spectrum above this size (its cost grows like n^3).
        seed: the seed of ARPACK's starting vector (top-k only).
    """
    reals, zs = (list(real), list(z)) if isinstance(real, (list, tuple)) else ([real], [z])
    options = dict(field=field, k=k, dtype=dtype, tol=tol, max_full_params=max_full_params, seed=seed)
    if not _distributed():
        return _spectrum(module, reals, zs, distributed=False, **options)
    if field == "update" and not module.method.direction_is_field:
        # A method's update (ConOpt, JARE, extragradient, ...) is not an average of per-shard
        # updates: evaluate the global batch on one process (exact), and hand its result to the others.
        reals, zs = [_gather(r) for r in reals], [_gather(t) for t in zs]
        box = [_spectrum(module, reals, zs, distributed=False, **options) if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(box, 0)
        return box[0]
    return _spectrum(module, reals, zs, distributed=True, **options)


def _spectrum(module, reals, zs, *, field, k, dtype, tol, max_full_params, seed, distributed) -> SpectrumResult:
    with preserved_buffers(module.generator, module.discriminator), converted(module.generator, dtype), \
            converted(module.discriminator, dtype):
        target = dtype or module.params_g[0].dtype
        batches = [(r.to(target), t.to(target)) for r, t in zip(reals, zs)]
        u, params = field_with_graph(module, batches, field)
        if not all(torch.isfinite(t).all() for t in u):
            raise FloatingPointError(f"the {field} field is not finite (NaN or inf) at these parameters, so its "
                                     f"Jacobian has no spectrum: the model or the data has diverged")
        ops = JacobianProducts(u, params, distributed)
        if k is None:
            if ops.n > max_full_params:
                raise ValueError(f"a full spectrum of {ops.n} parameters is a dense {ops.n}x{ops.n} eigenproblem "
                                 f"(limit max_full_params={max_full_params}); ask for the top eigenvalues with k=20")
            values, mode = np.linalg.eigvals(ops.dense()), "full"
        else:
            values, mode = _topk(ops, k, tol, seed), "topk"
    return SpectrumResult(values, field=field, mode=mode, num_params=ops.n)
