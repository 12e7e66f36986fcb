"""Whole folders: discovery and mirroring, complete outputs skipped, stale ones refused, failures reported,
seeds per file, size-balanced shards, and a 2-process torchrun run equal to a single-process one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cqtrestore import collections
from cqtrestore.cli import app
from cqtrestore.collections import CollectionError, Item, Summary

RATE = 22050
RUN = ["--cutoff", "3k", "--checkpoint", "debug", "--steps", "4", "--quiet"]


def tone(seconds: float = 1.0, hz: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.repeat((0.1 * np.sin(2 * np.pi * hz * t))[:, None], channels, axis=1).astype(np.float32)


@pytest.fixture
def folder(tmp_path) -> Path:
    """in/a.wav (float), in/sub/b.flac (16-bit stereo), in/bad.wav (not audio), and files to ignore."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    sf.write(root / "a.wav", tone(1.0, 440), RATE, subtype="FLOAT")
    sf.write(root / "sub" / "b.flac", tone(0.8, 220, channels=2), RATE, subtype="PCM_16")
    (root / "bad.wav").write_text("not audio at all\n")
    (root / "notes.txt").write_text("ignored")
    sf.write(root / ".hidden" / "c.wav", tone(0.5), RATE)
    return root


def same_audio(a: Path, b: Path) -> bool:
    """Equal samples (to float rounding: processes may use other thread counts, so other summation
    orders), rate and encoding (float WAV headers hold a timestamp, so bytes may differ)."""
    (x, rate_x), (y, rate_y) = sf.read(a, dtype="float64"), sf.read(b, dtype="float64")
    same_format = rate_x == rate_y and sf.info(a).subtype == sf.info(b).subtype and x.shape == y.shape
    return same_format and np.allclose(x, y, rtol=0, atol=1e-4)  # 16-bit files: a rounding may flip 1 LSB


def run(*args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------- planning (no model)


def test_plan_mirrors_the_tree_and_skips_hidden_and_non_audio_files(folder, tmp_path):
    items = collections.plan(folder, tmp_path / "out")
    assert [str(i.relative) for i in items] == ["a.wav", "bad.wav", "sub/b.flac"]
    assert [i.output for i in items] == [tmp_path / "out" / p for p in ("a.wav", "bad.wav", "sub/b.flac")]
    assert items[2].record == tmp_path / "out" / ".cqtrestore" / "sub" / "b.flac.json"
    flac = collections.plan(folder, tmp_path / "out", fmt="FLAC")
    assert [i.output.name for i in flac] == ["a.flac", "bad.flac", "b.flac"]
    assert collections.default_output_folder(folder) == tmp_path / "in.restored"


def test_glob_input_takes_its_root_from_the_part_before_the_pattern(folder, tmp_path):
    assert collections.is_collection(folder / "**" / "*.flac") and not collections.is_collection(
        folder / "a.wav"
    )
    items = collections.plan(folder / "**" / "*.flac", tmp_path / "out")
    assert [(str(i.relative), i.output) for i in items] == [("sub/b.flac", tmp_path / "out/sub/b.flac")]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty", "no audio files found"),
        ("inside", "outside the input folder"),
        ("format", "unknown output format"),
        ("clash", "would both be written"),
    ],
)
def test_plan_refuses_what_cannot_work(folder, tmp_path, case, message):
    (tmp_path / "empty").mkdir()
    sf.write(folder / "a.flac", tone(0.2), RATE)  # a.wav and a.flac clash once both become FLAC
    source, out, fmt = {
        "empty": (tmp_path / "empty", tmp_path / "out", None),
        "inside": (folder, folder / "restored", None),
        "format": (folder, tmp_path / "out", "mp4"),
        "clash": (folder, tmp_path / "out", "flac"),
    }[case]
    with pytest.raises(CollectionError, match=message):
        collections.plan(source, out, fmt)


def test_mp3_inputs_are_written_as_flac(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.mp3").write_bytes(b"\xff\xfb" + bytes(100))
    assert collections.plan(tmp_path / "in", tmp_path / "out")[0].output.name == "x.flac"


def test_file_seeds_depend_on_the_seed_and_relative_path_only():
    seeds = {collections.file_seed(s, Path(p)) for s in (0, 1) for p in ("a.wav", "sub/a.wav", "b.wav")}
    assert len(seeds) == 6 and all(0 <= s < 2**32 for s in seeds)
    assert collections.file_seed(7, Path("sub/a.wav")) == collections.file_seed(7, Path("sub") / "a.wav")


def _items(sizes: list[int]) -> list[Item]:
    return [
        Item(Path(f"{i}.wav"), Path(f"{i}.wav"), Path(f"o{i}.wav"), Path(f"r{i}"), s)
        for i, s in enumerate(sizes)
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 10**9), max_size=40), st.integers(1, 6))
def test_shards_hold_every_file_once_and_balance_within_the_largest_file(sizes, world):
    shares = collections.shard(_items(sizes), world)
    assert len(shares) == world
    assert sorted(str(i.relative) for share in shares for i in share) == sorted(
        f"{i}.wav" for i in range(len(sizes))
    )
    loads = [sum(i.size for i in share) for share in shares]
    assert max(loads) - min(loads) <= max(sizes, default=0)
    assert collections.shard(_items(sizes), world) == shares  # every rank computes the same deal


def test_shards_deal_largest_first():
    shares = collections.shard(_items([5, 9, 1, 7, 3]), 2)
    assert [[i.size for i in share] for share in shares] == [[9, 3, 1], [7, 5]]


# ---------------------------------------------------------------- completeness and failures (fake restorer)


def _fake_restore(item: Item):
    """Read the input (fails like a real run on a file soundfile cannot read), then copy it."""
    data, rate = sf.read(item.input)

    def finish() -> float:
        sf.write(item.output, data, rate)
        return len(data) / rate

    return finish


def test_complete_outputs_are_skipped_and_stale_ones_refused_unless_overwritten(folder, tmp_path):
    items = [i for i in collections.plan(folder, tmp_path / "out") if i.relative.name != "bad.wav"]
    first = collections.restore_collection(items, _fake_restore, {"steps": 4}, overwrite=False)
    assert [o.status for o in first.outcomes] == ["restored", "restored"]
    again = collections.restore_collection(items, _fake_restore, {"steps": 4}, overwrite=False)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
    other = collections.restore_collection(items, _fake_restore, {"steps": 5}, overwrite=False)
    assert [o.status for o in other.outcomes] == ["failed", "failed"]
    assert "--overwrite" in other.outcomes[0].reason
    redo = collections.restore_collection(items, _fake_restore, {"steps": 5}, overwrite=True)
    assert [o.status for o in redo.outcomes] == ["restored", "restored"]
    os.utime(items[0].input, ns=(1, 1))  # an edited input makes its output stale
    assert collections.state(items[0], {"steps": 5}) == "stale"
    assert collections.state(items[1], {"steps": 5}) == "complete"
    items[1].record.unlink()  # an output nobody recorded (another tool, or a crash before the record)
    assert collections.state(items[1], {"steps": 5}) == "stale"


def test_a_failing_file_is_reported_and_the_others_go_on(folder, tmp_path):
    items = collections.plan(folder, tmp_path / "out")
    summary = collections.restore_collection(items, _fake_restore, {}, overwrite=False)
    status = {o.relative: o.status for o in summary.outcomes}
    assert status == {"a.wav": "restored", "bad.wav": "failed", "sub/b.flac": "restored"}
    assert (tmp_path / "out/sub/b.flac").is_file() and not (tmp_path / "out/bad.wav").exists()
    assert not (tmp_path / "out/.cqtrestore/bad.wav.json").exists()
    assert summary.audio_seconds == pytest.approx(1.8)
    lines = collections.summary_lines(summary)
    assert lines[0].endswith("3: 2 restored, 0 skipped (complete), 1 failed")
    assert lines[-1].startswith("failed     bad.wav: ") and "bad.wav" in lines[-1]


def test_the_next_file_is_read_while_the_current_one_is_restored(folder, tmp_path):
    items = [i for i in collections.plan(folder, tmp_path / "out") if i.relative.name != "bad.wav"]
    second_read = threading.Event()

    def prepare(item: Item):
        if item is items[1]:
            second_read.set()
        finish = _fake_restore(item)

        def checked() -> float:
            if item is items[0] and not second_read.wait(5):
                raise RuntimeError("the next file was not read ahead")
            return finish()

        return checked

    outcomes = collections.run(items, prepare, {})
    assert [o.status for o in outcomes] == ["restored", "restored"]  # the first waited for the second's read


def test_summary_json_and_real_time_factor():
    outcomes = [
        collections.Outcome("a.wav", "o/a.wav", "restored", audio_seconds=30.0, seconds=10.0),
        collections.Outcome("b.wav", "o/b.wav", "failed", reason="broken"),
    ]
    summary = Summary(outcomes, wall_seconds=15.0, ranks=2)
    data = summary.to_json()
    assert data["real_time_factor"] == 0.5 and data["restored"] == 1 and data["failed"] == 1
    assert data["outcomes"][1]["reason"] == "broken" and data["ranks"] == 2
    assert Summary([], 1.0).real_time_factor is None


# ---------------------------------------------------------------- the command, end to end (debug prior)


def test_folder_run_mirrors_reports_failures_then_resumes(folder, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = run("bwe", folder, "-o", out, "--report", report, *RUN)
    assert result.exit_code == 1, result.output
    assert "failed     bad.wav" in result.output and "1 failed" in result.output
    assert sf.info(out / "a.wav").subtype == "FLOAT" and sf.info(out / "sub/b.flac").subtype == "PCM_16"
    assert sf.info(out / "sub/b.flac").channels == 2 and sf.info(out / "sub/b.flac").frames == round(
        0.8 * RATE
    )
    data = json.loads(report.read_text())
    assert (data["restored"], data["failed"], data["settings"]["cutoff"]) == (2, 1, "3k")
    (folder / "bad.wav").unlink()
    stamp = (out / "a.wav").stat().st_mtime_ns
    again = run("bwe", folder, "-o", out, *RUN)
    assert again.exit_code == 0 and "2 skipped" in again.output, again.output
    assert (out / "a.wav").stat().st_mtime_ns == stamp
    changed = run("bwe", folder, "-o", out, *RUN, "--seed", "3")
    assert changed.exit_code == 1 and "--overwrite" in changed.output
    redone = run("bwe", folder, "-o", out, *RUN, "--seed", "3", "--overwrite", "--format", "flac")
    assert redone.exit_code == 0 and (out / "a.flac").is_file(), redone.output


def test_a_files_output_does_not_depend_on_the_other_files(folder, tmp_path):
    (folder / "bad.wav").unlink()
    both = run("bwe", folder, "-o", tmp_path / "all", *RUN, "--seed", "5", "--batch-size", "8")
    assert both.exit_code == 0, both.output  # a.wav's and b.flac's windows share one batch
    alone = run("bwe", folder / "*" / "b.flac", "-o", tmp_path / "one", *RUN, "--seed", "5")  # root: in/
    assert alone.exit_code == 0, alone.output
    assert same_audio(tmp_path / "one/sub/b.flac", tmp_path / "all/sub/b.flac")
    seed = collections.file_seed(5, Path("sub/b.flac"))  # the single-file command with the file's seed
    single = run("bwe", folder / "sub/b.flac", "-o", tmp_path / "b.flac", *RUN, "--seed", seed)
    assert single.exit_code == 0 and same_audio(tmp_path / "b.flac", tmp_path / "one/sub/b.flac")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--plot", "x.png"], "one file"),
        (["--format", "mp4"], "unknown output format"),
        (["--mode", "xx"], "mode"),
    ],
)
def test_folder_usage_errors_exit_2_and_write_nothing(folder, tmp_path, extra, message):
    result = run("bwe", folder, "-o", tmp_path / "out", *RUN, *extra)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_report_and_format_need_a_folder(folder, tmp_path):
    result = run("bwe", folder / "a.wav", "-o", tmp_path / "x.wav", *RUN, "--report", tmp_path / "r.json")
    assert result.exit_code == 2 and "folder" in result.output


def test_two_torchrun_processes_restore_each_file_once_as_one_process_does(folder, tmp_path):
    (folder / "bad.wav").unlink()
    sf.write(folder / "sub" / "c.wav", tone(0.6, 330), RATE)
    assert run("bwe", folder, "-o", tmp_path / "single", *RUN, "--seed", "2").exit_code == 0
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [
        "-m",
        "cqtrestore",
        "bwe",
        str(folder),
        "-o",
        str(tmp_path / "multi"),
        "--report",
        str(report),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command + RUN + ["--seed", "2"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["ranks"] == 2 and sorted(o["relative"] for o in data["outcomes"]) == [
        "a.wav",
        "sub/b.flac",
        "sub/c.wav",
    ]
    assert {o["rank"] for o in data["outcomes"]} == {0, 1} and data["restored"] == 3
    for name in ("a.wav", "sub/b.flac", "sub/c.wav"):
        assert same_audio(tmp_path / "multi" / name, tmp_path / "single" / name), name


def test_interrupt_leaves_no_partial_output_and_a_rerun_resumes(folder, tmp_path, monkeypatch):
    from cqtrestore.pipeline import Restorer

    (folder / "bad.wav").unlink()
    original, calls = Restorer.restore_windows, []

    def second_file_interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:  # a.wav (1 window, 1 channel) completes, b.flac is interrupted
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Restorer, "restore_windows", second_file_interrupted)
    result = run("bwe", folder, "-o", tmp_path / "out", *RUN, "--batch-size", "1")
    assert result.exit_code == 130 and "resume" in result.output, result.output
    written = sorted(
        str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()
    )
    assert written == [".cqtrestore/a.wav.json", "a.wav"]
    monkeypatch.setattr(Restorer, "restore_windows", original)
    again = run("bwe", folder, "-o", tmp_path / "out", *RUN, "--batch-size", "1")
    assert again.exit_code == 0 and "1 restored, 1 skipped" in again.output, again.output
