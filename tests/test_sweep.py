"""Sweeps (gans.sweep, game.stacked, commands.sweep): N games in one stacked model, each member
training as its single run trains."""
from __future__ import annotations

import csv
import inspect
import json

import pytest
import pytorch_lightning as pl
import torch

from commands import member as member_command
from commands import sample, spectrum, train
from datamodules import MixtureOfGaussians
from datamodules.stacked import StackedData
from game import algebra
from game.krylov import conjugate_gradient, conjugate_gradient_members
from game.stacked import StackedNetworks
from gans.checkpoint import load_model
from gans.networks import MLPDiscriminator, MLPGenerator
from gans.sweep import SweepGAN, member_checkpoint
from runtime.optim import RMSpropTF
from tests.helpers import model_named, quiet_trainer, two_processes_equal_one

STEPS = 12


def build(name, seed, *, lr=1e-3, **options):
    """A member as its single run builds it: the seed, then the networks and the model (float64)."""
    pl.seed_everything(seed, verbose=False)
    g, d = MLPGenerator(4, 2, 8, 2), MLPDiscriminator(2, 8, 2)
    options.setdefault("loss", "zero_sum")
    return model_named(name, generator=g, discriminator=d, latent_dim=4, latent_std=2.0,
                        optimizer=lambda p: RMSpropTF(p, lr=lr), **options).double()


def data():
    return MixtureOfGaussians(kind="ring", radius=2.0, std=0.06, batch_size=16)


def single_run(name, seed, steps=STEPS, **options):
    model = build(name, seed, **options)
    pl.seed_everything(seed, verbose=False)  # what train.py --seed_everything SEED leaves for training
    quiet_trainer(steps).fit(model, datamodule=data())
    return model


def sweep_run(name, seeds, settings, steps=STEPS, **options):
    sweep = SweepGAN([build(name, s, **options, **kw) for s, kw in zip(seeds, settings)], seeds, settings)
    quiet_trainer(steps).fit(sweep, datamodule=data())
    return sweep


def assert_member_is(sweep, index, single, tol=1e-12):
    ours, theirs = sweep.member_model(index).state_dict(), single.state_dict()
    assert set(ours) == set(theirs)
    for k in theirs:
        scale = float(theirs[k].abs().max()) or 1.0
        assert float((ours[k] - theirs[k]).abs().max()) <= tol * scale, (index, k)


@pytest.mark.parametrize("name,options", [
    ("vanilla", {}), ("vanilla", {"update": "alternating", "n_d": 2}), ("jare", {}), ("conopt", {}), ("sga", {}),
    ("jare", {"discriminator_pass": "joint"}), ("vanilla", {"update": "alternating", "order": "d_first"}),
    ("sga", {"align_dim": "tensors"}), ("extragradient", {}), ("optimistic", {"update": "alternating"}), ("cgd", {})])
def test_members_of_a_seed_sweep_match_their_single_runs(name, options):
    """Three seeds in one sweep end, in float64, where the three single runs end (to rounding: the
    members' inner products are summed in another order). SGA's alignment sign is each member's own."""
    sweep = sweep_run(name, [0, 1, 2], [{}] * 3, **options)
    for i in range(3):
        assert_member_is(sweep, i, single_run(name, i, **options))
    if name == "sga":  # the sign differs between members somewhere: a global alignment would have coupled them
        assert sweep.alive.all()


@pytest.mark.parametrize("name,setting,values", [
    ("jare", "gamma", [1.0, 10.0, 100.0]), ("conopt", "gamma", [0.1, 1.0, 10.0]), ("sga", "lam", [0.1, 1.0, 3.0]),
    ("cgd", "eta", [0.01, 0.1, 1.0]), ("extragradient", "extrapolation", [1e-3, 1e-2, 3e-2]),
    ("vanilla", "lr", [1e-4, 1e-3, 1e-2]), ("extragradient", "lr", [1e-4, 1e-3, 1e-2])])
def test_members_of_a_hyperparameter_sweep_match_their_single_runs(name, setting, values):
    """One seed, three values of a hyperparameter (a vector with one value per member inside the
    sweep); the extragradient's default extrapolation follows each member's own learning rate."""
    settings = [{setting: v} for v in values]
    sweep = sweep_run(name, [0, 0, 0], settings)
    finals = []
    for i, kw in enumerate(settings):
        single = single_run(name, 0, **kw)
        assert_member_is(sweep, i, single)
        finals.append(torch.cat([p.detach().reshape(-1) for p in single.parameters()]))
    assert not torch.allclose(finals[0], finals[2])  # the setting did change the training


def test_a_sweep_of_one_trains_like_the_single_run_in_float32():
    """A sweep of one member in float32 ends within float32 rounding of the single run: the
    stacked forward pass is a batched matrix product, summed in another order than the single one."""
    sweep = SweepGAN([build("jare", 3).float()], [3], [{}])
    quiet_trainer(STEPS).fit(sweep, datamodule=data())
    single = build("jare", 3).float()
    pl.seed_everything(3, verbose=False)
    quiet_trainer(STEPS).fit(single, datamodule=data())
    assert_member_is(sweep, 0, single, tol=1e-5)


def test_a_compiled_sweep_with_data_of_its_own_trains_as_the_eager_sweep(recwarn):
    """``compile_step``: the members' torch.func step vmapped and compiled, each member with its own
    gamma and its own data stream (``StackedData``), ends where the eager sweep ends (float64)."""
    settings = [{"gamma": g} for g in (1.0, 10.0, 100.0)]

    def fit(**options):
        sweep = SweepGAN([build("jare", s, **options, **kw) for s, kw in zip([0, 1, 2], settings)], [0, 1, 2], settings,
                         member_data_hparams=[{}] * 3)
        members = [MixtureOfGaussians(kind="ring", radius=2.0, std=0.06, batch_size=16, seed=s) for s in range(3)]
        quiet_trainer(8).fit(sweep, datamodule=StackedData(members))
        return sweep

    compiled, eager = fit(compile_step=True), fit()
    assert not [w for w in recwarn if "torch.compile failed" in str(w.message)]  # it did train compiled
    for m in range(3):
        ours, theirs = compiled.member_state_dict(m), eager.member_state_dict(m)
        assert all(float((ours[k] - v).abs().max()) <= 1e-10 * float(v.abs().max()) for k, v in theirs.items())


def test_a_diverging_member_is_frozen_and_the_others_train_on_unchanged(recwarn):
    """An absurd learning rate for member 1: it is frozen at the iteration its loss or update stops
    being finite (a warning names it), its parameters stay finite and still, and members 0 and 2
    end exactly as in a sweep without it."""
    seeds, rates = [0, 1, 2], [{"lr": 1e-3}, {"lr": 1e200}, {"lr": 1e-3}]
    sweep = sweep_run("jare", seeds, rates)
    assert sweep.alive.tolist() == [True, False, True] and 0 < sweep.diverged_at[1] < STEPS
    assert any("sweep member 1 (seed 1, lr=1e+200) diverged" in str(w.message) for w in recwarn)
    longer = sweep_run("jare", seeds, rates, steps=STEPS + 5)
    frozen, later = sweep.member_state_dict(1), longer.member_state_dict(1)
    assert all(torch.isfinite(v).all() and torch.equal(v, later[k]) for k, v in frozen.items())
    without = sweep_run("jare", [0, 2], [rates[0], rates[2]])
    for i, j in ((0, 0), (2, 1)):
        ours, theirs = sweep.member_state_dict(i), without.member_state_dict(j)
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_members_skip_non_finite_iterations_as_their_single_runs_do(recwarn):
    """on_nonfinite=skip: member 1's absurd learning rate makes its iterations non-finite after the
    first; each is skipped (its parameters and its optimizer state stay), as in its single run, and
    member 0 trains on as its own single run; the counts are each member's."""
    sweep = sweep_run("jare", [0, 1], [{"lr": 1e-3}, {"lr": 1e200}], on_nonfinite="skip")
    assert sweep.alive.all() and not sweep.diverged_at  # skipped, not frozen
    for i, lr in enumerate((1e-3, 1e200)):
        single = single_run("jare", i, lr=lr, on_nonfinite="skip")
        assert sweep.member_guards[i].skipped == single.skipped
        assert_member_is(sweep, i, single)
    assert sweep.skipped == sweep.member_guards[1].skipped == STEPS - 1


SHARED_VALUES = {"latent_dim": 3, "loss": "hinge", "update": "alternating", "order": "d_first", "n_d": 2,
                 "penalty_weight": 3.0, "penalty_every": 1, "latent_std": 1.5, "lr_d": 1e-2, "on_nonfinite": "skip",
                 "ema_half_life": 100.0, "ema_rampup": 0.05, "flat_buffers": False, "compile_step": True,
                 "discriminator_pass": "joint"}


def test_every_setting_of_a_single_run_is_honoured_or_refused_by_a_sweep():
    """Every argument of TwoPlayerGAN has its treatment in gans.sweep.SETTINGS (a new one fails here
    until it is placed), and every shared setting reaches the sweep: with a value other than the
    default in every member, the sweep trains with that value."""
    from gans.base import TwoPlayerGAN
    from gans.sweep import SETTINGS
    arguments = set(inspect.signature(TwoPlayerGAN.__init__).parameters) - {"self"}
    assert set(SETTINGS) == arguments, "place the new argument in gans.sweep.SETTINGS (shared, swept or refused)"
    shared = {name for name, kind in SETTINGS.items() if kind == "shared"}
    assert set(SHARED_VALUES) == shared, "give the new shared setting a value other than its default here"
    defaults = inspect.signature(TwoPlayerGAN.__init__).parameters
    assert all(SHARED_VALUES[n] != defaults[n].default for n in shared if n != "penalty_every")

    def member(seed):
        torch.manual_seed(seed)
        return TwoPlayerGAN(MLPGenerator(3, 2, 8, 2), MLPDiscriminator(2, 8, 2), **SHARED_VALUES)
    sweep = SweepGAN([member(0), member(1)], [0, 1])
    assert {name: sweep.hparams[name] for name in shared} == SHARED_VALUES
    with pytest.raises(ValueError, match="the gradient penalty r2 is not available in a sweep"):
        SweepGAN([build("vanilla", 0, penalty="r2")], [0])


def test_every_member_diverging_stops_the_run():
    with pytest.raises(FloatingPointError, match="every member of the sweep has diverged"):
        sweep_run("vanilla", [0, 1], [{"lr": 1e200}, {"lr": 1e250}])


def test_members_must_agree_on_what_is_not_swept():
    with pytest.raises(ValueError, match="differs from member 0 in loss"):
        SweepGAN([build("jare", 0), build("jare", 1, loss="ns")], [0, 1])
    with pytest.raises(ValueError, match="the gradient penalty r1 is not available in a sweep: it differentiates each "
                                         "member's discriminator with respect to its real samples"):
        SweepGAN([build("vanilla", 0, penalty="r1")], [0])
    with pytest.raises(ValueError, match="wgan_gp.*random interpolates of its real and generated samples"):
        SweepGAN([build("vanilla", 0, penalty="wgan_gp")], [0])
    with pytest.raises(ValueError, match="numeric hyperparameters only"):
        SweepGAN([build("sga", 0), build("sga", 1, align_dim="tensors")], [0, 1])
    sweep = SweepGAN([build("cgd", 0, loss="ns"), build("cgd", 1, loss="ns")], [0, 1])
    with pytest.raises(ValueError, match="conjugate gradient per member"):
        quiet_trainer(1).fit(sweep, datamodule=data())


def test_stacked_networks_are_their_members():
    torch.manual_seed(0)
    nets = [MLPGenerator(3, 2, 5, 2) for _ in range(3)]
    stacked = StackedNetworks(nets)
    z = torch.randn(3, 7, 3)
    out = stacked(z)
    for m, net in enumerate(nets):
        assert torch.allclose(out[m], net(z[m]), atol=1e-6)
        copy = stacked.member(m)
        assert type(copy) is MLPGenerator and torch.equal(copy(z[m]), net(z[m]))
    with pytest.raises(ValueError, match="one batch per member"):
        stacked(torch.randn(2, 7, 3))
    with pytest.raises(ValueError, match="share one architecture"):
        StackedNetworks([MLPGenerator(3, 2, 5, 2), MLPGenerator(3, 2, 6, 2)])


def test_per_member_algebra():
    """dot and norm per member; axpy with one coefficient per member; conjugate gradient per member
    equals each member's own solve (a global one would couple them)."""
    torch.manual_seed(0)
    a, b = [torch.randn(3, 4, 2, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)], \
        [torch.randn(3, 4, 2, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)]
    for m in range(3):
        assert algebra.dot(a, b, members=True)[m] == pytest.approx(float(algebra.dot([t[m] for t in a], [t[m] for t in b])))
        assert algebra.norm(a, members=True)[m] == pytest.approx(float(algebra.norm([t[m] for t in a])))
    alpha = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    y = algebra.axpy(alpha, a, b)
    assert torch.allclose(y[1][2], b[1][2] + 0.5 * a[1][2])
    blocks = [torch.randn(6, 6, dtype=torch.float64) for _ in range(3)]
    spd = torch.stack([q @ q.T + (1 + 10 * m) * torch.eye(6, dtype=torch.float64) for m, q in enumerate(blocks)])
    rhs = [torch.randn(3, 6, dtype=torch.float64)]

    def stacked_matvec(v):
        return [torch.einsum("mij,mj->mi", spd, v[0])]
    solve = conjugate_gradient_members(stacked_matvec, rhs, tol=1e-10, max_iter=8)
    for m in range(3):
        own = conjugate_gradient(lambda v: [spd[m] @ v[0]], [rhs[0][m]], tol=1e-10, max_iter=8)
        assert torch.allclose(solve.x[0][m], own.x[0], atol=1e-12) and solve.iterations[m] == own.iterations


def test_resume_of_a_sweep_is_exact_and_members_export(tmp_path, capsys):
    """A sweep interrupted at iteration 10 and resumed ends bit for bit where the uninterrupted one
    ends; member 1 of its checkpoint is an ordinary checkpoint: load_model, commands.sample."""
    def main(name, steps, *extra):
        return train.main(["--model", "jare", "--sweep.seeds", "2", "--sweep.gamma", "[10, 100]",
                           "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.logger.init_args.name", name,
                           "--trainer.enable_progress_bar", "false", "--data.init_args.batch_size", "32",
                           "--model.generator.init_args.width", "16", "--model.discriminator.init_args.width", "16",
                           "--trainer.max_steps", str(steps), *extra])

    straight = main("straight", 20)
    main("resumed", 10)
    resumed = main("resumed", 20, "--ckpt_path", "last")
    a, b = straight.lightning_module.state_dict(), resumed.lightning_module.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    opt_a, opt_b = straight.optimizers[0].state_dict()["state"], resumed.optimizers[0].state_dict()["state"]
    assert all(torch.equal(opt_a[i][k], opt_b[i][k]) for i in opt_a for k in opt_a[i])
    ckpt = tmp_path / "resumed" / "version_0" / "checkpoints" / "last.ckpt"
    out = member_command.main([str(ckpt), "3"])
    assert "member 3 (seed 1, gamma=100)" in capsys.readouterr().out
    model = load_model(out)
    assert type(model).__name__ == "TwoPlayerGAN" and model.method.gamma == 100.0
    assert load_model(member_command.main([str(ckpt), "0"])).method.gamma == 10.0
    ours = resumed.lightning_module.member_state_dict(3)
    assert all(torch.equal(v, ours[k]) for k, v in model.state_dict().items())
    assert member_checkpoint(torch.load(ckpt, weights_only=False), 3)["global_step"] == 20
    samples = sample.main([str(out), "--num", "200"])
    assert samples.with_suffix(".png").is_file()
    spectra = spectrum.main([str(out), "--k", "4", "--batch-size", "32", "--field", "gradient", "--preconditioned"])
    assert spectra.with_suffix(".npz").is_file()  # the member's optimizer state: its RMSProp preconditioner
    with pytest.raises(SystemExit):
        member_command.main([str(ckpt), "4"])


def test_command_line_members_are_the_single_runs(tmp_path):
    """``--sweep.seeds 2 --sweep.lr [..]`` in float64: member (seed 1, lr 3e-3) ends where
    ``train.py --seed_everything 1 --model.optimizer.lr 3e-3`` ends; the run folder holds sweep.csv
    (one row per member), sweep.yaml and the plots."""
    common = ["--model", "conopt", "--trainer.logger.init_args.save_dir", str(tmp_path),
              "--trainer.enable_progress_bar", "false", "--data.init_args.batch_size", "32",
              "--model.generator.init_args.width", "16", "--model.discriminator.init_args.width", "16",
              "--trainer.max_steps", "15", "--trainer.precision", "64-true"]
    swept = train.main([*common, "--sweep.seeds", "2", "--sweep.lr", "[1e-3, 3e-3]", "--trainer.callbacks=[]",
                        "--trainer.callbacks+=callbacks.MixtureMetrics", "--trainer.callbacks.every_n_steps", "10",
                        "--trainer.callbacks.num_samples", "300"])
    single = train.main([*common, "--seed_everything", "1", "--model.optimizer.init_args.lr", "3e-3",
                         "--trainer.logger.init_args.name", "single", "--trainer.callbacks=[]"])
    ours, theirs = swept.lightning_module.member_state_dict(3), single.lightning_module.state_dict()
    assert all(float((ours[k] - v).abs().max()) <= 1e-12 * float(v.abs().max()) for k, v in theirs.items())
    folder = tmp_path / "conopt_sweep" / "version_0"
    rows = list(csv.DictReader(open(folder / "sweep.csv")))
    assert [(r["member"], r["seed"], r["lr"]) for r in rows] == [("0", "0", "0.001"), ("1", "1", "0.001"),
                                                                 ("2", "0", "0.003"), ("3", "1", "0.003")]
    assert {"modes_covered", "high_quality", "kl_uniform", "diverged", "iteration"} <= set(rows[0])
    assert all(r["iteration"] == "15" and r["diverged"] == "False" for r in rows)
    assert (folder / "sweep.yaml").is_file() and (folder / "plots" / "sweep_map.png").is_file()
    assert (folder / "plots" / "sweep_curves.png").is_file()


def test_members_with_data_streams_of_their_own(tmp_path):
    """``--sweep.data_seeds true``: member 1 of ``--seed_everything 5 --data.init_args.seed 7`` trains
    as ``--seed_everything 6 --data.init_args.seed 8`` does (float64), and its exported checkpoint
    records that data seed."""
    common = ["--model", "jare", "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar",
              "false", "--data.init_args.batch_size", "32", "--model.generator.init_args.width", "16",
              "--model.discriminator.init_args.width", "16", "--trainer.max_steps", "10", "--trainer.precision", "64-true",
              "--trainer.callbacks=[]"]
    swept = train.main([*common, "--seed_everything", "5", "--data.init_args.seed", "7", "--sweep.seeds", "2",
                        "--sweep.data_seeds", "true", "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
                        "--trainer.callbacks.save_last", "true"])
    single = train.main([*common, "--seed_everything", "6", "--data.init_args.seed", "8",
                         "--trainer.logger.init_args.name", "single"])
    ours, theirs = swept.lightning_module.member_state_dict(1), single.lightning_module.state_dict()
    assert all(float((ours[k] - v).abs().max()) <= 1e-12 * float(v.abs().max()) for k, v in theirs.items())
    rows = list(csv.DictReader(open(tmp_path / "jare_sweep" / "version_0" / "sweep.csv")))
    assert [(r["seed"], r["data_seed"]) for r in rows] == [("5", "7"), ("6", "8")]
    other = swept.lightning_module.member_state_dict(0)
    assert not torch.allclose(other["generator.net.0.weight"], ours["generator.net.0.weight"])
    ckpt = torch.load(tmp_path / "jare_sweep" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    assert member_checkpoint(ckpt, 1)["datamodule_hyper_parameters"]["seed"] == 8


SWEEP = ["--model", "jare", "--sweep.seeds", "2", "--sweep.gamma", "[10, 1000]", "--trainer.enable_progress_bar", "false",
         "--data.init_args.batch_size", "32", "--model.generator.init_args.width", "16",
         "--model.discriminator.init_args.width", "16", "--trainer.callbacks=[]",
         "--trainer.callbacks+=callbacks.MixtureMetrics", "--trainer.callbacks.every_n_steps", "10",
         "--trainer.callbacks.num_samples", "300",
         "--trainer.callbacks+=callbacks.JacobianSpectrum", "--trainer.callbacks.every_n_steps", "10",
         "--trainer.callbacks.field", "update", "--trainer.callbacks.k", "6", "--trainer.callbacks.batch_size", "64",
         "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint", "--trainer.callbacks.save_last", "true"]


def test_a_members_spectrum_in_the_table_is_the_one_its_checkpoint_gives(tmp_path):
    """sweep.csv's spectrum of member 3 is evaluated with the run's JacobianSpectrum settings (its
    seed too: it took the metrics' before), and the offline command on the exported member, with
    no option, takes the same settings from the run's config: the same eigenvalues."""
    train.main([*SWEEP, "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.max_steps", "10",
                "--sweep.spectra", "all"])
    folder = tmp_path / "jare_sweep" / "version_0"
    row = list(csv.DictReader(open(folder / "sweep.csv")))[3]
    assert "stable_step" in row  # a column even where no step size contracts
    exported = member_command.main([str(folder / "checkpoints" / "last.ckpt"), "3"])
    assert exported.name == "member3_last_step10.ckpt"
    offline = __import__("numpy").load(spectrum.main([str(exported)]))
    assert offline["setting_seed"] == 4321 and offline["setting_k"] == 6 and str(offline["setting_field"]) == "update"
    assert "gradient_eigenvalues" not in offline.files and spectrum.main([str(exported)]).name == \
        "member3_last_step10_2.npz"  # the step once; a second run beside the first, not over it
    for key in ("phase_factor", "min_real", "spectral_radius"):
        assert float(row[key]) == pytest.approx(float(offline[f"update_{key}"]), rel=1e-6, abs=1e-9), key


def test_member_spectra_follow_the_spectrum_callbacks_cadence(tmp_path):
    """The members' spectra are taken where a single run's JacobianSpectrum takes them: before the
    first iteration and every every_n_steps (5), not at the metrics' cadence (10)."""
    args = list(SWEEP)
    args[args.index("--trainer.callbacks+=callbacks.JacobianSpectrum") + 2] = "5"
    train.main([*args, "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.max_steps", "10",
                "--sweep.spectra", "[1]"])
    folder = tmp_path / "jare_sweep" / "version_0"
    records = [json.loads(line) for line in (folder / "sweep_spectra.jsonl").read_text().splitlines()]
    assert [(r["iteration"], r["member"], r["field"]) for r in records] == [(0, 1, "update"), (5, 1, "update"),
                                                                           (10, 1, "update")]
    assert sorted(p.name for p in (folder / "spectra").glob("sweep_*.npz")) == [
        "sweep_000000.npz", "sweep_000005.npz", "sweep_000010.npz"]
    metrics = [json.loads(line) for line in (folder / "sweep_metrics.jsonl").read_text().splitlines()]
    assert sorted({r["iteration"] for r in metrics}) == [10] and "phase_factor" not in metrics[0]


def test_resuming_a_sweep_needs_its_own_options_and_a_refusal_leaves_nothing(tmp_path):
    common = [*SWEEP, "--trainer.logger.init_args.save_dir", str(tmp_path)]
    train.main([*common, "--trainer.max_steps", "5"])
    folder = tmp_path / "jare_sweep" / "version_0"
    ckpt = folder / "checkpoints" / "last.ckpt"
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    with pytest.raises(SystemExit) as info:  # without the sweep's options
        train.main(["--model", "jare", "--trainer.max_steps", "9", "--ckpt_path", str(ckpt)])
    message = str(info.value.code)
    assert "the checkpoint of a sweep of 4 members: resume it with its sweep options (--sweep.seeds 2 " \
           "--sweep.gamma [10,1000])" in message and "python -m commands.member" in message
    with pytest.raises(SystemExit) as info:  # other members
        train.main([*common, "--trainer.max_steps", "9", "--sweep.gamma", "[10, 100]", "--ckpt_path", "last"])
    assert "is a sweep of other members (seeds [0, 1, 0, 1], settings [{'gamma': 10.0}" in str(info.value.code)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    single = tmp_path / "single.ckpt"
    torch.save({k: v for k, v in torch.load(ckpt, weights_only=False).items() if k != "sweep"}, single)
    with pytest.raises(SystemExit) as info:
        train.main([*common, "--trainer.max_steps", "9", "--ckpt_path", str(single)])
    assert "is a single run's checkpoint, not a sweep's" in str(info.value.code)


@pytest.mark.parametrize("args,message", [
    (["--sweep.spectra", "[0, 9]"], "--sweep.spectra: the sweep has members 0 to 3, not 9"),
    (["--sweep.spectra", "foo"], "--sweep.spectra takes all or a list of member indices"),
    (["--sweep.gamma", "[10, 10]"], "--sweep.gamma lists 10 more than once: the same member would train twice"),
    (["semistylegan"], "SemiStyleGAN has losses of its own (player_losses), which a sweep does not stack"),
])
def test_sweep_options_are_checked_before_anything_is_trained_or_written(tmp_path, args, message):
    base = ["--model", "semistylegan", "--sweep.seeds", "2"] if args == ["semistylegan"] else SWEEP
    with pytest.raises(SystemExit) as info:
        train.main([*base, "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.max_steps", "10",
                    *(args if base is SWEEP else [])])
    assert message in str(info.value.code) and "\n" not in str(info.value.code)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args,message", [
    (["--sweep.gama", "[1, 2]"], "the model has no option 'gama'"),
    (["--sweep.seeds", "0"], "--sweep.seeds takes the number of seeds"),
    (["--sweep.gamma", "[a, b]"], "--sweep.gamma takes a list of numbers"),
    (["--sweep.gamma"], "--sweep.gamma needs a value"),
])
def test_bad_sweep_options_give_one_clear_line(tmp_path, args, message):
    with pytest.raises(SystemExit) as info:
        train.main(["--model", "jare", "--trainer.logger.init_args.save_dir", str(tmp_path), *args])
    assert message in str(info.value.code) and "\n" not in str(info.value.code)


def test_a_sweep_on_two_processes_equals_one_process_with_the_global_batch(tmp_path):
    """Each member's batch split over 2 gloo processes (game_ddp): the members end where the
    members of one process with the global batch end (float64)."""
    common = ["--model", "jare", "--sweep.seeds", "2", "--sweep.gamma", "[10, 100]", "--trainer.max_steps", "8",
              "--trainer.precision", "64-true", "--trainer.enable_progress_bar", "false",
              "--trainer.logger.init_args.save_dir", str(tmp_path), "--model.generator.init_args.width", "16",
              "--model.discriminator.init_args.width", "16"]
    assert two_processes_equal_one(tmp_path, common).count("Done: 4 members") == 1
