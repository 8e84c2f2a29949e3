"""What every benchmark script shares: medians of repeated timings and the results file."""
from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def quiet() -> None:
    """Keep the tables readable: Lightning's start-up banners and known warnings off."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_results(name: str, rows: list[dict], smoke: bool, **meta) -> Path:
    """``results/<name>.json`` (``<name>_smoke.json`` in smoke mode) with the machine, torch version and date."""
    RESULTS.mkdir(exist_ok=True)
    import mkl_on_amd

    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "mkl_on_amd": mkl_on_amd.status,
            "machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
            "smoke": smoke, **meta}
    out = RESULTS / f"{name}{'_smoke' if smoke else ''}.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return out
