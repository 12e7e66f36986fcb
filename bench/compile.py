"""torch.compile (inductor) against eager for one network evaluation of a 2^16-sample window.

    python bench/compile.py --checkpoint piano-small --threads 2 --repeats 5
    python bench/compile.py --checkpoint debug --length 8192 --repeats 2     # smoke run

Prints the compile time (the first compiled call), the median seconds per evaluation of each, their
ratio and the largest difference between the outputs (the speed issue asks for 1e-4), under
``torch.inference_mode`` with denormals flushed, as the CLI samples. ``--json`` writes the same.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from cqtrestore.checkpoints import load_checkpoint


def timed(function, *args) -> tuple[float, torch.Tensor]:
    """Seconds of one call and its result."""
    tic = time.perf_counter()
    out = function(*args)
    return time.perf_counter() - tic, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="piano-small")
    parser.add_argument("--length", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    net, info = load_checkpoint(args.checkpoint, progress=False)
    torch.manual_seed(0)
    x, sigma = 0.057 * torch.randn(1, args.length), torch.full((1, 1), -0.3)
    compiled = torch.compile(net)
    with torch.inference_mode():
        reference = net(x, sigma)  # warm-up
        compile_s, fast = timed(compiled, x, sigma)
        eager = [timed(net, x, sigma)[0] for _ in range(args.repeats)]
        compiled_s = [timed(compiled, x, sigma)[0] for _ in range(args.repeats)]
    result = {
        "checkpoint": info.name,
        "preset": info.preset,
        "length": args.length,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "compile_s": round(compile_s, 2),
        "eager_s": round(statistics.median(eager), 4),
        "compiled_s": round(statistics.median(compiled_s), 4),
        "speed_up": round(statistics.median(eager) / statistics.median(compiled_s), 3),
        "max_abs_diff": float((fast - reference).abs().max()),
        "max_abs_output": float(reference.abs().max()),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
