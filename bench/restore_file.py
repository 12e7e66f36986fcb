"""Real-time factor and peak memory of `cqtrestore bwe` on a short and a long file (issue: memory constant in
file length, target ratio <= 1.2 between a 10-min and a 10-s file).

    python bench/restore_file.py --durations 10 --steps 35               # real-time factor at the paper's T
    python bench/restore_file.py --durations 10 600 --steps 2 --channels 1 --json out.json   # memory ratio

Input: piano from the corpus valid split (`--data`, concatenated and looped), or piano-like synthetic tones
when that folder is absent, written as 44.1 kHz 16-bit WAV (stereo, or mono with `--channels 1`) and
lowpassed at 3 kHz, so the run goes through the whole path (resampling both ways, windows, crossfade,
atomic write). Every run is a fresh `python -m cqtrestore bwe` process; its peak resident memory comes
from `getrusage(RUSAGE_CHILDREN)`
(each measurement in its own parent process, so the figures do not mix).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44100


def make_input(path: Path, seconds: float, data: Path, channels: int = 2) -> None:
    """A lowpassed piano file of ``seconds`` at 44.1 kHz, mono or stereo (written block by block)."""
    import resampy
    import torch

    from cqtrestore.operators import LowPass

    sources = sorted(data.rglob("*.flac"))[:40] if data.is_dir() else []
    pool = [resampy.resample(sf.read(f, dtype="float32")[0], 22050, RATE) for f in sources]
    if not pool:
        t = np.arange(RATE * 8) / RATE
        pool = [0.05 * np.sin(2 * np.pi * 220 * t) * np.exp(-t % 2)]
    signal = np.concatenate(pool)
    frames = round(seconds * RATE)
    lowpass = LowPass(3000, RATE)
    with sf.SoundFile(path, "w", RATE, channels, subtype="PCM_16") as sink:
        for start in range(0, frames, RATE * 60):
            n = min(RATE * 60, frames - start)
            block = np.resize(np.roll(signal, -start), n)
            mono = lowpass(torch.from_numpy(block[None].astype(np.float64)))[0].numpy()
            sink.write(np.stack([mono, 0.8 * mono][:channels], axis=1))


def measure(path: Path, checkpoint: str, steps: int, threads: int) -> dict:
    """Run the CLI in a child and return wall time, real-time factor and the child's peak RSS."""
    code = (
        "import resource, subprocess, sys, time, json;"
        "t = time.perf_counter();"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "w = time.perf_counter() - t;"
        "print(json.dumps({'rc': r.returncode, 'wall_s': w, 'stderr': r.stderr[-500:],"
        " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
    )
    out = path.with_name(path.stem + f".T{steps}.wav")
    command = [sys.executable, "-m", "cqtrestore", "bwe", str(path), "--cutoff", "3k",
               "--checkpoint", checkpoint, "--steps", str(steps), "--quiet", "--force", "-o", str(out),
               "--device", "cpu"]  # fmt: skip
    env = {"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, env=env)
    record = json.loads(result.stdout)
    duration = sf.info(path).duration
    record.update(seconds=duration, steps=steps, real_time_factor=record["wall_s"] / duration)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 600.0])
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[2], help="T per run (memory does not depend on T)"
    )
    parser.add_argument("--checkpoint", default="piano-small")
    parser.add_argument("--data", type=Path, default=Path("data/piano/valid"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels", type=int, default=2, choices=(1, 2))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seconds in args.durations:
            path = Path(folder) / f"in-{seconds:g}s.wav"
            make_input(path, seconds, args.data, args.channels)
            for steps in args.steps:
                row = measure(path, args.checkpoint, steps, args.threads)
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "stderr"}), flush=True)
    by_steps = {}
    for row in rows:
        by_steps.setdefault(row["steps"], []).append(row["peak_rss_mb"])
    ratios = {steps: max(mem) / min(mem) for steps, mem in by_steps.items() if len(mem) > 1}
    print(f"peak-memory ratio longest/shortest file per T: {ratios}")
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(sys.argv),
        "rows": rows,
        "memory_ratio": ratios,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
