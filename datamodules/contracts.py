"""What a datamodule offers the metrics, plots and commands, as typing protocols: a datamodule of
your own that has these members works with them (``isinstance(data, ImageData)`` checks it)."""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from torch import Tensor
from torch.utils.data import Dataset


@runtime_checkable
class RealSamples(Protocol):
    """Real samples to evaluate on (the Jacobian spectra take their batch from here)."""

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample."""

    def eval_samples(self, n: int) -> Tensor:
        """n fixed real samples (the same on every call)."""


@runtime_checkable
class MixtureData(RealSamples, Protocol):
    """Points drawn from an equal-weight mixture of isotropic Gaussians (the coverage metrics)."""

    modes: Tensor
    std: float


@runtime_checkable
class ImageData(RealSamples, Protocol):
    """Images in [-1, 1] (FID, image grids): items ``(image (C, H, W), label)``."""

    num_workers: int

    @property
    def num_classes(self) -> int | None:
        """The number of labels, None without labels."""

    def eval_dataset(self) -> Dataset:
        """The deterministic data set metrics read real images from."""

    def fingerprint(self) -> str:
        """A short digest that changes when the data changes (a cache key)."""


@runtime_checkable
class FactorImages(ImageData, Protocol):
    """Images with known factors of variation (the disentanglement metrics, Semi-StyleGAN)."""

    factor_sizes: Sequence[int]
    factor_names: Sequence[str]
    labelled_batch_size: int

    def evaluation_indices(self) -> Sequence[int]:
        """The items whose factors are known."""

    def factor_digest(self) -> str:
        """A short digest of the images and their factors (the evaluator encoder's cache key)."""
