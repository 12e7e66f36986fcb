"""cqtrestore: restore damaged music recordings with a CQT-Diff diffusion prior."""

__version__ = "0.1.0.dev0"
