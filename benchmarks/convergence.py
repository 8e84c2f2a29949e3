"""Convergence study on the mixtures: every method on the ring (8 modes) and the grid (25 modes) for
several seeds, modes covered and high-quality samples against iterations; and the phase and
conditioning factors of the update Jacobian over training, vanilla, ConOpt and JARE on the ring.

Every run goes through ``train.py`` with the default layers (``configs/data/ring.yaml`` and
``configs/models/<model>.yaml``: 4 x 128 MLPs, TF RMSProp lr 1e-3, batch 128; zero-sum loss except
SGA's non-saturating one), the grid with ``--data.kind grid`` (spacing 2, std 0.05). Seed s trains
with ``--seed_everything s --data.init_args.seed s``; the seeds of a method are one sweep
(``--sweep.seeds N --sweep.data_seeds true``: one process, each member as its single run), except
for a method a sweep cannot train (the R1 penalty), and with ``--single-runs``. ``--part gamma``
sweeps JARE's gamma over seeds on the ring in one run: the heat map docs/figures/sweep_jare_gamma.png.

    python -m benchmarks.convergence                    # docs/figures/convergence.png, spectra_over_training.png
    python -m benchmarks.convergence --seeds 0 1 --iterations 5000
    python -m benchmarks.convergence --data grid --methods eg cgd
    python -m benchmarks.convergence --parts gamma --compile   # JARE's gamma x seeds on the ring, one sweep
    python -m benchmarks.convergence --smoke            # tiny (CI)

Prints a table and writes benchmarks/results/convergence.json. Each finished run is appended to
benchmarks/results/convergence_runs.jsonl (its whole history); a later call with the same
iterations and cadence reuses those runs instead of training them again, so a study that was
stopped goes on where it stopped and the figure can be redrawn from the record.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from benchmarks.common import RESULTS, quiet, write_results
from callbacks.sweep_metrics import MAP_KEYS
from figures import sweep_map_figure

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
METHODS = {"simgd": ("vanilla", []), "altgd": ("vanilla", ["--model.update", "alternating"]),
           "conopt": ("conopt", []), "jare": ("jare", []), "sga": ("sga", []), "eg": ("extragradient", []),
           "ogd": ("optimistic", []), "cgd": ("cgd", []),
           "simgd+r1": ("vanilla", ["--model.penalty", "r1", "--model.penalty_weight", "1.0"])}
DATA = {"ring": [], "grid": ["--data.init_args.kind", "grid", "--data.init_args.std", "0.05"]}
NUM_MODES = {"ring": 8, "grid": 25}


def train_run(method: str, data: str, seed: int, iterations: int, every: int, folder: str, extra: list[str]):
    from commands import train

    name, options = METHODS[method]
    return train.main(["--model", name, *options, *DATA[data], "--seed_everything", str(seed),
                       "--data.init_args.seed", str(seed), "--trainer.max_steps", str(iterations),
                       "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                       "--trainer.logger.init_args.save_dir", folder,
                       "--trainer.logger.init_args.name", f"{method}_{data}_{seed}",
                       "--trainer.callbacks=[]", "--trainer.callbacks+=callbacks.MixtureMetrics",
                       "--trainer.callbacks.every_n_steps", str(every), "--trainer.callbacks.plot", "false", *extra])


def history(trainer, callback: str) -> list[dict]:
    return next(cb.history for cb in trainer.callbacks if type(cb).__name__ == callback)


#: methods a sweep cannot train (a gradient penalty): their seeds are single runs
SINGLE_ONLY = ("simgd+r1",)
#: the mark of a sweep's runs in the record (their options), apart from single runs'
SWEEP_MARK = "--sweep.data_seeds"


def sweep_histories(method: str, data: str, seeds: list[int], iterations: int, every: int, folder: str,
                    extra: list[str], settings: tuple[str, ...] = ()):
    """Each member's evaluation history (by seed, or by (seed, setting value)) of one sweep of the
    contiguous ``seeds``, and the sweep's trainer."""
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise SystemExit(f"a sweep trains contiguous seeds (S, S+1, ...), got {seeds}: pass --single-runs")
    trainer = train_run(method, data, seeds[0], iterations, every, folder,
                        ["--sweep.seeds", str(len(seeds)), SWEEP_MARK, "true", *settings, *extra])
    records = history(trainer, "SweepMetrics")
    members = {}
    for r in records:
        members.setdefault(r["member"], []).append({k: r[k] for k in ("iteration", "modes_covered", "high_quality",
                                                                      "kl_uniform")})
    return members, trainer


def study_runs(record: Path, iterations: int, every: int, width: list[str], single_runs: bool) -> list[dict]:
    """The whole study in ``record``: each method's runs of this call's kind (its seeds as one sweep,
    or as single runs), in the order of DATA, METHODS and seeds."""
    kinds = {m: width if single_runs or m in SINGLE_ONLY else [*width, SWEEP_MARK] for m in METHODS}
    runs = [r for m, options in kinds.items() for r in recorded_runs(record, iterations, every, options).values()
            if r["method"] == m]
    order = {key: i for i, key in enumerate((d, m) for d in DATA for m in METHODS)}
    return sorted(runs, key=lambda r: (order[r["data"], r["method"]], r["seed"]))


def gamma_rows(seeds: list[int], gammas: list[float], iterations: int, every: int, folder: str, width: list[str],
               smoke: bool) -> list[dict]:
    """JARE over ``gammas`` x ``seeds`` on the ring, one sweep: each member's final evaluation; the
    sweep's heat map goes to docs/figures/sweep_jare_gamma.png."""
    start = time.perf_counter()
    members, trainer = sweep_histories("jare", "ring", seeds, iterations, every, folder, width,
                                       ("--sweep.gamma", json.dumps(gammas)))
    seconds = time.perf_counter() - start
    if not smoke:
        FIGURES.mkdir(parents=True, exist_ok=True)
        table = next(cb.rows for cb in trainer.callbacks if type(cb).__name__ == "SweepMetrics")
        sweep_map_figure(table, "gamma", "seed", MAP_KEYS, f"JARE on the ring, {iterations} iterations: "
                         f"{len(table)} members in one run", ranges={"modes_covered": (0, len(trainer.datamodule.modes))}
                         ).savefig(FIGURES / "sweep_jare_gamma.png")
    return [{"gamma": gamma, "seed": seed, "seconds": seconds, **members[g * len(seeds) + i][-1]}
            for g, gamma in enumerate(gammas) for i, seed in enumerate(seeds)]


def recorded_runs(record: Path, iterations: int, every: int, options: list[str]) -> dict[tuple, dict]:
    """The runs in ``record`` of this study's methods and data sets, trained for ``iterations``
    with evaluations every ``every`` and the extra ``options``, by (data, method, seed). The record
    does not know the code it was trained with: delete it after a change that moves numbers."""
    if not record.is_file():
        return {}
    runs = (json.loads(line) for line in record.read_text().splitlines() if line.strip())
    return {(r["data"], r["method"], r["seed"]): r for r in runs
            if (r["iterations"], r["every"], r.get("options", [])) == (iterations, every, options)
            and r["data"] in DATA and r["method"] in METHODS}


def convergence_rows(seeds: list[int], iterations: int, every: int, folder: str, width: list[str],
                     methods: list[str], datasets: list[str], record: Path | None, single_runs: bool) -> list[dict]:
    """One row per (data, method, seed) with its evaluation history and the seconds its training
    took (a sweep's members share theirs); runs already in ``record`` are read from it, new ones
    are trained and appended to it."""
    rows = []
    for data in datasets:
        for method in methods:
            single = single_runs or method in SINGLE_ONLY
            options = width if single else [*width, SWEEP_MARK]
            done = recorded_runs(record, iterations, every, options) if record else {}
            missing = [seed for seed in seeds if (data, method, seed) not in done]
            new = {}
            if missing and not single:
                start = time.perf_counter()
                members, _ = sweep_histories(method, data, missing, iterations, every, folder, width)
                seconds = time.perf_counter() - start
                new = {seed: (members[i], seconds) for i, seed in enumerate(missing)}
            for seed in missing if single else []:
                start = time.perf_counter()
                trainer = train_run(method, data, seed, iterations, every, folder, width)
                new[seed] = (history(trainer, "MixtureMetrics"), time.perf_counter() - start)
            for seed, (runs, seconds) in new.items():
                done[data, method, seed] = {"data": data, "method": method, "seed": seed, "iterations": iterations,
                                            "every": every, "options": options, "seconds": seconds, "history": runs}
                if record:
                    with record.open("a") as f:
                        f.write(json.dumps(done[data, method, seed]) + "\n")
            rows += [done[data, method, seed] for seed in seeds]
    return rows


#: small networks, so that every spectrum is complete (a top-k spectrum sees only the largest
#: eigenvalues, which bound the phase factor from below)
SPECTRA_NETS = ["--model.generator.init_args.width", "24", "--model.generator.init_args.depth", "2",
                "--model.discriminator.init_args.width", "24", "--model.discriminator.init_args.depth", "2"]


def spectra_rows(iterations: int, every: int, folder: str, nets: list[str]) -> list[dict]:
    rows = []
    for method in ("simgd", "conopt", "jare"):
        trainer = train_run(method, "ring", 0, iterations, iterations, folder,
                            [*nets, "--trainer.callbacks+=callbacks.JacobianSpectrum", "--trainer.callbacks.every_n_steps",
                             str(every), "--trainer.callbacks.batch_size", "256", "--trainer.callbacks.field", "update"])
        rows.append({"method": method, "history": history(trainer, "JacobianSpectrum")})
    return rows


def convergence_figure(rows: list[dict]) -> Figure:
    fig = Figure(figsize=(12, 8), dpi=100)
    datasets = list(dict.fromkeys(r["data"] for r in rows))
    for i, data in enumerate(datasets):
        for j, (key, label, top) in enumerate((("modes_covered", "modes covered", NUM_MODES[data]),
                                               ("high_quality", "high-quality samples (%)", 100))):
            ax = fig.add_subplot(len(datasets), 2, 2 * i + j + 1)
            for method in dict.fromkeys(r["method"] for r in rows):
                runs = [r["history"] for r in rows if r["data"] == data and r["method"] == method]
                its = [h["iteration"] for h in runs[0]]
                values = np.array([[h[key] for h in run] for run in runs], dtype=float)
                line, = ax.plot(its, values.mean(0), marker="o", ms=3, label=method)
                ax.fill_between(its, values.min(0), values.max(0), color=line.get_color(), alpha=0.15)
            ax.set_ylim(0, top * 1.05)
            ax.set_title(f"{data}: {label} (mean, min-max over {len(runs)} seeds)", fontsize=9)
            ax.set_xlabel("iteration")
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def spectra_figure(rows: list[dict]) -> Figure:
    fig = Figure(figsize=(10, 3.5), dpi=100)
    for j, (key, label) in enumerate((("phase_factor", "phase factor max |Im|/|Re|"),
                                      ("condition_number", "condition number"))):
        ax = fig.add_subplot(1, 2, j + 1)
        for row in rows:
            h = [r for r in row["history"] if np.isfinite(r[key])]
            ax.semilogy([r["iteration"] for r in h], [r[key] for r in h], marker="o", ms=3, label=row["method"])
        ax.set_xlabel("iteration")
        ax.set_title(f"ring (2 x 24 MLPs), full spectrum of the update Jacobian: {label}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def summary(rows: list[dict]) -> list[dict]:
    table = []
    for data in dict.fromkeys(r["data"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows):
            finals = [r["history"][-1] for r in rows if r["data"] == data and r["method"] == method]
            table.append({"data": data, "method": method, "modes": [f["modes_covered"] for f in finals],
                          "high_quality_mean": statistics.mean(f["high_quality"] for f in finals),
                          "kl_uniform": [f["kl_uniform"] for f in finals]})
    return table


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny networks, a few iterations (CI)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=10000)
    parser.add_argument("--every", type=int, default=1000, help="evaluation cadence")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--data", nargs="+", choices=list(DATA), default=list(DATA))
    parser.add_argument("--parts", nargs="+", choices=["convergence", "spectra", "gamma"],
                        default=["convergence", "spectra", "gamma"])
    parser.add_argument("--single-runs", action="store_true", help="train each seed as a run of its own, not as a sweep")
    parser.add_argument("--compile", action="store_true",
                        help="the gamma sweep with its compiled stacked step (--model.compile_step true)")
    parser.add_argument("--gammas", type=float, nargs="+", default=[1.0, 10.0, 100.0, 1000.0, 10000.0],
                        help="JARE's gamma values of --parts gamma")
    args = parser.parse_args(argv)
    quiet()
    width, nets = [], SPECTRA_NETS
    if args.smoke:
        args.seeds, args.iterations, args.every = [0], 4, 2
        width = nets = ["--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8"]
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        if "convergence" in args.parts:
            record = None if args.smoke else RESULTS / "convergence_runs.jsonl"
            out["runs"] = convergence_rows(args.seeds, args.iterations, args.every, folder, width, args.methods,
                                           args.data, record, args.single_runs)
            if record:      # the table and figure show the whole study, not only this call's runs
                out["runs"] = study_runs(record, args.iterations, args.every, width, args.single_runs)
            out["table"] = summary(out["runs"])
            print(f"{'data':5s} {'method':9s} {'modes covered per seed':>24s} {'high quality':>13s}  KL to uniform per seed")
            for t in out["table"]:
                print(f"{t['data']:5s} {t['method']:9s} {str(t['modes']):>24s} {t['high_quality_mean']:12.1f}%  "
                      + " / ".join(f"{kl:.3f}" for kl in t["kl_uniform"]))
            if not args.smoke:
                FIGURES.mkdir(parents=True, exist_ok=True)
                convergence_figure(out["runs"]).savefig(FIGURES / "convergence.png")
            write_results("convergence", out["table"], args.smoke, iterations=args.iterations,
                          seeds=sorted({r["seed"] for r in out["runs"]}))
        if "spectra" in args.parts:
            out["spectra"] = spectra_rows(args.iterations, args.every, folder, nets)
            for row in out["spectra"]:
                for r in row["history"][::max(1, len(row["history"]) // 5)] + row["history"][-1:]:
                    print(f"ring {row['method']:5s} iteration {r['iteration']:6d}: phase factor {r['phase_factor']:8.3g}, "
                          f"condition number {r['condition_number']:8.3g}")
            if not args.smoke:
                spectra_figure(out["spectra"]).savefig(FIGURES / "spectra_over_training.png")
            write_results("spectra_over_training", [{"method": r["method"], "history": r["history"]}
                                                    for r in out["spectra"]], args.smoke, iterations=args.iterations)
        if "gamma" in args.parts:
            gammas = args.gammas[:2] if args.smoke else args.gammas
            compiled = ["--model.compile_step", "true"] if args.compile else []
            out["gamma"] = gamma_rows(args.seeds, gammas, args.iterations, args.every, folder, [*width, *compiled],
                                      args.smoke)
            print(f"JARE on the ring, {len(out['gamma'])} members in one sweep: {out['gamma'][0]['seconds']:.0f} s")
            for gamma in gammas:
                finals = [r for r in out["gamma"] if r["gamma"] == gamma]
                print(f"gamma {gamma:8g}: modes covered per seed {[r['modes_covered'] for r in finals]}, high quality "
                      f"{statistics.mean(r['high_quality'] for r in finals):.1f}%")
            write_results("convergence_gamma", out["gamma"], args.smoke, iterations=args.iterations, compiled=args.compile)
    return out

if __name__ == "__main__":
    main()
