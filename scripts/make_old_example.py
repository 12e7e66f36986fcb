"""Write the "Old recordings" example of the README from examples/piano.flac (run once; committed).

    python scripts/make_old_example.py

examples/piano-old.flac   the same 5 s through a filter cqtrestore is not told (a zero-phase 3rd-order
                          Butterworth magnitude, -3 dB at 2.5 kHz, 18 dB/octave), then white hiss at
                          -50 dBFS RMS (seed 0): a stand-in for a band-limited, hissy transfer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from cqtrestore.blind import DB_PER_ORDER, BlindLowPass

CUTOFF_HZ, ORDER, HISS_DBFS = 2500.0, 3, -50.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=Path("examples/piano.flac"))
    parser.add_argument("--out", type=Path, default=Path("examples/piano-old.flac"))
    args = parser.parse_args()
    clean, rate = sf.read(args.source, dtype="float64")
    band_limited = BlindLowPass(CUTOFF_HZ, rate, slope_db=ORDER * DB_PER_ORDER, estimate=False)
    old = band_limited(torch.from_numpy(clean[None]))[0].numpy()
    old += 10 ** (HISS_DBFS / 20) * np.random.default_rng(0).standard_normal(old.size)
    sf.write(args.out, old, rate, subtype="PCM_16")
    print(f"wrote {args.out}: Butterworth order {ORDER} at {CUTOFF_HZ:g} Hz, hiss at {HISS_DBFS:g} dBFS")


if __name__ == "__main__":
    main()
