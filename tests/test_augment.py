"""Timbre and room augmentation: identities, the drawn responses, and crops read with their preroll."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from cqtrestore.augment import Augmentation, augment_crop, microphone_response, room_response
from cqtrestore.data import RandomCrops, scan_audio

SR = 22050


def band_power(x: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].mean())


def test_augmentation_off_returns_the_crop_itself():
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(3000 + 4096)
    out = augment_crop(audio, 3000, SR, Augmentation.off(), np.random.default_rng(1))
    np.testing.assert_allclose(out, audio[3000:], atol=1e-5)


def test_tilt_alone_changes_the_slope_by_the_drawn_db_per_octave():
    aug = Augmentation(tilt_db_per_octave=3.0, bumps=0, low_cut_probability=0.0, room_probability=0.0)
    freqs = np.array([250.0, 500.0, 1000.0, 2000.0, 4000.0])
    for seed in range(5):
        gain_db = 20 * np.log10(microphone_response(freqs, aug, np.random.default_rng(seed)))
        slopes = np.diff(gain_db)  # dB per octave
        assert np.allclose(slopes, slopes[0], atol=1e-9) and abs(slopes[0]) <= 3.0
        assert gain_db[2] == pytest.approx(0.0, abs=1e-9)  # pivots at 1 kHz


def test_microphone_responses_stay_within_their_ranges_and_differ():
    aug = Augmentation(room_probability=0.0)
    freqs = np.geomspace(60, 10000, 200)
    responses = [20 * np.log10(microphone_response(freqs, aug, np.random.default_rng(s))) for s in range(50)]
    worst = 1.5 * np.log2(10000 / 1000) + 3 * 5.0
    assert max(np.abs(r).max() for r in responses) <= worst + 1e-9
    assert np.std([r[-1] - r[100] for r in responses]) > 1.0  # the treble really varies


def test_room_response_decays_with_its_highs_dying_first():
    aug = Augmentation(rt60_s=(0.8, 0.8))
    rir = room_response(SR, SR, aug, np.random.default_rng(3))
    assert np.sum(rir**2) == pytest.approx(1.0)
    assert np.all(rir[:60] == 0)  # the pre-delay: at least 3 ms
    early, late = rir[: SR // 4], rir[SR // 4 : SR // 2]
    assert np.sum(late**2) < 0.3 * np.sum(early**2)  # 60 dB in 0.8 s: about 19 dB per quarter second
    tilt_early = band_power(early, 4000, 8000) / band_power(early, 200, 1000)
    tilt_late = band_power(late, 4000, 8000) / band_power(late, 200, 1000)
    assert tilt_late < 0.5 * tilt_early


def test_augmented_crop_keeps_its_rms_and_gains_a_reverberant_tail():
    aug = Augmentation(tilt_db_per_octave=0.0, bumps=0, low_cut_probability=0.0, room_probability=1.0,
                       wet=(0.5, 0.5), rt60_s=(1.0, 1.0))  # fmt: skip
    audio = np.zeros(SR + 8192)
    audio[SR - 2000 : SR - 1900] = 1.0  # a click just before the crop starts
    out = augment_crop(audio, SR, SR, aug, np.random.default_rng(0))
    assert len(out) == 8192
    assert np.sqrt(np.mean(out**2)) == pytest.approx(
        np.sqrt(np.mean(audio[SR:] ** 2)), abs=1e-7
    )  # 0: silence
    audio[SR + 4000 : SR + 4100] = 1.0  # one click inside the crop too
    out = augment_crop(audio, SR, SR, aug, np.random.default_rng(0))
    assert np.sqrt(np.mean(out**2)) == pytest.approx(np.sqrt(np.mean(audio[SR:] ** 2)), rel=1e-5)
    assert np.abs(out[:3900]).max() > 0.01  # the earlier click's reverberation reaches into the crop
    assert np.abs(out[4200:]).max() > 0.01  # and the later one rings on


def test_crops_with_augmentation_are_deterministic_and_the_plain_ones_unchanged(tmp_path):
    rng = np.random.default_rng(5)
    sf.write(tmp_path / "a.flac", 0.05 * rng.standard_normal(3 * SR), SR)
    sf.write(tmp_path / "b.wav", 0.05 * rng.standard_normal(3 * 44100), 44100)
    files, _ = scan_audio(tmp_path)
    plain = RandomCrops(files, 4096, SR, seed=1)
    augmented = RandomCrops(files, 4096, SR, seed=1, augment=Augmentation())
    assert plain.preroll == 0 and augmented.preroll == int(1.2 * SR)
    a, b = augmented.batch(3, 4), augmented.batch(3, 4)
    assert a.shape == (4, 4096) and (a == b).all()
    assert not np.allclose(a.numpy(), plain.batch(3, 4).numpy(), atol=1e-3)
    # The dry crop under the preroll is the plain crop itself: same file, same place, same gain.
    off = RandomCrops(files, 4096, SR, seed=1, augment=Augmentation.off())
    np.testing.assert_allclose(off.batch(3, 4).numpy(), plain.batch(3, 4).numpy(), atol=2e-5)


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError, match="probabilities"):
        Augmentation(room_probability=1.5)
    with pytest.raises(ValueError, match="rt60"):
        Augmentation(rt60_s=(1.0, 0.5))
