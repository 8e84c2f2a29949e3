"""Profile training iterations of one method through train.py with torch.profiler: where the time
of an iteration goes (operators by self time, Lightning hooks, our functions).

    python -m benchmarks.profile_step --method jare --size ring256
    python -m benchmarks.profile_step --method simgd --size dcgan --rows 40 --trace trace.json
    python -m benchmarks.profile_step --method jare --size ring16 --variant compile   # with compile_step

Prints the operators table (self CPU time, calls); ``--trace`` also writes a Chrome trace
(chrome://tracing, Perfetto) of the profiled iterations.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.profiler import ProfilerActivity, profile, schedule

from benchmarks.common import quiet
from benchmarks.step_cost import METHODS, SIZES, VARIANTS, model_options


class Profiled(pl.Callback):
    """Profiles iterations [warmup, warmup + active) and keeps the profiler."""

    warmup, active = 10, 30
    result = None

    def on_train_start(self, trainer, pl_module) -> None:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if pl_module.device.type == "cuda" else [])
        Profiled.result = profile(activities=activities, schedule=schedule(wait=0, warmup=self.warmup,
                                                                            active=self.active, repeat=1),
                                  with_stack=False, record_shapes=False)
        Profiled.result.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        Profiled.result.step()

    def on_train_end(self, trainer, pl_module) -> None:
        Profiled.result.__exit__(None, None, None)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=list(METHODS), default="jare")
    parser.add_argument("--size", choices=sorted(SIZES), default="ring256")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--variant", choices=[v.lstrip("+") for v in VARIANTS], default=None,
                        help="compile: --model.compile_step true (compiled in the warm-up); joint: "
                             "--model.discriminator_pass joint")
    parser.add_argument("--trace", type=Path, default=None, help="write a Chrome trace here")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    quiet()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    from commands import train

    name, extra = METHODS[args.method]
    extra = [*extra, *VARIANTS.get(f"+{args.variant}", [])]
    with tempfile.TemporaryDirectory() as folder:
        train.main(["--model", name, *model_options(SIZES[args.size]), *extra, "--trainer.callbacks=[]",
                    "--trainer.callbacks+=benchmarks.profile_step.Profiled",
                    "--trainer.max_steps", str(Profiled.warmup + Profiled.active + 1),
                    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                    "--trainer.logger.init_args.save_dir", folder,
                    "--trainer.accelerator", "gpu" if args.device.startswith("cuda") else "cpu"])
    from benchmarks.profile_step import Profiled as registered  # run as a script, this module is __main__

    prof = registered.result
    sort = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))
    if args.trace:
        prof.export_chrome_trace(str(args.trace))
    return prof


if __name__ == "__main__":
    main()
