"""torchvision's CIFAR-10, MNIST and CelebA as image datamodules (the contract of
``datamodules.images``), with ``download=False`` by default and an error that says where the
files must be when they are missing."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Literal

import torch
from torch.utils.data import Dataset

from datamodules.images import FileImages, ImageDataModule, Uint8Images, check_shape_args, tensor_bytes

DOWNLOAD_HINT = "Pass download=True (--data.download true on the command line) to fetch them"
#: images hashed by the fingerprint of a torchvision data set (evenly strided through it)
FINGERPRINT_SAMPLES = 16


class _TorchvisionImages(ImageDataModule):
    """Builds a torchvision data set and turns its bare RuntimeError about missing files into a
    FileNotFoundError that says where the files must be."""

    root: Path
    download: bool

    def _torchvision(self, factory: Callable[[], Dataset]) -> Dataset:
        try:
            return factory()
        except RuntimeError as err:
            if self.download:
                raise
            raise FileNotFoundError(f"{self.missing_message()}. {DOWNLOAD_HINT}.") from err

    def missing_message(self) -> str:
        raise NotImplementedError

    def split_name(self) -> str:
        raise NotImplementedError

    def raw_image(self, index: int) -> bytes:
        """The stored bytes of image ``index`` (for the fingerprint)."""
        raise NotImplementedError

    def content_digest(self) -> list[bytes | str | int]:
        n = len(self.dataset)
        picks = sorted({round(i * (n - 1) / (FINGERPRINT_SAMPLES - 1)) for i in range(FINGERPRINT_SAMPLES)}) if n else []
        return [str(self.root.absolute()), self.split_name(), *(self.raw_image(i) for i in picks)]


class _InMemorySplit(_TorchvisionImages):
    """CIFAR-10 and MNIST: a train/test split of 10 classes, held in memory as uint8."""

    def __init__(self, root: str, resolution: int, channels: int, train: bool, download: bool, batch_size: int,
                 num_workers: int, seed: int):
        check_shape_args(resolution, channels)
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.root, self.resolution, self.channels = Path(root).expanduser(), resolution, channels
        self.train, self.download = train, download

    @property
    def num_classes(self) -> int:
        return 10

    def split_name(self) -> str:
        return "train" if self.train else "test"

    def raw_image(self, index: int) -> bytes:
        return tensor_bytes(self.dataset.images[index])


class CIFAR10(_InMemorySplit):
    """torchvision's CIFAR-10 (50,000 training or 10,000 test 32x32 RGB images, 10 classes), held
    in memory as uint8 and converted per item.

    Args:
        root: the folder holding ``cifar-10-batches-py/``.
        resolution: side of the square images (>= 8; 32 is the data's own).
        channels: 3 (RGB) or 1 (grey, the ITU-R 601 luma).
        train: the training set (else the test set).
        download: fetch the data into ``root`` when missing.
    """

    def __init__(self, root: str = "data", resolution: int = 32, channels: Literal[1, 3] = 3, train: bool = True,
                 download: bool = False, batch_size: int = 64, num_workers: int = 0, seed: int = 0):
        super().__init__(root, resolution, channels, train, download, batch_size, num_workers, seed)

    def missing_message(self) -> str:
        from torchvision.datasets import CIFAR10 as TV

        folder = self.root.absolute() / TV.base_folder
        names = ", ".join([name for name, _ in TV.train_list + TV.test_list] + [TV.meta["filename"]])
        return (f"CIFAR-10 not found (or incomplete or corrupted) in {folder}{os.sep}: torchvision expects the "
                f"extracted {TV.filename}, the files {names} in that folder")

    def build_dataset(self) -> Uint8Images:
        from torchvision import datasets

        tv = self._torchvision(lambda: datasets.CIFAR10(str(self.root), train=self.train, download=self.download))
        images = torch.from_numpy(tv.data).permute(0, 3, 1, 2).contiguous()     # (N, 32, 32, 3) -> (N, 3, 32, 32)
        return Uint8Images(images, torch.as_tensor(tv.targets), self.resolution, self.channels)


class MNIST(_InMemorySplit):
    """torchvision's MNIST (60,000 training or 10,000 test 28x28 grey digits, 10 classes), held in
    memory as uint8 and resized bilinearly to ``resolution`` per item.

    Args:
        root: the folder holding ``MNIST/raw/``.
        resolution: side of the square images (>= 8).
        channels: 1 (grey) or 3 (the grey channel repeated).
        train: the training set (else the test set).
        download: fetch the data into ``root`` when missing.
    """

    def __init__(self, root: str = "data", resolution: int = 32, channels: Literal[1, 3] = 1, train: bool = True,
                 download: bool = False, batch_size: int = 64, num_workers: int = 0, seed: int = 0):
        super().__init__(root, resolution, channels, train, download, batch_size, num_workers, seed)

    def missing_message(self) -> str:
        from torchvision.datasets import MNIST as TV

        folder = self.root.absolute() / "MNIST" / "raw"
        names = ", ".join(os.path.splitext(name)[0] for name, _ in TV.resources)
        return (f"MNIST not found in {folder}{os.sep}: torchvision expects the unzipped idx files {names} "
                f"in that folder")

    def build_dataset(self) -> Uint8Images:
        from torchvision import datasets

        tv = self._torchvision(lambda: datasets.MNIST(str(self.root), train=self.train, download=self.download))
        return Uint8Images(tv.data[:, None].contiguous(), tv.targets, self.resolution, self.channels)


class CelebA(_TorchvisionImages):
    """torchvision's aligned-and-cropped CelebA faces (178x218), read lazily: the shorter side
    resized to ``resolution``, then the center crop (the DCGAN setting). No labels.

    Args:
        root: the folder holding ``celeba/``.
        resolution: side of the square images (>= 8).
        channels: 3 (RGB) or 1 (grey).
        split: ``train`` (162,770 images), ``valid``, ``test`` or ``all``.
        download: fetch the data into ``root`` when missing (from Google Drive, needs ``gdown``).
    """

    def __init__(self, root: str = "data", resolution: int = 64, channels: Literal[1, 3] = 3,
                 split: Literal["train", "valid", "test", "all"] = "train", download: bool = False,
                 batch_size: int = 64, num_workers: int = 0, seed: int = 0):
        check_shape_args(resolution, channels)
        if split not in ("train", "valid", "test", "all"):
            raise ValueError(f"split must be one of train, valid, test, all; got split={split!r}")
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.root, self.resolution, self.channels = Path(root).expanduser(), resolution, channels
        self.split, self.download = split, download

    def missing_message(self) -> str:
        from torchvision.datasets import CelebA as TV

        folder = self.root.absolute() / TV.base_folder
        names = ", ".join(name for _, _, name in TV.file_list if not name.endswith(".zip"))
        return (f"CelebA not found (or incomplete or corrupted) in {folder}{os.sep}: torchvision expects the folder "
                f"img_align_celeba/ (the extracted img_align_celeba.zip) and the files {names} in that folder")

    def split_name(self) -> str:
        return self.split

    def build_dataset(self) -> FileImages:
        from torchvision import datasets

        tv = self._torchvision(lambda: datasets.CelebA(str(self.root), split=self.split, target_type=[],
                                                       download=self.download))
        folder = Path(tv.root, tv.base_folder, "img_align_celeba")
        return FileImages([folder / name for name in tv.filename], [0] * len(tv.filename), self.resolution,
                          self.channels)

    def raw_image(self, index: int) -> bytes:
        return self.dataset.paths[index].read_bytes()
