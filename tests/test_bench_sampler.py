"""Smoke test of bench/sampler.py: the debug network, one segment, a preset beside grid settings (the old
default's 69 evaluations are left out to keep the suite short: its plan is checked in test_warmstart)."""

from __future__ import annotations

import json
import subprocess
import sys

import soundfile as sf
from conftest import REPO_ROOT
from test_bench_prior import _piano_like


def test_sampler_bench_times_and_scores_every_setting_beside_the_baseline(tmp_path):
    valid = tmp_path / "valid"
    valid.mkdir()
    sf.write(str(valid / "clip.flac"), _piano_like(), 22050)
    report_path = tmp_path / "sampler.json"
    command = [
        sys.executable, "bench/sampler.py", "--checkpoint", "debug", "--data", str(valid), "--segments", "1",
        "--tasks", "inpaint200ms", "--qualities", "fast",
        "--grid", "dpmpp2m:2:0.1:0.05", "heun:2:none:smin=1e-3", "dpmpp2m:2:0.1:0.05:dc=0.02",
        "--skip-default",
        "--threads", "1", "--json", str(report_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(report_path.read_text())["tasks"]["inpaint200ms"]
    assert list(rows) == [
        "degraded", "LPC", "quality=fast", "dpmpp2m:2:0.1:0.05", "heun:2:none:smin=1e-3",
        "dpmpp2m:2:0.1:0.05:dc=0.02",
    ]  # fmt: skip
    assert rows["quality=fast"]["warm_start"] and rows["quality=fast"]["sampler"]["solver"] == "dpmpp2m"
    grid = rows["dpmpp2m:2:0.1:0.05"]
    assert grid["evaluations"] == 2 and grid["sampler"]["sigma_max"] == 0.1
    assert grid["guidance"] == {"mode": "dc+rg", "xi": 0.35, "rg_sigma_min": 0.05, "dc_sigma_min": 0.0}
    assert rows["dpmpp2m:2:0.1:0.05:dc=0.02"]["guidance"]["dc_sigma_min"] == 0.02
    heun = rows["heun:2:none:smin=1e-3"]
    assert heun["evaluations"] == 3 and not heun["warm_start"] and heun["sampler"]["sigma_min"] == 1e-3
    for label in ("heun:2:none:smin=1e-3", "quality=fast", "LPC"):
        summary = rows[label]["summary"]
        assert summary["seconds"][0] > 0 and {"gap_lsd", "gap_si_sdr", "lsd"} <= set(summary)
    # Warm-started settings start from LPC and keep the observed context: they cannot be far from it.
    assert rows["dpmpp2m:2:0.1:0.05"]["summary"]["si_sdr"][0] > heun["summary"]["si_sdr"][0]
    assert "| inpaint200ms | quality=fast | 4 |" in result.stdout
