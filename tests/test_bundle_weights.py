"""scripts/bundle_weights.py: the step a bundled checkpoint records counts the weights it started from."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("bundle_weights", ROOT / "scripts" / "bundle_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_total_step_adds_the_init_step_of_the_start_record(tmp_path):
    bundle = load_script()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "log.jsonl").write_text(
        json.dumps({"event": "start", "init": "prior2-attn", "init_step": 400})
        + "\n"
        + json.dumps({"step": 0})
    )
    assert bundle.total_step(tmp_path / "a", 200) == 600
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "log.jsonl").write_text(json.dumps({"event": "start", "train_files": 3}) + "\n")
    assert bundle.total_step(tmp_path / "b", 200) == 200
    assert bundle.total_step(tmp_path / "missing", 7) == 7


def test_update_entry_rewrites_only_the_named_entry():
    bundle = load_script()
    toml = (
        '[x]\nsha256 = "0a"\ndescription = "EMA weights at step 400 of CPU training"\n\n'
        '[y]\nsha256 = "0b"\ndescription = "at step 10"\n'
    )
    out = bundle.update_entry(toml, "x", "ff", 600)
    assert 'sha256 = "ff"' in out and "step 600" in out and 'sha256 = "0b"' in out and "step 10" in out
