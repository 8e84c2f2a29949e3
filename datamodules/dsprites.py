"""Procedural dSprites (Matthey et al. 2017): every combination of shape (square, ellipse, heart),
scale (6 values in [0.5, 1]), orientation (40 values in [0, 2 pi]) and position (32 x 32 values in
[0, 1]^2), 737,280 binary 64x64 images, rendered in-process (no download) and indexed in the
original storage order (pos_y varies fastest, then pos_x, orientation, scale, shape); and a
coloured variant with the object's and the background's colour as two more factors.

The factor grids are the published ones. The rasterisation is not published: here a sprite at
scale 1 spans ``SPRITE_FRACTION`` of the image side across its widest outline and positions keep
every sprite inside the frame. That choice is ours (see the README).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.factors import FactorData, check_labelled_batch_size
from datamodules.images import check_shape_args, digest

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
#: the widest outline of a scale-1 sprite as a fraction of the image side
SPRITE_FRACTION = 0.3


def factor_values() -> list[np.ndarray]:
    """The value grid of each factor (shape as its index)."""
    return [np.arange(3, dtype=np.float64), np.linspace(0.5, 1.0, 6), np.linspace(0.0, 2 * math.pi, 40),
            np.linspace(0.0, 1.0, 32), np.linspace(0.0, 1.0, 32)]


@lru_cache(maxsize=None)
def outline(shape: str, points: int = 96) -> np.ndarray:
    """The shape's outline, centred at 0, widest radius 1, y pointing down (image coordinates)."""
    t = np.linspace(0, 2 * math.pi, points, endpoint=False)
    if shape == "square":
        xy = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) / math.sqrt(2)
    elif shape == "ellipse":
        xy = np.stack([np.cos(t), 0.5 * np.sin(t)], axis=1)
    elif shape == "heart":
        xy = np.stack([16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))],
                      axis=1)
        xy = xy - xy.mean(0)
        xy /= np.linalg.norm(xy, axis=1).max()
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")
    return xy


def render(classes, size: int = 64) -> np.ndarray:
    """The binary (size, size) uint8 image of one combination of factor classes (shape, scale,
    orientation, pos_x, pos_y)."""
    shape, scale, angle, pos_x, pos_y = (values[c] for values, c in zip(factor_values(), classes))
    radius = scale * SPRITE_FRACTION * size / 2
    margin = SPRITE_FRACTION * size / 2 + 1  # a pixel to spare: the polygon's edge pixels are filled too
    centre = margin + np.array([pos_x, pos_y]) * (size - 1 - 2 * margin)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    xy = outline(SHAPES[int(shape)]) @ rotation.T * radius + centre
    image = Image.new("L", (size, size), 0)
    ImageDraw.Draw(image).polygon([tuple(p) for p in xy], fill=1)
    return np.array(image, dtype=np.uint8)


def labelled_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    """A fixed random subset of round(fraction * n) items (at least one when fraction > 0)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"labelled_fraction must be in [0, 1], got {fraction}")
    count = max(1, round(fraction * n)) if fraction > 0 else 0
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).choice(n, count, replace=False)] = True
    return mask


#: the coloured variant's palette (RGB in [0, 1]): object colours, then background colours
OBJECT_COLOURS = ((1.0, 1.0, 1.0), (1.0, 0.3, 0.3), (0.3, 1.0, 0.3), (0.3, 0.5, 1.0))
BACKGROUND_COLOURS = ((0.0, 0.0, 0.0), (0.35, 0.35, 0.35), (0.3, 0.2, 0.0), (0.0, 0.15, 0.3))


class DSpritesImages(Dataset):
    """Item i: (image in [-1, 1], factor codes = class / (size - 1) in [0, 1], whether its codes
    are labelled for training). Grey (1, 64, 64) binary images; with ``coloured``, RGB images with
    two more factors, the object's and the background's colour (varying fastest)."""

    def __init__(self, labelled: np.ndarray, coloured: bool = False, resolution: int = 64):
        self.labelled, self.coloured, self.resolution = labelled, coloured, resolution
        self.factor_sizes = FACTOR_SIZES + ((len(OBJECT_COLOURS), len(BACKGROUND_COLOURS)) if coloured else ())
        self.sizes = np.array(self.factor_sizes)

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def classes(self, index: int) -> np.ndarray:
        return np.array(np.unravel_index(index, self.factor_sizes))

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, bool]:
        classes = self.classes(index)
        mask = torch.from_numpy(render(classes[:5], self.resolution)).float()[None]
        if self.coloured:
            obj, bg = (torch.tensor(palette[c]).view(3, 1, 1) for palette, c in
                       ((OBJECT_COLOURS, classes[5]), (BACKGROUND_COLOURS, classes[6])))
            image = mask * obj + (1 - mask) * bg
        else:
            image = mask
        codes = torch.from_numpy(classes / (self.sizes - 1)).float()
        return image * 2 - 1, codes, bool(self.labelled[index])


class DSprites(FactorData):
    """Procedural dSprites with a fixed labelled subset for semi-supervised training.
    Batches are (images, codes, labelled): ``codes`` are the factors normalised to [0, 1] (as in
    the Semi-StyleGAN code), ``labelled`` marks the items whose codes the model may use.

    Args:
        labelled_fraction: the share of images with labelled factors (0.005 = 3,686 images of the
            grey set).
        coloured: RGB images with two more factors, object colour and background colour (4 each,
            ``OBJECT_COLOURS``, ``BACKGROUND_COLOURS``): 11,796,480 images.
        resolution: 64 (the published size) or 32 (the same sprites drawn at half the size, for
            CPU-sized models).
        labelled_batch_size: > 0 appends a batch of this many labelled items to every training
            batch (``datamodules.factors``); 0: the labelled items of the batch itself only.
        seed: seeds the labelled subset and the batch order.
    """

    def __init__(self, labelled_fraction: float = 0.005, coloured: bool = False, resolution: Literal[32, 64] = 64,
                 labelled_batch_size: int = 0, batch_size: int = 64, num_workers: int = 0, seed: int = 0):
        if resolution not in (32, 64):
            raise ValueError(f"DSprites renders at resolution 64 (the published size) or 32, got {resolution!r}")
        check_shape_args(resolution, 3 if coloured else 1)
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.resolution, self.channels = resolution, 3 if coloured else 1
        self.labelled_batch_size = check_labelled_batch_size(labelled_batch_size)
        self.labelled_fraction, self.coloured = labelled_fraction, coloured
        self.factor_names = FACTOR_NAMES + (("object_colour", "background_colour") if coloured else ())
        self.factor_sizes = DSpritesImages(np.zeros(0, dtype=bool), coloured).factor_sizes
        self.mask = labelled_mask(int(np.prod(self.factor_sizes)), labelled_fraction, seed)

    def build_dataset(self) -> DSpritesImages:
        return DSpritesImages(self.mask, self.coloured, self.resolution)

    def evaluation_indices(self) -> np.ndarray:
        return np.arange(len(self.dataset))

    def factor_digest(self) -> str:
        return digest(type(self).__name__, self.resolution, self.coloured, "procedural-dsprites-v1", SPRITE_FRACTION)

    def content_digest(self) -> list[str | int | float]:
        return ["procedural-dsprites-v1", SPRITE_FRACTION, self.coloured, self.labelled_fraction, self.seed]
