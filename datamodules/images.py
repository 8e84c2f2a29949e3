"""Image datamodules: scikit-learn's 8x8 digits (offline) and a folder of images; the shared base
class (torchvision's CIFAR-10, MNIST and CelebA are in ``datamodules.torchvision_sets``).

Every datamodule here meets one contract, which the FID and image-grid callbacks and
``TwoPlayerGAN.check_networks`` rely on:

* an item is ``(image, label)``: a float32 ``(C, H, W)`` tensor in [-1, 1] and an int label
  (0 when the data has no labels); ``sample_shape`` is ``(channels, resolution, resolution)`` and
  ``num_classes`` the number of labels (``None`` without labels);
* ``train_dataloader()`` yields ``(images (B, C, H, W), labels (B,))`` from ``ShuffledBatches``
  (batch ``i`` is a function of (seed, i): exact resume, the global batch sliced by rank);
* ``eval_dataset()`` is the deterministic data set metrics read real images from;
* ``fingerprint()`` is a short hex digest that changes when the data changes (the cache key of
  the FID real statistics).

Data sets are built lazily, once, on first use (``setup`` builds them, so missing files are
reported before training starts).
"""
from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path
from typing import Literal, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.batches import IndexedBatches, ShuffledBatches, training_loader
from runtime.streams import seeded

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def check_shape_args(resolution: int, channels: int) -> None:
    if not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f"resolution must be an integer >= 8, got resolution={resolution!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got channels={channels!r}")


def _to_unit_range(pixels: Tensor) -> Tensor:
    """uint8 (or 0..255 float) pixels -> float32 in [-1, 1]."""
    return pixels.to(torch.float32) / 127.5 - 1.0


def _match_channels(image: Tensor, channels: int) -> Tensor:
    """(C, H, W) with C in {1, 3} -> ``channels`` channels (grey repeated, or the ITU-R 601 luma)."""
    if image.shape[0] == channels:
        return image
    if channels == 3:
        return image.expand(3, -1, -1).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype).view(3, 1, 1)
    return (image * weights).sum(0, keepdim=True)


def _resize(images: Tensor, resolution: int) -> Tensor:
    """Bilinear resize of square (..., H, W) float images to ``resolution`` (antialiased when shrinking)."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    batched = images if images.ndim == 4 else images[None]
    out = F.interpolate(batched, size=(resolution, resolution), mode="bilinear", align_corners=False,
                        antialias=resolution < min(images.shape[-2:]))
    out = out.clamp_(-1.0, 1.0)
    return out if images.ndim == 4 else out[0]


def digest(*parts: bytes | str | int) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]


def tensor_bytes(t: Tensor) -> bytes:
    return t.detach().cpu().contiguous().numpy().tobytes()


# -- data sets --------------------------------------------------------------------------------------


class TensorImages(Dataset):
    """Images held in memory as float32 in [-1, 1], ``(N, C0, H, W)``; channels matched per item."""

    def __init__(self, images: Tensor, labels: Tensor, channels: int):
        self.images, self.labels, self.channels = images, labels.long(), channels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return _match_channels(self.images[index], self.channels), int(self.labels[index])


class Uint8Images(Dataset):
    """Images held in memory as uint8 ``(N, C0, h, w)``, converted per item: scaled to [-1, 1],
    resized bilinearly to ``resolution``, channels matched."""

    def __init__(self, images: Tensor, labels: Tensor, resolution: int, channels: int):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images, self.labels = images, labels.long()
        self.resolution, self.channels = resolution, channels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = _resize(_to_unit_range(self.images[index]), self.resolution)
        return _match_channels(image, self.channels), int(self.labels[index])


def check_images(paths: Sequence[Path]) -> None:
    """Raise ``OSError`` naming the first file that does not open as an image, with how many do not,
    before training starts (reading each file's header only: a fraction of a millisecond per file)."""
    from PIL import Image, UnidentifiedImageError

    bad = []
    for path in paths:
        try:
            with Image.open(path):
                pass
        except (OSError, UnidentifiedImageError, ValueError) as err:
            bad.append((path, err))
    if bad:
        path, err = bad[0]
        raise OSError(f"cannot read image {path}: {err} ({len(bad)} of the {len(paths)} files do not open as images; "
                      f"remove or replace them)")


class FileImages(Dataset):
    """Image files read lazily: the shorter side resized to ``resolution`` (bilinear, antialiased),
    center-cropped to ``resolution`` x ``resolution``, converted to RGB or grey (L)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], resolution: int, channels: int):
        from torchvision.transforms import v2

        self.paths, self.labels = list(paths), list(labels)
        self.resolution, self.channels = resolution, channels
        check_images(self.paths)
        self.transform = v2.Compose([v2.Resize(resolution, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
                                     v2.CenterCrop(resolution), v2.PILToTensor()])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB" if self.channels == 3 else "L")
        except OSError as err:
            raise OSError(f"cannot read image {path}: {err}") from err
        return _to_unit_range(self.transform(img)), int(self.labels[index])


# -- the base class ---------------------------------------------------------------------------------


class ImageDataModule(pl.LightningDataModule):
    """Shared plumbing of the image datamodules; a subclass sets ``resolution`` and ``channels``
    and says how to build its data set (``build_dataset``), its labels (``num_classes``) and what
    identifies its content (``content_digest``).

    Args:
        batch_size: images per training batch (per process: the global batch is ``batch_size``
            times the number of processes); an epoch drops the last incomplete global batch.
        num_workers: DataLoader worker processes (at most the cores this process may use: more
            would only compete with training for them).
        seed: seeds the order of the training batches (one permutation per epoch).
    """

    resolution: int
    channels: int

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int = 0):
        super().__init__()
        # collects the arguments of the subclass's __init__ too (Lightning walks the init frames)
        self.save_hyperparameters()
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got batch_size={batch_size}, "
                             f"num_workers={num_workers}")
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed

    # -- what a subclass says ---------------------------------------------------------------------

    def build_dataset(self) -> Dataset:
        """The (image, label) data set; raises FileNotFoundError/ValueError for missing or empty data."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int | None:
        """Number of labels, ``None`` when the data has no labels (then every label is 0)."""
        return None

    def content_digest(self) -> list[bytes | str | int]:
        """What identifies the data's content, for ``fingerprint``."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------------

    @cached_property
    def dataset(self) -> Dataset:
        return self.build_dataset()

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.resolution, self.resolution)

    def prepare_data(self) -> None:
        # downloads (once per node, before ``setup``) for the torchvision sets that were asked to
        if getattr(self.hparams, "download", False):
            self.dataset

    def setup(self, stage: str | None = None) -> None:
        self.dataset  # build now: missing files fail before training starts

    def eval_dataset(self) -> Dataset:
        """The deterministic (image, label) data set (the training data: there is no augmentation)."""
        return self.dataset

    def eval_samples(self, n: int) -> Tensor:
        """n fixed real images (B, C, H, W) of ``eval_dataset``, the same on every call: a seeded
        choice without replacement (with replacement when the data set is smaller than n)."""
        data = self.eval_dataset()
        order = seeded(self.seed, -1)
        picks = (torch.randperm(len(data), generator=order)[:n] if n <= len(data)
                 else torch.randint(len(data), (n,), generator=order))
        return torch.stack([data[int(i)][0] for i in picks])

    def fingerprint(self) -> str:
        """A short hex digest of the data: class, resolution, channels, size and content."""
        return digest(type(self).__name__, self.resolution, self.channels, len(self.dataset), *self.content_digest())

    def train_batches(self, rank: int, world: int, position) -> IndexedBatches:
        """The training batches of process ``rank`` of ``world``, from iteration ``position()`` on."""
        return ShuffledBatches(self.dataset, self.batch_size, self.seed, rank, world, position=position)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        # an iterable data set indexed by the iteration (see datamodules.batches): Lightning leaves
        # it alone under DDP, each process slices the global batch itself
        data = self.train_batches(rank, world, position=lambda: trainer.global_step if trainer is not None else 0)
        return training_loader(data, trainer, self.num_workers)


# -- in memory: scikit-learn's digits ---------------------------------------------------------------


class Digits(ImageDataModule):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, labels 0..9; no download),
    upsampled bilinearly to ``resolution`` and held in memory. The offline default.

    Args:
        resolution: side of the square images (>= 8).
        channels: 1 (grey) or 3 (the grey channel repeated).
    """

    def __init__(self, resolution: int = 32, channels: Literal[1, 3] = 1, batch_size: int = 64, num_workers: int = 0,
                 seed: int = 0):
        check_shape_args(resolution, channels)
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.resolution, self.channels = resolution, channels

    @property
    def num_classes(self) -> int:
        return 10

    def build_dataset(self) -> TensorImages:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32)[:, None] / 8.0 - 1.0   # 0..16 -> [-1, 1]
        images = F.interpolate(images, size=(self.resolution, self.resolution), mode="bilinear",
                               align_corners=False).clamp_(-1.0, 1.0)
        return TensorImages(images.contiguous(), torch.as_tensor(digits.target), self.channels)

    def content_digest(self) -> list[bytes]:
        data: TensorImages = self.dataset
        return [tensor_bytes(data.images), tensor_bytes(data.labels)]


# -- a folder of image files ------------------------------------------------------------------------


def find_images(root: Path) -> list[Path]:
    """Every image file under ``root``, recursively (symbolic links followed), sorted by relative path."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


class ImageFolder(ImageDataModule):
    """Every image file (png, jpg, jpeg, bmp, webp, any case) under ``root``, recursively, in
    the order of their paths; the shorter side is resized to ``resolution``, then the center
    crop is kept. When every image sits in a subfolder of ``root`` (torchvision's ImageFolder
    layout, ``root/<class>/...``), the label is the index of its top-level subfolder among the
    sorted subfolders holding images (empty ones are skipped); otherwise every label is 0 and
    ``num_classes`` is None. Hidden files and folders (names starting with a dot) are skipped.

    Args:
        root: the folder.
        resolution: side of the square images (>= 8).
        channels: 3 (RGB) or 1 (grey).
    """

    def __init__(self, root: str, resolution: int = 64, channels: Literal[1, 3] = 3, batch_size: int = 64,
                 num_workers: int = 0, seed: int = 0):
        check_shape_args(resolution, channels)
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.root, self.resolution, self.channels = Path(root).expanduser(), resolution, channels

    @cached_property
    def _files(self) -> tuple[list[Path], list[int], list[str] | None]:
        root = self.root.absolute()
        wanted = ", ".join(IMAGE_EXTENSIONS)
        if not root.is_dir():
            what = "is not a directory" if root.exists() else "does not exist"
            raise FileNotFoundError(f"image folder {root} {what}: root must be a folder holding image files "
                                    f"({wanted}), directly or in class subfolders (root/<class>/<image>)")
        paths = find_images(root)
        if not paths:
            raise ValueError(f"no images found in {root} (searched recursively for the extensions {wanted}, "
                             f"in any case)")
        tops = [p.relative_to(root).parts for p in paths]
        if all(len(parts) > 1 for parts in tops):
            classes = sorted({parts[0] for parts in tops})
            index = {name: i for i, name in enumerate(classes)}
            return paths, [index[parts[0]] for parts in tops], classes
        return paths, [0] * len(paths), None

    @property
    def classes(self) -> list[str] | None:
        """The class subfolders, in label order; None when the images are not in class subfolders."""
        return self._files[2]

    @property
    def num_classes(self) -> int | None:
        return len(self.classes) if self.classes is not None else None

    def build_dataset(self) -> FileImages:
        paths, labels, _ = self._files
        return FileImages(paths, labels, self.resolution, self.channels)

    def content_digest(self) -> list[bytes | str | int]:
        root = self.root.absolute()
        parts: list[bytes | str | int] = []
        for path in self.dataset.paths:
            stat = path.stat()
            parts += [path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns]
        return parts
