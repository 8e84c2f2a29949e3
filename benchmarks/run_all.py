"""Regenerate every benchmark that fits on a CPU: the results in benchmarks/results/ and the figures
in docs/figures/ quoted by docs/benchmarks.md (hours on 2 cores: the convergence study's 54 runs
alone took about 2.5 hours as single runs, the Semi-StyleGAN study about 55 minutes, the co-running measurement
about 15; ``--only`` picks scripts).

    python -m benchmarks.run_all            # everything
    python -m benchmarks.run_all --smoke    # every script at tiny sizes (CI: a few minutes)

GPU-sized cases: benchmarks/gpu_check.sh.
"""
from __future__ import annotations

import argparse
import time

from benchmarks import (
    co_running,
    compile_experiment,
    convergence,
    ddp_overhead,
    dirac_study,
    fid_cost,
    semistylegan_study,
    spectrum_cost,
    step_cost,
    stylegan_cost,
    sweep_cost,
)

SCRIPTS = {"dirac_study": dirac_study, "step_cost": step_cost, "compile_experiment": compile_experiment,
           "fid_cost": fid_cost, "spectrum_cost": spectrum_cost,
           "ddp_overhead": ddp_overhead, "convergence": convergence, "stylegan_cost": stylegan_cost, "co_running": co_running,
           "semistylegan_study": semistylegan_study, "sweep_cost": sweep_cost}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="every script at tiny sizes (CI)")
    parser.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    args = parser.parse_args(argv)
    results, seconds = {}, {}
    for name in args.only:
        print(f"\n== {name} ==", flush=True)
        start = time.perf_counter()
        results[name] = SCRIPTS[name].main(["--smoke"] if args.smoke else [])
        seconds[name] = time.perf_counter() - start
    print("\n" + "  ".join(f"{name} {s:.0f} s" for name, s in seconds.items()))
    return results


if __name__ == "__main__":
    main()
