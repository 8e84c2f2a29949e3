"""Ctrl-C, SIGTERM and SLURM's requeue signal (callbacks/interrupt.py): a checkpoint at the next
iteration boundary that ``--ckpt_path last`` continues exactly, an evaluation in progress ended
within seconds, the requeue saved where every process is, and the exit status of a stopped run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment

from callbacks.interrupt import Interruption
from commands.layers import CONFIGS
from datamodules import MixtureOfGaussians
from gans import Vanilla
from tests.helpers import mlp_gan, quiet_trainer
from tests.test_slurm import SLURM_ENV, wait_for

SMALL = ["--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
CHECKPOINTS = ["--trainer.callbacks=[]", "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
               "--trainer.callbacks.every_n_train_steps", "100000", "--trainer.callbacks.save_last", "true"]


def command(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, str(CONFIGS.parent / "train.py"), "--model", "vanilla", *SMALL,
            "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.logger.init_args.name", "run", *args]


def environment(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def interrupted(tmp_path: Path, signum: int, *args: str, after: float = 3.0) -> subprocess.CompletedProcess:
    """train.py sent ``signum`` ``after`` seconds after its run folder holds a config (training has started)."""
    job = subprocess.Popen(command(tmp_path, *args), env=environment(), cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "run" / "version_0" / "config.yaml").is_file(), 120, "training to start")
        time.sleep(after)
        sent = time.monotonic()
        job.send_signal(signum)
        out, err = job.communicate(timeout=60)
        ended = time.monotonic() - sent
    finally:
        if job.poll() is None:
            job.kill()
    return subprocess.CompletedProcess(job.args, job.returncode, out + f"\nended {ended:.1f} s after the signal", err)


def last_checkpoint(tmp_path: Path) -> dict:
    return torch.load(tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)


def test_sigterm_saves_at_the_next_boundary_and_says_so_in_the_exit_status(tmp_path):
    done = interrupted(tmp_path, signal.SIGTERM, *CHECKPOINTS, "--trainer.max_steps", "10000000")
    assert done.returncode == 143, done.stderr[-2000:]
    step = last_checkpoint(tmp_path)["global_step"]
    assert step > 0 and f"stopped by SIGTERM at iteration {step:,}" in done.stdout


def test_ctrl_c_saves_at_the_next_boundary_and_the_run_resumes_exactly(tmp_path):
    done = interrupted(tmp_path, signal.SIGINT, *CHECKPOINTS, "--trainer.max_steps", "10000000")
    assert done.returncode == 130, done.stderr[-2000:]
    step = last_checkpoint(tmp_path)["global_step"]
    assert step > 0 and f"stopped by SIGINT at iteration {step:,}" in done.stdout
    assert "--ckpt_path last" in done.stdout
    resumed = subprocess.run(command(tmp_path, *CHECKPOINTS, "--trainer.max_steps", str(step + 7), "--ckpt_path", "last"),
                             env=environment(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = subprocess.run(command(tmp_path / "whole", *CHECKPOINTS, "--trainer.max_steps", str(step + 7)),
                           env=environment(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    whole = torch.load(tmp_path / "whole" / "run" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    ours = last_checkpoint(tmp_path)
    assert ours["global_step"] == whole["global_step"] == step + 7
    assert all(torch.equal(ours["state_dict"][k], whole["state_dict"][k]) for k in whole["state_dict"])


def test_an_interrupt_ends_an_evaluation_in_progress_within_seconds(tmp_path):
    """A spectrum at the start that would search for minutes (no budget, an unreachable tolerance):
    Ctrl-C ends it at its next product, and the run saves iteration 0 and stops."""
    long_spectrum = ["--trainer.callbacks+=callbacks.JacobianSpectrum", "--trainer.callbacks.every_n_steps", "1000",
                     "--trainer.callbacks.field", "update", "--trainer.callbacks.k", "30",
                     "--trainer.callbacks.tol", "1e-30", "--trainer.callbacks.max_products", "null",
                     "--trainer.callbacks.dtype", "float64", "--model.generator.init_args.width", "128",
                     "--model.discriminator.init_args.width", "128"]
    done = interrupted(tmp_path, signal.SIGINT, *CHECKPOINTS, *long_spectrum, "--trainer.max_steps", "100")
    assert done.returncode == 130, done.stderr[-2000:]
    assert "stopped by SIGINT at iteration 0" in done.stdout
    assert float(done.stdout.rsplit("ended ", 1)[1].split()[0]) < 15
    assert last_checkpoint(tmp_path)["global_step"] == 0
    assert not (tmp_path / "run" / "version_0" / "spectra").exists()  # the abandoned evaluation wrote nothing


class SignalAt(pl.Callback):
    """Sends ``signum`` to this process when iteration ``at`` starts, before its step."""

    def __init__(self, signum: int, at: int):
        self.signum, self.at = signum, at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            os.kill(os.getpid(), self.signum)


def test_slurms_requeue_signal_saves_at_the_iteration_boundary(tmp_path, monkeypatch):
    """The signal arrives before iteration 3's step: the hpc checkpoint holds the state after that
    step (iteration 4, as the model ends), the job is requeued once and the run stops. Lightning's
    own handler saved where the signal found it, mid-iteration, and trained on."""
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    stub = tmp_path / "bin"
    stub.mkdir()
    calls = tmp_path / "scontrol_calls"
    (stub / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (stub / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub}:{os.environ['PATH']}")
    model = mlp_gan(Vanilla, optimizer=lambda p: torch.optim.SGD(p, lr=0.05))
    trainer = quiet_trainer(50, callbacks=[Interruption(), SignalAt(signal.SIGUSR1, 3)], default_root_dir=tmp_path,
                            plugins=[SLURMEnvironment(auto_requeue=True)])
    trainer.fit(model, datamodule=MixtureOfGaussians(kind="grid", batch_size=16))
    assert trainer.global_step == 4
    saved = torch.load(tmp_path / "hpc_ckpt_1.ckpt", weights_only=False)
    assert saved["global_step"] == 4
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in model.state_dict().items())
    assert calls.read_text().split() == ["requeue", "4242"]
    from runtime import interrupt
    assert interrupt.requested() is None  # forgotten when the run ended: later work in this process goes on
