"""Shared test helpers: locating the reference fixtures, fixed thread count."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_file(name: str, relative: str) -> ModuleType:
    """A repository file outside the package (bench/, scripts/; ``relative`` to the repository root)
    executed as a fresh module called ``name``."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


torch.set_num_threads(min(2, torch.get_num_threads()))


def official_fixtures_dir() -> Path | None:
    """The reference implementation's fixtures: $CQTRESTORE_FIXTURES, ./shared/... or ../shared/..."""
    candidates = [os.environ.get("CQTRESTORE_FIXTURES", "")]
    candidates += [
        str(REPO_ROOT / "shared/fixtures/official"),
        str(REPO_ROOT.parent / "shared/fixtures/official"),
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "README.md").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def official() -> Path:
    """Path of the official fixtures folder; skips the test when it is absent."""
    path = official_fixtures_dir()
    if path is None:
        pytest.skip("reference fixtures not found (set CQTRESTORE_FIXTURES or check out ../shared)")
    return path


def relative_error(ours, reference) -> float:
    """‖ours − ref‖ / ‖ref‖ over the whole array, as the fixtures README defines it."""
    ours = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    reference = np.asarray(reference)
    return float(np.linalg.norm((ours - reference).ravel()) / np.linalg.norm(reference.ravel()))


@pytest.fixture(autouse=True)
def _denormals_as_usual():
    """Training flushes denormals to zero (fast on CPU); do not let that leak into later tests."""
    yield
    torch.set_flush_denormal(False)
