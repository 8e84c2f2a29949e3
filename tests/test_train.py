"""train.py end to end: outputs, plug-in networks by class_path, resume, clear errors."""
from __future__ import annotations

import inspect
import json
import pydoc
import textwrap

import numpy as np
import pytest
import torch
import yaml

from commands import layers, train
from gans import TwoPlayerGAN

FAST = ["--trainer.max_steps", "30", "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "10"]


def run(tmp_path, *args, name="run"):
    return train.main([*args, "--trainer.logger.init_args.save_dir", str(tmp_path),
                       "--trainer.logger.init_args.name", name, *FAST])


def test_every_method_has_a_config():
    from game.methods import METHODS
    assert layers.names("--model") == [*METHODS, "semistylegan", "semistylegan_fine"]  # the folder, methods first


def test_end_to_end_writes_metrics_plot_checkpoint_and_config(tmp_path, capsys):
    trainer = run(tmp_path, "--model", "vanilla", "--model.update", "alternating", "--data.kind", "grid")
    assert trainer.global_step == 30  # iterations, not optimizer steps
    folder = tmp_path / "run" / "version_0"
    assert (folder / "config.yaml").is_file() and "alternating" in (folder / "config.yaml").read_text()
    records = [json.loads(line) for line in (folder / "mixture_metrics.jsonl").read_text().splitlines()]
    assert records[-1]["iteration"] == 30 and 0 <= records[-1]["modes_covered"] <= 25
    assert (folder / "plots" / "mixture_000030.png").stat().st_size > 1000
    assert list(folder.glob("events.out.tfevents.*"))
    ckpt = folder / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    out = capsys.readouterr().out
    assert "Done: modes covered" in out and str(folder) in out
    # the checkpoint rebuilds the model, networks included, with no arguments
    model = TwoPlayerGAN.load_from_checkpoint(ckpt, weights_only=False)
    assert model.update == "alternating"
    torch.testing.assert_close(model.generator.state_dict(), trainer.lightning_module.generator.state_dict())


@pytest.mark.parametrize("name", ["sga", "conopt", "jare", "extragradient", "optimistic", "cgd"])
def test_every_method_trains_from_the_command_line(tmp_path, name):
    trainer = run(tmp_path, "--model", name, name=name)
    logged = trainer.logged_metrics
    assert trainer.global_step == 30
    assert {"loss/generator", "grad_norm/generator", "grad_norm/discriminator"} <= set(logged)
    assert trainer.lightning_module.method.name == name
    expected = {"sga": "sga/lambda", "conopt": "reg/consensus", "jare": "reg/generator",
                "extragradient": "extragradient/extrapolation_norm", "cgd": "cgd/iterations"}
    assert name not in expected or expected[name] in logged


def test_a_penalty_and_another_method_from_the_command_line(tmp_path):
    trainer = run(tmp_path, "--model", "vanilla", "--model.penalty", "r1", "--model.penalty_weight", "1.0",
                  "--model.method", "game.methods.Extragradient", "--model.method.extrapolation", "0.01")
    assert trainer.global_step == 30 and type(trainer.lightning_module.method).__name__ == "Extragradient"
    assert trainer.lightning_module.penalty == "r1"


@pytest.mark.parametrize("model", ["jare", "optimistic", "cgd"])
def test_resume_is_exact_and_continues_in_the_same_folder(tmp_path, model):
    """Interrupted at iteration 30 and resumed with --ckpt_path last, a run ends bit for bit where the
    uninterrupted run ends: parameters, optimizer state, data, latent codes and the method's state
    (the optimistic method's previous field, CGD's warm start)."""
    def main(*extra):
        return train.main(["--model", model, "--trainer.logger.init_args.save_dir", str(tmp_path),
                           "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "10",
                           "--data.init_args.batch_size", "32", "--model.generator.init_args.width", "16",
                           "--model.discriminator.init_args.width", "16", *extra])

    straight = main("--trainer.logger.init_args.name", "straight", "--trainer.max_steps", "50")
    main("--trainer.logger.init_args.name", "resumed", "--trainer.max_steps", "30")
    resumed = main("--trainer.logger.init_args.name", "resumed", "--trainer.max_steps", "50", "--ckpt_path", "last")
    assert resumed.global_step == 50 and resumed.log_dir == str(tmp_path / "resumed" / "version_0")
    a, b = straight.lightning_module.state_dict(), resumed.lightning_module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    state_a, state_b = straight.lightning_module.method.state_dict(), resumed.lightning_module.method.state_dict()
    assert all(torch.equal(x, y) for x, y in zip(flat_state(state_a), flat_state(state_b)))
    assert model == "jare" or flat_state(state_a)
    opt_a, opt_b = straight.optimizers[0].state_dict()["state"], resumed.optimizers[0].state_dict()["state"]
    assert all(torch.equal(opt_a[i][k], opt_b[i][k]) for i in opt_a for k in opt_a[i])


def flat_state(state) -> list[torch.Tensor]:
    """The tensors of a method's state, in order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for key in sorted(state) for t in flat_state(state[key])]
    if isinstance(state, (list, tuple)):
        return [t for item in state for t in flat_state(item)]
    return []


CUSTOM_NETS = '''
import torch
from torch import nn

class TinyCritic(nn.Module):
    """A user's own discriminator: one hidden layer, returns (B, 1)."""
    def __init__(self, hidden: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    def forward(self, x):
        return self.net(x)

class TwoLogits(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
    def forward(self, x):
        return self.lin(x)
'''


def custom_config(tmp_path, class_name, monkeypatch):
    (tmp_path / "my_nets.py").write_text(CUSTOM_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "my.yaml"
    config.write_text(textwrap.dedent(f"""\
        model:
          init_args:
            discriminator:
              class_path: my_nets.{class_name}
        """))
    return config


def test_custom_discriminator_from_yaml_trains(tmp_path, monkeypatch):
    config = custom_config(tmp_path, "TinyCritic", monkeypatch)
    trainer = run(tmp_path, "--model", "jare", "--config", str(config), "--model.discriminator.init_args.hidden", "6")
    critic = trainer.lightning_module.discriminator
    assert type(critic).__name__ == "TinyCritic" and critic.net[0].out_features == 6
    assert trainer.global_step == 30


def test_discriminator_with_wrong_output_shape_fails_clearly(tmp_path, monkeypatch):
    config = custom_config(tmp_path, "TwoLogits", monkeypatch)
    with pytest.raises(SystemExit, match=r"discriminator TwoLogits must return one logit per sample, shape \(4,\) "
                                         r"or \(4, 1\) for a batch of 4, but returned \(4, 2\)"):
        run(tmp_path, "--model", "vanilla", "--config", str(config))


def test_generator_with_wrong_sample_shape_fails_clearly(tmp_path):
    with pytest.raises(SystemExit, match=r"generator MLPGenerator returns samples of shape \(3,\) but the data "
                                         r"has samples of shape \(2,\)"):
        run(tmp_path, "--model", "vanilla", "--model.generator.init_args.out_dim", "3",
            "--model.discriminator.init_args.in_dim", "3")


@pytest.mark.parametrize("args,message", [
    (["--model", "vanila"], "unknown model 'vanila'; choose one of: vanilla, sga, conopt, jare"),
    (["--model", "jare", "--model.method.gama", "1"],
     "game.methods.JacobianRegularization has no option 'gama' (did you mean 'gamma'?)"),
    (["--model", "jare", "--model.gama", "1"], "gans.TwoPlayerGAN has no option 'gama' (an option of the method: "
                                               "--model.method.gamma)"),
    (["--model", "vanilla", "--model.update", "sometimes"], "expected one of 'simultaneous', 'alternating'"),
    (["--model", "vanilla", "--model.n_d", "two"], "invalid value 'two' for --model.n_d: expected int"),
    (["--model", "vanilla", "--trainer.max_stepz", "3"], "did you mean --trainer.max_steps?"),
])
def test_bad_command_lines_give_one_clear_line(args, message):
    with pytest.raises(SystemExit) as info:
        train.main(args)
    assert message in str(info.value.code)
    assert "\n" not in str(info.value.code)


LAYERS = ([["--model", name] for name in sorted(p.stem for p in (layers.CONFIGS / "models").glob("*.yaml"))]
          + [["--model", "vanilla", "--data", name] for name in sorted(p.stem for p in (layers.CONFIGS / "data").glob("*.yaml"))]
          + [["--model", {"jare_ring": "jare", "conopt_ring": "conopt", "sga_grid": "sga"}[p.stem], "--paper", p.stem]
             for p in sorted((layers.CONFIGS / "papers").glob("*.yaml"))])


def assert_optimizer_options_are_stated_or_defaults(args: list[str], config: dict) -> None:
    """Every option of the resolved optimizer is stated in a layer file or is its class's default:
    jsonargparse carries the options of the default optimizer (Adam) over to a class_path that
    replaces it, which gave the ring preset's RMSpropTF Adam's eps (1e-8 for 1e-10) unseen."""
    option = dict(zip(args[::2], args[1::2]))
    files = [layers.CONFIGS / "base.yaml", *layers.layer("--model", option["--model"]),
             *layers.layer("--data", option.get("--data", layers.DEFAULT_DATA))]
    files += layers.layer("--paper", option["--paper"]) if "--paper" in option else []
    stated = set()
    for path in files:
        layer = yaml.safe_load(path.read_text()) or {}
        stated |= set((((layer.get("model") or {}).get("init_args") or {}).get("optimizer") or {}).get("init_args") or {})
    optimizer = config["model"]["init_args"]["optimizer"]
    defaults = inspect.signature(pydoc.locate(optimizer["class_path"])).parameters
    invented = {k: v for k, v in optimizer.get("init_args", {}).items() if k not in stated and v != defaults[k].default}
    assert invented == {}, f"options no layer states, not the class's defaults: {invented}"


@pytest.mark.parametrize("layers", LAYERS, ids=" ".join)
def test_every_config_layer_parses_and_trains(tmp_path, layers, capsys):
    with pytest.raises(SystemExit) as info:  # every entry, callbacks included, is validated
        train.main([*layers, "--print_config"])
    printed = capsys.readouterr().out
    assert info.value.code in (None, 0) and "class_path" in printed
    assert_optimizer_options_are_stated_or_defaults(layers, yaml.safe_load(printed))
    if "--data" in layers and layers[-1] not in ("ring", "digits"):
        return  # the other data presets need their files (tests/test_image_data.py reads them from files it writes)
    # a few iterations without the (slow) callbacks
    trainer = train.main([*layers, "--trainer.max_steps", "2", "--trainer.callbacks=[]",
                          "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar",
                          "false", "--data.init_args.batch_size", "16"])
    assert trainer.global_step == 2


def test_the_layers_of_a_command_line(tmp_path):
    """base, data preset, model, paper, then the command line; a model file that names its data
    takes no data preset; the run folder is named after the layers; the layers' callbacks, merged by
    class, follow them."""
    config = layers.CONFIGS
    ring = layers.merged_callbacks([config / "data" / "ring.yaml"])
    assert layers.expand_model_name(["--model", "jare", "--model.method.gamma", "3"]) == [
        "--config", str(config / "base.yaml"), "--config", str(config / "data" / "ring.yaml"),
        "--config", str(config / "models" / "jare.yaml"), "--trainer.callbacks=[]",
        f"--trainer.callbacks={json.dumps(ring)}", "--trainer.logger.init_args.name", "jare", "--model.method.gamma", "3"]
    assert layers.expand_model_name(["--model", "conopt", "--paper", "conopt_ring"])[6:9] == [
        "--trainer.callbacks=[]", "--config", str(config / "papers" / "conopt_ring.yaml")]
    assert layers.expand_model_name(["--model", "semistylegan_fine"])[:6] == [
        "--config", str(config / "base.yaml"), "--config", str(config / "models" / "semistylegan.yaml"),
        "--config", str(config / "models" / "semistylegan_fine.yaml")]
    assert layers.expand_model_name(["--config", "mine.yaml"]) == ["--config", "mine.yaml"]
    for args, message in ((["--paper", "nope"], "unknown paper setting 'nope'; choose one of: conopt_ring"),
                          (["--model", "semistylegan", "--data", "digits"], "names its own data"),
                          (["--config", "mine.yaml", "--data", "digits"], "give --model NAME with them"),
                          (["--config", "mine.yaml", "--trainer.callbacks.FID.seed", "3"],
                           "names a callback of the config layers")):
        with pytest.raises(SystemExit, match=message):
            layers.expand_model_name(args)


def test_callback_lists_merge_by_class_and_each_callback_takes_options_by_name(capsys):
    """A paper's setting changes the spectrum's options without repeating the ring's list (the
    other callbacks and options stay); --trainer.callbacks.CLASS.option reaches any callback of the
    list, not only the last; unknown classes and options are named in one line."""
    with pytest.raises(SystemExit):
        train.main(["--model", "jare", "--paper", "jare_ring", "--trainer.callbacks.MixtureMetrics.num_samples", "77",
                    "--trainer.callbacks.JacobianSpectrum.every_n_steps=30", "--print_config"])
    listed = {c["class_path"]: c["init_args"] for c in yaml.safe_load(capsys.readouterr().out)["trainer"]["callbacks"]}
    assert list(listed) == ["callbacks.MixtureMetrics", "callbacks.JacobianSpectrum",
                            "pytorch_lightning.callbacks.ModelCheckpoint"]
    assert listed["callbacks.MixtureMetrics"]["num_samples"] == 77
    assert listed["callbacks.MixtureMetrics"]["every_n_steps"] == 2000          # the ring's, kept
    spectrum = listed["callbacks.JacobianSpectrum"]
    assert (spectrum["every_n_steps"], spectrum["field"], spectrum["k"], spectrum["batch_size"]) == (30, "both", 10, 128)
    for args, message in ((["--trainer.callbacks.FID.num_samples", "5"], r"the config layers have no FID callback "
                                                                          r"\(they have: MixtureMetrics, JacobianSpectrum"),
                          (["--trainer.callbacks.JacobianSpectrum.every", "5"],
                           "callbacks.JacobianSpectrum has no option 'every'; its options are: every_n_steps"),
                          (["--trainer.callbacks.JacobianSpectrum.k"], "needs a value")):
        with pytest.raises(SystemExit, match=message):
            train.main(["--model", "jare", *args])


def test_sample_from_checkpoint(tmp_path, capsys):
    from commands import sample
    from gans.checkpoint import load_model

    run(tmp_path, "--model", "jare")
    ckpt = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    out = sample.main([str(ckpt), "--num", "300", "--out", str(tmp_path / "s" / "samples")])
    samples = torch.load(out.with_suffix(".pt"))
    assert samples.shape == (300, 2)
    assert (tmp_path / "s" / "samples.png").stat().st_size > 1000
    assert "modes," in capsys.readouterr().out
    model = load_model(ckpt)
    assert type(model).__name__ == "TwoPlayerGAN" and model.method.gamma == 100.0
    # as an earlier version wrote it: the shortcut class, gamma among the model's options, no method
    # record, the optimizer at its old module path
    checkpoint = torch.load(ckpt, weights_only=False)
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if k != "method"}
    hparams["optimizer"] = {**hparams["optimizer"], "class_path": "gans.optim.RMSpropTF"}
    checkpoint["hyper_parameters"] = {**hparams, "_class_path": "gans.JARE", "gamma": 100.0}
    checkpoint["method"] = "gans.methods.JacobianRegularization"
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    loaded = load_model(old)
    assert type(loaded).__name__ == "JARE" and loaded.gamma == loaded.method.gamma == 100.0
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())
    assert sample.main([str(old), "--num", "10", "--out", str(tmp_path / "s" / "old")]).with_suffix(".pt").is_file()


def test_spectrum_of_a_checkpoint(tmp_path, capsys):
    from commands import spectrum

    run(tmp_path, "--model", "jare")
    folder = tmp_path / "run" / "version_0"
    assert (folder / "spectra" / "spectrum_000000.npz").is_file()  # the callback of configs/data/ring.yaml
    out = spectrum.main([str(folder / "checkpoints" / "last.ckpt"), "--k", "4", "--batch-size", "32", "--field", "both"])
    saved = np.load(out)
    assert out.parent == folder / "spectra" and out.with_suffix(".png").is_file()
    assert {"update_eigenvalues", "gradient_eigenvalues", "update_condition_number"} <= set(saved.files)
    assert "phase_factor" in capsys.readouterr().out
    # the spectrum RMSProp's steps follow, from the optimizer state the checkpoint saved
    from gans.checkpoint import load_datamodule, load_model
    from runtime.checkpoint import read_checkpoint
    from runtime.optim import preconditioner
    from spectra.spectrum import compute_spectrum

    out = spectrum.main([str(folder / "checkpoints" / "last.ckpt"), "--k", "4", "--batch-size", "32", "--field", "gradient",
                         "--preconditioned", "--dtype", "float64", "--tol", "1e-10", "--out", str(tmp_path / "pre")])
    pre = np.load(out)
    assert bool(pre["preconditioned"]) and not bool(saved["preconditioned"])
    model = load_model(folder / "checkpoints" / "last.ckpt")
    optimizer = model.configure_optimizers()
    optimizer.load_state_dict(read_checkpoint(folder / "checkpoints" / "last.ckpt")["optimizer_states"][0])
    d = preconditioner(optimizer)
    assert not torch.allclose(d, torch.ones_like(d))  # TF RMSProp's accumulator moved away from one
    real = load_datamodule(folder / "checkpoints" / "last.ckpt").eval_samples(32)
    z = model.sample_latent(32, torch.Generator().manual_seed(4321))
    expected = compute_spectrum(model, real, z, field="gradient", k=4, tol=1e-10, preconditioner=d)
    assert float(pre["gradient_spectral_radius"]) == pytest.approx(expected.spectral_radius, rel=1e-8)
    assert float(pre["gradient_spectral_radius"]) != pytest.approx(float(saved["gradient_spectral_radius"]), rel=1e-3)
