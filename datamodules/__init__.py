"""Data: Lightning datamodules, and the plain-PyTorch samples and batches they serve
(``mixture_samples``, ``batches``: a loop of one's own uses those without Lightning).

The names are imported on first use (PEP 562), so importing a plain module of this package imports
no Lightning.
"""
from __future__ import annotations

from runtime.lazy import lazy_names

#: where each name of this package lives
_NAMES = {"CIFAR10": "datamodules.torchvision_sets", "MNIST": "datamodules.torchvision_sets",
          "CelebA": "datamodules.torchvision_sets", "DSprites": "datamodules.dsprites",
          "Digits": "datamodules.images", "ImageDataModule": "datamodules.images", "ImageFolder": "datamodules.images",
          "FactorImageFolder": "datamodules.factor_folder", "MixtureOfGaussians": "datamodules.mixture",
          "StackedData": "datamodules.stacked", "grid_modes": "datamodules.mixture_samples",
          "ring_modes": "datamodules.mixture_samples"}

__all__ = sorted(_NAMES)
__getattr__ = lazy_names(__name__, _NAMES)
