"""GAN models as two-player games.

``MODELS`` maps the short names used by ``train.py --model NAME`` to LightningModule classes.
"""
from gans.base import NonFiniteError, TwoPlayerGAN
from gans.distributed import GameDDPStrategy
from gans.methods import JARE, SGA, ConOpt
from gans.vanilla import Vanilla

MODELS: dict[str, type[TwoPlayerGAN]] = {
    "vanilla": Vanilla,
    "sga": SGA,
    "conopt": ConOpt,
    "jare": JARE,
}

__all__ = ["GameDDPStrategy", "MODELS", "NonFiniteError", "SGA", "ConOpt", "JARE", "TwoPlayerGAN", "Vanilla"]
