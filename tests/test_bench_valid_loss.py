"""bench/valid_loss.py: one yardstick for priors trained with different data spectra."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import REPO_ROOT, load_file

from cqtrestore.diffusion import Denoiser, ZeroNetwork


@pytest.fixture(scope="module")
def bench():
    """bench/valid_loss.py imported as a module (bench/ is not a package)."""
    return load_file("bench_valid_loss", "bench/valid_loss.py")


def _dark_spectrum(bins: int = 513) -> torch.Tensor:
    """A piano-like data spectrum: power falling by 60 dB from DC to Nyquist."""
    return torch.logspace(-2, -8, bins, dtype=torch.float64)


def test_the_reference_scores_its_own_training_loss(bench):
    # With the reference as the candidate, λ_ref·|D − x₀|² is the denoiser's own λ-weighted loss (eq. 6).
    reference = Denoiser(ZeroNetwork(), 0.057, _dark_spectrum())
    crops = 0.05 * torch.randn(3, 4096, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigmas = (0.01, 0.3)
    result = bench.scores(reference, reference, crops, sigmas, seed=0)
    for i, sigma in enumerate(sigmas):
        noise = torch.randn(crops.shape, generator=torch.Generator().manual_seed(i))
        own = reference.weighted_error(crops, torch.full((3,), sigma, dtype=torch.float64), noise.double())
        assert result["loss"][f"{sigma:g}"] == pytest.approx(float(own.mean()), rel=1e-3)  # D runs in float32


def test_another_denoiser_is_scored_with_the_reference_weight_not_its_own(bench):
    # A Gaussian prior of a flat spectrum, scored on the dark reference's λ: its loss differs from its own.
    reference = Denoiser(ZeroNetwork(), 0.057, _dark_spectrum())
    flat = Denoiser(ZeroNetwork(), 0.057, torch.full((513,), 1e-4, dtype=torch.float64))
    crops = 0.05 * torch.randn(2, 4096, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    scored = bench.scores(flat, reference, crops, (0.1,), seed=0)["loss"]["0.1"]
    own = bench.scores(flat, flat, crops, (0.1,), seed=0)["loss"]["0.1"]
    assert scored != pytest.approx(own, rel=0.1)
    # The SNR needs no weighting: the same either way.
    assert (
        bench.scores(flat, reference, crops, (0.1,), 0)["snr_db"]
        == bench.scores(flat, flat, crops, (0.1,), 0)["snr_db"]
    )


def test_the_command_writes_one_row_per_split_and_checkpoint(tmp_path):
    valid = tmp_path / "valid"
    valid.mkdir()
    t = np.arange(3 * 22050) / 22050
    sf.write(
        str(valid / "clip.flac"), (0.1 * np.sin(2 * np.pi * 220 * t) * np.exp(-t)).astype(np.float32), 22050
    )
    report_path = tmp_path / "loss.json"
    command = [sys.executable, "bench/valid_loss.py", "--checkpoints", "gaussian", "piano-small"]
    command += ["--reference", "piano-small", "--data", str(valid), "--crops", "1", "--segment", "16384"]
    command += ["--sigmas", "0.1", "3", "--json", str(report_path)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    rows = report["splits"]["valid"]
    assert set(rows) == {"gaussian", "piano-small"} and report["reference"] == "piano-small"
    # At σ = 3 a 220-Hz tone at 0.1 is drowned: every denoiser's estimate is near zero, SNR about 0 dB.
    assert abs(rows["gaussian"]["snr_db"]["3"]) < 1.0
    assert rows["gaussian"]["snr_db"]["0.1"] > rows["gaussian"]["snr_db"]["3"]
