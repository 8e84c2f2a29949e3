"""The game without Lightning (game.twoplayer.TwoPlayerGame): examples/plain_loop.py trains what
train.py trains, and takes no Lightning import; the plain game's direction and spectra are the
model's."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from commands import train
from game.methods import Extragradient, JacobianRegularization
from game.twoplayer import GameOnBatch, TwoPlayerGame
from gans import JARE
from gans.networks import MLPDiscriminator, MLPGenerator
from spectra.spectrum import compute_spectrum

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plain_loop.py"


def example():
    spec = importlib.util.spec_from_file_location("plain_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plain_loop_ends_where_train_py_ends(tmp_path):
    """Six iterations of JARE on the ring in float64: the loop's parameters are train.py's, bit for
    bit (the same networks, data, codes, optimizer and arithmetic)."""
    steps, width = 6, 16
    trainer = train.main(["--model", "jare", "--trainer.precision", "64-true", "--trainer.max_steps", str(steps),
                          "--model.generator.init_args.width", str(width),
                          "--model.discriminator.init_args.width", str(width), "--trainer.callbacks=[]",
                          "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir",
                          str(tmp_path)])
    model = trainer.lightning_module
    game = example().train(steps=steps, width=width, dtype=torch.float64)
    ours = {**{f"generator.{k}": v for k, v in game.generator.state_dict().items()},
            **{f"discriminator.{k}": v for k, v in game.discriminator.state_dict().items()}}
    theirs = {k: v for k, v in model.state_dict().items() if k.split(".")[0] in ("generator", "discriminator")}
    assert set(ours) == set(theirs)
    moved = False
    for name, value in theirs.items():
        assert torch.equal(ours[name], value), name
        moved |= not torch.equal(value, example_initial(width)[name])
    assert moved  # the runs trained


def example_initial(width: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    G, D = MLPGenerator(64, 2, width, 4), MLPDiscriminator(2, width, 4)
    return {**{f"generator.{k}": v.double() for k, v in G.state_dict().items()},
            **{f"discriminator.{k}": v.double() for k, v in D.state_dict().items()}}


def test_the_plain_loop_runs_without_lightning():
    code = (f"import runpy, sys; sys.argv = ['plain_loop.py', '--steps', '3', '--width', '8']; "
            f"runpy.run_path({str(EXAMPLE)!r}, run_name='__main__'); "
            f"bad = [m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning')]; "
            f"assert not bad, bad[:5]")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "modes_covered" in done.stdout


def nets(seed=0):
    torch.manual_seed(seed)
    return MLPGenerator(3, 2, 8, 2).double(), MLPDiscriminator(2, 8, 2).double()


def test_the_plain_game_gives_the_models_direction_and_spectrum():
    """A TwoPlayerGame and a gans.JARE on the same networks and batch: the same direction, and the
    same eigenvalues (a dense spectrum of the update's Jacobian)."""
    G, D = nets()
    plain = TwoPlayerGame(G, D, latent_dim=3, loss="zero_sum", method=JacobianRegularization(10.0))
    model = JARE(*nets(), latent_dim=3, loss="zero_sum", gamma=10.0).double()
    real, z = torch.randn(16, 2, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    u = plain.direction(real, z)
    g, d = model.update_direction(real, z)
    for a, b in zip([*u.g, *u.d], [*g, *d]):
        assert torch.equal(a, b)
    ours = compute_spectrum(plain, real, z, field="update", k=None).eigenvalues
    theirs = compute_spectrum(model, real, z, field="update", k=None).eigenvalues
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)


def test_a_method_that_steps_by_the_learning_rate_asks_for_it():
    G, D = nets()
    plain = TwoPlayerGame(G, D, latent_dim=3, loss="zero_sum", method=Extragradient())
    real, z = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"give the game learning_rates=\(lr_g, lr_d\)"):
        plain.direction(real, z)
    assert isinstance(plain.on_batch(real, z), GameOnBatch)
    stepped = plain.direction(real, z, learning_rates=(1e-2, 1e-2))
    assert all(torch.isfinite(t).all() for t in [*stepped.g, *stepped.d])
