"""What a Jacobian spectrum costs during training, before and after the diagnostic settings.

    python -m benchmarks.spectrum_cost            # the numbers quoted in the README (about 20 minutes)
    python -m benchmarks.spectrum_cost --smoke    # tiny sizes, seconds (CI)

Trains the default jobs (``python train.py --model jare`` and ``--model conopt``: 4 x 128 ring
networks, 10,000 iterations, the ring preset's JacobianSpectrum every 5,000) and, at the
iterations the preset evaluates, times beside it one spectrum of each field with top-6 and top-20
in the settings of before (ARPACK: float64 products, tol 1e-8, six smallest real parts, its default
Arnoldi vectors, its BLAS threads as they come), of the previous release (ARPACK at the callback's
settings, at least 20 Arnoldi vectors per search) and after (the callback's defaults: one
Krylov-Schur search for both ends), with the eigenvalues' difference; every 1,000 iterations a
warm and a cold start side by side; at 5,000 the levers one at a time. Then the digits DCGAN: one
top-6 spectrum against its iteration. Costs are in training iterations: seconds over the median
time of an iteration of the same run. Prints tables and writes benchmarks/results/spectrum_cost.json.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time

import numpy as np
import pytorch_lightning as pl
import torch
from scipy.sparse.linalg import LinearOperator, eigs
from threadpoolctl import threadpool_limits

from benchmarks.common import quiet, write_results
from callbacks import JacobianSpectrum
from gans.base import preserved_buffers
from spectra.spectrum import JacobianProducts, SpectrumResult, compute_spectrum, converted, field_with_graph, zero_tolerance

#: the callback's defaults (callbacks/jacobian_spectrum.py)
AFTER = dict(dtype=torch.float32, tol=1e-4, k_smallest=1, max_products=600)
#: ARPACK at the diagnostic settings (the previous release: its fewest Arnoldi vectors per search)
ARPACK_AFTER = dict(dtype=torch.float32, tol=1e-4, k_smallest=1, min_vectors=20, spinning_blas=False)


def before(k: int) -> dict:
    """The first release's search: ARPACK, float64 products, tol 1e-8, six smallest real parts, its
    default Arnoldi vectors and its BLAS threads left to spin beside torch's."""
    return dict(dtype=torch.float64, tol=1e-8, k_smallest=min(k, 6), min_vectors=0, spinning_blas=True)


def arpack_spectrum(module, reals, zs, field: str, k: int, k_smallest: int, dtype, tol: float, min_vectors: int,
                    spinning_blas: bool) -> SpectrumResult:
    """The top-k spectrum as the releases before Krylov-Schur searched it: one ARPACK search
    (scipy's ``eigs``) for the largest magnitudes, a second for the smallest real parts, each with
    max(2 count + 1, ``min_vectors``) Arnoldi vectors."""
    with preserved_buffers(module.generator, module.discriminator), converted(module.generator, dtype), \
            converted(module.discriminator, dtype):
        u, params = field_with_graph(module, [(r.to(dtype), t.to(dtype)) for r, t in zip(reals, zs)], field)
        ops = JacobianProducts(u, params)
        op = LinearOperator((ops.n, ops.n), dtype=np.float64,
                            matvec=lambda v: ops(torch.as_tensor(v.real, dtype=torch.float64)).numpy())
        v0 = np.random.default_rng(0).standard_normal(ops.n)
        found = []
        limit = contextlib.nullcontext() if spinning_blas else threadpool_limits(1, user_api="blas")
        with limit:
            for which, count in (("LM", k), ("SR", k_smallest)):
                ncv = min(ops.n - 1, max(2 * count + 1, min_vectors))
                found.append(eigs(op, k=count, which=which, tol=tol, v0=v0, ncv=ncv, maxiter=max(300, 20 * count),
                                  return_eigenvectors=False))
    largest, smallest = found
    same = 10 * max(tol, 1e-6) * np.abs(largest).max()
    values = np.concatenate([largest, [z for z in smallest if not np.any(np.abs(largest - z) <= same)]])
    return SpectrumResult(values, field=field, mode="topk", num_params=ops.n, zero_tol=zero_tolerance(dtype),
                          products=ops.matvecs)


def timed_spectrum(module, batches, field: str, k: int, **options):
    """A spectrum and its seconds: ARPACK's (``arpack_spectrum``) when ``options`` name its vectors."""
    start = time.perf_counter()
    if "min_vectors" in options:
        result = arpack_spectrum(module, *batches, field=field, k=k, **options)
    else:
        result = compute_spectrum(module, *batches, field=field, k=k, **options)
    return result, time.perf_counter() - start


def difference(result, reference) -> float:
    """The largest distance from an eigenvalue of ``result`` to the nearest of ``reference``, over
    the reference's spectral radius (both top-k sets: the largest magnitudes and the smallest real part)."""
    ref = reference.eigenvalues
    return float(max(np.abs(ref - z).min() for z in result.eigenvalues) / np.abs(ref).max())


class Beside(pl.Callback):
    """Stamps every iteration's start and, at the preset's evaluations (every ``every`` iterations and
    at the start), measures the spectra of before and after; every ``warm_every`` a warm and a cold
    start; at ``levers_at`` the levers one at a time."""

    rows: list[dict] = []
    stamps: list[float] = []

    def __init__(self, every: int = 5000, warm_every: int = 1000, levers_at: int = 5000, ks: tuple = (6, 20)):
        self.every, self.warm_every, self.levers_at, self.ks = every, warm_every, levers_at, ks
        self._start = None

    def on_train_start(self, trainer, pl_module) -> None:
        Beside.rows, Beside.stamps = [], []
        self.measure(trainer, pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        Beside.stamps.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.measure(trainer, pl_module)

    def measure(self, trainer, module) -> None:
        it = trainer.global_step
        spectrum = next(c for c in trainer.callbacks if isinstance(c, JacobianSpectrum))
        batches = spectrum.settings.batches(module, spectrum._real_samples(trainer), trainer.global_rank, trainer.world_size)
        if self.every and it % self.every == 0:
            for field in ("gradient", "update"):
                for k in self.ks:
                    old, old_s = timed_spectrum(module, batches, field, k, **before(k))
                    arpack, arpack_s = timed_spectrum(module, batches, field, k, **ARPACK_AFTER)
                    new, new_s = timed_spectrum(module, batches, field, k, **AFTER)
                    Beside.rows.append({"case": "before/after", "iteration": it, "field": field, "k": k,
                                        "before_s": old_s, "before_products": old.products, "arpack_s": arpack_s,
                                        "arpack_products": arpack.products, "after_s": new_s,
                                        "after_products": new.products, "difference": difference(new, old),
                                        "min_real_difference": abs(new.min_real - old.min_real) / old.spectral_radius,
                                        "truncated": new.truncated})
        if self.warm_every and it % self.warm_every == 0:
            cold, cold_s = timed_spectrum(module, batches, "update", 6, **AFTER)
            warm, warm_s = timed_spectrum(module, batches, "update", 6, start=self._start, **AFTER)
            self._start = warm.start
            Beside.rows.append({"case": "warm start", "iteration": it, "cold_s": cold_s, "cold_products": cold.products,
                                "warm_s": warm_s, "warm_products": warm.products, "difference": difference(warm, cold)})
        if it == self.levers_at:
            self.levers(it, module, batches)

    def levers(self, it: int, module, batches) -> None:
        """Before, then one setting changed at a time towards after (update field, top-6)."""
        one_thread = {**before(6), "spinning_blas": False}
        f32 = {**one_thread, "dtype": torch.float32}
        steps = [("before", before(6)),
                 ("+ ARPACK's BLAS on one thread", one_thread),
                 ("+ float32 products", f32),
                 ("+ tol 1e-4", {**f32, "tol": 1e-4}),
                 ("+ 1 smallest, >= 20 vectors", ARPACK_AFTER),
                 ("+ Krylov-Schur, both ends (after)", AFTER)]
        reference = None
        for name, options in steps:
            result, seconds = timed_spectrum(module, batches, "update", 6, **options)
            reference = reference or result
            Beside.rows.append({"case": "lever", "iteration": it, "lever": name, "seconds": seconds,
                                "products": result.products, "difference": difference(result, reference)})


def run(options: list[str], folder: str) -> tuple[pl.Trainer, list[dict], float]:
    """A train.py run with ``Beside``; its rows and the median seconds of an iteration."""
    from commands import train

    trainer = train.main([*options, "--trainer.default_root_dir", folder, "--trainer.enable_progress_bar", "false"])
    from benchmarks.spectrum_cost import Beside as registered  # the class train.py instantiated by its path

    gaps = np.diff(registered.stamps)
    return trainer, list(registered.rows), float(statistics.median(gaps)) if len(gaps) else float("nan")


def in_run_cost(trainer: pl.Trainer, iteration_s: float) -> dict:
    """The preset's JacobianSpectrum: its seconds per evaluation and their share of training time."""
    spectrum = next(c for c in trainer.callbacks if isinstance(c, JacobianSpectrum))
    seconds = [r["seconds"] for r in spectrum.history]
    training = iteration_s * trainer.global_step
    per_eval = float(np.mean(seconds))
    at_1000 = (trainer.global_step // 1000 + 1) * per_eval / training
    return {"evaluations": len(seconds), "seconds": seconds, "products": [r["products"] for r in spectrum.history],
            "training_s": training, "overhead": sum(seconds) / training, "overhead_every_1000": at_1000}


def ring(model: str, smoke: bool) -> tuple[list[dict], dict]:
    beside = "benchmarks.spectrum_cost.Beside"
    extra = [f"--trainer.callbacks+={beside}"]
    if smoke:
        extra += ["--trainer.callbacks.every", "10", "--trainer.callbacks.warm_every", "10", "--trainer.callbacks.levers_at",
                  "10", "--trainer.max_steps", "20", "--model.generator.init_args.width", "8",
                  "--model.discriminator.init_args.width", "8"]
    with tempfile.TemporaryDirectory() as folder:
        trainer, rows, iteration_s = run(["--model", model, *extra], folder)
    for r in rows:
        r["model"] = model
        r.update({key.replace("_s", "_iterations"): r[key] / iteration_s for key in list(r) if key.endswith("_s")})
    return rows, {"model": model, "iteration_ms": 1e3 * iteration_s, **in_run_cost(trainer, iteration_s)}


def dcgan(smoke: bool) -> dict:
    """One top-6 spectrum of the update field on the digits DCGAN, and the cadence for 5%."""
    steps = "4" if smoke else "200"
    options = ["--model", "jare", "--data", "digits", "--trainer.max_steps", steps,
               "--trainer.callbacks+=callbacks.JacobianSpectrum", "--trainer.callbacks.k", "6",
               "--trainer.callbacks.every_n_steps", steps, "--trainer.callbacks.batch_size", "64",
               "--trainer.callbacks.field", "update", "--trainer.callbacks+=benchmarks.spectrum_cost.Beside",
               "--trainer.callbacks.every", "0", "--trainer.callbacks.warm_every", "0", "--trainer.callbacks.levers_at", "-1"]
    if smoke:
        options += ["--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8"]
    with tempfile.TemporaryDirectory() as folder:
        trainer, _, iteration_s = run(options, folder)
    cost = in_run_cost(trainer, iteration_s)
    per_eval = float(np.mean(cost["seconds"]))
    return {"model": "jare, digits DCGAN 32x32", "iteration_ms": 1e3 * iteration_s, "seconds": cost["seconds"],
            "products": cost["products"], "iterations_per_evaluation": per_eval / iteration_s,
            "every_for_5_percent": per_eval / iteration_s / 0.05}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args(argv)
    quiet()
    rows, runs = [], []
    for model in ("jare", "conopt"):
        model_rows, summary = ring(model, args.smoke)
        rows += model_rows
        runs.append(summary)
    runs.append(dcgan(args.smoke))
    print_tables(rows, runs)
    write_results("spectrum_cost", rows, args.smoke, runs=runs)
    return rows


def print_tables(rows: list[dict], runs: list[dict]) -> None:
    print(f"\n{'model':7s} {'it':>6s} {'field':9s} {'k':>3s} {'before s':>9s} {'its':>6s} {'prods':>6s} "
          f"{'ARPACK s':>9s} {'its':>5s} {'prods':>6s} {'after s':>8s} {'its':>5s} {'prods':>6s} {'ratio':>6s} "
          f"{'vs ARPACK':>9s} {'difference':>10s} {'min Re':>8s}")
    for r in (r for r in rows if r["case"] == "before/after"):
        print(f"{r['model']:7s} {r['iteration']:6d} {r['field']:9s} {r['k']:3d} {r['before_s']:9.2f} "
              f"{r['before_iterations']:6.0f} {r['before_products']:6d} {r['arpack_s']:9.2f} {r['arpack_iterations']:5.0f} "
              f"{r['arpack_products']:6d} {r['after_s']:8.2f} {r['after_iterations']:5.0f} {r['after_products']:6d} "
              f"{r['before_s'] / r['after_s']:6.1f} {r['arpack_s'] / r['after_s']:9.1f} {r['difference']:10.1e} "
              f"{r['min_real_difference']:8.1e}")
    print(f"\n{'model':7s} {'lever (update field, top-6)':38s} {'seconds':>8s} {'products':>9s} {'difference':>10s}")
    for r in (r for r in rows if r["case"] == "lever"):
        print(f"{r['model']:7s} {r['lever']:38s} {r['seconds']:8.2f} {r['products']:9d} {r['difference']:10.1e}")
    print(f"\n{'model':7s} {'it':>6s} {'cold s':>7s} {'prods':>6s} {'warm s':>7s} {'prods':>6s} {'difference':>10s}")
    for r in (r for r in rows if r["case"] == "warm start"):
        print(f"{r['model']:7s} {r['iteration']:6d} {r['cold_s']:7.2f} {r['cold_products']:6d} {r['warm_s']:7.2f} "
              f"{r['warm_products']:6d} {r['difference']:10.1e}")
    print(f"\n{'run':26s} {'ms/it':>6s}  in-run evaluations (s)         {'overhead':>8s} {'every 1,000':>11s}")
    for r in runs:
        seconds = ", ".join(f"{s:.1f}" for s in r["seconds"])
        if "overhead" in r:
            print(f"{r['model']:26s} {r['iteration_ms']:6.1f}  {seconds:30s} {100 * r['overhead']:7.1f}% "
                  f"{100 * r['overhead_every_1000']:10.1f}%")
        else:
            print(f"{r['model']:26s} {r['iteration_ms']:6.1f}  {seconds:30s} one = {r['iterations_per_evaluation']:.0f} "
                  f"iterations; under 5% at one every {r['every_for_5_percent']:,.0f}")


if __name__ == "__main__":
    main()
