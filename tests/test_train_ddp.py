"""Training at scale: DDP over 2 gloo processes, data workers, σ distributions, samples, CPU refusals."""

from __future__ import annotations

import json
import os
import shutil
import socket

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.multiprocessing as mp

import cqtrestore.train as training
from cqtrestore.data import RandomCrops, crop_batches, scan_audio
from cqtrestore.train import TrainConfig, load_checkpoint, step_noise, train

SR = 22050
CONFIG = dict(preset="debug", batch_size=4, segment=4096, log_every=2, save_every=4, valid_crops=2, lr=2e-3)


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """Four 1-s files of harmonic tones."""
    folder = tmp_path_factory.mktemp("tones")
    t = np.arange(SR) / SR
    for i, f0 in enumerate((110, 220, 330, 440)):
        x = sum(np.exp(-2 * t) * np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
        sf.write(folder / f"tone{i}.flac", 0.1 * x, SR)
    return folder


def _rank(rank: int, port: int, data: str, out: str, steps: int, resume: bool) -> None:
    """One torchrun-like process: train, then save this rank's parameters for comparison."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank))
    os.environ["WORLD_SIZE"] = "2"
    built = []
    build = training.build_unet
    training.build_unet = lambda config: built.append(build(config)) or built[-1]
    train(TrainConfig(steps=steps, threads=1, **CONFIG), data, out, resume=resume)
    torch.save(built[0].state_dict(), f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_match_single_process_training(tones, tmp_path):
    """2 steps, then a resumed run to 4 steps, on 2 ranks equals 4 steps in one process."""
    mp.spawn(_rank, args=(free_port(), str(tones), str(tmp_path / "ddp"), 2, False), nprocs=2)
    mp.spawn(_rank, args=(free_port(), str(tones), str(tmp_path / "ddp"), 4, True), nprocs=2)
    train(TrainConfig(steps=4, threads=1, **CONFIG), tones, tmp_path / "single")
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1))
    single = load_checkpoint(tmp_path / "single" / "checkpoint.pt")
    assert load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["step"] == 4
    for key, value in single["model"].items():
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0)
        torch.testing.assert_close(rank0[key], value, rtol=1e-4, atol=1e-5)
    logs = [
        [
            r["loss"]
            for r in map(json.loads, (tmp_path / run / "log.jsonl").read_text().splitlines())
            if "loss" in r
        ]
        for run in ("ddp", "single")
    ]
    np.testing.assert_allclose(logs[0], logs[1], rtol=1e-4)  # rank 0 logs the whole batch's loss
    starts = [
        r for r in map(json.loads, (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()) if "event" in r
    ]
    assert len(starts) == 1 and starts[0]["processes"] == 2  # only rank 0 writes


def test_workers_give_the_same_batches(tones):
    crops = RandomCrops(scan_audio(tones)[0], 2048, SR, seed=5)
    inline = list(crop_batches(crops, 3, 6, size=2, offset=1, workers=0))
    parallel = list(crop_batches(crops, 3, 6, size=2, offset=1, workers=2))
    assert len(inline) == len(parallel) == 3
    for step, a, b in zip(range(3, 6), inline, parallel, strict=True):
        assert torch.equal(a, b) and torch.equal(a, crops.batch(step, 2, offset=1))


def test_lognormal_sigmas_are_wired_through():
    config = TrainConfig(sigma_distribution="lognormal", p_mean=-1.0, p_std=0.5, batch_size=4000, segment=8)
    sigma, noise = step_noise(config, 0)
    assert noise.shape == (4000, 8)
    assert sigma.log().mean().item() == pytest.approx(-1.0, abs=0.03)
    assert sigma.log().std().item() == pytest.approx(0.5, abs=0.03)
    rho = step_noise(TrainConfig(batch_size=4000, segment=8), 0)[0]
    assert rho.min() >= 1e-6 and rho.max() <= 10 and not torch.allclose(rho, sigma)
    with pytest.raises(ValueError, match="unknown sigma distribution"):
        TrainConfig(sigma_distribution="uniform")


def test_samples_are_written(tones, tmp_path):
    train(TrainConfig(steps=2, sample_every=2, sample_steps=3, **CONFIG), tones, tmp_path / "run")
    folder = tmp_path / "run" / "samples" / "step-0000002"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "bwe-clean.flac",
        "bwe-input.flac",
        "bwe-restored.flac",
        "bwe.png",
        "unconditional.flac",
        "unconditional.png",
    ]
    for name in names:
        if name.endswith(".flac"):
            audio, rate = sf.read(folder / name)
            assert rate == SR and audio.shape == (4096,) and np.isfinite(audio).all()
        else:
            assert (folder / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    restored, _ = sf.read(folder / "bwe-restored.flac")
    assert np.abs(restored).max() > 0


def test_bf16_is_refused_without_cuda(tones, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="30-80x slower"):
        train(TrainConfig(steps=1, bf16=True, **CONFIG), tones, tmp_path / "run")
    with pytest.raises(ValueError, match="does not split evenly"):
        monkeypatch.setenv("WORLD_SIZE", "3")
        train(TrainConfig(steps=1, **CONFIG), tones, tmp_path / "run")


def test_cli_options(tones, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cqtrestore.cli import app

    data = tmp_path / "data"
    shutil.copytree(tones, data)
    (data / "broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    runner, common = CliRunner(), [str(data), "--preset", "debug", "--segment", "4096", "--batch-size", "2"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    refused = runner.invoke(app, ["train", *common, "--out", str(tmp_path / "a"), "--bf16", "--compile"])
    assert refused.exit_code == 2 and "mainly helps on GPUs" in refused.output and "30-80x" in refused.output
    bad = runner.invoke(app, ["train", *common, "--out", str(tmp_path / "b"), "--sigma-distribution", "flat"])
    assert bad.exit_code == 2 and "unknown sigma distribution 'flat'" in bad.output
    args = ["--steps", "2", "--workers", "1", "--sigma-distribution", "lognormal", "--p-mean", "-2"]
    ran = runner.invoke(app, ["train", *common, "--out", str(tmp_path / "c"), *args, "--valid-crops", "1"])
    assert ran.exit_code == 0, ran.output
    assert "3 training and 1 validation files (skipped: 1 unreadable), " in ran.output
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["sigma_distribution"] == "lognormal" and config["p_mean"] == -2 and config["workers"] == 1
    bad = runner.invoke(app, ["train", *common, "--out", str(tmp_path / "d"), "--precondition", "pink"])
    assert bad.exit_code == 2 and "unknown preconditioning 'pink'" in bad.output
    bad = runner.invoke(
        app, ["train", *common, "--out", str(tmp_path / "d"), "--sigma-min", "3", "--sigma-max", "2"]
    )
    assert bad.exit_code == 2 and "need 0 < sigma_min < sigma_max" in bad.output
    args = [
        "--steps",
        "1",
        "--precondition",
        "spectral",
        "--sigma-min",
        "1e-5",
        "--sigma-max",
        "2",
        "--rho",
        "7",
    ]
    ran = runner.invoke(app, ["train", *common, "--out", str(tmp_path / "e"), *args, "--valid-crops", "1"])
    assert ran.exit_code == 0, ran.output
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    assert (config["precondition"], config["sigma_min"], config["sigma_max"], config["rho"]) == (
        "spectral",
        1e-5,
        2,
        7,
    )
