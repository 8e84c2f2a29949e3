"""The benchmark scripts run in their smoke mode, so they cannot rot."""
import json

from benchmarks import ddp_overhead, spectrum_cost


def test_spectrum_cost_smoke():
    rows = spectrum_cost.main(["--smoke"])
    assert rows and all(r["seconds"] >= 0 for r in rows)
    assert json.loads((spectrum_cost.RESULTS / "spectrum_cost_smoke.json").read_text())["meta"]["smoke"]


def test_ddp_overhead_smoke():
    rows = ddp_overhead.main(["--smoke"])
    assert [r["model"] for r in rows] == ["vanilla", "conopt", "jare", "sga", "vanilla, stock DDP"]
    assert all(r["allreduce_ms"] > 0 and r["local_ms"] > 0 for r in rows[:-1])
    assert rows[-1]["local_ms"] > 0 and rows[-1]["exact_over_stock"] > 0
