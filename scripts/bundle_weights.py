"""Export the current EMA weights of the piano runs into the package and record their hashes.

    python scripts/bundle_weights.py            # before a session stops (see docs/model-card.md)

runs/piano-spectral -> cqtrestore/weights/piano-small.safetensors (the default prior; scripts/train_piano.sh)
Rewrites `sha256` and the step in `description` of that entry in checkpoints.toml. The earlier scalar
priors (`piano-small-scalar`, `piano-small-deep`) are frozen: their runs ended.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from cqtrestore.train import export_run

ROOT = Path(__file__).resolve().parent.parent
BUNDLES = {"piano-small": "runs/piano-spectral"}


def update_entry(toml: str, name: str, sha256: str, step: int) -> str:
    """The registry text with entry ``name``'s hash and step replaced."""
    pattern = re.compile(rf"(\[{re.escape(name)}\]\n(?:[^\[].*\n)*?)sha256 = \"[0-9a-f]*\"")
    toml, count = pattern.subn(rf'\g<1>sha256 = "{sha256}"', toml)
    if count != 1:
        raise SystemExit(f"checkpoints.toml: no entry [{name}] with a sha256 line")
    block = re.compile(rf"(\[{re.escape(name)}\]\n(?:[^\[].*\n)*?description = \".*?)step \d+")
    return block.sub(rf"\g<1>step {step}", toml)


def main() -> None:
    registry = ROOT / "checkpoints.toml"
    text = registry.read_text()
    for name, run in BUNDLES.items():
        out = ROOT / "cqtrestore" / "weights" / f"{name}.safetensors"
        metadata = export_run(ROOT / run, out, half=True)
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        text = update_entry(text, name, digest, int(metadata["step"]))
        print(f"{name}: {run} step {metadata['step']} -> {out.relative_to(ROOT)} ({digest[:12]}…)")
    registry.write_text(text)


if __name__ == "__main__":
    main()
