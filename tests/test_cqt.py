"""The constant-Q transform: reference layout and coefficients, exact inverse, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cqtrestore.cqt import CQT, frame_layout, gather_tables
from tests.conftest import relative_error

SR = 22050


def music_like(length: int, seed: int = 0) -> torch.Tensor:
    """Decaying harmonic tones (a piano-ish test signal), shape (2, length)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / SR
    out = np.zeros((2, length))
    for row in out:
        for f0 in rng.uniform(60, 1500, size=4):
            onset = rng.uniform(0, t[-1] / 2)
            env = np.where(t >= onset, np.exp(-3 * (t - onset)), 0.0)
            for k in range(1, 9):
                if k * f0 < SR / 2:
                    row += env * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
    return torch.from_numpy(0.05 * out / out.std()).float()


@pytest.mark.parametrize("length", [65536, 131072])
def test_layout_matches_reference(official, length):
    with np.load(official / "cqt_layout.npz") as npz:
        ref = {key: npz[key] for key in npz.files if key.endswith(f"_{length}")}
    layout = frame_layout(SR, length)
    np.testing.assert_allclose(layout.centres_hz, ref[f"center_hz_{length}"], rtol=1e-12)
    np.testing.assert_array_equal(layout.window_lengths, ref[f"window_len_{length}"])
    np.testing.assert_array_equal(layout.centre_bins, ref[f"center_bin_{length}"])
    assert layout.frames == ref[f"g_{length}"].shape[1] and layout.rows == 450
    # Windows, ranges and duals of the non-negative rows, compared slot by slot.
    index, analysis, synthesis = gather_tables(SR, length)
    for row in range(layout.rows):
        n = layout.window_lengths[row]
        offsets = np.arange(-(n // 2), n - n // 2)
        slots = offsets % layout.frames
        np.testing.assert_array_equal(index[row, slots], ref[f"win_range_{length}"][row, :n])
        np.testing.assert_allclose(analysis[row, slots], ref[f"g_{length}"][row, offsets % n], atol=1e-7)
        dual = synthesis[row, slots] / layout.frames
        np.testing.assert_allclose(dual, ref[f"gdual_{length}"][row, offsets % n], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("length", [65536, 131072])
def test_coefficients_match_reference(official, length):
    ref = np.load(official / "cqt_reference.npz")
    x = torch.from_numpy(ref[f"x_{length}"])
    cqt = CQT(SR, length)
    coefficients = cqt(x)
    assert coefficients.shape == ref[f"X_{length}"].shape
    assert relative_error(coefficients, ref[f"X_{length}"]) < 1e-5
    assert relative_error(cqt.inverse(coefficients), ref[f"xrec_{length}"]) < 1e-5
    assert relative_error(cqt.inverse(torch.from_numpy(ref[f"X_{length}"])), ref[f"x_{length}"]) < 1e-5


@pytest.mark.parametrize("length", [2**14, 2**16, 2**17, 44101])
def test_round_trip_float32(length):
    cqt = CQT(SR, length)
    noise = 0.05 * torch.randn(2, length, generator=torch.Generator().manual_seed(length))
    for x in (noise, music_like(length)):
        coefficients = cqt(x)
        assert coefficients.shape == (2, 2, 450, cqt.frames)
        assert relative_error(cqt.inverse(coefficients), x) < 1e-5


@pytest.mark.parametrize("length", [4096, 2**16, 30001])
def test_round_trip_float64_is_exact(length):
    x = torch.randn(1, length, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cqt = CQT(SR, length)
    assert relative_error(cqt.inverse(cqt(x)), x) < 1e-12


@pytest.mark.parametrize("length", [2**14, 2**15, 2**16, 44101])
def test_round_trip_with_a_minimum_window_in_hz_is_exact(length):
    x = torch.randn(1, length, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    cqt = CQT(SR, length, min_window_hz=4 * SR / 2**14)
    assert relative_error(cqt.inverse(cqt(x)), x) < 1e-9  # the frame is worst conditioned near Nyquist


def test_a_minimum_window_in_hz_makes_the_low_rows_the_same_at_every_length():
    # The reference's 4-bin floor is a width in Hz that halves as the signal doubles: at 22.05 kHz the
    # 100-Hz rows are 5.4 Hz wide on 2^14 samples, 2.7 Hz on 2^15 and 2.0 Hz (their natural width) on
    # 2^16. With the floor at 5.38 Hz (4 bins of 2^14) every row keeps its width in Hz from 2^14 up.
    hz = 4 * SR / 2**14
    rows = slice(1, 300)  # DC excluded: its window spans 0-86 Hz at any length
    widths = {}
    for option in (0.0, hz):
        widths[option] = [
            frame_layout(SR, n, min_window_hz=option).window_lengths[rows] * SR / n
            for n in (2**14, 2**15, 2**16)
        ]
    reference, fixed = widths[0.0], widths[hz]
    assert np.abs(reference[0] - reference[2]).max() > 3.0  # the reference's 100-Hz rows: 5.4 vs 2.0 Hz
    for other in fixed[1:]:
        assert np.abs(other - fixed[0]).max() <= 2 * SR / 2**14  # equal to within rounding at 2^14
    assert fixed[2].min() >= hz - SR / 2**16
    # Above the floor (natural widths, from about 500 Hz) nothing changes, and the frame count neither.
    natural = frame_layout(SR, 2**16).centres_hz[rows] > 520
    assert np.array_equal(reference[2][natural], fixed[2][natural])
    assert frame_layout(SR, 2**16, min_window_hz=hz).frames == frame_layout(SR, 2**16).frames == 704


def test_minimum_window_outside_zero_to_nyquist_is_refused():
    with pytest.raises(ValueError, match="min_window_hz"):
        CQT(SR, 8192, min_window_hz=-1.0)


def test_frames_for_paper_window():
    assert CQT(SR, 65536).frames == 704
    assert CQT(SR, 131072).frames == 1407


def test_tone_lands_in_nearest_row():
    length = 2**15
    layout = frame_layout(SR, length)
    for row in (40, 200, 300, 420):
        f = layout.centres_hz[row]
        t = torch.arange(length, dtype=torch.float64) / SR
        energy = CQT(SR, length)(torch.sin(2 * math.pi * f * t)[None]).pow(2).sum(dim=(0, 1, 3))
        assert int(energy.argmax()) == row


def test_dc_signal_only_in_dc_row():
    energy = CQT(SR, 8192)(torch.ones(1, 8192, dtype=torch.float64)).pow(2).sum(dim=(0, 1, 3))
    assert energy[0] > 0 and energy[1:].sum() < 1e-20 * energy[0]


def test_batched_equals_one_by_one_and_linear():
    cqt = CQT(SR, 8192)
    x = torch.randn(3, 8192, dtype=torch.float64)
    batched = cqt(x)
    for i in range(3):
        torch.testing.assert_close(batched[i : i + 1], cqt(x[i : i + 1]))
    torch.testing.assert_close(cqt(2 * x[:1] - 3 * x[1:2]), 2 * batched[:1] - 3 * batched[1:2])


def test_other_lengths_through_one_module():
    cqt = CQT(SR, 8192)
    x = torch.randn(1, 10000, dtype=torch.float64)
    coefficients = cqt(x)
    assert coefficients.shape[-1] == frame_layout(SR, 10000).frames
    assert relative_error(cqt.inverse(coefficients, length=10000), x) < 1e-12
    with pytest.raises(ValueError, match="expected coefficients"):
        cqt.inverse(coefficients)  # frames of a 10000-sample signal, default length 8192


def test_bad_input_shape():
    with pytest.raises(ValueError, match="batch, length"):
        CQT(SR, 8192)(torch.zeros(8192))


def test_gradcheck_forward_and_inverse():
    length = 2048
    cqt = CQT(SR, length)
    x = torch.randn(1, length, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cqt, (x,), fast_mode=True)
    coefficients = cqt(x.detach()).requires_grad_(True)
    assert torch.autograd.gradcheck(cqt.inverse, (coefficients,), fast_mode=True)


def test_gradcheck_small_frame_full_jacobian():
    cqt = CQT(8000, 128, bins_per_octave=3, octaves=2)
    x = torch.randn(2, 128, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: cqt.inverse(cqt(v)), (x,))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = music_like(2**16)
    cqt = CQT(SR, 2**16)
    on_gpu = cqt(x.cuda())
    assert relative_error(on_gpu, cqt(x)) < 1e-5
    assert relative_error(cqt.inverse(on_gpu), x) < 1e-5
