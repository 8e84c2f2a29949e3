"""Eigenvalues of the game Jacobian: the phase factor and the conditioning factor.

    result = compute_spectrum(model, real, z, field="update", k=None)   # full spectrum (float64 on a CPU)
    result = compute_spectrum(model, real, z, k=20)                      # top-20 + the smallest real part
    result = compute_spectrum(model, real, z, k=6, dtype=torch.float32, tol=1e-4,
                              max_products=600, start=previous.start)   # the callback's diagnostic settings
    results = evaluate_spectra(model, data.eval_samples(64), SpectrumSettings(field="update", k=6, batch_size=64))

``SpectrumSettings`` is how a spectrum is evaluated wherever it is (``callbacks.JacobianSpectrum``
during training, ``python -m commands.spectrum CHECKPOINT`` for a saved checkpoint, a sweep's
members), and ``evaluate_spectra`` the one routine that evaluates it: the same settings give the
same eigenvalues in each.

``field="gradient"`` is the Jacobian H of the plain field xi = (grad_phi L_G, grad_theta L_D);
``field="update"`` the Jacobian of the direction the model's method follows (H for vanilla,
H + gamma * (...) for ConOpt/JARE, ...). Descent convention: a fixed point is locally stable for small
steps when every eigenvalue has a positive real part.

Every product is a vector-Jacobian product J^T v (one backward pass through the field's graph);
J^T has the eigenvalues of J. Under torch.distributed the products of the local shards are averaged,
so the spectrum is that of the global batch. With a ``preconditioner`` d (a vector, one entry per
parameter) the operator is diag(d) J: the Jacobian of the step an adaptive optimizer takes
(``runtime.optim.preconditioner``), whose products are J^T (d * v).
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Iterator, Literal

import numpy as np
import torch
import torch.distributed as dist
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from runtime import interrupt
from game.twoplayer import TwoPlayerGame, preserved_buffers
from runtime.distributed import from_rank0, rebuilt_error
from spectra.eigensolver import both_ends
from runtime.precision import full_float32

#: the vector field whose Jacobian a spectrum is of: H (xi itself) or the update direction u
SpectrumField = Literal["gradient", "update"]
#: above this many parameters a dense eigendecomposition stops being cheap on a CPU (its cost
#: grows with the cube; ``benchmarks/spectrum_cost.py`` measures it)
MAX_FULL_PARAMS = 2000
#: the eigenvalues of largest magnitude a top-k search finds when the settings leave k open and the
#: model is too large for a full spectrum
AUTO_K = 20
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class SpectrumSettings:
    """How a spectrum is evaluated, wherever it is: the callback during training, the offline
    command (which starts from the run's callback settings) and a sweep's members.

    Args:
        field: ``update`` (the Jacobian of the method's direction), ``gradient`` (H of xi) or
            ``both``. A method whose direction has no Jacobian of its own (the optimistic one) gets
            ``gradient`` for ``update``.
        k: eigenvalues of largest magnitude (one Krylov-Schur search); None: the full spectrum when
            the model has at most ``max_full_params`` parameters, else ``AUTO_K``.
        k_smallest: with top-k, how many of smallest real part besides.
        num_batches, batch_size: the evaluation data, ``num_batches`` fixed batches of
            ``batch_size`` real samples (the data's ``eval_samples``) whose fields are averaged.
        seed: the latent codes of those batches.
        dtype: the precision of the Jacobian products (``float32`` or ``float64``).
        tol: the search's relative tolerance.
        max_products: the budget of Jacobian products per field and evaluation (None: no limit).
        max_full_params: the largest model given a full spectrum when ``k`` is None.
    """

    field: Literal["update", "gradient", "both"] = "both"
    k: int | None = None
    k_smallest: int = 1
    num_batches: int = 1
    batch_size: int = 256
    seed: int = 4321
    dtype: Literal["float32", "float64"] = "float32"
    tol: float = 1e-4
    max_products: int | None = 600
    max_full_params: int = MAX_FULL_PARAMS

    def __post_init__(self) -> None:
        problems = []
        if self.field not in ("update", "gradient", "both"):
            problems.append(f"field must be 'update', 'gradient' or 'both', got {self.field!r}")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.k is not None and self.k < 1:
            problems.append(f"k must be a positive number of eigenvalues (or null for automatic), got {self.k}")
        if self.k_smallest < 1 or self.num_batches < 1 or self.batch_size < 2:
            problems.append(f"k_smallest and num_batches must be >= 1 and batch_size >= 2, got k_smallest="
                            f"{self.k_smallest}, num_batches={self.num_batches}, batch_size={self.batch_size}")
        if self.max_products is not None and self.max_products < 1:
            problems.append(f"max_products must be a positive number of products (or null for no limit), got "
                            f"{self.max_products}")
        if not self.tol > 0:
            problems.append(f"tol must be positive, got {self.tol}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def fields(self) -> list[str]:
        """The fields asked for."""
        return ["update", "gradient"] if self.field == "both" else [self.field]

    def fields_of(self, module: TwoPlayerGame) -> list[str]:
        """The fields evaluated for ``module`` (``update`` becomes ``gradient`` for a method whose
        direction has no Jacobian of its own)."""
        fields = self.fields
        if not module.method.has_jacobian:
            fields = ["gradient" if f == "update" else f for f in fields]
        return list(dict.fromkeys(fields))

    def k_of(self, num_params: int) -> int | None:
        """k for a model of ``num_params`` parameters (None: the full spectrum)."""
        if self.k is not None:
            return self.k
        return None if num_params <= self.max_full_params else AUTO_K

    def batches(self, module: TwoPlayerGame, real: Tensor, rank: int = 0, world: int = 1
                ) -> tuple[list[Tensor], list[Tensor]]:
        """This process's share of each evaluation batch: real samples (the first
        ``num_batches * batch_size`` of ``real``) and latent codes from ``seed``, on the model's
        device. Every process takes an equal share of each batch (a remainder is left out)."""
        n = self.batch_size * self.num_batches
        if len(real) < n:
            raise ValueError(f"the spectrum's {self.num_batches} batch(es) of {self.batch_size} need {n} real samples, "
                             f"got {len(real)}")
        z = module.sample_latent(n, torch.Generator().manual_seed(self.seed)).cpu()
        share = self.batch_size // world
        reals, zs = [], []
        for real_b, z_b in zip(real[:n].split(self.batch_size), z.split(self.batch_size)):
            reals.append(real_b[rank * share:(rank + 1) * share].to(module.device))
            zs.append(z_b[rank * share:(rank + 1) * share].to(module.device))
        return reals, zs


def evaluate_spectra(module: TwoPlayerGame, real: Tensor, settings: SpectrumSettings, *, rank: int = 0,
                     world: int = 1, preconditioner: Tensor | None = None,
                     starts: dict[str, dict[str, np.ndarray]] | None = None,
                     progress: Callable[[str, int], contextlib.AbstractContextManager] | None = None,
                     ) -> dict[str, tuple[SpectrumResult, float]]:
    """The spectra of ``settings`` for ``module`` at its current parameters, by field: (result,
    seconds). ``real`` holds the evaluation's real samples (``settings.batches`` takes this
    process's share); ``starts`` a warm start per field; ``progress(description, total)`` a
    context manager yielding a function called with the products done (a progress display)."""
    reals, zs = settings.batches(module, real, rank, world)
    n_params = sum(p.numel() for p in module.params_g + module.params_d)
    k = settings.k_of(n_params)
    out = {}
    for name in settings.fields_of(module):
        total = n_params if k is None else (settings.max_products or 1000)  # no budget: the bar is a guide
        begin = time.perf_counter()
        with (progress(f"spectrum of the {name} field", total) if progress else contextlib.nullcontext(None)) as advance:
            result = compute_spectrum(
                module, reals, zs, field=name, k=k, k_smallest=settings.k_smallest, dtype=settings.torch_dtype,
                tol=settings.tol, max_products=settings.max_products, max_full_params=settings.max_full_params,
                preconditioner=preconditioner, start=(starts or {}).get(name), on_product=advance)
        out[name] = (result, time.perf_counter() - begin)
    return out


@dataclass
class SpectrumResult:
    """Eigenvalues of a game Jacobian and the scalars that summarise them.

    In top-k mode only the computed eigenvalues (largest magnitude and smallest real part) enter the
    scalars: ``condition_number`` is then max|lambda| over the smallest |lambda| *found*, a lower
    bound of the true ratio, ``phase_factor`` a lower bound of the true maximum, and ``stable_step``
    an upper bound of the true one.
    Eigenvalues with |lambda| <= zero_tol * max|lambda| count as zero (they come from parameter
    symmetries, e.g. a bias in front of BatchNorm) and are left out of the factors; ``num_zero``
    says how many there were. ``products`` is the number of Jacobian products the search took,
    ``truncated`` whether the product budget ran out before every eigenvalue asked for converged
    (the ones that did are kept), and ``start`` the starting vectors for the next search near these
    parameters (``compute_spectrum(start=...)``; top-k only).
    """

    eigenvalues: np.ndarray
    field: str
    mode: str
    num_params: int
    zero_tol: float = 1e-9
    products: int = 0
    truncated: bool = False
    start: dict[str, np.ndarray] | None = None
    phase_factor: float = dc_field(init=False)
    condition_number: float = dc_field(init=False)
    spectral_radius: float = dc_field(init=False)
    min_real: float = dc_field(init=False)
    num_negative_real: int = dc_field(init=False)
    num_zero: int = dc_field(init=False)
    stable_step: float | None = dc_field(init=False)

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
        self.stable_step = stable_step(ev_nz)

    def contraction(self, lr: float) -> float:
        """max |1 - lr * lambda|: the predicted local contraction of one step x <- x - lr * u
        (below 1: the fixed point attracts; the closer to 1, the slower); NaN with no eigenvalues
        (a budget that ran out before any converged)."""
        return float(np.abs(1 - lr * self.eigenvalues).max()) if len(self.eigenvalues) else math.nan

    def scalars(self, lr: float | None = None) -> dict[str, float]:
        out = {"phase_factor": self.phase_factor, "condition_number": self.condition_number,
               "spectral_radius": self.spectral_radius, "min_real": self.min_real,
               "num_negative_real": float(self.num_negative_real)}
        if self.stable_step is not None:  # None: no step size contracts
            out["stable_step"] = self.stable_step
        if lr is not None:
            out["contraction"] = self.contraction(lr)
        return out


def stable_step(eigenvalues: np.ndarray) -> float | None:
    """The largest eta for which x <- x - eta * u contracts near the fixed point, None if none does.

    |1 - eta lambda| < 1 for every eigenvalue iff every Re lambda > 0 and
    eta < min_lambda 2 Re(lambda) / |lambda|^2 (|1 - eta lambda|^2 = 1 - 2 eta Re lambda + eta^2 |lambda|^2).
    Pass the nonzero eigenvalues: a zero one (a parameter symmetry) is a neutral direction, which
    no step size changes.
    """
    ev = np.asarray(eigenvalues, dtype=complex)
    if not len(ev) or np.any(ev.real <= 0):
        return None
    return float(np.min(2 * ev.real / np.abs(ev) ** 2))


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
        game = module.on_batch(module.unpack(real), z)
        xi = game.field(create_graph=True)
        if field == "gradient":
            u = [*xi.xi_g, *xi.xi_d]
        else:
            update = module.method.direction(game, xi, differentiable=True)
            u = [*update.g, *update.d]
        total = u if total is None else [a + b for a, b in zip(total, u)]
    return [t / len(batches) for t in total], [*module.params_g, *module.params_d]


class JacobianProducts:
    """J^T v for the Jacobian J of ``field`` with respect to ``params`` (called with a float64 vector);
    with ``scale`` (a vector d over the parameters) the products of diag(d) J, J^T (d * v); with
    ``distributed``, the average of the products over all processes. ``on_product(1)`` is called
    after each product (a progress display)."""

    def __init__(self, field: list[Tensor], params: list[Tensor], distributed: bool = False,
                 scale: Tensor | None = None, on_product: Callable[[int], None] | None = None):
        self.field, self.params, self.distributed = field, params, distributed
        self.n = sum(p.numel() for p in params)
        self.ref = params[0]
        if scale is not None and scale.shape != (self.n,):
            raise ValueError(f"the preconditioner has {scale.numel()} entries for {self.n} parameters")
        self.scale = None if scale is None else scale.to(self.ref)
        self.on_product = on_product or (lambda n: None)
        self.matvecs = 0

    def _local(self, v: Tensor) -> Tensor:
        """This process's J^T v; ``v`` is one vector (n,) or a batch of them (b, n)."""
        if self.scale is not None:
            v = v * self.scale
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

    def __call__(self, v: Tensor) -> Tensor:
        """J^T v for a float64 vector ``v``, in float64. On one process an interrupt stops the work
        here (``runtime.interrupt``); under several, the search's driver decides (``_topk``)."""
        if not self.distributed:
            interrupt.check()
        self.matvecs += 1
        out = self._mean(self._local(v.to(self.ref.dtype))).to(v.dtype)
        self.on_product(1)
        return out

    def dense(self, chunk: int = 256) -> np.ndarray:
        """J itself (diag(d) J with a scale) from rows J^T e_i, ``chunk`` rows per backward pass (a
        vmap over the backward), one row at a time for an op vmap lacks."""
        eye = torch.eye(self.n, dtype=self.ref.dtype, device=self.ref.device)
        rows = []
        for block in eye.split(chunk):
            if not self.distributed:
                interrupt.check()
            try:
                rows.append(self._local(block))
            except RuntimeError:
                rows.append(torch.stack([self._local(e) for e in block]))
            self.on_product(len(block))
        return self._mean(torch.cat(rows)).double().cpu().numpy()


# -- eigenvalues -----------------------------------------------------------------------------------


def _topk(ops: JacobianProducts, k: int, k_smallest: int, tol: float, seed: int, max_products: int | None,
          start: dict[str, np.ndarray] | None, floor: float) -> tuple[np.ndarray, bool, dict[str, np.ndarray]]:
    """The k eigenvalues of largest magnitude and the ``k_smallest`` of smallest real part, by one
    Krylov-Schur search on rank 0 (under torch.distributed the other ranks serve products until told
    to stop), whether it stopped short of them, and the vector to start the next search from."""
    n = ops.n
    for name, count in (("k", k), ("k_smallest", k_smallest)):
        if not 0 < count < n - 1:
            raise ValueError(f"{name} must be between 1 and {n - 2} for {n} parameters, got {count}")
    rank0 = not ops.distributed or dist.get_rank() == 0
    # the vectors travel in the products' precision: each rank rounds to it before its product anyway;
    # the first entry says what comes: 1 a vector to multiply, 0 the end, -1 rank 0's error
    wire = dict(dtype=ops.ref.dtype, device=ops.ref.device)
    if ops.distributed and not rank0:
        while True:
            msg = torch.empty(n + 1, **wire)
            dist.broadcast(msg, 0)
            code = float(msg[0])
            if code == 0:
                values, truncated = _from_rank0(None)
                return values, truncated, {}
            if code < 0:  # rank 0 stopped between two products (an error, an interrupt): stop alike
                raise rebuilt_error(*_from_rank0(None))
            ops(msg[1:].double())

    in_product = [False]

    def matvec(v: Tensor) -> Tensor:
        interrupt.check()  # the driver decides for every process, between two products
        if ops.distributed:
            msg = torch.cat([torch.ones(1, **wire), v.to(**wire)])
            dist.broadcast(msg, 0)
            v = msg[1:].double()  # rank 0 multiplies what the others received
        in_product[0] = True
        out = ops(v)
        in_product[0] = False
        return out

    v0 = (start or {}).get("krylov")
    if v0 is None or v0.shape != (n,) or not np.any(v0):
        v0 = np.random.default_rng(seed).standard_normal(n)
    try:
        # scipy's OpenBLAS threads would spin between the small dense steps and slow torch's threads
        # down several times over (docs/spectra.md, "What it costs")
        with threadpool_limits(1, user_api="blas"):
            found = both_ends(matvec, torch.as_tensor(v0, dtype=torch.float64, device=ops.ref.device), k_largest=k,
                              k_smallest=k_smallest, tol=tol, max_products=max_products, floor=floor,
                              basis_dtype=basis_dtype(ops.ref))
    except BaseException as err:
        # The other processes wait for rank 0's next message: tell them, unless the error came from
        # inside a product, whose all-reduce they are in (then the run's failure watch ends them).
        if ops.distributed and not in_product[0]:
            dist.broadcast(torch.full((n + 1,), -1.0, **wire), 0)
            _from_rank0((type(err), str(err)))
        raise
    # an eigenvalue can be both among the largest and the smallest real parts (in a small operator): keep it once
    values = np.concatenate([found.largest, [z for z in found.smallest if not np.any(found.largest == z)]])
    if ops.distributed:
        dist.broadcast(torch.zeros(n + 1, **wire), 0)
        _from_rank0((values, not found.converged))
    return values, not found.converged, {"krylov": found.restart}


def basis_dtype(products: Tensor) -> torch.dtype:
    """The Krylov basis's precision: float64, but float32 for float32 products on a GPU, where the basis
    of a large model (31 vectors of its parameters: 250 MB per million in float64) takes the
    memory training needs, and the products' own rounding is coarser than the basis's anyway."""
    return torch.float32 if products.dtype == torch.float32 and products.device.type == "cuda" else torch.float64


def _from_rank0(obj):
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _gather(t: Tensor) -> Tensor:
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def compute_spectrum(module: TwoPlayerGame, real: Tensor | list[Tensor], z: Tensor | list[Tensor], *, field: SpectrumField = "update",
                     k: int | None = None, k_smallest: int = 1, dtype: torch.dtype | Literal["auto"] | None = "auto",
                     tol: float = 1e-8, max_products: int | None = None, max_full_params: int = MAX_FULL_PARAMS,
                     seed: int = 0, start: dict[str, np.ndarray] | None = None, preconditioner: Tensor | None = None,
                     on_product: Callable[[int], None] | None = None) -> SpectrumResult:
    """Eigenvalues of the Jacobian of a two-player model's field at its current parameters.

    Args:
        module: a ``game.twoplayer.TwoPlayerGame`` (any method), or a model that composes one
            (``gans.TwoPlayerGAN``: the spectrum is then of the model's own losses).
        real: an evaluation batch of real samples, or a list of batches whose fields are averaged
            (the Jacobian of the average field). Under torch.distributed each process passes its shard.
        z: the latent codes of each batch, as ``real``.
        field: ``gradient`` (H of xi) or ``update`` (the Jacobian of the method's direction).
        k: ``None`` for the full spectrum (dense Jacobian, numpy eigvals); an int for the k
            eigenvalues of largest magnitude plus the ``k_smallest`` of smallest real part, by one
            Krylov-Schur search (``spectra.eigensolver``).
        dtype: the precision of the products: ``auto`` (float64 for a model on a CPU, float32 on a
            GPU, where the networks would otherwise run in float64, many times slower), a dtype, or
            ``None`` (the model's). The search itself always works in float64; float32 products
            move the eigenvalues by about 1e-7 of the spectral radius (docs/spectra.md) and cost less.
        tol: the relative tolerance of the search (top-k only; ``spectra.eigensolver``).
        max_products: a budget of Jacobian products for the top-k search (None: until converged);
            when it runs out, the eigenvalues that converged are returned (``result.truncated``).
        max_full_params: refuse a dense spectrum above this size (its cost grows like n^3).
        seed: the seed of the search's starting vector (top-k only).
        start: a previous result's ``start`` (a warm start near those parameters; top-k only).
        preconditioner: a vector d over the parameters (``params_g`` then ``params_d``): the
            spectrum of diag(d) J (``runtime.optim.preconditioner`` gives the one of an adaptive optimizer).
        on_product: called with the number of products done after each (a progress display).
    """
    reals, zs = (list(real), list(z)) if isinstance(real, (list, tuple)) else ([real], [z])
    if isinstance(dtype, str):
        if dtype != "auto":
            raise ValueError(f"dtype must be a torch dtype, None or 'auto', got {dtype!r}")
        dtype = torch.float64 if module.device.type == "cpu" else torch.float32
    options = dict(field=field, k=k, k_smallest=k_smallest, dtype=dtype, tol=tol, max_products=max_products,
                   max_full_params=max_full_params, seed=seed, start=start, preconditioner=preconditioner,
                   on_product=on_product)
    if not _distributed():
        return _spectrum(module, reals, zs, distributed=False, **options)
    if field == "update" and not module.method.direction_is_field:
        # A method's update (ConOpt, JARE, extragradient, ...) is not an average of per-shard
        # updates: evaluate the global batch on one process (exact), and hand its result to the others.
        # If rank 0 fails (or is interrupted), every process raises the same (``from_rank0``).
        reals, zs = [_gather(r) for r in reals], [_gather(t) for t in zs]
        return from_rank0(lambda: _spectrum(module, reals, zs, distributed=False, **options))
    return _spectrum(module, reals, zs, distributed=True, **options)


def zero_tolerance(dtype: torch.dtype) -> float:
    """|lambda| / max|lambda| below which an eigenvalue computed in ``dtype`` counts as zero."""
    return max(1e-9, 100 * torch.finfo(dtype).eps)


def _spectrum(module, reals, zs, *, field, k, k_smallest, dtype, tol, max_products, max_full_params, seed, start,
              preconditioner, on_product, distributed) -> SpectrumResult:
    with preserved_buffers(module.generator, module.discriminator), converted(module.generator, dtype), \
            converted(module.discriminator, dtype), full_float32():
        target = dtype or module.params_g[0].dtype
        batches = [(r.to(target), t.to(target)) for r, t in zip(reals, zs)]
        u, params = field_with_graph(module, batches, field)
        bad = torch.stack([~torch.isfinite(t).all() for t in u]).any().float().reshape(1)
        if distributed:  # each process sees its shard: all must raise, or none
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item():
            raise FloatingPointError(f"the {field} field is not finite (NaN or inf) at these parameters, so its "
                                     f"Jacobian has no spectrum: the model or the data has diverged")
        ops = JacobianProducts(u, params, distributed, scale=preconditioner, on_product=on_product)
        restart, truncated = None, False
        if k is None:
            if ops.n > max_full_params:
                raise ValueError(f"a full spectrum of {ops.n} parameters is a dense {ops.n}x{ops.n} eigenproblem "
                                 f"(limit max_full_params={max_full_params}); ask for the top eigenvalues with k=20")
            values, mode = np.linalg.eigvals(ops.dense()), "full"
        else:
            values, truncated, restart = _topk(ops, k, k_smallest, tol, seed, max_products, start,
                                               floor=zero_tolerance(target))
            mode = "topk"
    return SpectrumResult(values, field=field, mode=mode, num_params=ops.n, zero_tol=zero_tolerance(target),
                          products=ops.matvecs if mode == "topk" else ops.n, truncated=truncated, start=restart)
