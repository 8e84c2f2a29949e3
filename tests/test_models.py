"""The model contract: any injected networks (BatchNorm included), every loss, every method."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from datamodules import MixtureOfGaussians
from game.methods import CompetitiveGradient, Extragradient, OptimisticGradient
from gans import JARE, SGA, ConOpt, NonFiniteError, TwoPlayerGAN, Vanilla
from gans.networks import MLPDiscriminator, MLPGenerator
from runtime.optim import RMSpropTF
from tests.helpers import mlp_gan, quiet_trainer

METHODS = [(Vanilla, {}), (Vanilla, {"update": "alternating", "n_d": 2}), (ConOpt, {"gamma": 1.0}),
           (JARE, {"gamma": 1.0}), (SGA, {"lam": 1.0}), (TwoPlayerGAN, {"method": Extragradient(0.01)}),
           (TwoPlayerGAN, {"method": OptimisticGradient()}), (TwoPlayerGAN, {"method": CompetitiveGradient(0.1)}),
           (JARE, {"gamma": 1.0, "penalty": "r1"}), (Vanilla, {"penalty": "wgan_gp", "penalty_every": 2})]
LOSSES = ["ns", "zero_sum", "hinge", "wasserstein"]


class BNGenerator(nn.Module):
    def __init__(self, latent_dim=4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, z):
        return self.net(z)


class BNDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.LeakyReLU(0.2), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x)


def bn_gan(cls, loss, **kw):
    torch.manual_seed(0)
    return cls(BNGenerator(), BNDiscriminator(), latent_dim=4, loss=loss,
               optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), **kw)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("cls,kw", METHODS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_method_trains_batchnorm_networks_with_every_loss(cls, kw, loss):
    model = bn_gan(cls, loss, **kw)
    before = [p.detach().clone() for p in model.parameters()]
    data = MixtureOfGaussians(kind="ring", batch_size=32, seed=1)
    trainer = quiet_trainer(3)
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 3
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    # every weight moved (a bias in front of BatchNorm has no gradient: BN removes constant shifts)
    assert all(not torch.equal(a, b) for a, b in zip(after, before) if a.ndim > 1)
    assert model.generator.net[1].num_batches_tracked > 0               # BN statistics were updated


@pytest.mark.parametrize("cls,kw", METHODS[2:], ids=lambda v: getattr(v, "__name__", str(v)))
def test_public_methods_have_no_side_effects(cls, kw):
    model = bn_gan(cls, "ns", **kw)
    real, z = torch.randn(8, 2), torch.randn(8, 4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    g, d = model.update_direction(real, z)
    model.losses(real, z)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert [t.shape for t in g] == [p.shape for p in model.generator.parameters()]
    assert [t.shape for t in d] == [p.shape for p in model.discriminator.parameters()]
    assert all(p.grad is None for p in model.parameters())


def test_frozen_parameters_are_not_players():
    model = mlp_gan(JARE, gamma=1.0)
    model.generator.net[0].weight.requires_grad_(False)
    g, d = model.update_direction(torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64))
    assert len(g) == len(list(model.generator.parameters())) - 1
    assert [t.shape for t in g] == [p.shape for p in model.params_g]


def test_the_hook_name_shortcut_leaves_module_attributes_alone():
    """TwoPlayerGAN.__setattr__ skips nn.Module's checks for Lightning's hook name only."""
    model = mlp_gan(Vanilla)
    model._current_fx_name = "training_step"
    assert model._current_fx_name == "training_step" and "_current_fx_name" not in model._modules
    model.extra = nn.Linear(2, 2)
    model.scale = nn.Parameter(torch.ones(()))
    assert "extra" in model._modules and "scale" in model._parameters


def test_one_optimizer_with_a_group_per_player():
    model = mlp_gan(Vanilla, optimizer=lambda p: RMSpropTF(p, lr=1e-3), lr_d=5e-4)
    opt = model.configure_optimizers()
    assert [g["name"] for g in opt.param_groups] == ["generator", "discriminator"]
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 5e-4]


def test_python_api_checkpoint_round_trip(tmp_path):
    model = mlp_gan(ConOpt, gamma=3.0)
    trainer = quiet_trainer(2, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=MixtureOfGaussians(batch_size=16))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    fresh = mlp_gan(ConOpt, seed=9)
    loaded = ConOpt.load_from_checkpoint(path, generator=fresh.generator, discriminator=fresh.discriminator,
                                         weights_only=False)
    assert loaded.gamma == 3.0
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


def test_a_python_api_checkpoint_of_another_method_asks_for_it(tmp_path):
    model = mlp_gan(TwoPlayerGAN, method=OptimisticGradient())
    trainer = quiet_trainer(2, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=MixtureOfGaussians(batch_size=16))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    nets = {"generator": mlp_gan(Vanilla).generator, "discriminator": mlp_gan(Vanilla).discriminator}
    with pytest.raises(ValueError, match=r"trained with the method game\.methods\.OptimisticGradient, this model has "
                                         r"game\.methods\.GradientDescent: pass method=OptimisticGradient\(\.\.\.\)"):
        TwoPlayerGAN.load_from_checkpoint(path, **nets, weights_only=False)
    loaded = TwoPlayerGAN.load_from_checkpoint(path, **nets, method=OptimisticGradient(), weights_only=False)
    previous, expected = loaded.method.state_dict()["previous"], model.method.state_dict()["previous"]
    assert expected["g"] is not None and expected["d"] is not None
    for player in "gd":
        torch.testing.assert_close(previous[player], expected[player])


def test_checkpoints_and_configs_of_the_old_module_paths_load(tmp_path):
    """Before the layout of game/, runtime/ and spectra/, methods lived in gans.methods and the
    optimizer in gans.optim: those names (in configs' class paths and checkpoints' method) import
    the very modules they became, and a checkpoint that records the old path loads."""
    import gans.methods
    import gans.optim
    from game import methods
    from runtime import optim
    assert gans.methods is methods and gans.optim is optim and gans.methods.OptimisticGradient is OptimisticGradient
    model = mlp_gan(TwoPlayerGAN, method=OptimisticGradient())
    trainer = quiet_trainer(2, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=MixtureOfGaussians(batch_size=16))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["method"] = "gans.methods.OptimisticGradient"  # as the earlier version wrote it
    torch.save(checkpoint, path)
    nets = {"generator": mlp_gan(Vanilla).generator, "discriminator": mlp_gan(Vanilla).discriminator}
    loaded = TwoPlayerGAN.load_from_checkpoint(path, **nets, method=OptimisticGradient(), weights_only=False)
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


def test_every_model_config_is_one_form_and_the_shortcuts_are_their_methods():
    """Every method's config builds gans.TwoPlayerGAN with that method (one form, one command-line
    spelling: --model.method.NAME); the shortcuts gans.JARE, ... are TwoPlayerGAN with their method,
    each hyperparameter stored once (in the method)."""
    import yaml

    from commands.layers import CONFIGS
    from game import methods
    for name, cls in methods.METHODS.items():
        model = yaml.safe_load((CONFIGS / "models" / f"{name}.yaml").read_text())["model"]
        assert model["class_path"] == "gans.TwoPlayerGAN" and set(model["init_args"]) <= {"method", "loss"}
        assert model["init_args"]["method"]["class_path"] == f"game.methods.{cls.__name__}"
    shortcuts = {"vanilla": (Vanilla, {}), "sga": (SGA, {"lam": 0.5}), "conopt": (ConOpt, {"gamma": 3.0}),
                 "jare": (JARE, {"gamma": 7.0})}
    for name, (cls, options) in shortcuts.items():
        model = cls(MLPGenerator(2, 2, 4, 1), MLPDiscriminator(2, 4, 1), latent_dim=2, **options)
        assert type(model.method) is methods.METHODS[name]
        assert all(getattr(model.method, k) == v == getattr(model, k) for k, v in options.items())
        assert not any(k in vars(model) for k in options)  # read from the method, not kept beside it


def test_argument_errors():
    with pytest.raises(ValueError, match="update must be"):
        mlp_gan(Vanilla, update="sometimes")
    with pytest.raises(ValueError, match="n_d must be >= 1"):
        mlp_gan(Vanilla, update="alternating", n_d=0)
    with pytest.raises(ValueError, match="generator MLPGenerator failed on z of shape \\(4, 5\\)"):
        mlp_gan(Vanilla, latent_dim=3).__class__(mlp_gan(Vanilla).generator, mlp_gan(Vanilla).discriminator,
                                                 latent_dim=5).check_networks()


class Poisonable(nn.Module):
    """A discriminator whose logits turn NaN while ``poison`` is set."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        self.poison = False

    def forward(self, x):
        out = self.net(x)
        return out * float("nan") if self.poison else out


class PoisonAt(pl.Callback):
    def __init__(self, start, stop=None):
        self.start, self.stop = start, stop

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        module.discriminator.poison = self.start <= trainer.global_step < (self.stop or 10**9)


def nan_gan(**kw):
    torch.manual_seed(0)
    return JARE(MLPGenerator(4, 2, 8, 2), Poisonable(), latent_dim=4, gamma=1.0,
                optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), **kw)


def test_nonfinite_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    model = nan_gan()
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_last=True)
    trainer = quiet_trainer(10, callbacks=[PoisonAt(5), ckpt], enable_checkpointing=True)
    with pytest.raises(NonFiniteError, match=r"iteration 5: non-finite training state \(loss_G=nan, loss_D=nan"):
        trainer.fit(model, datamodule=MixtureOfGaussians(batch_size=16))
    assert trainer.global_step == 5                       # iterations 0-4 ran; the fifth never stepped
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 4 and all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_on_a_gpu_the_verdict_is_read_an_iteration_later_and_no_checkpoint_sees_the_bad_state(tmp_path, monkeypatch):
    """On a GPU under ``stop`` the finiteness of an iteration is read at the next one (the host never
    waits for the GPU inside the loop): the poisoned iteration 5 steps, the run stops at iteration
    6 naming iteration 5, and the checkpoint due at iteration 6 is never written; the last one is
    iteration 4's, finite. Forced here on the CPU."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    monkeypatch.setattr(JARE, "verdict_later", lambda self: True)
    model = nan_gan()
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_last=True)
    trainer = quiet_trainer(10, callbacks=[PoisonAt(5), ckpt], enable_checkpointing=True)
    with pytest.raises(NonFiniteError, match=r"iteration 5: non-finite training state \(loss_G=nan, loss_D=nan.*read an "
                                             r"iteration later, so the parameters took that update"):
        trainer.fit(model, datamodule=MixtureOfGaussians(batch_size=16))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 4 and all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    model = nan_gan()  # a fine run reads its last verdict when it ends
    quiet_trainer(3).fit(model, datamodule=MixtureOfGaussians(batch_size=16))
    assert model._pending_verdict is None


def test_logged_scalars_live_on_the_models_device(monkeypatch):
    """sync_dist all-reduces what is logged, and NCCL takes CUDA tensors only: every logged value is
    put on the model's device ('meta' stands in for a GPU here)."""
    model = nan_gan()
    model._device = torch.device("meta")
    logged = {}
    monkeypatch.setattr(model, "log_dict", lambda metrics, **kw: logged.update(metrics))
    model.log_step(torch.tensor(1.0), torch.tensor(2.0), [torch.ones(2)], [torch.ones(3)],
                   {"cgd/iterations": torch.tensor(3, dtype=torch.int64), "sga/lambda": torch.tensor(1.0)})
    assert len(logged) == 6 and all(v.device.type == "meta" and v.dtype == torch.float32 for v in logged.values())


@pytest.mark.parametrize("update", ["simultaneous", "alternating"])
def test_nonfinite_iterations_can_be_skipped(update):
    from commands.train import summary

    model = nan_gan(on_nonfinite="skip", update=update)
    trainer = quiet_trainer(10, callbacks=[PoisonAt(5, 7)])
    trainer.fit(model, datamodule=MixtureOfGaussians(batch_size=16))
    assert trainer.global_step == 10 and model.skipped == 2      # iterations, not alternating phases
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert "Done: 10 iterations (2 skipped: non-finite) | run folder" in summary(trainer)


@pytest.mark.parametrize("cls,kw", METHODS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_bf16_mixed_precision(cls, kw):
    """bf16-mixed trains every model; the second-order methods compute in float32 under it, so they
    end exactly where 32-true training ends, while first-order training really runs in bfloat16."""
    def trained(precision):
        model = mlp_gan(cls, loss="ns", width=16, depth=2, optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
                        **kw).float()
        pl.seed_everything(0, verbose=False)
        quiet_trainer(3, precision=precision).fit(model, datamodule=MixtureOfGaussians(batch_size=32))
        return model.state_dict()

    bf16, fp32 = trained("bf16-mixed"), trained("32-true")
    assert all(torch.isfinite(v).all() for v in bf16.values())
    same = all(torch.equal(bf16[k], fp32[k]) for k in bf16)
    assert same == mlp_gan(cls, **kw).second_order


def test_float16_with_a_gradient_scaler_is_refused_with_a_clear_error():
    """On a GPU, 16-mixed comes with a GradScaler (on a CPU Lightning switches to bf16-mixed)."""
    from pytorch_lightning.plugins.precision import MixedPrecision

    fp16 = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    with pytest.raises(ValueError, match="precision='16-mixed' is not supported: float16 needs a gradient scaler"):
        quiet_trainer(1, plugins=[fp16]).fit(mlp_gan(JARE, gamma=1.0).float(), datamodule=MixtureOfGaussians(batch_size=8))


@pytest.mark.parametrize("optimizer,flattened", [(lambda p: RMSpropTF(p, lr=1e-2), True),
                                                 (lambda p: torch.optim.Adam(p, lr=1e-2), True),
                                                 (lambda p: torch.optim.Adafactor(p, lr=1e-2), False)],
                         ids=["RMSpropTF", "Adam", "Adafactor"])
def test_flat_buffers_train_exactly_like_separate_tensors(optimizer, flattened):
    """Each player's parameters as views of one buffer (elementwise optimizers only; Adafactor keeps
    per-matrix statistics): the same parameters, bit for bit, after a few iterations."""
    for cls, kw in [(Vanilla, {}), (Vanilla, {"update": "alternating"}), (JARE, {"gamma": 1.0}), (SGA, {"lam": 1.0})]:
        runs = []
        for flat in (True, False):
            model = mlp_gan(cls, optimizer=optimizer, flat_buffers=flat, **kw)
            torch.manual_seed(0)
            quiet_trainer(3).fit(model, datamodule=MixtureOfGaussians(batch_size=16, seed=2))
            assert (model._flat is not None) == (flat and flattened)
            runs.append(model.state_dict())
        assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0]), cls.__name__


def test_flat_buffers_are_views_and_moving_the_model_is_caught():
    model = mlp_gan(Vanilla, optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    opt = model.configure_optimizers()
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1]
    before = [p.detach().clone() for p in model.params_g]
    with torch.no_grad():
        model._flat[0].add_(1.0)                                   # the parameters are views: they move
    assert all(torch.equal(p, b + 1) for p, b in zip(model.params_g, before))
    model.float()                                                   # new tensors: the link is gone
    with pytest.raises(RuntimeError, match="no longer live in the optimizer's flat buffers"):
        zero = torch.zeros((), dtype=torch.float64)
        model.apply_update(opt, zero, zero, [torch.zeros_like(p) for p in model.params_g], None)


class CentredDiscriminator(nn.Module):
    """Logits of the samples minus their batch mean: each logit depends on the whole batch."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        out = self.lin(x)
        return out - out.mean()


@pytest.mark.parametrize("discriminator,problem", [
    (None, None), (BNDiscriminator(), "it has buffers"), (CentredDiscriminator(), "its logit for a sample depends"),
    (nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.Linear(8, 1)), "its logit for a sample depends"),
    (nn.utils.parametrizations.spectral_norm(nn.Linear(2, 1)), "it has buffers")],
    ids=["mlp", "batchnorm", "batch-mean", "dropout", "spectral-norm"])
def test_the_joint_pass_is_taken_only_where_it_computes_the_same(discriminator, problem):
    model = mlp_gan(Vanilla, discriminator_pass="joint")
    if discriminator is not None:
        model.discriminator = discriminator.double()
    if problem is None:
        model.check_networks()
        assert model.game.joint is True
    else:
        with pytest.raises(ValueError, match=f"discriminator_pass='joint' cannot be used with discriminator "
                                             f"{type(model.discriminator).__name__}: {problem}.*separate"):
            model.check_networks()


@pytest.mark.parametrize("cls,kw", METHODS + [(Vanilla, {"loss": "ns"})], ids=lambda v: getattr(v, "__name__", str(v)))
def test_the_joint_pass_gives_the_separate_passes_direction(cls, kw, batch64):
    real, z = batch64
    joint, separate = (mlp_gan(cls, discriminator_pass=p, **kw) for p in ("joint", "separate"))
    for a, b in zip(joint.update_direction(real, z), separate.update_direction(real, z)):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)
    assert joint.game.joint is True and separate.game.joint is False


def test_a_joint_pass_the_discriminator_cannot_take_is_refused_when_training():
    model = bn_gan(Vanilla, "ns", discriminator_pass="joint")
    with pytest.raises(ValueError, match="discriminator_pass='joint' cannot be used with discriminator "
                                         "BNDiscriminator: it has buffers.*discriminator_pass separate"):
        quiet_trainer(1).fit(model, datamodule=MixtureOfGaussians(batch_size=8, batches_per_epoch=1))
    with pytest.raises(ValueError, match="discriminator_pass must be 'separate' or 'joint'"):
        mlp_gan(Vanilla, discriminator_pass="together")
