"""Lightning datamodules."""
from datamodules.dsprites import DSprites
from datamodules.factor_folder import FactorImageFolder
from datamodules.images import Digits, ImageDataModule, ImageFolder
from datamodules.mixture import MixtureOfGaussians, grid_modes, ring_modes
from datamodules.stacked import StackedData
from datamodules.torchvision_sets import CIFAR10, MNIST, CelebA

__all__ = ["CIFAR10", "MNIST", "CelebA", "DSprites", "Digits", "FactorImageFolder", "ImageDataModule", "ImageFolder", "MixtureOfGaussians",
           "StackedData", "grid_modes", "ring_modes"]
