"""How many compute threads a training process takes.

Each PyTorch process starts one OpenMP thread per core, and threads of different processes on
the same cores spin against each other while they wait: two default jobs side by side on a busy
machine take many times longer each than one alone (docs/benchmarks.md, "Several runs on one
machine"). ``choose_threads`` gives each process the cores it may use (its CPU affinity, capped by
a cgroup CPU quota and by a SLURM task's ``--cpus-per-task``) shared among the training processes
that share them, minus the cores other processes keep busy.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cpus() -> set[int] | None:
    """The CPUs this process may run on (its affinity mask); None where the platform does not say."""
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def affinity_cores() -> int:
    """The number of cores in this process's affinity mask, else the machine's count."""
    cpus = _cpus()
    return len(cpus) if cpus is not None else (os.cpu_count() or 1)


def _read(path: Path) -> str:
    """A file's text, "" where it cannot be read: every caller takes a missing or odd file to mean "no limit"."""
    try:
        return path.read_text()
    except (OSError, ValueError):
        return ""


def _cgroup_paths(listing: str) -> tuple[str, str]:
    """(cgroup v2 path, cgroup v1 ``cpu`` controller path) in a /proc/<pid>/cgroup listing, "" where absent."""
    v2 = v1 = ""
    for line in listing.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, path = fields
        if hierarchy == "0" and not controllers:
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _with_ancestors(root: Path, path: str) -> list[Path]:
    """``root/path`` and each folder above it up to ``root``. A quota on a parent cgroup (a systemd slice, a
    pod) limits its children too, and a container that sees its own cgroup mounted as the root, under a
    path it cannot see, finds its quota at the root."""
    parts = [part for part in path.split("/") if part]
    return [root.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _ceil_ratio(quota: str, period: str) -> int | None:
    """The CPUs a quota of ``quota`` microseconds per ``period`` allows, rounded up (1.5 CPUs of time keep
    2 threads busy); None for no limit: a non-positive quota (cgroup v1's -1) or anything not a number."""
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return -(-q // p) if q > 0 and p > 0 else None


def _v2_limit(cpu_max: str) -> int | None:
    """The CPUs a cgroup v2 ``cpu.max`` ("QUOTA PERIOD", QUOTA "max" for none) allows; None for no limit."""
    fields = cpu_max.split()
    return _ceil_ratio(*fields) if len(fields) == 2 else None


def cpu_quota() -> int | None:
    """The CPUs this process's cgroup CPU quota allows, None where there is none. A container limited to 2
    CPUs ("docker --cpus 2", a Kubernetes CPU limit) still has the whole machine in its affinity mask, and
    64 threads sharing 2 CPUs' time stall each other. Reads cgroup v2 ``cpu.max`` and v1
    ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` of the process's cgroup and those above it; the smallest
    limit holds. Never fails: an unreadable or odd file means no quota."""
    v2, v1 = _cgroup_paths(_read(PROC / "self" / "cgroup"))
    limits = [_v2_limit(_read(folder / "cpu.max")) for folder in _with_ancestors(CGROUP_ROOT, v2)]
    for mount in ("cpu", "cpu,cpuacct"):
        limits += [_ceil_ratio(_read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us"))
                   for folder in _with_ancestors(CGROUP_ROOT / mount, v1)]
    limits = [limit for limit in limits if limit is not None]
    return min(limits) if limits else None


def usable_cores() -> int:
    """The cores this process may use: its affinity mask, capped by its cgroup CPU quota; at least one."""
    quota = cpu_quota()
    return max(1, min(affinity_cores(), quota) if quota is not None else affinity_cores())


def slurm_task_cpus() -> int | None:
    """The CPUs SLURM gave this task (``--cpus-per-task``) when srun started this process as a task of a job
    step; None otherwise. Each such task is one process with CPUs of its own, so they are not shared again
    among the node's processes; and where the cluster does not bind tasks to cores the affinity mask is the
    whole node while the task's share is still SLURM_CPUS_PER_TASK."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    in_step = "SLURM_STEP_ID" in os.environ or "SLURM_PROCID" in os.environ
    return int(cpus) if in_step and cpus.isdigit() and int(cpus) > 0 else None


def slurm_tasks_per_node() -> int | None:
    """The tasks SLURM runs on each node (``SLURM_NTASKS_PER_NODE``, such as "8" or "8(x2)", else
    ``SLURM_NTASKS`` over ``SLURM_NNODES``); None outside SLURM."""
    per_node = os.environ.get("SLURM_NTASKS_PER_NODE", "").split("(")[0].split(",")[0]
    if per_node.isdigit():
        return int(per_node)
    tasks, nodes = os.environ.get("SLURM_NTASKS", ""), os.environ.get("SLURM_NNODES", "1")
    return int(tasks) // max(1, int(nodes)) if tasks.isdigit() and nodes.isdigit() else None


def torchrun_local_processes() -> int | None:
    """The processes torchrun started on this machine (LOCAL_WORLD_SIZE) when it started this one; None
    otherwise. They share this process's cores, whatever ``--trainer.devices`` says."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    count = os.environ.get("LOCAL_WORLD_SIZE", "")
    return int(count) if count.isdigit() and int(count) > 0 else None


def _omp_threads() -> int | None:
    """OMP_NUM_THREADS where the user chose it. torchrun sets it to 1 in each worker when the user did not
    and it starts more than one per machine, a default that leaves all but one core per process idle: that
    1 is not a choice (``--threads 1`` is)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if not value.isdigit() or int(value) < 1:
        return None
    if value == "1" and (torchrun_local_processes() or 1) > 1:
        return None
    return int(value)


def busy_cores(interval: float = 0.25) -> int:
    """Cores of this process's affinity mask that other processes keep busy now: the share of each CPU's
    time not idle over ``interval`` seconds, summed over the mask's CPUs (all CPUs where the platform has no
    mask; 0 where /proc/stat is missing). Busy cores outside the mask take nothing from this process. A
    sample of the present, unlike the load average, which still counts a job that ended a minute ago."""
    before = _cpu_times()
    if not before:
        return 0
    time.sleep(interval)
    after = _cpu_times() or {}
    cpus = _cpus()
    busy = 0.0
    for cpu in (before.keys() & after.keys()) & (cpus if cpus is not None else before.keys()):
        idle, total = after[cpu][0] - before[cpu][0], after[cpu][1] - before[cpu][1]
        if total > 0:
            busy += 1 - idle / total
    return int(busy + 0.5)


def _cpu_times() -> dict[int, tuple[int, int]] | None:
    """(idle, total) jiffies of each CPU since boot, from the ``cpuN`` lines of /proc/stat (Linux); None
    where it cannot be read."""
    text = _read(PROC / "stat")
    if not text:
        return None
    times = {}
    for line in text.splitlines():
        name, _, values = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue  # the machine-wide "cpu" line and the other counters
        try:
            fields = [int(v) for v in values.split()[:8]]  # user..steal; guest time is already in user
        except ValueError:
            continue
        if len(fields) >= 5:
            times[int(name[3:])] = (fields[3] + fields[4], sum(fields))  # idle + iowait
    return times


def choose_threads(requested: int | None, local_processes: int = 1) -> tuple[int, str | None]:
    """(threads per process, a line to print or None). ``requested`` (``--threads``) wins, then
    ``OMP_NUM_THREADS`` (unless it is torchrun's default); otherwise the usable cores (the affinity mask,
    capped by a cgroup CPU quota and a SLURM task's CPUs) shared by the processes that share them (the
    ``local_processes`` of this run; torchrun's LOCAL_WORLD_SIZE; one for a SLURM task), less the cores
    other processes keep busy in the mask, at least one. The line says why the number is below the fair
    share or the mask."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be a positive integer, got {requested}")
        return requested, None
    omp = _omp_threads()
    if omp is not None:
        return omp, None
    mask, quota, slurm = affinity_cores(), cpu_quota(), slurm_task_cpus()
    cores = max(1, min(mask, quota or mask, slurm or mask))
    # A SLURM task started by srun for each process has its CPUs to itself; a single task whose
    # processes Lightning starts (a batch script running train.py with --trainer.devices 8) shares them.
    slurm_runs_each = slurm is not None and (slurm_tasks_per_node() or 1) >= local_processes
    sharing = torchrun_local_processes() or (1 if slurm_runs_each else max(1, local_processes))
    busy = busy_cores()
    # Busy cores of the mask take from this process only what the mask's idle rest cannot give it.
    threads = max(1, min(cores, mask - busy) // sharing)
    fair = max(1, cores // sharing)
    reasons = []
    if quota is not None and quota < mask:
        reasons.append(f"the cgroup CPU quota allows {quota} of the {mask} cores")
    if slurm is not None and slurm < mask:
        reasons.append(f"the SLURM task has {slurm} of the {mask} cores (--cpus-per-task)")
    if threads < fair:
        reasons.append(f"other processes keep {busy} of the {mask} cores busy, and threads competing for cores "
                       f"slow every job down many times over")
    if not reasons:
        return threads, None
    head = f"threads: {threads} per process" + (f", not {fair}" if threads < fair else "")
    return threads, f"{head}: {'; '.join(reasons)}; --threads N sets the number"
