"""Evaluation: metric identities, protocols, config checks, and an end-to-end run that resumes."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cqtrestore.evaluate import (
    GAP_CONTEXT,
    SEGMENT,
    EvalConfig,
    EvalError,
    gap_operator,
    mean_ci,
    methods_for,
    run_eval,
    sdr,
)
from cqtrestore.metrics import lsd, si_sdr

SR = 22050


def noise(n: int = 8192, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------- metrics


def test_lsd_of_a_signal_with_itself_is_zero():
    x = noise()
    assert lsd(x, x).item() == 0.0


def test_lsd_of_a_tenfold_louder_copy_is_two_bels():
    x = noise()  # power ratio 100 in every bin: log10 difference exactly 2 everywhere
    assert lsd(x, 10 * x).item() == pytest.approx(2.0, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.01, 100), seed=st.integers(0, 1000))
def test_si_sdr_is_scale_invariant(scale, seed):
    x, e = noise(2048, seed), noise(2048, seed + 1)
    estimate = x + 0.3 * e
    assert si_sdr(x, scale * estimate).item() == pytest.approx(si_sdr(x, estimate).item(), abs=1e-6)


def test_si_sdr_and_sdr_of_an_orthogonal_error_at_known_power():
    t = torch.arange(SR, dtype=torch.float64) / SR
    x = torch.sin(2 * math.pi * 100 * t)[None]
    error = 0.1 * torch.sin(2 * math.pi * 300 * t)[None]  # orthogonal, 1/100 of the power: 20 dB
    assert si_sdr(x, x + error).item() == pytest.approx(20.0, abs=1e-6)
    assert sdr(x, x + error).item() == pytest.approx(20.0, abs=1e-6)
    assert sdr(x, 0.5 * x).item() == pytest.approx(20 * math.log10(2), abs=1e-9)


def test_mean_ci_is_the_normal_95_percent_interval():
    mean, half, n = mean_ci([1.0, 2.0, 3.0, 4.0, float("nan")])
    assert (mean, n) == (2.5, 4)
    assert half == pytest.approx(1.96 * np.std([1, 2, 3, 4], ddof=1) / 2)
    assert math.isnan(mean_ci([5.0])[1])


# ---------------------------------------------------------------- protocols and options


@settings(max_examples=30, deadline=None)
@given(length=st.sampled_from([0.1, 0.2, 0.3, 0.5]), segment=st.integers(0, 100), seed=st.integers(0, 99))
def test_gaps_have_the_length_and_context_on_both_sides(length, segment, seed):
    gap = gap_operator(length, segment, seed)
    ((start, stop),) = gap.ranges
    assert stop - start == round(length * SR)
    assert start >= GAP_CONTEXT and stop <= SEGMENT - GAP_CONTEXT
    assert gap_operator(length, segment, seed).ranges == gap.ranges  # seeded


def test_methods_per_task():
    assert methods_for("declip") == ("degraded", "a-spade", "cqt-diff-rg", "cqt-diff-dc+rg")
    assert methods_for("bwe")[:2] == ("degraded", "noise-fill")
    assert "cqt-diff-dc+rg" in methods_for("inpaint") and "lpc" in methods_for("inpaint")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"task": "denoise"}, "unknown task"),
        ({"task": "bwe", "cutoffs": (20000,)}, "cutoffs"),
        ({"task": "declip", "sdrs": (0,)}, "SDRs"),
        ({"task": "inpaint", "gaps": (2.0,)}, "gap lengths"),
        ({"task": "declip", "methods": ("cqt-diff-dc",)}, "does not apply"),
        ({"task": "bwe", "segments": 0}, "segments"),
        ({"task": "bwe", "steps": 0}, "steps"),
        ({"task": "bwe", "quality": "paper"}, "unknown quality"),
        ({"task": "bwe", "cutoffs": ()}, "no conditions"),
    ],
)
def test_config_rejects_bad_options_with_one_line(options, message):
    with pytest.raises(EvalError, match=message) as error:
        EvalConfig(**options)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- end to end


@pytest.fixture
def clean_dir(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    t = np.arange(int(1.5 * SR)) / SR
    for i, f in enumerate([220.0, 330.0]):
        tone = 0.3 * np.sin(2 * np.pi * f * t) + 0.1 * np.sin(2 * np.pi * 2.5 * f * t + 1)
        sf.write(folder / f"tone{i}.wav", tone, SR)
    return folder


def test_eval_runs_end_to_end_with_the_debug_model_and_resumes(clean_dir, tmp_path):
    config = EvalConfig(
        task="bwe",
        cutoffs=(3000,),
        methods=("degraded", "noise-fill", "cqt-diff-dc"),
        segments=2,
        steps=2,
        checkpoint="debug",
        batch_size=2,
    )
    out = tmp_path / "out"
    seen = []
    first = run_eval(config, clean_dir, out, progress=lambda done, total: seen.append((done, total)))
    assert first.computed == 6 and len(first.items) == 6 and seen[-1] == (6, 6)
    for name in ("results.csv", "results.md", "lsd.png", "si_sdr.png", "sdr_gain.png", "items.jsonl"):
        assert (out / name).stat().st_size > 0
    csv = (out / "results.csv").read_text().splitlines()
    assert csv[0] == "condition,method,segment,lsd,si_sdr,sdr_gain" and len(csv) == 7
    table = (out / "results.md").read_text()
    assert "| cqt-diff-dc |" in table and "3 kHz" in table and "±" in table
    degraded = [i for i in first.items if i.method == "degraded"]
    assert all(i.scores["sdr_gain"] == 0 for i in degraded)
    noise_fill = [i for i in first.items if i.method == "noise-fill"]
    assert all(n.scores["lsd"] < d.scores["lsd"] for n, d in zip(noise_fill, degraded, strict=True))

    again = run_eval(config, clean_dir, out)
    assert again.computed == 0
    assert_same_items(again.items, first.items)


def assert_same_items(resumed_items, original_items) -> None:
    """The same items in the same order with the same scores (batched differently: float rounding)."""
    for resumed, original in zip(resumed_items, original_items, strict=True):
        assert (resumed.condition, resumed.method, resumed.segment) == (
            original.condition,
            original.method,
            original.segment,
        )
        assert resumed.scores == pytest.approx(original.scores, rel=1e-5, abs=1e-6)


def test_eval_resumes_after_an_interruption_and_ignores_a_torn_line(clean_dir, tmp_path):
    config = EvalConfig(task="inpaint", gaps=(0.1,), methods=("degraded", "lpc"), segments=2)
    out = tmp_path / "out"
    first = run_eval(config, clean_dir, out)
    lines = (out / "items.jsonl").read_text().splitlines()
    (out / "items.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # cut mid-item
    again = run_eval(config, clean_dir, out)
    assert again.computed == 1
    assert_same_items(again.items, first.items)
    assert run_eval(config, clean_dir, out).computed == 0  # the torn line did not swallow the new one
    lpc = [i for i in again.items if i.method == "lpc"]
    degraded = [i for i in again.items if i.method == "degraded"]
    for filled, gapped in zip(lpc, degraded, strict=True):  # a tonal signal: LPC fills the gap well
        assert filled.scores["gap_si_sdr"] > 20 > gapped.scores["gap_si_sdr"]


def test_eval_refuses_a_folder_holding_another_evaluation(clean_dir, tmp_path):
    out = tmp_path / "out"
    run_eval(EvalConfig(task="bwe", cutoffs=(3000,), methods=("degraded",), segments=1), clean_dir, out)
    assert json.loads((out / "config.json").read_text())["task"] == "bwe"
    more = EvalConfig(task="bwe", cutoffs=(3000,), methods=("degraded", "noise-fill"), segments=1)
    assert run_eval(more, clean_dir, out).computed == 1  # a method added later: only its items run
    with pytest.raises(EvalError, match="different evaluation"):
        run_eval(
            EvalConfig(task="bwe", cutoffs=(3000,), methods=("degraded",), segments=1, seed=1), clean_dir, out
        )


def test_eval_reports_an_empty_folder(tmp_path):
    with pytest.raises(EvalError, match="nothing to train on|no audio"):
        run_eval(EvalConfig(task="bwe", methods=("degraded",), segments=1), tmp_path, tmp_path / "out")


def test_eval_refuses_a_cache_of_other_weights_under_the_same_name(clean_dir, tmp_path, monkeypatch):
    from cqtrestore import evaluate

    methods = ("degraded", "cqt-diff-dc")
    config = EvalConfig(task="bwe", cutoffs=(3000,), methods=methods, segments=1, steps=2, checkpoint="debug")
    out = tmp_path / "out"
    monkeypatch.setattr(evaluate, "checkpoint_digest", lambda c: "a" * 64)
    assert run_eval(config, clean_dir, out).computed == 2
    assert run_eval(config, clean_dir, out).computed == 0  # same weights: resumed
    monkeypatch.setattr(evaluate, "checkpoint_digest", lambda c: "b" * 64)  # re-bundled under one name
    with pytest.raises(EvalError, match="other weights under the name 'debug'"):
        run_eval(config, clean_dir, out)


@pytest.mark.parametrize("quality", ["fast", "best"])
def test_eval_samples_as_the_restore_commands_preset_does(quality):
    """A CQT-Diff method is the restore path with the preset's plan and the method's mode: same samples."""
    from cqtrestore import evaluate
    from cqtrestore.checkpoints import load_checkpoint
    from cqtrestore.pipeline import restore_segments
    from cqtrestore.quality import resolve
    from cqtrestore.warmstart import classical_estimate

    net, info = load_checkpoint("debug")
    denoiser = info.denoiser(net).eval()
    clean = evaluate.to_training_rms(noise(SEGMENT, seed=3))
    config = EvalConfig(task="inpaint", gaps=(0.1,), quality=quality, steps=2 if quality == "best" else None)
    (op,) = evaluate.operators_for("inpaint", 0.1, clean, 0)
    y = op(clean).float()
    got = evaluate.run_method("cqt-diff-dc", y, [op], denoiser, config, seed=7)
    plan = resolve(quality, op)
    sampler = plan.sampler if quality == "fast" else replace(plan.sampler, steps=2)
    start = classical_estimate(op, y) if plan.warm_start else None
    guidance = replace(plan.guidance, mode="dc")
    want = restore_segments(denoiser, op, y, guidance, sampler, torch.Generator().manual_seed(7), start)
    assert plan.warm_start == (quality == "fast")
    torch.testing.assert_close(got, want)
    assert not torch.equal(got, y)


@pytest.mark.parametrize("task", ["bwe", "declip", "inpaint"])
def test_eval_report_describes_each_tasks_preset(task):
    from cqtrestore.evaluate import sampler_description

    text = sampler_description(EvalConfig(task=task))
    steps, draws = {"bwe": (6, 1), "declip": (5, 2), "inpaint": (5, 3)}[task]
    assert text.startswith(f"quality balanced (dpmpp2m, {steps} steps, warm start at σ")
    assert text.endswith(f", mean of {draws} draws)") == (draws > 1)


def test_eval_report_names_the_preset_and_a_new_quality_needs_a_new_folder(clean_dir, tmp_path):
    config = EvalConfig(task="bwe", cutoffs=(3000,), methods=("degraded",), segments=1, quality="fast")
    out = tmp_path / "out"
    run_eval(config, clean_dir, out)
    assert "quality fast (dpmpp2m, 4 steps, warm start at σ 0.2)" in (out / "results.md").read_text()
    with pytest.raises(EvalError, match="different evaluation"):
        run_eval(EvalConfig(task="bwe", cutoffs=(3000,), methods=("degraded",), segments=1), clean_dir, out)
