"""GAN models as two-player games.

``MODELS`` maps the short names used by ``train.py --model NAME`` to the builders of their models
(``gans.models``); ``gans.methods`` holds the update rules every model can take.
"""
from gans.base import TwoPlayerGAN
from gans.distributed import GameDDPStrategy
from gans.divergence import NonFiniteError
from gans.models import JARE, MODELS, SGA, ConOpt, Vanilla
from gans.semistylegan import SemiStyleGAN

MODELS = {**MODELS, "semistylegan": SemiStyleGAN,
          "semistylegan_fine": SemiStyleGAN}  # the fine-grained editing variant: configs/models/semistylegan_fine.yaml

__all__ = ["GameDDPStrategy", "MODELS", "NonFiniteError", "SGA", "SemiStyleGAN", "ConOpt", "JARE", "TwoPlayerGAN", "Vanilla"]
