"""Several training jobs on one machine: how long each takes alone and side by side, with each
thread setting (`train.py --threads`, OpenMP's wait policy).

    python -m benchmarks.co_running            # the table in docs/benchmarks.md (about 15 minutes on 2 cores)
    python -m benchmarks.co_running --smoke    # tiny runs (CI)

Each job is `python train.py --model jare --trainer.max_steps N` without callbacks or logger;
the wall time of a job includes its start-up. Run it on an otherwise idle machine: the point is
what the jobs do to each other. Prints a table and writes benchmarks/results/co_running.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_results

TRAIN = Path(__file__).resolve().parents[1] / "train.py"

#: (name, jobs at once, extra train.py arguments, environment) of each scenario
SCENARIOS = [
    ("alone, default threads", 1, [], {}),
    ("alone, --threads 1", 1, ["--threads", "1"], {}),
    ("alone, OMP_WAIT_POLICY=passive", 1, [], {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("two at once, default threads", 2, [], {}),
    ("two at once, --threads 1 each", 2, ["--threads", "1"], {}),
    ("two at once, OMP_WAIT_POLICY=passive", 2, [], {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("two at once, --threads 2 each", 2, ["--threads", "2"], {}),
]


def launch(steps: int, extra: list[str], env: dict, folder: str) -> subprocess.Popen:
    cmd = [sys.executable, str(TRAIN), "--model", "jare", "--trainer.max_steps", str(steps), "--trainer.callbacks=[]",
           "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
           "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", folder, *extra]
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    return subprocess.Popen(cmd, env={**clean, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run_scenario(steps: int, jobs: int, extra: list[str], env: dict, limit: float) -> list[float | None]:
    """Wall seconds of each of ``jobs`` identical jobs started together; None for a job still
    running after ``limit`` seconds (stopped then: oversubscribed threads can crawl for hours)."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        procs = [launch(steps, extra, env, str(Path(folder) / f"job{i}")) for i in range(jobs)]
        seconds = []
        for proc in procs:
            try:
                _, err = proc.communicate(timeout=max(0.0, limit - (time.perf_counter() - start)))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                seconds.append(None)
                continue
            if proc.returncode:
                raise RuntimeError(f"a job failed: {err[-2000:]}")
            seconds.append(time.perf_counter() - start)
    return seconds


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--limit", type=float, default=900, help="stop a job after this many seconds")
    args = parser.parse_args(argv)
    steps = 20 if args.smoke else args.steps
    scenarios = SCENARIOS[:2] if args.smoke else SCENARIOS
    rows = []
    print(f"{'scenario':40s} {'seconds per job':>20s}")
    for name, jobs, extra, env in scenarios:
        seconds = run_scenario(steps, jobs, extra, env, args.limit)
        rows.append({"scenario": name, "jobs": jobs, "args": extra, "env": env, "steps": steps, "seconds": seconds,
                     "limit": args.limit})
        shown = (f"{s:8.1f}" if s is not None else f"{'>' + format(args.limit, '.0f'):>8s}" for s in seconds)
        print(f"{name:40s} {' '.join(shown):>20s}", flush=True)
    out = write_results("co_running", rows, args.smoke, cores=len(os.sched_getaffinity(0)))
    print(f"results -> {out}")
    return rows


if __name__ == "__main__":
    main()
