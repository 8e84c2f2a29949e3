"""train.py --model semistylegan (and _fine): a tiny model trains on the CPU, writes metrics and
traversal grids, resumes exactly; the editing entry point runs on its checkpoint."""
from __future__ import annotations

import json

import pytest
import torch
from torchvision.utils import save_image

from commands import layers, train
from datamodules import DSprites

TINY = ["--model.generator.init_args.channel_base", "64", "--model.generator.init_args.channel_max", "8",
        "--model.generator.init_args.w_dim", "16", "--model.discriminator.init_args.channel_base", "64",
        "--model.discriminator.init_args.channel_max", "8", "--data.init_args.batch_size", "8",
        "--data.init_args.labelled_batch_size", "4", "--trainer.enable_progress_bar", "false",
        "--trainer.log_every_n_steps", "2", "--model.penalty_every", "2"]
CALLBACKS = ["--trainer.callbacks=[]",
             "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
             "--trainer.callbacks.save_last", "true",
             "--trainer.callbacks+=callbacks.DisentanglementMetrics", "--trainer.callbacks.every_n_steps", "3",
             "--trainer.callbacks.num_samples", "64", "--trainer.callbacks.evaluator_steps", "20",
             "--trainer.callbacks.traversal_steps", "4"]


def semistylegan(tmp_path, *extra, model="semistylegan", name="run", callbacks=CALLBACKS):
    return train.main(["--model", model, *TINY, *callbacks, "--trainer.logger.init_args.save_dir", str(tmp_path),
                       "--trainer.logger.init_args.name", name, *extra])


def test_tiny_model_writes_metrics_traversals_and_a_checkpoint_the_editor_reads(tmp_path, capsys):
    trainer = semistylegan(tmp_path, "--trainer.max_steps", "6")
    assert trainer.global_step == 6
    folder = tmp_path / "run" / "version_0"
    records = [json.loads(line) for line in (folder / "disentanglement.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [3, 6]
    for key in ("mig", "mig_gen"):
        assert 0 <= records[-1][key] <= 1
    assert records[-1]["l2"] > 0 and records[-1]["l2_gen"] > 0 and records[-1]["num_samples"] == 64
    for png in ("traversal_000003.png", "traversal_000006.png", "disentanglement.png"):
        assert (folder / "plots" / png).stat().st_size > 200, png
    assert "Done: MIG" in capsys.readouterr().out
    assert {"terms/unsup", "terms/sup", "terms/smooth", "terms/r1", "loss/generator"} <= set(trainer.logged_metrics)
    assert trainer.lightning_module.factor_sizes == [3, 6, 40, 32, 32]

    from commands import edit, sample

    sample.main([str(folder / "checkpoints" / "last.ckpt"), "--num", "16", "--out", str(tmp_path / "samples")])
    assert torch.load(tmp_path / "samples.pt").shape == (16, 1, 32, 32) and (tmp_path / "samples.png").is_file()
    image = tmp_path / "sprite.png"
    save_image(DSprites(resolution=32).dataset[12345][0] * 0.5 + 0.5, image)
    out = edit.main([str(folder / "checkpoints" / "last.ckpt"), str(image), "--factor", "3", "--value", "0.9",
                     "--out", str(tmp_path / "edited.png")])
    assert out.is_file() and (tmp_path / "edited_strip.png").is_file()
    assert "codes read from the image" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        edit.main([str(folder / "checkpoints" / "last.ckpt"), str(image), "--factor", "5", "--value", "0.5"])
    assert "--factor must index one of the model's 5 codes" in capsys.readouterr().err


def test_fid_runs_on_factor_data(tmp_path):
    """callbacks.FID with any feature module (here an untrained factor encoder) on dSprites."""
    semistylegan(tmp_path, "--trainer.max_steps", "2", callbacks=[
        "--trainer.callbacks=[]", "--trainer.callbacks+=callbacks.FID", "--trainer.callbacks.every_n_steps", "2",
        "--trainer.callbacks.num_samples", "40",
        '--trainer.callbacks.feature_extractor={"class_path": "metrics.evaluator.FactorEncoder", '
        '"init_args": {"channels": 1, "num_codes": 8}}'])
    record = json.loads((tmp_path / "run" / "version_0" / "fid.jsonl").read_text().splitlines()[-1])
    assert record["iteration"] == 2 and record["num_samples"] == 40 and record["fid"] > 0


def test_fine_variant_trains_and_edits_a_real_image(tmp_path, capsys):
    semistylegan(tmp_path, "--trainer.max_steps", "4", model="semistylegan_fine")
    ckpt = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    from commands import edit
    from gans.checkpoint import load_model

    model = load_model(ckpt)
    assert model.reference.abs().sum() > 0  # reference images were stored for sampling
    image = tmp_path / "sprite.png"
    save_image(DSprites(coloured=True, resolution=32).dataset[4321][0] * 0.5 + 0.5, image)
    out = edit.main([str(ckpt), str(image), "--factor", "1", "--value", "1.0"])
    assert out == tmp_path / "sprite_edited.png" and out.is_file()
    assert "z is not inverted" not in capsys.readouterr().out


def test_resume_is_exact(tmp_path):
    """Lazy R1, the mixed codes, the labelled batches and the EMA all continue where they stopped."""
    def run(name, steps, *extra):
        return semistylegan(tmp_path, "--trainer.max_steps", str(steps), *extra, name=name, callbacks=CALLBACKS[:4])

    straight = run("straight", 6)
    run("resumed", 3)
    resumed = run("resumed", 6, "--ckpt_path", "last")
    a, b = straight.lightning_module.state_dict(), resumed.lightning_module.state_dict()
    assert any(k.startswith("generator_ema.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", [["--model.method", "game.methods.JacobianRegularization", "--model.method.gamma", "0.1"],
                                    ["--model.method", "game.methods.Extragradient"], []], ids=["jare", "eg", "gd"])
def test_simultaneous_methods_train(tmp_path, method):
    trainer = semistylegan(tmp_path, "--trainer.max_steps", "3", "--model.update", "simultaneous", *method,
                           callbacks=["--trainer.callbacks=[]"])
    assert trainer.global_step == 3
    assert all(torch.isfinite(p).all() for p in trainer.lightning_module.parameters())


def test_a_model_that_does_not_match_the_factors_is_named(tmp_path):
    with pytest.raises(SystemExit, match="set --model.factors to 5 factor indices"):
        semistylegan(tmp_path, "--trainer.max_steps", "1", "--model.factors", "[0, 1]",
                     callbacks=["--trainer.callbacks=[]"])


def test_two_processes_train_and_write_the_metrics_once(tmp_path):
    """train.py on 2 CPU processes (game_ddp): the labelled batches split across ranks, the
    evaluator is trained once, every rank joins the collectives (no hang), rank 0 writes."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, str(layers.CONFIGS.parent / "train.py"), "--model", "semistylegan", *TINY, *CALLBACKS,
           "--trainer.strategy", "game_ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
           "--trainer.max_steps", "3", "--trainer.logger.init_args.save_dir", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GAN_DYNAMICS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Done: MIG") == 1
    records = (tmp_path / "semistylegan" / "version_0" / "disentanglement.jsonl").read_text().splitlines()
    assert [json.loads(r)["iteration"] for r in records] == [3]
    assert len(list((tmp_path / "cache").glob("evaluator-*.pt"))) == 1
