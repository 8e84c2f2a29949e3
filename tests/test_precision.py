"""TF32 (runtime/precision.py): off by default, a documented switch for the first-order step, and
never in the second-order methods, the spectra or FID. On a CPU the switches change no number, so
the tests check where the full-float32 context is entered and that settings are restored."""
from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from commands import train
from gans import JARE, Vanilla
from runtime import precision
from spectra.spectrum import compute_spectrum
from tests.helpers import mlp_gan


@pytest.fixture(autouse=True)
def _restored():
    saved = precision.tf32_state()
    yield
    precision._restore(saved)


def test_the_switch_and_the_full_float32_block():
    precision.set_tf32(True)
    assert precision.tf32_enabled()
    with precision.full_float32():
        assert not precision.tf32_enabled()
    assert precision.tf32_enabled()  # put back as it was
    precision.set_tf32(False)
    assert not precision.tf32_enabled()


@pytest.fixture
def entered(monkeypatch):
    """Where a full-float32 block is entered: the modules' own reference, recorded."""
    calls = []

    @contextlib.contextmanager
    def recording():
        calls.append(True)
        with precision.full_float32():
            yield

    import gans.base
    import metrics.fid_score
    import spectra.spectrum
    for module in (gans.base, spectra.spectrum, metrics.fid_score):
        monkeypatch.setattr(module, "full_float32", recording)
    return calls


@pytest.mark.parametrize("cls,second_order", [(JARE, True), (Vanilla, False)])
def test_second_order_steps_run_without_tf32(cls, second_order, entered, batch64):
    model = mlp_gan(cls)
    with model.full_precision():
        pass
    assert bool(entered) == second_order


def test_spectra_and_fid_features_run_without_tf32(entered, batch64):
    compute_spectrum(mlp_gan(JARE, gamma=0.5), *batch64, field="update", k=2)
    assert len(entered) == 1
    from metrics.fid_score import FIDScore

    metric = FIDScore(num_samples=10, batch_size=5, feature_extractor=nn.Flatten())
    metric.extractor = metric.feature_extractor
    metric._features(torch.randn(4, 3))
    assert len(entered) == 2


def test_train_py_sets_tf32_as_asked(tmp_path):
    common = ["--model", "vanilla", "--trainer.max_steps", "1", "--trainer.callbacks=[]", "--trainer.enable_progress_bar",
              "false", "--trainer.logger.init_args.save_dir", str(tmp_path), "--model.generator.init_args.width", "8",
              "--model.discriminator.init_args.width", "8"]
    train.main([*common, "--tf32", "true"])
    assert precision.tf32_enabled()
    train.main(common)
    assert not precision.tf32_enabled()
