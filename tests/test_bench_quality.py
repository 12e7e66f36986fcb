"""Smoke test of bench/quality.py: the debug network, two steps, a generated valid folder, band table."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf
from conftest import REPO_ROOT
from test_bench_prior import _piano_like


def test_quality_bench_reports_lsd_and_where_it_comes_from(tmp_path):
    valid = tmp_path / "valid"
    valid.mkdir()
    sf.write(str(valid / "clip.flac"), _piano_like(), 22050)
    report_path = tmp_path / "quality.json"
    command = [
        sys.executable, "bench/quality.py", "--checkpoint", "debug", "--data", str(valid), "--segments", "1",
        "--cutoffs", "3000", "--steps", "2", "--bands", "0", "1000", "3000", "11025", "--scale-rms",
        "--json", str(report_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    row = json.loads(report_path.read_text())[0]["cutoffs"]["3000"]
    assert np.isclose(row["ratio_to_noise_fill"], row["restored"] / row["noise_fill"])
    bands = row["bands"]
    assert [(b["low_hz"], b["high_hz"]) for b in bands] == [(0, 1000), (1000, 3000), (3000, 11025)]
    # Data consistency keeps the passband, where the clip's partials are (the noise fill copies it).
    assert bands[0]["noise_fill_sq"] < 0.05
    assert abs(bands[0]["restored_log10"] - bands[0]["clean_log10"]) < 0.3
    # The random network's highs are nothing like the clip's (almost silent above 3 kHz).
    assert bands[2]["restored_sq"] > 10 * bands[2]["noise_fill_sq"]
    assert bands[2]["restored_log10"] > bands[2]["clean_log10"] + 3
    assert "restored_sq" in result.stdout
