"""Smoke test of bench/speed.py: the debug network on short windows, and the extrapolation arithmetic."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from conftest import REPO_ROOT


@pytest.fixture(scope="module")
def speed():
    """bench/speed.py imported as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_speed", REPO_ROOT / "bench" / "speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_speed"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["bench_speed"]


def test_tiny_run_counts_heun_evaluations_and_writes_json(speed, tmp_path, capsys) -> None:
    out = tmp_path / "speed.json"
    argv = [
        "--tiny",
        "--length",
        "2048",
        "--device",
        "cpu",
        "--tasks",
        "bwe",
        "declip",
        "--modes",
        "dc",
        "rg",
    ]
    rows = speed.main([*argv, "--json", str(out)])
    ran = [(r.task, r.mode) for r in rows if r.dtype == "fp32"]
    assert ran == [("bwe", "dc"), ("bwe", "rg"), ("declip", "dc"), ("declip", "rg")]
    for row in rows[:4]:
        assert row.forward_evals == 2 * 2 - 1 and row.wall_s > 0 and row.gflop_per_eval > 0, row
        assert row.backward == (row.mode == "rg") and row.rtf_target is None  # 8192-sample windows
    assert rows[4].dtype == "bf16" and rows[4].note.startswith("skipped")  # never bf16 on CPU
    record = json.loads(out.read_text())["runs"][0]
    assert record["machine"]["command"].startswith("python bench/speed.py --tiny")
    assert len(record["results"]) == 5 and record["results"][0]["s_per_eval"] > 0
    assert "| debug | bwe | dc | cpu | fp32 | 1 | 2 | 3 | " in capsys.readouterr().out


def test_extrapolation_to_60_s_at_35_steps(speed) -> None:
    assert speed.windows_for(60, 22050, 65536) == 23
    row = speed.Row("paper", "bwe", "dc", "cpu", "fp32", "", batch=4, steps=2, length=65536)
    row.windows_60s, row.forward_evals, row.wall_s, row.gflop_per_eval = 23, 3, 6.0, 1000.0
    assert row.s_per_eval == 2.0 and row.evals_per_s == 2.0 and row.gflops == 2000.0
    assert row.s_per_window_target == pytest.approx(69 * 2.0 / 4)
    assert row.rtf_target == pytest.approx(6 * 69 * 2.0 / 60)  # ceil(23 / 4) calls of 69 evaluations
