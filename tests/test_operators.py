"""Tests for cqtrestore.operators: reference filter, frequency response, projections, SDR solver, chains."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from cqtrestore.operators import (
    Clip,
    Compose,
    Gap,
    Identity,
    LowPass,
    Operator,
    build_operator,
    clipping_sdr_db,
)

SR = 22050


def tone(frequency: float, length: int, sample_rate: int = SR, phase: float = 0.3) -> torch.Tensor:
    """(1, length) float64 sinusoid."""
    t = torch.arange(length, dtype=torch.float64) / sample_rate
    return torch.sin(2 * math.pi * frequency * t + phase)[None]


def noise(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Seeded standard normal tensor."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------- LowPass


@pytest.mark.parametrize("cutoff", [1000, 3000])
def test_reference_lowpass_reproduces_fixture_taps_and_output(official, cutoff):
    fixture = np.load(official / "lowpass_reference.npz")
    lowpass = LowPass.reference(cutoff, SR)
    assert lowpass.numtaps == 500 and lowpass.beta == 0
    assert relative_error(lowpass.taps(torch.float64), fixture[f"h_{cutoff}"]) < 1e-5
    x = torch.from_numpy(fixture["x"])
    for dtype in (torch.float32, torch.float64):
        y = lowpass(x.to(dtype))
        assert y.dtype == dtype and y.shape == x.shape
        assert relative_error(y, fixture[f"y_{cutoff}"]) < 1e-5
    # The half-sample convention matters: the same output one sample later is far off.
    assert relative_error(torch.roll(lowpass(x), 1, dims=-1), fixture[f"y_{cutoff}"]) > 1e-2


@pytest.mark.parametrize("order", [500, 499, 31])
@pytest.mark.parametrize("length", [100, 2000])
def test_lowpass_is_zero_padded_convolution_cropped_to_the_input(order, length):
    lowpass = LowPass(2000, SR, order=order)
    x = noise(2, length)
    h = lowpass.taps().numpy()
    offset = lowpass.numtaps // 2  # zero delay for odd tap counts, conv1d "same" for even ones
    expected = np.stack([np.convolve(row, h)[offset : offset + length] for row in x.numpy()])
    assert np.allclose(lowpass(x).numpy(), expected, atol=1e-12)


def test_default_lowpass_matches_scipy_firwin():
    signal = pytest.importorskip("scipy.signal")
    for cutoff in (1000, 3000):
        lowpass = LowPass(cutoff, SR)
        assert lowpass.numtaps == 501 and lowpass.beta == 8.0
        expected = signal.firwin(501, cutoff, window=("kaiser", 8.0), fs=SR)
        assert relative_error(lowpass.taps(), expected) < 1e-12


@pytest.mark.parametrize("cutoff", [1000, 3000, 5000])
def test_default_lowpass_frequency_response(cutoff):
    # Measured at 22.05 kHz, 501 taps, beta 8: passband ripple <= 0.00082 dB up to fc - 115 Hz,
    # stopband <= -80.66 dB from fc + 115 Hz, -6.02 dB at fc (windowed-sinc half-amplitude point).
    lowpass = LowPass(cutoff, SR)
    impulse = torch.zeros(1, 2049, dtype=torch.float64)
    impulse[0, 1024] = 1
    response = lowpass(impulse)[0].numpy()
    h = lowpass.taps().numpy()
    assert np.allclose(response[1024 - 250 : 1024 + 251], h, atol=1e-15)  # the operator applies exactly h
    assert np.abs(response[: 1024 - 250]).max() < 1e-15 and np.abs(response[1024 + 251 :]).max() < 1e-15
    n_fft = 1 << 18
    gain_db = 20 * np.log10(np.abs(np.fft.rfft(h, n_fft)))
    frequency = np.arange(gain_db.size) * SR / n_fft
    assert np.abs(gain_db[frequency <= cutoff - 115]).max() <= 0.001
    assert gain_db[frequency >= cutoff + 115].max() <= -80.0
    assert gain_db[np.argmin(np.abs(frequency - cutoff))] == pytest.approx(-6.02, abs=0.01)


def test_default_lowpass_has_zero_delay():
    lowpass = LowPass(3000, SR)
    impulse = torch.zeros(1, 4097, dtype=torch.float64)
    impulse[0, 2048] = 1
    response = lowpass(impulse)[0]
    assert int(response.argmax()) == 2048
    assert torch.allclose(response, response.flip(0), atol=1e-15)  # symmetric about the impulse sample
    x = tone(200, 8192)
    y = lowpass(x)
    assert (y - x)[:, 1000:-1000].abs().max() < 1e-4  # passes a low tone with no phase shift
    assert (torch.roll(x, 1) - x)[:, 1000:-1000].abs().max() > 0.05  # ... where a one-sample lag would show


def test_reference_lowpass_advances_by_half_a_sample():
    response = LowPass.reference(3000, SR)(torch.eye(4096, dtype=torch.float64)[2048:2049])[0]
    # Output n is centred on input n + 1/2: symmetric about 2047.5 for an impulse at 2048.
    assert torch.allclose(response[1000:2048], response[2048:3096].flip(0), atol=1e-15)
    assert {int(i) for i in response.topk(2).indices} == {2047, 2048}


def test_lowpass_projection_formula_and_bands():
    lowpass = LowPass(3000, SR)
    x = tone(300, 8192) + tone(6000, 8192, phase=1.0)
    x_hat = 0.7 * tone(500, 8192, phase=2.0) + 0.5 * tone(8000, 8192)
    y = lowpass(x)
    projected = lowpass.project(x_hat, y)
    assert torch.equal(projected, y + x_hat - lowpass(x_hat))
    inner = slice(600, -600)  # away from the zero-padded edges
    # Low band from y, high band from x_hat; LPF o LPF != LPF, so agreement is to the filter's accuracy.
    assert (lowpass(projected) - y)[:, inner].abs().max() < 5e-4
    assert (projected - y - 0.5 * tone(8000, 8192))[:, inner].abs().max() < 5e-4
    assert (y - tone(300, 8192))[:, inner].abs().max() < 5e-4


def test_lowpass_taps_are_cached_symmetric_with_unit_dc_gain():
    lowpass = LowPass(1000, SR)
    taps32 = lowpass.taps(torch.float32)
    assert taps32 is lowpass.taps(torch.float32) and taps32.dtype == torch.float32
    taps = lowpass.taps(torch.float64, "cpu")
    assert taps.shape == (501,) and torch.equal(taps, taps.flip(0))
    assert float(taps.sum()) == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize(
    "options",
    [
        {"cutoff_hz": 0},
        {"cutoff_hz": -5},
        {"cutoff_hz": SR / 2},
        {"cutoff_hz": float("nan")},
        {"order": 0},
        {"order": 2.5},
        {"beta": -1.0},
        {"beta": float("inf")},
        {"sample_rate": 0},
    ],
)
def test_lowpass_rejects_bad_options(options):
    with pytest.raises(ValueError):
        LowPass(**{"cutoff_hz": 1000, "sample_rate": SR, **options})


# ---------------------------------------------------------------- Gap


def test_gap_sample_convention_at_interval_edges():
    # [start, end) removes the samples n with start <= n / sr < end: ceil(start sr) ... ceil(end sr) - 1.
    assert Gap([(0.25, 0.55)], 10).ranges == ((3, 6),)
    assert Gap([(0.07, 0.29)], 100).ranges == ((7, 29),)  # 7.000000000000001 and 28.999999999999996 snap
    gap = Gap([(0.1, 0.2)], SR)
    assert gap.ranges == ((2205, 4410),) and gap.missing_samples == 2205
    mask = gap.mask(8000, dtype=torch.float64)
    assert mask.dtype == torch.float64 and mask.shape == (8000,)
    assert (mask[2204], mask[2205], mask[4409], mask[4410]) == (1, 0, 0, 1)
    assert float(mask.sum()) == 8000 - 2205
    assert gap.intervals == ((0.1, 0.2),)


def test_gap_from_samples_and_multiple_intervals():
    gap = Gap.from_samples([(50, 60), (10, 20)], 100)
    assert gap.ranges == ((10, 20), (50, 60))  # sorted
    assert Gap(gap.intervals, 100).ranges == gap.ranges
    assert Gap.from_samples([(10, 20), (20, 30)], 100).missing_samples == 20  # adjacent gaps are fine
    mask = gap.mask(64)
    assert torch.equal(mask.nonzero().flatten(), torch.tensor([*range(10), *range(20, 50), *range(60, 64)]))


@pytest.mark.parametrize(
    "intervals",
    [
        [(0.2, 0.1)],
        [(0.1, 0.1)],
        [(-0.1, 0.2)],
        [(0.1, float("nan"))],
        [(0.0, 0.5), (0.4, 0.6)],
        [(0.01, 0.02)],
    ],
)
def test_gap_rejects_bad_intervals(intervals):
    with pytest.raises(ValueError):
        Gap(intervals, 10)  # the last case covers no sample at 10 Hz


def test_gap_beyond_the_signal_is_an_error():
    gap = Gap.from_samples([(90, 110)], 100)
    gap.mask(110)
    with pytest.raises(ValueError, match="only 100 samples"):
        gap(torch.zeros(2, 100))


def test_gap_projection_is_exact_and_idempotent():
    gap = Gap([(0.1, 0.15), (0.3, 0.31)], SR)
    x, x_hat = noise(3, 8192, seed=1), noise(3, 8192, seed=2)
    y = gap(x)
    mask = gap.mask(8192, dtype=torch.float64).bool()
    assert torch.equal(y[:, mask], x[:, mask]) and torch.all(y[:, ~mask] == 0)
    projected = gap.project(x_hat, y)
    assert torch.equal(gap(projected), y)
    assert torch.equal(gap.project(projected, y), projected)
    assert torch.equal(projected[:, ~mask], x_hat[:, ~mask])


def test_gap_window_restricts_to_the_window_time():
    gap = Gap.from_samples([(10, 20), (50, 60)], 100)
    assert gap.window(15, 40).ranges == ((0, 5), (35, 40))
    assert gap.window(25, 10).ranges == ()  # nothing missing inside
    x = noise(2, 100)
    for start, length in [(0, 100), (15, 40), (55, 45), (25, 10)]:
        assert torch.equal(
            gap.window(start, length)(x[:, start : start + length]), gap(x)[:, start : start + length]
        )
    assert gap.window(-5, 20).ranges == ((15, 20),)  # a window reaching before the signal (zero-padded)


def test_window_of_time_invariant_operators_is_the_operator_and_compose_maps_parts():
    lowpass, clip = LowPass(3000, 22050), Clip(0.2)
    assert lowpass.window(100, 50) is lowpass and not lowpass.time_varying
    chain = Compose(Gap.from_samples([(10, 20)], 100), clip)
    assert chain.time_varying and not Compose(lowpass, clip).time_varying
    windowed = chain.window(5, 30)
    assert windowed.operators[0].ranges == ((5, 15),) and windowed.operators[1] is clip


# ---------------------------------------------------------------- Clip


def test_clip_from_sdr_matches_reference_thresholds(official):
    signal = np.load(official / "declip_signal.npy")
    reference = json.loads((official / "declip_reference.json").read_text())
    for result in reference["results"]:
        clip = Clip.from_sdr(signal, result["target_sdr_db"])
        assert clip.threshold == pytest.approx(result["threshold"], rel=1e-3)
        assert clipping_sdr_db(signal, clip.threshold) == pytest.approx(result["target_sdr_db"], abs=1e-9)
        assert Clip.from_sdr(torch.from_numpy(signal), result["target_sdr_db"]).threshold == clip.threshold


def test_clipping_sdr_is_monotonic_and_clip_is_bounded():
    x = noise(3, 4096, seed=3)
    thresholds = np.linspace(0.01, float(x.abs().max()) * 0.999, 50)
    sdrs = [clipping_sdr_db(x, threshold) for threshold in thresholds]
    assert np.all(np.diff(sdrs) > 0)
    assert clipping_sdr_db(x, float(x.abs().max())) == math.inf
    clip = Clip.from_sdr(x, 5.0)
    y = clip(x)
    assert y.abs().max() <= clip.threshold
    inside = x.abs() <= clip.threshold
    assert torch.equal(y[inside], x[inside]) and torch.all(y[~inside].abs() == clip.threshold)
    expected = 20 * torch.log10(x.norm() / (x - y).norm())
    assert float(expected) == pytest.approx(5.0, abs=1e-9)


@pytest.mark.parametrize("threshold", [0.0, -0.1, float("inf"), float("nan")])
def test_clip_rejects_bad_thresholds(threshold):
    with pytest.raises(ValueError):
        Clip(threshold)


@pytest.mark.parametrize("sdr_db", [0.0, -3.0, float("inf"), float("nan")])
def test_clip_from_sdr_rejects_unreachable_targets(sdr_db):
    with pytest.raises(ValueError):
        Clip.from_sdr(noise(1, 100), sdr_db)


def test_clip_from_sdr_rejects_silence():
    with pytest.raises(ValueError, match="silent"):
        Clip.from_sdr(np.zeros(100), 10.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_projection_is_consistent_idempotent_and_keeps_the_unclipped_samples(dtype):
    clip = Clip(0.1)
    x, x_hat = noise(3, 4096, seed=11).to(dtype), noise(3, 4096, seed=12).to(dtype)
    y = clip(x)
    top, bottom = clip.clipped(y)
    assert top.any() and bottom.any() and (~(top | bottom)).any()
    projected = clip.project(x_hat, y)
    assert torch.equal(clip(projected), y)  # A(P(x_hat)) = y exactly
    assert torch.equal(clip.project(projected, y), projected)
    inside = ~(top | bottom)
    assert torch.equal(projected[inside], y[inside])
    # Clipped samples keep x_hat where it is already beyond the threshold on the right side
    beyond = (top & (x_hat > y)) | (bottom & (x_hat < y))
    assert beyond.any() and torch.equal(projected[beyond], x_hat[beyond])
    assert torch.equal(clip.project(x, y), x)  # the clean signal is consistent: left alone


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), threshold=st.floats(0.05, 0.5))
def test_clip_projection_is_the_nearest_consistent_signal(seed, threshold):
    clip = Clip(threshold)
    x, x_hat = noise(1, 256, seed=seed), noise(1, 256, seed=seed + 1)
    y = clip(x)
    projected = clip.project(x_hat, y)
    distance = (x_hat - projected).norm()
    # Any other consistent signal is at least as far: random ones, and x itself
    others = clip.project(x_hat + 0.1 * noise(16, 256, seed=seed + 2), y)
    assert torch.equal(clip(others), y.expand_as(others))
    assert bool(((x_hat - others).norm(dim=1) >= distance - 1e-6).all())
    assert (x_hat - x).norm() >= distance - 1e-6


def test_clip_projection_uses_the_observed_level_of_each_clipped_sample():
    # A real clipped file: the plateaus sit at or a little beyond the (smaller-side) threshold
    clip = Clip(0.5)
    y = torch.tensor([[0.2, 0.5, 0.55, -0.5, -0.6, -0.49]])
    x_hat = torch.tensor([[0.0, 0.4, 0.7, 0.0, -0.9, 0.3]])
    expected = torch.tensor([[0.2, 0.5, 0.7, -0.5, -0.9, -0.49]])
    assert torch.equal(clip.project(x_hat, y), expected)


# ---------------------------------------------------------------- Compose and registry


def test_compose_applies_first_argument_first():
    clip, lowpass = Clip(0.5), LowPass(1000, SR, order=64)
    x = noise(2, 2048, seed=4)
    assert torch.equal(Compose(clip, lowpass)(x), lowpass(clip(x)))
    assert torch.equal(Compose(lowpass, clip)(x), clip(lowpass(x)))
    assert (lowpass(clip(x)) - clip(lowpass(x))).abs().max() > 0.1  # the two orders really differ
    assert Compose(clip, lowpass).describe() == f"{clip.describe()} then {lowpass.describe()}"


def test_compose_projection_only_for_a_single_projecting_operator():
    gap = Gap.from_samples([(10, 20)], 100)
    x, x_hat = noise(1, 64, seed=5), noise(1, 64, seed=6)
    single = Compose(gap)
    assert single.has_projection and torch.equal(single.project(x_hat, gap(x)), gap.project(x_hat, gap(x)))
    assert Compose(Clip(0.5)).has_projection
    for chain in (Compose(Clip(0.5), gap), Compose(gap, LowPass(10, 100, order=8))):
        assert not chain.has_projection
        with pytest.raises(NotImplementedError):
            chain.project(x_hat, x)
    with pytest.raises(ValueError):
        Compose()


def test_build_operator():
    assert isinstance(build_operator("lowpass", cutoff_hz=3000, sample_rate=SR), LowPass)
    assert build_operator("lowpass-reference", cutoff_hz=3000, sample_rate=SR).numtaps == 500
    assert build_operator("gap", intervals=[(0.1, 0.2)], sample_rate=SR).ranges == ((2205, 4410),)
    assert build_operator("gap-samples", ranges=[(1, 2)], sample_rate=SR).ranges == ((1, 2),)
    assert build_operator("clip", threshold=0.1).threshold == 0.1
    assert isinstance(build_operator("identity"), Identity)
    with pytest.raises(ValueError, match="choose one of"):
        build_operator("reverb")
    with pytest.raises(ValueError, match="bad options"):
        build_operator("clip", threshold=0.1, cutoff_hz=5)
    with pytest.raises(ValueError, match="bad options"):
        build_operator("lowpass", cutoff_hz=3000)
    with pytest.raises(ValueError, match="Nyquist"):
        build_operator("lowpass", cutoff_hz=20000, sample_rate=SR)


def test_identity():
    x = noise(2, 16)
    assert Identity()(x) is x and Identity().project(noise(2, 16, seed=9), x) is x


# ---------------------------------------------------------------- shared properties


LINEAR_OPERATORS = [
    LowPass(1000, 8000, order=32),
    LowPass(1000, 8000, order=33),
    Gap.from_samples([(5, 40), (100, 101)], 8000),
]


@settings(max_examples=25, deadline=None)
@given(
    a=st.floats(-10, 10),
    b=st.floats(-10, 10),
    seed=st.integers(0, 2**16),
    which=st.sampled_from(range(len(LINEAR_OPERATORS))),
)
def test_linearity(a, b, seed, which):
    operator = LINEAR_OPERATORS[which]
    x1, x2 = noise(2, 256, seed=seed), noise(2, 256, seed=seed + 1)
    assert torch.allclose(operator(a * x1 + b * x2), a * operator(x1) + b * operator(x2), atol=1e-12)


@pytest.mark.parametrize(
    "operator",
    [LowPass(100, 1000, order=16), LowPass.reference(100, 1000), Gap.from_samples([(3, 9), (20, 21)], 1000)],
    ids=["lowpass", "lowpass-reference", "gap"],
)
def test_gradcheck(operator):
    x = noise(1, 24, seed=7).requires_grad_()  # short: gradcheck builds the full Jacobian
    assert torch.autograd.gradcheck(operator, (x,))


def test_clip_gradient_is_one_inside_zero_outside():
    x = torch.tensor([[-0.9, -0.3, 0.0, 0.2, 0.7]], dtype=torch.float64, requires_grad=True)
    Clip(0.5)(x).sum().backward()
    assert torch.equal(x.grad, torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]], dtype=torch.float64))


ALL_OPERATORS = [
    LowPass(3000, SR),
    LowPass.reference(3000, SR),
    Gap([(0.01, 0.02), (0.1, 0.12)], SR),
    Clip(0.5),
    Compose(Clip(0.5), LowPass(3000, SR)),
    Identity(),
]


@pytest.mark.parametrize("operator", ALL_OPERATORS, ids=lambda operator: type(operator).__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batches_and_dtypes(operator, dtype):
    x = noise(3, 4096, seed=8, dtype=dtype)
    y = operator(x)
    assert isinstance(operator, Operator)
    assert y.shape == (3, 4096) and y.dtype == dtype
    tolerance = 1e-6 if dtype == torch.float32 else 1e-13
    for row in range(3):  # each batch item is degraded on its own
        assert torch.allclose(y[row], operator(x[row : row + 1])[0], atol=tolerance)
    description = operator.describe()
    assert description and "\n" not in description


def test_describe_examples():
    assert LowPass(3000, SR).describe() == "lowpass 3000 Hz (Kaiser FIR, 501 taps, beta 8)"
    assert "half-sample advance" in LowPass.reference(3000, SR).describe()
    assert Gap([(0.1, 0.2)], SR).describe() == "gap [0.1, 0.2) s (2205 samples missing at 22050 Hz)"
    assert Clip(0.1).describe() == "hard clip at |x| <= 0.1"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_operators_on_cuda_match_cpu():
    x = noise(3, 65536, seed=10, dtype=torch.float32)
    for operator in (LowPass(3000, SR), Gap([(0.5, 0.6)], SR), Clip(0.3)):
        y = operator(x.cuda())
        assert y.is_cuda and relative_error(y, operator(x)) < 1e-6


def test_at_rate_keeps_times_and_frequencies():
    lowpass = LowPass(3000, 44100, order=300, beta=6.0)
    moved = lowpass.at_rate(22050)
    assert (moved.cutoff_hz, moved.sample_rate, moved.order, moved.beta) == (3000, 22050, 300, 6.0)
    assert lowpass.at_rate(44100) is lowpass
    gap = Gap([(0.5, 0.75)], 44100).at_rate(22050)
    assert gap.ranges == ((11025, 16538),) and gap.intervals[0][0] == 0.5
    clip = Clip(0.3)
    chain = Compose(clip, LowPass(1000, 48000)).at_rate(22050)
    assert chain.operators[0] is clip and chain.operators[1].sample_rate == 22050
    with pytest.raises(ValueError, match="Nyquist"):
        LowPass(15000, 44100).at_rate(22050)


def test_scaled_operators_commute_with_gain():
    x = noise(2, 400)
    for operator in (Clip(0.05), LowPass(2000, 22050), Gap.from_samples([(10, 50)], 22050)):
        for gain in (0.1, 3.0):
            assert relative_error(operator.scaled(gain)(gain * x), gain * operator(x)) < 1e-6
    chain = Compose(Clip(0.05), LowPass(2000, 22050)).scaled(2.0)
    assert chain.operators[0].threshold == pytest.approx(0.1)


def test_observes_everything_only_when_nothing_is_missing():
    assert Gap.from_samples([], 100).observes_everything and Identity().observes_everything
    assert not Gap.from_samples([(1, 2)], 100).observes_everything
    assert not LowPass(1000, 22050).observes_everything and not Clip(0.1).observes_everything
    assert Compose(Gap.from_samples([(1, 2)], 100).window(10, 5)).observes_everything


# ---------------------------------------------------------------- per-item operators (batches across files)


def test_stack_applies_each_items_operator_to_its_row():
    from cqtrestore.operators import Stack, stack

    x = torch.randn(3, 4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    chain = Compose(Clip(0.5), LowPass(1000, 22050))
    parts = [LowPass(2000, 22050), Gap.from_samples([(100, 300)], 22050), chain]
    stacked = Stack(parts)
    y = stacked(x)
    for i, part in enumerate(parts):
        assert torch.equal(y[i : i + 1], part(x[i : i + 1]))
    assert not stacked.has_projection  # the chain has none
    both = Stack(parts[:2])
    x_hat = torch.randn(2, 4000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    projected = both.project(x_hat, y[:2])
    for i, part in enumerate(parts[:2]):
        assert torch.equal(projected[i : i + 1], part.project(x_hat[i : i + 1], y[i : i + 1]))
    with pytest.raises(ValueError, match="batch of 2"):
        stacked(x[:2])
    assert stack([LowPass(2000, 22050), LowPass(2000, 22050)]).describe().startswith("lowpass")
    assert isinstance(stack([LowPass(2000, 22050), LowPass(2001, 22050)]), Stack)


def test_same_as_compares_settings_not_objects():
    assert LowPass(3000, 22050).same_as(LowPass(3000, 22050))
    assert not LowPass(3000, 22050).same_as(LowPass(3000, 44100))
    assert not LowPass(3000, 22050, order=100).same_as(LowPass(3000, 22050))
    assert Gap([(0.1, 0.2)], 22050).same_as(Gap([(0.1, 0.2)], 22050))
    assert not Gap.from_samples([(10, 20)], 22050).same_as(Gap.from_samples([(10, 21)], 22050))
    assert Clip(0.1).same_as(Clip(0.1)) and not Clip(0.1).same_as(Clip(0.1 + 1e-12))
    assert Compose(Clip(0.1), LowPass(1000, 22050)).same_as(Compose(Clip(0.1), LowPass(1000, 22050)))
    assert not Compose(Clip(0.1)).same_as(Clip(0.1)) and not Clip(0.1).same_as(LowPass(1000, 22050))


def test_a_resampled_clipped_observation_is_found_within_five_percent():
    """Clipped at 44.1 kHz, resampled to 22.05 kHz: the plateau becomes ripple that the exact test
    misses half of; ``resampled`` finds nearly all of it and flags few unclipped samples."""
    import resampy

    rng = np.random.default_rng(0)
    t = np.arange(44100) / 44100
    x = sum(
        rng.uniform(0.3, 1) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (196, 440, 1318, 2637)
    )
    clip = Clip.from_sdr(x, 5.0)
    y = resampy.resample(np.clip(x, -clip.threshold, clip.threshold), 44100, 22050)
    truth = np.abs(resampy.resample(x, 44100, 22050)) > clip.threshold  # where the clean signal exceeds
    found = lambda op: torch.logical_or(*op.clipped(torch.from_numpy(y)))  # noqa: E731
    exact, loose = found(clip).numpy(), found(clip.resampled()).numpy()
    assert exact[truth].mean() < 0.7 and loose[truth].mean() > 0.95
    assert loose[~truth].mean() < 0.05
    assert clip.resampled().tolerance == 0.05 and clip.tolerance == 1e-6
    assert clip.resampled().scaled(2.0).tolerance == 0.05 and not clip.same_as(clip.resampled())
    assert "5 %" in clip.resampled().describe() and "%" not in clip.describe()
    chain = Compose(LowPass(3000, 22050), clip).resampled()
    assert chain.operators[1].tolerance == 0.05 and chain.operators[0] is chain.operators[0].resampled()
