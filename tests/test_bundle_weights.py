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


def test_promote_copies_the_candidate_over_the_default_and_rewrites_only_its_entry(tmp_path):
    import hashlib
    import shutil

    import pytest

    from cqtrestore.checkpoints import read_metadata

    bundle = load_script()
    weights = tmp_path / "cqtrestore" / "weights"
    weights.mkdir(parents=True)
    real = bundle.ROOT / "cqtrestore" / "weights"
    for name in (bundle.DEFAULT, bundle.CANDIDATE):
        shutil.copyfile(real / f"{name}.safetensors", weights / f"{name}.safetensors")
    registry = (
        f'[{bundle.DEFAULT}]\nsha256 = "00"\ndescription = "default, EMA weights at step 1 of training"\n\n'
        f'[{bundle.CANDIDATE}]\nsha256 = "11"\ndescription = "the run, EMA weights at step 2 of training"\n'
    )
    (tmp_path / "checkpoints.toml").write_text(registry)
    step = bundle.promote(tmp_path)
    candidate = weights / f"{bundle.CANDIDATE}.safetensors"
    promoted = weights / f"{bundle.DEFAULT}.safetensors"
    assert promoted.read_bytes() == candidate.read_bytes()
    assert step == int(read_metadata(candidate)["total_step"])
    text = (tmp_path / "checkpoints.toml").read_text()
    digest = hashlib.sha256(promoted.read_bytes()).hexdigest()
    assert f'sha256 = "{digest}"' in text and f"default, EMA weights at step {step} " in text
    assert 'sha256 = "11"' in text and "step 2 " in text  # the candidate's entry as it was
    with pytest.raises(SystemExit, match="already at step"):
        bundle.promote(tmp_path)


def test_set_min_window_rewrites_the_config_and_the_hash_and_keeps_the_weights(tmp_path):
    import hashlib
    import shutil

    from safetensors.torch import load_file as load_tensors

    from cqtrestore.checkpoints import load_weights

    bundle = load_script()
    weights = tmp_path / "cqtrestore" / "weights"
    weights.mkdir(parents=True)
    source = bundle.ROOT / "cqtrestore" / "weights" / f"{bundle.CANDIDATE}.safetensors"  # small-context
    target = weights / f"{bundle.DEFAULT}.safetensors"
    shutil.copyfile(source, target)
    (tmp_path / "checkpoints.toml").write_text(
        f'[{bundle.DEFAULT}]\nsha256 = "00"\ndescription = "EMA weights at step 1 of training"\n'
    )
    digest = bundle.set_min_window(bundle.DEFAULT, 5.5, tmp_path)
    assert (
        digest
        == hashlib.sha256(target.read_bytes()).hexdigest()
        != hashlib.sha256(source.read_bytes()).hexdigest()
    )
    assert f'sha256 = "{digest}"' in (tmp_path / "checkpoints.toml").read_text()
    before, after = load_tensors(str(source)), load_tensors(str(target))
    assert before.keys() == after.keys() and all(
        before[k].equal(after[k]) and before[k].dtype == after[k].dtype for k in before
    )
    net, meta = load_weights(target)
    assert net.config.min_window_hz == 5.5 and net.transform(65536).min_window_hz == 5.5
    assert meta["preset"] == "small-context"  # no preset has that floor: the name stays
    bundle.set_min_window(bundle.DEFAULT, 4 * 22050 / 2**14, tmp_path)
    assert load_weights(target)[1]["preset"] == "small-context-hz"  # the preset that has it
    assert not list(weights.glob("*.partial"))
