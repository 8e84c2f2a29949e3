"""Spectra of the game Jacobian against closed forms, top-k against full, 2 processes against 1."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gans import JARE, SGA, ConOpt, Vanilla
from gans.spectrum import SpectrumResult, compute_spectrum
from tests.helpers import dirac_gan, mlp_gan
from tests.test_theory import TABLE, TOY_REAL, TOY_Z, affine_toy

ZERO = torch.zeros(4, 1)


def test_dirac_vanilla_spectrum():
    res = compute_spectrum(dirac_gan(Vanilla, 0.0, 0.0).float(), ZERO, ZERO)
    np.testing.assert_allclose(np.sort_complex(res.eigenvalues), [-0.5j, 0.5j], atol=1e-12)
    assert res.phase_factor == np.inf and res.spectral_radius == pytest.approx(0.5)
    assert res.contraction(0.1) == pytest.approx(np.sqrt(1 + 0.1 ** 2 / 4))  # simultaneous GD expands


@pytest.mark.parametrize("gamma", [0.5, 2.0, 8.0])
@pytest.mark.parametrize("cls,kw", [(ConOpt, "gamma"), (JARE, "gamma"), (SGA, "lam")])
def test_dirac_regularised_spectrum(cls, kw, gamma):
    extra = {"align": False} if cls is SGA else {}
    model = dirac_gan(cls, 0.0, 0.0, **{kw: gamma}, **extra)
    res = compute_spectrum(model, ZERO, ZERO, field="update")
    np.testing.assert_allclose(np.sort_complex(res.eigenvalues), [0.25 * gamma - 0.5j, 0.25 * gamma + 0.5j],
                               atol=1e-12)
    assert res.phase_factor == pytest.approx(1 / (gamma * 0.5))
    assert res.condition_number == pytest.approx(1.0)
    # the plain game field is the same for every method
    plain = compute_spectrum(model, ZERO, ZERO, field="gradient")
    np.testing.assert_allclose(np.sort_complex(plain.eigenvalues), [-0.5j, 0.5j], atol=1e-12)


@pytest.mark.parametrize("method,gamma", list(TABLE))
def test_affine_toy_table(method, gamma):
    cls = {"vanilla": Vanilla, "conopt": ConOpt, "jare": JARE}[method]
    model = affine_toy(cls, **({"gamma": float(gamma)} if gamma else {}))
    res = compute_spectrum(model, TOY_REAL, TOY_Z, field="update")
    expected = np.sort_complex(np.array(TABLE[(method, gamma)], dtype=complex))
    np.testing.assert_allclose(np.sort_complex(res.eigenvalues), expected, rtol=1e-6, atol=1e-6)
    mags = np.abs(expected)
    assert res.condition_number == pytest.approx(mags.max() / mags.min(), rel=1e-5)
    ratios = np.abs(expected.imag) / np.abs(expected.real)
    assert res.phase_factor == pytest.approx(ratios.max(), rel=1e-5, abs=1e-9)


def small_gan(cls=JARE, **kw):
    return mlp_gan(cls, width=12, depth=2, **({"gamma": 2.0} if cls in (JARE, ConOpt) else {}), **kw).float()


def batch(n=32, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=gen), torch.randn(n, 3, generator=gen)


@pytest.mark.parametrize("field", ["gradient", "update"])
def test_topk_agrees_with_full(field):
    model = small_gan()
    real, z = batch()
    full = compute_spectrum(model, real, z, field=field)
    top = compute_spectrum(model, real, z, field=field, k=8, tol=1e-12)
    assert full.mode == "full" and top.mode == "topk" and full.num_params == top.num_params
    largest_full = np.sort(np.abs(full.eigenvalues))[::-1][:8]
    largest_top = np.sort(np.abs(top.eigenvalues))[::-1][:8]
    np.testing.assert_allclose(largest_top, largest_full, rtol=1e-6)
    assert top.min_real == pytest.approx(full.min_real, rel=1e-6, abs=1e-9)


def test_spectrum_leaves_the_model_as_it_was():
    model = small_gan()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    compute_spectrum(model, *batch(), k=4)
    assert all(torch.equal(v, state[k]) and v.dtype == state[k].dtype for k, v in model.state_dict().items())


def test_batches_are_averaged_and_limits_are_clear():
    model = small_gan(Vanilla)
    (r1, z1), (r2, z2) = batch(16, 1), batch(16, 2)
    both = compute_spectrum(model, [r1, r2], [z1, z2], field="gradient")
    joint = compute_spectrum(model, torch.cat([r1, r2]), torch.cat([z1, z2]), field="gradient")
    np.testing.assert_allclose(np.sort_complex(both.eigenvalues), np.sort_complex(joint.eigenvalues), atol=1e-10)
    with pytest.raises(ValueError, match="ask for the top eigenvalues with k=20"):
        compute_spectrum(model, r1, z1, max_full_params=10)


def test_result_scalars_by_hand():
    res = SpectrumResult(np.array([2 + 1j, 2 - 1j, -0.5, 1e-14]), field="update", mode="full", num_params=4)
    assert res.num_zero == 1 and res.num_negative_real == 1
    assert res.phase_factor == pytest.approx(0.5)
    assert res.condition_number == pytest.approx(np.sqrt(5) / 0.5)
    assert res.min_real == -0.5 and res.spectral_radius == pytest.approx(np.sqrt(5))
    assert res.contraction(0.1) == pytest.approx(1.05)   # |1 - 0.1 * (-0.5)| beats |1 - 0.1 * (2 +- i)| = 0.806


# -- 2 processes (gloo) against 1 --------------------------------------------------------------

def _worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)  # two processes on a 2-core machine: no oversubscription
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        real, z = batch(32)
        shard = slice(rank * 16, (rank + 1) * 16)
        results = {}
        for name, cls, field, k in (("gradient_full", Vanilla, "gradient", None), ("gradient_topk", JARE, "gradient", 6),
                                    ("jare_update", JARE, "update", None)):
            res = compute_spectrum(small_gan(cls), real[shard], z[shard], field=field, k=k, tol=1e-12)
            results[name] = res.eigenvalues
        if rank == 0:
            np.savez(os.path.join(out_dir, "dist.npz"), **results)
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_spectrum_of_the_global_batch(tmp_path):
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="spawn")
    got = np.load(tmp_path / "dist.npz")
    real, z = batch(32)
    expected = {
        "gradient_full": compute_spectrum(small_gan(Vanilla), real, z, field="gradient").eigenvalues,
        "gradient_topk": compute_spectrum(small_gan(JARE), real, z, field="gradient", k=6, tol=1e-12).eigenvalues,
        "jare_update": compute_spectrum(small_gan(JARE), real, z, field="update").eigenvalues,
    }
    for name, values in expected.items():
        a, b = np.sort_complex(got[name]), np.sort_complex(values)
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9, err_msg=name)


# -- the callback --------------------------------------------------------------------------------

def test_callback_in_training_writes_logs_and_resumes(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import TensorBoardLogger

    from callbacks import JacobianSpectrum
    from datamodules import MixtureOfGaussians
    from tests.helpers import quiet_trainer

    def fit(steps, ckpt_path=None):
        model = mlp_gan(JARE, gamma=1.0, width=8, depth=2, optimizer=lambda p: torch.optim.Adam(p, lr=1e-3)).float()
        spectrum = JacobianSpectrum(every_n_steps=10, field="both", batch_size=32)
        trainer = quiet_trainer(steps, logger=TensorBoardLogger(tmp_path, name="run", version=0),
                                callbacks=[spectrum, ModelCheckpoint(save_last=True)], enable_checkpointing=True)
        trainer.fit(model, datamodule=MixtureOfGaussians(batch_size=32), ckpt_path=ckpt_path)
        return trainer, spectrum

    trainer, spectrum = fit(20)
    folder = tmp_path / "run" / "version_0"
    assert [r["iteration"] for r in spectrum.history] == [0, 0, 10, 10, 20, 20]
    saved = np.load(folder / "spectra" / "spectrum_000010.npz")
    assert saved["update_eigenvalues"].dtype == complex and saved["update_eigenvalues"].size == saved["gradient_eigenvalues"].size
    assert float(saved["update_phase_factor"]) == pytest.approx(spectrum.history[2]["phase_factor"])
    assert (folder / "plots" / "spectrum_000020.png").is_file() and (folder / "plots" / "spectrum_history.png").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder)).Reload()
    assert [e.step for e in events.Scalars("spectrum/update/condition_number")] == [0, 10, 20]
    assert {"spectrum/gradient/phase_factor", "spectrum/update/contraction"} <= set(events.Tags()["scalars"])
    # the JARE update field differs from the plain one
    assert not np.allclose(np.sort_complex(saved["update_eigenvalues"]), np.sort_complex(saved["gradient_eigenvalues"]))

    _, resumed = fit(30, ckpt_path=str(folder / "checkpoints" / "last.ckpt"))
    assert [r["iteration"] for r in resumed.history] == [0, 0, 10, 10, 20, 20, 30, 30]
    assert resumed.history[:6] == spectrum.history


def test_spectra_do_not_change_the_training_run(tmp_path):
    from callbacks import JacobianSpectrum
    from datamodules import MixtureOfGaussians
    from tests.helpers import quiet_trainer

    def trained(callbacks):
        torch.manual_seed(0)
        model = mlp_gan(SGA, width=8, depth=2, optimizer=lambda p: torch.optim.Adam(p, lr=1e-3)).float()
        quiet_trainer(12, callbacks=callbacks, default_root_dir=tmp_path).fit(
            model, datamodule=MixtureOfGaussians(batch_size=32))
        return model.state_dict()

    plain = trained([])
    watched = trained([JacobianSpectrum(every_n_steps=5, field="both", k=4, batch_size=16)])
    assert all(torch.equal(plain[k], watched[k]) for k in plain)
