"""ViSQOL and note-onset F1: the matching rules (always), the metrics extra's models (skipped without it)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cqtrestore import notes, perceptual
from cqtrestore.evaluate import EvalConfig, EvalError, run_eval, score, score_keys
from cqtrestore.notes import Notes, maximum_matching, onset_f1
from cqtrestore.operators import Gap, LowPass

SR = 22050
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "piano.flac"
needs_visqol = pytest.mark.skipif(
    perceptual.unavailable() is not None, reason=f"metrics extra absent: {perceptual.unavailable()}"
)
needs_basic_pitch = pytest.mark.skipif(
    notes.unavailable() is not None, reason=f"metrics extra absent: {notes.unavailable()}"
)


def scale(pitches=(60, 64, 67, 72, 65, 69, 62, 71), start: float = 0.1, step: float = 0.33) -> list:
    """(onset s, MIDI pitch) of a tune, one note every ``step`` seconds, plus three chord tones below."""
    tune = [(start + step * i, p) for i, p in enumerate(pitches)]
    return tune + [(start + step * i, p) for i, p in ((0, 48), (3, 55), (6, 50))]


def render(events, length: int = 65536) -> np.ndarray:
    """Decaying three-harmonic tones of 0.3 s (Basic Pitch transcribes them exactly), mono float64."""
    t = np.arange(int(0.3 * SR)) / SR
    envelope = np.exp(-t / 0.4) * np.minimum(1, t / 0.005) * np.minimum(1, (0.3 - t) / 0.02)
    y = np.zeros(length)
    for onset, pitch in events:
        f0 = 440 * 2 ** ((pitch - 69) / 12)
        tone = envelope * sum(0.4**k * np.sin(2 * np.pi * f0 * (k + 1) * t) for k in range(3))
        start = int(onset * SR)
        y[start : start + tone.size] += tone[: length - start]
    return 0.1 * y


# ---------------------------------------------------------------- matching (no extra needed)


def test_identical_notes_score_one_and_no_notes_nan():
    reference = Notes.of(scale())
    assert onset_f1(reference, reference) == 1.0
    assert math.isnan(onset_f1(Notes.of([]), Notes.of([])))
    assert onset_f1(reference, Notes.of([])) == 0.0 and onset_f1(Notes.of([]), reference) == 0.0


@pytest.mark.parametrize("removed", [1, 3, 5, 11])
def test_removing_notes_costs_the_expected_f1(removed):
    events = scale()  # 11 notes
    kept = Notes.of(events[removed:])
    n, k = len(events), len(events) - removed  # precision 1, recall k/n
    assert onset_f1(Notes.of(events), kept) == pytest.approx(2 * k / (n + k))
    assert onset_f1(kept, Notes.of(events)) == pytest.approx(2 * k / (n + k))  # symmetric


def test_onset_and_pitch_tolerances_are_mir_evals():
    reference = Notes.of([(1.0, 60)])
    assert onset_f1(reference, Notes.of([(1.05, 60)])) == 1.0  # exactly 50 ms still matches
    assert onset_f1(reference, Notes.of([(0.9499, 60)])) == 0.0
    assert onset_f1(reference, Notes.of([(1.0, 60.4)])) == 1.0  # 40 cents
    assert onset_f1(reference, Notes.of([(1.0, 61)])) == 0.0  # a semitone off
    assert onset_f1(Notes.of([(1.0, 60), (1.0, 64)]), Notes.of([(1.01, 60)])) == pytest.approx(2 / 3)


def test_the_matching_is_maximal_not_greedy():
    # ref 0.00 reaches only est 0.03; ref 0.04 is nearest to est 0.03 but also reaches est 0.08
    reference, estimate = Notes.of([(0.0, 60), (0.04, 60)]), Notes.of([(0.03, 60), (0.08, 60)])
    assert onset_f1(reference, estimate) == 1.0
    assert maximum_matching(np.array([[True, False], [True, True]])) == [(0, 0), (1, 1)]
    assert maximum_matching(np.zeros((0, 3), dtype=bool)) == []


def test_a_window_counts_its_notes_and_pairs_across_its_edges():
    reference = Notes.of([(0.5, 60), (1.02, 62), (1.3, 64), (1.6, 65), (2.5, 67)])
    estimate = Notes.of([(0.5, 60), (0.99, 62), (1.6, 65), (1.7, 70), (2.5, 67)])
    # in [1.0, 2.0): the pair at 1.02/0.99 (est outside), 1.6 hit, 1.3 missed, 1.7 false
    assert onset_f1(reference, estimate, (1.0, 2.0)) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert math.isnan(onset_f1(reference, estimate, (3.0, 4.0)))
    assert onset_f1(reference, estimate, (0.0, 0.6)) == 1.0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(58, 62)), max_size=12),
    st.lists(st.tuples(st.integers(0, 60), st.integers(58, 62)), max_size=12),
)
def test_f1_agrees_with_mir_eval(ref_events, est_events):
    transcription = pytest.importorskip("mir_eval.transcription", reason="mir_eval (metrics extra) absent")
    ref_events, est_events = sorted(set(ref_events)), sorted(set(est_events))
    if not ref_events or not est_events:
        return  # mir_eval scores an empty side 0 (with a warning); ours is tested above
    reference = Notes.of((0.02 * t, p) for t, p in ref_events)  # onsets 20 ms apart: ties at 50 ms
    estimate = Notes.of((0.02 * t, p) for t, p in est_events)

    def arrays(notes_: Notes) -> tuple[np.ndarray, np.ndarray]:
        hz = 440 * 2 ** ((notes_.pitches - 69) / 12)
        return np.stack([notes_.onsets, notes_.onsets + 0.1], axis=1), hz

    ref_intervals, ref_hz = arrays(reference)
    est_intervals, est_hz = arrays(estimate)
    expected = transcription.precision_recall_f1_overlap(
        ref_intervals, ref_hz, est_intervals, est_hz, offset_ratio=None
    )[2]
    assert onset_f1(reference, estimate) == pytest.approx(expected, abs=1e-12)


def test_metric_names_are_checked_and_gap_scores_follow_their_metric():
    assert EvalConfig(task="bwe").metrics == ("lsd", "si-sdr", "sdr-gain")
    assert EvalConfig(task="bwe", metrics=("LSD", "note_f1")).metrics == ("lsd", "note-f1")
    with pytest.raises(EvalError, match="unknown metric 'pesq'"):
        EvalConfig(task="bwe", metrics=("pesq",))
    assert score_keys("inpaint", ("lsd", "visqol", "note-f1")) == {
        "lsd", "gap_lsd", "visqol", "note_f1", "gap_note_f1"
    }  # fmt: skip
    assert score_keys("bwe", ("note-f1",)) == {"note_f1"}


def test_a_missing_extra_is_skipped_with_its_reason_or_refused_alone(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cqtrestore.cli import app

    monkeypatch.setattr(perceptual, "unavailable", lambda: "ViSQOL needs visqol-python ('.[metrics]')")
    folder = tmp_path / "clean"
    folder.mkdir()
    sf.write(folder / "a.wav", render(scale()), SR)
    args = ["eval", str(folder), "--task", "bwe", "--cutoff", "3000", "--method", "degraded"]
    args += ["--segments", "1", "--quiet", "--metric", "lsd", "--metric", "visqol"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "warning: visqol skipped: ViSQOL needs visqol-python ('.[metrics]')" in result.output
    assert "## LSD" in result.output and "## ViSQOL" not in result.output
    alone = CliRunner().invoke(app, [*args[:-4], "--metric", "visqol", "--out", str(tmp_path / "b")])
    assert alone.exit_code == 2 and alone.output.startswith("error: ViSQOL needs")


# ---------------------------------------------------------------- ViSQOL (metrics extra)


@pytest.fixture(scope="module")
def piano() -> torch.Tensor:
    audio, rate = sf.read(EXAMPLE)
    assert rate == SR
    return torch.from_numpy(audio[:65536])[None]


@needs_visqol
def test_visqol_of_identical_signals_is_its_maximum_and_ignores_level(piano):
    assert perceptual.visqol(piano, piano, SR).item() == pytest.approx(perceptual.VISQOL_MAX, abs=1e-9)
    assert perceptual.visqol(piano, 0.5 * piano, SR).item() == pytest.approx(perceptual.VISQOL_MAX, abs=1e-6)
    assert math.isnan(perceptual.visqol(piano, torch.zeros_like(piano), SR).item())


@needs_visqol
def test_visqol_drops_as_the_lowpass_narrows(piano):
    lowpassed = torch.cat([LowPass(cutoff, SR)(piano) for cutoff in (3000.0, 1000.0)])
    at_3k, at_1k = perceptual.visqol(piano.expand(2, -1), lowpassed, SR).tolist()
    assert perceptual.VISQOL_MAX - 0.05 > at_3k > at_1k > 3.0  # measured: 4.58 and 4.37


# Scores of C++ ViSQOL v3.3.3 (src/include/conformance.h) on files of its folder
# testdata/conformance_testdata_subset, which visqol-python's wheel does not ship: set VISQOL_TESTDATA to
# that folder to check them.
CONFORMANCE = [
    ("strauss48_stereo.wav", "strauss48_stereo_lp35.wav", 1.3888791489130758, 1e-6),
    ("steely48_stereo.wav", "steely48_stereo_lp7.wav", 2.2501683734385183, 1e-6),
    ("guitar48_stereo.wav", "guitar48_stereo_64kbps_aac.wav", 4.349722308064298, 1e-6),
    ("contrabassoon48_stereo.wav", "contrabassoon48_stereo_24kbps_aac.wav", 2.346868205375293, 2e-4),
    ("castanets48_stereo.wav", "castanets48_stereo.wav", 4.732101253042348, 1e-9),
]


@needs_visqol
@pytest.mark.parametrize(("reference", "degraded", "expected", "tolerance"), CONFORMANCE)
def test_visqol_reproduces_the_cpp_conformance_scores(reference, degraded, expected, tolerance):
    folder = Path(os.environ.get("VISQOL_TESTDATA", "/nonexistent"))
    if not (folder / reference).is_file():
        pytest.skip("ViSQOL conformance files absent (set VISQOL_TESTDATA to google/visqol's subset)")
    from visqol import VisqolApi

    api = VisqolApi()
    api.create(mode="audio")
    assert api.measure(str(folder / reference), str(folder / degraded)).moslqo == pytest.approx(
        expected, abs=tolerance
    )


# ---------------------------------------------------------------- transcription (metrics extra)


@needs_basic_pitch
def test_basic_pitch_transcribes_the_synthetic_tune_exactly():
    found = notes.transcribe(render(scale()))
    assert onset_f1(Notes.of(scale()), found) == 1.0 and len(found) == 11
    pairs = notes.match_notes(Notes.of(scale()), found)
    assert max(abs(Notes.of(scale()).onsets[r] - found.onsets[e]) for r, e in pairs) < 0.035  # 3 frames


@needs_basic_pitch
def test_notes_removed_from_the_audio_lose_the_expected_f1():
    events = scale()
    clean = notes.transcribe(render(events))
    removed = notes.transcribe(render([e for i, e in enumerate(events) if i not in (1, 4, 9)]))
    assert onset_f1(clean, removed) == pytest.approx(2 * 8 / (11 + 8))
    assert onset_f1(clean, notes.transcribe(render(events))) == 1.0
    # notes 4 and 5 (onsets 1.42 and 1.75 s) are the ones inside [1.3, 1.9) s; one of them removed
    assert onset_f1(clean, removed, (1.3, 1.9)) == pytest.approx(2 * 1 / (2 * 1 + 1))


@needs_basic_pitch
def test_our_onnx_session_gives_basic_pitchs_own_model_output(piano):
    import logging

    from basic_pitch import FilenameSuffix, build_icassp_2022_model_path
    from basic_pitch.inference import Model

    logging.disable(logging.WARNING)
    try:
        model = Model(build_icassp_2022_model_path(FilenameSuffix.onnx))
    finally:
        logging.disable(logging.NOTSET)
    window = piano[0, :43844].numpy().astype(np.float32)[None, :, None]
    theirs = model.predict(window)
    names = list(notes.ONNX_OUTPUTS.values())
    ours = dict(
        zip(notes.ONNX_OUTPUTS, notes._session(1).run(names, {notes.ONNX_INPUT: window}), strict=True)
    )
    for key in ("note", "onset", "contour"):
        np.testing.assert_array_equal(ours[key], theirs[key])


@needs_basic_pitch
@needs_visqol
def test_eval_adds_the_new_metrics_to_cached_items(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    sf.write(clean / "tune.wav", render(scale()), SR)
    config = EvalConfig(task="inpaint", gaps=(0.3,), methods=("degraded",), segments=1)
    first = run_eval(config, clean, tmp_path / "out")
    assert "note_f1" not in first.items[0].scores
    more = EvalConfig(
        task="inpaint", gaps=(0.3,), methods=("degraded",), segments=1, metrics=("note-f1", "visqol")
    )
    again = run_eval(more, clean, tmp_path / "out")
    assert again.computed == 1
    scores = again.items[0].scores
    assert {"lsd", "gap_lsd", "note_f1", "gap_note_f1", "visqol"} <= scores.keys()
    assert scores["note_f1"] < 1.0 and 1.0 < scores["visqol"] < perceptual.VISQOL_MAX
    assert run_eval(more, clean, tmp_path / "out").computed == 0
    table = (tmp_path / "out" / "results.md").read_text()
    assert "## Note-onset F1 in gap ±50 ms" in table and "## ViSQOL MOS-LQO" in table


@needs_basic_pitch
@needs_visqol
def test_identical_audio_scores_the_maximum_through_evaluate_score(piano):
    gap = Gap.from_samples([(30000, 36000)], SR)
    (row,) = score(piano, piano, piano, [gap], ("visqol", "note-f1"))
    assert row["visqol"] == pytest.approx(perceptual.VISQOL_MAX) and row["note_f1"] == 1.0
    assert row["gap_note_f1"] == 1.0 or math.isnan(row["gap_note_f1"])
