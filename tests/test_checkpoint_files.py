"""Every checkpoint listed in checkpoints.toml is present, matches its hash and loads."""

from __future__ import annotations

import hashlib

import pytest
import torch

from cqtrestore.checkpoints import load_weights
from tests.conftest import REPO_ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ENTRIES = tomllib.loads((REPO_ROOT / "checkpoints.toml").read_text())


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_bundled_checkpoint_matches_its_entry(name):
    entry = ENTRIES[name]
    if not entry["source"].startswith("bundled:"):
        pytest.skip("not bundled")
    path = REPO_ROOT / entry["source"].removeprefix("bundled:")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    net, meta = load_weights(path)
    assert meta["preset"] == entry["preset"] and net.config.sample_rate == entry["sample_rate"]
    out = net(torch.randn(1, 4096) * 0.057, torch.zeros(1, 1))
    assert out.shape == (1, 4096) and bool(out.isfinite().all())
