"""The README's Python example runs as written (with fewer sampler steps, to stay fast)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import soundfile as sf

from tests.conftest import REPO_ROOT


def test_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "README has no python example"
    shutil.copytree(REPO_ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    code = blocks[0].replace('quality="balanced"', 'quality="balanced", steps=2')
    assert code != blocks[0], 'the example should set quality="balanced" (the test shortens it)'
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102
    restored, rate = sf.read(tmp_path / "restored.flac")
    source, source_rate = sf.read(tmp_path / "examples" / "piano-lowpassed-3k.flac")
    assert rate == source_rate and restored.shape == source.shape and np.all(np.isfinite(restored))


def test_main_job_command_matches_the_example_files():
    text = (REPO_ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert "cqtrestore bwe examples/piano-lowpassed-3k.flac --cutoff 3k" in commands[0]
    assert (REPO_ROOT / "examples" / "piano-lowpassed-3k.flac").is_file()
    assert "python -m pytest -q" in commands[1]
    assert "python -m pytest -q" in (REPO_ROOT / ".ci" / "run").read_text()
