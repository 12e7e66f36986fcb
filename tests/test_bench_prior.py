"""Smoke test of bench/prior.py: the debug network, two samples, a generated valid folder."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import REPO_ROOT, load_file

from cqtrestore.diffusion import Denoiser, ZeroNetwork
from cqtrestore.metrics import third_octave_ltas


@pytest.fixture(scope="module")
def prior():
    """bench/prior.py imported as a module (bench/ is not a package)."""
    return load_file("bench_prior", "bench/prior.py")


def _piano_like(seconds: float = 4.0, sample_rate: int = 22050) -> np.ndarray:
    """A decaying 220 Hz tone with harmonics, at a piano-like level."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = sum(np.sin(2 * np.pi * 220 * h * t) / h**2 for h in range(1, 9))
    return (0.1 * np.exp(-t / 2) * tone).astype(np.float32)


def test_prior_bench_tiny_run_writes_its_report(tmp_path):
    valid = tmp_path / "valid"
    valid.mkdir()
    sf.write(str(valid / "clip.flac"), _piano_like(), 22050)
    report_path = tmp_path / "prior.json"
    command = [sys.executable, "bench/prior.py", "--tiny", "--data", str(valid), "--json", str(report_path)]
    result = subprocess.run(command + ["--track"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LTAS distance" in result.stdout and "level-normalised" in result.stdout
    assert "D along sampler" in result.stdout
    report = json.loads(report_path.read_text())
    assert len(report["track"]) == 4 and report["s_churn"] == 5.0  # one row per sampler step
    assert report["checkpoint"] == "debug" and report["samples"] == 2
    # The overall level is the mean power of the samples' own levels.
    assert len(report["sample_rms_db"]) == 2
    mean_power = np.mean(10 ** (np.array(report["sample_rms_db"]) / 10))
    assert np.isclose(10 * np.log10(mean_power), report["samples_rms_db"])
    assert len(report["bands"]) == 21 and report["bar_db"] == 3.0
    differences = np.array([band["difference_db"] for band in report["bands"]])
    assert np.isclose(report["distance_db"], np.sqrt(np.mean(differences**2)))
    centred = differences - differences.mean()
    assert np.isclose(report["level_normalised_distance_db"], np.sqrt(np.mean(centred**2)))
    assert report["passed"] == (report["distance_db"] <= 3.0)
    # Real crops scored as samples: 20 sets of 2 from another draw of 4 crops of the same clip.
    assert report["null_sets"] == 20 and report["null_set_size"] == 2 and report["null_crops"] == 4
    spread = report["null_distance_db"]
    assert spread["p10"] <= spread["median"] <= spread["p90"] and 0 <= report["null_within_bar"] <= 1
    assert len(report["null_band_p10_db"]) == len(report["null_band_p90_db"]) == 21
    assert "real crops instead" in result.stdout
    # A random network is no piano prior: the harmonic clip has almost nothing above 2 kHz.
    assert not report["passed"]


def test_prior_bench_zero_network_draws_the_gaussian_prior_of_a_spectral_checkpoint(tmp_path):
    # piano-small is spectral: F = 0 samples the corpus's stationary Gaussian, whose long-term spectrum is
    # the piano's own (dark: >40 dB from the low bands to 10 kHz), nothing like the harmonic test clip's.
    valid = tmp_path / "valid"
    valid.mkdir()
    sf.write(str(valid / "clip.flac"), _piano_like(), 22050)
    report_path = tmp_path / "prior.json"
    command = [sys.executable, "bench/prior.py", "--checkpoint", "piano-small", "--zero-network"]
    command += [
        "--samples",
        "2",
        "--batch",
        "2",
        "--crops",
        "2",
        "--data",
        str(valid),
        "--json",
        str(report_path),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert report["zero_network"] and report["checkpoint"] == "piano-small"
    levels = np.array([band["samples_db"] for band in report["bands"]])
    assert levels[:6].max() - levels[-3:].max() > 40
    # A stationary Gaussian may pass for piano in its spectrum, never in its notes: no onsets.
    assert report["sample_onsets_per_s"] == [0.0, 0.0]


def test_gaussian_start_skips_steps_without_changing_a_gaussian_priors_samples(prior):
    # With F = 0 the closed-form flow is exact, so starting the sampler at σ = 0.05 from it must give
    # samples of the same spectrum as the full schedule, both that of the Gaussian: σ_max's noise is gone.
    spectrum = torch.logspace(-2, -7, 32, dtype=torch.float64)
    denoiser = Denoiser(ZeroNetwork(), spectrum=spectrum)
    full = prior.draw_samples(denoiser, 8, 8192, 35, 8, seed=0)
    skipped = prior.draw_samples(denoiser, 8, 8192, 35, 8, seed=0, gaussian_start=0.05)
    _, full_db = third_octave_ltas(full, 22050, 200, 8000)
    _, skipped_db = third_octave_ltas(skipped, 22050, 200, 8000)
    white = torch.randn(8, 8192, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    gaussian = denoiser.gaussian_flow(white * 1e3, 1e3, 0.0)  # ≈ white·√P(f): (1e3)² ≫ P
    _, expected_db = third_octave_ltas(gaussian, 22050, 200, 8000)
    assert (full_db - skipped_db).abs().max() < 1.0
    assert (full_db - expected_db).abs().max() < 1.0
    with pytest.raises(SystemExit, match="below the whole schedule"):
        prior.draw_samples(denoiser, 1, 8192, 12, 1, seed=0, gaussian_start=1e-5)


def _decaying_crops(count: int, length: int = 8192) -> torch.Tensor:
    """Crops of differently pitched, differently loud decaying tones over faint noise (every band above
    the LTAS floor): sets of them differ in LTAS."""
    t = torch.arange(length, dtype=torch.float64) / 22050
    pitches = 110 * 2 ** (torch.arange(count, dtype=torch.float64) / 5)
    levels = 0.02 * 2 ** (torch.arange(count, dtype=torch.float64) % 3)
    tones = levels[:, None] * torch.exp(-3 * t) * torch.sin(2 * math.pi * pitches[:, None] * t)
    noise = 1e-3 * torch.randn(count, length, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return (tones + noise).float()


def test_null_distances_are_zero_for_the_reference_itself_and_a_gain_shifts_every_band(prior):
    crops = _decaying_crops(6)
    _, reference_db = third_octave_ltas(crops, 22050, 100, 10000)
    # Every crop in every set: each set is the reference, whatever the order.
    distances, differences = prior.null_distances(crops, reference_db, 6, 22050, 100, 10000, sets=5)
    assert np.abs(distances).max() < 1e-9 and np.abs(differences).max() < 1e-9
    # Twice as loud: every band 6.02 dB up, so every distance is 6.02 dB too.
    distances, differences = prior.null_distances(2 * crops, reference_db, 6, 22050, 100, 10000, sets=5)
    assert np.allclose(differences, 20 * math.log10(2), atol=1e-6)
    assert np.allclose(distances, 20 * math.log10(2), atol=1e-6)
    # Smaller sets of varied crops scatter; the summary's percentiles and share follow the distances.
    distances, differences = prior.null_distances(crops, reference_db, 2, 22050, 100, 10000, sets=50)
    assert distances.std() > 0.1
    summary = prior.null_summary(distances, differences, 2, 6)
    assert summary["null_within_bar"] == pytest.approx(np.mean(distances <= 3.0))
    assert summary["null_distance_db"]["median"] == pytest.approx(np.median(distances))
    with pytest.raises(ValueError, match="crops per set"):
        prior.null_distances(crops, reference_db, 7, 22050, 100, 10000)


@pytest.mark.parametrize(
    "option, message",
    [
        (["--churn", "-1"], "s_churn must be"),
        (["--sigma-max", "0"], "sigma_min < sigma_max"),
        (["--null-sets", "-1"], "--null-sets must be"),
    ],
)
def test_bad_sampler_options_are_a_usage_error(prior, option, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        prior.parse_args(["--tiny", *option])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_churn_and_s_noise_reach_the_sampler(prior):
    # Without churn the generator only draws the starting noise, so S_noise cannot matter; with it, it must.
    denoiser = Denoiser(ZeroNetwork(), spectrum=torch.logspace(-3, -6, 16, dtype=torch.float64))
    draw = lambda **churn: prior.draw_samples(denoiser, 2, 4096, 8, 2, seed=0, **churn)  # noqa: E731
    assert torch.equal(draw(s_churn=0.0, s_noise=2.0), draw(s_churn=0.0, s_noise=1.0))
    assert not torch.allclose(draw(s_churn=5.0, s_noise=2.0), draw(s_churn=5.0, s_noise=1.0))
    assert torch.equal(draw(), draw(s_churn=5.0, s_noise=1.0))


class _Shrunk(torch.nn.Module):
    """A denoiser whose estimates are ``gain`` times another's: a network that under-generates."""

    def __init__(self, inner: Denoiser, gain: float) -> None:
        super().__init__()
        self.inner, self.gain = inner, gain

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        return self.gain * self.inner(x, sigma)


@pytest.mark.parametrize("gain", [1.0, 0.7])
def test_track_levels_finds_where_the_sampler_leaves_the_data(prior, gain):
    # For the exact denoiser of a Gaussian prior (F = 0) started from its own noise (P << σ_max²), the
    # sampler's states are the prior's noised marginals, so D is as loud along the sampler as on noised
    # data at every step. A denoiser that shrinks by 0.7 drags the sampler quieter than the data: the gap
    # opens and grows as σ falls.
    exact = Denoiser(ZeroNetwork(), spectrum=torch.logspace(-3, -6, 16, dtype=torch.float64))
    white = torch.randn(16, 8192, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    reference = exact.gaussian_flow(white * 1e3, 1e3, 0.0).float()
    denoiser, tracker = _Shrunk(exact, gain), prior.LevelTracker()
    prior.draw_samples(denoiser, 8, 8192, 20, 4, seed=0, callback=tracker)
    rows = prior.track_levels(denoiser, tracker, reference, seed=0, batch=8)
    assert len(rows) == 20 and rows[0]["sigma"] > rows[-1]["sigma"]
    gaps = np.array([row["gap_db"] for row in rows])
    if gain == 1.0:
        assert np.abs(gaps).max() < 0.6
    else:
        assert gaps[-1] < -3.0 and gaps[-1] < gaps[0] - 2.0
