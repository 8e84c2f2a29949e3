"""A folder of images with factor labels for some of them (Isaac3D, Falcor3D, CelebA attributes, ...)."""
from __future__ import annotations

import csv
import hashlib
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from datamodules.factors import FactorData, check_labelled_batch_size
from datamodules.images import FileImages, ImageFolder


class FactorFileImages(FileImages):
    """Item i: (image, its factor codes (K,), whether they are labelled); codes are 0 where not."""

    def __init__(self, paths, codes: np.ndarray, labelled: np.ndarray, resolution: int, channels: int):
        super().__init__(paths, [0] * len(paths), resolution, channels)
        self.codes, self.labelled = torch.from_numpy(codes).float(), labelled

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, bool]:
        image, _ = super().__getitem__(index)
        return image, self.codes[index], bool(self.labelled[index])


class FactorImageFolder(FactorData, ImageFolder):
    """Every image under ``root`` (as ``ImageFolder``), with the factor values of some of them.

    ``labels`` is a CSV file with the header ``path,<factor 1>,...,<factor K>`` and one row per
    labelled image: its path relative to ``root`` and its factor values normalised to [0, 1].
    Images without a row are unlabelled. Batches are (images, codes (B, K), labelled (B,)).

    Args:
        root: the image folder.
        labels: the CSV file.
        resolution, channels: as ``ImageFolder``.
        labelled_batch_size: as ``DSprites``.
    """

    def __init__(self, root: str, labels: str, resolution: int = 64, channels: Literal[1, 3] = 3,
                 labelled_batch_size: int = 0, batch_size: int = 64, num_workers: int = 0, seed: int = 0):
        super().__init__(root, resolution=resolution, channels=channels, batch_size=batch_size,
                         num_workers=num_workers, seed=seed)
        self.labelled_batch_size = check_labelled_batch_size(labelled_batch_size)
        self.labels_path = Path(labels).expanduser()

    @cached_property
    def table(self) -> tuple[list[str], dict[str, np.ndarray]]:
        """(factor names, {relative path: values}) from the labels file, checked."""
        path = self.labels_path.absolute()
        if not path.is_file():
            raise FileNotFoundError(f"labels file {path} does not exist: it must be a CSV file with the header "
                                    f"path,<factor 1>,...,<factor K> and one row per labelled image")
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or len(rows[0]) < 2 or rows[0][0].strip() != "path":
            raise ValueError(f"{path}: the first line must be the header path,<factor 1>,...,<factor K>; "
                             f"got {rows[0] if rows else 'an empty file'}")
        names, values = [n.strip() for n in rows[0][1:]], {}
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != len(names) + 1:
                raise ValueError(f"{path}, line {line}: expected a path and {len(names)} values, got {len(row)} fields")
            try:
                v = np.array([float(x) for x in row[1:]])
            except ValueError as err:
                raise ValueError(f"{path}, line {line}: {err}") from err
            if not np.all((v >= 0) & (v <= 1)):
                raise ValueError(f"{path}, line {line}: factor values must be normalised to [0, 1], got {v.tolist()}")
            values[row[0].strip()] = v
        return names, values

    @property
    def factor_names(self) -> list[str]:
        return self.table[0]

    @property
    def num_classes(self) -> None:
        return None

    def build_dataset(self) -> FactorFileImages:
        paths = self._files[0]
        root = self.root.absolute()
        names, values = self.table
        relative = [p.relative_to(root).as_posix() for p in paths]
        missing = sorted(set(values) - set(relative))
        if missing:
            raise ValueError(f"{self.labels_path.absolute()} labels {len(missing)} image(s) not found under {root}, "
                             f"e.g. {missing[0]!r}")
        codes = np.stack([values.get(r, np.zeros(len(names))) for r in relative])
        labelled = np.array([r in values for r in relative])
        return FactorFileImages(paths, codes, labelled, self.resolution, self.channels)

    def content_digest(self) -> list[bytes | str | int]:
        return [*super().content_digest(), hashlib.sha1(self.labels_path.read_bytes()).hexdigest()]
