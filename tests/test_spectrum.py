"""Spectra of the game Jacobian against closed forms, top-k against full, 2 processes against 1."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gans import JARE, SGA, ConOpt, Vanilla
from spectra.spectrum import SpectrumResult, compute_spectrum
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


# -- the diagnostic settings: float32 products, tolerance, budget, warm start, stable step, P^-1 J ---

#: what the callback's eigenvalues are held to: within this share of the spectral radius of float64's
DIAGNOSTIC_ACCURACY = 1e-4
DIAGNOSTIC = dict(dtype=torch.float32, tol=1e-4, k_smallest=1)  # the callback's defaults


def nearest_distance(values, reference) -> float:
    return max(np.abs(np.asarray(reference) - z).min() for z in values)


@pytest.mark.parametrize("field", ["gradient", "update"])
def test_diagnostic_settings_agree_with_the_dense_float64_spectrum(field):
    model = small_gan().double()
    real, z = batch()
    full = compute_spectrum(model, real, z, field=field)
    top = compute_spectrum(model, real, z, field=field, k=8, **DIAGNOSTIC)
    radius = full.spectral_radius
    assert nearest_distance(top.eigenvalues, full.eigenvalues) <= DIAGNOSTIC_ACCURACY * radius
    largest_full = np.sort(np.abs(full.eigenvalues))[::-1][:8]
    np.testing.assert_allclose(np.sort(np.abs(top.eigenvalues))[::-1][:8], largest_full, atol=DIAGNOSTIC_ACCURACY * radius)
    assert abs(top.min_real - full.min_real) <= DIAGNOSTIC_ACCURACY * radius
    assert top.products < 400 and not top.truncated


def test_a_warm_start_finds_the_eigenvalues_of_a_cold_one():
    model = small_gan()
    real, z = batch()
    first = compute_spectrum(model, real, z, k=6, **DIAGNOSTIC)
    assert set(first.start) == {"krylov"} and first.start["krylov"].shape == (first.num_params,)
    with torch.no_grad():  # the parameters a little further on
        for p in model.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    cold = compute_spectrum(model, real, z, k=6, **DIAGNOSTIC)
    warm = compute_spectrum(model, real, z, k=6, start=first.start, **DIAGNOSTIC)
    assert nearest_distance(warm.eigenvalues, cold.eigenvalues) <= DIAGNOSTIC_ACCURACY * cold.spectral_radius
    assert len(warm.eigenvalues) == len(cold.eigenvalues)
    assert not np.allclose(first.eigenvalues, cold.eigenvalues, rtol=1e-7, atol=0)  # the point did move


def test_a_product_budget_bounds_the_search_and_says_so():
    model = small_gan()
    real, z = batch()
    free = compute_spectrum(model, real, z, k=8, tol=1e-12)
    cut = compute_spectrum(model, real, z, k=8, tol=1e-12, max_products=40)
    assert free.products > 40 and not free.truncated
    assert cut.truncated and cut.products <= 40
    assert len(cut.eigenvalues) < len(free.eigenvalues)
    for budget in (25, 60, 100, 150):
        assert compute_spectrum(model, real, z, k=8, tol=1e-12, max_products=budget).products <= budget


def test_a_budget_too_small_for_one_search_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"max_products at least 10 \(k \+ k_smallest \+ 2\)"):
        compute_spectrum(small_gan(), *batch(), k=7, max_products=9)


def test_products_are_counted_for_a_progress_display():
    model = small_gan()
    seen = []
    res = compute_spectrum(model, *batch(), k=4, on_product=seen.append, **DIAGNOSTIC)
    assert sum(seen) == res.products > 0
    seen.clear()
    full = compute_spectrum(model, *batch(), on_product=seen.append)
    assert sum(seen) == full.num_params


@pytest.mark.parametrize("gamma", [0.5, 2.0, 8.0])
def test_stable_step_of_the_dirac_gan_in_closed_form(gamma):
    """ConOpt's update Jacobian at the Dirac-GAN's equilibrium has lambda = gamma/4 +- i/2, so
    |1 - eta lambda| < 1 iff eta < 2 Re(lambda) / |lambda|^2 = (gamma/2) / (gamma^2/16 + 1/4)."""
    res = compute_spectrum(dirac_gan(ConOpt, 0.0, 0.0, gamma=gamma), ZERO, ZERO, field="update")
    expected = (gamma / 2) / (gamma ** 2 / 16 + 1 / 4)
    assert res.stable_step == pytest.approx(expected, rel=1e-10)
    assert res.contraction(0.99 * expected) < 1 < res.contraction(1.01 * expected)
    assert res.scalars()["stable_step"] == res.stable_step
    # simultaneous GD on the Dirac-GAN (lambda = +-i/2) contracts at no step size
    plain = compute_spectrum(dirac_gan(Vanilla, 0.0, 0.0), ZERO, ZERO)
    assert plain.stable_step is None and "stable_step" not in plain.scalars()


def test_preconditioned_spectrum_is_that_of_diag_d_times_j():
    from tests.helpers import update_jacobian

    model = affine_toy(ConOpt, gamma=1.0)
    d = torch.tensor([0.5, 2.0, 3.0, 0.25], dtype=torch.float64)  # phi (2), theta (2)
    res = compute_spectrum(model, TOY_REAL, TOY_Z, field="update", preconditioner=d)
    jacobian = update_jacobian(model, TOY_REAL, TOY_Z).numpy()  # by central differences
    expected = np.linalg.eigvals(np.diag(d.numpy()) @ jacobian)
    np.testing.assert_allclose(np.sort_complex(res.eigenvalues), np.sort_complex(expected), rtol=1e-6, atol=1e-6)
    plain = compute_spectrum(model, TOY_REAL, TOY_Z, field="update")
    assert not np.allclose(np.sort_complex(plain.eigenvalues), np.sort_complex(expected), atol=1e-3)
    # top-k on a network game: the same operator through the Krylov-Schur search
    net = small_gan().double()
    real, z = batch()
    scale = torch.rand(sum(p.numel() for p in net.parameters()), generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64) + 0.5
    full = compute_spectrum(net, real, z, field="gradient", preconditioner=scale)
    top = compute_spectrum(net, real, z, field="gradient", k=6, tol=1e-12, preconditioner=scale)
    assert nearest_distance(top.eigenvalues, full.eigenvalues) <= 1e-8 * full.spectral_radius


def test_with_sgd_the_preconditioned_spectrum_is_the_plain_one():
    from runtime.optim import preconditioner

    model = small_gan()
    real, z = batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    d = preconditioner(optimizer)
    assert torch.equal(d, torch.ones(sum(p.numel() for p in model.parameters())))
    plain = compute_spectrum(model, real, z, k=4, **DIAGNOSTIC)
    same = compute_spectrum(model, real, z, k=4, preconditioner=d, **DIAGNOSTIC)
    np.testing.assert_array_equal(same.eigenvalues, plain.eigenvalues)


def dirac_run(lr: float, steps: int = 4, **spectrum):
    import warnings

    from callbacks import JacobianSpectrum
    from tests.helpers import dirac_data, quiet_trainer

    model = dirac_gan(ConOpt, 0.0, 0.0, gamma=2.0, lr=lr)  # stays at its equilibrium: stable step 2.0
    callback = JacobianSpectrum(every_n_steps=2, batch_size=4, field="update", **spectrum)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_trainer(steps, callbacks=[callback]).fit(model, datamodule=dirac_data())
    return callback, [str(w.message) for w in caught if "JacobianSpectrum" in str(w.message)]


def test_the_callback_warns_once_when_the_learning_rate_is_above_the_stable_step():
    callback, said = dirac_run(2.5)
    step_lines = [m for m in said if "above the largest stable step" in m]
    assert len(step_lines) == 1 and "2.5" in step_lines[0] and "below 2" in step_lines[0]
    assert [r["stable_step"] for r in callback.history] == pytest.approx([2.0] * len(callback.history))
    assert all(r["lr"] == 2.5 and r["contraction"] > 1 for r in callback.history)
    callback, said = dirac_run(1.5)
    assert not [m for m in said if "stable step" in m]
    assert all(r["contraction"] < 1 for r in callback.history)


def test_the_callback_reports_a_budget_that_ran_out(tmp_path):
    from callbacks import JacobianSpectrum
    from datamodules import MixtureOfGaussians
    from tests.helpers import quiet_trainer

    model = small_gan(optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
    callback = JacobianSpectrum(every_n_steps=0, batch_size=32, k=8, tol=1e-12, max_products=25, field="gradient")
    with pytest.warns(UserWarning, match="budget of 25 products ran out"):
        quiet_trainer(1, callbacks=[callback], default_root_dir=tmp_path).fit(model, datamodule=MixtureOfGaussians(batch_size=32))
    assert callback.history[0]["products"] <= 25


def test_the_preconditioned_callback_reads_the_optimizer_state(tmp_path):
    from callbacks import JacobianSpectrum
    from datamodules import MixtureOfGaussians
    from runtime.optim import preconditioner
    from tests.helpers import quiet_trainer

    model = small_gan(optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))
    callback = JacobianSpectrum(every_n_steps=5, batch_size=32, field="gradient", preconditioned=True, dtype="float64")
    trainer = quiet_trainer(10, callbacks=[callback], default_root_dir=tmp_path)
    with pytest.warns(UserWarning, match="no second-moment estimate before its first step"):
        trainer.fit(model, datamodule=MixtureOfGaussians(batch_size=32))
    assert [r["iteration"] for r in callback.history] == [5, 10]  # none before the first step
    assert all(r["preconditioned"] for r in callback.history)
    reals, zs = callback.settings.batches(model, callback._real)
    d = preconditioner(trainer.optimizers[0])
    expected = compute_spectrum(model, reals, zs, field="gradient", preconditioner=d)
    plain = compute_spectrum(model, reals, zs, field="gradient")
    assert callback.history[-1]["spectral_radius"] == pytest.approx(expected.spectral_radius, rel=1e-10)
    assert expected.spectral_radius != pytest.approx(plain.spectral_radius, rel=1e-2)


def test_resume_with_warm_starts_searches_as_an_uninterrupted_run(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    from callbacks import JacobianSpectrum
    from datamodules import MixtureOfGaussians
    from tests.helpers import quiet_trainer

    def fit(steps, folder, ckpt_path=None):
        model = mlp_gan(JARE, gamma=1.0, width=8, depth=2, optimizer=lambda p: torch.optim.Adam(p, lr=1e-3)).float()
        spectrum = JacobianSpectrum(every_n_steps=10, field="update", k=4, batch_size=32, warm_start=True)
        quiet_trainer(steps, callbacks=[spectrum, ModelCheckpoint(dirpath=folder, save_last=True)], enable_checkpointing=True,
                      default_root_dir=folder).fit(model, datamodule=MixtureOfGaussians(batch_size=32), ckpt_path=ckpt_path)
        return spectrum

    straight = fit(30, tmp_path / "straight")
    fit(20, tmp_path / "stopped")
    resumed = fit(30, tmp_path / "stopped", ckpt_path=str(tmp_path / "stopped" / "last.ckpt"))
    assert set(resumed._start["update"]) == {"krylov"}
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed.history] == \
           [{k: v for k, v in r.items() if k not in drop} for r in straight.history]


def test_the_search_runs_scipys_blas_on_one_thread():
    """While a top-k search runs, every BLAS threadpool threadpoolctl finds (scipy's OpenBLAS among them)
    is held to one thread, and given back afterwards."""
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    assert before, "threadpoolctl finds no BLAS library: the limit would do nothing"
    during = []
    compute_spectrum(small_gan(), *batch(), k=4, on_product=lambda n: during.append(blas_threads()), **DIAGNOSTIC)
    assert during and all(threads == [1] * len(before) for threads in during)
    assert blas_threads() == before
