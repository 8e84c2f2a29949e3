"""The cadence every evaluation callback shares."""
from __future__ import annotations

import pytorch_lightning as pl


class PeriodicEvaluation(pl.Callback):
    """Calls ``evaluate(trainer, pl_module)`` every ``every_n_steps`` iterations (0: never) and once
    when training ends, unless that iteration was just evaluated. ``evaluate`` appends a record with
    an ``iteration`` to ``history``, which is saved in checkpoints and restored on resume."""

    def __init__(self, every_n_steps: int):
        self.every_n_steps = every_n_steps
        self.history: list[dict] = []

    def evaluate(self, trainer: pl.Trainer, pl_module):
        raise NotImplementedError

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.history or self.history[-1]["iteration"] != trainer.global_step:
            self.evaluate(trainer, pl_module)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
