"""Time per iteration of each method, through ``train.py`` (Lightning, the default logging cadence)
and through the straightforward eager loop of ``benchmarks/eager_baseline.py``, side by side in one
run, on the ring MLPs of the JARE paper (4 x 256, batch 128) and of the ConOpt paper (4 x 16,
batch 512) and on the 32x32 DCGAN (batch 64).

    python -m benchmarks.step_cost                    # the table of docs/benchmarks.md (about 10 minutes)
    python -m benchmarks.step_cost --sizes ring256    # one size
    python -m benchmarks.step_cost --smoke            # tiny sizes, seconds (CI)
    python -m benchmarks.step_cost --device cuda --sizes dcgan   # on a GPU (benchmarks/gpu_check.sh)
    python -m benchmarks.step_cost --tf-python /tmp/tfenv/bin/python   # + the TF graph-mode reference
    python -m benchmarks.step_cost --runs 3           # the whole measurement three times: medians and ranges

On AMD processors ``mkl_on_amd`` is loaded first, as train.py does (``GAN_DYNAMICS_MKL_AMD=0``
measures MKL's generic path instead); its status goes into the results file.

Each time is the median over ``--repeats`` blocks of ``--iterations`` iterations after a warm-up.
On a shared machine the speed drifts over minutes more than within a block, so ``--runs N``
repeats the whole measurement (every row, the TF reference too) N times one after the other and
reports per row the median of each time and ratio, and the range of the ratios over the runs.
Prints the table (baseline ms, ours ms, ours / baseline, ours / our simultaneous GD, and with
``--tf-python`` TF ms and ours / TF), then on CPU the floor of each size: an iteration of Lightning's
loop whose training step does nothing but an optimizer step, on the same data. Writes
benchmarks/results/step_cost.json.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

import mkl_on_amd
from benchmarks import eager_baseline
from benchmarks.common import quiet, write_results
from benchmarks.eager_baseline import EagerGame
from datamodules import Digits, MixtureOfGaussians
from gans.networks import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from runtime.optim import RMSpropTF

#: (model config, its options) per method; the weights are the papers' (JARE's ring: gamma 1000)
METHODS = {
    "simgd": ("vanilla", []),
    "altgd": ("vanilla", ["--model.update", "alternating"]),
    "conopt": ("conopt", ["--model.method.gamma", "10"]),
    "jare": ("jare", ["--model.method.gamma", "1000"]),
    "sga": ("sga", ["--model.method.lam", "1"]),
    "eg": ("extragradient", []),
    "ogd": ("optimistic", []),
    "cgd": ("cgd", []),
}
WEIGHTS = {"conopt": {"gamma": 10.0}, "jare": {"gamma": 1000.0}, "sga": {"lam": 1.0}}
#: ``--compiled`` adds these methods again with ``compile_step`` (game.compiled), as "<method>+compile";
#: ``--joint`` adds every method again with D on one concatenated batch, as "<method>+joint"
COMPILED = ("simgd", "conopt", "jare", "sga")
VARIANTS = {"+compile": ["--model.compile_step", "true"], "+joint": ["--model.discriminator_pass", "joint"]}


def plain(method: str) -> str:
    """The method of a row ("jare+compile" -> "jare")."""
    return method.split("+")[0]
SIZES = {
    "ring256": {"label": "ring, 4 x 256 MLPs (JARE paper), batch 128", "width": 256, "depth": 4, "latent": 64,
                "std": 2.0, "batch": 128},
    "ring16": {"label": "ring, 4 x 16 MLPs (ConOpt paper), batch 512", "width": 16, "depth": 4, "latent": 16,
               "std": 1.0, "batch": 512},
    "dcgan": {"label": "32x32 DCGAN width 64, batch 64", "width": 64, "latent": 128, "std": 1.0, "batch": 64},
}
SMOKE = {"ring8": {"label": "ring, 2 x 8 MLPs, batch 16", "width": 8, "depth": 2, "latent": 4, "std": 1.0, "batch": 16},
         "dcgan8": {"label": "32x32 DCGAN width 8, batch 8", "width": 8, "latent": 8, "std": 1.0, "batch": 8}}


def now(device: str) -> float:
    """The wall clock after the device has finished its queued work."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


class StepTimer(pl.Callback):
    """Records the wall clock at the end of every training iteration."""

    stamps: list[float] = []
    started = 0.0  # the clock when training started (the first iteration's compilation, if any, is after it)

    def on_train_start(self, trainer, pl_module) -> None:
        StepTimer.stamps = []
        StepTimer.started = now(str(pl_module.device))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        StepTimer.stamps.append(now(str(pl_module.device)))


def block_median(stamps: list[float], warmup: int, repeats: int, iterations: int) -> float:
    """Median over blocks of the mean seconds per iteration."""
    blocks = [(stamps[warmup + (r + 1) * iterations] - stamps[warmup + r * iterations]) / iterations
              for r in range(repeats)]
    return statistics.median(blocks)


def is_image(size: dict) -> bool:
    return "depth" not in size


def model_options(size: dict) -> list[str]:
    """The networks, data and optimizer of ``size`` as train.py options (on top of a model config)."""
    if is_image(size):
        return ["--data", "digits", "--data.init_args.channels", "3", "--data.init_args.batch_size", str(size["batch"]),
                "--model.generator.init_args.channels", "3", "--model.discriminator.init_args.channels", "3",
                "--model.generator.init_args.width", str(size["width"]), "--model.generator.init_args.latent_dim",
                str(size["latent"]), "--model.latent_dim", str(size["latent"]),
                "--model.discriminator.init_args.width", str(size["width"]), "--model.ema_half_life", "null"]
    return ["--model.generator.init_args.width", str(size["width"]), "--model.generator.init_args.depth",
            str(size["depth"]), "--model.generator.init_args.latent_dim", str(size["latent"]),
            "--model.latent_dim", str(size["latent"]), "--model.latent_std", str(size["std"]),
            "--model.discriminator.init_args.width", str(size["width"]), "--model.discriminator.init_args.depth",
            str(size["depth"]), "--model.loss", "zero_sum", "--model.optimizer", "runtime.optim.RMSpropTF",
            "--model.optimizer.lr", "1e-4", "--data.init_args.batch_size", str(size["batch"])]


def ours(method: str, size: dict, steps: int, folder: str, device: str, options: tuple[str, ...] = ()) -> list[float]:
    """The clock at the end of every iteration of a train.py run of ``method`` on ``size`` (with
    more ``options``)."""
    from commands import train

    name, extra = METHODS[plain(method)]
    extra = [*extra, *VARIANTS.get(method[len(plain(method)):], []), *options]
    train.main(["--model", name, *model_options(size), *extra, "--trainer.callbacks=[]",
                "--trainer.callbacks+=benchmarks.step_cost.StepTimer", "--trainer.max_steps", str(steps),
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                "--trainer.logger.init_args.save_dir", folder,
                "--trainer.accelerator", "gpu" if device.startswith("cuda") else "cpu"])
    # the class train.py instantiated by its path (run as a script, this module is __main__)
    from benchmarks.step_cost import StepTimer as registered

    return registered.stamps


class EmptyStep(pl.LightningModule):
    """A training step that only steps an optimizer over one scalar: what an iteration costs in
    Lightning's loop (data fetch, hooks, optimizer wrapper) before any GAN arithmetic."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.w = torch.nn.Parameter(torch.zeros(()))

    def configure_optimizers(self):
        return torch.optim.SGD([self.w], lr=0.0)

    def training_step(self, batch, batch_idx: int) -> None:
        opt = self.optimizers()
        self.w.grad = torch.ones(())
        opt.step()
        opt.zero_grad(set_to_none=True)


def lightning_floor(size: dict, steps: int, warmup: int, repeats: int, iterations: int) -> float:
    """Seconds per iteration of ``EmptyStep`` on the size's data, progress bar and logger off."""
    if is_image(size):
        data = Digits(channels=3, batch_size=size["batch"])
    else:
        data = MixtureOfGaussians(radius=2.0, std=0.06, batch_size=size["batch"])
    trainer = pl.Trainer(max_steps=steps, callbacks=[StepTimer()], enable_progress_bar=False, logger=False,
                         enable_model_summary=False, enable_checkpointing=False, accelerator="cpu")
    trainer.fit(EmptyStep(), datamodule=data)
    return block_median(StepTimer.stamps, warmup, repeats, iterations)


def players(size: dict):
    torch.manual_seed(0)
    if is_image(size):
        return (DCGANGenerator(size["latent"], 3, 32, size["width"]), DCGANDiscriminator(3, 32, size["width"]))
    return (MLPGenerator(size["latent"], 2, size["width"], size["depth"]),
            MLPDiscriminator(2, size["width"], size["depth"]))


def baseline(method: str, size: dict, steps: int, device: str) -> list[float]:
    g, d = (net.to(device) for net in players(size))
    if is_image(size):
        optimizer = lambda groups: torch.optim.Adam(groups, lr=1e-3, betas=(0.5, 0.999))  # noqa: E731
        data = Digits(channels=3, batch_size=size["batch"]).train_dataloader().dataset
        loss = "ns"
    else:
        optimizer = lambda groups: RMSpropTF(groups, lr=1e-4)  # noqa: E731
        data = MixtureOfGaussians(radius=2.0, std=0.06, batch_size=size["batch"], batches_per_epoch=10**6
                                  ).train_dataloader().dataset
        loss = "zero_sum"
    game = EagerGame(g, d, optimizer, method=method, loss=loss, **WEIGHTS.get(method, {}))
    stamps = []
    for i in range(steps):
        real = data.batch(i)
        real = (real[0] if isinstance(real, (tuple, list)) else real).to(device)
        z = size["std"] * torch.randn(size["batch"], size["latent"], device=device)
        z2 = size["std"] * torch.randn(size["batch"], size["latent"], device=device) if method == "altgd" else None
        game.step(real, z, z2)
        stamps.append(now(device))
    return stamps


def peak(fn, device: str):
    """``fn()`` and the peak GPU memory it allocated in MiB (None on CPU, where PyTorch does not
    track it: the process's resident set is mostly the libraries)."""
    if not device.startswith("cuda"):
        return fn(), None
    torch.cuda.reset_peak_memory_stats()
    return fn(), torch.cuda.max_memory_allocated() / 2**20


def measure(sizes: dict, methods: list[str], warmup: int, repeats: int, iterations: int, device: str = "cpu"
            ) -> list[dict]:
    steps = warmup + repeats * iterations + 1
    rows, baselines = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for key, size in sizes.items():
            for method in methods:
                loop = plain(method)  # a variant's row shares its method's eager loop
                if (key, loop) not in baselines and loop in eager_baseline.METHODS:
                    baselines[key, loop] = peak(lambda: block_median(baseline(loop, size, steps, device), warmup,
                                                                     repeats, iterations), device)
                base, base_mib = baselines.get((key, loop), (None, None))  # the newer methods have no hand loop
                mine, mine_mib = peak(lambda: block_median(ours(method, size, steps, folder, device), warmup, repeats,
                                                           iterations), device)
                rows.append({"size": key, "label": size["label"], "method": method,
                             "baseline_ms": 1000 * base if base else None, "ours_ms": 1000 * mine,
                             "ours_over_baseline": mine / base if base else None,
                             "baseline_peak_mib": base_mib, "ours_peak_mib": mine_mib})
    for row in rows:
        simgd = next((r for r in rows if r["size"] == row["size"] and r["method"] == "simgd"), None)
        row["ours_over_simgd"] = row["ours_ms"] / simgd["ours_ms"] if simgd else None
    if device == "cpu":
        for key, size in sizes.items():
            floor = 1000 * lightning_floor(size, steps, warmup, repeats, iterations)
            for row in rows:
                if row["size"] == key:
                    row["lightning_floor_ms"] = floor
    return rows


def tf_reference(python: str, size: dict, methods: list[str], repeats: int, iterations: int) -> dict[str, float]:
    """ms per iteration of the TensorFlow graph-mode reference (``benchmarks/tf_reference.py``, run by
    ``python``, an interpreter with TensorFlow) for the ring methods it has, in this run."""
    import json
    import subprocess

    have = [m for m in dict.fromkeys(plain(m) for m in methods) if m in ("simgd", "jare", "conopt")]
    if not have:
        return {}
    cmd = [python, str(Path(__file__).with_name("tf_reference.py")), "--methods", *have, "--width", str(size["width"]),
           "--depth", str(size["depth"]), "--latent", str(size["latent"]), "--batch", str(size["batch"]),
           "--repeats", str(repeats), "--iterations", str(iterations), "--threads", str(torch.get_num_threads())]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["ms"]


def add_tf_columns(rows: list[dict], python: str, repeats: int, iterations: int) -> None:
    """TF ms and ours / TF on the ring rows the reference covers (the TF graph is the JARE ring's:
    zero-sum loss, data sampled in the graph; std and radius do not change the cost)."""
    for key in dict.fromkeys(r["size"] for r in rows):
        if is_image(SIZES.get(key, SMOKE.get(key))):
            continue
        ms = tf_reference(python, SIZES.get(key, SMOKE.get(key)), [r["method"] for r in rows if r["size"] == key],
                          repeats, iterations)
        for row in rows:
            tf = ms.get(plain(row["method"])) if row["size"] == key else None
            if tf is not None:
                row["tf_ms"], row["ours_over_tf"] = tf, row["ours_ms"] / tf


#: the entries of a row that ``combine`` takes the median of
TIMES = ("baseline_ms", "ours_ms", "ours_over_baseline", "ours_over_simgd", "tf_ms", "ours_over_tf",
         "lightning_floor_ms")


def combine(runs: list[list[dict]]) -> list[dict]:
    """One row per (size, method) from several runs of ``measure``: the median over the runs of
    every time and ratio, the range of ``ours_over_baseline`` and ``ours_over_tf``, and ``runs``."""
    rows = []
    for group in zip(*runs, strict=True):
        if len({(r["size"], r["method"]) for r in group}) != 1:
            raise ValueError("the runs measured different rows")
        row = {**group[0], "runs": len(group)}
        for key in TIMES:
            values = [r[key] for r in group if r.get(key) is not None]
            if values:
                row[key] = statistics.median(values)
                if key in ("ours_over_baseline", "ours_over_tf"):
                    row[f"{key}_range"] = [min(values), max(values)]
        rows.append(row)
    return rows


def ratio(row: dict, key: str) -> str:
    """``key`` of the row, with its range over the runs when there were several."""
    if row.get(key) is None:
        return "-"
    low, high = row.get(f"{key}_range", [row[key]] * 2)
    return f"{row[key]:.2f}" + (f" ({low:.2f}-{high:.2f})" if high > low else "")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few iterations (CI)")
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=sorted(SIZES))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=40, help="iterations per timed block")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--compiled", action="store_true",
                        help=f"also time {', '.join(COMPILED)} with --model.compile_step true (compilation in the "
                             f"warm-up; about 15 s each)")
    parser.add_argument("--joint", action="store_true",
                        help="also time every method with --model.discriminator_pass joint (D on one batch)")
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole measurement; medians and ranges")
    parser.add_argument("--results", default="step_cost", help="name of the results file (benchmarks/results/NAME.json)")
    parser.add_argument("--tf-python", help="a Python with TensorFlow: adds the graph-mode reference of "
                                            "benchmarks/tf_reference.py, timed in this run (ring sizes)")
    args = parser.parse_args(argv)
    quiet()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.smoke:
        sizes, methods = SMOKE, [*METHODS, "jare+compile", "simgd+joint"]
        timing = dict(warmup=2, repeats=2, iterations=2)
    else:
        sizes = {k: SIZES[k] for k in args.sizes}
        methods = [*args.methods, *(m + "+compile" for m in COMPILED if args.compiled and m in args.methods),
                   *(m + "+joint" for m in args.methods if args.joint)]
        timing = dict(warmup=10, repeats=args.repeats, iterations=args.iterations)
    runs = []
    for _ in range(args.runs):
        rows = measure(sizes, methods, **timing, device=args.device)
        if args.tf_python:
            add_tf_columns(rows, args.tf_python, args.repeats, args.iterations)
        runs.append(rows)
    rows = combine(runs)
    width = 9 if args.runs == 1 else 21
    print(f"{'size':46s} {'method':14s} {'baseline ms':>11s} {'ours ms':>8s} {'ours/base':>{width}s} {'/simgd':>7s} "
          f"{'TF ms':>6s} {'ours/TF':>{width}s} {'peak MiB (base/ours)':>21s}")
    for r in rows:
        rel = f"{r['ours_over_simgd']:7.2f}" if r["ours_over_simgd"] else " " * 7
        tf = f"{r['tf_ms']:6.2f} {ratio(r, 'ours_over_tf'):>{width}s}" if "tf_ms" in r else f"{'-':>6s} {'-':>{width}s}"
        mem = f"{r['baseline_peak_mib'] or 0:.0f}/{r['ours_peak_mib']:.0f}" if r["ours_peak_mib"] is not None else "n/a (CPU)"
        base = f"{r['baseline_ms']:11.2f}" if r["baseline_ms"] is not None else f"{'-':>11s}"
        print(f"{r['label']:46s} {r['method']:14s} {base} {r['ours_ms']:8.2f} "
              f"{ratio(r, 'ours_over_baseline'):>{width}s} {rel} {tf} {mem:>21s}")
    for key in dict.fromkeys(r["size"] for r in rows):
        floor = next(r.get("lightning_floor_ms") for r in rows if r["size"] == key)
        if floor is not None:
            print(f"{key}: Lightning's loop alone (an empty training step on this data): {floor:.3f} ms per iteration")
    print(f"mkl_on_amd: {mkl_on_amd.status}")
    write_results(args.results if args.device == "cpu" else f"{args.results}_{args.device.split(':')[0]}", rows,
                  args.smoke, device=args.device)
    return rows


if __name__ == "__main__":
    main()
