"""A-SPADE: consistent with the clipped observation and several dB better than it on sparse signals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cqtrestore.aspade import ASpadeOptions, aspade_declip, consistent_bounds, hard_threshold, pair_norm
from cqtrestore.metrics import si_sdr
from cqtrestore.operators import Clip

SR = 22050


def tones(n: int = 8192) -> np.ndarray:
    t = np.arange(n) / SR
    return sum(
        a * np.sin(2 * math.pi * f * t + p) for a, f, p in [(1, 220, 0.3), (0.5, 661, 1), (0.3, 1503, 2)]
    )


def score(x: np.ndarray, estimate: np.ndarray) -> float:
    return si_sdr(torch.from_numpy(x)[None], torch.from_numpy(estimate)[None]).item()


def test_aspade_raises_si_sdr_of_a_clipped_sum_of_sinusoids_by_several_db():
    x = tones()
    threshold = Clip.from_sdr(x, 3.0).threshold
    y = np.clip(x, -threshold, threshold)
    restored = aspade_declip(y, threshold)
    assert score(x, restored) > score(x, y) + 6  # measured: about +9 dB
    reliable = np.abs(y) < threshold * (1 - 1e-9)
    np.testing.assert_allclose(restored[reliable], y[reliable], atol=1e-9)  # consistent with y
    assert np.all(restored[y >= threshold] >= threshold - 1e-9)
    assert np.all(restored[y <= -threshold] <= -threshold + 1e-9)


def test_aspade_leaves_an_unclipped_signal_alone():
    x = 0.1 * tones(4096)
    np.testing.assert_allclose(aspade_declip(x, 1.0), x, atol=1e-12)


@pytest.mark.parametrize("k", [1, 3, 9, 20])
def test_hard_threshold_keeps_the_k_largest_conjugate_pairs(k):
    rng = np.random.default_rng(0)
    coefficients = np.fft.rfft(rng.standard_normal((3, 16)), axis=-1)
    kept = hard_threshold(coefficients, k)
    for row, full in zip(kept, coefficients, strict=True):
        assert np.count_nonzero(row) == min(k, 9)
        np.testing.assert_array_equal(row[row != 0], full[row != 0])
        assert np.abs(full[row == 0]).max(initial=0) <= np.abs(full[row != 0]).min()


def test_hard_threshold_keeps_every_tie_at_the_kth_magnitude():
    coefficients = np.array([[3.0, 2.0, 2.0, 1.0]], dtype=complex)
    np.testing.assert_array_equal(hard_threshold(coefficients, 2), [[3.0, 2.0, 2.0, 0.0]])


def test_the_half_spectrum_iterations_equal_the_full_complex_ones():
    """One ADMM iteration written with the full complex DFT (as in the papers) gives the same x̂ and u."""
    rng = np.random.default_rng(1)
    block, padded = 64, 128
    x, u_full = rng.standard_normal((2, block)), np.zeros((2, padded), dtype=complex)
    full = np.fft.fft(x, padded, axis=-1, norm="ortho") + u_full
    half = np.abs(full[:, : padded // 2 + 1])
    kth = -np.sort(-half, axis=-1)[:, 4:5]
    keep = np.concatenate([half >= kth, (half >= kth)[:, 1 : padded // 2][:, ::-1]], axis=-1)
    z_full = np.where(keep, full, 0)
    z_half = hard_threshold(np.fft.rfft(x, padded, axis=-1, norm="ortho"), 5)
    np.testing.assert_allclose(z_half, z_full[:, : padded // 2 + 1], atol=1e-12)
    np.testing.assert_allclose(
        np.fft.irfft(z_half, padded, norm="ortho"), np.fft.ifft(z_full, norm="ortho").real, atol=1e-12
    )
    np.testing.assert_allclose(pair_norm(z_half, padded), np.linalg.norm(z_full, axis=-1))


def test_projection_onto_the_consistent_set():
    observed = np.array([[0.2, 1.0, -1.0, -0.3]])
    upper, lower = observed >= 1.0, observed <= -1.0
    x = np.array([[5.0, 0.5, -3.0, 7.0]])
    out = np.clip(x, *consistent_bounds(observed, upper, lower))
    np.testing.assert_array_equal(out, [[0.2, 1.0, -3.0, -0.3]])
    x = np.array([[5.0, 2.0, -0.5, 7.0]])  # beyond the level on the clipped side stays; inside is pushed
    np.testing.assert_array_equal(
        np.clip(x, *consistent_bounds(observed, upper, lower)), [[0.2, 2.0, -1.0, -0.3]]
    )


@pytest.mark.parametrize("workers", [2, 3, 50])
def test_threads_share_the_blocks_without_changing_the_result(workers):
    x = tones(16384)
    threshold = Clip.from_sdr(x, 3.0).threshold
    y = np.clip(x, -threshold, threshold)
    options = ASpadeOptions(block=512, hop=128, max_iterations=60)
    np.testing.assert_array_equal(
        aspade_declip(y, threshold, options, workers=workers), aspade_declip(y, threshold, options)
    )


@pytest.mark.parametrize("workers", [0, 1.5, True])
def test_a_bad_worker_count_is_refused(workers):
    with pytest.raises(ValueError, match="workers"):
        aspade_declip(tones(1024), 0.5, workers=workers)


@pytest.mark.parametrize("field", ["block", "hop", "max_iterations"])
def test_options_reject_bad_integers(field):
    with pytest.raises(ValueError, match=field.replace("_", " ")):
        ASpadeOptions(**{field: 0})


def test_options_reject_a_hop_longer_than_the_block():
    with pytest.raises(ValueError, match="hop"):
        ASpadeOptions(block=256, hop=512)


def test_a_plateau_rounded_to_float32_still_counts_as_clipped():
    """A float WAV stores the clip level rounded (here down): the default relative tolerance (1e-6) still
    finds the plateau, where an exact test found none of it and returned the input."""
    x = 0.01 * tones()
    threshold = float(np.float32(Clip.from_sdr(x, 3.0).threshold))
    threshold += 0.25 * float(np.spacing(np.float32(threshold)))
    y = np.clip(x, -threshold, threshold).astype(np.float32).astype(np.float64)
    assert np.abs(y).max() < threshold
    assert score(x, aspade_declip(y, threshold)) > score(x, y) + 6
    assert score(x, aspade_declip(y, threshold, tolerance=0.0)) < score(x, y) + 1
