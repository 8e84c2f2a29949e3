"""The benchmark scripts run in their smoke mode, so they cannot rot."""
import json

from benchmarks import ddp_overhead, fid_cost, spectrum_cost
from benchmarks.common import RESULTS


def test_spectrum_cost_smoke():
    rows = spectrum_cost.main(["--smoke"])
    assert rows and all(r["seconds"] >= 0 for r in rows)
    assert json.loads((RESULTS / "spectrum_cost_smoke.json").read_text())["meta"]["smoke"]


def test_ddp_overhead_smoke():
    rows = ddp_overhead.main(["--smoke"])
    assert [r["model"] for r in rows] == ["vanilla", "conopt", "jare", "sga", "vanilla, stock DDP"]
    assert all(r["allreduce_ms"] > 0 and r["local_ms"] > 0 for r in rows[:-1])
    assert rows[-1]["local_ms"] > 0 and rows[-1]["exact_over_stock"] > 0


def test_fid_cost_smoke():
    rows = fid_cost.main(["--smoke"])
    frechet = [r for r in rows if r["case"].startswith("Frechet")]
    assert frechet[0]["value"] > 0 and abs(frechet[0]["value"] - frechet[1]["value"]) < 1e-6 * frechet[1]["value"]
    assert all(0 < r["share"] < 1 for r in rows if "share" in r)
