"""What a researcher must be able to trust of a run: the last checkpoint is the last model and
survives a kill, a resume continues the run as it was (or says why not), outputs go where they
were asked to, and the progress bar counts the run's iterations."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from commands import layers, train
from gans.checkpoint import AtomicCheckpointIO
from runtime.checkpoint import read_checkpoint
from tests.helpers import tiny_dcgan_config

SMALL = ["--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
CHECKPOINT_EVERY_5 = ["--trainer.callbacks=[]", "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
                      "--trainer.callbacks.every_n_train_steps", "5", "--trainer.callbacks.save_last", "true"]


def run(tmp_path, *args, model="vanilla", steps=7):
    return train.main(["--model", model, "--trainer.max_steps", str(steps), *SMALL,
                       "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.logger.init_args.name", "run",
                       *args])


def error_of(*args) -> str:
    with pytest.raises(SystemExit) as info:
        train.main(list(args))
    message = str(info.value.code)
    assert "\n" not in message
    return message


def checkpoints(tmp_path):
    return tmp_path / "run" / "version_0" / "checkpoints"


# -- the last checkpoint -------------------------------------------------------------------------


def test_last_checkpoint_holds_the_final_iteration(tmp_path):
    """7 iterations with a cadence of 5: Lightning alone leaves iteration 5 in last.ckpt."""
    trainer = run(tmp_path, *CHECKPOINT_EVERY_5)
    assert trainer.global_step == 7
    assert read_checkpoint(checkpoints(tmp_path) / "epoch=0-step=5.ckpt")["global_step"] == 5
    last = read_checkpoint(checkpoints(tmp_path) / "last.ckpt")
    assert last["global_step"] == 7
    final = trainer.lightning_module.state_dict()
    assert all(torch.equal(last["state_dict"][k], final[k]) for k in final)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


KILLED_WHILE_SAVING = '''
import os, signal, sys, torch
from gans.checkpoint import AtomicCheckpointIO

path = sys.argv[1]
io = AtomicCheckpointIO()
io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 1}, path)

def dying_save(obj, f, *args, **kwargs):  # half a zip archive, then the process is killed
    f.write(b"PK\\x03\\x04" + b"\\0" * 1000)
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = dying_save
io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 2}, path)
'''


def test_a_kill_while_saving_leaves_the_previous_checkpoint_readable(tmp_path):
    path = tmp_path / "last.ckpt"
    done = subprocess.run([sys.executable, "-c", KILLED_WHILE_SAVING, str(path)], capture_output=True,
                          cwd=layers.CONFIGS.parent)
    assert done.returncode == -9
    assert read_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.glob("*.ckpt")] == ["last.ckpt"]  # the half-written file is not a .ckpt
    assert len(list(tmp_path.glob(".last.ckpt.*.tmp"))) == 1
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}, "global_step": 3}, path)   # clears the dead one's file
    assert read_checkpoint(path)["global_step"] == 3 and not list(tmp_path.glob(".*.tmp"))


# -- resume ----------------------------------------------------------------------------------------


def test_a_resume_with_changed_settings_is_refused_and_the_record_kept(tmp_path):
    run(tmp_path, steps=5)
    config = tmp_path / "run" / "version_0" / "config.yaml"
    recorded = config.read_text()
    message = error_of("--model", "vanilla", "--trainer.max_steps", "9", *SMALL, "--trainer.logger.init_args.save_dir",
                       str(tmp_path), "--trainer.logger.init_args.name", "run", "--ckpt_path", "last",
                       "--model.optimizer.lr", "1e6", "--data.init_args.std", "0.5")
    assert "was written with other settings (model.optimizer.init_args.lr: 0.001 -> 1000000.0; " \
           "data.std: 0.06 -> 0.5)" in message
    assert f"--config {config}" in message
    assert config.read_text() == recorded and not list(config.parent.glob("config_resumed*"))


def test_a_resume_with_other_networks_names_them(tmp_path):
    run(tmp_path, steps=5)
    message = error_of("--model", "vanilla", "--trainer.max_steps", "9", "--trainer.logger.init_args.save_dir",
                       str(tmp_path), "--trainer.logger.init_args.name", "run", "--ckpt_path", "last")
    assert "model.generator.init_args.width: 8 -> 128" in message


def test_a_resume_of_another_models_checkpoint_is_refused(tmp_path):
    run(tmp_path, steps=5)
    message = error_of("--model", "sga", "--trainer.max_steps", "9", *SMALL, "--trainer.logger.init_args.save_dir",
                       str(tmp_path), "--ckpt_path", str(checkpoints(tmp_path) / "last.ckpt"))
    assert ("was written by gans.TwoPlayerGAN with game.methods.GradientDescent, not gans.TwoPlayerGAN with "
            "game.methods.SymplecticGradientAdjustment") in message


def test_a_resume_with_nothing_left_to_train_says_so(tmp_path):
    run(tmp_path, steps=5)
    message = error_of("--model", "vanilla", "--trainer.max_steps", "3", *SMALL, "--trainer.logger.init_args.save_dir",
                       str(tmp_path), "--trainer.logger.init_args.name", "run", "--ckpt_path", "last")
    assert "nothing to train" in message and "is at iteration 5 and --trainer.max_steps is 3" in message


def test_a_resume_records_its_own_config_beside_the_runs(tmp_path):
    run(tmp_path, steps=5)
    config = tmp_path / "run" / "version_0" / "config.yaml"
    recorded = config.read_text()
    trainer = run(tmp_path, "--ckpt_path", "last", steps=9)
    assert trainer.global_step == 9 and config.read_text() == recorded
    assert "max_steps: 9" in (config.parent / "config_resumed_5.yaml").read_text()


def test_a_resume_from_a_path_continues_in_the_checkpoints_run_folder(tmp_path, monkeypatch):
    """The README's promise for a path as for ``last``: a relative or an absolute path to a run's
    checkpoint continues that run in its folder (it used to start a new folder holding only the
    resumed part)."""
    monkeypatch.chdir(tmp_path)
    base = ["--model", "vanilla", *SMALL]
    train.main([*base, "--trainer.max_steps", "5"])
    folder = tmp_path / "runs" / "vanilla" / "version_0"
    records = (folder / "mixture_metrics.jsonl").read_text().splitlines()
    trainer = train.main([*base, "--trainer.max_steps", "9", "--ckpt_path", "runs/vanilla/version_0/checkpoints/last.ckpt"])
    assert Path(trainer.log_dir).resolve() == folder.resolve() and trainer.global_step == 9
    trainer = train.main([*base, "--trainer.max_steps", "12", "--ckpt_path", str(folder / "checkpoints" / "last.ckpt")])
    assert Path(trainer.log_dir).resolve() == folder.resolve() and trainer.global_step == 12
    assert sorted(p.name for p in folder.parent.iterdir()) == ["version_0"]
    assert (folder / "config_resumed_5.yaml").is_file() and (folder / "config_resumed_9.yaml").is_file()
    assert (folder / "mixture_metrics.jsonl").read_text().splitlines()[:len(records)] == records
    assert len((folder / "mixture_metrics.jsonl").read_text().splitlines()) == 3


def test_a_resume_into_another_place_gets_a_complete_run_folder(tmp_path, monkeypatch, caplog):
    """A resume whose command line names another run folder writes there, said in one line, starting
    from the original run's records; a checkpoint outside any run folder starts a new folder with its
    config; logger options that name the run's own folder continue it."""
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="pytorch_lightning")  # a benchmark's quiet() may have raised it
    base = ["--model", "vanilla", *SMALL]
    train.main([*base, "--trainer.max_steps", "5"])
    source = tmp_path / "runs" / "vanilla" / "version_0"
    trainer = train.main([*base, "--trainer.max_steps", "9", "--ckpt_path", str(source / "checkpoints" / "last.ckpt"),
                          "--trainer.logger.init_args.name", "elsewhere"])
    folder = Path(trainer.log_dir)
    assert folder.resolve() == (tmp_path / "runs" / "elsewhere" / "version_0").resolve()
    assert "--trainer.logger.init_args.name name(s) another place than" in caplog.text
    assert (folder / "config.yaml").read_text() == (source / "config.yaml").read_text()
    assert (folder / "config_resumed_5.yaml").is_file()
    assert len((folder / "mixture_metrics.jsonl").read_text().splitlines()) == 2  # the original's and the new one
    assert not (source / "config_resumed_5.yaml").exists()
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes((source / "checkpoints" / "last.ckpt").read_bytes())
    trainer = train.main([*base, "--trainer.max_steps", "7", "--ckpt_path", str(loose)])
    assert "is not in a run folder" in caplog.text
    assert Path(trainer.log_dir).resolve() == (tmp_path / "runs" / "vanilla" / "version_1").resolve()
    assert (Path(trainer.log_dir) / "config.yaml").is_file()  # its only record
    trainer = train.main([*base, "--trainer.max_steps", "9", "--ckpt_path", str(source / "checkpoints" / "last.ckpt"),
                          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
                          "--trainer.logger.init_args.name", "vanilla"])  # naming the run's own place: in place
    assert Path(trainer.log_dir).resolve() == source.resolve()


def test_a_resume_refused_inside_fitting_leaves_the_folder_as_it_was(tmp_path):
    """A checkpoint whose method state does not fit is refused when fitting restores it, after the
    config and the event file of the attempt were written: they are removed again. (With the
    model's class path in the checkpoint, as train.py writes it, the method is refused before
    anything is written; without it, only the restore finds out.)"""
    run(tmp_path, model="optimistic", steps=5)
    folder = tmp_path / "run" / "version_0"
    last = folder / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    checkpoint["method"] = "game.methods.Extragradient"
    del checkpoint["hyper_parameters"]["_class_path"]
    torch.save(checkpoint, last)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    message = error_of("--model", "optimistic", "--trainer.max_steps", "9", *SMALL, "--trainer.logger.init_args.save_dir",
                       str(tmp_path), "--trainer.logger.init_args.name", "run", "--ckpt_path", "last")
    assert "was trained with the method game.methods.Extragradient" in message
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_an_unreadable_last_checkpoint_names_the_readable_ones(tmp_path, damage, capsys):
    from commands import sample, spectrum

    run(tmp_path, *CHECKPOINT_EVERY_5)
    last = checkpoints(tmp_path) / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes({"truncated": data[:len(data) // 2], "empty": b"", "text": b"model: jare\n"}[damage])
    expected = (f"{last} is not a readable checkpoint (truncated? still being written?",
                "readable checkpoints beside it: epoch=0-step=5.ckpt (iteration 5); resume from one with --ckpt_path")
    message = error_of("--model", "vanilla", "--trainer.max_steps", "9", *SMALL, "--trainer.logger.init_args.save_dir",
                       str(tmp_path), "--trainer.logger.init_args.name", "run", "--ckpt_path", "last")
    assert all(part in message for part in expected)
    from commands import edit, fid

    image = tmp_path / "image.png"
    image.write_bytes(b"")
    for command, extra in ((sample.main, []), (spectrum.main, []), (fid.main, []),
                           (edit.main, [str(image), "--factor", "0", "--value", "0.5"])):
        with pytest.raises(SystemExit):
            command([str(last), *extra])
        err = capsys.readouterr().err
        assert all(part in err for part in expected) and "Traceback" not in err


# -- outputs ---------------------------------------------------------------------------------------


def test_default_root_dir_holds_the_whole_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train.main(["--model", "jare", "--trainer.max_steps", "3", *SMALL, "--trainer.default_root_dir", "elsewhere"])
    folder = tmp_path / "elsewhere" / "runs" / "jare" / "version_0"
    assert (folder / "config.yaml").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
    assert (folder / "spectra" / "spectrum_000000.npz").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]


def test_a_run_without_a_logger_gets_a_folder_of_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(train.RUN_FOLDER_ENV, raising=False)
    for model, version in (("vanilla", 0), ("vanilla", 1), ("extragradient", 0)):   # one Python process
        train.main(["--model", model, "--trainer.max_steps", "3", *SMALL, "--trainer.logger", "false"])
        folder = tmp_path / "runs" / model / f"version_{version}"
        assert (folder / "config.yaml").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_the_progress_bar_counts_the_runs_iterations(tmp_path, capsys):
    args = ["--model", "vanilla", "--model.generator.init_args.width", "8", "--model.discriminator.init_args.width",
            "8", "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_model_summary", "false"]
    train.main([*args, "--trainer.max_steps", "20"])
    out = capsys.readouterr().out
    assert "training: 20 iterations" in out and "iteration 20/20 (100%)" in out and "Epoch" not in out
    train.main([*args, "--trainer.max_steps", "30", "--ckpt_path", "last"])
    out = capsys.readouterr().out
    assert "training: 30 iterations, resuming at iteration 20" in out and "iteration 30/30 (100%)" in out


# -- the offline spectrum on every kind of data ----------------------------------------------------


def test_the_offline_spectrum_of_an_image_model(tmp_path):
    from commands import spectrum

    config = tiny_dcgan_config(tmp_path)
    train.main(["--model", "jare", "--data", "digits", "--config", str(config), "--trainer.max_steps", "2",
                *CHECKPOINT_EVERY_5, "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"])
    ckpt = tmp_path / "jare_digits" / "version_0" / "checkpoints" / "last.ckpt"
    out = spectrum.main([str(ckpt), "--k", "2", "--batch-size", "8", "--field", "gradient"])
    assert out.is_file() and len(__import__("numpy").load(out)["gradient_eigenvalues"]) >= 2


def test_long_work_in_a_log_file_prints_lines_while_it_runs(monkeypatch, capsys):
    """Without a terminal (a log file, a SLURM job) an evaluation prints a line every LINE_SECONDS
    while it runs, not only when it is done: a 5-minute spectrum used to look like a hang."""
    from callbacks import progress as progress_module

    clock = iter(float(t) for t in range(0, 100, 4))
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    with progress_module.progress(None, "spectrum of the update field", 600, "products") as advance:
        for _ in range(7):  # one product every 4 s
            advance(10)
    assert capsys.readouterr().out.splitlines() == ["spectrum of the update field: 30/600 products, 12 s so far",
                                                    "spectrum of the update field: 60/600 products, 24 s so far",
                                                    "spectrum of the update field: 70 products in 32.0 s"]
