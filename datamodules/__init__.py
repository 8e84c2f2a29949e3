"""Lightning datamodules."""
from datamodules.mixture import MixtureOfGaussians, grid_modes, ring_modes

__all__ = ["MixtureOfGaussians", "grid_modes", "ring_modes"]
