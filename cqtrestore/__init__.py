"""cqtrestore: restore damaged music recordings with a CQT-Diff diffusion prior.

import cqtrestore
restored = cqtrestore.restore(audio, 44100, cqtrestore.LowPass(3000, 44100))
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"
__all__ = ["BlindLowPass", "Clip", "Compose", "Gap", "Hiss", "LowPass", "restore"]

_LAZY = {
    "restore": "cqtrestore.tasks",
    **{name: "cqtrestore.operators" for name in ("Clip", "Compose", "Gap", "LowPass")},
    "BlindLowPass": "cqtrestore.blind",
    "Hiss": "cqtrestore.noise",
}


def __getattr__(name: str) -> object:
    """Import the API on first use, so `cqtrestore --help` and `version` start fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cqtrestore' has no attribute {name!r}")
