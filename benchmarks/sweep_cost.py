"""A member's iteration in a sweep of N games (``train.py --sweep.seeds N``) against one single run
of the same member through ``train.py``, side by side in one run: N in 1, 8, 32, 128, eager and
with ``--model.compile_step true``, for simultaneous GD, JARE and ConOpt on the ring MLPs of the
ConOpt paper (4 x 16, batch 512) and of the JARE paper (4 x 256, batch 128), and, with
``--tf-python``, the authors' TensorFlow graph-mode iteration (``benchmarks/tf_reference.py``).

    python -m benchmarks.sweep_cost                                  # the table of docs/benchmarks.md (~30 minutes)
    python -m benchmarks.sweep_cost --tf-python /tmp/tfenv/bin/python
    python -m benchmarks.sweep_cost --sizes ring16 --counts 1 32    # part of it
    python -m benchmarks.sweep_cost --smoke                          # tiny sizes, seconds (CI)

Each time is the median over ``--repeats`` blocks of iterations after a warm-up (the compilation
of a compiled step is in the warm-up, and reported apart). Prints per row the ms of an iteration of
the whole sweep, ms per member, and single run / per member (how many times cheaper a member's
iteration is); writes benchmarks/results/sweep_cost.json.
"""
from __future__ import annotations

import argparse
import tempfile

from benchmarks.common import quiet, write_results
from benchmarks.step_cost import SIZES, SMOKE, block_median, ours, tf_reference

METHODS = ("simgd", "jare", "conopt")


def iteration_ms(method: str, size: dict, count: int | None, compiled: bool, repeats: int, warmup: int) -> tuple[float, float]:
    """(ms per iteration after the warm-up, seconds of the first iteration: the compilation of a
    compiled step) of a single run (``count`` None) or a sweep of ``count`` members."""
    options = () if count is None else ("--sweep.seeds", str(count))
    options += ("--model.compile_step", "true") if compiled else ()
    iterations = max(4, min(40, 1280 // (count or 1)))
    with tempfile.TemporaryDirectory() as folder:
        stamps = ours(method, size, warmup + repeats * iterations + 1, folder, "cpu", options)
    from benchmarks.step_cost import StepTimer  # the class train.py instantiated by its path

    return 1e3 * block_median(stamps, warmup, repeats, iterations), stamps[0] - StepTimer.started


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few iterations (CI)")
    parser.add_argument("--sizes", nargs="+", choices=["ring16", "ring256"], default=["ring16", "ring256"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--counts", nargs="+", type=int, default=[1, 8, 32, 128])
    parser.add_argument("--no-compile", action="store_true", help="eager sweeps only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tf-python", help="a Python with TensorFlow: adds the graph-mode single run")
    args = parser.parse_args(argv)
    quiet()
    sizes = {"ring8": SMOKE["ring8"]} if args.smoke else {k: SIZES[k] for k in args.sizes}
    counts = [1, 2] if args.smoke else args.counts
    warmup = 2 if args.smoke else 5
    rows = []
    for key, size in sizes.items():
        tf = {} if not args.tf_python else tf_reference(args.tf_python, size, list(args.methods), args.repeats, 40)
        for method in args.methods:
            single, _ = iteration_ms(method, size, None, False, args.repeats, warmup)
            print(f"{size['label']} | {method} | single run {single:.2f} ms"
                  + (f" | TF graph mode {tf[method]:.2f} ms" if method in tf else ""), flush=True)
            for compiled in (False, True) if not (args.no_compile or args.smoke) else (False,):
                for count in counts:
                    ms, warm = iteration_ms(method, size, count, compiled, args.repeats, warmup)
                    row = {"size": key, "label": size["label"], "method": method, "members": count, "compiled": compiled,
                           "sweep_ms": ms, "member_ms": ms / count, "single_ms": single,
                           "single_over_member": single * count / ms, "first_iteration_s": warm, "tf_ms": tf.get(method)}
                    rows.append(row)
                    print(f"  N={count:4d} {'compiled' if compiled else 'eager   '} sweep {ms:8.2f} ms  member "
                          f"{ms / count:7.3f} ms  single / member {row['single_over_member']:5.2f}"
                          + (f"  TF / member {tf[method] * count / ms:5.2f}" if method in tf else "")
                          + (f"  (first iteration, with the compilation: {warm:.0f} s)" if compiled else ""), flush=True)
    out = write_results("sweep_cost", rows, args.smoke)
    print(f"-> {out}")
    return rows


if __name__ == "__main__":
    main()
