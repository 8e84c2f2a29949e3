"""The GPU paths, checked before anyone depends on them: every check prints PASS or FAIL (with why)
and the seconds it took, and the exit status is the number that failed.

    python -m benchmarks.gpu_check                  # on a machine with a GPU (benchmarks/gpu_check.sh)
    python -m benchmarks.gpu_check --device cpu     # the same checks on the CPU with gloo (tests/test_benchmarks.py)
    python -m benchmarks.gpu_check --only nccl_statistics compiled_step

One GPU: every method's step with its statistics all-reduced through NCCL (which takes CUDA
tensors only, even in a world of one process), a run's spectra at its start, a checkpoint of the
optimistic method and of CGD resumed on the GPU (exactly), the compiled step (CUDA graphs) against
the eager one, bf16-mixed, an image run with the generator EMA and FID/KID, a compiled sweep,
``torchrun`` with ``game_ddp``, deterministic mode (StyleGAN's upsampling), TF32 kept out of the
second-order step, and the refusal of 16-mixed. Two GPUs (where two are visible): 2 processes
equal 1 with the global batch for JARE and CGD, a sweep, FID, and an error on one process ending
both. Each check is a ``train.py`` run or a few lines of library calls on small networks; the
whole set takes a few minutes. Results: benchmarks/results/gpu_check.json (or ``_cpu``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from benchmarks.common import write_results

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--model.generator.init_args.width", "32", "--model.discriminator.init_args.width", "32",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
NO_CALLBACKS = ["--trainer.callbacks=[]"]
LAST = ["--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint", "--trainer.callbacks.save_last", "true"]


class Check:
    """Where the checks run: the device, a scratch folder, and ``train.py`` as a subprocess."""

    def __init__(self, device: str, folder: Path):
        self.device, self.folder = device, folder
        self.accelerator = "gpu" if device == "cuda" else "cpu"
        self.env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        if device == "cpu":
            self.env["OMP_NUM_THREADS"] = "1"

    def train(self, name: str, *args: str, devices: int = 1, strategy: str | None = None, timeout: int = 300,
              launcher: list[str] | None = None, expect_failure: bool = False) -> subprocess.CompletedProcess:
        """``train.py *args`` on this device in a run folder of its own, ``folder/name``."""
        placement = ["--trainer.accelerator", self.accelerator, "--trainer.devices", str(devices)]
        if strategy:
            placement += ["--trainer.strategy", strategy]
        cmd = [*(launcher or [sys.executable]), str(ROOT / "train.py"), *args, *placement,
               "--trainer.logger.init_args.save_dir", str(self.folder), "--trainer.logger.init_args.name", name]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=self.folder)
        if (done.returncode == 0) == expect_failure:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise AssertionError(f"train.py {'succeeded' if expect_failure else 'failed'}: {' | '.join(tail)}")
        return done

    def run_folder(self, name: str, version: int = 0) -> Path:
        return self.folder / name / f"version_{version}"

    def last(self, name: str, version: int = 0) -> dict:
        return torch.load(self.run_folder(name, version) / "checkpoints" / "last.ckpt", map_location="cpu",
                          weights_only=False)


def same_parameters(a: dict, b: dict, rtol: float = 0.0) -> float:
    """The largest relative difference between two checkpoints' parameters (0: bit for bit); raises
    above ``rtol``."""
    worst = 0.0
    for key, value in a["state_dict"].items():
        other = b["state_dict"][key]
        if value.is_floating_point():
            scale = float(value.abs().max()) or 1.0
            worst = max(worst, float((value.double() - other.double()).abs().max()) / scale)
    if worst > rtol:
        raise AssertionError(f"parameters differ by {worst:.3g} (relative), more than {rtol:g}")
    return worst


# -- one device ---------------------------------------------------------------------------------------


def nccl_statistics(check: Check) -> str:
    """Every method's direction, its reductions and statistics, in a process group of one: NCCL on
    a GPU rejects a CPU tensor in any collective, which CGD's and SGA's statistics were."""
    import torch.distributed as dist

    from game.methods import METHODS
    from gans import TwoPlayerGAN
    from gans.networks import MLPDiscriminator, MLPGenerator
    from runtime.distributed import mean_across_processes

    backend = "nccl" if check.device == "cuda" else "gloo"
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        device = torch.device(check.device)
        real, names = torch.randn(64, 2, device=device), []
        for name, loss in [(n, "zero_sum") for n in METHODS] + [("cgd", "ns"), ("sga", "ns")]:
            torch.manual_seed(0)
            args = {"conopt": [1.0], "jare": [1.0], "cgd": [0.5]}.get(name, [])
            model = TwoPlayerGAN(MLPGenerator(8, 2, 32, 2), MLPDiscriminator(2, 32, 2), latent_dim=8, loss=loss,
                                 method=METHODS[name](*args)).to(device)
            model._device = device
            game = model.on_batch(real, model.sample_latent(64))
            update = model.method.direction(game, game.field(create_graph=model.second_order),
                                            reduce=mean_across_processes)
            for value in update.stats.values():  # what log_step all-reduces with sync_dist
                dist.all_reduce(value.detach().float().reshape(1))
            names.append(f"{name}/{loss}")
    finally:
        dist.destroy_process_group()
    return f"{len(names)} methods and losses"


def spectra_at_start(check: Check) -> str:
    check.train("spectra", "--model", "jare", *SMALL, "--trainer.max_steps", "1")
    found = sorted(p.name for p in (check.run_folder("spectra") / "spectra").glob("*.npz"))
    if "spectrum_000000.npz" not in found:
        raise AssertionError(f"no spectrum at iteration 0: {found}")
    return "spectrum_000000.npz"


def resume(check: Check, model: str) -> str:
    """A checkpoint of a stateful method, resumed on the device: the same parameters as the
    uninterrupted run (the state was read on the CPU and must move to the device)."""
    common = ["--model", model, *SMALL, *NO_CALLBACKS, *LAST]
    check.train(f"{model}_whole", *common, "--trainer.max_steps", "30")
    check.train(f"{model}_cut", *common, "--trainer.max_steps", "20")
    check.train(f"{model}_cut", *common, "--trainer.max_steps", "30", "--ckpt_path", "last")
    worst = same_parameters(check.last(f"{model}_whole"), check.last(f"{model}_cut"), rtol=1e-5)
    return f"resumed = uninterrupted (largest relative difference {worst:.2g})"


def compiled_step(check: Check) -> str:
    common = ["--model", "jare", *SMALL, *NO_CALLBACKS, *LAST, "--trainer.max_steps", "30"]
    check.train("eager", *common)
    check.train("compiled", *common, "--model.compile_step", "true")
    worst = same_parameters(check.last("eager"), check.last("compiled"), rtol=1e-3)
    return f"compiled = eager within {worst:.2g}" + (" (CUDA graphs)" if check.device == "cuda" else "")


def bf16(check: Check) -> str:
    check.train("bf16", "--model", "jare", *SMALL, *NO_CALLBACKS, *LAST, "--trainer.max_steps", "20",
                "--trainer.precision", "bf16-mixed")
    if not all(torch.isfinite(v).all() for v in check.last("bf16")["state_dict"].values() if v.is_floating_point()):
        raise AssertionError("non-finite parameters")
    return "bf16-mixed trains"


def tiny_dcgan(check: Check) -> Path:
    """A config layer with 8-wide DCGAN networks for the digits (an image run in seconds)."""
    nets = check.folder / "tiny.yaml"
    nets.write_text("model:\n  init_args:\n"
                    "    generator: {class_path: gans.networks.DCGANGenerator, init_args: {latent_dim: 64, channels: 1, "
                    "resolution: 32, width: 8}}\n"
                    "    discriminator: {class_path: gans.networks.DCGANDiscriminator, init_args: {channels: 1, "
                    "resolution: 32, width: 8}}\n")
    return nets


def image_run(check: Check) -> str:
    nets = tiny_dcgan(check)
    check.train("images", "--model", "jare", "--data", "digits", "--config", str(nets), "--model.ema_half_life", "500",
                "--trainer.max_steps", "20", *NO_CALLBACKS, *LAST, "--trainer.callbacks+=callbacks.FID",
                "--trainer.callbacks.every_n_steps", "10", "--trainer.callbacks.num_samples", "400",
                "--trainer.callbacks.feature_extractor", "classifier", "--trainer.callbacks.kid", "true",
                "--trainer.callbacks.kid_subset_size", "100", "--trainer.callbacks.kid_subsets", "5",
                "--trainer.enable_progress_bar", "false", timeout=600)
    records = [json.loads(line) for line in (check.run_folder("images") / "fid.jsonl").read_text().splitlines()]
    if [r["iteration"] for r in records] != [10, 20] or not all("kid_mean" in r for r in records):
        raise AssertionError(f"fid.jsonl: {records}")
    return f"FID {records[-1]['fid']:.2f}, KID {records[-1]['kid_mean']:.4f}"


def compiled_sweep(check: Check) -> str:
    done = check.train("sweep", "--model", "jare", *SMALL, "--sweep.seeds", "4", "--model.compile_step", "true",
                       "--trainer.max_steps", "20", "--trainer.callbacks=[]", *LAST, timeout=600)
    if "compile_step: torch.compile failed" in done.stderr + done.stdout:
        raise AssertionError("the compiled sweep fell back to the eager path")
    return "4 members, compiled"


def torchrun(check: Check) -> str:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--standalone"]
    check.train("torchrun", "--model", "jare", *SMALL, *NO_CALLBACKS, *LAST, "--trainer.max_steps", "10",
                strategy="game_ddp", launcher=launcher)
    return "torchrun --nproc-per-node 1 with game_ddp"


def deterministic(check: Check) -> str:
    check.train("deterministic", "--model", "semistylegan", "--trainer.deterministic", "true", "--trainer.max_steps",
                "3", *NO_CALLBACKS, "--data.num_workers", "0", "--trainer.enable_progress_bar", "false")
    return "Semi-StyleGAN under torch.use_deterministic_algorithms"


def tf32_kept_out(check: Check) -> str:
    """With --tf32 true the first-order step may use TF32; the second-order step never does."""
    from gans import JARE
    from gans.networks import MLPDiscriminator, MLPGenerator
    from runtime import precision

    saved = precision.tf32_state()
    try:
        precision.set_tf32(True)
        model = JARE(MLPGenerator(8, 2, 16, 2), MLPDiscriminator(2, 16, 2), latent_dim=8)
        with model.full_precision():
            inside = precision.tf32_enabled()
    finally:
        precision._restore(saved)
    if inside:
        raise AssertionError("TF32 was on inside the second-order step")
    return "off inside the second-order step"


def refused_16_mixed(check: Check) -> str:
    if check.device != "cuda":
        return "skipped: 16-mixed needs a GPU"
    done = check.train("fp16", "--model", "jare", *SMALL, "--trainer.precision", "16-mixed", "--trainer.max_steps", "1",
                       expect_failure=True)
    if "is not supported: float16 needs a gradient scaler" not in done.stderr:
        raise AssertionError(done.stderr.strip().splitlines()[-1])
    return "one line"


# -- two devices ----------------------------------------------------------------------------------------


def two_equal_one(check: Check, model: str) -> str:
    common = ["--model", model, *SMALL, *NO_CALLBACKS, *LAST, "--trainer.max_steps", "10"]
    check.train(f"{model}_two", *common, "--data.batch_size", "64", devices=2, strategy="game_ddp")
    check.train(f"{model}_one", *common, "--data.batch_size", "128")
    worst = same_parameters(check.last(f"{model}_two"), check.last(f"{model}_one"), rtol=1e-4)
    return f"2 processes = 1 with the global batch within {worst:.2g}"


def two_sweep(check: Check) -> str:
    check.train("sweep2", "--model", "jare", *SMALL, "--sweep.seeds", "2", "--sweep.gamma", "[10,100]",
                "--trainer.max_steps", "10", "--trainer.callbacks=[]", devices=2, strategy="game_ddp")
    return "a sweep on 2 processes"


def two_fid(check: Check) -> str:
    nets = tiny_dcgan(check)
    check.train("fid2", "--model", "jare", "--data", "digits", "--config", str(nets), "--trainer.max_steps", "10",
                *NO_CALLBACKS, "--trainer.callbacks+=callbacks.FID", "--trainer.callbacks.every_n_steps", "10",
                "--trainer.callbacks.num_samples", "400", "--trainer.callbacks.feature_extractor", "classifier",
                "--trainer.enable_progress_bar", "false", devices=2, strategy="game_ddp", timeout=600)
    return "FID on 2 processes"


FAILING = '''
import pytorch_lightning as pl


class FailOnRank1(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == 3:
            raise RuntimeError("rank 1 failed on purpose")
'''


def two_failure(check: Check) -> str:
    (check.folder / "failing.py").write_text(FAILING)
    check.env["PYTHONPATH"] = f"{check.folder}{os.pathsep}{check.env['PYTHONPATH']}"
    start = time.perf_counter()
    done = check.train("failing", "--model", "jare", *SMALL, "--trainer.max_steps", "1000", *NO_CALLBACKS,
                       "--trainer.callbacks+=failing.FailOnRank1", devices=2, strategy="game_ddp", timeout=240,
                       expect_failure=True)
    if "error on rank 1 of 2" not in done.stderr:
        raise AssertionError(f"no message from the failure watch: {done.stderr.strip().splitlines()[-1]}")
    return f"both processes ended {time.perf_counter() - start:.0f} s after start"


CHECKS: dict[str, Callable[[Check], str]] = {
    "nccl_statistics": nccl_statistics, "spectra_at_start": spectra_at_start,
    "resume_optimistic": lambda c: resume(c, "optimistic"), "resume_cgd": lambda c: resume(c, "cgd"),
    "compiled_step": compiled_step, "bf16": bf16, "image_run_ema_fid_kid": image_run, "compiled_sweep": compiled_sweep,
    "torchrun_game_ddp": torchrun, "deterministic": deterministic, "tf32_kept_out": tf32_kept_out,
    "refused_16_mixed": refused_16_mixed,
}
TWO_DEVICE_CHECKS: dict[str, Callable[[Check], str]] = {
    "two_jare": lambda c: two_equal_one(c, "jare"), "two_cgd": lambda c: two_equal_one(c, "cgd"),
    "two_sweep": two_sweep, "two_fid": two_fid, "two_failure": two_failure,
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--only", nargs="+", choices=[*CHECKS, *TWO_DEVICE_CHECKS], default=None)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("FAIL no CUDA device (run with --device cpu to check the checks themselves)")
        return 1
    devices = torch.cuda.device_count() if args.device == "cuda" else 2
    chosen = args.only or [*CHECKS, *(TWO_DEVICE_CHECKS if devices >= 2 else [])]
    if args.device == "cuda":
        print(f"{torch.cuda.get_device_name(0)} x {devices}, torch {torch.__version__}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    rows, failed = [], 0
    try:
        for name in chosen:
            start = time.perf_counter()
            try:
                said, ok = {**CHECKS, **TWO_DEVICE_CHECKS}[name](Check(args.device, folder)), True
            except Exception as err:  # noqa: BLE001 (a check's failure is reported, and the others go on)
                said, ok = f"{type(err).__name__}: {err}", False
                if os.environ.get("GAN_DYNAMICS_DEBUG") == "1":
                    traceback.print_exc()
            seconds = time.perf_counter() - start
            failed += not ok
            print(f"{'PASS' if ok else 'FAIL'} {name} ({seconds:.0f} s): {said}", flush=True)
            rows.append({"check": name, "passed": ok, "seconds": round(seconds, 1), "said": said})
        if devices < 2 and args.only is None:
            print(f"SKIP the two-device checks: {devices} device visible", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    write_results(f"gpu_check{'' if args.device == 'cuda' else '_cpu'}", rows, smoke=False, device=args.device)
    print(f"{len(rows) - failed} passed, {failed} failed")
    return failed


if __name__ == "__main__":
    sys.exit(main())
