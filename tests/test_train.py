"""The training loop: learns, resumes exactly, exports loadable weights, rejects bad data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from cqtrestore.checkpoints import load_weights, read_metadata
from cqtrestore.data import DataError, RandomCrops, scan_audio, split_files
from cqtrestore.train import TrainConfig, export_run, learning_rate, load_checkpoint, train

SR = 22050


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """Six 2-s files of decaying harmonic tones (one stereo, one at 44.1 kHz), RMS ≈ 0.057."""
    folder = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    for i in range(6):
        sr = 44100 if i == 5 else SR
        t = np.arange(2 * sr) / sr
        x = np.zeros_like(t)
        for _ in range(4):
            f0, onset = rng.uniform(80, 600), rng.uniform(0, 1.0)
            envelope = np.where(t >= onset, np.exp(-3 * (t - onset)), 0.0)
            x += sum(envelope * np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
        x = 0.057 * x / x.std()
        sf.write(folder / f"tone{i}.flac", np.stack([x, 0.5 * x], axis=1) if i == 4 else x, sr)
    (folder / "notes.txt").write_text("not audio")
    return folder


CONFIG = dict(
    preset="debug",
    batch_size=2,
    segment=4096,
    log_every=5,
    save_every=10,
    valid_crops=2,
    warmup_steps=2,
    lr=2e-3,
    seed=3,
)


def losses(log_path):
    return [r["loss"] for r in map(json.loads, log_path.read_text().splitlines()) if "loss" in r]


def test_validation_loss_decreases(tones, tmp_path):
    config = dict(CONFIG, lr=5e-3, ema=0.0, save_every=50, log_every=50)
    train(TrainConfig(steps=150, **config), tones, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    valid = [r["valid"] for r in records if "valid" in r]
    assert [r["step"] for r in records if "valid" in r] == [0, 50, 100, 150]
    assert all(np.isfinite(losses(tmp_path / "run" / "log.jsonl")))
    for sigma in ("0.03", "0.1"):  # mid noise levels, where there is most to learn
        assert valid[-1][sigma] < 0.98 * valid[0][sigma]  # measured: -3 % and more after 150 steps


def test_resume_reproduces_the_uninterrupted_run(tones, tmp_path):
    train(TrainConfig(steps=20, **CONFIG), tones, tmp_path / "whole")
    train(TrainConfig(steps=10, **CONFIG), tones, tmp_path / "split")  # "killed" after 10 steps
    train(TrainConfig(steps=20, **CONFIG), tones, tmp_path / "split", resume=True)
    assert losses(tmp_path / "split" / "log.jsonl") == losses(tmp_path / "whole" / "log.jsonl")
    whole, split = (
        load_checkpoint(tmp_path / "whole/checkpoint.pt"),
        load_checkpoint(tmp_path / "split/checkpoint.pt"),
    )
    assert whole["step"] == split["step"] == 20
    for key, value in whole["ema"].items():
        torch.testing.assert_close(split["ema"][key], value, rtol=0, atol=0)
    with pytest.raises(FileExistsError, match="resume"):
        train(TrainConfig(steps=20, **CONFIG), tones, tmp_path / "whole")


def test_exported_ema_weights_load_and_run(tones, tmp_path):
    train(TrainConfig(steps=10, **CONFIG), tones, tmp_path / "run")
    net, meta = load_weights(tmp_path / "run" / "ema.safetensors")
    assert meta["step"] == "10" and float(meta["sigma_data"]) == pytest.approx(0.057)
    ema = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["ema"]
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, ema[key])
    out = net(torch.randn(1, 5000), torch.zeros(1, 1))
    assert out.shape == (1, 5000) and torch.isfinite(out).all()


def test_export_command_writes_fp16_weights(tones, tmp_path):
    from typer.testing import CliRunner

    from cqtrestore.cli import app

    train(TrainConfig(steps=5, **dict(CONFIG, save_every=5)), tones, tmp_path / "run")
    runner = CliRunner()
    out = tmp_path / "w.safetensors"
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    net, meta = load_weights(out)
    assert meta["preset"] == "debug" and meta["step"] == "5"
    ema = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["ema"]
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, ema[key].half().float())
    again = runner.invoke(app, ["export", str(tmp_path / "run"), "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    missing = runner.invoke(app, ["export", str(tmp_path / "nothing"), "-o", str(out)])
    assert missing.exit_code == 2 and "no checkpoint.pt" in missing.output


def test_crops_are_deterministic_mono_and_resampled(tones):
    files, skipped = scan_audio(tones)
    assert len(files) == 6 and skipped == {"unreadable": 0, "too short": 0}
    crops = RandomCrops(files, 4096, SR, seed=1)
    a, b = crops.batch(7, 3), crops.batch(7, 3)
    assert a.shape == (3, 4096) and torch.equal(a, b) and not torch.equal(a, crops.batch(8, 3))
    torch.testing.assert_close(crops.batch(7, 2, offset=1), a[1:])
    stereo = [f for f in files if f.path.name == "tone4.flac"]
    mono = sf.read(stereo[0].path, dtype="float32")[0].mean(axis=1)
    crop = RandomCrops(stereo, 4096, SR, seed=1, gain_db=0).crop(0, 0).astype(np.float64)
    position = np.argmax(
        [np.abs(crop - s * mono[i : i + 4096]).max() < 1e-6 for i in range(len(mono) - 4095) for s in (1, -1)]
    )
    assert position > 0  # the crop is a piece of the mono mixdown (L + R) / 2, up to polarity
    resampled = RandomCrops([f for f in files if f.sample_rate == 44100], 4096, SR, seed=1).batch(0, 2)
    assert resampled.shape == (2, 4096) and resampled.std() > 0.01


def test_silent_audio_is_redrawn_then_accepted(tmp_path):
    t = np.arange(2 * SR) / SR
    x = 0.05 * np.sin(2 * np.pi * 440 * t) * (t > 1.5)  # silent for 1.5 s, then a tone
    sf.write(tmp_path / "late.wav", x, SR)
    sf.write(tmp_path / "cancel.wav", np.stack([x, -x], axis=1), SR)  # mixes down to silence
    files, _ = scan_audio(tmp_path)
    late = RandomCrops([f for f in files if f.path.name == "late.wav"], 4096, SR, seed=2, gain_db=0)
    assert all(np.sqrt(np.mean(late.crop(0, i) ** 2)) > 1e-3 for i in range(8))
    silent = RandomCrops([f for f in files if f.path.name == "cancel.wav"], 4096, SR, seed=2, attempts=3)
    assert np.abs(silent.crop(0, 0)).max() < 1e-6  # nothing better exists: the last draw is kept


def test_split_holds_out_whole_files(tones):
    files, _ = scan_audio(tones)
    train_files, valid_files = split_files(files, 0.3, seed=0)
    assert valid_files and not {f.path for f in train_files} & {f.path for f in valid_files}
    assert split_files(files, 0.3, seed=0) == (train_files, valid_files)


def test_bad_data_folders(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        scan_audio(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        scan_audio(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    sf.write(tmp_path / "bad" / "short.wav", np.zeros(100), SR)
    with pytest.raises(DataError, match="1 unreadable, 1 too short; files must last at least 0.10 s"):
        scan_audio(tmp_path / "bad", min_seconds=0.1)


def test_config_validation_and_warmup():
    with pytest.raises(ValueError, match="unknown network preset"):
        TrainConfig(preset="huge")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="focus_share"):
        TrainConfig(focus_share=1.5)
    with pytest.raises(ValueError, match="focus_min < focus_max"):
        TrainConfig(focus_share=0.5, focus_min=0.3, focus_max=0.1)
    with pytest.raises(ValueError, match="focus_max <= sigma_max"):
        TrainConfig(focus_share=0.5, sigma_max=1.0, focus_max=2.0)
    TrainConfig(focus_share=0.0, sigma_max=1.0, focus_max=2.0)  # unused range: not checked
    config = TrainConfig(lr=1e-3, warmup_steps=10)
    assert learning_rate(config, 0) == pytest.approx(1e-4) and learning_rate(config, 50) == 1e-3


def test_spectral_run_measures_keeps_and_exports_its_data_spectrum(tones, tmp_path):
    from cqtrestore.checkpoints import load_checkpoint as load_prior

    config = dict(CONFIG, precondition="spectral")
    train(TrainConfig(steps=10, **config), tones, tmp_path / "whole")
    spectrum = load_checkpoint(tmp_path / "whole/checkpoint.pt")["spectrum"]
    # A 1024-point spectrum (513 bins to Nyquist); the tones (80 Hz-4.2 kHz) dwarf the top octave.
    assert spectrum.shape == (513,) and bool((spectrum > 0).all())
    low, top = spectrum[int(512 * 300 / 11025)], spectrum[int(512 * 0.6) :].max()
    assert low > 1e4 * top
    # Resuming reads the spectrum back instead of measuring it again: same losses as one run.
    train(TrainConfig(steps=5, **config), tones, tmp_path / "split")
    train(TrainConfig(steps=10, **config), tones, tmp_path / "split", resume=True)
    assert losses(tmp_path / "split" / "log.jsonl") == losses(tmp_path / "whole" / "log.jsonl")
    # The EMA file carries it (6 significant digits), and the loaded prior is preconditioned with it.
    net, info = load_prior(tmp_path / "whole" / "ema.safetensors")
    np.testing.assert_allclose(info.data_spectrum, spectrum.numpy(), rtol=1e-5)
    denoiser = info.denoiser(net)
    x = torch.randn(1, 4096) * 0.057
    assert torch.isfinite(denoiser(x, 0.1)).all()


def test_estimated_spectrum_of_white_noise_is_its_variance(tmp_path):
    from cqtrestore.data import estimate_spectrum

    sf.write(tmp_path / "white.wav", np.random.default_rng(1).normal(0, 0.1, 5 * SR), SR)
    crops = RandomCrops(scan_audio(tmp_path)[0], 4096, SR, seed=0, gain_db=0.0)
    spectrum = estimate_spectrum(crops, count=64, bins=257)
    assert spectrum.shape == (257,)
    assert abs(spectrum[1:-1].mean() / 0.01 - 1) < 0.03  # per-bin scatter averages out over the band
    assert np.all(np.abs(10 * np.log10(spectrum[1:-1] / 0.01)) < 1.5)
    root = estimate_spectrum(crops, count=64, bins=257, statistic="root")
    assert abs(root[1:-1].mean() / 0.01 - 1) < 0.03  # stationary noise: the same variance
    with pytest.raises(ValueError, match="spectrum statistic"):
        estimate_spectrum(crops, count=4, bins=257, statistic="median")


def test_root_spectrum_sits_between_the_mean_and_the_geometric_mean_of_a_varying_level(tmp_path):
    from cqtrestore.data import estimate_spectrum

    rng = np.random.default_rng(2)
    level = np.repeat(rng.choice([1.0, 0.01], size=50), SR // 10)  # loud and 40-dB quieter stretches
    sf.write(tmp_path / "bursts.wav", rng.normal(0, 0.1, len(level)) * level, SR)
    crops = RandomCrops(scan_audio(tmp_path)[0], 4096, SR, seed=0, gain_db=0.0)
    mean = estimate_spectrum(crops, count=64, bins=257)[1:-1].mean()
    root = estimate_spectrum(crops, count=64, bins=257, statistic="root")[1:-1].mean()
    # half of the frames at 1e-2, half at 1e-6: mean ≈ 5e-3, (4/π)·((0.1 + 0.001) / 2)² ≈ 3.2e-3 ...
    assert 0.4 * mean < root < 0.8 * mean
    # ... and with rare loud frames the gap grows (the mean follows them, the root less)
    level = np.repeat(np.where(rng.random(50) < 0.1, 1.0, 0.01), SR // 10)
    sf.write(tmp_path / "bursts.wav", rng.normal(0, 0.1, len(level)) * level, SR)
    crops = RandomCrops(scan_audio(tmp_path)[0], 4096, SR, seed=0, gain_db=0.0)
    mean = estimate_spectrum(crops, count=64, bins=257)[1:-1].mean()
    root = estimate_spectrum(crops, count=64, bins=257, statistic="root")[1:-1].mean()
    assert root < 0.4 * mean


def test_edge_taper_fades_both_ends_and_removes_the_wrap_jump():
    from cqtrestore.train import edge_taper

    gains = edge_taper(4096, 256)
    assert gains[256:-256].eq(1).all() and gains[0] < 1e-4 and gains[-1] < 1e-4
    torch.testing.assert_close(gains[:256], gains[-256:].flip(0))
    assert edge_taper(4096, 0).eq(1).all()
    # A low tone cut mid-cycle: its circular spectrum's top octave is edge leakage, which the taper removes.
    t = torch.arange(4096) / SR
    tone = torch.sin(2 * torch.pi * 110.3 * t)
    top = lambda x: (torch.fft.rfft(x).abs() ** 2)[1024:].sum()  # noqa: E731
    assert top(tone * gains) < 1e-4 * top(tone)
    with pytest.raises(ValueError, match="edge_taper"):
        TrainConfig(segment=4096, edge_taper=2000)


def test_augmented_attention_run_resumes_exactly_and_logs_its_heldout_split(tones, tmp_path):
    config = dict(CONFIG, preset="debug-attn", precondition="spectral", augment=True, edge_taper=64)
    heldout = tmp_path / "heldout"
    heldout.mkdir()
    for name in ("tone0.flac", "tone1.flac"):
        (heldout / name).write_bytes((tones / name).read_bytes())
    train(TrainConfig(steps=10, **config), tones, tmp_path / "whole", heldout_dir=heldout)
    train(TrainConfig(steps=5, **config), tones, tmp_path / "split", heldout_dir=heldout)
    train(TrainConfig(steps=10, **config), tones, tmp_path / "split", resume=True, heldout_dir=heldout)
    assert losses(tmp_path / "split" / "log.jsonl") == losses(tmp_path / "whole" / "log.jsonl")
    records = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    held = [r for r in records if "heldout" in r]
    assert [r["step"] for r in held] == [0, 10] and set(held[0]["heldout"]) == set(records[1]["valid"])
    state = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert any(key.startswith("time_down.") for key in state["model"])  # the mixers were trained
    plain = dict(config, augment=False)
    train(TrainConfig(steps=5, **plain), tones, tmp_path / "plain")
    assert losses(tmp_path / "plain" / "log.jsonl") != losses(tmp_path / "split" / "log.jsonl")[:1]


def test_init_starts_a_new_run_from_the_given_weights_and_their_spectrum(tones, tmp_path):
    from typer.testing import CliRunner

    from cqtrestore.cli import app
    from cqtrestore.train import TrainError

    config = dict(CONFIG, precondition="spectral")
    train(TrainConfig(steps=10, **config), tones, tmp_path / "first")
    weights = tmp_path / "first" / "ema.safetensors"
    first = load_checkpoint(tmp_path / "first" / "checkpoint.pt")
    # One step with lr ≈ 0 leaves the network where --init put it: the EMA of the first run.
    tiny = dict(config, lr=1e-12, warmup_steps=0)
    train(TrainConfig(steps=1, **tiny), tones, tmp_path / "second", init=weights)
    second = load_checkpoint(tmp_path / "second" / "checkpoint.pt")
    for key, value in first["ema"].items():
        torch.testing.assert_close(second["model"][key], value, rtol=0, atol=1e-6)
    np.testing.assert_allclose(second["spectrum"].numpy(), first["spectrum"].numpy(), rtol=1e-5)
    start = json.loads((tmp_path / "second" / "log.jsonl").read_text().splitlines()[0])
    assert start["init"] == str(weights) and start["init_step"] == 10 and start["init_preset"] == "debug"
    # Steps add up along a chain of --init runs: the weights record their total, and a run from them
    # starts counting there (exported and in-run weights alike).
    assert read_metadata(tmp_path / "second" / "ema.safetensors")["total_step"] == "11"
    export_run(tmp_path / "second", tmp_path / "second.safetensors")
    assert read_metadata(tmp_path / "second.safetensors")["total_step"] == "11"
    train(TrainConfig(steps=1, **tiny), tones, tmp_path / "third", init=tmp_path / "second.safetensors")
    third = json.loads((tmp_path / "third" / "log.jsonl").read_text().splitlines()[0])
    assert third["init_step"] == 11
    assert read_metadata(tmp_path / "third" / "ema.safetensors")["total_step"] == "12"
    # Without --init the same run starts elsewhere: the test above can fail.
    train(TrainConfig(steps=1, **tiny), tones, tmp_path / "fresh")
    fresh = load_checkpoint(tmp_path / "fresh" / "checkpoint.pt")["model"]
    assert any(not torch.allclose(fresh[k], v, atol=1e-4) for k, v in first["ema"].items())
    # Another layout, another preconditioning, a missing file: one clear line each, from the CLI too.
    with pytest.raises(TrainError, match="not this run's preset 'debug-attn'"):
        train(TrainConfig(steps=1, **dict(tiny, preset="debug-attn")), tones, tmp_path / "a", init=weights)
    with pytest.raises(TrainError, match="spectral-preconditioned prior, this run is scalar"):
        train(TrainConfig(steps=1, **dict(tiny, precondition="scalar")), tones, tmp_path / "b", init=weights)
    # A preset that grows from the weights' (new gates, identity at the start) takes them.
    train(TrainConfig(steps=1, **dict(tiny, preset="debug-gate")), tones, tmp_path / "grown", init=weights)
    grown = load_checkpoint(tmp_path / "grown" / "checkpoint.pt")["model"]
    assert any(key.startswith("gate_up.") for key in grown)
    for key, value in first["ema"].items():
        torch.testing.assert_close(grown[key], value, rtol=0, atol=1e-6)
    # A preset that differs only in the transform's window floor takes the same weights as they are.
    train(TrainConfig(steps=1, **dict(tiny, preset="debug-hz")), tones, tmp_path / "floor", init=weights)
    floor = load_checkpoint(tmp_path / "floor" / "checkpoint.pt")["model"]
    assert floor.keys() == first["ema"].keys()
    for key, value in first["ema"].items():
        torch.testing.assert_close(floor[key], value, rtol=0, atol=1e-6)
    saved = json.loads(read_metadata(tmp_path / "floor" / "ema.safetensors")["config"])
    assert saved["min_window_hz"] == 20.0
    args = ["train", str(tones), "--out", str(tmp_path / "c"), "--preset", "debug", "--steps", "1"]
    result = CliRunner().invoke(app, [*args, "--init", str(tmp_path / "missing.safetensors")])
    assert result.exit_code != 0 and "--init" in result.output and "Traceback" not in result.output


def test_focused_noise_levels_reach_the_training_steps_and_bad_ranges_fail_in_one_line(tones, tmp_path):
    from typer.testing import CliRunner

    from cqtrestore.cli import app
    from cqtrestore.train import step_noise

    focused = TrainConfig(steps=1, **dict(CONFIG, focus_share=1.0, focus_min=0.01, focus_max=0.02))
    sigmas = torch.cat([step_noise(focused, step)[0] for step in range(50)])
    assert sigmas.min() >= 0.01 - 1e-9 and sigmas.max() <= 0.02 + 1e-9
    wide = torch.cat([step_noise(TrainConfig(steps=1, **CONFIG), step)[0] for step in range(50)])
    assert ((wide < 0.01) | (wide > 0.02)).any()
    args = ["train", str(tones), "--out", str(tmp_path / "c"), "--preset", "debug", "--steps", "1"]
    result = CliRunner().invoke(
        app, [*args, "--focus-share", "0.5", "--focus-min", "0.5", "--focus-max", "0.1"]
    )
    assert result.exit_code != 0 and "focus_min < focus_max" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_running_job_takes_its_thread_count_from_the_threads_file(tones, tmp_path):
    # Written before (or while) a run goes: applied at the next step and logged; a bad number is ignored.
    out = tmp_path / "run"
    out.mkdir()
    (out / "threads").write_text("1\n")
    before = torch.get_num_threads()
    seen = []

    def on_log(record):
        seen.append(torch.get_num_threads())
        if record.get("step") == 5 and "loss" in record:
            (out / "threads").write_text("two")  # not a number: ignored, the count stays

    try:
        torch.set_num_threads(2)
        train(TrainConfig(steps=10, **CONFIG), tones, out, on_log=on_log)
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        assert [r for r in records if "threads" in r] == [{"step": 0, "threads": 1}]
        assert torch.get_num_threads() == 1 and seen[-1] == 1
    finally:
        torch.set_num_threads(before)


def test_a_root_run_can_weigh_its_loss_by_the_mean_spectrum(tones, tmp_path):
    with pytest.raises(ValueError, match="loss_statistic"):
        TrainConfig(**dict(CONFIG, loss_statistic="mean"))  # scalar preconditioning
    with pytest.raises(ValueError, match="loss_statistic"):
        TrainConfig(**dict(CONFIG, precondition="spectral", loss_statistic="median"))
    with pytest.raises(ValueError, match="not with 'local'"):  # the local loss has no λ to replace
        TrainConfig(**dict(CONFIG, precondition="spectral", loss="local", loss_statistic="mean"))
    config = dict(CONFIG, precondition="spectral", edge_taper=256, log_every=1, spectrum_statistic="root")
    train(TrainConfig(steps=3, loss_statistic="mean", **config), tones, tmp_path / "mean-loss")
    train(TrainConfig(steps=3, loss_statistic="root", **config), tones, tmp_path / "same")
    train(TrainConfig(steps=3, **config), tones, tmp_path / "plain")
    reweighted, same = losses(tmp_path / "mean-loss" / "log.jsonl"), losses(tmp_path / "same" / "log.jsonl")
    plain = losses(tmp_path / "plain" / "log.jsonl")
    assert len(reweighted) == 3 and all(math.isfinite(value) for value in reweighted)
    assert same == pytest.approx(plain, rel=1e-5)  # the preconditioning's own statistic changes nothing
    assert reweighted != pytest.approx(plain, rel=1e-3)
    # the brighter mean spectrum weighs the highs less wherever σ² exceeds the root spectrum
    assert sum(reweighted) < sum(plain)
    first_valid = [  # validation keeps λ of the preconditioning's spectrum: the same before any step
        next(
            r
            for r in map(json.loads, (tmp_path / name / "log.jsonl").read_text().splitlines())
            if "valid" in r
        )
        for name in ("mean-loss", "plain")
    ]
    assert first_valid[0]["step"] == 0 and first_valid[0] == first_valid[1]


def test_the_local_loss_trains_and_needs_spectral_preconditioning(tones, tmp_path):
    with pytest.raises(ValueError, match="'local' needs spectral"):
        TrainConfig(**dict(CONFIG, loss="local"))
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig(**dict(CONFIG, precondition="spectral", loss="l1"))
    with pytest.raises(ValueError, match="spectrum_statistic"):
        TrainConfig(**dict(CONFIG, precondition="spectral", spectrum_statistic="median"))
    config = dict(CONFIG, precondition="spectral", edge_taper=256, log_every=1)
    train(TrainConfig(steps=3, loss="local", **config), tones, tmp_path / "local")
    train(TrainConfig(steps=3, **config), tones, tmp_path / "spectral")
    local, spectral = losses(tmp_path / "local" / "log.jsonl"), losses(tmp_path / "spectral" / "log.jsonl")
    assert len(local) == 3 and all(math.isfinite(value) for value in local) and local != spectral
    records = [json.loads(line) for line in (tmp_path / "local" / "log.jsonl").read_text().splitlines()]
    assert [r for r in records if "valid" in r]  # validation stays the spectral loss, comparable across runs
