"""scripts/plot_progress.py: the measured-checkpoints CSV read and drawn (docs/prior2-progress.csv)."""

from __future__ import annotations

import struct
import sys

import numpy as np
from conftest import REPO_ROOT, load_file

CSV = """# a comment line, then the header
run,preset,step,cpu_hours,bwe3k_lsd,white_kept_db
a,p,400,0.5,1.8,-26
a,p,800,1.0,,-30
b (long name),q,400,1.0,1.5,
b (long name),q,800,2.0,1.4,
"""


def load_script():
    return load_file("plot_progress", "scripts/plot_progress.py")


def test_the_committed_csv_reads_without_its_comment_lines():
    plot = load_script()
    path = REPO_ROOT / "docs" / "prior2-progress.csv"
    rows = plot.read_rows(path)
    assert rows and all(not row["run"].startswith("#") for row in rows)
    assert {"run", "step", "cpu_hours", "bwe3k_lsd", "white_kept_db"} <= set(rows[0])


def test_series_per_run_in_csv_order(tmp_path):
    plot = load_script()
    (tmp_path / "p.csv").write_text(CSV)
    rows = plot.read_rows(tmp_path / "p.csv")
    lsd = plot.series(rows, "bwe3k_lsd")
    assert list(lsd) == ["a", "b (long name)"]
    np.testing.assert_array_equal(lsd["a"][0], [0.5])  # the row without an LSD is left out
    np.testing.assert_array_equal(lsd["b (long name)"][1], [1.5, 1.4])
    white = plot.series(rows, "white_kept_db")
    assert list(white) == ["a"] and list(white["a"][1]) == [-26.0, -30.0]


def test_main_writes_one_panel_per_column(tmp_path, monkeypatch):
    plot = load_script()
    (tmp_path / "p.csv").write_text(CSV)
    out = tmp_path / "p.png"
    monkeypatch.setattr(sys, "argv", ["plot_progress.py", str(tmp_path / "p.csv"), "-o", str(out)])
    plot.main()
    data = out.read_bytes()
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (plot.WIDTH, 2 * plot.HEIGHT)
