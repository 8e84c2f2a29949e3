"""JARE on the ring in a training loop of one's own: plain PyTorch, no Lightning.

    python examples/plain_loop.py                       # 2,000 iterations of the default job's setting
    python examples/plain_loop.py --steps 10000 --width 128

The networks, the data, the optimizer, the seeds and the method are those of
``python train.py --model jare`` (the ring preset), so in float64 this loop ends where that run ends
(tests/test_plain_loop.py holds them equal). The game (``game.twoplayer.TwoPlayerGame``) gives the
method's direction; the loop writes it into ``.grad`` and steps a torch optimizer. docs/plain_pytorch.md
explains each line and shows the spectra.
"""
from __future__ import annotations

import argparse

import torch

from datamodules.mixture_samples import MixtureBatches, ring_modes
from game.methods import JacobianRegularization
from game.twoplayer import TwoPlayerGame
from gans.networks import MLPDiscriminator, MLPGenerator
from runtime.optim import RMSpropTF
from runtime.streams import seeded

#: the key of the training stream of gans.TwoPlayerGAN (its latent codes follow the run's seed)
TRAINING_STREAM = 0x6C6174


def train(steps: int = 2000, width: int = 128, gamma: float = 100.0, lr: float = 1e-3, seed: int = 0,
          dtype: torch.dtype = torch.float32) -> TwoPlayerGame:
    """JARE on the ring for ``steps`` iterations; the trained game."""
    torch.manual_seed(seed)  # the networks' initialisation, as train.py's --seed_everything
    G, D = MLPGenerator(64, 2, width, 4), MLPDiscriminator(2, width, 4)
    game = TwoPlayerGame(G, D, latent_dim=64, latent_std=2.0, loss="zero_sum",
                         method=JacobianRegularization(gamma)).to(dtype)
    optimizer = RMSpropTF([{"params": game.params_g}, {"params": game.params_d}], lr=lr, decay=0.9)
    data = MixtureBatches(ring_modes(8, radius=2.0), std=0.06, batch_size=128, seed=0, length=steps)
    codes = seeded(seed, TRAINING_STREAM)  # where the latent codes come from
    for real in data:
        real = game.unpack(real)
        update = game.direction(real, game.sample_latent(len(real), codes))
        game.write_grad(update)
        optimizer.step()
        optimizer.zero_grad()
        game.method.commit(update)
    return game


if __name__ == "__main__":
    from metrics.mixture import mixture_metrics

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--gamma", type=float, default=100.0)
    args = parser.parse_args()
    trained = train(args.steps, args.width, args.gamma)
    with torch.no_grad():
        samples = trained.generator(trained.sample_latent(2500, torch.Generator().manual_seed(1234)))
    print(mixture_metrics(samples, ring_modes(8, radius=2.0), 0.06))
