"""Feature extractors for Frechet distances: Inception-v3 (the standard FID) and a small classifier
trained on the data set (a Frechet distance that needs no downloaded weights).

Every extractor takes images as the generator makes them, floats in [-1, 1] of shape (N, C, H, W),
and returns features (N, num_features).
"""
from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from runtime import interrupt
from runtime.streams import cpu_seeded

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] floats to uint8 with rounding to nearest and clamping (a plain ``.byte()`` truncates
    and wraps out-of-range values around)."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def hub_inception_path() -> Path:
    """Where torch-fidelity and torchmetrics look for the weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def inception_weights(weights_path: str | Path | None = None) -> Path:
    """The Inception weights file: ``weights_path``, else the torch hub cache, else downloaded into
    that cache. Offline without the file: a FileNotFoundError saying what to fetch and where."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"feature_weights_path {path.resolve()} does not exist; it must be the FID "
                                    f"Inception weights {INCEPTION_URL}")
        return path
    path = hub_inception_path()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(INCEPTION_URL, str(path), progress=False)
    except (urllib.error.URLError, OSError) as err:
        raise FileNotFoundError(
            f"FID needs the Inception-v3 weights and they could not be downloaded ({err}). On a machine with "
            f"internet, fetch {INCEPTION_URL} and either copy it to {path} or pass its path as the FID callback's "
            f"feature_weights_path (--trainer.callbacks.FID.feature_weights_path "
            f"PATH, or in the config). Without weights, feature_extractor: classifier computes a Frechet distance "
            f"in the features of a classifier trained on the data set.") from err
    return path


def file_digest(path: Path) -> str:
    sha = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def module_digest(module: nn.Module) -> str:
    """The class and the exact weights of a module: a cache key for statistics computed with it."""
    sha = hashlib.sha1(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()[:16]


class InceptionFeatures(nn.Module):
    """The 2048-d pool features of the TF FID Inception-v3 (torch-fidelity's port, through
    torchmetrics). Grey images are repeated to three channels.

    Args:
        weights_path: the weights file; None looks in the torch hub cache, then downloads.
        antialias: torchmetrics' antialiased resize to 299; False (the default) is the TF1 resize
            of the original FID code, which makes values comparable with papers.
    """

    num_features = 2048

    def __init__(self, weights_path: str | Path | None = None, antialias: bool = False):
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.weights_path = inception_weights(weights_path)
        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                      feature_extractor_weights_path=str(self.weights_path), antialias=antialias)
        self.digest = f"inception-{'aa' if antialias else 'tf1'}-{file_digest(self.weights_path)}"

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return self.net(to_uint8(images)).reshape(len(images), -1)


class ClassifierFeatures(nn.Module):
    """A small CNN classifier; its features are the ``num_features`` activations before the class
    layer. Trained on a labelled data set with :func:`train_classifier`."""

    def __init__(self, channels: int, num_classes: int, num_features: int = 64, width: int = 32):
        super().__init__()
        self.num_features = num_features
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, 2, 1), act(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), act(),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1), act(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_features))
        self.head = nn.Sequential(act(), nn.Linear(num_features, num_classes))

    def forward(self, images: Tensor) -> Tensor:
        return self.body(images)

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.body(images))


def train_classifier(dataset: Dataset, channels: int, num_classes: int, *, steps: int = 600,
                     batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                     device: torch.device | str = "cpu") -> tuple[ClassifierFeatures, float]:
    """Fit a ``ClassifierFeatures`` on (image, label) items on ``device`` (a GPU's answer differs from
    a CPU's in the last digits); returns it on the CPU in eval mode with its accuracy on a held-out
    tenth of the data. An interrupt (``runtime.interrupt``) stops it between steps."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=gen).tolist()
    held_out, train = order[:len(order) // 10], order[len(order) // 10:]
    with cpu_seeded(seed):
        net = ClassifierFeatures(channels, num_classes).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        loader = DataLoader(torch.utils.data.Subset(dataset, train), batch_size=batch_size, shuffle=True,
                            drop_last=len(train) > batch_size, generator=gen)
        step = 0
        while step < steps:
            for images, labels in loader:
                interrupt.check()
                loss = nn.functional.cross_entropy(net.logits(images.float().to(device)), labels.long().to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                if step == steps:
                    break
    net = net.cpu().eval().requires_grad_(False)
    correct = 0
    with torch.no_grad():
        for images, labels in DataLoader(torch.utils.data.Subset(dataset, held_out), batch_size=512,
                                     generator=torch.Generator()):
            correct += int((net.logits(images.float()).argmax(1) == labels).sum())
    return net, correct / max(len(held_out), 1)
