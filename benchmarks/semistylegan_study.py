"""Does a little supervision help? Semi-StyleGAN on procedural dSprites (32x32, the CPU-sized
default of configs/models/semistylegan.yaml) with 0%, 0.5% and 2.5% of the images labelled, a few seeds:
MIG and L2 of the encoder on real images, MIG-gen and L2-gen of the generator read by the
independent evaluator encoder. Writes results/semistylegan_study.json and
docs/figures/semistylegan_study.png (+ a traversal grid of the 2.5% run).

    python -m benchmarks.semistylegan_study                  # about 50 minutes on 2 cores
    python -m benchmarks.semistylegan_study --smoke
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from matplotlib.figure import Figure

from benchmarks.common import quiet, write_results

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
METRICS = (("mig", "MIG (encoder, real)"), ("l2", "L2 (encoder, real)"), ("mig_gen", "MIG-gen (generator)"),
           ("l2_gen", "L2-gen (generator)"))
SMOKE = ["--model.generator.init_args.channel_base", "64", "--model.generator.init_args.channel_max", "8",
         "--model.discriminator.init_args.channel_base", "64", "--model.discriminator.init_args.channel_max", "8",
         "--data.init_args.batch_size", "8"]


def run(folder: Path, fraction: float, seed: int, steps: int, every: int, samples: int, evaluator_steps: int,
        smoke: bool, labelled_batch: int = 16) -> list[dict]:
    from commands import train

    name = f"f{fraction}_s{seed}_b{labelled_batch}"
    train.main(["--model", "semistylegan", "--seed_everything", str(seed), "--data.init_args.seed", str(seed),
                "--data.init_args.labelled_fraction", str(fraction),
                "--data.init_args.labelled_batch_size", str(labelled_batch if fraction > 0 else 0),
                "--trainer.max_steps", str(steps), "--trainer.enable_progress_bar", "false",
                "--trainer.callbacks=[]",
                "--trainer.callbacks+=callbacks.DisentanglementMetrics", "--trainer.callbacks.every_n_steps", str(every),
                "--trainer.callbacks.num_samples", str(samples), "--trainer.callbacks.evaluator_steps",
                str(evaluator_steps),
                "--trainer.logger.init_args.save_dir", str(folder), "--trainer.logger.init_args.name", name,
                *(SMOKE if smoke else [])])
    run_dir = folder / name / "version_0"
    records = [json.loads(line) for line in (run_dir / "disentanglement.jsonl").read_text().splitlines()]
    return [{"fraction": fraction, "seed": seed, "labelled_batch": labelled_batch if fraction > 0 else 0, **r,
             "run_dir": str(run_dir)} for r in records]


def fmt(values: list[float]) -> str:
    return "[" + " ".join(f"{v:.2f}" for v in values) + "]"


def summarise(rows: list[dict], fractions: list[float]) -> list[dict]:
    """Mean and spread over seeds of the last evaluation of each run with a labelled batch."""
    last = {}
    for r in rows:
        if r["labelled_batch"] or not r["fraction"]:
            last[(r["fraction"], r["seed"])] = r
    table = []
    for f in fractions:
        runs = [r for (fr, _), r in last.items() if fr == f]
        entry = {"fraction": f, "seeds": len(runs)}
        for key, _ in METRICS:
            values = [r[key] for r in runs]
            entry[key] = statistics.mean(values)
            entry[f"{key}_min"], entry[f"{key}_max"] = min(values), max(values)
        table.append(entry)
    return table


def figure(table: list[dict]) -> Figure:
    fig = Figure(figsize=(11, 2.8), dpi=100)
    labels = [f"{100 * t['fraction']:g}%" for t in table]
    for i, (key, title) in enumerate(METRICS):
        ax = fig.add_subplot(1, len(METRICS), i + 1)
        means = [t[key] for t in table]
        errors = [[t[key] - t[f"{key}_min"] for t in table], [t[f"{key}_max"] - t[key] for t in table]]
        ax.bar(labels, means, yerr=errors, capsize=4, color="#4c72b0")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("labelled images")
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.005, 0.025])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--in-batch", type=float, nargs="*", default=[0.005],
                        help="also these fractions with labelled_batch_size 0 (the authors' in-batch masking), first seed")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    quiet()
    fractions, seeds, steps = (args.fractions[:2], args.seeds[:1], 4) if args.smoke else (args.fractions, args.seeds, args.steps)
    every, samples, evaluator_steps = (2, 64, 10) if args.smoke else (max(steps // 3, 1), 2000, 4000)
    cases = [(f, s, 16) for f in fractions for s in seeds] + [(f, seeds[0], 0) for f in (args.in_batch or [])]
    rows, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for fraction, seed, labelled_batch in cases:
            began = time.perf_counter()
            records = run(Path(tmp), fraction, seed, steps, every, samples, evaluator_steps, args.smoke, labelled_batch)
            for r in records:
                r["run_seconds"] = time.perf_counter() - began
            rows += records
            last = records[-1]
            print(f"labelled {100 * fraction:>4g}% (labelled batch {last['labelled_batch']:>2})  seed {seed}:  "
                  f"MIG {last['mig']:.3f}  L2 {last['l2']:.3f}  MIG-gen {last['mig_gen']:.3f}  "
                  f"L2-gen {last['l2_gen']:.3f}  per factor |E(x) - c| {fmt(last['l2_per_factor'])}  "
                  f"|E*(G(c, z)) - c| {fmt(last['l2_gen_per_factor'])}  ({last['run_seconds']:.0f} s)", flush=True)
        table = summarise(rows, fractions)
        if not args.smoke:
            FIGURES.mkdir(parents=True, exist_ok=True)
            figure(table).savefig(FIGURES / "semistylegan_study.png")
            best = [r for r in rows if r["fraction"] == max(fractions) and r["seed"] == seeds[0]
                    and r["labelled_batch"]][-1]
            shutil.copy(Path(best["run_dir"]) / "plots" / f"traversal_{best['iteration']:06d}.png",
                        FIGURES / "semistylegan_traversal.png")
    print(f"\n{'labelled':>9} " + " ".join(f"{k:>16}" for k, _ in METRICS))
    for t in table:
        print(f"{100 * t['fraction']:>8g}% " + " ".join(
            f"{t[k]:>6.3f} [{t[k + '_min']:.2f},{t[k + '_max']:.2f}]" for k, _ in METRICS))
    for r in rows:
        r.pop("run_dir")
    out = write_results("semistylegan_study", rows, args.smoke, steps=steps, seeds=seeds,
                        seconds=time.perf_counter() - start, summary=table)
    print(f"-> {out}")
    return rows


if __name__ == "__main__":
    main()
