"""Task figures of the prior issue's runs against training CPU-hours, as a PNG (no matplotlib).

    python scripts/plot_progress.py docs/prior2-progress.csv -o docs/prior2-progress.png

Reads the measured checkpoints (one row per run and step; ``#`` lines are comments) and draws one panel
per column named with ``--columns`` (default: BWE 3 kHz LSD and the white noise kept at σ 0.01), x the
CPU-hours at the idle speed, one coloured line per run, its name at its last point. Rows without a
value in a column are left out of that panel.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from cqtrestore.plot import colormap, draw_text, write_png

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 260, 56, 150, 22, 24
TITLES = {
    "bwe3k_lsd": "BWE 3 KHZ LSD (8 VALID SEGMENTS, BALANCED)",
    "white_kept_db": "WHITE NOISE KEPT ABOVE 3.5 KHZ AT SIGMA 0.01 (DB)",
    "loss_0.01": "YARDSTICK LOSS AT SIGMA 0.01",
    "loss_0.1": "YARDSTICK LOSS AT SIGMA 0.1",
}


def read_rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows, comment lines skipped."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(lines))


def series(rows: list[dict[str, str]], column: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per run, (CPU-hours, values) of the rows with a value in ``column``, in CSV order."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        if row.get(column, "").strip():
            xs, ys = out.setdefault(row["run"], ([], []))
            xs.append(float(row["cpu_hours"]))
            ys.append(float(row[column]))
    return {run: (np.array(xs), np.array(ys)) for run, (xs, ys) in out.items()}


def nice_range(values: np.ndarray) -> tuple[float, float]:
    """A y range a little wider than the values."""
    low, high = float(values.min()), float(values.max())
    pad = 0.06 * (high - low or 1.0)
    return low - pad, high + pad


def panel(
    column: str, data: dict[str, tuple[np.ndarray, np.ndarray]], x_max: float, runs: list[str]
) -> np.ndarray:
    """One figure's lines on a dark canvas, with y ticks at the range's ends and middle."""
    image = np.full((HEIGHT, WIDTH, 3), 16, np.uint8)
    y_low, y_high = nice_range(np.concatenate([ys for _, ys in data.values()]))
    width, height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        return LEFT + width * x / x_max, TOP + height * (y_high - y) / (y_high - y_low)

    image[TOP + height, LEFT : LEFT + width] = 90
    image[TOP : TOP + height, LEFT] = 90
    for tick in np.linspace(y_low, y_high, 3):
        _, py = to_pixel(0, tick)
        draw_text(image, f"{tick:.2f}" if abs(tick) < 10 else f"{tick:.0f}", 2, int(py) - 3, scale=1)
    for hours in range(0, int(x_max) + 1, 2):
        px, _ = to_pixel(hours, y_low)
        image[TOP + height : TOP + height + 3, int(px)] = 150
        draw_text(image, str(hours), int(px) - 2, TOP + height + 5, scale=1)
    colours = colormap(np.linspace(0.3, 1.0, len(runs)))
    for run, colour in zip(runs, colours, strict=True):
        if run not in data:
            continue
        points = [to_pixel(x, y) for x, y in zip(*data[run], strict=True)]
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            for t in np.linspace(0, 1, 2 + int(abs(x1 - x0) + abs(y1 - y0))):
                image[int(y0 + t * (y1 - y0)), int(x0 + t * (x1 - x0))] = colour
        for x, y in points:
            image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = colour
        x, y = points[-1]
        draw_text(
            image, run.split(" ")[0], int(x) + 5, int(y) - 3, scale=1, colour=tuple(int(c) for c in colour)
        )
    draw_text(image, TITLES.get(column, column.upper()) + " / TRAINING CPU-HOURS", 4, 4, scale=1)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("csv", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/prior2-progress.png"))
    parser.add_argument("--columns", nargs="+", default=["bwe3k_lsd", "white_kept_db"])
    args = parser.parse_args()
    rows = read_rows(args.csv)
    runs = list(dict.fromkeys(row["run"] for row in rows))
    x_max = max(float(row["cpu_hours"]) for row in rows) * 1.02
    panels = [panel(column, series(rows, column), x_max, runs) for column in args.columns]
    write_png(args.output, np.concatenate(panels))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
