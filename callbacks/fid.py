"""FID (and KID) of the generator during training (``metrics.fid_score`` computes it; this
callback schedules it and writes the results)."""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from torch import Tensor, nn

from callbacks.periodic import PeriodicEvaluation, Plot, Report
from callbacks.progress import progress
from figures import fid_curve
from metrics.fid_score import FIDScore
from runtime.distributed import rank_and_world


class FID(PeriodicEvaluation):
    """Every ``every_n_steps`` iterations (and when training ends), the Frechet distance between the
    features of ``num_samples`` generated images and ``num_real`` real ones
    (``metrics.fid_score.FIDScore``), logged as ``fid/value`` next to ``fid/num_samples`` (FID is
    biased upwards at finite M: compare values at equal M only), appended to ``fid.jsonl`` in the
    run folder and drawn in ``plots/fid_curve.png``.

    Args:
        every_n_steps: evaluation cadence in iterations; 0 evaluates only when training ends.
        progress: a progress bar on rank 0 while features are extracted.

    The other arguments are ``FIDScore``'s: ``num_samples``, ``num_real``, ``batch_size``,
    ``feature_extractor`` (``inception``, ``classifier`` or a module), ``feature_weights_path``,
    ``antialias``, ``kid``, ``kid_subsets``, ``kid_subset_size``, ``cache_dir``, ``seed``.
    """

    journal = "fid.jsonl"

    def __init__(self, every_n_steps: int = 5000, num_samples: int = 10000, num_real: int | None = None,
                 batch_size: int = 200, feature_extractor: str | nn.Module = "inception",
                 feature_weights_path: str | None = None, antialias: bool = False, kid: bool = False,
                 kid_subsets: int = 100, kid_subset_size: int = 1000, cache_dir: str | None = None,
                 seed: int = 2020, progress: bool = True):
        self.scorer = FIDScore(num_samples, num_real, batch_size, feature_extractor, feature_weights_path, antialias,
                               kid, kid_subsets, kid_subset_size, cache_dir, seed)
        super().__init__(every_n_steps)
        self.progress = progress

    # the scorer's settings and state, read through the callback
    num_samples = property(lambda self: self.scorer.num_samples)
    feature_extractor = property(lambda self: self.scorer.feature_extractor)
    cache_dir = property(lambda self: Path(self.scorer.cache_dir))
    real_from_cache = property(lambda self: self.scorer.real_from_cache)
    classifier_accuracy = property(lambda self: self.scorer.classifier_accuracy)

    @property
    def extractor(self) -> nn.Module | None:
        return self.scorer.extractor

    @extractor.setter
    def extractor(self, module: nn.Module | None) -> None:
        self.scorer.extractor = module

    def setup(self, trainer: pl.Trainer, pl_module, stage: str) -> None:
        # Build the extractor before training: a missing weights file should stop the run now,
        # not after the first few thousand iterations.
        if stage == "fit" and self.scorer.extractor is None:
            self.scorer.extractor = self.scorer.build_extractor(trainer.datamodule, pl_module.device)

    def latent_bank(self, pl_module) -> Tensor:
        """The M latent codes of every evaluation (the same on every process)."""
        return self.scorer.latent_bank(pl_module)

    def score(self, pl_module, datamodule, trainer: pl.Trainer | None = None) -> dict:
        """FID (and KID) of ``pl_module``'s sampling generator (``FIDScore.score``), with a progress bar."""
        shown = self.progress and rank_and_world()[0] == 0
        return self.scorer.score(pl_module, datamodule, lambda what, total: progress(trainer, what, total, "images",
                                                                                      enabled=shown))

    def measure(self, trainer: pl.Trainer, pl_module) -> Report:
        record = {"iteration": trainer.global_step, **self.score(pl_module, trainer.datamodule, trainer)}
        metrics = {"fid/value": record["fid"], "fid/num_samples": record["num_samples"], "fid/seconds": record["seconds"]}
        if "kid_mean" in record:
            metrics.update({"kid/mean": record["kid_mean"], "kid/std": record["kid_std"]})
        plots = [Plot("fid_curve", "fid/curve", fid_curve([*self.history, record]))] if trainer.is_global_zero else []
        return Report([record], metrics, plots)

    def summary(self) -> str | None:
        if not self.history:
            return None
        last = self.history[-1]
        kid = f", KID {last['kid_mean']:.4f}" if "kid_mean" in last else ""
        return f"FID {last['fid']:.2f} ({last['features']} features, {last['num_samples']} samples){kid}"
