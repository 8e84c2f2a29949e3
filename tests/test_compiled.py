"""game.compiled: the torch.func form of every method's direction equals game.algebra's (float64), and
``compile_step`` trains like the eager path, refuses what it cannot do and falls back when the
compiler fails."""
from __future__ import annotations

import pytest
import torch

from datamodules import MixtureOfGaussians
from game import compiled
from game.losses import is_zero_sum
from game.methods import CompetitiveGradient, Extragradient, OptimisticGradient
from gans import JARE, SGA, ConOpt, TwoPlayerGAN, Vanilla
from gans.networks import MLPDiscriminator, MLPGenerator
from tests.helpers import flat, mlp_gan, quiet_trainer

METHODS = [(Vanilla, {}), (ConOpt, {"gamma": 10.0}), (JARE, {"gamma": 100.0}), (SGA, {"lam": 1.0}),
           (SGA, {"lam": 1.0, "align": False}), (SGA, {"lam": 0.5, "align_dim": "tensors"}),
           (TwoPlayerGAN, {"method": Extragradient(0.3)}), (TwoPlayerGAN, {"method": Extragradient()})]


def rule_of(model):
    return model.method.compiled_rule(model.params_g, model.params_d, model.learning_rates())


def functional(model, real, z):
    """The uncompiled step function at the model's parameters (D's pass as the model was told)."""
    step = compiled.step_function(model.generator, model.discriminator, model.loss_fn,
                                  is_zero_sum(model.loss_name), rule_of(model),
                                  joint=model.discriminator_pass == "joint")
    pg, pd = ({n: p.detach() for n, p in net.named_parameters()} for net in (model.generator, model.discriminator))
    return step(pg, pd, real, z)


@pytest.mark.parametrize("discriminator_pass", ["joint", "separate"])
@pytest.mark.parametrize("loss", ["zero_sum", "ns"])
@pytest.mark.parametrize("cls,kw", METHODS, ids=lambda x: x.__name__ if isinstance(x, type) else str(x))
def test_every_direction_equals_the_game_algebra(cls, kw, loss, discriminator_pass, batch64):
    real, z = batch64
    model = mlp_gan(cls, loss=loss, discriminator_pass=discriminator_pass, **kw)
    loss_g, loss_d, xi_g, xi_d, u_g, u_d, stats = functional(model, real, z)
    g, d = model.update_direction(real, z)
    torch.testing.assert_close(flat([*u_g.values(), *u_d.values()]), flat(g + d), rtol=1e-10, atol=1e-12)
    ref_g, ref_d = model.losses(real, z)
    assert torch.allclose(loss_g, ref_g) and torch.allclose(loss_d, ref_d)
    batch_game = model.on_batch(real, z)
    field = batch_game.field(create_graph=model.second_order)
    torch.testing.assert_close(flat([*xi_g.values(), *xi_d.values()]), flat(field.xi_g + field.xi_d).detach())
    update = model.method.direction(batch_game, field)
    assert set(stats) == set(update.stats)  # the logged regulariser values and SGA's sign agree too
    for key, value in update.stats.items():
        torch.testing.assert_close(stats[key].to(value), value)


def test_the_flat_update_is_the_concatenated_direction(batch64):
    real, z = batch64
    model = mlp_gan(JARE, loss="zero_sum", gamma=10.0)
    args = (model.generator, model.discriminator, model.loss_fn, True, rule_of(model))
    pg, pd = ({n: p.detach() for n, p in net.named_parameters()} for net in (model.generator, model.discriminator))
    by_tensor, flat_u = compiled.step_function(*args)(pg, pd, real, z), compiled.step_function(*args, True)(pg, pd, real, z)
    for dicts, vector in zip(by_tensor[4:6], flat_u[4:6]):
        assert vector.ndim == 1 and torch.equal(vector, flat(list(dicts.values())))


def train(compile_step: bool, steps: int = 6, cls=JARE, **kw):
    torch.manual_seed(0)
    model = cls(MLPGenerator(4, 2, 8, 2), MLPDiscriminator(2, 8, 2), latent_dim=4, loss="zero_sum",
                compile_step=compile_step, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), **kw)
    quiet_trainer(steps).fit(model, datamodule=MixtureOfGaussians(batch_size=16, batches_per_epoch=steps))
    return model


@pytest.mark.parametrize("flat_buffers", [True, False])
def test_a_compiled_run_trains_like_the_eager_one(flat_buffers):
    eager, fast = train(False, gamma=10.0), train(True, gamma=10.0, flat_buffers=flat_buffers)
    for (name, a), b in zip(eager.state_dict().items(), fast.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    assert fast._compiled is None  # released after the fit


def test_the_cuda_graph_form_of_the_step_computes_the_same(batch64):
    """On a GPU the compiled step is compiled with CUDA graphs (``reduce-overhead``), its parameters
    marked static and its outputs copied out of the graph's memory. On a CPU torch.compile runs that
    mode without graphs: the direction of the game algebra (float64), its outputs copies."""
    from game.compiled import CompiledStep, step_function

    model = train(False, steps=1, gamma=10.0).double()
    real = batch64[0]
    z = model.sample_latent(len(real), torch.Generator().manual_seed(0))
    fn = step_function(model.generator, model.discriminator, model.loss_fn, True,
                       model.method.compiled_rule(model.params_g, model.params_d, (1e-2, 1e-2)))
    params = CompiledStep.trainable(model.generator, model.discriminator)
    graphs = CompiledStep(fn, params, flat_update=False, cpp_wrapper=False, cuda_graphs=True)(real, z)
    eager_g, eager_d = model.update_direction(real, z)
    for a, b in zip([*eager_g, *eager_d], [*graphs.u_g, *graphs.u_d]):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    assert set(graphs.stats) == {"reg/generator", "reg/discriminator"}


def test_a_failing_compiler_falls_back_to_the_eager_path(monkeypatch):
    def broken(fn, **options):
        def call(*args):
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    eager = train(False, gamma=10.0)
    with pytest.warns(UserWarning, match="compile_step: torch.compile failed .*no C\\+\\+ compiler.*eager path"):
        fallback = train(True, gamma=10.0)
    assert all(torch.equal(a, b) for a, b in zip(eager.state_dict().values(), fallback.state_dict().values()))


def test_models_fitted_one_after_another_all_run_compiled(monkeypatch, caplog):
    """Each model's step is a new closure of one code object; past torch.compile's recompile limit
    it would silently run eager. A limit of 1 makes the second model hit it unless the cache is reset."""
    import torch._dynamo

    # the config's own patch: a monkeypatch of this attribute deletes it on undo, and every later
    # compilation in the process then fails
    with torch._dynamo.config.patch(recompile_limit=1), caplog.at_level("WARNING"):
        first, second = train(True, steps=2, gamma=10.0), train(True, steps=2, gamma=3.0)
    assert not [r for r in caplog.records if "recompile_limit" in r.getMessage()]
    assert first._compiled is None and second._compiled is None  # fitted, released


def test_what_it_cannot_do_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="it computes simultaneous updates only.*compile_step false"):
        train(True, cls=Vanilla, update="alternating")
    for method, why in ((OptimisticGradient(), "OptimisticGradient has no compiled step"),
                        (CompetitiveGradient(), "CompetitiveGradient has no compiled step")):
        with pytest.raises(ValueError, match=why):
            train(True, cls=TwoPlayerGAN, method=method)
    with pytest.raises(ValueError, match=r"the gradient penalty \(r1\) is not in its step"):
        train(True, cls=Vanilla, penalty="r1")
    torch.manual_seed(0)
    with_batchnorm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    bn = JARE(with_batchnorm, MLPDiscriminator(2, 8, 2), latent_dim=4, compile_step=True)
    with pytest.raises(ValueError, match="the networks have buffers"):
        quiet_trainer(2).fit(bn, datamodule=MixtureOfGaussians(batch_size=16, batches_per_epoch=2))


def test_the_command_line_option(tmp_path, monkeypatch):
    import warnings

    from commands import train

    compiled_steps = []
    call = compiled.CompiledStep.__call__

    def counting(self, real, z):
        step = call(self, real, z)
        compiled_steps.append(step is not None)
        return step

    monkeypatch.setattr(compiled.CompiledStep, "__call__", counting)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="compile_step")  # a failed compilation fails the test
        trainer = train.main(["--model", "conopt", "--model.compile_step", "true", "--trainer.max_steps", "3",
                              "--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8",
                              "--trainer.callbacks=[]", "--trainer.enable_progress_bar", "false",
                              "--trainer.logger.init_args.save_dir", str(tmp_path)])
    assert trainer.global_step == 3 and compiled_steps == [True] * 3  # every iteration ran compiled
    assert "compile_step: true" in (tmp_path / "conopt" / "version_0" / "config.yaml").read_text()
