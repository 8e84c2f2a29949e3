"""FID (and KID) of the generator during training, correct under several processes.

The statistics are torchmetrics' ``FrechetInceptionDistance`` (and ``KernelInceptionDistance``)
states: the features are extracted here once per image and fed to both metrics, so any
extractor works (Inception-v3, a classifier trained on the data, or your own module).

Several processes: the M generated images come from a fixed bank of M latent codes that every
process draws identically and slices by rank (contiguous blocks), so the value does not depend on
the number of processes; each process extracts the features of its block, and every process calls
``compute`` (torchmetrics gathers the states: a rank that skipped it would hang the others).
The real statistics are computed once, stored under ``cache_dir`` keyed by the data set's
fingerprint, the extractor's weights and the sample count, and loaded on rank 0 (summed states
then hold them exactly once).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from callbacks.features import ClassifierFeatures, InceptionFeatures, module_digest, train_classifier
from callbacks.periodic import PeriodicEvaluation
from callbacks.progress import progress
from gans.distributed import rank_and_world


def cache_root() -> Path:
    """``$GAN_DYNAMICS_CACHE``, else ``~/.cache/gan-dynamics``."""
    return Path(os.environ.get("GAN_DYNAMICS_CACHE") or Path.home() / ".cache" / "gan-dynamics")


def block(n: int, rank: int, world: int) -> slice:
    """Process ``rank``'s part of n items: contiguous blocks in rank order, sizes within one."""
    return slice(n * rank // world, n * (rank + 1) // world)


def atomic_save(obj, path: Path) -> None:
    """Write to a temporary file and rename, so an interrupted write never leaves a broken cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class _Precomputed(nn.Module):
    """The metrics' "extractor": the features are extracted before ``update``."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


class FID(PeriodicEvaluation):
    """Every ``every_n_steps`` iterations (and when training ends), the Frechet distance between the
    features of ``num_samples`` generated images and ``num_real`` real ones, logged as ``fid/value``
    next to ``fid/num_samples`` (FID is biased upwards at finite M: compare values at equal M only),
    appended to ``fid.jsonl`` in the run folder and drawn in ``plots/fid_curve.png``.

    Args:
        every_n_steps: evaluation cadence in iterations; 0 evaluates only when training ends.
        num_samples: M, generated images per evaluation (10,000 or 50,000 for paper numbers).
        num_real: real images for the reference statistics (default M; all when the data set is
            smaller), a seeded random subset of the data module's ``eval_dataset()``.
        batch_size: images per forward pass of the generator and the extractor.
        feature_extractor: ``inception`` (the standard FID: TF Inception-v3, 2048-d pool features),
            ``classifier`` (a small CNN trained on the data set's labels, trained once and cached:
            a Frechet distance that needs no downloaded weights), or any ``nn.Module`` mapping
            images in [-1, 1] to features (N, d).
        feature_weights_path: the Inception weights file (offline clusters); None looks in the
            torch hub cache and downloads when the network allows.
        antialias: torchmetrics' antialiased resize to 299 instead of the TF1 resize of the
            original FID code (False, comparable with papers).
        kid: also log the kernel inception distance ``kid/mean``, ``kid/std``
            (``kid_subsets`` subsets of ``kid_subset_size``).
        cache_dir: where real statistics and trained classifiers are kept (default
            ``$GAN_DYNAMICS_CACHE`` or ``~/.cache/gan-dynamics``).
        seed: seeds the latent bank (the same codes at every evaluation), the real subset and KID's subsets.
        progress: a progress bar on rank 0 while features are extracted.
    """

    def __init__(self, every_n_steps: int = 5000, num_samples: int = 10000, num_real: int | None = None,
                 batch_size: int = 200, feature_extractor: str | nn.Module = "inception",
                 feature_weights_path: str | None = None, antialias: bool = False, kid: bool = False,
                 kid_subsets: int = 100, kid_subset_size: int = 1000, cache_dir: str | None = None,
                 seed: int = 2020, progress: bool = True):
        if isinstance(feature_extractor, str) and feature_extractor not in ("inception", "classifier"):
            raise ValueError(f"feature_extractor must be 'inception', 'classifier' or an nn.Module, "
                             f"got {feature_extractor!r}")
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2, got {num_samples}")
        super().__init__(every_n_steps)
        self.num_samples, self.num_real = num_samples, num_real or num_samples
        self.batch_size, self.feature_extractor, self.feature_weights_path = batch_size, feature_extractor, feature_weights_path
        self.antialias, self.kid, self.kid_subsets, self.kid_subset_size = antialias, kid, kid_subsets, kid_subset_size
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root()
        self.seed, self.progress = seed, progress
        self._show_progress, self._trainer = progress, None
        self.extractor: nn.Module | None = None
        self.features_name = feature_extractor if isinstance(feature_extractor, str) else type(feature_extractor).__name__
        self.real_from_cache: bool | None = None
        self.num_real_used = 0
        self.classifier_accuracy: float | None = None  # held-out accuracy of the 'classifier' extractor
        self._metrics: tuple[FrechetInceptionDistance, KernelInceptionDistance | None] | None = None

    # -- the extractor -------------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module, stage: str) -> None:
        # Build the extractor before training: a missing weights file should stop the run now,
        # not after the first few thousand iterations.
        if stage == "fit" and self.extractor is None:
            self.extractor = self.build_extractor(trainer.datamodule, trainer.strategy.barrier)

    def build_extractor(self, datamodule, barrier=lambda: None) -> nn.Module:
        if isinstance(self.feature_extractor, nn.Module):
            return self.feature_extractor.eval().requires_grad_(False)
        if self.feature_extractor == "inception":
            return InceptionFeatures(self.feature_weights_path, self.antialias)
        return self.trained_classifier(datamodule, barrier)

    def trained_classifier(self, datamodule, barrier) -> nn.Module:
        """The data set's classifier: trained on rank 0 the first time, then read from the cache."""
        if getattr(datamodule, "num_classes", None) is None:
            raise ValueError(f"feature_extractor='classifier' needs labelled data (a data module with num_classes), "
                             f"{type(datamodule).__name__} has none; use feature_extractor='inception' or pass a module")
        channels, num_classes = datamodule.sample_shape[0], datamodule.num_classes
        path = self.cache_dir / f"classifier-{datamodule.fingerprint()}-{self.seed}.pt"
        if rank_and_world()[0] == 0 and not path.is_file():
            net, accuracy = train_classifier(datamodule.eval_dataset(), channels, num_classes, seed=self.seed)
            atomic_save({"state_dict": net.state_dict(), "accuracy": accuracy}, path)
        barrier()
        saved = torch.load(path, map_location="cpu", weights_only=True)
        net = ClassifierFeatures(channels, num_classes)
        net.load_state_dict(saved["state_dict"])
        self.classifier_accuracy = saved["accuracy"]
        return net.eval().requires_grad_(False)

    def extractor_digest(self) -> str:
        return getattr(self.extractor, "digest", None) or module_digest(self.extractor)

    @torch.no_grad()
    def _features(self, images: Tensor) -> Tensor:
        weight = next(self.extractor.parameters(), None)
        features = self.extractor(images if weight is None else images.to(weight.dtype))
        if features.ndim != 2 or features.shape[0] != images.shape[0]:
            raise ValueError(f"the feature extractor {type(self.extractor).__name__} must return (N, d) features for "
                             f"N images, got shape {tuple(features.shape)} for {images.shape[0]} images")
        return features.double()

    def _bar(self, total: int, desc: str):
        return progress(self._trainer, desc, total, "images", enabled=self._show_progress and rank_and_world()[0] == 0)

    # -- real statistics -----------------------------------------------------------------------

    def real_statistics(self, datamodule, device: torch.device) -> dict:
        """Sum, sum of outer products and count of the real features (and the features themselves
        with ``kid``), from the cache or computed once and cached."""
        dataset = datamodule.eval_dataset()
        num_real = min(self.num_real, len(dataset))
        key = json.dumps([datamodule.fingerprint(), self.extractor_digest(), num_real, self.seed])
        path = self.cache_dir / f"real-{hashlib.sha1(key.encode()).hexdigest()[:20]}.pt"
        if path.is_file():
            stats = torch.load(path, map_location="cpu", weights_only=True)
            if not self.kid or stats.get("features") is not None:
                self.real_from_cache = True
                return stats
        self.real_from_cache = False
        rank, world = rank_and_world()
        chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.seed))[:num_real]
        mine = chosen[block(num_real, rank, world)].tolist()
        parts = []
        with self._bar(num_real, "FID: real features") as bar:
            # a DataLoader draws its base seed from `generator`: not from the training RNG
            for batch in DataLoader(Subset(dataset, mine), batch_size=self.batch_size, generator=torch.Generator(),
                                    num_workers=getattr(datamodule, "num_workers", 0)):
                images = batch[0] if isinstance(batch, (tuple, list)) else batch
                parts.append(self._features(images.to(device)).cpu())
                bar(len(images) * world)
        features = torch.cat(parts)
        stats = {"sum": features.sum(0), "cov_sum": features.T @ features, "n": torch.tensor(len(features))}
        if world > 1:
            reduced = [stats["sum"].to(device), stats["cov_sum"].to(device), stats["n"].to(device)]
            for t in reduced:
                dist.all_reduce(t)
            stats = {"sum": reduced[0].cpu(), "cov_sum": reduced[1].cpu(), "n": reduced[2].cpu()}
        if self.kid:
            gathered = [None] * world
            if world > 1:
                dist.all_gather_object(gathered, features)
            else:
                gathered = [features]
            stats["features"] = torch.cat(gathered)
        if rank == 0:
            atomic_save(stats, path)
        return stats

    def _metrics_with_real(self, datamodule, device: torch.device):
        if self._metrics is not None:
            return self._metrics
        stats = self.real_statistics(datamodule, device)
        rank, world = rank_and_world()
        dim, self.num_real_used = stats["sum"].shape[0], int(stats["n"])
        fid = FrechetInceptionDistance(feature=_Precomputed(dim), reset_real_features=False).to(device)
        # rank 0 holds the whole reference; torchmetrics sums the states over ranks
        scale = 1 if rank == 0 else 0
        fid.real_features_sum = stats["sum"].to(device) * scale
        fid.real_features_cov_sum = stats["cov_sum"].to(device) * scale
        fid.real_features_num_samples = stats["n"].to(device) * scale
        kid = None
        if self.kid:
            n = len(stats["features"])
            size = min(self.kid_subset_size, n, self.num_samples)
            kid = KernelInceptionDistance(feature=_Precomputed(dim), subsets=self.kid_subsets, subset_size=size,
                                          reset_real_features=False).to(device)
            # contiguous blocks gathered in rank order: the same reference order as one process
            kid.real_features = [stats["features"][block(n, rank, world)].to(device)]
        self._metrics = (fid, kid)
        return self._metrics

    # -- evaluation ----------------------------------------------------------------------------

    def latent_bank(self, pl_module) -> Tensor:
        """The M latent codes of every evaluation (the same on every process)."""
        return pl_module.sample_latent(self.num_samples, torch.Generator().manual_seed(self.seed)).cpu()

    def score(self, pl_module, datamodule) -> dict:
        """FID (and KID) of ``pl_module``'s sampling generator (the EMA one when enabled), in eval mode."""
        device = pl_module.device
        if self.extractor is None:
            self.extractor = self.build_extractor(datamodule)
        self.extractor.to(device)
        fid, kid = self._metrics_with_real(datamodule, device)
        rank, world = rank_and_world()
        z = self.latent_bank(pl_module)[block(self.num_samples, rank, world)]
        start, parts = time.perf_counter(), []
        with self._bar(self.num_samples, "FID: generated features") as bar:
            for chunk in z.split(self.batch_size):
                features = self._features(pl_module.generate(chunk))
                fid.update(features, real=False)
                parts.append(features)
                bar(len(chunk) * world)
        if kid is not None:
            # One tensor per process: torchmetrics gathers a list state element by element, so
            # several chunks would interleave across ranks and change KID's random subsets.
            # Float64: KID's kernel means cancel badly in float32.
            kid.update(torch.cat(parts), real=False)
        record = {"fid": float(fid.compute()), "num_samples": self.num_samples,
                  "num_real": self.num_real_used, "features": self.features_name}
        if self.classifier_accuracy is not None:
            record["classifier_accuracy"] = self.classifier_accuracy
        fid.reset()
        if kid is not None:
            with torch.random.fork_rng(devices=[]):  # KID's subsets must not move the training RNG
                torch.manual_seed(self.seed)
                kid_mean, kid_std = kid.compute()
            record.update(kid_mean=float(kid_mean), kid_std=float(kid_std))
            kid.reset()
        record["seconds"] = time.perf_counter() - start
        return record

    def evaluate(self, trainer: pl.Trainer, pl_module) -> dict:
        self._show_progress, self._trainer = self.progress, trainer
        record = {"iteration": trainer.global_step, **self.score(pl_module, trainer.datamodule)}
        self.history.append(record)
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective under DDP: every rank asks
        if trainer.is_global_zero:
            self._write(trainer, run_dir, record)
        return record

    def _write(self, trainer: pl.Trainer, run_dir: Path, record: dict) -> None:
        it = record["iteration"]
        values = {"fid/value": record["fid"], "fid/num_samples": record["num_samples"], "fid/seconds": record["seconds"]}
        if "kid_mean" in record:
            values.update({"kid/mean": record["kid_mean"], "kid/std": record["kid_std"]})
        for logger in trainer.loggers:
            logger.log_metrics(values, step=it)
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "fid.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        fig = fid_curve(self.history)
        (run_dir / "plots").mkdir(exist_ok=True)
        fig.savefig(run_dir / "plots" / "fid_curve.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("fid/curve", fig, global_step=it)

    def summary(self) -> str | None:
        if not self.history:
            return None
        last = self.history[-1]
        kid = f", KID {last['kid_mean']:.4f}" if "kid_mean" in last else ""
        return f"FID {last['fid']:.2f} ({last['features']} features, {last['num_samples']} samples){kid}"



def fid_curve(history: list[dict]) -> Figure:
    """FID (and KID) against iterations."""
    fig = Figure(figsize=(8 if "kid_mean" in history[-1] else 4.5, 3), dpi=100)
    keys = [("fid", "FID")] + ([("kid_mean", "KID")] if "kid_mean" in history[-1] else [])
    for i, (key, label) in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        ax.plot([r["iteration"] for r in history], [r[key] for r in history], marker="o")
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{label} ({history[-1]['num_samples']} samples, {history[-1]['features']})")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> dict:
    """FID of a saved checkpoint's generator (the EMA one when it has one) against its data."""
    import argparse

    from gans.checkpoint import CheckpointError, load_datamodule, load_model

    parser = argparse.ArgumentParser(prog="python -m callbacks.fid", description=main.__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--num-samples", type=int, default=10000)
    parser.add_argument("--features", default="inception", help="inception or classifier")
    parser.add_argument("--weights", default=None, help="the Inception weights file (offline machines)")
    parser.add_argument("--kid", action="store_true", help="also the kernel inception distance")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        model, data = load_model(args.checkpoint).to(args.device), load_datamodule(args.checkpoint)
    except CheckpointError as err:
        parser.error(str(err))
    if data is None or not hasattr(data, "eval_dataset"):
        parser.error("the checkpoint's datamodule is not an image datamodule (no eval_dataset())")
    metric = FID(num_samples=args.num_samples, feature_extractor=args.features, feature_weights_path=args.weights,
                 kid=args.kid)
    record = metric.score(model, data)
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
