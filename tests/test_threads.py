"""How many threads a training process takes (runtime/threads.py)."""
import pytest

from commands import train
from runtime import threads

CLUSTER_VARIABLES = ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK", "SLURM_PROCID", "SLURM_STEP_ID",
                     "TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE")


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A machine whose affinity mask holds ``cpus`` cores (8) of which other processes keep ``busy`` busy, with
    no CPU quota, outside SLURM and torchrun (whatever the machine running the tests is)."""
    for name in CLUSTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    state = {"busy": 0, "cpus": 8}
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(state["cpus"])), raising=False)
    monkeypatch.setattr(threads, "PROC", tmp_path / "proc")
    monkeypatch.setattr(threads, "CGROUP_ROOT", tmp_path / "cgroup")
    monkeypatch.setattr(threads, "busy_cores", lambda interval=0.25: state["busy"])
    return state


def test_an_idle_machine_shares_its_cores_among_the_runs_processes(machine):
    assert threads.choose_threads(None, 1) == (8, None)
    assert threads.choose_threads(None, 2) == (4, None)
    assert threads.choose_threads(None, 3) == (2, None)


def test_busy_cores_are_left_to_their_processes_and_the_user_told(machine):
    machine["busy"] = 6
    count, note = threads.choose_threads(None, 1)
    assert count == 2 and "not 8" in note and "--threads" in note
    machine["busy"] = 8
    assert threads.choose_threads(None, 2)[0] == 1  # at least one


def test_the_users_number_wins(machine, monkeypatch):
    machine["busy"] = 8
    assert threads.choose_threads(3, 1) == (3, None)
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads.choose_threads(None, 1) == (5, None)
    assert threads.choose_threads(2, 1) == (2, None)
    with pytest.raises(ValueError, match="positive"):
        threads.choose_threads(0, 1)


def test_busy_cores_from_the_cpu_times(monkeypatch):
    """Idle and total jiffies before and after: a quarter of the time busy on 8 cores is 2 cores."""
    samples = iter([{cpu: (1000, 4000) for cpu in range(8)}, {cpu: (1300, 4400) for cpu in range(8)}])  # 300/400 idle
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert threads.busy_cores(interval=0) == 2
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)  # no /proc/stat
    assert threads.busy_cores(interval=0) == 0


def test_train_py_takes_the_threads_it_is_given(tmp_path, monkeypatch):
    taken = []
    monkeypatch.setattr(train.torch, "set_num_threads", taken.append)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # restored after the test: train.py sets it for its children
    train.main(["--model", "vanilla", "--threads", "1", "--trainer.max_steps", "1", "--trainer.callbacks=[]",
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                "--trainer.logger.init_args.save_dir", str(tmp_path)])
    assert taken == [1]
    with pytest.raises(SystemExit, match="--threads must be a positive integer, got 0"):
        train.main(["--model", "vanilla", "--threads", "0", "--trainer.logger.init_args.save_dir", str(tmp_path)])


@pytest.mark.parametrize("devices,local", [(2, 2), ([0, 1, 2], 3), ("auto", 1), (1, 1)])
def test_the_runs_local_processes_come_from_the_trainers_devices(devices, local, machine, monkeypatch):
    taken = []
    monkeypatch.setattr(train.torch, "set_num_threads", taken.append)
    train.set_threads(None, {"devices": devices})
    assert taken == [8 // local]


def test_a_slurm_task_takes_its_own_cpus_unshared(machine, monkeypatch):
    """srun --cpus-per-task=8 with 8 tasks (GPUs) per node: each task is one process with 8 CPUs of its own,
    bound to them or (a cluster that does not bind tasks) with the whole node in its mask."""
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    assert threads.choose_threads(None, 8) == (1, None)  # not started as a task (no rank, no step): shared
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "8(x2)")
    assert threads.choose_threads(None, 8) == (8, None)
    machine["cpus"] = 64
    for local in (8, 1):
        count, note = threads.choose_threads(None, local)
        assert count == 8 and "SLURM" in note and "8 of the 64" in note and "--threads" in note
    machine["busy"] = 60  # the node's idle rest cannot give the task its 8
    assert threads.choose_threads(None, 8)[0] == 4
    assert threads.choose_threads(5, 8) == (5, None)


def test_torchruns_default_of_one_thread_is_not_the_users_choice(machine, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun's own, with a warning, for nproc-per-node > 1
    assert threads.choose_threads(None, 1) == (4, None)  # LOCAL_WORLD_SIZE, not --trainer.devices, shares
    assert threads.choose_threads(2, 1) == (2, None)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads(None, 1) == (3, None)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun leaves it alone for one process: the user's
    assert threads.choose_threads(None, 1) == (1, None)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.choose_threads(None, 2) == (1, None)  # not torchrun: the user's


def stat_lines(busy: set[int], jiffies: int, cpus: int = 8) -> str:
    """A /proc/stat after ``jiffies`` on each of ``cpus`` CPUs, the ``busy`` ones all in user time, the others
    idle; the aggregate line says the whole machine is busy, which the count must not read."""
    def line(name, user, idle):
        return f"{name} {user} 0 0 {idle} 0 0 0 0 0 0"
    per_cpu = [line(f"cpu{n}", jiffies if n in busy else 0, 0 if n in busy else jiffies) for n in range(cpus)]
    return "\n".join([line("cpu", cpus * jiffies, 0), *per_cpu, "intr 12345 6 7", "ctxt 999", "btime 170000"]) + "\n"


def test_busy_cores_are_counted_within_the_affinity_mask(tmp_path, monkeypatch):
    """CPUs 0-3 in the mask: others' busy CPUs outside it take nothing from this process."""
    stat = tmp_path / "stat"
    monkeypatch.setattr(threads, "PROC", tmp_path)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    for busy, expected in [({4, 5, 6, 7}, 0), ({0, 1, 2, 3}, 4), ({1, 6}, 1)]:
        stat.write_text(stat_lines(busy, 1000))
        monkeypatch.setattr(threads.time, "sleep", lambda seconds, busy=busy: stat.write_text(stat_lines(busy, 1100)))
        assert threads.busy_cores(interval=0.25) == expected, busy


def test_busy_cores_without_a_mask_count_every_cpu(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text(stat_lines({0, 5, 7}, 1000))
    monkeypatch.setattr(threads, "PROC", tmp_path)
    monkeypatch.delattr(threads.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: stat.write_text(stat_lines({0, 5, 7}, 1100)))
    assert threads.busy_cores() == 3
    stat.write_text("garbage")
    assert threads.busy_cores(interval=0) == 0


@pytest.fixture
def cgroups(machine, tmp_path):
    """A 64-core mask; ``write(path, text)`` puts a file under the fake /proc or /sys/fs/cgroup."""
    machine["cpus"] = 64

    def write(path: str, text: str):
        file = tmp_path / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    return write


def test_a_cgroup_v2_quota_caps_the_usable_cores(cgroups):
    assert threads.usable_cores() == 64  # no cgroup files: no quota
    cgroups("proc/self/cgroup", "0::/system.slice/job.scope\n")
    for cpu_max, usable in [("200000 100000", 2), ("max 100000", 64), ("150000 100000", 2), ("garbage", 64),
                            ("0 100000", 64), ("100000", 64), ("", 64), ("\xff\xfe", 64)]:
        cgroups("cgroup/system.slice/job.scope/cpu.max", cpu_max)
        assert threads.usable_cores() == usable, cpu_max
    cgroups("proc/self/cgroup", "\x00\x01 not a listing:::\n")
    assert threads.usable_cores() == 64


def test_a_cgroup_v2_quota_at_the_root_or_above_the_process_holds(cgroups):
    cgroups("proc/self/cgroup", "0::/\n")  # a container with its own cgroup namespace
    cgroups("cgroup/cpu.max", "300000 100000\n")
    assert threads.usable_cores() == 3
    cgroups("proc/self/cgroup", "0::/docker/0123abcd\n")  # the host's path, which the container cannot see
    assert threads.usable_cores() == 3
    cgroups("proc/self/cgroup", "0::/kubepods.slice/pod.slice/container.scope\n")
    cgroups("cgroup/kubepods.slice/pod.slice/container.scope/cpu.max", "max 100000\n")
    cgroups("cgroup/kubepods.slice/pod.slice/cpu.max", "250000 100000\n")  # the pod's limit
    assert threads.usable_cores() == 3


@pytest.mark.parametrize("mount", ["cpu", "cpu,cpuacct"])
def test_a_cgroup_v1_quota_caps_the_usable_cores(mount, cgroups):
    cgroups("proc/self/cgroup", "12:memory:/docker/0123abcd\n3:cpu,cpuacct:/docker/0123abcd\n")
    cgroups(f"cgroup/{mount}/cpu.cfs_period_us", "100000\n")
    for quota, usable in [("200000", 2), ("-1", 64), ("50000", 1), ("lots", 64)]:
        cgroups(f"cgroup/{mount}/cpu.cfs_quota_us", quota + "\n")
        assert threads.usable_cores() == usable, quota


def test_a_cpu_quota_caps_the_threads_and_the_user_is_told(cgroups):
    cgroups("proc/self/cgroup", "0::/\n")
    cgroups("cgroup/cpu.max", "200000 100000\n")
    count, note = threads.choose_threads(None, 1)
    assert count == 2 and "quota allows 2 of the 64 cores" in note and "--threads" in note
    assert threads.choose_threads(None, 2)[0] == 1


def test_one_slurm_task_whose_processes_lightning_starts_shares_its_cpus(machine, monkeypatch):
    """A batch script that runs train.py --trainer.devices 8 itself (one task of 64 CPUs): Lightning starts
    the 8 processes, which share the task's CPUs (the batch step has SLURM_PROCID=0 too)."""
    machine["cpus"] = 64
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "64")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_NNODES", "1")
    assert threads.choose_threads(None, 8)[0] == 8
    monkeypatch.setenv("SLURM_NTASKS", "8")  # srun started a task per GPU: each has its own CPUs
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    assert threads.choose_threads(None, 8)[0] == 8
