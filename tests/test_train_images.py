"""train.py on images: the --data presets, FID and image grids in the run folder, resume with the
generator EMA, sampling a checkpoint, clear errors for missing data."""
from __future__ import annotations

import json

import pytest
import torch

from commands import layers, train

SMALL = ["--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8",
         "--data.init_args.batch_size", "16", "--trainer.enable_progress_bar", "false",
         "--trainer.log_every_n_steps", "5"]
CALLBACKS = ["--trainer.callbacks=[]",
             "--trainer.callbacks+=callbacks.ImageGrid", "--trainer.callbacks.every_n_steps", "10",
             "--trainer.callbacks.num_samples", "16",
             "--trainer.callbacks+=callbacks.FID", "--trainer.callbacks.every_n_steps", "10",
             "--trainer.callbacks.num_samples", "200", "--trainer.callbacks.feature_extractor", "classifier",
             "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
             "--trainer.callbacks.every_n_train_steps", "10", "--trainer.callbacks.save_last", "true"]


def digits(tmp_path, model="jare", *extra, name="run"):
    return train.main(["--model", model, "--data", "digits", *SMALL, *CALLBACKS,
                       "--trainer.logger.init_args.save_dir", str(tmp_path),
                       "--trainer.logger.init_args.name", name, *extra])


@pytest.mark.parametrize("preset", layers.data_presets())
def test_every_data_preset_parses(preset, capsys):
    with pytest.raises(SystemExit) as info:
        train.main(["--model", "conopt", "--data", preset, "--print_config"])
    assert info.value.code in (None, 0)
    out = capsys.readouterr().out
    assert "game.methods.ConsensusOptimization" in out and f"name: conopt_{preset}" in out
    assert ("MixtureMetrics" in out) == (preset == "ring")       # mixture metrics only on a mixture


def test_digits_job_reports_a_frechet_distance_and_writes_grids(tmp_path, capsys):
    trainer = digits(tmp_path, "jare", "--trainer.max_steps", "20")
    folder = tmp_path / "run" / "version_0"
    records = [json.loads(line) for line in (folder / "fid.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [10, 20]
    assert records[-1]["num_samples"] == 200 and records[-1]["features"] == "classifier" and records[-1]["fid"] > 0
    assert {"fid/value", "fid/num_samples"} <= set(trainer.logged_metrics) or (folder / "fid.jsonl").is_file()
    for png in ("real.png", "samples_000010.png", "samples_000020.png", "fid_curve.png"):
        assert (folder / "plots" / png).stat().st_size > 500, png
    assert "Done: FID" in capsys.readouterr().out
    assert trainer.lightning_module.generator_ema is not None          # the preset's EMA


def test_image_resume_is_exact_with_the_generator_ema(tmp_path):
    def run(name, steps, *extra):
        return train.main(["--model", "vanilla", "--data", "digits", *SMALL, "--trainer.callbacks=[]",
                           "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
                           "--trainer.callbacks.save_last", "true", "--trainer.logger.init_args.save_dir",
                           str(tmp_path), "--trainer.logger.init_args.name", name, "--trainer.max_steps", str(steps),
                           "--data.init_args.batch_size", "64", *extra])  # 28 batches per epoch: crosses one

    straight = run("straight", 40)
    run("resumed", 25)
    resumed = run("resumed", 40, "--ckpt_path", "last")
    a, b = straight.lightning_module.state_dict(), resumed.lightning_module.state_dict()
    assert any(k.startswith("generator_ema.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sample_a_checkpoint_as_an_image_grid(tmp_path, capsys):
    from commands import sample

    digits(tmp_path, "vanilla", "--trainer.max_steps", "10")
    ckpt = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    out = sample.main([str(ckpt), "--num", "16", "--out", str(tmp_path / "s")])
    assert torch.load(out.with_suffix(".pt")).shape == (16, 1, 32, 32)
    assert (tmp_path / "s.png").stat().st_size > 500 and "image grid" in capsys.readouterr().out


def test_fid_of_a_checkpoint(tmp_path, capsys):
    from commands import fid

    digits(tmp_path, "vanilla", "--trainer.max_steps", "10")
    ckpt = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    record = fid.main([str(ckpt), "--num-samples", "200", "--features", "classifier"])
    logged = json.loads((tmp_path / "run" / "version_0" / "fid.jsonl").read_text().splitlines()[-1])
    assert record["num_samples"] == 200 and record["fid"] == pytest.approx(logged["fid"], rel=1e-6)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["fid"] == record["fid"]


def test_missing_data_folder_and_unknown_preset_are_clear(tmp_path):
    with pytest.raises(SystemExit, match=r"image folder .*nowhere does not exist"):
        train.main(["--model", "vanilla", "--data", "folder", "--data.init_args.root", str(tmp_path / "nowhere"),
                    "--trainer.callbacks=[]", "--trainer.logger.init_args.save_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"cifar-10-batches-py.*download=True"):
        train.main(["--model", "vanilla", "--data", "cifar10", "--data.init_args.root", str(tmp_path),
                    "--trainer.callbacks=[]", "--trainer.logger.init_args.save_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="unknown data preset 'digit'; choose one of: .*digits"):
        train.main(["--model", "vanilla", "--data", "digit"])


def test_a_generator_of_the_wrong_image_size_is_named(tmp_path):
    with pytest.raises(SystemExit, match=r"returns samples of shape \(1, 64, 64\) but the data has samples of "
                                         r"shape \(1, 32, 32\)"):
        digits(tmp_path, "vanilla", "--model.generator.init_args.resolution", "64", "--trainer.max_steps", "1")


def test_digits_on_two_processes_logs_one_fid(tmp_path):
    """train.py with FID and image grids on 2 CPU processes: the classifier is trained once, every
    rank joins the FID's collectives (no hang), rank 0 writes."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, str(layers.CONFIGS.parent / "train.py"), "--model", "jare", "--data", "digits", *SMALL,
           *CALLBACKS, "--trainer.strategy", "game_ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
           "--trainer.max_steps", "10", "--trainer.logger.init_args.save_dir", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GAN_DYNAMICS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Done: FID") == 1
    folder = tmp_path / "jare_digits" / "version_0"
    records = [json.loads(line) for line in (folder / "fid.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [10] and records[0]["num_samples"] == 200
    assert len(list((tmp_path / "cache").glob("classifier-*.pt"))) == 1
