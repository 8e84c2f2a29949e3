"""How many compute threads a training process takes.

Each PyTorch process starts one OpenMP thread per core, and threads of different processes on
the same cores spin against each other while they wait: two default jobs side by side on a busy
machine take many times longer each than one alone (docs/benchmarks.md, "Several runs on one
machine"). ``choose_threads`` gives each process the cores it may use (its CPU affinity: what a
scheduler such as SLURM gave it) shared among the training processes of the machine, minus the
cores other processes keep busy.
"""
from __future__ import annotations

import os
import time


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all cores since boot, from /proc/stat (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user..steal


def busy_cores(interval: float = 0.25) -> int:
    """Cores the machine's other processes keep busy now: the share of CPU time not idle over
    ``interval`` seconds, times the cores (0 where /proc/stat is missing). A sample of the present,
    unlike the load average, which still counts a job that ended a minute ago."""
    before = _cpu_times()
    if before is None:
        return 0
    time.sleep(interval)
    after = _cpu_times()
    idle, total = after[0] - before[0], after[1] - before[1]
    busy = 1 - idle / total if total > 0 else 0.0
    return int(busy * (os.cpu_count() or 1) + 0.5)


def choose_threads(requested: int | None, local_processes: int = 1) -> tuple[int, str | None]:
    """(threads per process, a line to print or None). ``requested`` (``--threads``) wins, then
    ``OMP_NUM_THREADS``; otherwise the usable cores shared by the ``local_processes`` of this
    run, less the cores other processes keep busy, at least one."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be a positive integer, got {requested}")
        return requested, None
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"]), None
    cores, busy = usable_cores(), busy_cores()
    threads = max(1, (cores - busy) // max(1, local_processes))
    fair = max(1, cores // max(1, local_processes))
    if threads < fair:
        return threads, (f"threads: {threads} per process, not {fair}: other processes keep {busy} of the {cores} "
                         f"cores busy, and threads competing for cores slow every job down many "
                         f"times over; --threads N sets the number")
    return threads, None
