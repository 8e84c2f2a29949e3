"""Every benchmark script runs in its smoke mode (through benchmarks/run_all.py), so none can rot;
and the eager baseline the step cost is measured against computes the same training as our path."""
import json

import pytest
import torch

from benchmarks import run_all
from benchmarks.common import RESULTS
from benchmarks.eager_baseline import METHODS as EAGER
from benchmarks.eager_baseline import EagerGame
from datamodules import MixtureOfGaussians
from gans import JARE, SGA, ConOpt, Vanilla
from gans.base import TRAINING_STREAM
from runtime.optim import RMSpropTF
from runtime.streams import seeded
from tests.helpers import mlp_gan, quiet_trainer


@pytest.fixture(scope="module")
def smoke():
    return run_all.main(["--smoke"])


def test_every_script_writes_its_smoke_results(smoke):
    assert set(smoke) == set(run_all.SCRIPTS)
    for name in run_all.SCRIPTS:
        assert json.loads((RESULTS / f"{name}_smoke.json").read_text())["meta"]["smoke"]


def test_spectrum_and_ddp_rows(smoke):
    spectra = smoke["spectrum_cost"]
    assert {r["case"] for r in spectra} == {"before/after", "lever", "warm start"}
    assert all(r["before_products"] > 0 and r["arpack_products"] > 0 and r["after_products"] > 0 and r["difference"] < 1e-3
               for r in spectra if r["case"] == "before/after")
    rows = smoke["ddp_overhead"]
    assert [r["model"] for r in rows] == ["vanilla", "conopt", "jare", "sga", "vanilla, stock DDP",
                                          "spectrum, 2 processes", "spectrum, 1 process"]
    assert all(r["allreduce_ms"] > 0 and r["local_ms"] > 0 for r in rows[:4])
    assert rows[-2]["products"] > 0 and rows[-1]["seconds"] > 0


def test_stylegan_rows(smoke):
    cost = smoke["stylegan_cost"][0]
    assert cost["g_images_per_s"] > 0 and cost["d_images_per_s"] > 0 and cost["train_images_per_s"] > 0
    study = smoke["semistylegan_study"]
    assert sorted({r["fraction"] for r in study}) == [0.0, 0.005]
    assert all(0 <= r["mig"] <= 1 and r["l2_gen"] > 0 for r in study)


def test_fid_cost_rows(smoke):
    rows = smoke["fid_cost"]
    frechet = [r for r in rows if r["case"].startswith("Frechet")]
    assert frechet[0]["value"] > 0 and abs(frechet[0]["value"] - frechet[1]["value"]) < 1e-6 * frechet[1]["value"]
    assert all(0 < r["share"] < 1 for r in rows if "share" in r)


def test_step_cost_rows(smoke):
    rows = smoke["step_cost"]
    assert {r["method"] for r in rows} == {"simgd", "altgd", "conopt", "jare", "sga", "eg", "ogd", "cgd", "jare+compile",
                                           "simgd+joint"}
    assert all(r["ours_ms"] > 0 for r in rows)
    # every method of the hand-written loop has its baseline; the newer ones are timed against ours only
    assert all((r["baseline_ms"] is not None) == (r["method"].split("+")[0] in EAGER) for r in rows)
    assert all(r["ours_over_simgd"] == 1.0 for r in rows if r["method"] == "simgd")
    floors = {r["size"]: r["lightning_floor_ms"] for r in rows}  # one empty-step floor per size
    assert set(floors) == {"ring8", "dcgan8"} and all(0 < f < r["ours_ms"] for r in rows for f in [floors[r["size"]]])


def test_step_cost_combines_runs_into_medians_and_ranges():
    from benchmarks import step_cost

    def row(method, base, ours, tf=None):
        out = {"size": "ring16", "method": method, "baseline_ms": base, "ours_ms": ours,
               "ours_over_baseline": ours / base, "ours_over_simgd": None}
        return {**out, "tf_ms": tf, "ours_over_tf": ours / tf} if tf else out

    runs = [[row("jare", 2.0, 1.0, 0.5), row("sga", 4.0, 4.0)],
            [row("jare", 2.0, 3.0, 1.0), row("sga", 4.0, 2.0)],
            [row("jare", 4.0, 2.0, 1.0), row("sga", 4.0, 3.0)]]
    jare, sga = step_cost.combine(runs)
    assert (jare["baseline_ms"], jare["ours_ms"], jare["tf_ms"], jare["runs"]) == (2.0, 2.0, 1.0, 3)
    assert jare["ours_over_baseline"] == 0.5 and jare["ours_over_baseline_range"] == [0.5, 1.5]  # median of ratios
    assert jare["ours_over_tf_range"] == [2.0, 3.0] and "tf_ms" not in sga
    assert step_cost.ratio(jare, "ours_over_baseline") == "0.50 (0.50-1.50)"
    assert step_cost.ratio(step_cost.combine(runs[:1])[0], "ours_over_baseline") == "0.50"
    with pytest.raises(ValueError, match="different rows"):
        step_cost.combine([runs[0], runs[1][::-1]])


def test_profile_step_profiles_the_asked_variant():
    """profile_step profiles the iterations of the asked method and variant: 30 steps, whose matrix
    products are the networks' (a joint D pass runs D's 5 layers once for both batches)."""
    from benchmarks import profile_step

    def counts(variant):
        argv = ["--method", "simgd", "--size", "ring16", "--rows", "3"] + (["--variant", variant] if variant else [])
        events = {e.key: e.count for e in profile_step.main(argv).key_averages()}
        return events["ProfilerStep*"], events["aten::addmm"] + events.get("aten::mm", 0)

    (steps, separate), (_, joint) = counts(None), counts("joint")
    assert steps == profile_step.Profiled.active
    # joint saves, per step, the real batch's own D pass: 5 forward products, 5 weight-gradient
    # products (summed over both batches in one) and 4 input-gradient products (none for the data)
    assert separate - joint == 14 * steps


def test_compile_experiment_rows(smoke):
    """The torch.func form of JARE's direction (what torch.compile would compile) equals our path."""
    rows = smoke["compile_experiment"]
    assert [r["case"].split(":")[0] for r in rows] == ["ours", "torch.func grad inside vjp, eager"]
    assert rows[1]["max_rel_diff"] < 1e-5 and all(r["ms"] > 0 for r in rows)


def test_the_tensorflow_column_comes_from_the_reference_script(tmp_path):
    """step_cost --tf-python: the reference runs in that interpreter with the size's networks, and
    its times fill the ring rows it covers (a stand-in interpreter here: TensorFlow is no dependency)."""
    from benchmarks import step_cost

    log = tmp_path / "args"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {log}\necho '{{\"ms\": {{\"simgd\": 2.0, \"jare\": 4.0}}}}'\n")
    fake.chmod(0o755)
    rows = [{"size": "ring16", "method": m, "ours_ms": ms}
            for m, ms in (("simgd", 3.0), ("jare", 5.0), ("sga", 9.0), ("jare+compile", 2.0))]
    rows.append({"size": "dcgan", "method": "simgd", "ours_ms": 60.0})
    step_cost.add_tf_columns(rows, str(fake), repeats=3, iterations=7)
    assert [r.get("ours_over_tf") for r in rows] == [1.5, 1.25, None, 0.5, None]
    args = log.read_text().split()
    assert args[0].endswith("tf_reference.py") and args[args.index("--methods") + 1:args.index("--width")] == ["simgd", "jare"]
    assert args[args.index("--width") + 1] == "16" and args[args.index("--batch") + 1] == "512"


def test_dirac_study_rows(smoke):
    assert [r["method"] for r in smoke["dirac_study"]][:2] == ["simultaneous GD", "alternating GD"]
    assert all(r["theory_error"] < 1e-8 for r in smoke["dirac_study"])


def test_convergence_rows(smoke):
    table = smoke["convergence"]["table"]
    assert {(t["data"], t["method"]) for t in table} == {(d, m) for d in ("ring", "grid") for m in
                                                         ("simgd", "altgd", "conopt", "jare", "sga", "eg", "ogd", "cgd",
                                                          "simgd+r1")}
    assert [r["method"] for r in smoke["convergence"]["spectra"]] == ["simgd", "conopt", "jare"]
    assert [r["gamma"] for r in smoke["convergence"]["gamma"]] == [1.0, 10.0]


def test_sweep_cost_rows(smoke):
    rows = smoke["sweep_cost"]
    assert [(r["method"], r["members"]) for r in rows] == [(m, n) for m in ("simgd", "jare", "conopt") for n in (1, 2)]
    assert all(r["member_ms"] > 0 and r["single_ms"] > 0 and r["sweep_ms"] == pytest.approx(r["member_ms"] * r["members"])
               for r in rows)


def test_a_stopped_convergence_study_goes_on_from_its_record(tmp_path, monkeypatch):
    from benchmarks import convergence

    trained = []

    class Finished:      # what train_run returns: a trainer whose MixtureMetrics holds the history
        def __init__(self, method, data, seed):
            trained.append((data, method, seed))
            self.callbacks = [type("MixtureMetrics", (), {"history": [{"iteration": 4, "seed": seed}]})()]

    monkeypatch.setattr(convergence, "train_run", lambda method, data, seed, *_: Finished(method, data, seed))
    record = tmp_path / "runs.jsonl"
    first = convergence.convergence_rows([0, 1], 4, 2, str(tmp_path), [], ["simgd"], ["ring"], record, True)
    assert trained == [("ring", "simgd", 0), ("ring", "simgd", 1)] and len(record.read_text().splitlines()) == 2
    again = convergence.convergence_rows([0, 1, 2], 4, 2, str(tmp_path), [], ["simgd"], ["ring"], record, True)
    assert trained[2:] == [("ring", "simgd", 2)]          # seeds 0 and 1 come from the record
    assert again[:2] == first and again[2]["history"] == [{"iteration": 4, "seed": 2}]
    convergence.convergence_rows([0], 8, 2, str(tmp_path), [], ["simgd"], ["ring"], record, True)
    assert trained[3:] == [("ring", "simgd", 0)]          # other iterations: not the same run


def test_a_convergence_study_trains_the_seeds_of_a_method_as_one_sweep(tmp_path, monkeypatch):
    """The missing seeds of a method are one sweep (its members' histories by seed, recorded apart
    from single runs); a method a sweep cannot train (a penalty) trains single runs."""
    from benchmarks import convergence

    calls = []

    class Swept:         # a sweep's trainer: SweepMetrics holds every member's records
        def __init__(self, method, data, seed, iterations, every, folder, extra):
            calls.append((method, seed, extra[extra.index("--sweep.seeds") + 1] if "--sweep.seeds" in extra else None))
            count = int(calls[-1][2] or 1)
            history = [{"iteration": 4, "member": m, "modes_covered": seed + m, "high_quality": 1.0, "kl_uniform": 0.0}
                       for m in range(count)]
            self.callbacks = [type("SweepMetrics" if calls[-1][2] else "MixtureMetrics", (), {"history": history})()]

    monkeypatch.setattr(convergence, "train_run", Swept)
    record = tmp_path / "runs.jsonl"
    rows = convergence.convergence_rows([0, 1, 2], 4, 2, str(tmp_path), [], ["jare", "simgd+r1"], ["ring"], record, False)
    assert calls == [("jare", 0, "3"), ("simgd+r1", 0, None), ("simgd+r1", 1, None), ("simgd+r1", 2, None)]
    assert [r["history"][-1]["modes_covered"] for r in rows[:3]] == [0, 1, 2]
    convergence.convergence_rows([0, 1, 2, 3], 4, 2, str(tmp_path), [], ["jare"], ["ring"], record, False)
    assert calls[4:] == [("jare", 3, "1")]                 # seeds 0 to 2 come from the record
    convergence.convergence_rows([0], 4, 2, str(tmp_path), [], ["jare"], ["ring"], record, True)
    assert calls[5:] == [("jare", 0, None)]                # a single run is not a sweep's member


@pytest.mark.parametrize("method,cls,kw", [("simgd", Vanilla, {}), ("conopt", ConOpt, {"gamma": 10.0}),
                                           ("jare", JARE, {"gamma": 10.0}), ("sga", SGA, {"lam": 1.0})])
def test_the_eager_baseline_trains_like_our_path(method, cls, kw):
    """Same networks, data, latent codes and optimizer: the same parameters after a few iterations."""
    model = mlp_gan(cls, loss="zero_sum", optimizer=lambda p: RMSpropTF(p, lr=1e-2), **kw)
    g, d = mlp_gan(cls, **kw).generator, mlp_gan(cls, **kw).discriminator   # the same initial weights
    game = EagerGame(g, d, lambda p: RMSpropTF(p, lr=1e-2), method=method, loss="zero_sum", **kw)
    data = MixtureOfGaussians(batch_size=16, batches_per_epoch=100)
    torch.manual_seed(3)
    quiet_trainer(4).fit(model, datamodule=data)
    codes = seeded(3, TRAINING_STREAM)  # the training stream of a run seeded with 3
    batches = data.train_dataloader().dataset
    for i in range(4):
        game.step(batches.batch(i).double(), model.sample_latent(16, codes))
    for ours, theirs in zip([*model.generator.parameters(), *model.discriminator.parameters()],
                            [*g.parameters(), *d.parameters()]):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_the_gpu_checks_run_and_pass_on_the_cpu():
    """benchmarks/gpu_check.py's checks run on a CPU too (gloo for NCCL): the quick ones here, so the
    script the first GPU will run cannot rot (the whole set: python -m benchmarks.gpu_check --device cpu)."""
    from benchmarks import gpu_check

    assert gpu_check.main(["--device", "cpu", "--only", "nccl_statistics", "tf32_kept_out", "refused_16_mixed"]) == 0
    rows = json.loads((RESULTS / "gpu_check_cpu.json").read_text())["rows"]
    assert [r["check"] for r in rows] == ["nccl_statistics", "tf32_kept_out", "refused_16_mixed"]
    assert all(r["passed"] for r in rows)
