"""ViSQOL v3 in audio mode (MOS-LQO) through the optional ``visqol-python`` package.

ViSQOL (Hines et al. 2015; Chinen et al., QoMEX 2020) compares a degraded signal with its reference in
a gammatone spectrogram (32 bands, 50 Hz to 15 kHz), patch by patch (NSIM), and maps the similarity to a
mean opinion score with the support-vector model that ships with it. Audio mode runs at 48 kHz: inputs
are resampled with resampy (``kaiser_best``). The package runs the reference's global alignment, level
matching and realignment; it reproduces the C++ ViSQOL v3.3.3 conformance scores (9 of its 10 audio
cases exactly, the tenth within 1.2e-4). Identical signals score 4.7321, the top of the audio-mode
mapping (the conformance score of a file against itself); higher is better.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator

import numpy as np
import resampy
import torch
from torch import Tensor

VISQOL_RATE = 48000
VISQOL_MAX = 4.732101253042348  # C++ ViSQOL conformance value kConformanceCastanetsIdentity
SILENCE_RMS = 1e-9  # below this a signal is taken as silent: no score (NaN)
INSTALL_HINT = "pip install -e '.[metrics]'"


def unavailable() -> str | None:
    """Why ViSQOL cannot run here (its package is missing), or None when it can."""
    try:
        import visqol  # noqa: F401
    except ImportError as error:
        return f"ViSQOL needs visqol-python, in the 'metrics' extra ({INSTALL_HINT}): {error}"
    return None


@functools.cache
def _api():  # -> visqol.VisqolApi, imported lazily
    """One ViSQOL instance in audio mode with the bundled SVR model, made on first use."""
    from visqol import VisqolApi

    api = VisqolApi()
    api.create(mode="audio")
    return api


def to_visqol_rate(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float64 audio resampled to ViSQOL's 48 kHz (kaiser_best); unchanged when already there."""
    x = np.asarray(x, dtype=np.float64)
    if sample_rate == VISQOL_RATE:
        return x
    return resampy.resample(x, sample_rate, VISQOL_RATE, filter="kaiser_best")


def visqol_one(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """ViSQOL MOS-LQO of one mono estimate against its reference; NaN when either is silent."""
    ref, est = to_visqol_rate(reference, sample_rate), to_visqol_rate(estimate, sample_rate)
    if min(np.sqrt(np.mean(ref**2)), np.sqrt(np.mean(est**2))) <= SILENCE_RMS:
        return math.nan
    with np.errstate(all="ignore"):
        return float(_api().measure_from_arrays(ref, est, VISQOL_RATE).moslqo)


@contextlib.contextmanager
def numba_threads(threads: int) -> Iterator[None]:
    """Run visqol-python's parallel numba kernels on at most ``threads`` threads (numba's default: all)."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def visqol(reference: Tensor, estimate: Tensor, sample_rate: int, threads: int | None = None) -> Tensor:
    """ViSQOL MOS-LQO per item (batch,) of estimates against references (batch, length), float64, on
    ``threads`` threads (default: torch's count)."""
    with numba_threads(threads or torch.get_num_threads()):
        scores = [
            visqol_one(r.detach().cpu().double().numpy(), e.detach().cpu().double().numpy(), sample_rate)
            for r, e in zip(reference, estimate, strict=True)
        ]
    return torch.tensor(scores, dtype=torch.float64)
