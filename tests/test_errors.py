"""Every bad input ends in one short line that names the problem and the fix, without a traceback
(``--debug`` shows it), and leaves no run folder behind; the small things a new user trips on."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from commands import errors, layers, train
from datamodules import ImageFolder
from figures import curves_figure
from runtime.threads import usable_cores
from tests.helpers import tiny_dcgan_config

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def error(*args) -> str:
    with pytest.raises(SystemExit) as info:
        train.main(list(args))
    message = str(info.value.code)
    assert message.startswith("train.py: error: ") and "\n" not in message and "Traceback" not in message
    return message


def in_folder(tmp_path, *args) -> list[str]:
    return [*args, *QUIET, "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.max_steps", "3"]


@pytest.mark.parametrize("size", ["0", "-5"])
def test_a_batch_size_that_is_not_positive(tmp_path, size):
    message = error(*in_folder(tmp_path, "--model", "vanilla", "--data.batch_size", size))
    assert f"--data.batch_size must be a positive integer (samples per batch and process), got {size}" in message


def test_an_option_of_a_section_given_without_it_is_found(tmp_path):
    assert "did you mean --model.optimizer.lr?" in error("--model", "vanilla", "--optimizer.lr", "1e6")
    assert "did you mean --trainer.max_steps?" in error("--model", "vanilla", "--max_steps", "3")
    assert "did you mean --data.batch_size?" in error("--model", "vanilla", "--batch_size", "3")


def test_a_methods_option_has_one_spelling_and_a_wrong_one_says_which():
    message = error("--model", "jare", "--model.gamma", "3")
    assert "gans.TwoPlayerGAN has no option 'gamma' (an option of the method: --model.method.gamma)" in message
    message = error("--model", "jare", "--model.method.eta", "3")
    assert "game.methods.JacobianRegularization has no option 'eta'" in message and "gamma" in message


def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    gamma: [1,\n")
    message = error("--model", "jare", "--config", str(bad))
    assert f"the config {bad} is not valid YAML at line 4" in message


NETS = '''
from torch import nn

class TwoLogits(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
    def forward(self, x):
        return self.lin(x)
'''


def test_the_good_messages_come_alone_and_leave_no_run_folder(tmp_path, monkeypatch):
    (tmp_path / "nets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = tmp_path / "runs"
    cases = {
        "discriminator TwoLogits must return one logit per sample": ["--model", "vanilla", "--model.discriminator",
                                                                     "nets.TwoLogits"],
        "generator MLPGenerator returns samples of shape (3,)": ["--model", "vanilla", "--model.generator.init_args.out_dim",
                                                                 "3"],
        f"image folder {tmp_path / 'nowhere'} does not exist": ["--model", "vanilla", "--data", "folder",
                                                               "--data.init_args.root", str(tmp_path / "nowhere")],
        "cifar-10-batches-py": ["--model", "vanilla", "--data", "cifar10", "--data.init_args.root", str(tmp_path)],
        "feature_weights_path": ["--model", "vanilla", "--data", "digits", "--trainer.callbacks.FID.feature_extractor",
                                 "inception", "--trainer.callbacks.FID.feature_weights_path", str(tmp_path / "none.pth")],
        "k must be between 1 and": ["--model", "vanilla", "--trainer.callbacks=[]",
                                    "--trainer.callbacks+=callbacks.JacobianSpectrum", "--trainer.callbacks.k", "10000000"],
        "give max_products at least 9": ["--model", "vanilla", "--trainer.callbacks=[]",
                                         "--trainer.callbacks+=callbacks.JacobianSpectrum", "--trainer.callbacks.k", "6",
                                         "--trainer.callbacks.max_products", "5"],
        "iteration 0: non-finite training state": ["--model", "vanilla", "--data.init_args.std", "1e400",
                                                   "--trainer.callbacks=[]"],
        "field is not finite (NaN or inf)": ["--model", "vanilla", "--data.init_args.std", "1e400"],
        "invalid value 'nan' for --model.optimizer.lr: expected float": ["--model", "vanilla", "--model.optimizer.lr",
                                                                          "nan"],
        "MisconfigurationException": ["--model", "vanilla", "--trainer.accelerator", "gpu"],
    }
    for expected, args in cases.items():
        message = error(*args, *QUIET, "--trainer.logger.init_args.save_dir", str(folder), "--trainer.max_steps", "2")
        assert expected in message, message
        assert not folder.exists() or not any(folder.rglob("version_*")), (expected, list(folder.rglob("*")))


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="returns samples of shape"):
        train.main(["--model", "vanilla", "--model.generator.init_args.out_dim", "3", "--debug",
                    *in_folder(tmp_path)])
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    with pytest.raises(ValueError, match="returns samples of shape"):
        train.main(["--model", "vanilla", "--model.generator.init_args.out_dim", "3", *in_folder(tmp_path)])


def test_a_corrupt_image_is_found_before_training(tmp_path):
    from torchvision.utils import save_image

    for i in range(3):
        save_image(torch.rand(3, 8, 8), tmp_path / f"img{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(OSError, match=r"cannot read image .*broken.png.*\(1 of the 4 files do not open as images"):
        ImageFolder(str(tmp_path), resolution=8).setup("fit")


def test_help_lists_the_models_and_data_presets_first(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    head = capsys.readouterr().out.splitlines()[:2]
    assert head[0].startswith("--model NAME: vanilla, sga, conopt, jare, extragradient, optimistic, cgd")
    assert head[1].startswith("--data NAME: celeba, cifar10, digits, folder, mnist")


def test_a_run_prints_no_advertisement_nor_lightning_deprecation(tmp_path):
    cmd = [sys.executable, str(layers.CONFIGS.parent / "train.py"), *in_folder(tmp_path, "--model", "vanilla"),
           "--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    output = done.stdout + done.stderr
    assert "Done:" in output and "litlogger" not in output and "LeafSpec" not in output


def test_the_sample_command_names_bad_counts_and_says_where_it_writes(tmp_path, capsys):
    from commands import sample

    train.main(in_folder(tmp_path, "--model", "vanilla", "--model.generator.init_args.width", "8",
                         "--model.discriminator.init_args.width", "8"))
    ckpt = tmp_path / "vanilla" / "version_0" / "checkpoints" / "last.ckpt"
    for num in ("-5", "0"):
        with pytest.raises(SystemExit):
            sample.main([str(ckpt), "--num", num])
        assert f"--num must be a positive number of samples, got {num}" in capsys.readouterr().err
    out = sample.main([str(ckpt), "--num", "10"])
    assert out == tmp_path / "vanilla" / "version_0" / "samples" / "last_step3"
    assert out.with_suffix(".pt").is_file() and out.with_suffix(".png").is_file()
    with pytest.raises(SystemExit):
        sample.main(["--help"])
    assert "<run folder>/samples/" in " ".join(capsys.readouterr().out.split())


def test_the_spectrum_splits_any_batch_over_the_processes():
    """--trainer.devices 3 with a spectrum batch of 64: each process takes 21 samples (63 in all)
    instead of stopping three processes with an error."""
    from spectra.spectrum import SpectrumSettings

    class Model:
        device = "cpu"

        @staticmethod
        def sample_latent(n, generator):
            return torch.arange(float(n))[:, None]

    shares = []
    for rank in range(3):
        reals, zs = SpectrumSettings(batch_size=64).batches(Model, torch.arange(64.0)[:, None], rank, 3)
        shares.append(reals[0][:, 0])
    assert [len(s) for s in shares] == [21, 21, 21]
    assert torch.equal(torch.cat(shares), torch.arange(63.0))


def test_a_data_loader_takes_no_more_workers_than_cores(tmp_path):
    from torchvision.utils import save_image

    for i in range(4):
        save_image(torch.rand(3, 8, 8), tmp_path / f"img{i}.png")
    data = ImageFolder(str(tmp_path), resolution=8, batch_size=2, num_workers=64)
    assert data.train_dataloader().num_workers == min(64, usable_cores())


def test_the_mixture_curves_show_the_kl_to_uniform():
    fig = curves_figure([{"iteration": 0, "modes_covered": 2, "high_quality": 10.0, "kl_uniform": 1.2},
                         {"iteration": 100, "modes_covered": 8, "high_quality": 80.0, "kl_uniform": 0.1}], 8)
    assert [ax.get_ylabel() for ax in fig.axes] == ["modes covered", "high-quality samples (%)", "KL to uniform (0: even)"]


def test_the_traversal_rows_are_named_after_their_factors():
    from figures import traversal_figure

    fig = traversal_figure(torch.rand(3, 2 * 10, 4 * 10), ["code 0: shape", "code 1: scale"], 4, "title")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["code 0: shape", "code 1: scale"]
    assert len(fig.axes[0].get_xticklabels()) == 4


def test_resuming_an_image_run_into_the_mixture_config_is_refused(tmp_path):
    config = tiny_dcgan_config(tmp_path)
    train.main(["--model", "vanilla", "--data", "digits", "--config", str(config), *in_folder(tmp_path),
                "--trainer.callbacks=[]", "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
                "--trainer.callbacks.save_last", "true"])
    ckpt = tmp_path / "vanilla_digits" / "version_0" / "checkpoints" / "last.ckpt"
    message = error("--model", "vanilla", "--ckpt_path", str(ckpt), *QUIET, "--trainer.max_steps", "9")
    assert "was trained on datamodules.Digits, not datamodules.MixtureOfGaussians" in message


# -- a new user's first afternoon ---------------------------------------------------------------------


SMALL = ["--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8"]


@pytest.mark.parametrize("args,message", [
    (["--model", "cgd", "--model.loss", "ns", "--model.method.solver", "cg"],
     "CompetitiveGradient(solver='cg') needs a loss whose system is symmetric (zero_sum or wasserstein); with loss 'ns'"),
    (["--model", "jare", "--model.method.gamma", "-5"], "JacobianRegularization: gamma must be >= 0"),
    (["--model", "conopt", "--model.method.gamma", "-5"], "ConsensusOptimization: gamma must be >= 0"),
    (["--model", "vanilla", "--model.optimizer.init_args.lr", "1e200"],
     "learning rate 1e+200 of the generator group does not fit in torch.float32 (largest 3.4e+38)"),
    (["--model", "vanilla", "--sweep.lr", "[1e-3, 1e200]"],
     "learning rate 1e+200 of the generator/1 group does not fit in torch.float32"),
    (["--model", "jare", "--trainer.callbacks.every_n_steps", "100"],
     "--trainer.callbacks.every_n_steps sets an option of the last callback of the list, "
     "pytorch_lightning.callbacks.ModelCheckpoint, which has no option 'every_n_steps'"),
    (["--model", "jare", "--model.help", "cdg"], "--model.help cdg: unknown model; choose one of: vanilla"),
])
def test_what_a_first_afternoon_tripped_on_ends_in_one_line(tmp_path, args, message):
    assert message in error(*in_folder(tmp_path, *args, *SMALL))
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_settings_without_meaning_are_said(tmp_path):
    from gans import SGA

    with pytest.warns(UserWarning, match="penalty_every=4 has no effect without a gradient penalty"):
        train.main(in_folder(tmp_path, "--model", "vanilla", "--model.penalty_every", "4", *SMALL))
    with pytest.warns(UserWarning, match="with align the alignment rule chooses lam's sign, so only |lam| = 1"):
        SGA(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), latent_dim=1, lam=-1.0)
    with pytest.warns(UserWarning, match="lam=-1 < 0 subtracts the adjustment"):
        SGA(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), latent_dim=1, lam=-1.0, align=False)


def test_help_shows_the_models_options_and_the_sweeps(capsys):
    with pytest.raises(SystemExit):
        train.main(["--model", "cgd", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--sweep.seeds N, --sweep.NAME [v1,v2,...]" in out
    assert "--model cgd trains gans.TwoPlayerGAN with the method game.methods.CompetitiveGradient" in out
    assert "the method's options (--model.method.NAME VALUE): eta, solver, tol, max_iter, warm_start" in out
    with pytest.raises(SystemExit) as info:
        train.main(["--model.help", "jare"])
    assert info.value.code == 0 and "the method's options (--model.method.NAME VALUE): gamma" \
        in capsys.readouterr().out


def test_print_config_shows_the_sweep(capsys):
    with pytest.raises(SystemExit):
        train.main(["--model", "jare", "--sweep.gamma", "[1, 10]", "--sweep.seeds", "2", "--print_config"])
    out = capsys.readouterr().out
    assert "sweep:\n  gamma: [1, 10]\n  seeds: 2" in out and "each member trains the config above" in out


def test_offline_commands_check_where_they_write_before_they_compute(tmp_path, capsys, monkeypatch):
    from commands import outputs, sample, spectrum

    train.main(in_folder(tmp_path, "--model", "vanilla", *SMALL))
    ckpt = tmp_path / "vanilla" / "version_0" / "checkpoints" / "last.ckpt"
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    computed = []
    monkeypatch.setattr(spectrum, "evaluate_spectra", lambda *a, **k: computed.append(1))
    for command, extra in ((sample.main, ["--out", str(blocker / "samples")]), (spectrum.main, ["--out", str(blocker)])):
        with pytest.raises(SystemExit):
            command([str(ckpt), *extra])
        err = " ".join(capsys.readouterr().err.split())
        assert f"cannot write to {blocker}" in err and "is a file, not a folder" in err and "Traceback" not in err

    def read_only(self, *args, **kwargs):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(outputs.Path, "touch", read_only)  # as root, a chmod'ed folder stays writable
    with pytest.raises(SystemExit):
        spectrum.main([str(ckpt)])
    assert "Read-only file system; pass --out with a folder you can write to" in capsys.readouterr().err
    assert not computed


def test_offline_outputs_never_replace_each_other(tmp_path):
    from commands import sample, spectrum

    train.main(in_folder(tmp_path, "--model", "vanilla", *SMALL))
    ckpt = tmp_path / "vanilla" / "version_0" / "checkpoints" / "last.ckpt"
    plain = spectrum.main([str(ckpt), "--k", "2"])
    pre = spectrum.main([str(ckpt), "--k", "2", "--preconditioned"])
    again = spectrum.main([str(ckpt), "--k", "2"])
    assert [p.name for p in (plain, pre, again)] == ["last_step3.npz", "last_step3_preconditioned.npz",
                                                     "last_step3_2.npz"]
    assert not bool(__import__("numpy").load(plain)["preconditioned"])
    first, second = sample.main([str(ckpt), "--num", "10"]), sample.main([str(ckpt), "--num", "10"])
    assert (first.name, second.name) == ("last_step3", "last_step3_2")
