"""Training curves of the piano runs as a PNG (no matplotlib): validation loss (EMA) per noise level.

    python scripts/plot_training.py runs/piano-small-shallow runs/piano-small -o docs/training-curves.png

One panel per run; x: optimiser step, y: log10 of the λ-weighted validation loss; one line per σ of
`cqtrestore.train.VALID_SIGMAS` (colours from dark = small σ to bright = large σ). A dotted line marks
loss 1.0 (what outputting D(x) = c_skip·x alone scores when the data have variance σ_data²).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cqtrestore.plot import colormap, draw_text, write_png

WIDTH, HEIGHT, MARGIN = 640, 260, 28
Y_RANGE = (-1.0, 0.5)  # log10 loss shown: 0.1 … 3.2


def read_valid(run: Path) -> tuple[list[int], dict[str, list[float]]]:
    """Steps and the validation loss per σ from a run's log.jsonl."""
    steps, curves = [], {}
    for line in (run / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "valid" in record:
            steps.append(record["step"])
            for sigma, value in record["valid"].items():
                curves.setdefault(sigma, []).append(value)
    return steps, curves


def panel(title: str, steps: list[int], curves: dict[str, list[float]], last_step: int) -> np.ndarray:
    """One run's curves on a dark canvas."""
    image = np.full((HEIGHT, WIDTH, 3), 16, np.uint8)
    x = lambda s: MARGIN + (WIDTH - 2 * MARGIN) * np.asarray(s) / max(last_step, 1)  # noqa: E731
    y = lambda v: MARGIN + (HEIGHT - 2 * MARGIN) * (Y_RANGE[1] - np.log10(v)) / (Y_RANGE[1] - Y_RANGE[0])  # noqa: E731
    image[int(y(1.0)), MARGIN : WIDTH - MARGIN : 4] = 110
    colours = colormap(np.linspace(0.25, 1.0, len(curves)))
    for colour, values in zip(colours, curves.values(), strict=True):
        xs, ys = x(steps), y(np.clip(values, 10 ** Y_RANGE[0], 10 ** Y_RANGE[1]))
        for (x0, y0), (x1, y1) in zip(
            zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False
        ):
            for t in np.linspace(0, 1, 2 + int(abs(x1 - x0) + abs(y1 - y0))):
                image[int(y0 + t * (y1 - y0)), int(x0 + t * (x1 - x0))] = colour
    draw_text(image, title, 4, 4)
    draw_text(image, f"step {last_step}   sigma: " + " ".join(curves), 4, HEIGHT - 12)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/training-curves.png"))
    args = parser.parse_args()
    data = [(run, *read_valid(run)) for run in args.runs]
    last = max(steps[-1] for _, steps, _ in data)
    image = np.concatenate(
        [panel(f"{run.name}: validation loss (EMA), log scale 0.1-3", s, c, last) for run, s, c in data]
    )
    write_png(args.output, image)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
