"""FID and KID of a generator against a data set, correct under several processes: the pipeline
(the extractor, the cached real statistics, the generated features) that ``callbacks.FID``
schedules during training and ``commands.fid`` runs on a checkpoint. The statistics' math is
``metrics.fid``.

The statistics are torchmetrics' ``FrechetInceptionDistance`` (and ``KernelInceptionDistance``)
states: the features are extracted here once per image and fed to both metrics, so any
extractor works (Inception-v3, a classifier trained on the data, or your own module).

Several processes: the M generated images come from a fixed bank of M latent codes that every
process draws identically and slices by rank (contiguous blocks), so the value does not depend on
the number of processes; each process extracts the features of its block, and every process calls
``compute`` (torchmetrics gathers the states: a rank that skipped it would hang the others).
The real statistics are computed once, stored under ``cache_dir`` keyed by the data set's
fingerprint, the extractor's weights and the sample count. Rank 0 alone decides whether the cache
holds them and reads it, and hands them to the others (a cache on a node-local disk, or a shared
file system that shows a new file late, must not split the processes between reading and
computing: only those computing would enter the collectives). Features are extracted in full
float32 (no TF32: ``runtime.precision``), and an interrupt stops an evaluation between two batches
on every process alike.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Callable, ContextManager, Iterable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from metrics.cache import cache_root, cached
from metrics.features import ClassifierFeatures, InceptionFeatures, module_digest, train_classifier
from metrics.fid import feature_statistics, frechet_with_reference, kernel_with_reference
from runtime import interrupt
from runtime.checkpoint import atomic_save
from runtime.distributed import block, from_rank0, rank_and_world
from runtime.precision import full_float32
from runtime.streams import cpu_seeded


class FIDScore:
    """The Frechet distance between the features of ``num_samples`` generated images and
    ``num_real`` real ones (FID is biased upwards at finite M: compare values at equal M only), and
    optionally KID: ``score(model, datamodule)`` -> a record. ``callbacks.FID`` calls it during
    training, ``commands.fid`` on a checkpoint.

    Args:
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
    """

    def __init__(self, num_samples: int = 10000, num_real: int | None = None,
                 batch_size: int = 200, feature_extractor: str | nn.Module = "inception",
                 feature_weights_path: str | None = None, antialias: bool = False, kid: bool = False,
                 kid_subsets: int = 100, kid_subset_size: int = 1000, cache_dir: str | None = None,
                 seed: int = 2020):
        if isinstance(feature_extractor, str) and feature_extractor not in ("inception", "classifier"):
            raise ValueError(f"feature_extractor must be 'inception', 'classifier' or an nn.Module, "
                             f"got {feature_extractor!r}")
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2, got {num_samples}")
        self.num_samples, self.num_real = num_samples, num_real or num_samples
        self.batch_size, self.feature_extractor, self.feature_weights_path = batch_size, feature_extractor, feature_weights_path
        self.antialias, self.kid, self.kid_subsets, self.kid_subset_size = antialias, kid, kid_subsets, kid_subset_size
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root()
        self.seed = seed
        self.extractor: nn.Module | None = None
        self.features_name = feature_extractor if isinstance(feature_extractor, str) else type(feature_extractor).__name__
        self.real_from_cache: bool | None = None
        self.num_real_used = 0
        self.classifier_accuracy: float | None = None  # held-out accuracy of the 'classifier' extractor
        self._metrics: tuple[FrechetInceptionDistance, KernelInceptionDistance | None] | None = None
        self._progress: Callable[[str, int], ContextManager] | None = None

    # -- the extractor -------------------------------------------------------------------------

    def build_extractor(self, datamodule, device: torch.device | str = "cpu") -> nn.Module:
        if isinstance(self.feature_extractor, nn.Module):
            return self.feature_extractor.eval().requires_grad_(False)
        if self.feature_extractor == "inception":
            return InceptionFeatures(self.feature_weights_path, self.antialias)
        return self.trained_classifier(datamodule, device)

    def trained_classifier(self, datamodule, device: torch.device | str = "cpu") -> nn.Module:
        """The data set's classifier: trained on rank 0 (on ``device``) the first time, then read
        from the cache; every process gets rank 0's."""
        if getattr(datamodule, "num_classes", None) is None:
            raise ValueError(f"feature_extractor='classifier' needs labelled data (a data module with num_classes), "
                             f"{type(datamodule).__name__} has none; use feature_extractor='inception' or pass a module")
        channels, num_classes = datamodule.sample_shape[0], datamodule.num_classes

        def train() -> dict:
            net, accuracy = train_classifier(datamodule.eval_dataset(), channels, num_classes, seed=self.seed,
                                             device=device)
            return {"state_dict": net.state_dict(), "accuracy": accuracy}

        saved = cached(self.cache_dir / f"classifier-{datamodule.fingerprint()}-{self.seed}.pt", train)
        net = ClassifierFeatures(channels, num_classes)
        net.load_state_dict(saved["state_dict"])
        self.classifier_accuracy = saved["accuracy"]
        return net.eval().requires_grad_(False)

    def extractor_digest(self) -> str:
        return getattr(self.extractor, "digest", None) or module_digest(self.extractor)

    @torch.no_grad()
    def _features(self, images: Tensor) -> Tensor:
        weight = next(self.extractor.parameters(), None)
        with full_float32():
            features = self.extractor(images if weight is None else images.to(weight.dtype))
        if features.ndim != 2 or features.shape[0] != images.shape[0]:
            raise ValueError(f"the feature extractor {type(self.extractor).__name__} must return (N, d) features for "
                             f"N images, got shape {tuple(features.shape)} for {images.shape[0]} images")
        return features.double()

    def _bar(self, total: int, desc: str):
        """A progress display of ``total`` images (``progress``, given to ``score``), or nothing."""
        if self._progress is None:
            return contextlib.nullcontext(lambda n: None)
        return self._progress(desc, total)

    # -- real statistics -----------------------------------------------------------------------

    def real_statistics(self, datamodule, device: torch.device) -> dict:
        """Sum, sum of outer products and count of the real features (and the features themselves
        with ``kid``), from the cache or computed once and cached."""
        dataset = datamodule.eval_dataset()
        num_real = min(self.num_real, len(dataset))
        key = json.dumps([datamodule.fingerprint(), self.extractor_digest(), num_real, self.seed])
        path = self.cache_dir / f"real-{hashlib.sha1(key.encode()).hexdigest()[:20]}.pt"

        def read_cache() -> dict | None:
            if not path.is_file():
                return None
            stats = torch.load(path, map_location="cpu", weights_only=True)
            return stats if not self.kid or stats.get("features") is not None else None

        stats = from_rank0(read_cache)  # rank 0's cache decides for every process
        self.real_from_cache = stats is not None
        if stats is not None:
            return stats
        rank, world = rank_and_world()
        chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.seed))[:num_real]
        mine = chosen[block(num_real, rank, world)].tolist()
        parts = []
        with self._bar(num_real, "FID: real features") as bar:
            # a DataLoader draws its base seed from `generator`: not from the training RNG
            loader = DataLoader(Subset(dataset, mine), batch_size=self.batch_size, generator=torch.Generator(),
                                num_workers=datamodule.num_workers)
            for batch in rounds(loader, num_real, self.batch_size):
                if batch is not None:
                    images = batch[0] if isinstance(batch, (tuple, list)) else batch
                    parts.append(self._features(images.to(device)).cpu())
                    bar(len(images) * world)
        features = torch.cat(parts)
        stats = feature_statistics(features)
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
        self.num_real_used = int(stats["n"])
        fid = frechet_with_reference(stats, device, holds_reference=rank == 0)
        kid = None
        if self.kid:
            n = len(stats["features"])
            kid = kernel_with_reference(stats["features"][block(n, rank, world)], device, self.kid_subsets,
                                        min(self.kid_subset_size, n, self.num_samples))
        self._metrics = (fid, kid)
        return self._metrics

    # -- evaluation ----------------------------------------------------------------------------

    def latent_bank(self, pl_module) -> Tensor:
        """The M latent codes of every evaluation (the same on every process)."""
        return pl_module.sample_latent(self.num_samples, torch.Generator().manual_seed(self.seed)).cpu()

    def score(self, pl_module, datamodule, progress: Callable[[str, int], ContextManager] | None = None) -> dict:
        """FID (and KID) of ``pl_module``'s sampling generator (the EMA one when enabled), in eval
        mode; ``progress(description, total)``: a context manager yielding a function called with
        the images done (a progress display; rank 0's)."""
        self._progress = progress
        device = pl_module.device
        if self.extractor is None:
            self.extractor = self.build_extractor(datamodule)
        self.extractor.to(device)
        fid, kid = self._metrics_with_real(datamodule, device)
        rank, world = rank_and_world()
        z = self.latent_bank(pl_module)[block(self.num_samples, rank, world)]
        start, parts = time.perf_counter(), []
        with self._bar(self.num_samples, "FID: generated features") as bar:
            for chunk in rounds(z.split(self.batch_size), self.num_samples, self.batch_size):
                if chunk is not None:
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
            with cpu_seeded(self.seed):  # KID's subsets must not move the training RNG
                kid_mean, kid_std = kid.compute()
            record.update(kid_mean=float(kid_mean), kid_std=float(kid_std))
            kid.reset()
        record["seconds"] = time.perf_counter() - start
        return record


def rounds(batches: Iterable, total: int, batch_size: int) -> Iterator:
    """This process's batches of its block of ``total`` items, padded with None to the count of the
    largest block, so that every process goes through the same number of rounds; each round asks
    every process whether the run was interrupted (``runtime.interrupt.check_everywhere``: a
    collective, hence the equal counts)."""
    world = rank_and_world()[1]
    count = math.ceil(math.ceil(total / world) / batch_size)
    iterator = iter(batches)
    for _ in range(count):
        interrupt.check_everywhere()
        yield next(iterator, None)
