"""Smoke tests of bench/blind.py and bench/denoise.py on the debug network and one segment."""

from __future__ import annotations

import json
import subprocess
import sys

import soundfile as sf
from conftest import REPO_ROOT
from test_bench_prior import _piano_like


def _valid(tmp_path):
    valid = tmp_path / "valid"
    valid.mkdir()
    sf.write(str(valid / "clip.flac"), _piano_like(), 22050)
    return valid


def test_blind_bench_reports_the_cutoff_error_beside_the_known_filter(tmp_path):
    report_path = tmp_path / "blind.json"
    command = [
        sys.executable, "bench/blind.py", "--checkpoint", "debug", "--data", str(_valid(tmp_path)),
        "--segments", "1", "--filters", "butter4:3000", "kaiser:2000", "--quality", "fast",
        "--threads", "1", "--json", str(report_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())["filters"]
    butter, kaiser = report["butter4:3000"], report["kaiser:2000"]
    assert butter["true_cutoff_hz"] == 3000 and abs(butter["true_slope_db"] - 24.08) < 0.01
    assert 1950 < kaiser["true_cutoff_hz"] < 2050 and kaiser["true_slope_db"] is None  # its -3 dB point
    row = butter["rows"][0]
    assert {"cutoff_error_hz", "slope_db", "lsd_blind", "lsd_known", "si_sdr_blind"} <= set(row)
    assert "| butter4:3000 (−3 dB at 3000 Hz) |" in result.stdout


def test_denoise_bench_scores_the_prior_beside_the_wiener_filter(tmp_path):
    report_path = tmp_path / "denoise.json"
    command = [
        sys.executable, "bench/denoise.py", "--checkpoint", "debug", "--data", str(_valid(tmp_path)),
        "--segments", "1", "--snrs", "20", "--noises", "white", "--settings", "dpmpp2m:2",
        "--threads", "1", "--json", str(report_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(report_path.read_text())["conditions"]["white:20"]["summary"]
    assert set(summary) == {"noisy", "wiener", "dpmpp2m:2"}
    assert summary["noisy"]["si_sdr_gain"][0] == 0.0
    assert summary["wiener"]["si_sdr_gain"][0] > 3  # 20 dB SNR white hiss over piano-like tones
