"""The GAN models as LightningModules, and the networks the players are made of.

``gans.TwoPlayerGAN`` (any method of ``game.methods``) and its shortcuts ``gans.JARE``,
``gans.ConOpt``, ``gans.SGA``, ``gans.Vanilla``, ``gans.SemiStyleGAN``, ``gans.SweepGAN`` (many games
in one run); ``gans.networks`` the players' networks. The game they train is ``game`` (plain
PyTorch, usable without Lightning); ``--model NAME`` reads ``configs/models/NAME.yaml``.

The names are imported on first use (PEP 562): ``import gans.networks`` costs no Lightning import,
so a loop of one's own takes the networks, ``game`` and ``spectra`` without it.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

from runtime.lazy import lazy_names

#: where each name of this package lives
_NAMES = {"TwoPlayerGAN": "gans.base", "JARE": "gans.models", "ConOpt": "gans.models", "SGA": "gans.models",
          "Vanilla": "gans.models", "SemiStyleGAN": "gans.semistylegan", "SweepGAN": "gans.sweep",
          "GameDDPStrategy": "gans.strategy", "NonFiniteError": "runtime.divergence"}

#: modules that moved out of this package, under the names that configs and checkpoints of earlier
#: versions record (``class_path: gans.methods.CompetitiveGradient``, ``gans.optim.RMSpropTF``, a
#: checkpoint's ``method``): importing the old name gives the module itself, not a copy
MOVED = {"gans.methods": "game.methods", "gans.optim": "runtime.optim", "gans.game": "game.algebra",
         "gans.losses": "game.losses", "gans.spectrum": "spectra.spectrum"}

__all__ = sorted(_NAMES)
__getattr__ = lazy_names(__name__, _NAMES)


def current_path(path: str) -> str:
    """A class path as this version names it (``gans.methods.X`` -> ``game.methods.X``)."""
    module, _, name = path.rpartition(".")
    return f"{MOVED[module]}.{name}" if module in MOVED else path


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names of ``MOVED`` and loads each as the module it now is."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:
        pass  # the module ran under its own name


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())
