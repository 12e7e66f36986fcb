#!/usr/bin/env python
"""Render a reproducible synthesised piano corpus from the scores bundled with music21.

    python scripts/make_piano_corpus.py --out data/piano --hours 20 --seed 0 [--jobs 1]

Pipeline, one piece at a time:

1. score -> note list: music21 parses a corpus score, expands its repeats and flattens every part into
   (onset, duration, pitch, part) in quarter notes; the result is cached as JSON in OUT/.cache.
   Single-line tunes (folk songs, lead sheets) get a generated bass-and-chords accompaniment.
2. plan: families of scores (bach, palestrina, folk, ...) take turns, the one with the fewest hours so
   far goes next, until --hours of audio are planned; scores longer than ~10 min are cut into sections.
   Every piece gets its own random preset, transposition, tempo, pedalling and reverb, all drawn from a
   generator seeded by (seed, piece); train/valid is a hash of (seed, work), so the movements of a work
   and the variants of a tune stay on one side.
3. performance: tempo map (global tempo, slow drift, phrase-end and final ritardandi, fermatas),
   velocities (marked dynamics, phrase arches, metric and melody accents, noise), onset jitter and a
   sustain-pedal heuristic (CC64 re-pressed on harmony, bar or beat changes) -> a standard MIDI file.
4. audio: fluidsynth renders it with one of eight piano presets of two Debian soundfonts (MuseScore
   General's grands and honky-tonk, csound's GM bank; see PRESETS), a small random detuning and
   randomised reverb; the result is mixed to mono, resampled to 22.05 kHz, trimmed, normalised around
   MAESTRO's loudness and written as FLAC chunks of at most 60 s. Every valid rendering is rendered once
   more with a held-out soundfont (TimGM6mb's Piano 1) into the 'heldout' split, a second validation
   set whose timbre training never hears. FluidR3 is refused: it is kept aside for evaluation.

Finished pieces leave a marker in OUT/.done, so a killed run resumes where it stopped. OUT/manifest.csv
lists every chunk and OUT/summary.md sums the corpus up. Everything above step 4 is pure Python and numpy
(music21 and mido are imported inside the functions that need them), so tests can import this file.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import hashlib
import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Timbre:
    """One piano preset of one Debian soundfont, and its share of the training renderings."""

    package: str  # the Debian package that installs the soundfont
    file: str  # its file name under /usr/share/sounds/sf2
    bank: int
    program: int
    weight: float  # share of the training renderings (0: never trained on)


MUSESCORE = ("musescore-general-soundfont-lossless", "MuseScore_General_Full.sf2")
GMBANK = ("csound-soundfont", "sf_GMbank.sf2")
TIMGM = ("timgm6mb-soundfont", "TimGM6mb.sf2")
PRESETS = {
    "grand": Timbre(*MUSESCORE, 0, 0, 0.24),  # MuseScore General: Grand Piano
    "mellow": Timbre(*MUSESCORE, 8, 0, 0.20),  # Mellow Grand Piano
    "bright": Timbre(*MUSESCORE, 0, 1, 0.14),  # Bright Grand Piano
    "honkytonk": Timbre(*MUSESCORE, 0, 3, 0.08),  # Honky-Tonk Piano: a detuned upright
    "gmbank-piano1": Timbre(*GMBANK, 0, 0, 0.10),  # csound's GM bank: Piano 1
    "gmbank-piano2": Timbre(*GMBANK, 0, 1, 0.06),  # Piano 2
    "gmbank-acoustic1": Timbre(*GMBANK, 127, 0, 0.12),  # Acou Piano 1
    "gmbank-acoustic2": Timbre(*GMBANK, 127, 1, 0.06),  # Acou Piano 2
    # Held out: a soundfont never trained on; the valid works rendered with it form the 'heldout' split.
    "timgm-piano1": Timbre(*TIMGM, 0, 0, 0.0),  # TimGM6mb: Piano 1
}
HELDOUT_PRESET = "timgm-piano1"
# Kept aside to measure how the prior generalises: never rendered for training.
FORBIDDEN_SOUNDFONTS = ("fluidr3", "fluid-soundfont")
DETUNE_CENTS = 6.0  # std of a rendering's overall tuning offset (pitch wheel; clipped to +-20 cents)
PITCH_BEND_RANGE_CENTS = 200.0  # fluidsynth's default pitch-wheel sensitivity: 2 semitones
TRAIN_PRESETS = [name for name, timbre in PRESETS.items() if timbre.weight > 0]
TRAIN_WEIGHTS = np.array([PRESETS[name].weight for name in TRAIN_PRESETS]) / sum(
    PRESETS[name].weight for name in TRAIN_PRESETS
)
HELDOUT_SUFFIX = "_h"  # piece id of a valid rendering's held-out-timbre twin
PIANO_LOW, PIANO_HIGH = 21, 108  # A0 and C8 as MIDI keys
RENDER_RATE, OUT_RATE = 44100, 22050
MAESTRO_RMS = 0.057  # MAESTRO's typical RMS: the level the piano prior is trained at
PEAK_LIMIT = 0.98
MAX_CHUNK_S = 60.0
MAX_SECTION_S = 600.0  # longer scores are rendered in sections, each with its own settings
TRIMMED_S = 0.8  # silent lead-in and tail that trimming removes from a rendering, on average (seed 0)
VALID_FRACTION = 0.05
MAX_PASSES = 4  # how often one score may be rendered (with new settings) when the corpus runs short
FOLK_DIRS = {"ryansMammoth", "oneills1850", "essenFolksong", "airdsAirs", "miscFolk", "nottingham-dataset"}
SKIP_DIRS = {"demos", "theoryExercises"}  # test files, not music
SKIP_SUFFIXES = {".rntxt"}  # roman-numeral analyses, not scores
FAMILY_WEIGHTS = {"folk": 0.5, "leadSheet": 0.5}  # generated accompaniments: fewer hours of those
CACHE_VERSION = 2
MANIFEST_FIELDS = [
    "path", "split", "piece_id", "source", "work", "family", "pass", "preset", "bank", "program", "transpose",
    "tempo_factor", "qpm", "pedal", "accompaniment", "reverb_room", "reverb_damp", "reverb_width",
    "reverb_level", "reverb_send", "chunk", "duration_s", "rms", "peak", "soundfont", "detune_cents",
]  # fmt: skip

# Krumhansl-Kessler key profiles, tonic first.
MAJOR_PROFILE = [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]
MINOR_PROFILE = [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]
MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11]
HARMONIC_MINOR_SCALE = [0, 2, 3, 5, 7, 8, 11]
CHORD_PRIOR = {0: 1.0, 4: 0.8, 3: 0.6, 5: 0.4, 1: 0.3}  # scale degree of the root -> preference


@dataclass
class ScoreNotes:
    """A score flattened to notes, in quarter notes (ql)."""

    notes: list[tuple[float, float, int, int]]  # (onset_ql, duration_ql, midi pitch, part)
    bar_starts: list[float]
    beat_ql: float = 1.0
    tempi: tuple[tuple[float, float], ...] = ()  # (onset_ql, quarter notes per minute) marked in the score
    dynamics: tuple[tuple[float, float], ...] = ()  # (onset_ql, loudness 0..1) marked in the score
    fermatas: tuple[float, ...] = ()  # onsets of notes under a fermata


@dataclass(frozen=True)
class RenderParams:
    """Everything random about one rendering of one score."""

    preset: str
    transpose: int
    tempo_factor: float
    pedal: str  # "harmony", "bar", "beat" or "none"
    accompaniment: str  # "" for scores that have their own, else the pattern name
    articulation: float  # sounding fraction of a note's written length
    loudness_db: float  # offset from MAESTRO_RMS
    reverb_room: float
    reverb_damp: float
    reverb_width: float
    reverb_level: float
    reverb_send: int  # CC91
    detune_cents: float = 0.0  # overall tuning offset, sent as one pitch-wheel message


@dataclass
class Performance:
    notes: list[tuple[float, float, int, int]]  # (onset_s, offset_s, midi pitch, velocity)
    pedal: list[tuple[float, int]]  # (time_s, CC64 value), alternately 127 and 0
    duration_s: float
    qpm: float


# ---------------------------------------------------------------------------------------------- random
def stable_seed(*parts: object) -> int:
    """A 64-bit seed from the text of `parts`, the same in every process and Python version."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


def piece_rng(seed: int, piece_id: str) -> np.random.Generator:
    return np.random.default_rng(stable_seed(seed, piece_id))


def assign_split(source: str, seed: int, valid_fraction: float = VALID_FRACTION) -> str:
    """'valid' for about `valid_fraction` of sources, 'train' for the rest; a function of (seed, source)."""
    u = stable_seed("split", seed, source) / 2.0**64
    return "valid" if u < valid_fraction else "train"


# ------------------------------------------------------------------------------------ score analysis
def onset_groups(notes: Iterable[tuple[float, float, int, int]]) -> dict[float, list[int]]:
    groups: dict[float, list[int]] = defaultdict(list)
    for onset, _, pitch, _ in notes:
        groups[onset].append(pitch)
    return dict(sorted(groups.items()))


def is_monophonic(notes: list[tuple[float, float, int, int]], tolerance: float = 0.05) -> bool:
    """True when almost no note starts while another still sounds (a single melodic line)."""
    overlapping, sounding_until = 0, -math.inf
    for onset, duration, _, _ in sorted(notes):
        overlapping += onset < sounding_until - 1e-6
        sounding_until = max(sounding_until, onset + duration)
    return overlapping <= tolerance * len(notes)


def estimate_key(notes: list[tuple[float, float, int, int]]) -> tuple[int, str]:
    """(tonic pitch class, 'major' | 'minor') by correlating the duration-weighted pitch-class histogram
    with the Krumhansl-Kessler profiles."""
    histogram = np.zeros(12)
    for _, duration, pitch, _ in notes:
        histogram[pitch % 12] += duration
    best = (-2.0, 0, "major")
    for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = np.corrcoef(histogram, np.roll(profile, tonic))[0, 1]
            if np.isfinite(r) and r > best[0]:
                best = (r, tonic, mode)
    return best[1], best[2]


def diatonic_triads(tonic: int, mode: str) -> dict[int, tuple[int, int, int]]:
    """Scale degree (0 = I) -> pitch classes (root, third, fifth) of the triads used to harmonise."""
    scale = MAJOR_SCALE if mode == "major" else HARMONIC_MINOR_SCALE
    triads = {}
    for degree in CHORD_PRIOR:
        triads[degree] = tuple((tonic + scale[(degree + step) % 7]) % 12 for step in (0, 2, 4))
    return triads


def harmonise(
    melody: list[tuple[float, float, int, int]], spans: list[tuple[float, float]], tonic: int, mode: str
) -> list[int]:
    """One triad (scale degree) per span: the one whose tones cover most of the melody there, with a bias
    towards I, V and IV, towards keeping the chord, and an authentic cadence at the end."""
    triads = diatonic_triads(tonic, mode)
    degrees: list[int] = []
    for index, (start, end) in enumerate(spans):
        inside = [(o, d, p) for o, d, p, _ in melody if start <= o < end]
        scores = {}
        for degree, pcs in triads.items():
            fit = sum(
                min(d, end - o) * (1.5 if o == start else 1.0) * (1 if p % 12 in pcs else -0.6)
                for o, d, p in inside
            )
            keep = 0.2 if degrees and degrees[-1] == degree else 0.0
            scores[degree] = fit + CHORD_PRIOR[degree] + keep
        if index == len(spans) - 1:
            scores[0] += 10.0
        elif index == len(spans) - 2:
            scores[4] += 0.8
        degrees.append(max(scores, key=scores.get))
    return degrees


def harmonic_spans(bar_starts: list[float], end_ql: float, beat_ql: float) -> list[tuple[float, float]]:
    """Half bars for bars of four beats, whole bars otherwise."""
    bounds = [b for b in bar_starts if b < end_ql] + [end_ql]
    spans = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if round((end - start) / beat_ql) == 4:
            spans += [(start, start + (end - start) / 2), (start + (end - start) / 2, end)]
        elif end > start:
            spans.append((start, end))
    return spans


def voice_triad(pcs: tuple[int, int, int], ceiling: int) -> list[int]:
    """Close-position triad whose top note is the highest chord tone at or below `ceiling`."""
    top = max(p for p in range(ceiling - 11, ceiling + 1) if p % 12 in pcs)
    chord = [top]
    while len(chord) < 3:
        chord.append(
            max(
                p
                for p in range(chord[-1] - 9, chord[-1])
                if p % 12 in pcs and p % 12 not in {c % 12 for c in chord}
            )
        )
    return sorted(chord)


ACCOMPANIMENT_PATTERNS = ("block", "oompah", "broken", "alberti")


def accompany(score: ScoreNotes, pattern: str) -> ScoreNotes:
    """The single line of `score` as part 0 (raised an octave when it lies low) plus a generated left hand
    (part 1)."""
    low = min(p for _, _, p, _ in score.notes)
    lift = 12 if low < 57 else 0
    melody = [(o, d, p + lift, 0) for o, d, p, _ in score.notes]
    end = max(o + d for o, d, _, _ in melody)
    tonic, mode = estimate_key(melody)
    spans = harmonic_spans(score.bar_starts or [0.0], end, score.beat_ql)
    degrees = harmonise(melody, spans, tonic, mode)
    triads = diatonic_triads(tonic, mode)
    ceiling = min(low + lift - 3, 64)
    left: list[tuple[float, float, int, int]] = []
    for (start, stop), degree in zip(spans, degrees, strict=True):
        chord = voice_triad(triads[degree], ceiling)
        bass = max(p for p in range(chord[0] - 19, chord[0] - 7) if p % 12 == triads[degree][0])
        left += pattern_notes(pattern, start, stop, score.beat_ql, bass, chord)
    return ScoreNotes(
        melody + left, score.bar_starts, score.beat_ql, score.tempi, score.dynamics, score.fermatas
    )


def pattern_notes(
    pattern: str, start: float, stop: float, beat: float, bass: int, chord: list[int]
) -> list[tuple[float, float, int, int]]:
    length = stop - start
    if pattern == "block" or length < beat * 1.5:
        return [(start, length, p, 1) for p in [bass, *chord]]
    if pattern == "oompah":
        beats = np.arange(start + beat, stop - 1e-6, beat)
        return [(start, beat, bass, 1)] + [(float(b), beat * 0.9, p, 1) for b in beats for p in chord]
    step = beat / 2
    order = (
        [bass, chord[0], chord[1], chord[2], chord[1], chord[0]]
        if pattern == "broken"
        else [chord[0], chord[2], chord[1], chord[2]]
    )
    notes = [(start, length, bass, 1)] if pattern == "alberti" else []
    for i, t in enumerate(np.arange(start, stop - 1e-6, step)):
        notes.append((float(t), step, order[i % len(order)], 1))
    return notes


def merge_ties(
    tied: list[tuple[float, float, int, int, str | None]],
) -> list[tuple[float, float, int, int]]:
    """(onset, duration, pitch, part, tie type) -> notes, each tie chain ('start', 'continue'..., 'stop')
    merged into one note. A note that follows a tie start on the same key without a gap continues it even
    when its own 'stop' is missing (as in some corpus files); a 'stop' with nothing to end starts a note."""
    notes: list[list] = []
    open_ties: dict[tuple[int, int], int] = {}  # (part, pitch) -> index in notes of the tied note
    for onset, duration, pitch, part, tie in sorted(tied, key=lambda n: n[0]):
        key = (part, pitch)
        held = open_ties.pop(key, None)
        if held is not None and abs(sum(notes[held][:2]) - onset) < 1e-3:
            notes[held][1] += duration
        else:
            held = len(notes)
            notes.append([onset, duration, pitch, part])
        if tie in ("start", "continue"):
            open_ties[key] = held
    return sorted((o, d, p, v) for o, d, p, v in notes)


def section_bounds(score: ScoreNotes, qpm: float, max_s: float = MAX_SECTION_S) -> list[tuple[float, float]]:
    """(start, stop) in ql of near-equal sections, cut at bar lines, that last at most about `max_s` at
    `qpm`; one section for a short score."""
    end = max(o + d for o, d, _, _ in score.notes)
    count = math.ceil(end * 60 / qpm / max_s)
    cuts = [0.0]
    for k in range(1, count):
        target = end * k / count
        cut = min(score.bar_starts, key=lambda b: abs(b - target)) if score.bar_starts else target
        if cuts[-1] < cut < end:
            cuts.append(cut)
    return list(zip(cuts, [*cuts[1:], end], strict=True))


def score_section(score: ScoreNotes, start: float, stop: float) -> ScoreNotes:
    """The notes starting in [start, stop), moved to start at 0, with the marks in force there."""

    def marks(items: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        before = [(0.0, value) for t, value in items if t <= start][-1:]
        return tuple(before + [(t - start, value) for t, value in items if start < t < stop])

    return ScoreNotes(
        [(o - start, d, p, v) for o, d, p, v in score.notes if start <= o < stop],
        [b - start for b in score.bar_starts if start <= b < stop] or [0.0],
        score.beat_ql,
        marks(score.tempi),
        marks(score.dynamics),
        tuple(f - start for f in score.fermatas if start <= f < stop),
    )


# ---------------------------------------------------------------------------------- transposition
def fold_into_range(pitch: int) -> int:
    """Move a key by octaves until it lies on the piano (A0..C8)."""
    while pitch < PIANO_LOW:
        pitch += 12
    while pitch > PIANO_HIGH:
        pitch -= 12
    return pitch


def choose_transposition(pitches: list[int], rng: np.random.Generator, max_shift: int = 6) -> int:
    """A random shift in -max_shift..max_shift semitones that keeps every note on the keyboard (0 if none
    does; then `transpose_notes` folds the stragglers)."""
    low, high = min(pitches), max(pitches)
    allowed = [s for s in range(-max_shift, max_shift + 1) if low + s >= PIANO_LOW and high + s <= PIANO_HIGH]
    return int(rng.choice(allowed)) if allowed else 0


def transpose_notes(
    notes: list[tuple[float, float, int, int]], shift: int
) -> list[tuple[float, float, int, int]]:
    """Shift, fold into the piano's range, and merge unison doublings (one key cannot sound twice)."""
    merged: dict[tuple[float, int], tuple[float, float, int, int]] = {}
    for onset, duration, pitch, part in notes:
        key = fold_into_range(pitch + shift)
        previous = merged.get((onset, key))
        if previous is None or duration > previous[1]:
            merged[(onset, key)] = (onset, duration, key, part)
    return sorted(merged.values())


# ------------------------------------------------------------------------------------------ tempo
DEFAULT_BEATS_PER_MINUTE = {0.5: 140.0, 1.0: 88.0, 1.5: 66.0, 2.0: 64.0, 3.0: 48.0, 4.0: 40.0}


def base_tempo(score: ScoreNotes) -> float:
    """Quarter notes per minute: the score's first mark, else a default for its beat unit, pulled into a
    range where the median time between onsets is 0.12-0.9 s."""
    if score.tempi:
        qpm = float(np.clip(score.tempi[0][1], 30.0, 220.0))
    else:
        qpm = DEFAULT_BEATS_PER_MINUTE.get(score.beat_ql, 88.0 / score.beat_ql) * score.beat_ql
    onsets = sorted({n[0] for n in score.notes})
    if len(onsets) > 2:
        median_ioi = float(np.median(np.diff(onsets)))
        qpm = float(np.clip(qpm, median_ioi * 60 / 0.9, median_ioi * 60 / 0.12))
    return qpm


def phrase_starts(score: ScoreNotes, bars_per_phrase: int, end_ql: float) -> list[float]:
    """Phrase boundaries: after each fermata when the score has them, else every few bars."""
    if score.fermatas:
        starts = [0.0] + sorted(
            {next((o + d for o, d, _, _ in score.notes if o == f), f) for f in score.fermatas}
        )
    else:
        starts = [0.0] + list(score.bar_starts[bars_per_phrase::bars_per_phrase])
    return sorted({s for s in starts if s < end_ql})


def tempo_map(
    score: ScoreNotes,
    end_ql: float,
    qpm: float,
    rng: np.random.Generator,
    phrases: list[float],
    step: float = 1 / 16,
    max_fermata_extra_s: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """(grid in ql, seconds at each grid point): slow drift, marked tempo changes, ritardandi at phrase ends
    and at the end, fermatas held 1.6-2.2x (but at most `max_fermata_extra_s` longer). Strictly increasing
    by construction."""
    grid = np.arange(0.0, end_ql + step, step)
    bar = max(score.bar_starts[1] - score.bar_starts[0], score.beat_ql) if len(score.bar_starts) > 1 else 4.0
    knots = np.arange(0.0, end_ql + 2 * bar, bar)
    drift = np.cumsum(rng.normal(0.0, 0.025, len(knots)))
    drift = 0.06 * np.tanh((drift - drift.mean()) / 0.06)
    log_tempo = np.interp(grid, knots, drift)
    base = np.full_like(grid, qpm)
    if score.tempi:
        marks = np.array(score.tempi)
        index = np.searchsorted(marks[:, 0], grid, side="right") - 1
        base = np.where(index >= 0, np.clip(marks[np.maximum(index, 0), 1], 30, 220) * qpm / marks[0, 1], qpm)
    slow = np.ones_like(grid)
    for boundary in phrases[1:]:
        depth = rng.uniform(0.04, 0.18)
        ramp = np.clip((grid - (boundary - score.beat_ql)) / score.beat_ql, 0, 1) * (grid < boundary)
        slow *= 1 - depth * ramp
    final = np.clip((grid - (end_ql - 2 * score.beat_ql)) / (2 * score.beat_ql), 0, 1)
    slow *= 1 - rng.uniform(0.15, 0.35) * final
    seconds_per_step = step * 60.0 / (base * np.exp(log_tempo) * slow)
    held = np.zeros(len(grid), dtype=bool)
    for fermata in score.fermatas:
        length = max((d for o, d, _, _ in score.notes if o == fermata), default=score.beat_ql)
        held |= (grid >= fermata) & (grid < fermata + length)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], held.astype(int), [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):  # each run of fermata notes, held once
        written = seconds_per_step[start:stop].sum()
        seconds_per_step[start:stop] *= min(rng.uniform(1.6, 2.2), 1 + max_fermata_extra_s / written)
    seconds = np.concatenate([[0.0], np.cumsum(seconds_per_step[:-1])])
    return grid, seconds


# ---------------------------------------------------------------------------------------- velocity
def note_velocities(
    notes: list[tuple[float, float, int, int]],
    score: ScoreNotes,
    phrases: list[float],
    rng: np.random.Generator,
    accompanied: bool,
) -> np.ndarray:
    """MIDI velocities: marked dynamics (or a random level), an arch over each phrase (crescendo to
    ~60 % of it, diminuendo after), accents on bar and beat, melody over inner voices, noise."""
    onsets = np.array([n[0] for n in notes])
    if score.dynamics:
        marks = np.array(score.dynamics)
        index = np.maximum(np.searchsorted(marks[:, 0], onsets, side="right") - 1, 0)
        level = 25 + 85 * marks[index, 1]
    else:
        level = np.full(len(notes), rng.uniform(50, 80))
    bounds = np.array([*phrases, max(onsets.max(), phrases[-1]) + 1e-3])
    which = np.clip(np.searchsorted(bounds, onsets, side="right") - 1, 0, len(phrases) - 1)
    heights = rng.uniform(6, 22, len(phrases))
    position = (onsets - bounds[which]) / (bounds[which + 1] - bounds[which])
    arch = heights[which] * np.sin(np.pi * np.clip(position, 0, 1) ** 0.75) - 0.4 * heights[which]
    metric = np.array([accent(o, score) for o in onsets])
    groups = onset_groups(notes)
    voice = np.array(
        [6 if p == max(groups[o]) else (1 if p == min(groups[o]) else -4) for o, _, p, _ in notes]
    )
    part = np.array([-10 if accompanied and n[3] == 1 else 0 for n in notes])
    noise = rng.normal(0, 5, len(notes))
    return np.clip(np.round(level + arch + metric + voice + part + noise), 12, 124).astype(int)


def accent(onset: float, score: ScoreNotes) -> float:
    i = bisect.bisect_right(score.bar_starts, onset + 1e-6) - 1
    since_bar = onset - score.bar_starts[i] if i >= 0 else onset
    if abs(since_bar) < 1e-6:
        return 6.0
    return 2.0 if abs(since_bar / score.beat_ql - round(since_bar / score.beat_ql)) < 1e-6 else -1.0


# ------------------------------------------------------------------------------------------ pedal
def pedal_changes(notes: list[tuple[float, float, int, int]], score: ScoreNotes, style: str) -> list[float]:
    """Onsets (ql) where the pedal is changed: 'harmony' where a new bass note enters or a new chord is
    struck (at most once a beat, at least once a bar); 'bar' / 'beat' at each bar / beat that has an onset;
    'none' nowhere."""
    groups = onset_groups(notes)
    if style == "none" or not groups:
        return []
    times = list(groups)
    if style == "bar":
        return [t for t in times if any(abs(t - b) < 1e-6 for b in score.bar_starts)] or times[:1]
    if style == "beat":
        return [t for t in times if abs(t / score.beat_ql - round(t / score.beat_ql)) < 1e-6] or times[:1]
    basses = sounding_bass(notes)
    changes, last_set = [times[0]], {p % 12 for p in groups[times[0]]}
    for t in times[1:]:
        struck = {p % 12 for p in groups[t]}
        new_chord = len(struck) >= 3 and len(struck & last_set) < len(struck) / 2
        new_bass = basses[t] in groups[t] and basses[t] != basses[changes[-1]]
        new_bar = bar_index(score, t) > bar_index(score, changes[-1])
        if t - changes[-1] >= score.beat_ql - 1e-6 and (new_chord or new_bass or new_bar):
            changes.append(t)
            last_set = struck
    return changes


def sounding_bass(notes: list[tuple[float, float, int, int]]) -> dict[float, int]:
    """Onset -> lowest key sounding there (struck then or still held)."""
    struck: dict[float, list[tuple[float, int]]] = defaultdict(list)
    for onset, duration, pitch, _ in notes:
        struck[onset].append((onset + duration, pitch))
    basses, active = {}, []
    for onset in sorted(struck):
        active = [(end, key) for end, key in active if end > onset + 1e-6] + struck[onset]
        basses[onset] = min(key for _, key in active)
    return basses


def bar_index(score: ScoreNotes, onset: float) -> int:
    return bisect.bisect_right(score.bar_starts, onset + 1e-6)


def pedal_events(
    change_times: list[float], end_s: float, rng: np.random.Generator, min_gap_s: float = 0.03
) -> list[tuple[float, int]]:
    """Syncopated pedalling: down just after the first change, and at each later change up shortly after
    the new notes strike and down again 50-120 ms later; up for good at `end_s`."""
    events: list[tuple[float, int]] = []
    for t in change_times:
        lift = t + rng.uniform(0.02, 0.08)
        press = lift + rng.uniform(0.05, 0.12)
        if press >= end_s - min_gap_s:
            break
        if not events:
            events.append((press, 127))
        elif lift >= events[-1][0] + min_gap_s:
            events += [(lift, 0), (press, 127)]
    if events:
        events.append((max(end_s, events[-1][0] + min_gap_s), 0))
    return events


# ----------------------------------------------------------------------------------- performance
def choose_params(score: ScoreNotes, rng: np.random.Generator, monophonic: bool) -> RenderParams:
    return RenderParams(
        preset=str(rng.choice(TRAIN_PRESETS, p=TRAIN_WEIGHTS)),
        transpose=choose_transposition([n[2] for n in score.notes], rng),
        tempo_factor=float(np.clip(np.exp(rng.normal(0.0, 0.08)), 0.8, 1.25)),
        pedal=str(rng.choice(["harmony", "bar", "beat", "none"], p=[0.55, 0.2, 0.1, 0.15])),
        accompaniment=str(rng.choice(ACCOMPANIMENT_PATTERNS)) if monophonic else "",
        articulation=float(rng.uniform(0.8, 0.98)),
        loudness_db=float(rng.uniform(-6.0, 6.0)),
        reverb_room=float(rng.uniform(0.1, 0.85)),
        reverb_damp=float(rng.uniform(0.0, 0.7)),
        reverb_width=float(rng.uniform(0.3, 1.0)),
        reverb_level=float(rng.uniform(0.3, 0.9)),
        reverb_send=int(rng.integers(15, 90)),
        detune_cents=float(np.clip(rng.normal(0.0, DETUNE_CENTS), -20.0, 20.0)),
    )


def perform(
    score: ScoreNotes,
    params: RenderParams,
    rng: np.random.Generator,
    lead_in_s: float = 0.3,
    tail_s: float = 1.0,
) -> Performance:
    """Turn a score into timed, shaped notes and pedal events."""
    if params.accompaniment:
        score = accompany(score, params.accompaniment)
    notes = transpose_notes(score.notes, params.transpose)
    end_ql = max(o + d for o, d, _, _ in notes)
    qpm = base_tempo(score) * params.tempo_factor
    phrases = phrase_starts(score, int(rng.choice([2, 4, 4, 8])), end_ql)
    grid, seconds = tempo_map(score, end_ql, qpm, rng, phrases)
    velocities = note_velocities(notes, score, phrases, rng, bool(params.accompaniment))
    groups = onset_groups(notes)
    group_shift = {o: rng.normal(0, 0.006) for o in groups}
    melody_lead = rng.uniform(0.0, 0.008)  # the top note of a chord sounds slightly early
    timed = []
    for (onset, duration, pitch, _), velocity in zip(notes, velocities, strict=True):
        lead = melody_lead if pitch == max(groups[onset]) and len(groups[onset]) > 1 else 0.0
        jitter = float(np.clip(group_shift[onset] + rng.normal(0, 0.003) - lead, -0.02, 0.02))
        start = lead_in_s + float(np.interp(onset, grid, seconds)) + jitter
        stop = lead_in_s + float(np.interp(onset + duration * params.articulation, grid, seconds))
        timed.append((max(start, 0.0), max(stop, start + 0.04), pitch, int(velocity)))
    timed = separate_repeated_keys(timed)
    last = max(stop for _, stop, _, _ in timed)
    changes = [
        lead_in_s + float(np.interp(t, grid, seconds)) for t in pedal_changes(notes, score, params.pedal)
    ]
    pedal = pedal_events(changes, last + rng.uniform(0.2, 0.8), rng)
    duration = max([last, *(t for t, _ in pedal)]) + tail_s
    return Performance(timed, pedal, duration, qpm)


def separate_repeated_keys(notes: list[tuple[float, float, int, int]], gap_s: float = 0.005) -> list:
    """End each note before the next strike of the same key (a key cannot be pressed twice)."""
    by_key: dict[int, list[int]] = defaultdict(list)
    ordered = sorted(notes)
    for i, note in enumerate(ordered):
        by_key[note[2]].append(i)
    for indices in by_key.values():
        for a, b in zip(indices[:-1], indices[1:], strict=True):
            start, stop, pitch, velocity = ordered[a]
            next_start = ordered[b][0]
            if stop > next_start - gap_s:
                ordered[a] = (start, max(next_start - gap_s, start + 0.01), pitch, velocity)
    return ordered


def midi_events(perf: Performance, params: RenderParams) -> list[tuple[float, int, tuple]]:
    """(time_s, order, message) sorted; at one tick note-offs come first, then controllers, then note-ons."""
    timbre = PRESETS[params.preset]
    bend = int(np.clip(round(params.detune_cents / PITCH_BEND_RANGE_CENTS * 8192), -8192, 8191))
    events: list[tuple[float, int, tuple]] = [
        (0.0, 1, ("control_change", 0, timbre.bank)), (0.0, 1, ("control_change", 32, 0)),
        (0.0, 1, ("program_change", timbre.program)), (0.0, 1, ("pitchwheel", bend)),
        (0.0, 1, ("control_change", 7, 100)),
        (0.0, 1, ("control_change", 10, 64)), (0.0, 1, ("control_change", 91, params.reverb_send)),
        (0.0, 1, ("control_change", 93, 0)), (perf.duration_s, 1, ("control_change", 64, 0)),
    ]  # fmt: skip
    for start, stop, pitch, velocity in perf.notes:
        events += [(start, 2, ("note_on", pitch, velocity)), (stop, 0, ("note_off", pitch, 0))]
    events += [(t, 1, ("control_change", 64, value)) for t, value in perf.pedal]
    return sorted(events, key=lambda e: (e[0], e[1]))


def write_midi(perf: Performance, params: RenderParams, path: Path, ticks_per_second: int = 960) -> None:
    """One-track type-0 MIDI file at 120 bpm (480 ticks per beat), everything on channel 0."""
    import mido

    midi = mido.MidiFile(type=0, ticks_per_beat=ticks_per_second // 2)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
    now = 0
    for time_s, _, (kind, *values) in midi_events(perf, params):
        tick = round(time_s * ticks_per_second)
        if kind == "note_on":
            message = mido.Message("note_on", note=values[0], velocity=values[1], time=tick - now)
        elif kind == "note_off":
            message = mido.Message("note_off", note=values[0], velocity=0, time=tick - now)
        elif kind == "program_change":
            message = mido.Message("program_change", program=values[0], time=tick - now)
        elif kind == "pitchwheel":
            message = mido.Message("pitchwheel", pitch=values[0], time=tick - now)
        else:
            message = mido.Message("control_change", control=values[0], value=values[1], time=tick - now)
        track.append(message)
        now = tick
    midi.save(path)


# ------------------------------------------------------------------------------------------- audio
def trim_silence(x: np.ndarray, rate: int, threshold_db: float = -60.0, keep_s: float = 0.05) -> np.ndarray:
    """Cut leading and trailing samples quieter than `threshold_db` below the peak (keeping `keep_s`)."""
    peak = np.max(np.abs(x)) if x.size else 0.0
    if peak == 0:
        return x[:0]
    loud = np.flatnonzero(np.abs(x) > peak * 10 ** (threshold_db / 20))
    keep = int(keep_s * rate)
    return x[max(loud[0] - keep, 0) : loud[-1] + keep + 1]


def normalise_loudness(x: np.ndarray, target_rms: float, peak_limit: float = PEAK_LIMIT) -> np.ndarray:
    """Scale to `target_rms`, or less where that would push the peak past `peak_limit`."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    peak = float(np.max(np.abs(x)))
    if rms == 0:
        return x
    gain = min(target_rms / rms, peak_limit / peak)
    return (x * gain).astype(np.float32)


def chunk_bounds(n_samples: int, rate: int, max_s: float = MAX_CHUNK_S) -> list[tuple[int, int]]:
    """Equal consecutive chunks covering all samples, none longer than `max_s`."""
    count = max(1, math.ceil(n_samples / (max_s * rate)))
    edges = np.linspace(0, n_samples, count + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def fade_edges(x: np.ndarray, rate: int, fade_s: float = 0.01) -> np.ndarray:
    n = min(int(fade_s * rate), len(x) // 2)
    if n:
        ramp = np.linspace(0.0, 1.0, n, dtype=x.dtype)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def fluidsynth_command(soundfont: Path, midi: Path, wav: Path, params: RenderParams) -> list[str]:
    settings = {
        "synth.chorus.active": 0, "synth.reverb.active": 1, "synth.reverb.room-size": params.reverb_room,
        "synth.reverb.damp": params.reverb_damp, "synth.reverb.width": params.reverb_width,
        "synth.reverb.level": params.reverb_level, "synth.polyphony": 512, "synth.cpu-cores": 1,
        "synth.dynamic-sample-loading": 1,
    }  # fmt: skip
    options = [arg for name, value in settings.items() for arg in ("-o", f"{name}={value}")]
    return [
        "fluidsynth",
        "-ni",
        "-q",
        "-F",
        str(wav),
        "-O",
        "float",
        "-T",
        "wav",
        "-r",
        str(RENDER_RATE),
        "-g",
        "0.4",
        *options,
        str(soundfont),
        str(midi),
    ]


# ----------------------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Entry:
    """One score of the corpus: a file, and a tune number inside files that hold several."""

    path: str  # relative to music21's corpus folder
    number: int | None = None
    work: str = ""  # scores of one work share a split (see `work_of`); "" for the score alone

    @property
    def family(self) -> str:
        top = self.path.split("/")[0]
        return "folk" if top in FOLK_DIRS else top

    @property
    def source(self) -> str:
        return self.path if self.number is None else f"{self.path}#{self.number}"

    @property
    def id(self) -> str:
        stem = "".join(c if c.isalnum() or c in ".-" else "_" for c in self.path.replace("/", "__"))
        return stem if self.number is None else f"{stem}_n{self.number}"


def work_of(path: str, title: str | None = None) -> str:
    """The unit that the train/valid split keeps whole: the movements of one work (files in a folder below
    the collection, or Palestrina mass movements that share a number), the variants of one folk tune (one
    title), else the score itself (in whatever format)."""
    folders = path.split("/")
    if title is not None:
        family = "folk" if folders[0] in FOLK_DIRS else folders[0]
        return f"{family}/title:{' '.join(title.lower().split())}"
    if len(folders) >= 3:
        return "/".join(folders[:2])
    mass = re.search(r"_(\d+)", folders[-1]) if folders[0] == "palestrina" else None
    if mass:
        return f"palestrina/mass {int(mass.group(1))}"
    return path.rsplit(".", 1)[0]


@dataclass(frozen=True)
class Job:
    entry: Entry
    pass_index: int
    piece_id: str
    split: str
    params: RenderParams
    planned_s: float
    section: tuple[float, float]  # (start, stop) in quarter notes

    @property
    def performance_id(self) -> str:
        """The piece id that seeds the performance: a held-out twin plays its valid rendering's."""
        return self.piece_id.removesuffix(HELDOUT_SUFFIX) if self.split == "heldout" else self.piece_id


def heldout_twin(job: Job) -> Job:
    """The same performance of a valid rendering, played by the held-out timbre (the 'heldout' split)."""
    params = replace(job.params, preset=HELDOUT_PRESET)
    return replace(job, piece_id=job.piece_id + HELDOUT_SUFFIX, split="heldout", params=params)


def plan_jobs(
    entries: list[Entry],
    load: Callable[[Entry], ScoreNotes | None],
    target_s: float,
    seed: int,
    weights: dict[str, float] | None = None,
    max_passes: int = MAX_PASSES,
) -> tuple[list[Job], Counter]:
    """All of `iter_plan`'s jobs, and a count of the scores skipped (by reason)."""
    skipped: Counter = Counter()
    jobs = list(iter_plan(entries, load, target_s, seed, skipped, weights, max_passes))
    return jobs, skipped


def iter_plan(
    entries: list[Entry],
    load: Callable[[Entry], ScoreNotes | None],
    target_s: float,
    seed: int,
    skipped: Counter,
    weights: dict[str, float] | None = None,
    max_passes: int = MAX_PASSES,
) -> Iterator[Job]:
    """Pick renderings until `target_s` seconds are planned. Families take turns (the one with the fewest
    weighted seconds next), scores in a seeded order within each; a score is rendered a second time only
    after every score has been used once. Scores that fail to load are counted in `skipped`."""
    weights = {**FAMILY_WEIGHTS, **(weights or {})}
    families: dict[str, list[Entry]] = defaultdict(list)
    for entry in sorted(entries, key=lambda e: stable_seed(seed, "order", e.source)):
        families[entry.family].append(entry)
    names = sorted(families, key=lambda name: stable_seed(seed, "family", name))
    seconds = dict.fromkeys(names, 0.0)
    unusable: set[Entry] = set()
    for pass_index in range(max_passes):
        position = dict.fromkeys(names, 0)
        while sum(seconds.values()) < target_s:
            open_families = [name for name in names if position[name] < len(families[name])]
            if not open_families:
                break
            name = min(open_families, key=lambda n: seconds[n] / weights.get(n, 1.0))
            entry = families[name][position[name]]
            position[name] += 1
            jobs = [] if entry in unusable else make_jobs(entry, pass_index, load, seed, skipped)
            if not jobs:
                unusable.add(entry)
            for job in jobs:
                seconds[name] += job.planned_s
                yield job
                if job.split == "valid":  # not counted in the hours: the target is train + valid
                    yield heldout_twin(job)


def make_jobs(
    entry: Entry, pass_index: int, load: Callable[[Entry], ScoreNotes | None], seed: int, skipped: Counter
) -> list[Job]:
    """The renderings of one score: one, or one per section of a long score; none if it cannot be used."""
    try:
        score = load(entry)
    except Exception as error:  # noqa: BLE001 - any parser failure means: skip this score
        skipped[f"parse error ({type(error).__name__})"] += 1
        return []
    if score is None or len(score.notes) < 8:
        skipped["unplayable or empty"] += 1
        return []
    sections = section_bounds(score, base_tempo(score))
    jobs = []
    for index, (start, stop) in enumerate(sections):
        piece_id = (
            entry.id + (f"_s{index}" if len(sections) > 1 else "") + (f"_r{pass_index}" if pass_index else "")
        )
        part = score_section(score, start, stop)
        if len(part.notes) < 8:
            continue
        params, perf = performance_for(part, seed, piece_id)
        split = assign_split(entry.work or entry.source, seed)
        planned_s = perf.duration_s - TRIMMED_S
        jobs.append(Job(entry, pass_index, piece_id, split, params, planned_s, (start, stop)))
    return jobs


def performance_for(score: ScoreNotes, seed: int, piece_id: str) -> tuple[RenderParams, Performance]:
    """The random settings and the performance of one rendering: a function of (score, seed, piece id)."""
    rng = piece_rng(seed, piece_id)
    params = choose_params(score, rng, is_monophonic(score.notes))
    return params, perform(score, params, rng)


# ------------------------------------------------------------------------- music21 (lazy imports)
def corpus_root() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def list_entries() -> list[Entry]:
    """Every score file in music21's core corpus, with one entry per tune in ABC files that collect tunes
    (files whose few tunes share one title are the voices of one piece: one entry)."""
    from music21 import corpus

    root = corpus_root()
    entries = []
    for path in sorted(corpus.getCorePaths()):
        rel = Path(path).relative_to(root).as_posix()
        if rel.split("/")[0] in SKIP_DIRS or Path(path).suffix in SKIP_SUFFIXES:
            continue
        tunes = abc_tunes(Path(path)) if Path(path).suffix == ".abc" else []
        if len(tunes) > 1 and not (len({title for _, title in tunes}) == 1 and len(tunes) <= 8):
            entries += [Entry(rel, number, work_of(rel, title)) for number, title in tunes]
        else:
            entries.append(Entry(rel, None, work_of(rel)))
    return entries


def abc_tunes(path: Path) -> list[tuple[int, str]]:
    """(reference number, first title) of each tune in an ABC file."""
    tunes: dict[int, str] = {}
    number = None
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("X:") and line[2:].strip().isdigit():
            number = int(line[2:].strip())
            tunes.setdefault(number, "")
        elif line.startswith("T:") and number is not None and not tunes[number]:
            tunes[number] = line[2:].strip()
    return sorted(tunes.items())


def parse_score(entry: Entry) -> ScoreNotes | None:
    """music21 score -> ScoreNotes: repeats expanded (kept as written when that fails), ties merged,
    chord symbols and unpitched notes dropped. None when nothing pitched is left."""
    from music21 import converter, dynamics, expressions, harmony, meter, note, tempo

    path = corpus_root() / entry.path
    score = converter.parse(path, number=entry.number) if entry.number is not None else converter.parse(path)
    if hasattr(score, "mergeScores"):  # an Opus: the voices of one piece, one tune each
        score = score.mergeScores()
    try:
        score = score.expandRepeats()
    except Exception:  # noqa: BLE001 - inconsistent repeat marks: play it through once
        pass
    parts = list(score.parts) or [score]
    tied, tempi, loudness, fermatas = [], set(), set(), set()
    for index, part in enumerate(parts):
        flat = part.flatten()  # offsets from the start of the part, which is the start of the score
        for element in flat.notes:
            if isinstance(element, harmony.Harmony | note.Unpitched) or element.quarterLength <= 0:
                continue
            onset, length = float(element.offset), float(element.quarterLength)
            members = element.notes if element.isChord else [element]
            for member in members:
                tie = (member.tie or element.tie).type if (member.tie or element.tie) else None
                tied.append((onset, length, int(member.pitch.midi), index, tie))
            if any(isinstance(e, expressions.Fermata) for e in element.expressions):
                fermatas.add(onset)
        marks = flat.getElementsByClass(tempo.MetronomeMark)
        tempi |= {(float(m.offset), float(m.getQuarterBPM())) for m in marks if m.number is not None}
        levels = flat.getElementsByClass(dynamics.Dynamic)
        loudness |= {(float(d.offset), float(d.volumeScalar)) for d in levels if d.volumeScalar is not None}
    if not tied:
        return None
    notes = merge_ties(tied)
    signature = score.recurse().getElementsByClass(meter.TimeSignature).first()
    beat = float(signature.beatDuration.quarterLength) if signature else 1.0
    bar = float(signature.barDuration.quarterLength) if signature else 4.0
    bars = sorted({float(m.offset) for m in parts[0].getElementsByClass("Measure")})
    bars = bars or [float(b) for b in np.arange(0, max(n[0] for n in notes) + bar, bar)]
    return ScoreNotes(
        notes, bars, beat, tuple(sorted(tempi)), tuple(sorted(loudness)), tuple(sorted(fermatas))
    )


def cached_loader(cache_dir: Path) -> Callable[[Entry], ScoreNotes | None]:
    """Wrap `parse_score` with a JSON cache (failures are cached too, and re-raised)."""
    cache_dir.mkdir(parents=True, exist_ok=True)

    def load(entry: Entry) -> ScoreNotes | None:
        path = cache_dir / f"{entry.id}.v{CACHE_VERSION}.json"
        if path.exists():
            data = json.loads(path.read_text())
        else:
            try:
                score = parse_score(entry)
                data = {"score": None if score is None else asdict(score)}
            except Exception as error:  # noqa: BLE001 - cached so that reruns skip it quickly
                data = {"error": f"{type(error).__name__}: {error}"[:300]}
            atomic_write_text(path, json.dumps(data))
        if "error" in data:
            raise RuntimeError(data["error"])
        s = data["score"]
        if s is None:
            return None
        return ScoreNotes(
            [tuple(n) for n in s["notes"]],
            s["bar_starts"],
            s["beat_ql"],
            tuple(map(tuple, s["tempi"])),
            tuple(map(tuple, s["dynamics"])),
            tuple(s["fermatas"]),
        )

    return load


# ------------------------------------------------------------------------------------------ render
def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def render_job(job: Job, out: Path, soundfonts: dict[str, Path], seed: int) -> list[dict]:
    """Render one piece to FLAC chunks; write its done-marker; return its manifest rows."""
    import soundfile
    from scipy.signal import resample_poly

    score = score_section(cached_loader(out / ".cache")(job.entry), *job.section)
    params, perf = performance_for(score, seed, job.performance_id)
    if job.split == "heldout":
        params = replace(params, preset=HELDOUT_PRESET)
    assert params == job.params, "plan and render drew different parameters"
    soundfont = soundfonts[PRESETS[params.preset].file]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out / ".tmp") as tmp:
        midi, wav = Path(tmp) / "piece.mid", Path(tmp) / "piece.wav"
        write_midi(perf, params, midi)
        subprocess.run(fluidsynth_command(soundfont, midi, wav, params), check=True, capture_output=True)
        stereo, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    render_s = time.perf_counter() - started
    mono = resample_poly(stereo.mean(axis=1), OUT_RATE, rate).astype(np.float32)
    mono = trim_silence(mono, OUT_RATE)
    mono = normalise_loudness(mono, MAESTRO_RMS * 10 ** (params.loudness_db / 20))
    folder = out / job.split / job.entry.family
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (a, b) in enumerate(chunk_bounds(len(mono), OUT_RATE)):
        chunk = fade_edges(mono[a:b], OUT_RATE)
        path = folder / f"{job.piece_id}_c{k:02d}.flac"
        soundfile.write(path.with_suffix(".tmp.flac"), chunk, OUT_RATE, subtype="PCM_16")
        os.replace(path.with_suffix(".tmp.flac"), path)
        rows.append(manifest_row(job, perf, path.relative_to(out).as_posix(), k, chunk))
    marker = {"rows": rows, "render_s": render_s, "audio_s": len(mono) / OUT_RATE}
    atomic_write_text(out / ".done" / f"{job.piece_id}.json", json.dumps(marker))
    return rows


def manifest_row(job: Job, perf: Performance, path: str, chunk_index: int, chunk: np.ndarray) -> dict:
    p = job.params
    timbre = PRESETS[p.preset]
    bank, program = timbre.bank, timbre.program
    return {
        "path": path, "split": job.split, "piece_id": job.piece_id, "source": job.entry.source,
        "work": job.entry.work, "family": job.entry.family, "pass": job.pass_index, "preset": p.preset,
        "bank": bank,
        "program": program, "transpose": p.transpose, "tempo_factor": round(p.tempo_factor, 4),
        "qpm": round(perf.qpm, 2), "pedal": p.pedal, "accompaniment": p.accompaniment,
        "reverb_room": round(p.reverb_room, 3), "reverb_damp": round(p.reverb_damp, 3),
        "reverb_width": round(p.reverb_width, 3), "reverb_level": round(p.reverb_level, 3),
        "reverb_send": p.reverb_send, "chunk": chunk_index, "duration_s": round(len(chunk) / OUT_RATE, 3),
        "rms": round(float(np.sqrt(np.mean(np.square(chunk, dtype=np.float64)))), 5),
        "peak": round(float(np.max(np.abs(chunk))), 5), "soundfont": timbre.file,
        "detune_cents": round(p.detune_cents, 2),
    }  # fmt: skip


def write_manifest(out: Path, jobs: list[Job]) -> list[dict]:
    rows = []
    for job in jobs:
        marker = out / ".done" / f"{job.piece_id}.json"
        if marker.exists():
            rows += json.loads(marker.read_text())["rows"]
    tmp = out / ".manifest.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / "manifest.csv")
    return rows


def render_speed(out: Path, jobs: list[Job]) -> float:
    """Seconds of audio per second of fluidsynth, over the finished jobs."""
    audio_s = render_s = 0.0
    for job in jobs:
        marker = out / ".done" / f"{job.piece_id}.json"
        if marker.exists():
            data = json.loads(marker.read_text())
            audio_s, render_s = audio_s + data["audio_s"], render_s + data["render_s"]
    return audio_s / render_s if render_s else float("nan")


def planned_rows(jobs: list[Job]) -> list[dict]:
    """Manifest-like rows from the plan alone (planned durations, one row per rendering)."""
    return [
        {"split": j.split, "preset": j.params.preset, "family": j.entry.family, "piece_id": j.piece_id,
         "source": j.entry.source, "work": j.entry.work, "duration_s": j.planned_s}
        for j in jobs
    ]  # fmt: skip


def summary_markdown(rows: list[dict], jobs: list[Job], skipped: Counter, seed: int, hours: float) -> str:
    """Hours and pieces per split, per preset and per family, as Markdown."""

    def table(key: str) -> list[str]:
        seconds, pieces = Counter(), defaultdict(set)
        for r in rows:
            seconds[r[key]] += float(r["duration_s"])
            pieces[r[key]].add(r["piece_id"])
        lines = [f"| {key} | hours | pieces |", "| --- | ---: | ---: |"]
        lines += [f"| {k} | {seconds[k] / 3600:.2f} | {len(pieces[k])} |" for k in sorted(seconds)]
        return lines

    total_h = sum(float(r["duration_s"]) for r in rows) / 3600
    sources = {s: {r["source"] for r in rows if r["split"] == s} for s in ("train", "valid", "heldout")}
    works = {s: {r["work"] for r in rows if r["split"] == s} for s in ("train", "valid", "heldout")}
    lines = [
        f"Corpus made with `--hours {hours:g} --seed {seed}`: {total_h:.2f} h of audio in {len(rows)} "
        f"FLAC chunks from {len({r['piece_id'] for r in rows})} renderings of "
        f"{len({r['source'] for r in rows})} scores "
        f"({len(jobs)} renderings planned, {sum(j.planned_s for j in jobs) / 3600:.2f} h).",
        f"Train scores: {len(sources['train'])}, valid scores: {len(sources['valid'])}, in both: "
        f"{len(sources['train'] & sources['valid'])}; works in both: {len(works['train'] & works['valid'])}; "
        f"held-out-timbre scores ({HELDOUT_PRESET}, the valid works): {len(sources['heldout'])}, in train: "
        f"{len(sources['train'] & sources['heldout'])}.",
        "Scores skipped: " + (", ".join(f"{n} {why}" for why, n in sorted(skipped.items())) or "none") + ".",
        "",
        *table("split"),
        "",
        *table("preset"),
        "",
        *table("family"),
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- main
def check_prerequisites() -> dict[str, Path]:
    """The soundfonts' paths by file name; exits with one line naming what to install when something is
    missing."""
    debian, pip = [], []
    if shutil.which("fluidsynth") is None:
        debian.append("fluidsynth")
    soundfonts = {}
    for package, file in sorted({(t.package, t.file) for t in PRESETS.values()}):
        path = find_soundfont(package, file)
        if path is None:
            debian.append(package)
        else:
            soundfonts[file] = path
    for module in ("music21", "mido", "soundfile", "scipy"):
        if importlib.util.find_spec(module) is None:
            pip.append(module)
    if debian or pip:
        todo = [
            f"apt-get install -y {' '.join(debian)}" if debian else "",
            f"pip install {' '.join(pip)}" if pip else "",
        ]
        sys.exit("make_piano_corpus: missing prerequisites; run: " + " && ".join(t for t in todo if t))
    return soundfonts


def check_allowed(package: str, file: str) -> None:
    """Refuse the soundfonts kept aside for measuring generalisation (FluidR3 in any packaging)."""
    if any(word in f"{package} {file}".lower() for word in FORBIDDEN_SOUNDFONTS):
        raise ValueError(f"{file} ({package}) is kept aside for evaluation and must never be rendered here")


def find_soundfont(package: str, file: str) -> Path | None:
    check_allowed(package, file)
    try:
        listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True).stdout
    except OSError:
        listing = ""
    candidates = [Path(line) for line in listing.splitlines() if line.endswith(file)]
    candidates.append(Path("/usr/share/sounds/sf2") / file)  # where Debian puts it
    return next((path for path in candidates if path.is_file()), None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path("data/piano"), help="output folder (default data/piano)"
    )
    parser.add_argument("--hours", type=float, default=20.0, help="hours of audio to plan (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel fluidsynth renders (default 1)")
    parser.add_argument(
        "--limit", type=int, default=None, help="render only the first N planned pieces (a test)"
    )
    parser.add_argument(
        "--plan-only", action="store_true", help="parse and plan, print the summary, render nothing"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    soundfonts = check_prerequisites()
    out: Path = args.out
    shutil.rmtree(out / ".tmp", ignore_errors=True)  # left by a killed run
    for folder in (".cache", ".done", ".tmp"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    entries = list_entries()
    print(f"{len(entries)} scores in the music21 corpus; {args.hours:g} h, seed {args.seed}", flush=True)
    jobs: list[Job] = []
    skipped: Counter = Counter()
    plan = itertools.islice(
        iter_plan(entries, cached_loader(out / ".cache"), args.hours * 3600, args.seed, skipped), args.limit
    )
    if args.plan_only:
        jobs.extend(plan)
        print(summary_markdown(planned_rows(jobs), jobs, skipped, args.seed, args.hours))
        return
    render_all(plan, out, soundfonts, args.seed, args.jobs, jobs)
    rows = write_manifest(out, jobs)
    summary = summary_markdown(rows, jobs, skipped, args.seed, args.hours)
    speed = f"fluidsynth rendered {render_speed(out, jobs):.0f}x faster than real time (one core).\n"
    (out / "summary.md").write_text(summary + speed)
    print(f"skipped scores: {dict(skipped)}; {len(rows)} chunks in {out / 'manifest.csv'}", flush=True)


def render_all(
    planned: Iterable[Job], out: Path, soundfonts: dict[str, Path], seed: int, n_jobs: int, jobs: list[Job]
) -> None:
    """Render the planned jobs as they come (appending each to `jobs`), `n_jobs` at a time, skipping
    finished ones; log each piece and the speed; rewrite the manifest now and then."""
    started, audio_s, rendered, resumed = time.perf_counter(), 0.0, 0, 0
    pending: deque[tuple[Job, Future]] = deque()

    def report(job: Job, future: Future) -> None:
        nonlocal audio_s, rendered
        rendered += 1
        try:
            rows = future.result()
        except Exception as error:  # noqa: BLE001 - one bad piece must not stop the corpus
            print(f"[{len(jobs)}] {job.piece_id}: FAILED {type(error).__name__}: {error}", flush=True)
            return
        seconds = sum(r["duration_s"] for r in rows)
        audio_s += seconds
        p = job.params
        print(
            f"[{len(jobs)} planned, {rendered} rendered, {resumed} resumed] {job.split} {job.piece_id} "
            f"{p.preset} {p.transpose:+d} st x{p.tempo_factor:.2f} {seconds:.0f} s in {len(rows)} chunks; "
            f"{audio_s / 3600:.2f} h new audio at {audio_s / (time.perf_counter() - started):.1f}x real time",
            flush=True,
        )
        if rendered % 25 == 0:
            write_manifest(out, jobs)

    with ProcessPoolExecutor(n_jobs) if n_jobs > 1 else _InlineExecutor() as pool:
        for job in planned:
            jobs.append(job)
            if (out / ".done" / f"{job.piece_id}.json").exists():
                resumed += 1
                continue
            pending.append((job, pool.submit(render_job, job, out, soundfonts, seed)))
            while pending and (len(pending) > 2 * n_jobs or pending[0][1].done()):
                report(*pending.popleft())
        while pending:
            report(*pending.popleft())
    print(
        f"planned {len(jobs)} renderings ({sum(j.planned_s for j in jobs) / 3600:.2f} h), {resumed} "
        f"were already rendered",
        flush=True,
    )


class _InlineExecutor:
    """Runs each submitted call at once, in this process (--jobs 1)."""

    def __enter__(self) -> _InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable, *args: object) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as error:  # noqa: BLE001 - handed on like a pool would
            future.set_exception(error)
        return future


if __name__ == "__main__":
    main()
