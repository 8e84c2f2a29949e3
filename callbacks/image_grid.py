"""Grids of generated images from a fixed z: the same codes at every evaluation, so the grids of a
run show how each sample evolves."""
from __future__ import annotations

from pathlib import Path

import torch

from callbacks.periodic import PeriodicEvaluation, Plot, Report
from datamodules.contracts import ImageData
from figures import image_grid


class ImageGrid(PeriodicEvaluation):
    """Every ``every_n_steps`` iterations (and when training ends) a grid of ``num_samples``
    images generated from a fixed z (the EMA generator when enabled), to the loggers (TensorBoard
    ``samples/generated``) and to ``plots/samples_<iteration>.png`` in the run folder; at the
    start, a grid of real images (``plots/real.png``) for comparison.
    """

    def __init__(self, every_n_steps: int = 1000, num_samples: int = 64, nrow: int = 8, seed: int = 0,
                 real: bool = True):
        super().__init__(every_n_steps)
        self.num_samples, self.nrow, self.seed, self.real = num_samples, nrow, seed, real

    def on_train_start(self, trainer, pl_module) -> None:
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective under DDP: every rank asks
        if self.real and isinstance(trainer.datamodule, ImageData) and trainer.is_global_zero:
            data = trainer.datamodule.eval_dataset()
            images = torch.stack([data[i][0] for i in range(min(self.num_samples, len(data)))])
            self.write(trainer, run_dir, Report([], plots=[Plot("real", "samples/real", image_grid(images, self.nrow))]))

    def measure(self, trainer, pl_module) -> Report:
        it = trainer.global_step
        grid = image_grid(pl_module.sample(self.num_samples, torch.Generator().manual_seed(self.seed)), self.nrow)
        return Report([{"iteration": it}], plots=[Plot(f"samples_{it:06d}", "samples/generated", grid)])
