"""The restoration commands end to end on real files, with the tiny untrained `debug` prior (fast)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from cqtrestore import tasks
from cqtrestore.cli import app
from cqtrestore.operators import LowPass
from cqtrestore.pipeline import Restorer

RUN = ["--checkpoint", "debug", "--steps", "12", "--quiet"]  # few steps leave noise above the prior's level


def piano_like(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Decaying harmonic notes plus a little noise, RMS about 0.06, shape (frames, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    out = np.zeros((t.size, channels))
    for onset in np.arange(0, seconds, 0.4):
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        env = np.where(t >= onset, np.exp(-(t - onset) * 3), 0.0)
        for k in range(1, 12):
            if k * f0 < rate / 2:
                out += (env * np.sin(2 * np.pi * k * f0 * t) / k)[:, None] * rng.uniform(0.5, 1, channels)
    out += 1e-3 * rng.standard_normal(out.shape)
    return (0.06 * out / np.sqrt(np.mean(out**2))).astype(np.float32)


def run(*args: str) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def wav44(tmp_path):
    path = tmp_path / "in.wav"
    sf.write(path, piano_like(4.0, 44100, channels=2), 44100, subtype="PCM_16")
    return path


def test_inpaint_keeps_every_observed_sample_and_the_file_format(wav44):
    result = run("inpaint", wav44, "--gap", "1.2:1.5", "--gap", "2.5-2.7", *RUN)
    assert result.exit_code == 0, result.output
    out = wav44.with_name("in.restored.wav")
    before, after = sf.read(wav44, dtype="int16"), sf.read(out, dtype="int16")
    assert sf.info(out).subtype == "PCM_16" and after[1] == 44100 and after[0].shape == before[0].shape
    mask = np.ones(before[0].shape[0], bool)
    mask[round(1.2 * 44100) : round(1.5 * 44100)] = False
    mask[round(2.5 * 44100) : round(2.7 * 44100)] = False
    assert np.array_equal(after[0][mask], before[0][mask])
    assert np.any(after[0][~mask] != 0)  # the gaps were filled


def test_bwe_keeps_the_band_below_the_cutoff_and_the_input_above_the_model_band(tmp_path):
    rate = 44100
    x = piano_like(3.0, rate)[:, 0]
    t = np.arange(x.size) / rate
    lowpassed = LowPass(2000, rate)(torch.from_numpy(x[None].astype(np.float64)))[0].numpy()
    tone = 0.01 * np.sin(2 * np.pi * 15000 * t)  # above 11.025 kHz: the model never sees it
    source = tmp_path / "lp.flac"
    sf.write(source, (lowpassed + tone).astype(np.float32), rate, subtype="PCM_24")
    result = run("bwe", source, "--cutoff", "2k", *RUN)
    assert result.exit_code == 0, result.output
    out, _ = sf.read(tmp_path / "lp.restored.flac")
    spectrum_in, spectrum_out = np.fft.rfft(lowpassed + tone), np.fft.rfft(out)
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    band = freqs < 1800
    error = np.linalg.norm(spectrum_out[band] - spectrum_in[band]) / np.linalg.norm(spectrum_in[band])
    assert error < 0.05
    near = np.abs(freqs - 15000) < 5
    assert np.abs(spectrum_out[near]).max() == pytest.approx(np.abs(spectrum_in[near]).max(), rel=0.05)
    assert sf.info(tmp_path / "lp.restored.flac").subtype == "PCM_24"


def test_declip_simulate_writes_degraded_and_scores(tmp_path):
    source = tmp_path / "clean.wav"
    sf.write(source, piano_like(3.0, 22050), 22050, subtype="FLOAT")
    result = CliRunner().invoke(
        app, ["declip", str(source), "--sdr", "3", "--checkpoint", "debug", "--steps", "3"]
    )
    assert result.exit_code == 0, result.output
    degraded, _ = sf.read(tmp_path / "clean.degraded.wav")
    clean, _ = sf.read(source)
    assert np.abs(degraded).max() < np.abs(clean).max()
    assert "SI-SDR" in result.output and "restored" in result.output
    assert "UNTRAINED" in result.output  # the debug prior says so loudly


def test_declip_drops_the_band_above_the_model_band(tmp_path):
    rate = 48000
    x = piano_like(2.0, rate)[:, 0]
    source = tmp_path / "c.wav"
    sf.write(source, np.clip(x, -0.05, 0.05), rate, subtype="FLOAT")
    assert run("declip", source, "--threshold", "0.05", *RUN).exit_code == 0
    out, _ = sf.read(tmp_path / "c.restored.wav")
    spectrum = np.abs(np.fft.rfft(out))
    freqs = np.fft.rfftfreq(out.size, 1 / rate)
    assert spectrum[freqs > 12000].max() < 1e-3 * spectrum.max()


def test_restore_composite_and_auto_detection(tmp_path):
    rate = 22050
    x = piano_like(3.0, rate)[:, 0].astype(np.float64)
    y = LowPass(3000, rate)(torch.from_numpy(np.clip(x, -0.08, 0.08)[None]))[0].numpy()
    source = tmp_path / "both.wav"
    sf.write(source, y.astype(np.float32), rate, subtype="FLOAT")
    result = CliRunner().invoke(
        app,
        [
            "restore",
            str(source),
            "--lowpass",
            "auto",
            "--clip",
            "0.08",
            "--checkpoint",
            "debug",
            "--steps",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "auto cutoff" in result.output and "then" in result.output  # the composite operator is described


def test_float_input_above_full_scale_is_accepted_and_said(tmp_path):
    source = tmp_path / "hot.wav"
    sf.write(source, 25 * piano_like(3.0, 22050), 22050, subtype="FLOAT")  # peaks well above 1.0
    result = CliRunner().invoke(
        app, ["bwe", str(source), "--cutoff", "3k", "--checkpoint", "debug", "--steps", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "above full scale" in result.output
    out, _ = sf.read(tmp_path / "hot.restored.wav")
    assert sf.info(tmp_path / "hot.restored.wav").subtype == "FLOAT" and np.abs(out).max() > 1.0


def test_python_api_restores_an_array_of_any_shape():
    import cqtrestore

    audio = piano_like(1.0, 16000, channels=2)
    out = cqtrestore.restore(audio, 16000, cqtrestore.Gap([(0.3, 0.5)], 16000), checkpoint="debug", steps=2)
    assert out.shape == audio.shape and np.all(np.isfinite(out))
    outside = np.r_[0 : round(0.3 * 16000), round(0.5 * 16000) : audio.shape[0]]
    assert np.allclose(out[outside], audio[outside], atol=1e-6)


def test_interrupt_leaves_no_output(wav44, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Restorer, "restore_windows", interrupted)
    result = run("bwe", wav44, "--cutoff", "3k", *RUN)
    assert result.exit_code == 130 and "interrupted" in result.output
    assert [p.name for p in wav44.parent.iterdir()] == ["in.wav"]


# ---------------------------------------------------------------- bad input: one line, exit 2, no output


def _bad_inputs(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, piano_like(3.0, 22050), 22050)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio\n" * 10)
    (tmp_path / "cut.wav").write_bytes(good.read_bytes()[:30])
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1), np.float32), 22050)
    nan = piano_like(1.0, 22050)
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 22050, subtype="FLOAT")
    (tmp_path / "folder").mkdir()
    (tmp_path / "exists.wav").write_bytes(b"x")
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return {
        "missing file": (["bwe", tmp_path / "nope.wav", "--cutoff", "3k"], "nope.wav"),
        "directory": (["bwe", tmp_path / "folder", "--cutoff", "3k"], "folder"),
        "empty file": (["bwe", tmp_path / "empty.wav", "--cutoff", "3k"], "empty"),
        "not audio": (["bwe", tmp_path / "text.wav", "--cutoff", "3k"], "text.wav"),
        "truncated header": (["bwe", tmp_path / "cut.wav", "--cutoff", "3k"], "cut.wav"),
        "zero samples": (["bwe", tmp_path / "zero.wav", "--cutoff", "3k"], "no samples"),
        "nan samples": (["bwe", tmp_path / "nan.wav", "--cutoff", "3k"], "NaN"),
        "output is input": (["bwe", good, "--cutoff", "3k", "-o", good], "overwrite the input"),
        "unwritable folder": (["bwe", good, "--cutoff", "3k", "-o", locked / "o.wav"], "not writable"),
        "missing folder": (
            ["bwe", good, "--cutoff", "3k", "-o", tmp_path / "no" / "o.wav"],
            "does not exist",
        ),
        "output exists": (["bwe", good, "--cutoff", "3k", "-o", tmp_path / "exists.wav"], "--force"),
        "gap outside file": (["inpaint", good, "--gap", "2.9:3.5"], "after the file"),
        "gaps overlap": (["inpaint", good, "--gap", "1:1.5", "--gap", "1.4:1.6"], "overlap"),
        "empty gap": (["inpaint", good, "--gap", "1.5:1.5"], "after the start"),
        "gap too long": (["inpaint", good, "--gap", "0.2:2.8"], "at most"),
        "cutoff zero": (["bwe", good, "--cutoff", "0"], "positive"),
        "cutoff at nyquist": (["bwe", good, "--cutoff", "11.025k"], "Nyquist"),
        "cutoff junk": (["bwe", good, "--cutoff", "3kk"], "3kk"),
        "unknown checkpoint": (["bwe", good, "--cutoff", "3k", "--checkpoint", "piano-huge"], "piano-small"),
        "corrupt checkpoint": (
            ["bwe", good, "--cutoff", "3k", "--checkpoint", tmp_path / "bad.safetensors"],
            "bad",
        ),
        "dc for a chain": (
            ["restore", good, "--clip", "0.1", "--lowpass", "3k", "--mode", "dc"],
            "--mode rg",
        ),
        "bad mode": (["bwe", good, "--cutoff", "3k", "--mode", "xx"], "mode"),
        "bad quality": (["bwe", good, "--cutoff", "3k", "--quality", "ultra"], "fast, balanced, best"),
        "not clipped": (["declip", good], "does not look clipped"),
        "cuda absent": (["bwe", good, "--cutoff", "3k", "--device", "cuda"], "CUDA"),
        "no draws": (["bwe", good, "--cutoff", "3k", "--draws", "0"], "an integer from 1 to 16"),
        "too many draws": (["inpaint", good, "--gap", "1:1.2", "--draws", "17"], "from 1 to 16"),
    }


CASES = [
    "missing file", "directory", "empty file", "not audio", "truncated header", "zero samples", "nan samples",
    "output is input", "unwritable folder", "missing folder", "output exists", "gap outside file",
    "gaps overlap", "empty gap", "gap too long", "cutoff zero", "cutoff at nyquist", "cutoff junk",
    "unknown checkpoint", "corrupt checkpoint", "dc for a chain", "bad mode", "bad quality", "not clipped",
    "cuda absent", "no draws", "too many draws",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_exit_2_and_no_output(tmp_path, case, monkeypatch):
    if case == "cuda absent" and torch.cuda.is_available():
        pytest.skip("CUDA is present")
    if case == "unwritable folder":  # root may write anywhere: the check must see a read-only folder
        monkeypatch.setattr(tasks, "writable", lambda folder: False)
    args, expected = _bad_inputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, [str(a) for a in args] + ["--steps", "2"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert expected in lines[0]
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_auto_gaps_and_plot(tmp_path):
    audio = piano_like(4.0, 22050)
    audio[round(1.5 * 22050) : round(1.7 * 22050)] = 0.0  # a digital-silence dropout
    source = tmp_path / "drop.wav"
    sf.write(source, audio, 22050, subtype="FLOAT")
    plot = tmp_path / "drop.png"
    result = CliRunner().invoke(
        app,
        [
            "inpaint",
            str(source),
            "--gap",
            "auto",
            "--plot",
            str(plot),
            "--checkpoint",
            "debug",
            "--steps",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "auto gaps: 1.500 s-1.700 s" in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out, _ = sf.read(tmp_path / "drop.restored.wav")
    assert np.any(out[round(1.55 * 22050) : round(1.65 * 22050)] != 0)


def test_declip_detects_the_threshold(tmp_path):
    source = tmp_path / "clipped.wav"
    sf.write(source, np.clip(piano_like(3.0, 22050), -0.07, 0.07), 22050, subtype="FLOAT")
    result = CliRunner().invoke(app, ["declip", str(source), "--checkpoint", "debug", "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert "auto threshold: clipped at |x| = 0.07" in result.output


def test_checkpoints_commands():
    listing = run("checkpoints", "list")
    assert (
        listing.exit_code == 0
        and "prior2-context (default)" in listing.output
        and "piano-small (default)" not in listing.output
        and "cqtdiff-paper" in listing.output
    )
    verified = run("checkpoints", "verify", "piano-small")
    assert verified.exit_code == 0 and "piano-small: OK" in verified.output
    unknown = run("checkpoints", "download", "piano-huge")
    assert unknown.exit_code == 2 and "unknown checkpoint 'piano-huge'" in unknown.output


def test_eval_command_writes_the_table_and_resumes(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    for k in range(2):
        sf.write(clean / f"p{k}.flac", piano_like(4.0, 22050, seed=k), 22050)
    args = ["eval", str(clean), "--task", "bwe", "--out", str(tmp_path / "ev"), "--cutoff", "3000",
            "--method", "degraded", "--method", "cqt-diff-dc", "--segments", "2", "--steps", "2",
            "--checkpoint", "debug", "--quiet"]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "cqt-diff-dc" in first.output and (tmp_path / "ev" / "results.csv").is_file()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "0 items scored" in again.output
    bad = CliRunner().invoke(app, [*args[:2], "--task", "denoise", "--checkpoint", "debug"])
    assert bad.exit_code == 2 and bad.output.startswith("error:")


@pytest.mark.parametrize(
    ("quality", "expected"),
    [
        ("fast", "dpmpp2m, 4 steps from the classical estimate at σ 0.2"),
        ("best", "heun, 35 steps from noise"),
    ],
)
def test_quality_presets_reach_the_sampler_and_are_reported(tmp_path, quality, expected):
    source = tmp_path / "in.wav"
    sf.write(source, piano_like(3.0, 22050), 22050)
    result = run("bwe", str(source), "--cutoff", "3k", "--quality", quality, "--checkpoint", "debug")
    assert result.exit_code == 0, result.output
    assert expected in result.output
    again = run("bwe", str(source), "--cutoff", "3k", "--quality", quality, "--steps", "3", "--force",
                "--checkpoint", "debug")  # fmt: skip
    assert again.exit_code == 0 and (expected.split(",")[0] + ", 3 steps") in again.output


def test_declip_threshold_of_a_float_file_at_44k_restores_the_peaks(tmp_path):
    """The defect of issue 19: `declip IN --threshold τ` on a float WAV at 44.1 kHz returned the input
    (SI-SDR 2.94 -> 2.94 dB here) because resampling to the model rate turns the clipped plateau into
    ripple below τ, so the projection kept it; measured after the fix: 2.95 -> 7.10 dB."""
    import resampy

    from cqtrestore.metrics import si_sdr
    from cqtrestore.operators import Clip

    clean22, rate = sf.read("examples/piano.flac")
    x = resampy.resample(clean22[: 2 * rate], rate, 44100).astype(np.float32).astype(np.float64)
    tau = float(np.float32(Clip.from_sdr(x, 1.0).threshold))
    tau += 0.25 * float(np.spacing(np.float32(tau)))  # the exact level; the float file rounds it down
    y = np.clip(x, -tau, tau).astype(np.float32)
    assert float(np.abs(y).max()) < tau
    source = tmp_path / "clipped.wav"
    sf.write(source, y, 44100, subtype="FLOAT")
    result = run("declip", source, "--threshold", repr(tau), "--quality", "fast", "--quiet")
    assert result.exit_code == 0, result.output
    out, _ = sf.read(tmp_path / "clipped.restored.wav")
    score = lambda e: si_sdr(torch.from_numpy(x)[None], torch.from_numpy(e.astype(np.float64))[None]).item()  # noqa: E731
    assert score(out) > score(y) + 3


def test_bwe_with_a_blind_cutoff_estimates_the_filter_and_keeps_the_passband(tmp_path):
    from cqtrestore.blind import BlindLowPass

    rate = 44100
    x = piano_like(4.0, rate)[:, 0].astype(np.float64)
    lowpassed = BlindLowPass(2500.0, rate, slope_db=48.0)(torch.from_numpy(x[None]))[0].numpy()
    source = tmp_path / "old.wav"
    sf.write(source, lowpassed.astype(np.float32), rate, subtype="FLOAT")
    result = run("bwe", source, "--cutoff", "blind", "--checkpoint", "debug", "--steps", "3")
    assert result.exit_code == 0, result.output
    assert re.search(r"blind lowpass: starting from [0-9.]+ k?Hz, \d+ dB/octave", result.output)
    assert re.search(r"blind lowpass \(estimated: -3 dB at \d+ Hz, \d+ dB/octave\)", result.output)
    out, _ = sf.read(tmp_path / "old.restored.wav")
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    band = freqs < 1000  # far below the cutoff: whatever the (untrained) prior does, y is kept there
    spectrum_in, spectrum_out = np.fft.rfft(lowpassed)[band], np.fft.rfft(out)[band]
    assert np.linalg.norm(spectrum_out - spectrum_in) / np.linalg.norm(spectrum_in) < 0.05
    simulated = run("bwe", source, "--cutoff", "blind", "--simulate", "--checkpoint", "debug", "--force")
    assert simulated.exit_code != 0 and "needs a known degradation" in simulated.output


def test_denoise_estimates_the_hiss_and_lowers_it(tmp_path):
    rate = 22050
    rng = np.random.default_rng(3)
    x = piano_like(4.0, rate)[:, 0].astype(np.float64)
    x[rate : 2 * rate] *= 0.01  # a quiet second, where the hiss shows
    noisy = x + 10 ** (-40 / 20) * rng.standard_normal(x.size)
    source = tmp_path / "hiss.wav"
    sf.write(source, noisy.astype(np.float32), rate, subtype="FLOAT")
    result = run("denoise", source, "--checkpoint", "debug", "--steps", "3")
    assert result.exit_code == 0, result.output
    found = re.search(r"estimated noise at (-?\d+\.\d) dBFS RMS, SNR (\d+\.\d) dB, white", result.output)
    assert found and float(found.group(1)) == pytest.approx(-40, abs=2), result.output
    assert "hiss (noise at" in result.output
    assert "then the prior-guided Wiener filter below 2 kHz and the residual above" in " ".join(
        result.output.split()
    ), result.output
    out, _ = sf.read(tmp_path / "hiss.restored.wav")
    assert out.shape == noisy.shape and np.all(np.isfinite(out))
    given = run("denoise", source, "--noise-level", "-40", "--checkpoint", "debug", "--steps", "2", "--force")
    assert given.exit_code == 0 and "estimated noise" not in given.output, given.output
    for args, message in (
        (["--noise-level", "3"], "noise level must be a negative number"),
        (["--strength", "0"], "--strength must be a number > 0"),
        (["--simulate"], "give its level with --noise-level"),
    ):
        bad = run("denoise", source, *args, "--checkpoint", "debug", "--force")
        assert bad.exit_code != 0 and message in bad.output and "Traceback" not in bad.output, bad.output


def test_restore_an_old_recording_clipped_lowpassed_blind_and_hissy(tmp_path):
    from cqtrestore.blind import BlindLowPass

    rate = 22050
    rng = np.random.default_rng(5)
    x = piano_like(4.0, rate)[:, 0].astype(np.float64)
    x[rate : 2 * rate] *= 0.01
    old = BlindLowPass(3000.0, rate, slope_db=36.0)(torch.from_numpy(x[None]))[0].numpy()
    old = np.clip(old, -0.1, 0.1) + 10 ** (-45 / 20) * rng.standard_normal(x.size)
    source = tmp_path / "78rpm.wav"
    sf.write(source, old.astype(np.float32), rate, subtype="FLOAT")
    args = [
        "restore",
        source,
        "--clip",
        "0.1",
        "--lowpass",
        "blind",
        "--hiss",
        "auto",
        "--checkpoint",
        "debug",
    ]
    result = run(*args, "--steps", "2")
    assert result.exit_code == 0, result.output
    summary = next(line for line in result.output.splitlines() if line.startswith("wrote"))
    assert (
        "clip" in summary
        and "then blind lowpass (estimated: " in summary
        and "then hiss (noise at" in summary
    )
    assert sf.info(tmp_path / "78rpm.restored.wav").frames == x.size
    assert "hiss removed first" not in summary  # clipping keeps the chain in one sampler run
    # without the clipping the hiss is removed first, then the blind lowpass restored from that (with DC)
    result = run(
        "restore", source, "--lowpass", "blind", "--hiss", "auto", "--checkpoint", "debug", "--force"
    )
    assert result.exit_code == 0, result.output
    summary = next(line for line in result.output.splitlines() if line.startswith("wrote"))
    assert "; dc; hiss removed first (dpmpp2m, 6 steps from the classical estimate at σ 0.0" in summary
    assert "below 2 kHz and the residual above), then dpmpp2m, 6 steps from" in summary
    bad = run("restore", source, "--lowpass", "blind", "--gap", "1:1.2", "--checkpoint", "debug", "--force")
    assert (
        bad.exit_code != 0 and "cannot be combined with --gap" in bad.output and "Traceback" not in bad.output
    )
    bad = run("restore", source, "--hiss", "loud", "--checkpoint", "debug", "--force")
    assert bad.exit_code != 0 and "--hiss takes auto or a level" in bad.output


def test_draws_are_averaged_and_said(tmp_path):
    # Two draws: the report says so, and the output is the mean of the first draw (the one-draw output)
    # and a second one, so it differs from the one-draw output.
    source = tmp_path / "in.wav"
    sf.write(source, piano_like(2.0, 22050), 22050, subtype="FLOAT")
    common = ["bwe", source, "--cutoff", "2k", "--checkpoint", "debug", "--steps", "3"]
    one = run(*common, "-o", tmp_path / "one.wav")
    two = run(*common, "--draws", "2", "-o", tmp_path / "two.wav")
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    assert "mean of 2 draws" in two.output and "mean of" not in one.output
    a, _ = sf.read(tmp_path / "one.wav")
    b, _ = sf.read(tmp_path / "two.wav")
    assert a.shape == b.shape and not np.allclose(a, b) and np.all(np.isfinite(b))


def test_draws_of_flat_hiss_under_an_ode_solver_are_one_draw_and_said_so(tmp_path):
    # --noise-level gives flat hiss: dpmpp2m starts from y itself and adds no noise, so every draw is the
    # same; the run computes one and does not claim a mean of several.
    rng = np.random.default_rng(4)
    source = tmp_path / "hiss.wav"
    noisy = piano_like(2.0, 22050)[:, 0] + 0.01 * rng.standard_normal(2 * 22050)
    sf.write(source, noisy.astype(np.float32), 22050, subtype="FLOAT")
    common = ["denoise", source, "--noise-level", "-40", "--checkpoint", "debug", "--steps", "2"]
    one = run(*common, "-o", tmp_path / "one.wav")
    three = run(*common, "--draws", "3", "-o", tmp_path / "three.wav")
    assert one.exit_code == 0 and three.exit_code == 0, three.output
    assert "mean of" not in three.output
    a, _ = sf.read(tmp_path / "one.wav")
    b, _ = sf.read(tmp_path / "three.wav")
    np.testing.assert_array_equal(a, b)
