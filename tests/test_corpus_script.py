"""Tests of the pure-Python parts of scripts/make_piano_corpus.py (no music21, no fluidsynth needed)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_piano_corpus.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_piano_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


mpc = _load_script()

C_MAJOR_CADENCE = [(48, 64, 67, 72), (53, 65, 69, 72), (55, 62, 67, 71), (48, 64, 67, 72)]  # I IV V I


def chorale(bars: int = 16, fermata_every: int = 4) -> "mpc.ScoreNotes":
    """Four voices, one chord a beat, cycling through I IV V I; a fermata at the end of every few bars."""
    notes, fermatas = [], []
    for beat in range(bars * 4):
        chord = C_MAJOR_CADENCE[beat % 4]
        notes += [(float(beat), 1.0, pitch, voice) for voice, pitch in enumerate(reversed(chord))]
        if beat % (4 * fermata_every) == 4 * fermata_every - 1:
            fermatas.append(float(beat))
    return mpc.ScoreNotes(sorted(notes), [4.0 * b for b in range(bars)], 1.0, fermatas=tuple(fermatas))


def tune(bars: int = 8) -> "mpc.ScoreNotes":
    """A one-line C major tune in 4/4: scale up and down in quarter notes, ending on the tonic."""
    line = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60, 60] * (bars // 4)
    notes = [(float(i), 1.0, pitch, 0) for i, pitch in enumerate(line)]
    return mpc.ScoreNotes(notes, [4.0 * b for b in range(bars)], 1.0)


def assert_pedal_well_formed(events, end_s=None, min_gap=0.03):
    times = [t for t, _ in events]
    values = [v for _, v in events]
    assert values == [127, 0] * (len(values) // 2), "pedal must alternate down (127) and up (0), ending up"
    gaps = np.diff(times)
    assert np.all(gaps >= min_gap - 1e-9), "pedal events too close or unsorted"
    if end_s is not None and events:
        assert times[-1] >= end_s - 1e-9


# ------------------------------------------------------------------------------------------ pedal
@pytest.mark.parametrize("seed", range(5))
def test_pedal_events_alternate_down_and_up_even_for_crowded_changes(seed):
    rng = np.random.default_rng(seed)
    changes = np.sort(rng.uniform(0, 20, 80)).tolist()  # some far closer than a pedal change takes
    events = mpc.pedal_events(changes, end_s=21.0, rng=rng)
    assert_pedal_well_formed(events, end_s=21.0)
    assert len(events) >= 20
    assert events[0][0] > changes[0], "the pedal goes down after the first notes strike"


def test_pedal_is_changed_just_after_each_change_point():
    changes = [1.0, 2.0, 3.0, 4.0]
    events = mpc.pedal_events(changes, end_s=6.0, rng=np.random.default_rng(0))
    assert_pedal_well_formed(events, end_s=6.0)
    lifts = [t for t, v in events[:-1] if v == 0]
    assert len(lifts) == 3
    for lift, change in zip(lifts, changes[1:], strict=True):
        assert 0.0 < lift - change <= 0.08


def test_harmony_pedalling_changes_with_the_bass_not_with_the_melody():
    # a held C bass under a running melody for two bars, then a held G bass for two bars
    notes = [(0.0, 8.0, 36, 1), (8.0, 8.0, 43, 1)]
    notes += [(0.5 * i, 0.5, 72 + (i % 5), 0) for i in range(32)]
    score = mpc.ScoreNotes(sorted(notes), [0.0, 4.0, 8.0, 12.0], 1.0)
    assert mpc.pedal_changes(sorted(notes), score, "harmony") == [0.0, 4.0, 8.0, 12.0]  # bass + each bar
    assert mpc.pedal_changes(sorted(notes), score, "none") == []
    beats = mpc.pedal_changes(sorted(notes), score, "beat")
    assert beats == [float(b) for b in range(16)]


def test_harmony_pedalling_on_a_chorale_changes_on_every_new_chord():
    score = chorale(bars=4)
    changes = mpc.pedal_changes(score.notes, score, "harmony")
    assert changes == [float(b) for b in range(16)]  # every beat brings a new bass note


# --------------------------------------------------------------------------------------- velocity
def test_velocities_stay_in_midi_range_for_extreme_dynamics():
    rng = np.random.default_rng(1)
    for loudness in (0.0, 1.0):
        base = chorale(bars=8)
        score = mpc.ScoreNotes(base.notes, base.bar_starts, 1.0, dynamics=((0.0, loudness),))
        velocities = mpc.note_velocities(score.notes, score, [0.0, 8.0, 16.0, 24.0], rng, accompanied=False)
        assert velocities.dtype.kind == "i"
        assert velocities.min() >= 1 and velocities.max() <= 127
        assert len(set(velocities.tolist())) > 10, "velocities should vary"


def test_velocities_follow_marked_dynamics_and_favour_the_melody():
    base = chorale(bars=8)
    rng = np.random.default_rng(2)
    soft = mpc.ScoreNotes(base.notes, base.bar_starts, 1.0, dynamics=((0.0, 0.2),))
    loud = mpc.ScoreNotes(base.notes, base.bar_starts, 1.0, dynamics=((0.0, 0.9),))
    v_soft = mpc.note_velocities(soft.notes, soft, [0.0], rng, accompanied=False)
    v_loud = mpc.note_velocities(loud.notes, loud, [0.0], rng, accompanied=False)
    assert v_loud.mean() > v_soft.mean() + 30
    top = np.array([n[3] == 0 for n in base.notes])  # voice 0 is the soprano
    assert v_loud[top].mean() > v_loud[~top].mean() + 4


def test_merge_ties_joins_chains_and_keeps_repeated_notes_apart():
    tied = [
        (0.0, 1.0, 60, 0, "start"), (1.0, 1.0, 60, 0, "continue"), (2.0, 0.5, 60, 0, "stop"),
        (2.5, 1.0, 60, 0, None),  # struck again
        (0.0, 2.0, 64, 1, "start"), (2.0, 1.0, 64, 1, None),  # a tie whose 'stop' is missing
        (0.0, 1.0, 67, 0, "start"), (1.5, 1.0, 67, 0, "stop"),  # not contiguous: two notes
        (0.0, 1.0, 64, 0, None), (1.0, 1.0, 64, 0, "stop"),  # a stray 'stop': two notes
    ]  # fmt: skip
    assert mpc.merge_ties(tied) == [
        (0.0, 1.0, 64, 0), (0.0, 1.0, 67, 0), (0.0, 2.5, 60, 0), (0.0, 3.0, 64, 1),
        (1.0, 1.0, 64, 0), (1.5, 1.0, 67, 0), (2.5, 1.0, 60, 0),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------- transposition
@pytest.mark.parametrize("low, high", [(21, 30), (100, 108), (40, 80), (21, 108)])
def test_transposition_keeps_every_note_on_the_keyboard(low, high):
    rng = np.random.default_rng(low)
    notes = [(float(i), 1.0, int(p), 0) for i, p in enumerate(rng.integers(low, high + 1, 200))]
    notes += [(200.0, 1.0, low, 0), (201.0, 1.0, high, 0)]
    shifts = {mpc.choose_transposition([n[2] for n in notes], rng) for _ in range(300)}
    for shift in shifts:
        assert -6 <= shift <= 6
        assert all(21 <= n[2] <= 108 for n in mpc.transpose_notes(notes, shift))
    if (low, high) == (40, 80):
        assert len(shifts) == 13, "a mid-range piece may go anywhere in -6..6"
    if (low, high) == (100, 108):
        assert max(shifts) == 0 and min(shifts) == -6


def test_transpose_folds_stray_notes_by_octaves_and_merges_unisons():
    notes = [(0.0, 1.0, 15, 0), (0.0, 1.0, 115, 0), (1.0, 1.0, 60, 0), (1.0, 2.0, 60, 1)]
    out = mpc.transpose_notes(notes, 0)
    assert [n[2] for n in out] == [27, 103, 60]
    assert out[-1][1] == 2.0, "the longer of two unison notes is kept"
    assert [n[2] for n in mpc.transpose_notes([(0.0, 1.0, 60, 0)], 5)] == [65]


# ------------------------------------------------------------------------------------------ split
def test_split_is_deterministic_about_five_percent_and_depends_on_seed():
    sources = [f"collection/piece{i}.krn" for i in range(20000)]
    first = [mpc.assign_split(s, 0) for s in sources]
    assert first == [mpc.assign_split(s, 0) for s in sources]
    assert 0.04 < first.count("valid") / len(sources) < 0.06
    other_seed = [mpc.assign_split(s, 1) for s in sources]
    assert other_seed != first


def test_movements_of_a_work_and_variants_of_a_tune_share_a_split_key():
    quartet = "beethoven/opus59no1"
    assert mpc.work_of(f"{quartet}/movement1.mxl") == mpc.work_of(f"{quartet}/movement3.mxl") == quartet
    assert (
        mpc.work_of("palestrina/Agnus_05.krn")
        == mpc.work_of("palestrina/Gloria_05.krn")
        != mpc.work_of("palestrina/Gloria_06.krn")
    )
    assert mpc.work_of("essenFolksong/ballad40.abc", "Die  Mordeltern") == mpc.work_of(
        "oneills1850/0001-0050.abc", "die mordeltern"
    )
    assert mpc.work_of("bach/bwv66.6.mxl") != mpc.work_of("bach/bwv66.7.mxl")
    assert mpc.work_of("bach/bwv66.6.mxl") == mpc.work_of("bach/bwv66.6.krn")


def fake_corpus():
    entries = [mpc.Entry(f"bach/bwv{i}.mxl") for i in range(30)]
    entries += [mpc.Entry("essenFolksong/han1.abc", n) for n in range(1, 41)]
    # 20 variants of one song: apart, some would land in valid (seed 3); as one work they all go to train
    entries += [mpc.Entry("essenFolksong/han2.abc", n, "folk/title:same song") for n in range(1, 21)]
    entries += [mpc.Entry("chopin/mazurka.krn"), mpc.Entry("broken/file.xml")]

    def load(entry):
        if entry.path.startswith("broken"):
            raise ValueError("cannot parse")
        return tune(bars=8) if entry.family == "folk" else chorale(bars=8)

    return entries, load


def test_plan_never_puts_one_score_in_both_splits_and_is_reproducible():
    entries, load = fake_corpus()
    jobs, skipped = mpc.plan_jobs(entries, load, target_s=4 * 3600, seed=3)  # more than the corpus holds
    again, _ = mpc.plan_jobs(entries, load, target_s=4 * 3600, seed=3)
    assert [(j.piece_id, j.split, j.params) for j in jobs] == [(j.piece_id, j.split, j.params) for j in again]
    splits = {}
    for job in jobs:
        side = "valid" if job.split == "heldout" else job.split  # the held-out timbre plays valid works
        assert splits.setdefault(job.entry.work or job.entry.source, side) == side
    assert {j.split for j in jobs if j.entry.work == "folk/title:same song"} == {"train"}
    assert skipped == {"parse error (ValueError)": 1}
    assert len({j.piece_id for j in jobs}) == len(jobs)
    assert max(j.pass_index for j in jobs) == mpc.MAX_PASSES - 1, "a short corpus is rendered several times"


def test_plan_stops_at_the_target_and_takes_every_family_before_repeating_one():
    entries, load = fake_corpus()
    jobs, _ = mpc.plan_jobs(entries, load, target_s=600, seed=0)
    planned = [j.planned_s for j in jobs]
    assert sum(planned) >= 600 and sum(planned[:-1]) < 600
    assert {j.entry.family for j in jobs[:3]} == {"bach", "folk", "chopin"}
    assert all(j.pass_index == 0 for j in jobs)
    assert len({j.entry for j in jobs}) == len(jobs)


def test_long_scores_are_cut_at_bar_lines_into_sections_that_keep_their_marks():
    score = chorale(bars=200)  # 800 quarter notes: 13 minutes at 60 qpm
    score = mpc.ScoreNotes(score.notes, score.bar_starts, 1.0, tempi=((0.0, 60.0), (500.0, 90.0)))
    sections = mpc.section_bounds(score, qpm=60.0, max_s=300.0)
    assert len(sections) == 3 and sections[0][0] == 0.0 and sections[-1][1] == 800.0
    assert all(start % 4 == 0 and (stop - start) * 60 / 60.0 <= 300 * 1.05 for start, stop in sections)
    assert all(a[1] == b[0] for a, b in zip(sections[:-1], sections[1:], strict=True))
    assert mpc.section_bounds(score, qpm=60.0, max_s=900.0) == [(0.0, 800.0)]
    pieces = [mpc.score_section(score, *bounds) for bounds in sections]
    assert sum(len(p.notes) for p in pieces) == len(score.notes)
    assert all(min(n[0] for n in p.notes) == 0.0 and p.bar_starts[0] == 0.0 for p in pieces)
    assert pieces[1].tempi[0] == (0.0, 60.0) and (500.0 - sections[1][0], 90.0) in pieces[1].tempi
    assert pieces[2].tempi == ((0.0, 90.0),)


def test_a_long_score_becomes_several_jobs_from_one_source():
    entries = [mpc.Entry("beethoven/opus1.mxl")]
    jobs, _ = mpc.plan_jobs(entries, lambda e: chorale(bars=800), target_s=600, seed=0, max_passes=1)
    assert len(jobs) >= 3 and len({j.split for j in jobs}) == 1
    assert len({j.params for j in jobs}) == len(jobs), "each section gets its own settings"
    assert all(j.planned_s < 1.3 * mpc.MAX_SECTION_S for j in jobs)


# -------------------------------------------------------------------------------------- loudness
@pytest.mark.parametrize("target", [0.057 / 2, 0.057, 0.057 * 2])
def test_normalise_loudness_hits_the_target_rms(target):
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 0.3, 44100) * np.hanning(44100)).astype(np.float32)
    y = mpc.normalise_loudness(x, target)
    assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(target, rel=1e-4)
    assert np.max(np.abs(y)) < 1.0


def test_normalise_loudness_never_clips_a_peaky_signal():
    x = np.zeros(22050, dtype=np.float32)
    x[100] = 0.5  # one click: reaching RMS 0.057 would need a peak of ~8
    y = mpc.normalise_loudness(x, 0.057)
    assert np.max(np.abs(y)) == pytest.approx(mpc.PEAK_LIMIT, rel=1e-6)


def test_trim_silence_and_chunks():
    rate = 1000
    x = np.concatenate([np.zeros(3000), np.ones(5000) * 0.1, np.zeros(4000)]).astype(np.float32)
    trimmed = mpc.trim_silence(x, rate, keep_s=0.05)
    assert len(trimmed) == 5000 + 2 * 50
    bounds = mpc.chunk_bounds(130_001, rate, max_s=60.0)
    assert bounds[0][0] == 0 and bounds[-1][1] == 130_001 and len(bounds) == 3
    assert all(b - a <= 60 * rate for a, b in bounds)
    assert all(a2 == b1 for (_, b1), (a2, _) in zip(bounds[:-1], bounds[1:], strict=True))


# ------------------------------------------------------------------------------- tempo and key
def test_tempo_map_increases_and_fermatas_are_held_longer():
    score = chorale(bars=8, fermata_every=2)
    rng = np.random.default_rng(0)
    grid, seconds = mpc.tempo_map(score, 32.0, 60.0, rng, phrases=[0.0])
    assert np.all(np.diff(seconds) > 0)
    duration = np.diff(np.interp(np.arange(33.0), grid, seconds))  # seconds per beat
    fermata_beats = [int(f) for f in score.fermatas[:-1]]
    plain_beats = [b for b in range(4, 28) if b not in fermata_beats and b + 1 not in fermata_beats]
    assert duration[fermata_beats].min() > 1.4 * np.median(duration[plain_beats])
    assert 0.85 < np.median(duration[plain_beats]) < 1.15, "60 quarter notes a minute, give or take the drift"


def test_long_and_overlapping_fermatas_are_held_at_most_a_little_longer():
    # a whole-note chord under a fermata, and a fermata on a shorter inner note inside it
    notes = [(0.0, 1.0, 60, 0), (1.0, 4.0, 64, 0), (1.0, 4.0, 48, 1), (3.0, 2.0, 55, 2), (5.0, 1.0, 60, 0)]
    score = mpc.ScoreNotes(notes, [0.0, 4.0], 1.0, fermatas=(1.0, 3.0))
    plain = mpc.ScoreNotes(notes, [0.0, 4.0], 1.0)
    for seed in range(10):
        grid, held = mpc.tempo_map(
            score, 6.0, 60.0, np.random.default_rng(seed), [0.0], max_fermata_extra_s=1.5
        )
        grid, free = mpc.tempo_map(plain, 6.0, 60.0, np.random.default_rng(seed), [0.0])
        extra = np.interp(5.0, grid, held) - np.interp(5.0, grid, free)
        assert 0.5 < extra <= 1.5 + 1e-9


def test_base_tempo_uses_the_mark_and_keeps_onsets_apart():
    marked = mpc.ScoreNotes(chorale(bars=2).notes, [0.0, 4.0], 1.0, tempi=((0.0, 100.0),))
    assert mpc.base_tempo(marked) == pytest.approx(100.0)
    sixteenths = [(i / 16, 1 / 16, 60, 0) for i in range(64)]
    crowded = mpc.ScoreNotes(sixteenths, [0.0, 4.0], 1.0, tempi=((0.0, 200.0),))
    assert (1 / 16) * 60 / mpc.base_tempo(crowded) >= 0.12 - 1e-9


@pytest.mark.parametrize("shift", [0, 5, 9])
def test_estimate_key(shift):
    major = [(float(i), 1.0, 60 + shift + s, 0) for i, s in enumerate([0, 2, 4, 5, 7, 9, 11, 12, 7, 4, 0])]
    assert mpc.estimate_key(major) == (shift % 12, "major")
    minor = [(float(i), 1.0, 57 + shift + s, 0) for i, s in enumerate([0, 2, 3, 5, 7, 8, 11, 12, 7, 3, 0, 0])]
    assert mpc.estimate_key(minor) == ((9 + shift) % 12, "minor")


# -------------------------------------------------------------------------------- accompaniment
@pytest.mark.parametrize("pattern", mpc.ACCOMPANIMENT_PATTERNS)
def test_accompaniment_lies_below_the_tune_in_its_key_and_ends_on_the_tonic(pattern):
    melody = tune(bars=8)
    assert mpc.is_monophonic(melody.notes) and not mpc.is_monophonic(chorale().notes)
    accompanied = mpc.accompany(melody, pattern)
    left = [n for n in accompanied.notes if n[3] == 1]
    right = [n for n in accompanied.notes if n[3] == 0]
    assert len(right) == len(melody.notes) and left
    assert max(n[2] for n in left) < min(n[2] for n in right)
    assert all(n[2] % 12 in {0, 2, 4, 5, 7, 9, 11} for n in left), "C major tune, diatonic chords"
    assert {n[2] % 12 for n in left if n[0] >= 30.0} == {0, 4, 7}, "the last half bar is a C major chord"
    assert not mpc.is_monophonic(accompanied.notes)


def test_accompaniment_keeps_a_line_that_moves_between_parts():
    line = tune(bars=4)
    hocket = mpc.ScoreNotes([(o, d, p, i % 2) for i, (o, d, p, _) in enumerate(line.notes)], line.bar_starts)
    accompanied = mpc.accompany(hocket, "block")
    assert sorted(n[:3] for n in accompanied.notes if n[3] == 0) == sorted(n[:3] for n in line.notes)


def test_harmonise_picks_the_chord_that_covers_the_melody():
    melody = [(0.0, 2.0, 67, 0), (2.0, 2.0, 71, 0), (4.0, 2.0, 65, 0), (6.0, 2.0, 69, 0), (8.0, 4.0, 72, 0)]
    spans = [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0)]
    assert mpc.harmonise(melody, spans, 0, "major") == [4, 3, 0]  # G-B: V, F-A: IV, C: I
    assert mpc.harmonise(melody[:2], spans[:2], 0, "major") == [4, 0], "a tune ends on the tonic chord"


# ---------------------------------------------------------------------------------- performance
@pytest.mark.parametrize("seed", range(3))
def test_performance_is_well_formed_and_reproducible(seed):
    score = chorale(bars=8)
    first = mpc.choose_params(score, mpc.piece_rng(seed, "x"), monophonic=False)
    perf = mpc.perform(score, first, mpc.piece_rng(seed + 100, "x"))
    again = mpc.perform(score, first, mpc.piece_rng(seed + 100, "x"))
    assert perf == again
    assert all(21 <= p <= 108 and 1 <= v <= 127 and 0 <= on < off for on, off, p, v in perf.notes)
    if perf.pedal:
        assert_pedal_well_formed(perf.pedal)
    assert perf.duration_s > max(off for _, off, _, _ in perf.notes)
    by_key = {}
    for on, off, pitch, _ in sorted(perf.notes):
        assert on >= by_key.get(pitch, -1.0), "a key is struck again before it was released"
        by_key[pitch] = off
    onsets = np.array(sorted(on for on, _, _, _ in perf.notes))
    assert len(np.unique(np.round(onsets, 4))) > 32 * 2, "chord notes are not struck at one instant"


def test_midi_events_select_the_preset_and_order_offs_before_ons():
    perf = mpc.Performance([(0.5, 1.0, 60, 80), (1.0, 1.5, 60, 70)], [(0.6, 127), (1.6, 0)], 2.5, 100.0)
    params = mpc.choose_params(chorale(bars=1), np.random.default_rng(0), monophonic=False)
    for preset, timbre in mpc.PRESETS.items():
        events = mpc.midi_events(perf, type(params)(**{**params.__dict__, "preset": preset}))
        messages = [e[2] for e in events]
        assert ("control_change", 0, timbre.bank) in messages
        assert ("program_change", timbre.program) in messages
        at_one = [m[0] for t, _, m in events if t == 1.0]
        assert at_one == ["note_off", "note_on"]
        assert [t for t, _, _ in events] == sorted(t for t, _, _ in events)


def test_midi_file_round_trip(tmp_path):
    mido = pytest.importorskip("mido")
    perf = mpc.Performance([(0.5, 1.0, 60, 80), (1.25, 1.5, 64, 70)], [(0.6, 127), (1.6, 0)], 2.5, 100.0)
    params = mpc.choose_params(chorale(bars=1), np.random.default_rng(0), monophonic=False)
    params = type(params)(**{**params.__dict__, "preset": "mellow"})
    mpc.write_midi(perf, params, tmp_path / "x.mid")
    midi = mido.MidiFile(tmp_path / "x.mid")
    assert midi.length == pytest.approx(2.5, abs=0.01)
    messages = [m for m in midi if not m.is_meta]
    assert any(m.type == "control_change" and m.control == 0 and m.value == 8 for m in messages)
    assert any(m.type == "control_change" and m.control == 64 and m.value == 127 for m in messages)


def test_script_imports_without_music21_and_mido():
    code = (
        "import sys, importlib.util; sys.modules['music21'] = None; sys.modules['mido'] = None; "
        f"spec = importlib.util.spec_from_file_location('m', {str(SCRIPT)!r}); "
        "m = importlib.util.module_from_spec(spec); sys.modules['m'] = m; spec.loader.exec_module(m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_detuning_is_one_pitch_wheel_message_of_the_drawn_cents():
    perf = mpc.Performance([(0.5, 1.0, 60, 80)], [], 2.0, 100.0)
    params = mpc.choose_params(chorale(bars=1), np.random.default_rng(0), monophonic=False)
    for cents, value in ((0.0, 0), (10.0, 410), (-20.0, -819)):
        events = mpc.midi_events(perf, type(params)(**{**params.__dict__, "detune_cents": cents}))
        assert [m for _, _, m in events if m[0] == "pitchwheel"] == [("pitchwheel", value)]
    drawn = [
        mpc.choose_params(chorale(bars=1), np.random.default_rng(s), False).detune_cents for s in range(200)
    ]
    assert max(map(abs, drawn)) <= 20 and 3 < np.std(drawn) < 9


def test_training_draws_every_trained_timbre_and_never_the_held_out_one():
    presets = [
        mpc.choose_params(chorale(bars=1), np.random.default_rng(s), False).preset for s in range(2000)
    ]
    assert set(presets) == set(mpc.TRAIN_PRESETS)
    assert mpc.HELDOUT_PRESET not in mpc.TRAIN_PRESETS and mpc.PRESETS[mpc.HELDOUT_PRESET].weight == 0
    share = presets.count("grand") / len(presets)
    assert abs(share - mpc.TRAIN_WEIGHTS[mpc.TRAIN_PRESETS.index("grand")]) < 0.03


def test_every_valid_rendering_has_a_held_out_timbre_twin_with_the_same_performance():
    entries = [mpc.Entry(f"bach/bwv{i}.mxl") for i in range(120)]
    jobs, _ = mpc.plan_jobs(entries, lambda e: chorale(bars=8), 3600, seed=0)
    valid = {j.piece_id: j for j in jobs if j.split == "valid"}
    twins = {j.piece_id: j for j in jobs if j.split == "heldout"}
    assert valid and len(twins) == len(valid)
    for piece_id, twin in twins.items():
        original = valid[piece_id.removesuffix(mpc.HELDOUT_SUFFIX)]
        assert twin.performance_id == original.piece_id and twin.params.preset == mpc.HELDOUT_PRESET
        assert twin.params == type(twin.params)(**{**original.params.__dict__, "preset": mpc.HELDOUT_PRESET})
    planned_train_valid = sum(j.planned_s for j in jobs if j.split != "heldout")
    assert planned_train_valid >= 3600 > planned_train_valid - max(j.planned_s for j in jobs)


@pytest.mark.parametrize(
    "package, file",
    [("fluid-soundfont-gm", "FluidR3_GM.sf2"), ("fluidr3mono-gm-soundfont", "FluidR3Mono.sf3")],
)
def test_the_evaluation_soundfonts_are_refused(package, file):
    with pytest.raises(ValueError, match="kept aside"):
        mpc.find_soundfont(package, file)
    assert all("fluid" not in t.file.lower() for t in mpc.PRESETS.values())
