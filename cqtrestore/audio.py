"""Audio files at constant memory: probing, block I/O, atomic writing, streaming resampling, windowing.

Everything here works block by block, so memory does not grow with the file's length. The windowing
part splits a model-rate signal into overlapping windows and crossfades restored windows back together;
its layout is described in :func:`plan_windows`. This module is on the ground floor: it imports numpy,
soundfile and resampy, nothing model-side.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import resampy
import soundfile as sf

MODEL_RATE = 22050  # sample rate of the models; window positions and gaps are counted at this rate
BLOCK_FRAMES = 1 << 16  # frames per block when streaming a file (about 1.5 s at 44.1 kHz)
DEFAULT_WINDOW = 1 << 16  # the paper's segment: 2.97 s at 22.05 kHz
# 0.37 s crossfades: long enough that two different restorations blend without an audible seam, short
# enough that a window keeps 87 % of its length as core (hop 57344) and the (-3 dB at worst) blend of two
# uncorrelated high bands lasts a fraction of a second.
DEFAULT_OVERLAP = 8192
# Every gap gets at least 0.5 s of its window on both sides. Windows are centred on gaps when they can
# be, so short gaps get far more; 0.5 s keeps the longest fillable gap at 1.97 s (65536 - 2 * 11025).
DEFAULT_CONTEXT = 11025
RESAMPLE_FILTER = "kaiser_best"  # resampy's default: about 90 dB stopband, 50 zero crossings
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_KEPT_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
_SUFFIXES = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".aif": "AIFF", ".aiff": "AIFF"}
_SUFFIXES.update({".mp3": "MP3"} if sf.check_format("MP3", "MPEG_LAYER_III") else {})
_BIG = 10**15  # "unbounded" in the window planner's integer arithmetic


class AudioError(ValueError):
    """An audio file or request that cannot be used; the message is one line, fit for an end user."""


# --------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str  # libsndfile container name, e.g. "WAV", "FLAC"
    subtype: str  # libsndfile sample encoding, e.g. "PCM_16", "FLOAT", "VORBIS"

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def _reason(error: Exception) -> str:
    """libsndfile's own words for an error, without the file name it repeats."""
    text = getattr(error, "error_string", None) or str(error)
    return " ".join(text.split()).rstrip(".")


def open_audio(path: str | Path) -> sf.SoundFile:
    """Open an audio file for reading, or raise AudioError saying why it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: cannot read it (permission denied)")
    try:
        if path.stat().st_size == 0:
            raise AudioError(f"{path}: empty file (0 bytes)")
        handle = sf.SoundFile(path)
    except sf.SoundFileError as error:
        raise AudioError(f"{path}: not an audio file soundfile can read ({_reason(error)})") from None
    except OSError as error:
        raise AudioError(f"{path}: cannot read ({error.strerror or error})") from None
    if handle.frames <= 0:
        handle.close()
        raise AudioError(f"{path}: no samples")
    return handle


def probe(path: str | Path) -> AudioInfo:
    """Header facts of an audio file; AudioError if it is missing, empty, unreadable or has no samples."""
    with open_audio(path) as handle:
        return AudioInfo(
            Path(path), handle.samplerate, handle.channels, handle.frames, handle.format, handle.subtype
        )


def _check_block(block: np.ndarray, first_frame: int, handle: sf.SoundFile) -> None:
    """Raise AudioError naming the time of the first NaN or infinite sample in ``block``."""
    bad = ~np.isfinite(block)
    if bad.any():
        frame = first_frame + int(np.argmax(bad.any(axis=1)))
        raise AudioError(
            f"{handle.name}: sample at {frame / handle.samplerate:.3f} s is not a number (NaN or infinity)"
        )


def read_block(source: str | Path | sf.SoundFile, start: int, frames: int, check: bool = True) -> np.ndarray:
    """Frames [start, start + frames) as float32 (frames, channels); zeros before 0 and past the end."""
    if not isinstance(source, sf.SoundFile):
        with open_audio(source) as handle:
            return read_block(handle, start, frames, check)
    out = np.zeros((frames, source.channels), dtype=np.float32)
    first, stop = max(start, 0), min(start + frames, source.frames)
    if stop > first:
        source.seek(first)
        data = source.read(stop - first, dtype="float32", always_2d=True)
        if check:
            _check_block(data, first, source)
        out[first - start : first - start + len(data)] = data
    return out


def iter_blocks(
    path: str | Path, block_frames: int = BLOCK_FRAMES, check: bool = True
) -> Iterator[np.ndarray]:
    """The whole file as consecutive float32 (frames, channels) blocks; the last one may be shorter."""
    with open_audio(path) as handle:
        position = 0
        while True:
            block = handle.read(block_frames, dtype="float32", always_2d=True)
            if len(block) == 0:
                return
            if check:
                _check_block(block, position, handle)
            position += len(block)
            yield block


def check_finite(path: str | Path) -> None:
    """Read the whole file once; AudioError naming the time of the first NaN or infinite sample."""
    for _ in iter_blocks(path):
        pass


def peak(path: str | Path) -> float:
    """Largest absolute sample value (above 1.0 means a float file goes over full scale)."""
    return max((float(np.max(np.abs(block))) for block in iter_blocks(path)), default=0.0)


# --------------------------------------------------------------------------------------------- writing


def output_format(in_info: AudioInfo, out_path: str | Path) -> tuple[str, str]:
    """(format, subtype) for ``out_path``: the container from its suffix, the input's encoding if it fits.

    PCM_16/24/32 and FLOAT/DOUBLE are kept where the container allows them; float (and 32-bit) input
    falls back to FLOAT, else PCM_24 (FLAC); lossy or 8-bit input becomes PCM_16; OGG is Vorbis, MP3 is
    MPEG layer III."""
    suffix = Path(out_path).suffix.lower()
    if suffix not in _SUFFIXES:
        known = ", ".join(sorted(_SUFFIXES))
        raise AudioError(f"{out_path}: unknown output format {suffix or '(no suffix)'!r}; use one of {known}")
    fmt = _SUFFIXES[suffix]
    if fmt in ("OGG", "MP3"):
        return fmt, sf.default_subtype(fmt)
    if in_info.subtype in _KEPT_SUBTYPES and sf.check_format(fmt, in_info.subtype):
        return fmt, in_info.subtype
    if in_info.subtype in ("PCM_32", *FLOAT_SUBTYPES):
        return fmt, "FLOAT" if sf.check_format(fmt, "FLOAT") else "PCM_24"
    return fmt, "PCM_16"


class AtomicAudioWriter:
    """Write blocks to a hidden temporary file beside ``path``; rename it onto ``path`` only on success.

    On any exception in the ``with`` block (KeyboardInterrupt included) the temporary file is removed and
    ``path`` is left as it was. For encodings other than FLOAT/DOUBLE, samples outside [-1, 1] are clipped
    and counted in ``clipped``. Non-finite samples raise AudioError."""

    def __init__(self, path: str | Path, sample_rate: int, channels: int, format: str, subtype: str):
        self.path, self.sample_rate, self.channels = Path(path), int(sample_rate), int(channels)
        self.format, self.subtype = format, subtype
        self.clipped = 0  # samples (frames x channels) clipped to [-1, 1]
        self.frames = 0
        self._tmp: Path | None = None
        self._handle: sf.SoundFile | None = None

    def __enter__(self) -> AtomicAudioWriter:
        if self.path.is_dir():
            raise AudioError(f"{self.path}: is a folder; give a file name")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        try:
            self._handle = sf.SoundFile(
                tmp, "w", self.sample_rate, self.channels, self.subtype, format=self.format
            )
        except (sf.SoundFileError, OSError, ValueError) as error:
            self._tmp.unlink(missing_ok=True)
            raise AudioError(
                f"{self.path}: cannot write {self.format} {self.subtype} at {self.sample_rate} Hz "
                f"with {self.channels} channels ({_reason(error)})"
            ) from None
        return self

    def write(self, block: np.ndarray) -> None:
        """Append (frames, channels) samples (any float dtype)."""
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"expected a (frames, {self.channels}) block, got shape {block.shape}")
        if not np.all(np.isfinite(block)):
            raise AudioError(f"{self.path}: refusing to write NaN or infinite samples")
        if self.subtype not in FLOAT_SUBTYPES:
            outside = np.abs(block) > 1.0
            count = int(np.count_nonzero(outside))
            if count:
                self.clipped += count
                block = np.clip(block, -1.0, 1.0)
        self._handle.write(block)
        self.frames += len(block)

    def __exit__(self, exc_type, exc, traceback) -> None:  # noqa: ANN001
        try:
            if exc_type is None:
                self._handle.close()
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self._tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
                os.replace(self._tmp, self.path)
            else:
                with contextlib.suppress(Exception):
                    self._handle.close()
        finally:
            self._tmp.unlink(missing_ok=True)  # nothing left to remove after a successful rename


# ------------------------------------------------------------------------------------------ resampling


class StreamResampler:
    """Block-by-block resampling that matches ``resampy.resample(whole, sr_in, sr_out, axis=0)``.

    resampy (filter ``kaiser_best``) gives output sample j the value of the band-limited input at time
    j * sr_in / sr_out, with zeros outside the signal, and returns floor(n * sr_out / sr_in) samples. Here
    each call resamples the buffered input with resampy and keeps only the outputs whose whole filter
    support has arrived. The buffer always starts at a multiple of sr_in / gcd(sr_in, sr_out), so its
    first sample falls on an output sample exactly and the outputs line up with the whole-file ones.
    Work is batched to at least 16384 input frames (4x the margins for coprime rates), so memory is the
    block plus about 0.4 s of input at common rates, 4 s at most. Output is float32."""

    def __init__(self, sr_in: int, sr_out: int, channels: int, filter: str = RESAMPLE_FILTER):
        if int(sr_in) <= 0 or int(sr_out) <= 0 or int(channels) <= 0:
            raise AudioError(f"cannot resample {sr_in} Hz -> {sr_out} Hz with {channels} channels")
        self.sr_in, self.sr_out, self.channels, self.filter = int(sr_in), int(sr_out), int(channels), filter
        gcd = math.gcd(self.sr_in, self.sr_out)
        self._align = self.sr_in // gcd  # input steps that map to whole output steps
        window, precision, _ = resampy.filters.get_filter(filter)
        step = int(min(1.0, self.sr_out / self.sr_in) * precision)
        self._reach = len(window) // step + 2  # input samples each side that an output depends on
        self._min_input = max(BLOCK_FRAMES // 4, 4 * (self._reach + self._align))  # amortises the margins
        self._buffer = np.zeros((0, self.channels))
        self._buffer_start = 0  # input index of self._buffer[0]
        self._seen = 0  # input samples received
        self._emitted = 0  # output samples returned

    @property
    def buffered(self) -> int:
        """Input frames held in memory now."""
        return len(self._buffer)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed (frames, channels) input; return the output samples that are now final (maybe none)."""
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"expected a (frames, {self.channels}) block, got shape {block.shape}")
        if self.sr_in == self.sr_out:
            return block.astype(np.float32)
        self._buffer = np.concatenate([self._buffer, block.astype(np.float64)])
        self._seen += len(block)
        # output j is final once every input it reads, up to floor(j * sr_in / sr_out) + reach, has arrived
        known = self._seen - self._reach
        ready = min(-(-known * self.sr_out // self.sr_in), self._seen * self.sr_out // self.sr_in)
        if (ready - self._emitted) * self.sr_in < self._min_input * self.sr_out:
            return np.zeros((0, self.channels), np.float32)
        return self._produce(ready)

    def flush(self) -> np.ndarray:
        """The remaining outputs, as if the input were followed by zeros; the total is floor(n * ratio)."""
        if self.sr_in == self.sr_out:
            return np.zeros((0, self.channels), np.float32)
        total = self._seen * self.sr_out // self.sr_in
        if total <= self._emitted:
            return np.zeros((0, self.channels), np.float32)
        return self._produce(total)

    def _produce(self, stop: int) -> np.ndarray:
        """Outputs [emitted, stop) from the buffer, then drop the input that no later output needs."""
        first_output = self._buffer_start * self.sr_out // self.sr_in  # exact: the start is aligned
        resampled = resampy.resample(self._buffer, self.sr_in, self.sr_out, axis=0, filter=self.filter)
        out = resampled[self._emitted - first_output : stop - first_output].astype(np.float32)
        self._emitted = stop
        needed = stop * self.sr_in // self.sr_out - self._reach
        keep_from = max(self._buffer_start, needed // self._align * self._align)
        self._buffer = self._buffer[keep_from - self._buffer_start :].copy()
        self._buffer_start = keep_from
        return out


# ------------------------------------------------------------------------------------------- windowing


def max_gap_samples(
    window: int = DEFAULT_WINDOW, overlap: int = DEFAULT_OVERLAP, context: int = DEFAULT_CONTEXT
) -> int:
    """Longest gap (model-rate samples) one window holds with ``context`` (at least the fade) each side."""
    return window - 2 * max(context, overlap)


def _check_layout(window: int, overlap: int, context: int = 0) -> None:
    """ValueError unless 1 <= overlap, 3 * overlap <= window and context >= 0."""
    if overlap < 1 or 3 * overlap > window or context < 0:
        raise AudioError(
            f"window layout needs 1 <= overlap <= window / 3 and context >= 0 "
            f"(got window {window}, overlap {overlap}, context {context})"
        )


def fade_starts(starts: Sequence[int], window: int, overlap: int) -> list[int]:
    """First sample of each crossfade: the one between windows k and k+1 is centred in their overlap.

    Fade k covers [f_k, f_k + overlap) with f_k = (s_k + s_{k+1} + window - overlap) // 2. Raises
    ValueError unless starts rise by 1 to window - overlap and each fade ends before the next begins."""
    _check_layout(window, overlap)
    fades = []
    for k in range(len(starts) - 1):
        hop = starts[k + 1] - starts[k]
        if not 1 <= hop <= window - overlap:
            raise ValueError(f"windows {k} and {k + 1}: hop {hop} is outside [1, window - overlap]")
        fades.append((starts[k] + starts[k + 1] + window - overlap) // 2)
        if k and fades[k] < fades[k - 1] + overlap:
            raise ValueError(f"window {k}: its two crossfades overlap (hops too small)")
    return fades


def _rise(positions: np.ndarray, fade: int, overlap: int) -> np.ndarray:
    """sin^2 ramp from 0 (before ``fade``) to 1 (from ``fade + overlap`` on), sampled at sample centres."""
    u = np.clip((positions - fade + 0.5) / overlap, 0.0, 1.0)
    return np.sin(0.5 * np.pi * u) ** 2


def window_weights(starts: Sequence[int], window: int, overlap: int, index: int) -> np.ndarray:
    """Crossfade weights (window,) float64 of window ``index``; over all windows they sum to 1 everywhere.

    The incoming window of a fade weighs r = sin^2, the outgoing one 1 - r, so every sample's weights
    add up to 1 (to float rounding). The first window has no fade-in and the last no fade-out."""
    return _weights(starts, fade_starts(starts, window, overlap), window, overlap, index)


def _weights(starts: Sequence[int], fades: list[int], window: int, overlap: int, index: int) -> np.ndarray:
    """:func:`window_weights` with the fades already computed."""
    positions = np.arange(window, dtype=np.float64) + starts[index]
    weights = np.ones(window)
    if index > 0:
        weights *= _rise(positions, fades[index - 1], overlap)
    if index < len(starts) - 1:
        weights *= 1.0 - _rise(positions, fades[index], overlap)
    return weights


class OverlapAdd:
    """Streaming crossfade of restored windows into one signal of ``n_samples`` frames.

    ``add(index, segment)`` takes windows in order (segment (window, channels)) and returns the samples
    that no later window touches, so they can be appended to a file; ``finish()`` returns what is left.
    Memory: about one window."""

    def __init__(self, n_samples: int, starts: Sequence[int], window: int, overlap: int, channels: int):
        self.starts, self.window, self.overlap = [int(s) for s in starts], int(window), int(overlap)
        self.n_samples, self.channels = int(n_samples), int(channels)
        self.fades = fade_starts(self.starts, self.window, self.overlap)
        if not self.starts or self.starts[0] > 0 or self.starts[-1] + self.window < self.n_samples:
            raise ValueError(f"the windows do not cover all {self.n_samples} samples")
        self._next = 0  # index of the next window expected
        self._done = 0  # samples returned so far
        self._pending = np.zeros((0, self.channels))  # sums for samples [done, done + len)

    @property
    def buffered(self) -> int:
        """Output frames held in memory now (not yet final)."""
        return len(self._pending)

    def add(self, index: int, segment: np.ndarray) -> np.ndarray:
        """Add window ``index`` (weighted); return the float32 samples that are now final."""
        if index != self._next:
            raise ValueError(f"windows must be added in order: expected {self._next}, got {index}")
        segment = np.asarray(segment)
        if segment.shape != (self.window, self.channels):
            raise ValueError(
                f"window {index}: expected shape {(self.window, self.channels)}, got {segment.shape}"
            )
        start, last = self.starts[index], index == len(self.starts) - 1
        lo = max(self.fades[index - 1] if index else start, 0)
        hi = min(start + self.window if last else self.fades[index] + self.overlap, self.n_samples)
        if hi > self._done + len(self._pending):
            extra = np.zeros((hi - self._done - len(self._pending), self.channels))
            self._pending = np.concatenate([self._pending, extra])
        if hi > lo:
            weights = _weights(self.starts, self.fades, self.window, self.overlap, index)[
                lo - start : hi - start
            ]
            self._pending[lo - self._done : hi - self._done] += (
                weights[:, None] * segment[lo - start : hi - start]
            )
        self._next += 1
        return self._release(self.n_samples if last else min(self.fades[index], self.n_samples))

    def finish(self) -> np.ndarray:
        """The samples not yet returned; ValueError if some window was never added."""
        if self._next != len(self.starts):
            raise ValueError(f"only {self._next} of {len(self.starts)} windows were added")
        return self._release(self.n_samples)

    def _release(self, stop: int) -> np.ndarray:
        """Hand out samples [done, stop) and forget them."""
        count = max(stop - self._done, 0)
        out = np.zeros((count, self.channels), np.float32)
        available = min(count, len(self._pending))
        out[:available] = self._pending[:available]
        self._pending = self._pending[available:]
        self._done += count
        return out


# ------------------------------------------------------------------------------------- window planning


def plan_windows(
    n_samples: int,
    window: int = DEFAULT_WINDOW,
    overlap: int = DEFAULT_OVERLAP,
    gaps: Sequence[tuple[int, int]] = (),
    context: int = DEFAULT_CONTEXT,
    sample_rate: int = MODEL_RATE,
) -> list[int]:
    """Start positions of the windows that cover [0, n_samples) (reads outside the file are zeros).

    Layout. Window k spans [s_k, s_k + window). Neighbours overlap by at least ``overlap`` (hops at most
    window - overlap, and at least ``overlap``); the crossfade between them is ``overlap`` samples long and
    centred in their overlap (see :func:`fade_starts`), i.e. at the midpoint between the window centres.
    A window's core, weight 1, lies between its fade-in and its fade-out. Without gaps the windows are
    spread evenly from s = 0 to s = n - window with the fewest windows (hop window - overlap or a little
    less), so no window is mostly padding.

    Gaps, (start, stop) model-rate sample ranges (merged when they touch): each gap lies inside ONE
    window's core, with at least ``context`` samples (and at least ``overlap``) of that window on both
    sides where the file has them, so no crossfade touches a gap. Gaps less than ``overlap`` apart share a
    window, and so do nearby gaps that fit in one window together. A gap window is centred on its gaps
    where it can be; the windows between gap windows are spread evenly. Raises AudioError for gaps longer
    than :func:`max_gap_samples` (times in the message are at ``sample_rate``; gaps at the file's ends
    may be longer, as their context is cut short there), and when two long gaps are too long to share a
    window yet too close for a window each: with centred fades, a window between two gap windows
    has a core half as long as their distance. It takes long gaps close together (two gaps alone must
    add up to more than (3 window - 3 overlap - 4 context) / 2, 2.9 s by default); separate runs work."""
    _check_layout(window, overlap, context)
    if n_samples < 1:
        raise AudioError("no samples to restore")
    spans = _normalise_gaps(gaps, n_samples, sample_rate)
    layout = _Layout(n_samples, window, overlap, max(context, overlap), sample_rate)
    forced = layout.cluster(spans, optional=False)
    try:
        starts = layout.solve(layout.cluster(spans, optional=True))
    except AudioError:
        starts = layout.solve(forced)
    fade_starts(starts, window, overlap)  # cheap consistency check of the plan
    return starts


def _normalise_gaps(gaps: Sequence[tuple[int, int]], n_samples: int, rate: int) -> list[tuple[int, int]]:
    """Sorted gaps with touching or overlapping ones merged; AudioError for empty or outside ranges."""
    spans = []
    for start, stop in sorted((int(a), int(b)) for a, b in gaps):
        if not 0 <= start < stop <= n_samples:
            raise AudioError(
                f"gap {start / rate:.2f}-{stop / rate:.2f} s is empty or outside the audio "
                f"(0-{n_samples / rate:.2f} s)"
            )
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(stop, spans[-1][1]))
        else:
            spans.append((start, stop))
    return spans


@dataclass(frozen=True)
class _Node:
    """A window the plan must contain: the file's first or last window, or the owner of a gap cluster.

    Its start must lie in [lo, hi]; ``gap_start``/``gap_stop`` bound its gaps (±_BIG for the virtual
    first/last windows, which own none)."""

    gap_start: int
    gap_stop: int
    lo: int
    hi: int
    preferred: int
    virtual: bool = False


@dataclass(frozen=True)
class _Region:
    """Pairs (s_a, s_b) of consecutive required windows joined by ``fill`` windows between them:
    s_a in [a_lo, a_hi], s_b in [b_lo, b_hi], s_b - s_a in [d_lo, d_hi], s_a + s_b in [sum_lo, sum_hi]."""

    fill: int
    a_lo: int
    a_hi: int
    b_lo: int
    b_hi: int
    d_lo: int
    d_hi: int
    sum_lo: int
    sum_hi: int

    def first_given(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
        """The s_a in interval ``a`` that pair with some s_b in interval ``b``."""
        a_lo, a_hi = max(a[0], self.a_lo), min(a[1], self.a_hi)
        b_lo, b_hi = max(b[0], self.b_lo), min(b[1], self.b_hi)
        if b_lo > b_hi or self.d_lo > self.d_hi or self.sum_lo > self.sum_hi:
            return None
        lo = max(a_lo, b_lo - self.d_hi, self.sum_lo - b_hi, -((self.d_hi - self.sum_lo) // 2))
        hi = min(a_hi, self.sum_hi - b_lo, b_hi - self.d_lo, (self.sum_hi - self.d_lo) // 2)
        return (lo, hi) if lo <= hi else None

    def second_given(self, s_a: int, b: tuple[int, int]) -> tuple[int, int] | None:
        """The s_b in interval ``b`` that pair with the window start ``s_a``."""
        if not self.a_lo <= s_a <= self.a_hi:
            return None
        lo = max(b[0], self.b_lo, s_a + self.d_lo, self.sum_lo - s_a)
        hi = min(b[1], self.b_hi, s_a + self.d_hi, self.sum_hi - s_a)
        return (lo, hi) if lo <= hi else None


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of integer intervals as a sorted list of disjoint ones."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _nearest(intervals: list[tuple[int, int]], target: int) -> int:
    """The point of a non-empty union of intervals nearest to ``target``."""
    return min((min(max(target, lo), hi) for lo, hi in intervals), key=lambda x: (abs(x - target), x))


@dataclass(frozen=True)
class _Layout:
    """Window placement for one file: required windows (first, gap owners, last) joined by fill windows.

    All constraints are linear in the window starts, so for each pair of consecutive required windows and
    each number of fill windows between them the allowed (s_a, s_b) form a :class:`_Region`. A backward
    pass finds, for every required window, the starts from which the rest of the file can still be
    planned; a forward pass then picks, window by window, the allowed start nearest the preferred one."""

    n: int
    window: int
    overlap: int
    margin: int  # context on each side of a gap: max(context, overlap)
    rate: int

    @property
    def hop(self) -> int:
        return self.window - self.overlap

    def owner(self, start: int, stop: int) -> _Node | None:
        """The required window of gaps spanning [start, stop), or None if they do not fit in one."""
        lo = stop + min(self.margin, self.n - stop) - self.window
        hi = start - min(self.margin, start)
        centred = min(max((start + stop - self.window) // 2, 0), max(self.n - self.window, 0))
        return _Node(start, stop, lo, hi, min(max(centred, lo), hi)) if lo <= hi else None

    def cluster(self, spans: list[tuple[int, int]], optional: bool) -> list[_Node]:
        """Required windows: gaps closer than the fade share one (AudioError if they do not fit);
        with ``optional``, so do neighbouring gaps that fit in one window together."""
        groups: list[tuple[int, int, int]] = []  # (start, stop, gap count)
        for start, stop in spans:
            if groups and (
                start - groups[-1][1] < self.overlap or optional and self.owner(groups[-1][0], stop)
            ):
                groups[-1] = (groups[-1][0], stop, groups[-1][2] + 1)
            else:
                groups.append((start, stop, 1))
        nodes = [_Node(-_BIG, -_BIG, 1 - self.window, 0, 0, virtual=True)]
        for start, stop, count in groups:
            node = self.owner(start, stop)
            if node is None:
                raise AudioError(self._too_long(start, stop, count))
            nodes.append(node)
        last = _Node(_BIG, _BIG, self.n - self.window, self.n - 1, self.n - self.window, virtual=True)
        return [*nodes, last]

    def _too_long(self, start: int, stop: int, count: int) -> str:
        """Why gaps spanning [start, stop) cannot be filled."""
        seconds = lambda samples: f"{samples / self.rate:.2f} s"  # noqa: E731
        limit = max_gap_samples(self.window, self.overlap, self.margin)
        span = f"{start / self.rate:.2f}-{seconds(stop)}"
        what = (
            f"gap {span} is"
            if count == 1
            else f"gaps {span} are less than {seconds(self.overlap)} apart, so they are filled together, and"
        )
        return (
            f"{what} {seconds(stop - start)} long; at most {seconds(limit)} can be filled "
            f"({seconds(self.window)} window, {seconds(self.margin)} of context each side)"
        )

    def regions(self, a: _Node, b: _Node) -> Iterator[_Region]:
        """Allowed (s_a, s_b) for each number of fill windows that can join ``a`` and ``b``."""
        w, o, h = self.window, self.overlap, self.hop
        d_min, d_max = max(b.lo - a.hi, o), b.hi - a.lo
        if d_max < o:
            return
        fade_after_a = 2 * a.gap_stop - w  # + overlap: the fade after a starts at or after a's gaps
        fade_before_b = 2 * b.gap_start - w + 1  # - overlap: the fade before b ends at or before b's gaps
        yield _Region(0, -_BIG, _BIG, -_BIG, _BIG, o, h, fade_after_a + o, fade_before_b - o)
        for fill in range(max(1, -(-d_min // h) - 1), -(-d_max // h)):
            yield _Region(
                fill,
                -((h - fade_after_a - o) // 2),  # a fill window fits after a ...
                _BIG,
                -_BIG,
                (fade_before_b - o + h) // 2,  # ... and before b
                max((fill + 1) * o, fill * h + 1),
                min((fill + 1) * h, 2 * (b.gap_start - a.gap_stop) + 1 - (fill + 1) * o),
                fade_after_a + (fill + 1) * o,
                fade_before_b - (fill + 1) * o,
            )

    def solve(self, nodes: list[_Node]) -> list[int]:
        """Window starts for the required windows ``nodes`` and the fill between them."""
        feasible = [[(nodes[-1].lo, nodes[-1].hi)]]
        for a, b in zip(nodes[-2::-1], nodes[:0:-1], strict=True):
            parts = []
            for interval in feasible[0]:
                if a.virtual or b.virtual:  # a gap window may be the first or last window itself
                    parts.append((max(a.lo, interval[0]), min(a.hi, interval[1])))
                parts += [r.first_given((a.lo, a.hi), interval) for r in self.regions(a, b)]
            feasible.insert(0, _merge([p for p in parts if p is not None and p[0] <= p[1]]))
            if not feasible[0]:
                raise AudioError(self._too_close(a, b))
        starts = [_nearest(feasible[0], nodes[0].preferred)]
        for a, b, allowed in zip(nodes[:-1], nodes[1:], feasible[1:], strict=True):
            starts += self._next(starts[-1], a, b, allowed)
        return starts

    def _too_close(self, a: _Node, b: _Node) -> str:
        """Why no layout exists from required window ``a`` on (it or the next one is a gap window)."""
        gap = b if a.virtual else a
        where = f"{gap.gap_start / self.rate:.2f}-{gap.gap_stop / self.rate:.2f} s"
        return (
            f"the gap at {where} and the next one are too long for their distance: no window layout gives "
            f"each {self.margin / self.rate:.2f} s of context; restore them in separate runs"
        )

    def _next(self, s_a: int, a: _Node, b: _Node, allowed: list[tuple[int, int]]) -> list[int]:
        """Fill windows and the start of ``b`` after window ``a`` at ``s_a``; [] when b is a itself."""
        candidates: list[tuple[tuple[int, int], _Region | None]] = []
        for interval in allowed:
            if (a.virtual or b.virtual) and interval[0] <= s_a <= interval[1]:
                candidates.append(((s_a, s_a), None))
            for region in self.regions(a, b):
                found = region.second_given(s_a, interval)
                candidates += [(found, region)] if found else []
        s_b = _nearest([interval for interval, _ in candidates], b.preferred)
        if s_b == s_a:
            return []
        fill = min(r.fill for (lo, hi), r in candidates if r is not None and lo <= s_b <= hi)
        return [*self._fill(s_a, s_b, a, b, fill), s_b]

    def _fill(self, s_a: int, s_b: int, a: _Node, b: _Node, fill: int) -> list[int]:
        """``fill`` windows between a at s_a and b at s_b, as evenly spaced as the gaps allow."""
        if fill == 0:
            return []
        w, o, h = self.window, self.overlap, self.hop
        first = (max(2 * a.gap_stop - w + o - s_a, s_a + o), s_a + h)  # fade after a clears a's gaps
        last = (s_b - h, min(2 * b.gap_start - w - o + 1 - s_b, s_b - o))  # fade before b clears b's gaps
        spread_lo, spread_hi = (fill - 1) * o, (fill - 1) * h  # from the first fill window to the last
        spacing = (s_b - s_a) / (fill + 1)
        y_first = _clamp(
            round(s_a + spacing), max(first[0], last[0] - spread_hi), min(first[1], last[1] - spread_lo)
        )
        y_last = _clamp(
            round(s_b - spacing), max(last[0], y_first + spread_lo), min(last[1], y_first + spread_hi)
        )
        if fill == 1:
            return [y_first]
        hops, extra = divmod(y_last - y_first, fill - 1)
        return [y_first + j * hops + min(j, extra) for j in range(fill)]


def _clamp(value: int, lo: int, hi: int) -> int:
    """``value`` limited to [lo, hi]."""
    return min(max(value, lo), hi)
