"""Every process reaches every collective: decisions that gate one are taken once (rank 0's) and
shared, and an error on one process ends the others within seconds instead of leaving them in a
collective until the process group's timeout. Each scenario below hung (or failed) before; two
gloo processes run them all and must finish in well under a minute."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from callbacks.fid import FID
from commands.layers import CONFIGS
from game.methods import CompetitiveGradient, SymplecticGradientAdjustment
from gans import JARE, TwoPlayerGAN, Vanilla
from metrics.cache import cached
from runtime.checkpoint import atomic_save
from runtime.distributed import mean_across_processes
from runtime.streams import global_states, restore_global_states, seed_for_rank
from spectra import spectrum as spectrum_module
from spectra.spectrum import compute_spectrum
from tests.helpers import flat, mlp_gan

WORLD = 2


def _shard(rank: int, n: int = 16, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    real, z = torch.randn(n, 2, generator=gen, dtype=torch.float64), torch.randn(n, 3, generator=gen, dtype=torch.float64)
    half = n // WORLD
    return real[rank * half:(rank + 1) * half], z[rank * half:(rank + 1) * half]


def _error(fn) -> str:
    try:
        fn()
    except Exception as err:  # noqa: BLE001 (the test records whatever each process raised)
        return f"{type(err).__name__}: {err}"
    return ""


def _scenarios(rank: int, tmp: Path) -> dict:
    from tests.test_fid import affine_model, gaussian_data

    out = {}
    # 1. The FID cache seen by rank 0 only (a lagging shared file system): rank 0 decides for all.
    options = dict(num_samples=300, batch_size=100, feature_extractor=nn.Flatten(), cache_dir=str(tmp / "cache"),
                   progress=False)
    first = FID(**options).score(affine_model(), gaussian_data(n=401))["fid"]
    again = FID(**options)
    real_is_file = Path.is_file
    hidden = mock.patch.object(Path, "is_file", lambda p: False if p.name.startswith("real-") else real_is_file(p))
    with hidden if rank == 1 else mock.patch.object(Path, "is_file", real_is_file):
        second = again.score(affine_model(), gaussian_data(n=401))["fid"]
    out["fid"] = (first, second, again.real_from_cache)
    # ... and a cache on a node-local disk: only rank 0's holds the file.
    local = tmp / f"node{rank}"
    if rank == 0:
        atomic_save({"value": torch.tensor(7.0)}, local / "x.pt")
    out["cache"] = float(cached(local / "x.pt", lambda: {"value": torch.tensor(-1.0)})["value"])

    # 2. Rank 0's search fails: in the update spectrum it evaluates alone, and in the distributed
    # search it drives (after two products); every process raises rank 0's error.
    real, z = _shard(rank)

    def failing(after: int):
        def both_ends(matvec, v0, **kw):
            for _ in range(after):
                matvec(v0)
            raise ValueError("the search failed on rank 0")
        return both_ends

    jare, vanilla = mlp_gan(JARE, gamma=0.5), mlp_gan(Vanilla)
    with mock.patch.object(spectrum_module, "both_ends", failing(0) if rank == 0 else spectrum_module.both_ends):
        out["alone"] = _error(lambda: compute_spectrum(jare, real, z, field="update", k=2))
    with mock.patch.object(spectrum_module, "both_ends", failing(2) if rank == 0 else spectrum_module.both_ends):
        out["driver"] = _error(lambda: compute_spectrum(vanilla, real, z, field="gradient", k=2))
    # 3. A non-finite field on one process's shard only: both refuse it.
    bad = real.clone()
    if rank == 1:
        bad[0, 0] = float("nan")
    out["nonfinite"] = _error(lambda: compute_spectrum(vanilla, bad, z, field="gradient", k=2))

    # 4. Solvers that would stop at different iterations (another tolerance on each process, as
    # rounding would make them): both follow rank 0, and take the same direction.
    for loss, name in (("zero_sum", "cg"), ("ns", "gmres")):
        cgd = mlp_gan(TwoPlayerGAN, loss=loss, method=CompetitiveGradient(0.5, tol=1e-2 if rank == 0 else 1e-13,
                                                                          max_iter=60))
        game = cgd.on_batch(real, z)
        update = cgd.method.direction(game, game.field(create_graph=True), reduce=mean_across_processes)
        out[name] = (float(update.stats["cgd/iterations"]), flat(update.g + update.d))
    # SGA's sign: rank 1's offset makes its own rule choose the other sign.
    sga = mlp_gan(TwoPlayerGAN, method=SymplecticGradientAdjustment(1.0, eps=0.1 if rank == 0 else -1e30))
    game = sga.on_batch(real, z)
    out["sga"] = float(sga.method.direction(game, game.field(create_graph=True), reduce=mean_across_processes)
                       .stats["sga/lambda"])

    # 5. Each process draws its own noise, and a checkpoint's global state restores each its own.
    torch.manual_seed(0)
    seed_for_rank(0, rank)
    out["draw"] = torch.randn(3)
    state = global_states()
    after = torch.randn(3)
    torch.randn(5)
    restored = restore_global_states(state, rank, WORLD)
    out["restored"] = (restored, len(state["ranks"]), torch.equal(torch.randn(3), after))
    return out


def _worker(rank: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.save(_scenarios(rank, Path(tmp)), Path(tmp) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("collectives")
    context = mp.start_processes(_worker, args=(_free_port(), str(tmp)), nprocs=WORLD, start_method="spawn", join=False)
    deadline = time.monotonic() + 150
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two processes did not finish: a collective that not every process reached")
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


def test_rank0_decides_what_the_fid_cache_holds(results):
    for out in results:
        first, second, from_cache = out["fid"]
        assert second == pytest.approx(first, rel=1e-12) and from_cache
        assert out["cache"] == 7.0  # rank 0's file, though rank 1's disk has none


@pytest.mark.parametrize("case", ["alone", "driver"])
def test_an_error_in_rank0s_search_ends_every_process(results, case):
    assert [out[case] for out in results] == ["ValueError: the search failed on rank 0"] * WORLD


def test_a_non_finite_shard_stops_every_process(results):
    assert all(out["nonfinite"].startswith("FloatingPointError: the gradient field is not finite") for out in results)


@pytest.mark.parametrize("solver", ["cg", "gmres"])
def test_solvers_stop_where_rank0_stops(results, solver):
    (iterations0, direction0), (iterations1, direction1) = (out[solver] for out in results)
    assert iterations0 == iterations1 < 60
    torch.testing.assert_close(direction0, direction1, rtol=0, atol=0)


def test_sgas_sign_is_rank0s(results):
    assert results[0]["sga"] == results[1]["sga"] == 1.0


def test_each_process_draws_its_own_noise_and_gets_it_back_on_resume(results):
    assert not torch.equal(results[0]["draw"], results[1]["draw"])
    assert all(out["restored"] == (True, WORLD, True) for out in results)


FAILING_CALLBACK = '''
import os
import pytorch_lightning as pl


class FailOnRank1(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == 3:
            raise RuntimeError("rank 1 ran out of memory")
'''


def test_an_error_on_one_process_ends_every_process_within_seconds(tmp_path):
    """Rank 1 fails at iteration 3; rank 0 waits in the next all-reduce, and its failure watch ends it
    (before, it waited for the process group's 30-minute timeout)."""
    (tmp_path / "failing.py").write_text(FAILING_CALLBACK)
    cmd = [sys.executable, str(CONFIGS.parent / "train.py"), "--model", "jare", "--trainer.strategy", "game_ddp",
           "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.max_steps", "1000",
           "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path),
           "--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8",
           "--trainer.callbacks=[]", "--trainer.callbacks+=failing.FailOnRank1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert done.returncode != 0
    assert "error on rank 1 of 2: RuntimeError: rank 1 ran out of memory" in done.stderr
    assert time.monotonic() - start < 120  # start-up included; the stop itself takes about a second
