"""What the data sets with factors of variation (``DSprites``, ``FactorImageFolder``) share: their
batches are ``(images, codes, labelled)``, codes normalised to [0, 1] and ``labelled`` marking the
items whose codes a semi-supervised model may use; optionally followed by a separate batch of
labelled items, ``(..., labelled_images, labelled_codes)``, so that supervision does not depend on
how many labelled items a random batch happens to hold (0.16 per batch of 32 at 0.5% labels)."""
from __future__ import annotations

import numpy as np

from datamodules.batches import IndexedBatches, WithLabelledBatches
from datamodules.images import ImageDataModule


class FactorData(ImageDataModule):
    """Mixin for the factor data sets. A subclass sets ``labelled_batch_size`` and ``factor_names``
    and builds a data set whose items are (image, codes, labelled) with a ``labelled`` array."""

    labelled_batch_size: int = 0
    #: values per factor when the factors live on a known grid, else None
    factor_sizes: tuple[int, ...] | None = None

    def labelled_indices(self) -> np.ndarray:
        """The items whose codes training may use."""
        return np.flatnonzero(self.dataset.labelled)

    def evaluation_indices(self) -> np.ndarray:
        """The items whose codes are known, for metrics (all of them for synthetic data)."""
        return self.labelled_indices()

    def factor_digest(self) -> str:
        """Identifies the images and their true factors, whatever subset training may use: the
        cache key of a metric's evaluator encoder, shared by runs with other labelled fractions."""
        return self.fingerprint()

    def train_batches(self, rank: int, world: int, position) -> IndexedBatches:
        main = super().train_batches(rank, world, position)
        if not self.labelled_batch_size:
            return main
        return WithLabelledBatches(main, self.dataset, self.labelled_indices(), self.labelled_batch_size, self.seed)


def check_labelled_batch_size(labelled_batch_size: int) -> int:
    if not isinstance(labelled_batch_size, int) or labelled_batch_size < 0:
        raise ValueError(f"labelled_batch_size must be an integer >= 0, got {labelled_batch_size!r}")
    return labelled_batch_size
