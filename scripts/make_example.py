"""Write the README's example clips from the corpus valid split (run once; the clips are committed).

    python scripts/make_example.py data/piano/valid/haydn/haydn__opus74no1__movement4.mxl_c00.flac --start 10

examples/piano.flac                 5 s of clean piano (22.05 kHz, 16-bit), never seen in training
examples/piano-lowpassed-3k.flac    the same, lowpassed at 3 kHz (cqtrestore's Kaiser FIR): the main job
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from cqtrestore.operators import LowPass


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="a FLAC file of the valid split")
    parser.add_argument("--start", type=float, default=10.0, help="seconds into the file")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("examples"))
    args = parser.parse_args()
    audio, rate = sf.read(args.source, dtype="float64")
    clip = audio[round(args.start * rate) : round((args.start + args.seconds) * rate)]
    fade = np.minimum(1.0, np.minimum(np.arange(clip.size), np.arange(clip.size)[::-1]) / (0.01 * rate))
    clip = clip * fade  # 10-ms fades: no clicks at the ends
    lowpassed = LowPass(3000, rate)(torch.from_numpy(clip[None]))[0].numpy()
    args.out.mkdir(exist_ok=True)
    sf.write(args.out / "piano.flac", clip, rate, subtype="PCM_16")
    sf.write(args.out / "piano-lowpassed-3k.flac", lowpassed, rate, subtype="PCM_16")
    print(f"wrote {args.out}/piano.flac and piano-lowpassed-3k.flac ({args.seconds:g} s at {rate} Hz)")


if __name__ == "__main__":
    main()
