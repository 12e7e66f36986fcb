"""The README's Python example runs as written."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def test_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    restored, clean = namespace["restored"], namespace["clean"]
    assert restored.shape == clean.shape and bool(restored.isfinite().all())
