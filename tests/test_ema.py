"""The generator EMA: its half-life in images, the ramp-up, sampling from it, checkpoints."""
from __future__ import annotations

import pytest
import torch

from datamodules import MixtureOfGaussians
from gans import JARE, Vanilla
from tests.helpers import mlp_gan, quiet_trainer


def params(module):
    return torch.nn.utils.parameters_to_vector(module.parameters()).detach().clone()


def test_half_life_in_images():
    model = mlp_gan(Vanilla, ema_half_life=1000)
    start = params(model.generator)
    assert torch.equal(params(model.generator_ema), start)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    model.update_ema(num_images=1000)                      # one half-life: half way
    torch.testing.assert_close(params(model.generator_ema), start + 0.5)
    model.update_ema(num_images=500)
    model.update_ema(num_images=500)                       # another half-life in two steps: 3/4 of the way
    torch.testing.assert_close(params(model.generator_ema), start + 0.75)


def test_rampup_forgets_the_initialisation_early():
    model = mlp_gan(Vanilla, ema_half_life=1e6, ema_rampup=0.05)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    model.update_ema(num_images=64)                        # no images seen yet: the EMA jumps to G
    torch.testing.assert_close(params(model.generator_ema), params(model.generator))


def test_no_ema_by_default_and_bad_half_life():
    assert mlp_gan(Vanilla).generator_ema is None
    with pytest.raises(ValueError, match="ema_half_life must be a positive number of images"):
        mlp_gan(Vanilla, ema_half_life=-5)


def test_training_moves_the_ema_which_samples_and_is_checkpointed(tmp_path):
    model = mlp_gan(JARE, gamma=1.0, ema_half_life=200, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))
    model.float()
    trainer = quiet_trainer(5, enable_checkpointing=False)
    trainer.fit(model, datamodule=MixtureOfGaussians(batch_size=32))
    g, ema = params(model.generator), params(model.generator_ema)
    assert not torch.equal(g, ema)                                       # lags behind G
    opt_params = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not opt_params & {id(p) for p in model.generator_ema.parameters()}   # not trained
    z = torch.randn(7, 3)
    torch.testing.assert_close(model.generate(z), model.generator_ema(z))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    fresh = mlp_gan(JARE, gamma=1.0, ema_half_life=200).float()
    fresh.load_state_dict(torch.load(tmp_path / "m.ckpt", weights_only=False)["state_dict"])
    assert torch.equal(params(fresh.generator_ema), ema)
