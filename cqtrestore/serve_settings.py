"""What the web page may ask for and what the server accepts: job settings checked once and turned into
the operator builders of ``tasks`` (the command line's own parsers and detectors), and upload limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cqtrestore import audio, tasks
from cqtrestore.operators import Operator

TASK_NAMES = {
    "bwe": "bandwidth extension",
    "declip": "declipping",
    "inpaint": "inpainting",
    "denoise": "hiss removal",
    "composite": "composite",
}


@dataclass(frozen=True)
class Limits:
    """What the server accepts: upload size in bytes, duration in seconds."""

    max_bytes: int = 200 * 10**6
    max_seconds: float = 15 * 60.0

    def __post_init__(self) -> None:
        if not self.max_bytes > 0 or not self.max_seconds > 0:
            raise ValueError("the upload limits (--max-mb, --max-minutes) must be > 0")


@dataclass(frozen=True)
class JobRequest:
    """What the page asks for: the task and its settings as the command line would take them.

    ``cutoff``: bwe's cutoff (a frequency, auto or blind), or composite's lowpass (None: not lowpassed);
    ``threshold``: declip's, or composite's clipping level (None: not clipped); ``gaps``: START:END texts,
    or ("auto",); ``hiss``: denoise's or composite's noise, auto or a level in dBFS (None: no hiss)."""

    task: str
    cutoff: str | None = None
    threshold: str | None = None
    gaps: tuple[str, ...] = ()
    quality: str = "balanced"
    steps: int | None = None
    seed: int = 0
    hiss: str | None = None

    @classmethod
    def from_json(cls, data: object) -> JobRequest:
        """Checked fields from a decoded JSON object; ValueError with a one-line message."""
        if not isinstance(data, dict):
            raise ValueError("a job is a JSON object with 'upload' and 'task'")
        task = data.get("task")
        if task not in TASK_NAMES:
            raise ValueError(f"unknown task {task!r}: use one of {', '.join(TASK_NAMES)}")
        gaps = data.get("gaps") or []
        if not isinstance(gaps, list) or not all(isinstance(g, str) for g in gaps):
            raise ValueError("gaps must be a list of START:END texts such as '1.2:1.5', or ['auto']")
        return cls(
            task,
            _text(data, "cutoff"),
            _text(data, "threshold"),
            tuple(g for g in gaps if g.strip()),
            _text(data, "quality") or "balanced",
            _integer(data, "steps", 1),
            _integer(data, "seed", 0) or 0,
            _text(data, "hiss"),
        )

    def build(self, say: tasks.Say) -> Callable[[audio.AudioInfo, tasks.Loader], Operator]:
        """The operator builder ``tasks.prepare`` takes, from the library's own parsers and detectors."""
        if self.task == "bwe":
            return lambda info, samples: tasks.lowpass_operator(self.cutoff or "auto", info, samples, say)
        if self.task == "declip":
            return lambda info, samples: tasks.clip_operator(
                self.threshold or "auto", None, info, samples, say
            )
        if self.task == "inpaint":
            if not self.gaps:
                raise ValueError("no gaps: drag over the waveform to mark each missing range, or choose auto")
            return lambda info, samples: tasks.gap_operator(self.gaps, info, samples, say)
        if self.task == "denoise":
            return lambda info, samples: tasks.composite_operator(
                None, None, (), info, samples, say, self.hiss or "auto"
            )
        return lambda info, samples: tasks.composite_operator(
            self.cutoff, self.threshold, self.gaps, info, samples, say, self.hiss
        )


def _text(data: dict, name: str) -> str | None:
    """An optional text field (None when absent or blank)."""
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be text such as 'auto', got {value!r}")
    if value is None:
        return None
    return value.strip() or None


def _integer(data: dict, name: str, least: int) -> int | None:
    """An optional integer field >= ``least``."""
    value = data.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")
    return value
