"""Shared helpers: tiny games in float64 and a quiet Lightning trainer."""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from datamodules import MixtureOfGaussians
from game.methods import METHODS
from gans import TwoPlayerGAN
from gans.networks import DiracGenerator, LinearDiscriminator, MLPDiscriminator, MLPGenerator

warnings.filterwarnings("ignore", ".*does not have many workers.*")


def model_named(name: str, *args, **options) -> TwoPlayerGAN:
    """The model ``configs/models/NAME.yaml`` describes: ``TwoPlayerGAN`` with the method ``NAME``
    (``game.methods.METHODS``), its options taken by name from ``options``."""
    method = METHODS[name]
    names = set(inspect.signature(method).parameters)
    chosen = {k: options.pop(k) for k in list(options) if k in names}
    return TwoPlayerGAN(*args, method=method(**chosen), **options)


def mlp_gan(cls, *, loss="zero_sum", latent_dim=3, width=5, depth=2, activation="tanh", seed=0, **kwargs):
    """A small MLP GAN in float64 with smooth activations (so every second derivative is informative)."""
    torch.manual_seed(seed)
    g = MLPGenerator(latent_dim, 2, width, depth, activation)
    d = MLPDiscriminator(2, width, depth, activation)
    return cls(g, d, latent_dim=latent_dim, loss=loss, **kwargs).double()


def dirac_gan(cls, theta=1.0, psi=1.0, *, loss="zero_sum", lr=0.1, **kwargs):
    """The Dirac-GAN: G = delta_theta, D(x) = psi * x, data at 0, trained with plain SGD."""
    return cls(DiracGenerator(1, theta), LinearDiscriminator(1, psi), latent_dim=1, loss=loss,
               optimizer=lambda params: torch.optim.SGD(params, lr=lr), **kwargs).double()


def dirac_data(batch_size=4):
    return MixtureOfGaussians(kind="custom", modes=[[0.0]], std=0.0, batch_size=batch_size)


def quiet_trainer(max_steps, **kwargs) -> pl.Trainer:
    defaults = dict(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, accelerator="cpu", devices=1)
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def update_jacobian(module, real, z, h=1e-6):
    """The Jacobian of ``update_direction`` by central differences (float64 models)."""
    params = module.params_g + module.params_d
    x0 = torch.nn.utils.parameters_to_vector(params).detach().clone()
    cols = []
    for j in range(len(x0)):
        outs = []
        for sign in (1, -1):
            x = x0.clone()
            x[j] += sign * h
            torch.nn.utils.vector_to_parameters(x, params)
            outs.append(flat(sum(module.update_direction(real, z), [])))
        cols.append((outs[0] - outs[1]) / (2 * h))
    torch.nn.utils.vector_to_parameters(x0, params)
    return torch.stack(cols, dim=1)


def tiny_dcgan_config(folder) -> Path:
    """A config layer with DCGAN networks of width 4 for 1-channel 32x32 images (the digits preset):
    an image run that trains in seconds."""
    config = Path(folder) / "tiny.yaml"
    config.write_text("model:\n  init_args:\n"
                      "    generator: {class_path: gans.networks.DCGANGenerator, init_args: {latent_dim: 64, channels: 1, "
                      "resolution: 32, width: 4}}\n"
                      "    discriminator: {class_path: gans.networks.DCGANDiscriminator, init_args: {channels: 1, "
                      "resolution: 32, width: 4}}\n")
    return config


def two_processes_equal_one(tmp_path: Path, common: list[str]) -> str:
    """Train ``train.py *common`` on 2 gloo processes (game_ddp) with batch 32 and in this process with
    batch 64, and assert that their last checkpoints hold the same parameters (float64 runs);
    returns the 2-process run's output."""
    import os
    import subprocess
    import sys

    from commands import train

    cmd = [sys.executable, str(Path(train.__file__).parents[1] / "train.py"), *common, "--trainer.strategy", "game_ddp",
           "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--data.batch_size", "32",
           "--trainer.logger.init_args.name", "two"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    train.main([*common, "--data.batch_size", "64", "--trainer.logger.init_args.name", "one"])
    two, one = (torch.load(tmp_path / name / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
                for name in ("two", "one"))
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-10, atol=1e-12, msg=key)
    return done.stdout
