"""What every evaluation callback shares: the cadence, the history kept in checkpoints, and the
writer (every rank asks for the run folder, rank 0 writes the metrics to the loggers, the records
to a JSONL file and the plots to ``plots/`` and to every logger that takes figures or images)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytorch_lightning as pl
from matplotlib.figure import Figure
from torch import Tensor
from torchvision.utils import save_image

from callbacks.interrupt import interruption, stopping
from figures import figure_image
from runtime.interrupt import Interrupted


class Plot(NamedTuple):
    """A figure or an image grid to write: ``plots/<file>.png`` (None: no file), and ``tag`` for the
    loggers (None: the file only)."""

    file: str | None
    tag: str | None
    content: Figure | Tensor  # a matplotlib figure, or an image grid (C, H, W) in [0, 1]


class Report(NamedTuple):
    """What one evaluation has to write: its records (each with an ``iteration``; they join the
    history and the JSONL file), the metrics to log, the plots, and arrays to keep (``(path, arrays)``:
    ``<run folder>/<path>.npz``)."""

    records: list[dict]
    metrics: dict[str, float] = {}
    plots: list[Plot] = []
    arrays: tuple[str, dict] | None = None


def upload(logger, plot: Plot, step: int) -> None:
    """Send a plot to a logger that takes figures or images: TensorBoard's ``experiment.add_figure``
    and ``add_image``, or a ``log_image(key=..., images=[...])`` (W&B, Neptune); others (CSV) are
    skipped."""
    experiment = getattr(logger, "experiment", None)
    if isinstance(plot.content, Figure) and hasattr(experiment, "add_figure"):
        experiment.add_figure(plot.tag, plot.content, global_step=step)
    elif isinstance(plot.content, Tensor) and hasattr(experiment, "add_image"):
        experiment.add_image(plot.tag, plot.content, global_step=step)
    elif callable(getattr(logger, "log_image", None)):
        image = figure_image(plot.content) if isinstance(plot.content, Figure) else \
            plot.content.permute(1, 2, 0).numpy()
        logger.log_image(key=plot.tag, images=[image], step=step)


class PeriodicEvaluation(pl.Callback):
    """Calls ``measure(trainer, pl_module)`` every ``every_n_steps`` iterations (0: never), once when
    training starts with ``at_start`` (unless resumed), and once when it ends with ``at_end`` unless
    that iteration was just evaluated; writes its ``Report`` (``write``). The records join ``history``, which is
    saved in checkpoints and restored on resume, and the file ``journal`` (a JSONL file in the run
    folder; None: no file)."""

    journal: str | None = None

    def __init__(self, every_n_steps: int, at_start: bool = False, at_end: bool = True):
        self.every_n_steps, self.at_start, self.at_end = every_n_steps, at_start, at_end
        self.history: list[dict] = []

    def measure(self, trainer: pl.Trainer, pl_module) -> Report:
        raise NotImplementedError

    def evaluate(self, trainer: pl.Trainer, pl_module) -> Report | None:
        """Measure, remember and write (every rank measures; rank 0 writes). Nothing when the run is
        ending after an interrupt; an interrupt during the measurement abandons it (no record) and
        ends the run at this iteration (``callbacks.interrupt``), returning None."""
        if stopping(trainer):
            return None
        settle = getattr(pl_module, "settle_verdict", None)
        if settle is not None:
            settle()  # never measure a state that a pending finiteness verdict rejects
        try:
            report = self.measure(trainer, pl_module)
        except Interrupted as err:
            found = interruption(trainer)
            if found is None:
                raise
            found.stop(trainer, str(err))
            return None
        self.history.extend(report.records)
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective under DDP: every rank asks
        if trainer.is_global_zero:
            self.write(trainer, run_dir, report)
        return report

    def write(self, trainer: pl.Trainer, run_dir: Path, report: Report) -> None:
        """Rank 0: the metrics to every logger, the records to the journal, the plots to ``plots/``
        and to the loggers that take them."""
        step = trainer.global_step
        if report.metrics:
            for logger in trainer.loggers:
                logger.log_metrics(report.metrics, step=step)
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.journal and report.records:
            with open(run_dir / self.journal, "a") as f:
                f.writelines(json.dumps(record) + "\n" for record in report.records)
        if report.arrays is not None:
            path, arrays = report.arrays
            (run_dir / path).parent.mkdir(parents=True, exist_ok=True)
            np.savez(run_dir / f"{path}.npz", **arrays)
        if report.plots:
            (run_dir / "plots").mkdir(exist_ok=True)
        for plot in report.plots:
            path = run_dir / "plots" / f"{plot.file}.png"
            if plot.file is not None and isinstance(plot.content, Figure):
                plot.content.savefig(path)
            elif plot.file is not None:
                save_image(plot.content, path)
            if plot.tag is not None:
                for logger in trainer.loggers:
                    upload(logger, plot, step)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.at_start and not self.history:
            self.evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.at_end and (not self.history or self.history[-1]["iteration"] != trainer.global_step):
            self.evaluate(trainer, pl_module)  # not after an interrupt: the run ends without its final evaluations

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
