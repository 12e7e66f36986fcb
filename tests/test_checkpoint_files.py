"""The weight files in the repository: listed in checkpoints.toml, matching their hashes, loading."""

from __future__ import annotations

import subprocess

import pytest
import torch

from cqtrestore.checkpoints import REGISTRY_PATH, WEIGHTS_DIR, list_checkpoints, load_checkpoint
from cqtrestore.download import sha256_file
from tests.conftest import REPO_ROOT

LARGE = 20 * 1024 * 1024
BUNDLED = {e.source.split(":", 1)[1]: e for e in list_checkpoints() if e.source.startswith("bundled:")}


@pytest.mark.parametrize("file", sorted(BUNDLED))
def test_bundled_checkpoint_matches_its_entry(file):
    entry = BUNDLED[file]
    assert sha256_file(WEIGHTS_DIR / file) == entry.sha256, f"update sha256 of [{entry.name}]"
    net, info = load_checkpoint(entry.name, progress=False)
    assert info.preset == entry.preset and net.config.sample_rate == entry.sample_rate and info.is_trained
    out = net(torch.randn(1, 4096) * 0.057, torch.zeros(1, 1))
    assert out.shape == (1, 4096) and bool(out.isfinite().all())
    denoised = info.denoiser(net)(torch.randn(1, 4096) * 0.1, 0.1)  # as preconditioned in training
    assert denoised.shape == (1, 4096) and bool(denoised.isfinite().all())


def test_the_default_prior_is_spectrally_preconditioned():
    _, info = load_checkpoint("piano-small", progress=False)
    spectrum = torch.tensor(info.data_spectrum)
    assert spectrum.shape == (513,) and bool((spectrum > 0).all())
    # Synthesised piano: its power falls by more than 40 dB from the low octaves to the top one.
    assert spectrum[: 512 * 1000 // 11025].max() > 1e4 * spectrum[512 * 8000 // 11025 :].mean()


def test_every_weight_file_is_listed():
    assert sorted(p.name for p in WEIGHTS_DIR.iterdir() if p.is_file()) == sorted(BUNDLED)


def test_the_packaged_registry_is_the_top_level_file():
    if not (REPO_ROOT / "checkpoints.toml").is_file():
        pytest.skip("not a source checkout")
    assert REGISTRY_PATH.resolve() == (REPO_ROOT / "checkpoints.toml").resolve()


def test_large_files_are_listed_weights():
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    paths = [REPO_ROOT / name for name in listing.split("\0") if name]
    large = [p for p in paths if p.is_file() and not p.is_symlink() and p.stat().st_size > LARGE]
    listed = {WEIGHTS_DIR.resolve() / name for name in BUNDLED}
    unlisted = [str(p.relative_to(REPO_ROOT)) for p in large if p.resolve() not in listed]
    assert not unlisted, f"files over 20 MB must be bundled weights listed in checkpoints.toml: {unlisted}"
