"""Preemption on SLURM: SIGUSR1 saves an hpc checkpoint and requeues the job; the requeued job
resumes from it in the same run folder. scontrol is a stub on PATH that records its arguments."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

from commands.layers import CONFIGS

SLURM_ENV = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "gan",
             "SLURM_NODELIST": "localhost", "SLURM_LOCALID": "0", "SLURM_PROCID": "0", "SLURM_NODEID": "0"}


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_sigusr1_saves_requeues_and_the_next_start_resumes(tmp_path):
    stub = tmp_path / "bin"
    stub.mkdir()
    calls = tmp_path / "scontrol_calls"
    (stub / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (stub / "scontrol").chmod(0o755)
    env = {**os.environ, **SLURM_ENV, "PATH": f"{stub}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(CONFIGS.parent / "train.py"), "--model", "vanilla", "--trainer.enable_progress_bar",
           "false", "--trainer.logger.init_args.save_dir", str(tmp_path), "--model.generator.init_args.width", "16",
           "--model.discriminator.init_args.width", "16", "--trainer.callbacks=[]"]
    folder = tmp_path / "vanilla" / "slurm_4242"

    job = subprocess.Popen([*cmd, "--trainer.max_steps", "1000000"], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (folder / "config.yaml").is_file(), 120, "training to start")
        time.sleep(2)
        job.send_signal(signal.SIGUSR1)
        wait_for(lambda: calls.is_file() and (tmp_path / "hpc_ckpt_1.ckpt").is_file(), 60, "the requeue")
        job.send_signal(signal.SIGTERM)  # what SLURM does next
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert calls.read_text().split() == ["requeue", "4242"]
    step = torch.load(tmp_path / "hpc_ckpt_1.ckpt", weights_only=False)["global_step"]
    assert step > 0

    again = subprocess.run([*cmd, "--trainer.max_steps", str(step + 20)], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "hpc_ckpt_1.ckpt" in again.stdout + again.stderr  # restored from the hpc checkpoint
    assert f"Done: {step + 20} iterations | run folder {folder}" in again.stdout


def test_an_srun_task_knows_its_rank_and_a_run_without_a_logger_its_jobs_folder(tmp_path, monkeypatch):
    """srun starts every process itself: SLURM_PROCID is its rank (no RANK there), and a run without
    a logger names its folder after the job, the same on every process (each picked a version)."""
    from commands import train

    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert train.launched_rank() == 0
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert train.launched_rank() == 3
    monkeypatch.setenv("LOCAL_RANK", "1")  # a process Lightning started inside one SLURM task
    assert train.launched_rank() == 1
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv(train.RUN_FOLDER_ENV, raising=False)
    config = {"logger": False, "default_root_dir": None}
    train.place_run_folder(config, "vanilla")
    assert config["default_root_dir"] == str(__import__("pathlib").Path("runs") / "vanilla" / "slurm_77")
