"""The independent evaluator encoder E* of the controllability metrics (L2-gen, MIG-gen): a small
CNN regressor trained fully supervised on every image whose factors are known, once per data set,
then cached. It must not be the model's own encoder, which a generator can learn to fool."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from metrics.cache import cached
from runtime import interrupt
from runtime.streams import cpu_seeded


class FactorEncoder(nn.Module):
    """Images (B, C, H, W) in [-1, 1] to factor codes (B, K): four stride-2 convolutions, global
    average pooling, a linear layer."""

    def __init__(self, channels: int, num_codes: int, width: int = 32):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), act(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), act(),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), act(),
            nn.Conv2d(4 * width, 4 * width, 3, 1, 1), act(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16 * width, 4 * width), act(),
            nn.Linear(4 * width, num_codes))

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)


def _items(dataset: Dataset, indices: Tensor, factors: list[int]) -> tuple[Tensor, Tensor]:
    items = [dataset[int(i)] for i in indices]
    return torch.stack([x[0] for x in items]).float(), torch.stack([x[1] for x in items])[:, factors].float()


def train_evaluator(dataset: Dataset, indices, factors: list[int], channels: int, *, steps: int = 4000,
                    batch_size: int = 64, lr: float = 1e-3, held_out: int = 1000, seed: int = 0,
                    report: Callable[[int], None] = lambda n: None,
                    device: torch.device | str = "cpu") -> tuple[FactorEncoder, float]:
    """Fit a ``FactorEncoder`` to the codes of ``dataset[indices]`` (items (image, codes, ...)) on
    ``device``; returns it on the CPU in eval mode and its mean ||E*(x) - c||_2 on ``held_out``
    items it never saw. An interrupt (``runtime.interrupt``) stops it between steps."""
    gen = torch.Generator().manual_seed(seed)
    indices = torch.as_tensor(indices)[torch.randperm(len(indices), generator=gen)]
    held_out = min(held_out, len(indices) // 5)
    test, train = indices[:held_out], indices[held_out:]
    with cpu_seeded(seed):
        net = FactorEncoder(channels, len(factors)).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        for _ in range(steps):
            interrupt.check()
            report(1)
            images, codes = _items(dataset, train[torch.randint(len(train), (batch_size,), generator=gen)], factors)
            loss = (net(images.to(device)) - codes.to(device)).square().sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    net = net.cpu().eval().requires_grad_(False)
    with torch.no_grad():
        errors = [(net(x) - c).norm(dim=1) for x, c in (_items(dataset, part, factors) for part in test.split(256))]
    return net, float(torch.cat(errors).mean()) if errors else float("nan")


def cached_evaluator(datamodule, factors: list[int], cache_dir: Path, *, steps: int = 4000, seed: int = 0,
                     report: Callable[[int], None] = lambda n: None, device: torch.device | str = "cpu"
                     ) -> tuple[FactorEncoder, float]:
    """The data set's evaluator: trained on rank 0 (on ``device``) the first time (``report(1)``
    after each step), then read from ``cache_dir`` (keyed by the images and their factors, not by
    which of them training may use); every process receives rank 0's (``metrics.cache.cached``)."""
    channels = datamodule.sample_shape[0]
    name = f"evaluator-{datamodule.factor_digest()}-{'_'.join(map(str, factors))}-{steps}-{seed}.pt"

    def train() -> dict:
        net, error = train_evaluator(datamodule.eval_dataset(), datamodule.evaluation_indices(), factors, channels,
                                     steps=steps, seed=seed, report=report, device=device)
        return {"state_dict": net.state_dict(), "l2_error": error}

    saved = cached(Path(cache_dir) / name, train)
    net = FactorEncoder(channels, len(factors))
    net.load_state_dict(saved["state_dict"])
    return net.eval().requires_grad_(False), saved["l2_error"]
