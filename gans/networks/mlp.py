"""Multi-layer perceptrons for low-dimensional data (the 2-D mixture experiments)."""
from __future__ import annotations

from torch import Tensor, nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
}


def mlp(in_dim: int, out_dim: int, width: int, depth: int, activation: str) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units, each followed by ``activation``, then a linear output."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(in_dim if i == 0 else width, width), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(width if depth else in_dim, out_dim))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """G(z): R^latent_dim -> R^out_dim."""

    def __init__(self, latent_dim: int = 16, out_dim: int = 2, width: int = 128, depth: int = 4,
                 activation: str = "relu"):
        super().__init__()
        self.net = mlp(latent_dim, out_dim, width, depth, activation)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """D(x): R^in_dim -> one logit per sample, shape (B,)."""

    def __init__(self, in_dim: int = 2, width: int = 128, depth: int = 4, activation: str = "relu"):
        super().__init__()
        self.net = mlp(in_dim, 1, width, depth, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(-1)
