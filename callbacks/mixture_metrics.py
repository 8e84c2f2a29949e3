"""Mode coverage and sample quality on mixture-of-Gaussians data during training, with scatter
plots (the metric: ``metrics.mixture``)."""
from __future__ import annotations

import torch

from callbacks.periodic import PeriodicEvaluation, Plot, Report
from datamodules.contracts import MixtureData
from figures import curves_figure, scatter_figure
from metrics.mixture import mixture_metrics


class MixtureMetrics(PeriodicEvaluation):
    """Every ``every_n_steps`` iterations (and at the end of training), draw ``num_samples`` from the
    generator with a fixed z, log the coverage metrics under ``mixture/``, and log a scatter plot of
    the samples over the true modes (TensorBoard, and ``plots/mixture_<iteration>.png`` in the run
    folder). The history is appended to ``mixture_metrics.jsonl`` in the run folder and drawn in
    ``plots/mixture_curves.png``.

    Needs mixture data (``datamodules.contracts.MixtureData``: ``datamodules.MixtureOfGaussians``).
    """

    journal = "mixture_metrics.jsonl"

    def __init__(self, every_n_steps: int = 500, num_samples: int = 2500, threshold: float = 3.0,
                 plot: bool = True, seed: int = 1234):
        super().__init__(every_n_steps)
        self.num_samples, self.threshold, self.plot, self.seed = num_samples, threshold, plot, seed
        self._num_modes = 0

    def summary(self) -> str | None:
        """The last evaluation in one line (train.py prints it when training ends)."""
        if not self.history:
            return None
        last = self.history[-1]
        return (f"modes covered {last['modes_covered']}/{self._num_modes}, high quality {last['high_quality']:.1f}%, "
                f"KL to uniform {last['kl_uniform']:.3f}")

    def measure(self, trainer, pl_module) -> Report:
        data = trainer.datamodule
        if not isinstance(data, MixtureData):
            raise TypeError(f"MixtureMetrics needs mixture data (a datamodule with modes, std and eval_samples, such "
                            f"as datamodules.MixtureOfGaussians), got {type(data).__name__}")
        samples = pl_module.sample(self.num_samples, torch.Generator().manual_seed(self.seed)).float()
        values = mixture_metrics(samples, data.modes, data.std, self.threshold)
        self._num_modes, it = len(data.modes), trainer.global_step
        record = {"iteration": it, **values}
        plots = []
        if self.plot and trainer.is_global_zero:
            title = f"iteration {it}: {values['modes_covered']}/{len(data.modes)} modes, {values['high_quality']:.1f}% high quality"
            plots = [Plot(f"mixture_{it:06d}", "mixture/samples", scatter_figure(samples, data.modes, data.std,
                                                                                  self.threshold, title)),
                     Plot("mixture_curves", None, curves_figure([*self.history, record], len(data.modes)))]
        return Report([record], {f"mixture/{k}": v for k, v in values.items()}, plots)


