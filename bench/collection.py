"""Files per hour and real-time factor of whole-folder restoration (issue 7).

Two folders (20 short files, 2 long ones), each restored two ways on each device:

* ``folder``:   one ``cqtrestore bwe FOLDER -o OUT`` process (the prior loaded once, files one after another);
* ``per-file``: one ``cqtrestore bwe FILE`` process per file (what a shell loop does).

Windows of different files do not share a batch yet (see cqtrestore/collections.py), so ``folder`` vs
``per-file`` measures what the folder mode saves today: start-up and model loading per file. Real-time
factor = wall time / audio time (below 1: faster than real time).

    python bench/collection.py --tiny                                  # smoke run: 3 x 1 s + 1 x 4 s, T=2
    python bench/collection.py --steps 35 --json collection.json       # the real figures (CPU, and CUDA)

Inputs are piano-like synthetic notes at 44.1 kHz, 16-bit stereo, lowpassed at 3 kHz.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44100


def notes(seconds: float, seed: int) -> np.ndarray:
    """Decaying harmonic notes, lowpassed at 3 kHz, stereo, RMS about 0.06."""
    import torch

    from cqtrestore.operators import LowPass

    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    mono = np.zeros(t.size)
    for onset in np.arange(0, seconds, 0.5):
        f0 = 110 * 2 ** (rng.integers(0, 30) / 12)
        envelope = np.where(t >= onset, np.exp(-(t - onset) * 3), 0.0)
        mono += sum(envelope * np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    mono = LowPass(3000, RATE)(torch.from_numpy(mono[None]))[0].numpy()
    mono *= 0.06 / max(np.sqrt(np.mean(mono**2)), 1e-9)
    return np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)


def make_folder(folder: Path, count: int, seconds: float) -> float:
    """``count`` files of ``seconds`` each; returns the total audio seconds."""
    folder.mkdir(parents=True)
    for index in range(count):
        sf.write(folder / f"take{index:02d}.wav", notes(seconds, index), RATE, subtype="PCM_16")
    return count * seconds


def cli(*args: str, threads: int) -> float:
    """Run ``python -m cqtrestore ARGS``; wall seconds (raises if it fails)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cqtrestore", *args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return time.perf_counter() - began


def measure(folder: Path, out: Path, how: str, common: list[str], threads: int) -> float:
    """Wall seconds to restore every file of ``folder`` into ``out`` one way or the other."""
    if how == "folder":
        return cli("bwe", str(folder), "-o", str(out), *common, threads=threads)
    out.mkdir()
    return sum(
        cli("bwe", str(path), "-o", str(out / path.name), *common, threads=threads)
        for path in sorted(folder.glob("*.wav"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="3 x 1 s and 1 x 4 s files, T=2 (a smoke run)")
    parser.add_argument("--short", type=float, nargs=2, default=[20, 10.0], help="count and seconds")
    parser.add_argument("--long", type=float, nargs=2, default=[2, 300.0], help="count and seconds")
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--checkpoint", default="piano-small")
    parser.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: all present)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.tiny:
        args.short, args.long, args.steps = [3, 1.0], [1, 4.0], 2
    import torch

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-collection-") as name:
        for label, (count, seconds) in (("short", args.short), ("long", args.long)):
            folder = Path(name) / label
            audio_seconds = make_folder(folder, int(count), seconds)
            for device in devices:
                common = ["--cutoff", "3k", "--checkpoint", args.checkpoint, "--steps", str(args.steps)]
                common += ["--device", device, "--quiet", "--seed", "0"]
                for how in ("folder", "per-file"):
                    wall = measure(folder, Path(name) / f"{label}-{device}-{how}", how, common, args.threads)
                    row = {"folder": label, "files": int(count), "seconds_each": seconds, "device": device,
                           "how": how, "steps": args.steps, "wall_s": round(wall, 2),
                           "files_per_hour": round(count * 3600 / wall, 1),
                           "real_time_factor": round(wall / audio_seconds, 3)}  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.json:
        report = {
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "python": platform.python_version(),
            },
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": " ".join(sys.argv),
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
