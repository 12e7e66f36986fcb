"""bench/tone_gain.py: the tone gain of the exact Gaussian denoiser is its Wiener gain; a smoke run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, load_file

from cqtrestore.diffusion import Denoiser, ZeroNetwork

SR = 22050


@pytest.fixture(scope="module")
def bench():
    return load_file("bench_tone_gain", "bench/tone_gain.py")


def test_tones_sit_on_bin_centres_a_quarter_octave_apart(bench):
    freqs = bench.tone_frequencies(SR, 65536)
    assert float(freqs[0]) == pytest.approx(110, abs=0.2) and float(freqs[-1]) < 9500
    assert torch.allclose(freqs * 65536 / SR, torch.round(freqs * 65536 / SR))
    ratios = freqs[1:] / freqs[:-1]
    assert torch.allclose(ratios, torch.full_like(ratios, 2**0.25), atol=0.01)


def test_the_gaussian_priors_tone_gain_is_its_wiener_gain(bench):
    """With F = 0 the denoiser is the Wiener filter P/(P + σ²): that is each tone's gain (the noise's
    share averages out over a 2^16 window to ~1 %), below 1 everywhere, falling with σ."""
    spectrum = 0.002 / (1 + torch.linspace(0, SR / 2, 257, dtype=torch.float64) / 500)
    denoiser = Denoiser(ZeroNetwork(), spectrum=spectrum, edge_pad=0)
    freqs = bench.tone_frequencies(SR, 65536)
    power = denoiser.power(65536, torch.zeros(1, dtype=torch.float64))[0]
    bins = torch.round(freqs * 65536 / SR).long()
    for sigma in (0.3, 0.05):
        gains = bench.tone_gains(
            denoiser, freqs, -25.0, sigma, SR, generator=torch.Generator().manual_seed(0)
        )
        expected = power[bins] / (power[bins] + sigma**2)
        torch.testing.assert_close(gains, expected, atol=0.02, rtol=0.02)
        assert float(gains.max()) < 1


def test_tone_gain_bench_runs_on_the_debug_network(tmp_path):
    report_path = tmp_path / "tone.json"
    command = [
        sys.executable, "bench/tone_gain.py", "--checkpoints", "debug", "--sigmas", "0.1", "--length", "8192",
        "--threads", "1", "--json", str(report_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| debug | -25 |" in result.stdout
    (row,) = json.loads(report_path.read_text())["results"]
    assert row["sigma"] == 0.1 and len(row["gains"]) == len(row["freqs_hz"]) == 26
    assert row["max_gain"] == max(row["gains"])
