"""How many threads a training process takes (gans/threads.py)."""
import pytest

from commands import train
from gans import threads


@pytest.fixture
def machine(monkeypatch):
    """A machine of 8 usable cores whose other processes keep ``busy`` of them busy."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    state = {"busy": 0}
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
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
    samples = iter([(1000, 4000), (1300, 4400)])  # 300 of 400 jiffies idle
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 8)
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
