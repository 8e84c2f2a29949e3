"""A progress bar over the run's budget of iterations, and the progress of the work done besides.

Lightning's bars count batches of an epoch; the mixture runs are one endless epoch counted in
iterations, so they showed ``Epoch 0/-2``, and a resumed run gave no hint of where it stood. This
bar shows ``iteration 1,200/10,000`` from the iteration a run starts or resumes at, the speed, the
time left and the last losses, and, below it, what an evaluation is doing while it runs
(``progress``: FID features, a spectrum's products). On a terminal it is a live rich display; in a
log file (SLURM, CI) it prints a plain line every tenth of the budget, and for work besides
training a line every ``LINE_SECONDS`` while it runs and one when it is done, so that a long
evaluation in a log file does not look like a hang.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

import pytorch_lightning as pl
from pytorch_lightning.callbacks.progress import ProgressBar
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

#: the logged training metrics the bar shows, with their short names
SHOWN = {"loss/generator": "loss_G", "loss/discriminator": "loss_D"}
#: in a log file, a line about work in progress at most this often (seconds)
LINE_SECONDS = 10.0


class ProgressLines:
    """The progress of a piece of work as plain lines, for a log file: one every ``every`` seconds
    while it runs, one when it is done."""

    def __init__(self, console: Console, description: str, total: int, unit: str, every: float = LINE_SECONDS):
        self.console, self.description, self.total, self.unit, self.every = console, description, total, unit, every
        self.start = self.last = time.monotonic()
        self.done = 0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.console.print(f"{self.description}: {self.done:,}/{self.total:,} {self.unit}, "
                               f"{now - self.start:.0f} s so far", highlight=False)

    def close(self) -> None:
        self.console.print(f"{self.description}: {self.done:,} {self.unit} in {time.monotonic() - self.start:.1f} s",
                           highlight=False)


class IterationProgressBar(ProgressBar):
    """Iterations done of ``trainer.max_steps`` (``train.py`` puts it in place of Lightning's bar).

    Args:
        refresh_every: redraw every this many iterations (a redraw costs more than a small
            network's iteration).
        lines: without a terminal, print this many progress lines over the run.
    """

    def __init__(self, refresh_every: int = 10, lines: int = 10):
        super().__init__()
        self.refresh_every, self.lines = max(1, refresh_every), max(1, lines)
        self._enabled = True
        self._progress: Progress | None = None
        self._task = None
        self._console = Console()
        self._start: tuple[float, int] = (0.0, 0)
        self._next_line = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _active(self, trainer: pl.Trainer) -> bool:
        return self._enabled and trainer.is_global_zero

    def _metrics(self, trainer: pl.Trainer) -> str:
        values = trainer.callback_metrics
        return "  ".join(f"{short} {float(values[key]):.4g}" for key, short in SHOWN.items() if key in values)

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        if not self._active(trainer):
            return
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        self._start = (time.monotonic(), trainer.global_step)
        if self._console.is_terminal:
            self._progress = new_progress(self._console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task("training", total=total, completed=trainer.global_step,
                                                 budget=f"{total:,}" if total else "?", unit="iterations", speed="",
                                                 metrics="")
        else:
            budget = f"{total:,}" if total else "no limit"
            where = f", resuming at iteration {trainer.global_step:,}" if trainer.global_step else ""
            self._console.print(f"training: {budget} iterations{where}", highlight=False)
            self._next_line = self._line_step(trainer.global_step, total)

    def _line_step(self, step: int, total: int | None) -> int:
        every = max(1, (total or 10_000) // self.lines)
        return (step // every + 1) * every

    def _speed(self, step: int) -> float:
        start_time, start_step = self._start
        elapsed = time.monotonic() - start_time
        return (step - start_step) / elapsed if elapsed > 0 else 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self._active(trainer):
            return
        step, total = trainer.global_step, (trainer.max_steps if trainer.max_steps > 0 else None)
        if self._progress is not None:
            if step % self.refresh_every == 0 or step == total:
                self._progress.update(self._task, completed=step, speed=f"{self._speed(step):.1f} it/s",
                                      metrics=self._metrics(trainer), description="training")
        elif step >= self._next_line or step == total:
            speed = self._speed(step)
            left = f", {(total - step) / speed:,.0f} s left" if total and speed > 0 else ""
            share = f" ({100 * step / total:.0f}%)" if total else ""
            self._console.print(f"iteration {step:,}/{f'{total:,}' if total else '?'}{share}, {speed:.1f} it/s{left}  "
                                f"{self._metrics(trainer)}", highlight=False)
            self._next_line = self._line_step(step, total)

    @contextlib.contextmanager
    def work(self, trainer: pl.Trainer, description: str, total: int, unit: str) -> Iterator[Callable[[int], None]]:
        """A line below the training bar for work done besides training (see ``progress``)."""
        if not self._active(trainer):
            yield lambda n: None
            return
        if self._progress is None and self._console.is_terminal:  # before training starts
            with new_progress(self._console, transient=True) as display:
                task = display.add_task(description, total=total, budget=f"{total:,}", unit=unit, speed="", metrics="")
                yield lambda n: display.advance(task, n)
            return
        if self._progress is None:  # a log file: a line now and then, and one when it is done
            lines = ProgressLines(self._console, description, total, unit)
            yield lines.advance
            lines.close()
            return
        task = self._progress.add_task(description, total=total, budget=f"{total:,}", unit=unit, speed="", metrics="")
        try:
            yield lambda n: self._progress.advance(task, n)
        finally:
            self._progress.remove_task(task)

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        self._stop()

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        self._stop()


def new_progress(console: Console, transient: bool) -> Progress:
    """The rich display the bar and ``progress`` share: description, bar, done/total, speed, time."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                    TextColumn("{task.completed:,.0f}/{task.fields[budget]} {task.fields[unit]}"),
                    TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[metrics]}"), console=console, transient=transient)


@contextlib.contextmanager
def progress(trainer: pl.Trainer | None, description: str, total: int, unit: str = "",
             enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Show the progress of a piece of work (an evaluation): ``with progress(trainer, "FID", n,
    "images") as advance: ... advance(k)``. During training it is a line below the run's
    ``IterationProgressBar`` (rank 0); outside training (``trainer`` None: an offline command) a
    rich bar of its own on a terminal; nothing when not ``enabled`` or without either."""
    bar = trainer.progress_bar_callback if trainer is not None else None
    if not enabled:
        yield lambda n: None
    elif isinstance(bar, IterationProgressBar):
        with bar.work(trainer, description, total, unit) as advance:
            yield advance
    elif trainer is None and Console().is_terminal:
        with new_progress(Console(), transient=True) as display:
            task = display.add_task(description, total=total, budget=f"{total:,}", unit=unit, speed="", metrics="")
            yield lambda n: display.advance(task, n)
    elif trainer is None:  # an offline command writing to a log file
        lines = ProgressLines(Console(), description, total, unit)
        yield lines.advance
        lines.close()
    else:
        yield lambda n: None
