"""Names of a package imported on first use (PEP 562), so that importing one plain module of a
package does not import what its other modules need (Lightning)."""
from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_names(package: str, names: dict[str, str]) -> Callable[[str], object]:
    """A ``__getattr__`` for ``package`` that imports each of ``names`` (name -> module) from its
    module the first time it is asked for, and keeps it."""
    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__
