"""Note accuracy: transcribe piano audio with Basic Pitch, score note-onset F1 by mir_eval's rules.

Transcription: Basic Pitch (Bittner et al., ICASSP 2022), the ONNX model inside the ``basic-pitch``
wheel (no download), run by onnxruntime on 22.05 kHz mono audio in basic-pitch's own 2-s windows
(30 overlapping frames) with its default note decoding: onset threshold 0.5, frame threshold 0.3,
notes of at least 127.7 ms, the melodia trick. Its notes are MIDI pitches with onsets on an 11.6-ms
frame grid.

Matching (mir_eval.transcription, offsets ignored): a reference note and an estimated note match when
their onsets lie within 50 ms and their pitches within 50 cents; each note matches at most once, and
as many pairs as possible are matched (a maximum bipartite matching). F1 = 2PR / (P + R) with
P = matched / estimated and R = matched / reference notes, i.e. 2·hits / (2·hits + misses + false
notes): 1 for the same notes, 0 when nothing matches, NaN when neither side has a note. Restricted to a
time window (an inpainting gap), the matching is still made over the whole segment; a matched pair counts
when either onset lies in the window, an unmatched note when its own onset does, so a note at the edge of
the window is not lost by a one-frame shift of its onset.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

ONSET_TOLERANCE = 0.05  # seconds, mir_eval's default
PITCH_TOLERANCE = 50.0  # cents, mir_eval's default
DECIMALS = 7  # distances are rounded like mir_eval's, so exactly 50 ms matches
TRANSCRIPTION_RATE = 22050  # Basic Pitch's input rate
INSTALL_HINT = "pip install -e '.[metrics]' && pip install --no-deps basic-pitch==0.4.0"
# Basic Pitch's ONNX graph: input and output tensor names (as basic_pitch.inference.Model.predict names them)
ONNX_INPUT = "serving_default_input_2:0"
ONNX_OUTPUTS = {
    "note": "StatefulPartitionedCall:1",
    "onset": "StatefulPartitionedCall:2",
    "contour": "StatefulPartitionedCall:0",
}


@dataclass(frozen=True)
class Notes:
    """Note events: onset times in seconds and MIDI pitches (fractional allowed), sorted by onset."""

    onsets: np.ndarray
    pitches: np.ndarray

    @classmethod
    def of(cls, events: Iterable[tuple[float, float]]) -> Notes:
        """Notes from (onset s, MIDI pitch) pairs."""
        pairs = sorted(tuple(map(float, event)) for event in events)
        table = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
        return cls(table[:, 0].copy(), table[:, 1].copy())

    def __len__(self) -> int:
        return len(self.onsets)


# ---------------------------------------------------------------- matching and F1


def match_notes(
    reference: Notes,
    estimate: Notes,
    onset_tolerance: float = ONSET_TOLERANCE,
    pitch_tolerance: float = PITCH_TOLERANCE,
) -> list[tuple[int, int]]:
    """A maximum set of (reference index, estimate index) pairs with onsets and pitches within tolerance."""
    onset_gap = np.round(np.abs(np.subtract.outer(reference.onsets, estimate.onsets)), DECIMALS)
    cents = np.round(100 * np.abs(np.subtract.outer(reference.pitches, estimate.pitches)), DECIMALS)
    return maximum_matching((onset_gap <= onset_tolerance) & (cents <= pitch_tolerance))


def maximum_matching(allowed: np.ndarray) -> list[tuple[int, int]]:
    """Maximum bipartite matching of rows to columns along True entries (Kuhn's augmenting paths)."""
    neighbours = [np.flatnonzero(row).tolist() for row in allowed]
    owner = [-1] * allowed.shape[1]  # column -> matched row

    def augment(row: int, seen: set[int]) -> bool:
        for column in neighbours[row]:
            if column not in seen:
                seen.add(column)
                if owner[column] < 0 or augment(owner[column], seen):
                    owner[column] = row
                    return True
        return False

    for row in range(len(neighbours)):
        augment(row, set())
    return sorted((row, column) for column, row in enumerate(owner) if row >= 0)


def _inside(onsets: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    if window is None:
        return np.ones(len(onsets), dtype=bool)
    return (onsets >= window[0]) & (onsets < window[1])


def onset_f1(reference: Notes, estimate: Notes, window: tuple[float, float] | None = None) -> float:
    """Note-onset F1 of estimated against reference notes, optionally of onsets in [start, stop) s."""
    ref_in, est_in = _inside(reference.onsets, window), _inside(estimate.onsets, window)
    pairs = match_notes(reference, estimate)
    hits = sum(1 for r, e in pairs if ref_in[r] or est_in[e])
    matched_ref, matched_est = {r for r, _ in pairs}, {e for _, e in pairs}
    misses = sum(1 for r in np.flatnonzero(ref_in) if r not in matched_ref)
    false_notes = sum(1 for e in np.flatnonzero(est_in) if e not in matched_est)
    total = 2 * hits + misses + false_notes
    return math.nan if total == 0 else 2 * hits / total


# ---------------------------------------------------------------- transcription


def unavailable() -> str | None:
    """Why transcription cannot run here (basic-pitch or onnxruntime missing), or None when it can."""
    try:
        with _quiet_imports():
            import basic_pitch.note_creation  # noqa: F401
            import onnxruntime  # noqa: F401
    except ImportError as error:
        return f"note-F1 needs basic-pitch and onnxruntime ({INSTALL_HINT}): {error}"
    return None


@contextlib.contextmanager
def _quiet_imports() -> Iterator[None]:
    """basic_pitch logs a warning at import for each backend (TensorFlow, CoreML, TFLite) it lacks."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


@functools.cache
def _session(threads: int):  # -> onnxruntime.InferenceSession, imported lazily
    """Basic Pitch's ONNX model (shipped in its wheel) in an onnxruntime session on the CPU."""
    import onnxruntime

    with _quiet_imports():
        from basic_pitch import FilenameSuffix, build_icassp_2022_model_path
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    path = str(build_icassp_2022_model_path(FilenameSuffix.onnx))
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def model_output(audio: np.ndarray, threads: int = 1) -> dict[str, np.ndarray]:
    """Basic Pitch's frame-wise note, onset and contour activations of 22.05 kHz mono audio."""
    with _quiet_imports():
        from basic_pitch.constants import AUDIO_N_SAMPLES, FFT_HOP
        from basic_pitch.inference import unwrap_output, window_audio_file
    overlap_frames = 30  # as basic_pitch.inference.run_inference
    overlap = overlap_frames * FFT_HOP
    padded = np.concatenate([np.zeros(overlap // 2, np.float32), np.asarray(audio, np.float32)])
    session, names = _session(threads), list(ONNX_OUTPUTS.values())
    outputs: dict[str, list[np.ndarray]] = {key: [] for key in ONNX_OUTPUTS}
    for window, _ in window_audio_file(padded, AUDIO_N_SAMPLES - overlap):
        for key, value in zip(ONNX_OUTPUTS, session.run(names, {ONNX_INPUT: window[None]}), strict=True):
            outputs[key].append(value)
    return {k: unwrap_output(np.concatenate(v), len(audio), overlap_frames) for k, v in outputs.items()}


def transcribe(audio: np.ndarray, sample_rate: int = TRANSCRIPTION_RATE, threads: int = 1) -> Notes:
    """The notes Basic Pitch hears in mono audio (length,), resampled to 22.05 kHz first if needed."""
    audio = np.asarray(audio, dtype=np.float64)
    if sample_rate != TRANSCRIPTION_RATE:
        import resampy

        audio = resampy.resample(audio, sample_rate, TRANSCRIPTION_RATE, filter="kaiser_best")
    with _quiet_imports():
        from basic_pitch.note_creation import model_output_to_notes
    _, events = model_output_to_notes(
        model_output(audio, threads), onset_thresh=0.5, frame_thresh=0.3, min_note_len=11
    )  # min_note_len: 127.7 ms in 11.6-ms frames, basic-pitch's default
    return Notes.of((float(start), float(pitch)) for start, _, pitch, *_ in events)
