"""Smoke tests of bench/blind.py and bench/denoise.py on the debug network and one segment."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO_ROOT, load_file
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


def test_blind_bench_under_hiss_can_sample_the_chain_at_once_and_scores_the_input(tmp_path):
    reports, valid = {}, _valid(tmp_path)
    for extra in ([], ["--at-once"]):
        report_path = tmp_path / f"blind{len(extra)}.json"
        command = [
            sys.executable, "bench/blind.py", "--checkpoint", "debug", "--data", str(valid),
            "--segments", "1", "--filters", "kaiser:2000", "--quality", "fast", "--snr", "20",
            "--threads", "1", "--json", str(report_path), *extra,
        ]  # fmt: skip
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        reports[len(extra)] = json.loads(report_path.read_text())
    first, at_once = (reports[k]["filters"]["kaiser:2000"]["rows"][0] for k in (0, 1))
    assert reports[1]["at_once"] and not reports[0]["at_once"]
    assert first["si_sdr_input"] == at_once["si_sdr_input"] and 15 < first["si_sdr_input"] < 25  # 20 dB SNR
    assert first["si_sdr_known"] != at_once["si_sdr_known"]  # two different samplers ran


def test_denoise_bench_scores_the_prior_beside_the_wiener_filter(tmp_path):
    report_path = tmp_path / "denoise.json"
    command = [
        sys.executable, "bench/denoise.py", "--checkpoint", "debug", "--data", str(_valid(tmp_path)),
        "--segments", "1", "--snrs", "20", "--noises", "white", "--settings", "dpmpp2m:2", "dpmpp2m:2:raw",
        "--threads", "1", "--json", str(report_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(report_path.read_text())["conditions"]["white:20"]["summary"]
    gating = {"noisereduce", "noisereduce-stationary"} if importlib.util.find_spec("noisereduce") else set()
    assert set(summary) == {"noisy", "wiener", "dpmpp2m:2", "dpmpp2m:2:raw"} | gating
    assert summary["dpmpp2m:2"]["si_sdr_gain"][0] != summary["dpmpp2m:2:raw"]["si_sdr_gain"][0]
    assert summary["noisy"]["si_sdr_gain"][0] == 0.0
    assert summary["wiener"]["si_sdr_gain"][0] > 3  # 20 dB SNR white hiss over piano-like tones


def test_the_spectral_gating_baseline_gates_hiss_where_nothing_plays():
    # noisereduce as a user calls it, both modes: same length out, and a second of hiss alone between
    # notes comes out far quieter (a gate closes where there is only noise).
    pytest.importorskip("noisereduce", reason="the [bench] extra (noisereduce) is not installed")
    bench = load_file("bench_denoise", "bench/denoise.py")
    rng = np.random.default_rng(0)
    t = np.arange(5 * 22050) / 22050
    clean = np.zeros_like(t)
    for onset in (0.0, 0.4, 0.8, 1.2, 3.0, 3.4, 3.8, 4.2):  # nothing between 2 s and 3 s
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        envelope = np.where(t >= onset, np.exp(-(t - onset) * 8), 0.0)
        clean += sum(envelope * np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    clean = 0.06 * clean / clean.std()
    noisy = (clean + bench.noise("white", len(t), rng) * clean.std() / 10).astype(np.float32)
    quiet = slice(int(2.2 * 22050), int(2.8 * 22050))
    gating = bench.spectral_gating()
    assert set(gating) == {"noisereduce", "noisereduce-stationary"}
    for name, gate in gating.items():
        out = gate(noisy)
        assert out.shape == noisy.shape and np.all(np.isfinite(out)), name
        assert np.mean(out[quiet] ** 2) < 0.1 * np.mean(noisy[quiet] ** 2), name


def test_denoise_bench_settings_name_the_sampler_and_the_draws_averaged():
    from cqtrestore.noise import estimate_noise

    bench = load_file("bench_denoise", "bench/denoise.py")
    rng = np.random.default_rng(0)
    noisy = (_piano_like() + 0.01 * rng.standard_normal(4 * 22050)).astype(np.float32)
    estimate = estimate_noise(noisy, 22050)
    hiss, preset = bench.setting_options("balanced", estimate, 0)
    assert preset.draws == 1 and hiss.refines
    doubled = bench.setting_options("balanced:x2", estimate, 0)[1]
    assert doubled.draws == 2 and doubled.sampler == preset.sampler
    other = bench.setting_options("heun:10:x4", estimate, 0)[1]
    assert (other.sampler.solver, other.sampler.steps, other.draws) == ("heun", 10, 4)
    assert other.sampler.sigma_max == preset.sampler.sigma_max
    assert bench.setting_options("dpmpp2m:3", estimate, 0)[1].draws == 1
    raw, options = bench.setting_options("balanced:x2:raw", estimate, 0)
    assert options == doubled and not raw.refines
