"""GAN models as two-player games.

``MODELS`` maps the short names used by ``train.py --model NAME`` to LightningModule classes.
"""
from gans.base import NonFiniteError, TwoPlayerGAN
from gans.distributed import GameDDPStrategy
from gans.methods import JARE, SGA, ConOpt
from gans.semistylegan import SemiStyleGAN
from gans.vanilla import Vanilla

MODELS: dict[str, type[TwoPlayerGAN]] = {
    "vanilla": Vanilla,
    "sga": SGA,
    "conopt": ConOpt,
    "jare": JARE,
    "semistylegan": SemiStyleGAN,
    "semistylegan_fine": SemiStyleGAN,  # the fine-grained editing variant: configs/semistylegan_fine.yaml
}

__all__ = ["GameDDPStrategy", "MODELS", "NonFiniteError", "SGA", "SemiStyleGAN", "ConOpt", "JARE", "TwoPlayerGAN", "Vanilla"]
