"""Fingerprints of short fixed runs of every model and method: what a refactor must leave bit for bit.

    python -m benchmarks.fingerprints --out before.json            # record, before moving code
    python -m benchmarks.fingerprints --out after.json --compare before.json   # check, after

Each case is a ``train.py`` command of a few dozen iterations on small networks (single runs of
every method and schedule, a penalty, the joint and compiled paths, a sweep eager and compiled,
Semi-StyleGAN, an image run with the EMA, two gloo processes, a resume), run in a subprocess with
one thread; its fingerprint is a SHA-1 of the final checkpoint's parameters, buffers, optimizer
state and method state, and of the metrics and spectra files the run wrote. ``--compare`` prints
which cases differ and exits 1 if any does. Not a benchmark: it lives here because it is a program
that runs the project and writes a results file, like the benchmarks.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--model.generator.init_args.width", "16", "--model.discriminator.init_args.width", "16",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
# the ring preset's callbacks at a short cadence: metrics and spectra enter the fingerprint
CALLBACKS = ["--trainer.callbacks=[]",
             "--trainer.callbacks+=callbacks.MixtureMetrics", "--trainer.callbacks.every_n_steps", "20",
             "--trainer.callbacks.num_samples", "500",
             "--trainer.callbacks+=callbacks.JacobianSpectrum", "--trainer.callbacks.every_n_steps", "20",
             "--trainer.callbacks.field", "update", "--trainer.callbacks.k", "4", "--trainer.callbacks.batch_size", "32",
             "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
             "--trainer.callbacks.every_n_train_steps", "20", "--trainer.callbacks.save_last", "true"]
STEPS = ["--trainer.max_steps", "40"]

#: name -> (train.py arguments, how many processes)
CASES: dict[str, tuple[list[str], int]] = {
    "vanilla": (["--model", "vanilla", *SMALL, *CALLBACKS, *STEPS], 1),
    "vanilla_alternating": (["--model", "vanilla", "--model.update", "alternating", "--model.n_d", "2", *SMALL,
                             *CALLBACKS, *STEPS], 1),
    "vanilla_alternating_d_first": (["--model", "vanilla", "--model.update", "alternating", "--model.order", "d_first",
                                     *SMALL, *CALLBACKS, *STEPS], 1),
    "conopt": (["--model", "conopt", *SMALL, *CALLBACKS, *STEPS], 1),
    "conopt_alternating": (["--model", "conopt", "--model.update", "alternating", *SMALL, *CALLBACKS, *STEPS], 1),
    "jare": (["--model", "jare", *SMALL, *CALLBACKS, *STEPS], 1),
    "jare_joint": (["--model", "jare", "--model.discriminator_pass", "joint", *SMALL, *CALLBACKS, *STEPS], 1),
    "jare_no_flat": (["--model", "jare", "--model.flat_buffers", "false", *SMALL, *CALLBACKS, *STEPS], 1),
    "jare_compiled": (["--model", "jare", "--model.compile_step", "true", *SMALL, *CALLBACKS, *STEPS], 1),
    "jare_bf16": (["--model", "jare", "--trainer.precision", "bf16-mixed", *SMALL, *CALLBACKS, *STEPS], 1),
    "sga": (["--model", "sga", *SMALL, *CALLBACKS, *STEPS], 1),
    "sga_no_align": (["--model", "sga", "--model.method.align", "false", *SMALL, *CALLBACKS, *STEPS], 1),
    "extragradient": (["--model", "extragradient", *SMALL, *CALLBACKS, *STEPS], 1),
    "optimistic": (["--model", "optimistic", *SMALL, *CALLBACKS, *STEPS], 1),
    "optimistic_alternating": (["--model", "optimistic", "--model.update", "alternating", *SMALL, *CALLBACKS,
                                *STEPS], 1),
    "cgd": (["--model", "cgd", *SMALL, *CALLBACKS, *STEPS], 1),
    "cgd_ns": (["--model", "cgd", "--model.loss", "ns", *SMALL, "--trainer.callbacks=[]",
                "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
                "--trainer.callbacks.every_n_train_steps", "20", "--trainer.callbacks.save_last", "true", *STEPS], 1),
    "r1": (["--model", "vanilla", "--model.penalty", "r1", "--model.penalty_weight", "1", *SMALL, *CALLBACKS,
            *STEPS], 1),
    "wgan_gp_lazy": (["--model", "jare", "--model.penalty", "wgan_gp", "--model.penalty_every", "2", *SMALL,
                      *CALLBACKS, *STEPS], 1),
    "sweep_jare": (["--model", "jare", "--sweep.seeds", "2", "--sweep.gamma", "[10,100]", *SMALL, *CALLBACKS,
                    *STEPS], 1),
    "sweep_compiled": (["--model", "jare", "--sweep.seeds", "2", "--model.compile_step", "true", *SMALL, *CALLBACKS,
                        *STEPS], 1),
    "sweep_cgd_data_seeds": (["--model", "cgd", "--sweep.seeds", "2", "--sweep.data_seeds", "true", *SMALL,
                              *CALLBACKS, *STEPS], 1),
    "two_processes_jare": (["--model", "jare", *SMALL, *CALLBACKS, *STEPS, "--trainer.strategy", "game_ddp",
                            "--trainer.devices", "2", "--trainer.accelerator", "cpu"], 2),
    "two_processes_cgd": (["--model", "cgd", *SMALL, *CALLBACKS, *STEPS, "--trainer.strategy", "game_ddp",
                           "--trainer.devices", "2", "--trainer.accelerator", "cpu"], 2),
    "semistylegan": (["--model", "semistylegan", "--trainer.max_steps", "6", "--trainer.callbacks=[]",
                      "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
                      "--trainer.callbacks.save_last", "true", "--trainer.enable_progress_bar", "false",
                      "--trainer.enable_model_summary", "false", "--data.num_workers", "0"], 1),
    "digits_jare_ema": (["--model", "jare", "--data", "digits", "--model.ema_half_life", "1000",
                         "--model.generator.init_args.width", "4", "--model.discriminator.init_args.width", "4",
                         "--trainer.max_steps", "6", "--trainer.callbacks=[]",
                         "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
                         "--trainer.callbacks.save_last", "true", "--trainer.enable_progress_bar", "false",
                         "--trainer.enable_model_summary", "false", "--data.num_workers", "0"], 1),
}
#: a resume: the case's run stopped at 20 iterations and resumed to 40
RESUMED = ("optimistic", "cgd", "jare", "sweep_jare")


def _digest(*parts) -> str:
    sha = hashlib.sha1()
    for part in parts:
        buffer = io.BytesIO()
        torch.save(part, buffer)
        sha.update(buffer.getvalue())
    return sha.hexdigest()[:16]


def _tensors(tree):
    """The tensors and numbers of a nested state, in a canonical order (no file-dependent objects)."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu().contiguous()
    if isinstance(tree, dict):
        return {str(k): _tensors(v) for k, v in sorted(tree.items(), key=lambda kv: str(kv[0]))}
    if isinstance(tree, (list, tuple)):
        return [_tensors(v) for v in tree]
    if isinstance(tree, (int, float, bool, str)) or tree is None:
        return tree
    return type(tree).__name__


def fingerprint(folder: Path) -> dict[str, str]:
    """The digests of a run folder: the last checkpoint's parts, and the metrics and spectra files."""
    last = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    out = {"iteration": str(last["global_step"]),
           "state_dict": _digest(_tensors(last["state_dict"])),
           "optimizer": _digest(_tensors(last.get("optimizer_states"))),
           "method_state": _digest(_tensors(last.get("method_state"))),
           "training_rng": _digest(_tensors(last.get("training_rng")))}
    for name in ("mixture_metrics.jsonl", "sweep_metrics.jsonl"):
        if (folder / name).is_file():
            records = [json.loads(line) for line in (folder / name).read_text().splitlines()]
            out[name] = _digest([{k: v for k, v in r.items() if k != "seconds"} for r in records])
    for npz in sorted((folder / "spectra").glob("*.npz")) if (folder / "spectra").is_dir() else []:
        with np.load(npz) as arrays:
            kept = {k: arrays[k] for k in arrays.files if not k.endswith("_seconds")}
        out[f"spectra/{npz.name}"] = _digest({k: torch.as_tensor(np.asarray(v)) for k, v in sorted(kept.items())})
    return out


def run_case(name: str, root: Path, extra: list[str] = ()) -> Path:
    args, processes = CASES[name]
    cmd = [sys.executable, str(ROOT / "train.py"), *args, *extra, "--trainer.logger.init_args.save_dir", str(root),
           "--trainer.logger.init_args.name", name]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GAN_DYNAMICS_MKL_AMD": "0", "PYTHONPATH": str(ROOT),
           "GAN_DYNAMICS_CACHE": str(root / "cache")}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: train.py failed:\n{done.stderr[-3000:]}")
    versions = sorted((root / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return versions[-1]


def record(cases: list[str]) -> dict[str, dict[str, str]]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in cases:
            out[name] = fingerprint(run_case(name, Path(tmp)))
            print(f"{name:30s} {out[name]['state_dict']} {out[name]['optimizer']}", flush=True)
            if name in RESUMED:
                root = Path(tmp) / "resumed"
                root.mkdir(exist_ok=True)
                steps = CASES[name][0]
                half = [a if a != "40" or steps[i - 1] != "--trainer.max_steps" else "20" for i, a in enumerate(steps)]
                CASES[f"{name}@resume"] = (half, CASES[name][1])
                run_case(f"{name}@resume", root)
                CASES[f"{name}@resume"] = (steps, CASES[name][1])
                folder = run_case(f"{name}@resume", root, ["--ckpt_path", "last"])
                out[f"{name}@resume"] = fingerprint(folder)
                same = out[f"{name}@resume"]["state_dict"] == out[name]["state_dict"]
                print(f"{name + '@resume':30s} {out[name + '@resume']['state_dict']} "
                      f"{'(= uninterrupted)' if same else '(differs from the uninterrupted run!)'}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fingerprints", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "fingerprints.json")
    parser.add_argument("--compare", type=Path, default=None, help="a fingerprints file to compare with")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args(argv)
    result = record(args.cases)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True))
    if args.compare is None:
        return 0
    before = json.loads(args.compare.read_text())
    differ = [f"{case}: {key}" for case, parts in result.items() if case in before
              for key, value in parts.items() if before[case].get(key, value) != value]
    print("\n".join(["differ:", *differ]) if differ else f"all {len(result)} cases bit-identical")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
