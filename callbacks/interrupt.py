"""Ctrl-C, SIGTERM and SLURM's requeue signal end a run at the next iteration boundary, with a
checkpoint that ``--ckpt_path last`` (or the requeued job) continues exactly."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from runtime import interrupt
from runtime.distributed import process_maximum


class Interruption(pl.Callback):
    """While training, SIGINT (Ctrl-C) and SIGTERM are noted (``runtime.interrupt``) instead of
    stopping the process wherever it is; at the next iteration boundary every process agrees
    (the largest reason over processes, one all-reduce of the host) and the run saves
    ``last.ckpt`` in the folder of each ``ModelCheckpoint`` (atomically, like every checkpoint),
    skips the evaluations still due, and ends. An evaluation in progress stops within a product
    or a batch (``runtime.interrupt.Interrupted``), and the run saves and ends at that boundary. A
    second Ctrl-C stops at once, without a checkpoint.

    Under SLURM with automatic requeueing (Lightning's ``SLURMEnvironment``, the sbatch template's
    ``--signal=SIGUSR1@90 --requeue``), the requeue signal saves Lightning's ``hpc_ckpt_<N>.ckpt``
    at the boundary instead, requeues the job (``scontrol requeue``, rank 0) and ends: the
    requeued job resumes from it. Lightning's own handler would save from wherever each process
    happens to be, possibly pairing its barrier with another process's all-reduce.

    ``train.py`` adds this callback first, so that the decision comes before the iteration's
    evaluations. ``stopped`` is (reason, iteration, checkpoint paths) after an interrupted run.
    """

    def __init__(self):
        self._saved: dict[int, object] = {}
        self._requeue: int | None = None
        self.stopped: tuple[str, int, list[str]] | None = None

    # -- noting the signal --------------------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        interrupt.clear()
        self.stopped = None
        environment = trainer._accelerator_connector.cluster_environment
        self._requeue = environment.requeue_signal if isinstance(environment, SLURMEnvironment) and \
            environment.auto_requeue else None
        # Lightning broadcasts its SIGTERM flag at every iteration of a multi-process run (a
        # collective and a host synchronisation each time); this callback takes SIGTERM instead.
        epoch_loop = trainer.fit_loop.epoch_loop
        if hasattr(epoch_loop, "_broadcast_sigterm_tensor"):
            epoch_loop._broadcast_sigterm_tensor = lambda: None
        process_maximum(0)  # creates the host's process group now, where every process is (runtime.distributed)
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only
        for signum in (signal.SIGINT, signal.SIGTERM, *([self._requeue] if self._requeue is not None else [])):
            self._saved[signum] = signal.signal(signum, self._note)

    def _note(self, signum: int, frame) -> None:
        reason = "requeue" if signum == self._requeue else signal.Signals(signum).name
        if interrupt.requested() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if interrupt.requested() is None and rank_zero_only.rank == 0:
            what = "requeueing the job" if reason == "requeue" else "saving a checkpoint"
            again = " (Ctrl-C again stops at once, without one)" if signum == signal.SIGINT else ""
            print(f"\n{reason}: {what} at the end of this iteration{again}", flush=True)
        interrupt.request(reason)

    def _restore(self) -> None:
        """The handlers of before training back, and the noted interrupt forgotten (the process may
        go on with other work: a test, an offline spectrum; ``stopped`` keeps what happened)."""
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        self._saved = {}
        interrupt.clear()

    # -- acting on it ----------------------------------------------------------------------------------

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        reason = interrupt.agreed()
        if reason is not None:
            self.stop(trainer, reason)

    def stop(self, trainer: pl.Trainer, reason: str) -> None:
        """Save and end the run (every process calls it at the same boundary)."""
        if self.stopped is not None:
            return
        if reason == "requeue":
            paths = [trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)]
            trainer.save_checkpoint(paths[0])
            if trainer.is_global_zero:
                requeue()
        else:
            paths = []
            for callback in trainer.checkpoint_callbacks:
                if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                    path = str(Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}")
                    if path not in paths:
                        trainer.save_checkpoint(path)
                        paths.append(path)
                    callback.last_model_path = path
        self.stopped = (reason, trainer.global_step, paths)
        trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore()

    def summary_row(self) -> tuple[str, str] | None:
        """The run's closing summary's line about the interrupt (None: not interrupted)."""
        if self.stopped is None:
            return None
        reason, step, paths = self.stopped
        if reason == "requeue":
            return "stopped", f"requeued at iteration {step:,}: {paths[0]}; the requeued job resumes from it"
        saved = ", ".join(paths) if paths else "no checkpoint (checkpointing is off)"
        resume = "; resume with --ckpt_path last" if paths else ""
        return "stopped", f"by {reason} at iteration {step:,}: {saved}{resume}"


def interruption(trainer: pl.Trainer) -> Interruption | None:
    """The run's ``Interruption`` callback, if it has one."""
    return next((c for c in trainer.callbacks if isinstance(c, Interruption)), None)


def stopping(trainer: pl.Trainer) -> bool:
    """Whether the run is ending because it was interrupted (evaluations still due are skipped)."""
    found = interruption(trainer)
    return found is not None and found.stopped is not None


def requeue() -> None:
    """``scontrol requeue`` of this SLURM job (or job array task)."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ.get("SLURM_JOB_ID", "")
    if not re.fullmatch(r"[0-9_]+", job):
        rank_zero_warn(f"requeue: no SLURM job id in the environment ({job!r}); the job was not requeued")
        return
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    except FileNotFoundError:
        rank_zero_warn("requeue: scontrol was not found; the job was not requeued")
        return
    if done.returncode == 0:
        rank_zero_info(f"requeued SLURM job {job}")
    else:
        rank_zero_warn(f"requeue of SLURM job {job} failed ({done.returncode}): {done.stderr.strip()}")
