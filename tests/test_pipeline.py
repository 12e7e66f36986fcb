"""The file pipeline around the sampler: resampling both ways, windows, crossfades, batching, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from cqtrestore.checkpoints import load_checkpoint
from cqtrestore.diffusion import Denoiser, SamplerOptions
from cqtrestore.operators import Clip, Compose, Gap, LowPass
from cqtrestore.pipeline import WINDOW, RestoreOptions, Restorer

RATE = 22050


@pytest.fixture(scope="module")
def restorer() -> Restorer:
    net, info = load_checkpoint("debug")
    return Restorer(Denoiser(net, info.sigma_data), info.sample_rate)


def tones(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    mono = 0.1 * np.sin(2 * np.pi * 330 * t) + 0.05 * np.sin(2 * np.pi * 1234.5 * t + 1)
    return np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def test_unchanged_windows_give_back_the_input_through_every_pass(restorer, monkeypatch, tmp_path):
    """Windows returned as they came: resample down, window, crossfade, resample up, combine = input."""
    monkeypatch.setattr(Restorer, "restore_windows", lambda self, y, *args: y.clone())
    audio = tones(9.0, 44100, channels=2)  # 4 windows at the model rate, 3 crossfades
    out = restorer.restore(audio, 44100, LowPass(5000, 44100), RestoreOptions(normalize=True))
    assert out.shape == audio.shape
    interior = slice(2000, -2000)  # resampy's zero-padded edges
    assert np.max(np.abs(out[interior] - audio[interior])) < 2e-4 * np.max(np.abs(audio))


def test_windows_that_differ_are_crossfaded_without_a_jump(restorer, monkeypatch):
    """Each window comes back as a different constant: the output moves smoothly between them."""
    calls = []

    def constant(self, y, operator, guidance, sampler, seeds, warm_start=False, draws=1, denoise_first=None):
        calls.append(seeds)
        return torch.full_like(y, 0.01 * len(calls))

    monkeypatch.setattr(Restorer, "restore_windows", constant)
    audio = np.zeros((round(12.0 * RATE), 1), np.float32)
    options = RestoreOptions(batch_size=1, normalize=False)
    out = restorer.restore(audio, RATE, Clip(0.5), options)[:, 0]
    assert len(calls) >= 4
    steps = np.abs(np.diff(out))
    overlap = options.overlap
    assert steps.max() <= 0.01 * np.pi / (2 * overlap) * 1.01  # a sin^2 fade of a 0.01 step, nothing more
    assert np.all(np.diff(out) >= -1e-9)  # monotone: each later window holds a larger constant


def test_windows_without_a_gap_are_not_sampled(restorer, monkeypatch):
    seen = []
    original = Restorer.restore_windows

    def counting(self, y, operator, *args):
        seen.append((y.shape[0], operator.describe()))
        return original(self, y, operator, *args)

    monkeypatch.setattr(Restorer, "restore_windows", counting)
    audio = tones(20.0, RATE)
    options = RestoreOptions(sampler=SamplerOptions(steps=2))
    out = restorer.restore(audio, RATE, Gap([(10.0, 10.3)], RATE), options)
    assert len(seen) == 1 and seen[0][0] == 1  # one window, one channel
    mask = np.ones(audio.shape[0], bool)
    mask[10 * RATE : round(10.3 * RATE)] = False
    assert np.array_equal(out[mask], audio[mask])


def test_same_seed_same_output_other_seed_other_output(restorer):
    audio = tones(3.0, RATE)
    operator = LowPass(2000, RATE)
    options = RestoreOptions(sampler=SamplerOptions(steps=2))

    def run(seed: int) -> np.ndarray:
        return restorer.restore(audio, RATE, operator, RestoreOptions(sampler=options.sampler, seed=seed))

    assert np.array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_windows_with_different_gaps_share_a_batch_and_pass_through_windows_do_not_wait(
    restorer, monkeypatch
):
    batches = []

    def identity(self, y, operator, guidance, sampler, seeds, warm_start=False, draws=1, denoise_first=None):
        batches.append((y.shape[0], operator.describe(), len(seeds)))
        return y.clone()

    monkeypatch.setattr(Restorer, "restore_windows", identity)
    audio = tones(40.0, RATE)
    gaps = Gap([(1.0, 1.2), (30.0, 30.3)], RATE)  # far apart: one window each, many windows between
    out = restorer.restore(audio, RATE, gaps, RestoreOptions(batch_size=4))
    assert len(batches) == 1 and batches[0][0] == 2 == batches[0][2]  # both gap windows in one batch
    assert batches[0][1].startswith("per item: gap")
    assert out.shape == audio.shape


def test_a_full_batch_is_sampled_at_once(restorer, monkeypatch):
    sizes = []
    monkeypatch.setattr(
        Restorer, "restore_windows", lambda self, y, *args: sizes.append(y.shape[0]) or y.clone()
    )
    audio = tones(12.0, RATE, channels=2)  # 5 windows x 2 channels
    restorer.restore(audio, RATE, Compose(Clip(0.1)), RestoreOptions(batch_size=4))
    assert sizes == [4, 4, 2]


def test_a_windows_output_does_not_depend_on_its_batch(restorer):
    """Per-item noise seeds: batch size 1 and 4 give the same restoration (to float rounding)."""
    audio = tones(6.0, RATE, channels=2)
    sampler = SamplerOptions(steps=3)
    one = restorer.restore(audio, RATE, LowPass(2000, RATE), RestoreOptions(sampler=sampler, batch_size=1))
    four = restorer.restore(audio, RATE, LowPass(2000, RATE), RestoreOptions(sampler=sampler, batch_size=4))
    assert np.abs(one - four).max() <= 1e-4 * np.abs(one).max()  # batched convolutions round differently
    assert np.abs(one).max() > 0.05


def test_files_share_batches_and_each_file_equals_its_own_run(restorer, tmp_path):
    """Windows of consecutive files go into one batch; every file's output equals restoring it alone."""
    sampler = SamplerOptions(steps=2)
    runs, alone = [], {}
    for k, (seconds, channels) in enumerate([(1.0, 1), (2.0, 2), (4.0, 1)]):
        path = tmp_path / f"in{k}.wav"
        sf.write(path, tones(seconds, 44100, channels) * (k + 1), 44100, subtype="FLOAT")
        options = RestoreOptions(sampler=sampler, batch_size=8, seed=k)
        alone[k] = restorer.restore_file(path, tmp_path / f"alone{k}.wav", LowPass(3000, 44100), options)
        runs.append((k, restorer.start(path, tmp_path / f"out{k}.wav", LowPass(3000, 44100), options)))
    sizes = []
    original = Restorer.restore_windows

    def counting(self, y, *args):
        sizes.append(y.shape[0])
        return original(self, y, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Restorer, "restore_windows", counting)
        outcomes = dict(restorer.restore_runs(runs))
    assert sizes == [5]  # 1 + 2 + 2 windows x channels, one batch
    assert sorted(outcomes) == [0, 1, 2]
    for k, report in outcomes.items():
        assert report.windows_restored == alone[k].windows_restored
        a, _ = sf.read(tmp_path / f"alone{k}.wav")
        b, _ = sf.read(tmp_path / f"out{k}.wav")
        assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max(), k  # batched convolutions round differently
    assert not list(tmp_path.glob("cqtrestore-*"))


def test_a_file_failing_mid_batch_fails_alone(restorer, tmp_path, monkeypatch):
    sampler = SamplerOptions(steps=2)
    runs = []
    for k in range(3):
        path = tmp_path / f"in{k}.wav"
        sf.write(path, tones(1.0, RATE), RATE)
        runs.append(
            (
                k,
                restorer.start(
                    path,
                    tmp_path / f"out{k}.wav",
                    LowPass(3000, RATE),
                    RestoreOptions(sampler=sampler, batch_size=4),
                ),
            )
        )
    broken = runs[1][1]

    def failing_read():
        raise OSError("disk gone")
        yield  # pragma: no cover

    monkeypatch.setattr(broken, "windows", failing_read)
    outcomes = dict(restorer.restore_runs(runs))
    assert isinstance(outcomes[1], OSError) and str(outcomes[1]) == "disk gone"
    assert not isinstance(outcomes[0], Exception) and not isinstance(outcomes[2], Exception)
    assert (tmp_path / "out0.wav").is_file() and not (tmp_path / "out1.wav").exists()


def test_window_count_follows_the_layout(restorer, tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, tones(5.0, RATE), RATE)
    report = restorer.restore_file(
        path, tmp_path / "y.wav", LowPass(3000, RATE), RestoreOptions(sampler=SamplerOptions(steps=2))
    )
    assert report.windows == 2 and report.windows_restored == 2 and WINDOW == 65536


def test_dc_then_rg_in_one_process(restorer):
    """Caches built under inference mode (DC) must still serve autograd (RG) afterwards."""
    from cqtrestore.guidance import GuidanceOptions
    from cqtrestore.pipeline import restore_segments

    fresh_net, info = load_checkpoint("debug")
    denoiser = Denoiser(fresh_net, info.sigma_data)
    y = LowPass(2000, RATE)(0.05 * torch.randn(1, 4096, generator=torch.Generator().manual_seed(0)))
    fresh = LowPass(2000, RATE)  # new operator: its caches are first built in inference mode
    sampler = SamplerOptions(steps=2)
    restore_segments(denoiser, fresh, y, GuidanceOptions("dc"), sampler, torch.Generator().manual_seed(0))
    out = restore_segments(
        denoiser, fresh, y, GuidanceOptions("rg"), sampler, torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(out).all()


def test_files_with_their_own_hiss_in_one_batch_each_equal_their_own_run(restorer, tmp_path):
    """Each file's hiss is its own noise model: windows of two files never mix theirs in one sampler run."""
    from cqtrestore.noise import Hiss

    sampler = SamplerOptions(steps=2)
    runs, alone = [], {}
    for k, level in enumerate([-50.0, -35.0]):
        path = tmp_path / f"in{k}.wav"
        hiss_samples = np.random.default_rng(k).standard_normal((2 * RATE, 1))
        noisy = tones(2.0, RATE) + 10 ** (level / 20) * hiss_samples
        sf.write(path, noisy.astype(np.float32), RATE, subtype="FLOAT")
        options = RestoreOptions(sampler=sampler, batch_size=8, seed=k)
        hiss = Hiss.white(level, RATE)
        alone[k] = restorer.restore_file(path, tmp_path / f"alone{k}.wav", hiss, options)
        runs.append((k, restorer.start(path, tmp_path / f"out{k}.wav", hiss, options)))
    outcomes = dict(restorer.restore_runs(runs))
    for k in outcomes:
        a, _ = sf.read(tmp_path / f"alone{k}.wav")
        b, _ = sf.read(tmp_path / f"out{k}.wav")
        assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max(), k


def test_a_chain_ending_in_hiss_splits_after_lowpasses_and_gaps_only():
    from cqtrestore.blind import BlindLowPass
    from cqtrestore.noise import Hiss
    from cqtrestore.operators import Stack
    from cqtrestore.pipeline import split_hiss

    hiss, lowpass, gap = Hiss.white(-50, RATE), LowPass(3000, RATE), Gap([(0.5, 0.7)], RATE)
    assert split_hiss(Compose(lowpass, hiss)) == (hiss, lowpass)
    blind = BlindLowPass(2000.0, RATE)
    first, rest = split_hiss(Compose(blind, hiss))  # the blind filter trusts the denoised signal by its SNR
    assert first is hiss and rest.state is blind.state and rest.removed is hiss
    first, rest = split_hiss(Compose(lowpass, gap, hiss))
    assert first is hiss and isinstance(rest, Compose) and rest.operators == (lowpass, gap)
    for whole in (hiss, lowpass, Compose(Clip(0.1), lowpass, hiss), Compose(hiss, lowpass), Compose(lowpass)):
        assert split_hiss(whole) is None, whole
    parts = [gap.window(start, 8000) for start in (8000, 12000)]
    first, rest = split_hiss(Stack([Compose(part, hiss) for part in parts]))
    assert first is hiss and isinstance(rest, Stack) and rest.operators == tuple(parts)
    assert split_hiss(Stack([Compose(lowpass, hiss), Compose(Clip(0.1), hiss)])) is None


def test_a_chain_ending_in_hiss_is_the_hiss_removed_then_the_rest_restored_from_that(restorer):
    """restore_windows with ``denoise_first``: exactly the two runs one after the other (the generators
    running on), the rest's warm start taken from the denoised signal; without it, the chain at once."""
    from cqtrestore.guidance import GuidanceOptions
    from cqtrestore.noise import Hiss
    from cqtrestore.pipeline import restore_average
    from cqtrestore.quality import resolve
    from cqtrestore.warmstart import classical_estimate

    hiss, lowpass = Hiss.white(-40, RATE), LowPass(3000, RATE)
    chain = Compose(lowpass, hiss)
    y = torch.from_numpy(tones(WINDOW / RATE, RATE)[:, 0])[None] + 0.01 * torch.randn(1, WINDOW)
    first, rest = resolve("fast", hiss), resolve("fast", lowpass)
    out = restorer.restore_windows(y, chain, rest.guidance, rest.sampler, [7], True, 1, first)
    generators = [torch.Generator().manual_seed(7)]
    denoised = restore_average(restorer.denoiser, hiss, y, first.guidance, first.sampler, generators)
    start = classical_estimate(lowpass, denoised)
    expected = restore_average(
        restorer.denoiser, lowpass, denoised, rest.guidance, rest.sampler, generators, start
    )
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(denoised, y, atol=1e-4)  # the first stage did something
    at_once = restorer.restore_windows(y, chain, GuidanceOptions("rg"), rest.sampler, [7], True, 1, None)
    assert not torch.allclose(at_once, out, atol=1e-3)


def test_a_window_of_hiss_whose_gap_lies_elsewhere_is_only_denoised(restorer, monkeypatch):
    import cqtrestore.pipeline as pipeline
    from cqtrestore.noise import Hiss
    from cqtrestore.quality import resolve

    runs = []
    original = pipeline.restore_average
    monkeypatch.setattr(
        pipeline, "restore_average", lambda *args, **kw: runs.append(args[1]) or original(*args, **kw)
    )
    hiss, gap = Hiss.white(-40, RATE), Gap.from_samples([(10, 20)], RATE).window(100, WINDOW)
    y = torch.from_numpy(tones(WINDOW / RATE, RATE)[:, 0])[None] + 0.01 * torch.randn(1, WINDOW)
    plan = resolve("fast", gap)
    restorer.restore_windows(
        y, Compose(gap, hiss), plan.guidance, plan.sampler, [7], True, 3, resolve("fast", hiss)
    )
    assert runs == [hiss]  # the hiss's run only: no inpainting of a window with nothing missing


def test_restore_options_remove_a_chains_hiss_first_with_the_denoise_preset():
    from cqtrestore.noise import Hiss
    from cqtrestore.quality import resolve
    from cqtrestore.tasks import restore_options

    hiss, lowpass = Hiss.white(-40, RATE), LowPass(3000, RATE)
    options = restore_options(Compose(lowpass, hiss), device="cpu", steps=9)
    assert options.denoise_first == resolve("balanced", hiss)
    assert options.guidance.mode == "dc" and options.sampler.steps == 9 and options.warm_start
    assert restore_options(Compose(Clip(0.1), lowpass, hiss), device="cpu").denoise_first is None
    assert restore_options(hiss, device="cpu").denoise_first is None
