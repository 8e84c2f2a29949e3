"""Exact data parallelism: 2 processes (gloo) with batch B train to the same parameters as 1 process
with batch 2B, for every method; the naive per-process regulariser does not."""
from __future__ import annotations

import os
import socket

import pytest
import pytorch_lightning as pl
import torch
import torch.multiprocessing as mp

from commands.layers import CONFIGS
from datamodules import MixtureOfGaussians
from game import algebra
from game.methods import CompetitiveGradient, Extragradient, JacobianRegularization, OptimisticGradient
from gans import JARE, SGA, ConOpt, GameDDPStrategy, TwoPlayerGAN, Vanilla
from runtime.distributed import mean_across_processes
from tests.helpers import mlp_gan, quiet_trainer, two_processes_equal_one

STEPS, BATCH = 4, 16
EXPECTED_SUMMARY: dict[str, str] = {}


class NaiveJacobianRegularization(JacobianRegularization):
    """What DDP-style averaging gives: each process's own direction, averaged afterwards."""

    def direction(self, game_, field, *, reduce=algebra.no_reduce, differentiable=False):
        local = super().direction(game_, field)
        if reduce is not algebra.no_reduce:
            g = mean_across_processes(local.g + local.d)
            return algebra.Update(g[:len(local.g)], g[len(local.g):], local.stats)
        return local


CASES = {
    "vanilla": (Vanilla, {}),
    "alternating": (Vanilla, {"update": "alternating", "n_d": 2}),
    "conopt": (ConOpt, {"gamma": 0.5}),
    "jare": (JARE, {"gamma": 0.5}),
    "sga": (SGA, {"lam": 0.5}),
    "extragradient": (TwoPlayerGAN, {"method": Extragradient(0.1)}),
    "optimistic": (TwoPlayerGAN, {"method": OptimisticGradient()}),
    "optimistic_alternating": (TwoPlayerGAN, {"method": OptimisticGradient(), "update": "alternating"}),
    "cgd": (TwoPlayerGAN, {"method": CompetitiveGradient(0.5, tol=1e-13, max_iter=60)}),
    "r1": (Vanilla, {"penalty": "r1", "penalty_weight": 2.0}),
    "wgan_gp": (JARE, {"gamma": 0.5, "penalty": "wgan_gp", "penalty_every": 2}),
    "naive_jare": (TwoPlayerGAN, {"method": NaiveJacobianRegularization(0.5)}),
}


def train(name: str, batch_size: int, **trainer_kwargs) -> dict[str, torch.Tensor]:
    cls, kw = CASES[name]
    model = mlp_gan(cls, loss="ns", width=8, depth=2, optimizer=lambda p: torch.optim.SGD(p, lr=0.05), **kw)
    pl.seed_everything(0, verbose=False)
    quiet_trainer(STEPS, **trainer_kwargs).fit(model, datamodule=MixtureOfGaussians(kind="grid", batch_size=batch_size))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Drift(pl.Callback):
    def __init__(self, rank):
        self.rank = rank

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.rank == 1 and trainer.global_step == 2:
            with torch.no_grad():
                next(module.parameters()).add_(1e-3)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    # what torchrun sets: Lightning joins the process group instead of launching processes
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    torch.set_num_threads(1)
    results = {name: train(name, BATCH, devices=world, strategy=GameDDPStrategy(check_sync_every=1)) for name in CASES}
    try:  # a process that drifts away is caught on every process (no hang)
        train("jare", BATCH, devices=world, strategy=GameDDPStrategy(check_sync_every=1), callbacks=[Drift(rank)])
        results["drift_error"] = ""
    except RuntimeError as err:
        results["drift_error"] = str(err)
    if rank == 0:
        torch.save(results, out)
    torch.distributed.destroy_process_group()  # a gloo group alive at exit can abort the process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp") / "results.pt")
    saved = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")}
    try:
        mp.start_processes(_worker, args=(2, _free_port(), out), nprocs=2, start_method="spawn")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
    return torch.load(out)


@pytest.mark.parametrize("name", [n for n in CASES if n != "naive_jare"])
def test_two_processes_equal_one_process_with_the_global_batch(two_process_results, name):
    single = train(name, 2 * BATCH)
    for key, value in single.items():
        torch.testing.assert_close(two_process_results[name][key], value, rtol=1e-10, atol=1e-12, msg=key)


def test_debug_check_catches_processes_that_drift_apart(two_process_results):
    assert "iteration 3: the processes' parameters have drifted apart" in two_process_results["drift_error"]


def test_the_naive_per_process_regulariser_is_not_the_global_one(two_process_results):
    single = train("jare", 2 * BATCH)
    assert any(not torch.allclose(two_process_results["naive_jare"][k], v, rtol=1e-6, atol=1e-9)
               for k, v in single.items())
    # ... while on one process the two are the same method
    naive_single = train("naive_jare", 2 * BATCH)
    assert all(torch.equal(naive_single[k], v) for k, v in single.items())


@pytest.mark.parametrize("model", ["vanilla", "jare"])
def test_train_py_on_two_processes_equals_one_process_with_the_global_batch(tmp_path, model):
    """The README's promise through the command line, callbacks included: 2 processes with batch B end
    with the parameters of 1 process with batch 2B (float64). The latent codes come from the run's own
    stream, whatever the launcher or the model's construction drew from the global generator."""
    common = ["--model", model, "--trainer.max_steps", "12", "--trainer.precision", "64-true",
              "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path),
              "--model.generator.init_args.width", "16", "--model.discriminator.init_args.width", "16"]
    two_processes_equal_one(tmp_path, common)


@pytest.mark.parametrize("strategy", ["game_ddp", "game_ddp_spawn", "ddp"])
def test_command_line_training_on_two_processes(tmp_path, strategy):
    """train.py with 2 CPU processes: Lightning launches them, callbacks log once and never hang, and
    every launcher (and Lightning's own ddp, whose idle wrapper the models bypass) trains alike."""
    import subprocess
    import sys


    cmd = [sys.executable, str(CONFIGS.parent / "train.py"), "--model", "jare", "--trainer.strategy", strategy,
           "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.max_steps", "20",
           "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path),
           "--model.generator.init_args.width", "16", "--model.discriminator.init_args.width", "16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Done: modes covered") == 1  # printed by rank 0 only
    line = next(x for x in done.stdout.splitlines() if x.startswith("Done:"))
    assert line.split(" | run folder")[0] == EXPECTED_SUMMARY.setdefault("line", line.split(" | run folder")[0])
    folder = tmp_path / "jare" / "version_0"
    assert (folder / "spectra" / "spectrum_000000.npz").is_file()
    assert len((folder / "mixture_metrics.jsonl").read_text().splitlines()) == 1
    assert (folder / "checkpoints" / "last.ckpt").is_file()
