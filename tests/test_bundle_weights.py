"""scripts/bundle_weights.py: the registry entry of a re-bundled checkpoint (steps: tests/test_train.py)."""

from __future__ import annotations

from conftest import load_file


def load_script():
    return load_file("bundle_weights", "scripts/bundle_weights.py")


def test_update_entry_rewrites_only_the_named_entry():
    bundle = load_script()
    toml = (
        '[x]\nsha256 = "0a"\ndescription = "EMA weights at step 400 of CPU training"\n\n'
        '[y]\nsha256 = "0b"\ndescription = "at step 10"\n'
    )
    out = bundle.update_entry(toml, "x", "ff", 600)
    assert 'sha256 = "ff"' in out and "step 600" in out and 'sha256 = "0b"' in out and "step 10" in out
