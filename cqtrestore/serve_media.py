"""What the web page shows of a file: a waveform outline, WAV previews for the players, spectrograms.

Everything here reads files the job queue (``serve_jobs``) has placed in its own temporary folder and
writes beside them; nothing model-side is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from cqtrestore import audio, plot

WAVEFORM_COLUMNS = 1000  # min/max pairs sent to the page for drawing and marking gaps
SPECTROGRAM_SIZE = (200, 1000)  # height, width in pixels
# The format soundfile reports -> the suffix a restored file is written with (the input's own format).
SUFFIXES = {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg", "AIFF": ".aiff", "MP3": ".mp3"}


def output_suffix(info: audio.AudioInfo) -> str:
    """The suffix that writes a file in the input's format (WAV for formats cqtrestore cannot write)."""
    return SUFFIXES.get(info.format, ".wav")


def waveform(path: Path, columns: int = WAVEFORM_COLUMNS) -> list[list[float]]:
    """Per column, the (min, max) of the channels' mean, in one pass over the file; AudioError naming the
    time of the first NaN or infinite sample, as the command line gives."""
    frames = audio.probe(path).frames
    columns = max(1, min(columns, frames))
    low, high = np.full(columns, np.inf), np.full(columns, -np.inf)
    position = 0
    for block in audio.iter_blocks(path):
        mono = block.mean(axis=1)
        index = (np.arange(position, position + len(mono)) * columns) // frames
        starts = np.r_[0, np.flatnonzero(np.diff(index)) + 1]
        where = index[starts]
        low[where] = np.minimum(low[where], np.minimum.reduceat(mono, starts))
        high[where] = np.maximum(high[where], np.maximum.reduceat(mono, starts))
        position += len(mono)
    return [[round(float(a), 4), round(float(b), 4)] for a, b in zip(low, high, strict=True)]


def write_preview(source: Path, target: Path) -> None:
    """A 16-bit WAV copy of ``source`` at its own rate, which every browser plays (written atomically)."""
    info = audio.probe(source)
    with audio.AtomicAudioWriter(target, info.sample_rate, info.channels, "WAV", "PCM_16") as writer:
        for block in audio.iter_blocks(source, check=False):
            writer.write(block)


def write_spectrograms(
    pairs: Sequence[tuple[Path, Path]], gaps_s: Sequence[tuple[float, float]], cutoff_hz: float | None
) -> None:
    """One PNG per (audio, png) pair on a shared dB scale, with the gaps (seconds) and cutoff marked."""
    height, width = SPECTROGRAM_SIZE
    signals = []
    for source, _ in pairs:
        samples, rate = sf.read(source, dtype="float32", always_2d=True)
        signals.append((samples.mean(axis=1), rate))
    top = max(float(plot.spectrogram_db(mono, rate, height, width).max()) for mono, rate in signals)
    for (mono, rate), (_, target) in zip(signals, pairs, strict=True):
        image = plot.spectrogram_image(
            mono, rate, height, width, regions=gaps_s, cutoff_hz=cutoff_hz, top_db=top
        )
        partial = target.with_name(f".{target.name}.tmp")
        plot.write_png(partial, image)
        partial.replace(target)
