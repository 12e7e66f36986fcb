"""Export the current EMA weights of the piano runs into the package and record their hashes.

    python scripts/bundle_weights.py            # before a session stops (see docs/model-card.md)
    python scripts/bundle_weights.py --promote  # the bundled run's weights become the default
    python scripts/bundle_weights.py --min-window-hz prior2-context 5.3833   # the CQT's window floor

runs/prior2-cpu-attn -> cqtrestore/weights/prior2-attn.safetensors, runs/prior2-cpu-dilated ->
prior2-dilated.safetensors, runs/prior2-cpu-wide -> prior2-wide.safetensors and runs/prior2-root ->
prior2-root.safetensors (the second prior's candidates; scripts/train_prior2.sh), runs/small-context ->
prior2-context-train.safetensors (the default prior's run as it goes on; since 2026-12-07 its arm on 2^15
crops, runs/small-context-2e15), and runs/piano-spectral ->
piano-small.safetensors (the first prior; scripts/train_piano.sh) where that run is on this machine.
Rewrites `sha256` and the step in `description` of each entry in checkpoints.toml; a run that is not
here is skipped (its committed weights stay). The earlier scalar priors (`piano-small-scalar`,
`piano-small-deep`) are frozen: their runs ended. The default, `prior2-context`, is not rewritten here:
it changes only together with docs/results.md: ``--promote`` copies the bundled prior2-context-train
weights over it and rewrites its entry (nothing else runs), then scripts/results.py regenerates the
tables and the model card, README and CHANGELOG say what changed. ``--min-window-hz NAME HZ`` rewrites
only the network config in a bundled file's metadata (``UNetConfig.min_window_hz``, the CQT's narrowest
window; the weights stay byte for byte) and its entry's hash; for the default, results.py runs next too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from cqtrestore.checkpoints import read_metadata
from cqtrestore.train import export_run
from cqtrestore.unet import PRESETS, UNetConfig

ROOT = Path(__file__).resolve().parent.parent
BUNDLES = {
    "piano-small": "runs/piano-spectral",
    "prior2-attn": "runs/prior2-cpu-attn",
    "prior2-dilated": "runs/prior2-cpu-dilated",
    "prior2-wide": "runs/prior2-cpu-wide",
    "prior2-root": "runs/prior2-root",
    "prior2-context-train": "runs/small-context-2e15",  # its 2^15-crop arm since 2026-12-07 12:33
}
DEFAULT, CANDIDATE = "prior2-context", "prior2-context-train"  # --promote: CANDIDATE's weights -> DEFAULT


def update_entry(toml: str, name: str, sha256: str, step: int) -> str:
    """The registry text with entry ``name``'s hash and step replaced."""
    pattern = re.compile(rf"(\[{re.escape(name)}\]\n(?:[^\[].*\n)*?)sha256 = \"[0-9a-f]*\"")
    toml, count = pattern.subn(rf'\g<1>sha256 = "{sha256}"', toml)
    if count != 1:
        raise SystemExit(f"checkpoints.toml: no entry [{name}] with a sha256 line")
    block = re.compile(rf"(\[{re.escape(name)}\]\n(?:[^\[].*\n)*?description = \".*?)step \d+")
    return block.sub(rf"\g<1>step {step}", toml)


def promote(root: Path = ROOT) -> int:
    """Copy the bundled CANDIDATE weights over DEFAULT's and rewrite DEFAULT's hash and step; the step."""
    weights = root / "cqtrestore" / "weights"
    source, target = weights / f"{CANDIDATE}.safetensors", weights / f"{DEFAULT}.safetensors"
    step = int(read_metadata(source)["total_step"])
    if target.exists() and read_metadata(target).get("total_step") == str(step):
        raise SystemExit(f"{DEFAULT} is already at step {step}: nothing to promote")
    shutil.copyfile(source, target)
    registry = root / "checkpoints.toml"
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    registry.write_text(update_entry(registry.read_text(), DEFAULT, digest, step))
    print(f"{DEFAULT}: now {CANDIDATE}'s step {step} ({digest[:12]}…); run scripts/results.py next")
    return step


def set_min_window(name: str, hz: float, root: Path = ROOT) -> str:
    """Rewrite bundled ``name``'s network config to ``min_window_hz = hz`` (tensors unchanged) and its
    registry hash; the new sha256."""
    path = root / "cqtrestore" / "weights" / f"{name}.safetensors"
    if not path.exists():
        raise SystemExit(f"{path}: no such bundled checkpoint")
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    config = json.loads(metadata["config"])
    config["min_window_hz"] = float(hz)
    metadata["config"] = json.dumps(config)
    retuned = UNetConfig.from_dict(config)
    named = [preset for preset, layout in PRESETS.items() if layout == retuned]
    metadata["preset"] = (
        named[0] if named else metadata.get("preset", "")
    )  # small-context -> small-context-hz
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    os.replace(partial, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    registry = root / "checkpoints.toml"
    step = int(metadata.get("total_step", metadata.get("step", 0)))
    registry.write_text(update_entry(registry.read_text(), name, digest, step))
    print(f"{name}: CQT window floor {hz:g} Hz, preset {metadata['preset']!r} ({digest[:12]}…)")
    return digest


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--promote", action="store_true", help=f"make {CANDIDATE}'s weights the default")
    parser.add_argument(
        "--min-window-hz", nargs=2, metavar=("NAME", "HZ"), help="set a bundled file's CQT window floor"
    )
    args = parser.parse_args()
    if args.promote:
        promote()
        return
    if args.min_window_hz:
        set_min_window(args.min_window_hz[0], float(args.min_window_hz[1]))
        return
    registry = ROOT / "checkpoints.toml"
    text = registry.read_text()
    for name, run in BUNDLES.items():
        if not (ROOT / run / "checkpoint.pt").exists():
            print(f"{name}: {run} is not on this machine; its committed weights stay")
            continue
        out = ROOT / "cqtrestore" / "weights" / f"{name}.safetensors"
        saved = read_metadata(ROOT / run / "ema.safetensors").get("step")  # written with each checkpoint
        if out.exists() and read_metadata(out).get("step") == saved:
            print(f"{name}: {run} is still at step {saved}; its committed weights stay")
            continue
        metadata = export_run(ROOT / run, out, half=True)
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        step = int(metadata["total_step"])  # its own steps and those of the weights it started from
        text = update_entry(text, name, digest, step)
        where = out.relative_to(ROOT)
        print(f"{name}: {run} step {metadata['step']} (in all {step}) -> {where} ({digest[:12]}…)")
    registry.write_text(text)


if __name__ == "__main__":
    main()
