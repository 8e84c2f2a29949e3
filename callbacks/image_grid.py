"""Grids of generated images from a fixed z: the same codes at every evaluation, so the grids of a
run show how each sample evolves."""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image

from callbacks.periodic import PeriodicEvaluation


def image_grid(images: Tensor, nrow: int = 8) -> Tensor:
    """A (C, H', W') grid in [0, 1] of images in [-1, 1]."""
    return make_grid(images.detach().float().cpu().clamp(-1, 1), nrow=nrow, normalize=True, value_range=(-1, 1),
                     pad_value=1.0)


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
        dataset = getattr(trainer.datamodule, "eval_dataset", None)
        if self.real and dataset is not None and trainer.is_global_zero:
            data = dataset()
            items = [data[i] for i in range(min(self.num_samples, len(data)))]
            images = torch.stack([x[0] if isinstance(x, (tuple, list)) else x for x in items])
            self._write(trainer, run_dir, image_grid(images, self.nrow), "real", "samples/real", trainer.global_step)

    def evaluate(self, trainer: pl.Trainer, pl_module) -> Tensor:
        it = trainer.global_step
        self.history.append({"iteration": it})
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        grid = image_grid(pl_module.sample(self.num_samples, torch.Generator().manual_seed(self.seed)), self.nrow)
        if trainer.is_global_zero:
            self._write(trainer, run_dir, grid, f"samples_{it:06d}", "samples/generated", it)
        return grid

    @staticmethod
    def _write(trainer: pl.Trainer, run_dir: Path, grid: Tensor, name: str, tag: str, step: int) -> None:
        (run_dir / "plots").mkdir(parents=True, exist_ok=True)
        save_image(grid, run_dir / "plots" / f"{name}.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(tag, grid, global_step=step)
