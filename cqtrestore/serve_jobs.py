"""The web page's work: uploads in one temporary folder, a queue that restores one job at a time through
the library (``tasks.prepare`` -> ``Restorer.restore_file``), progress, cancelling, results.

Every file lives under ``root`` in a folder named by a random id; names sent by the browser are only
shown and used in the download's name, never as paths. A job's upload is deleted when the job ends;
what its result page plays and offers (WAV previews, spectrograms, the restored file) stays until the
result is discarded, ``keep`` newer results replace it, or the queue closes (which removes ``root``).
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
import torch

from cqtrestore import audio, serve_media, tasks, units
from cqtrestore.checkpoints import CheckpointError
from cqtrestore.operators import Compose, LowPass, Operator
from cqtrestore.pipeline import FileReport, RestoreOptions, Restorer, gap_ranges
from cqtrestore.serve_settings import TASK_NAMES, JobRequest, Limits

UPLOAD_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")
RESULT_FILES = ("before.wav", "after.wav", "before.png", "after.png")
MAX_PENDING_UPLOADS = 4  # uploads not yet given to a job; the oldest goes first
MAX_RECORDS = 100  # job records (not files) remembered for the status page
log = logging.getLogger("cqtrestore.serve")


class Cancelled(Exception):
    """The running job was cancelled (deliberately not an error the pipeline catches per file)."""


@dataclass
class Upload:
    """An uploaded file waiting for its job, in its own folder."""

    id: str
    name: str  # the browser's file name, for showing only
    folder: Path
    path: Path
    info: audio.AudioInfo | None = None
    created: float = field(default_factory=time.time)

    def public(self, message: str) -> str:
        """``message`` with the temporary paths replaced by the name the user knows."""
        for private in (str(self.path), str(self.folder), self.path.name):
            message = message.replace(private, self.name)
        return message


@dataclass
class Job:
    """One restoration and what the page is told about it."""

    id: str
    upload: Upload
    work: tasks.Job
    options: RestoreOptions
    request: JobRequest
    notes: list[str]
    state: str = "queued"  # queued, running, done, failed, cancelled
    done: int = 0
    total: int = 0
    evaluations: int = 0
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    settings: list[tuple[str, str]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    def progress(self, done: int, total: int) -> None:
        """The pipeline's callback: windows crossfaded so far, of all."""
        self.done, self.total = done, total
        if self.cancel.is_set():
            raise Cancelled

    def download_name(self) -> str:
        """IN_STEM.restored.EXT from the browser's name, reduced to safe characters."""
        stem = re.sub(r"[^\w.\- ()]+", "_", Path(self.upload.name.replace("\\", "/")).stem).strip(" .")
        return f"{stem[:80] or 'audio'}.restored{self.work.output.suffix}"


class _Interruptible(torch.nn.Module):
    """The prior's denoiser, checking before every evaluation whether the running job was cancelled."""

    def __init__(self, denoiser: torch.nn.Module, check: Callable[[], None]) -> None:
        super().__init__()
        self.denoiser, self.check = denoiser, check

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        self.check()
        return self.denoiser(x, sigma)


class JobQueue:
    """Uploads and jobs under ``root``; one worker thread restores the queued jobs in order."""

    def __init__(
        self,
        root: Path,
        restorer: Restorer,
        checkpoint: str,
        limits: Limits | None = None,
        steps: int | None = None,
        keep: int = 4,
    ) -> None:
        self.root, self.restorer, self.checkpoint = Path(root), restorer, checkpoint
        self.limits, self.steps, self.keep = limits or Limits(), steps, keep
        self.device = restorer.device.type
        self.uploads: dict[str, Upload] = {}
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._running: Job | None = None
        if isinstance(restorer.denoiser, _Interruptible):  # a restarted app: this queue checks now
            restorer.denoiser.check = self._check
        else:
            restorer.denoiser = _Interruptible(restorer.denoiser, self._check)
        self._worker = threading.Thread(target=self._work, name="cqtrestore-jobs", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------ uploads

    def new_upload(self, name: str) -> Upload:
        """A folder for an upload about to arrive; its file's suffix comes from a fixed list only."""
        suffix = Path(name).suffix.lower()
        upload_id = secrets.token_hex(16)
        folder = self.root / upload_id
        folder.mkdir()
        path = folder / f"input{suffix if suffix in UPLOAD_SUFFIXES else '.audio'}"
        upload = Upload(upload_id, _display_name(name), folder, path)
        with self._lock:
            self.uploads[upload_id] = upload
            pending = sorted(self.uploads.values(), key=lambda u: u.created)
        for old in pending[:-MAX_PENDING_UPLOADS]:
            self.drop_upload(old.id)
        return upload

    def too_large(self, upload: Upload) -> str:
        """The message for an upload over the size limit."""
        return f"{upload.name}: larger than this server's {self.limits.max_bytes / 1e6:g} MB limit (--max-mb)"

    def accept_upload(self, upload: Upload) -> dict:
        """Check the arrived file as the command line checks its input, and describe it for the page;
        ValueError (the upload deleted) when it cannot be restored."""
        try:
            info = audio.probe(upload.path)
            if info.duration > self.limits.max_seconds:
                raise ValueError(
                    f"{upload.name}: {units.format_time(info.duration)} long; this server restores files "
                    f"up to {units.format_time(self.limits.max_seconds)} (--max-minutes)"
                )
            peaks = serve_media.waveform(upload.path)
        except (ValueError, OSError, RuntimeError) as error:
            self.drop_upload(upload.id)
            raise ValueError(upload.public(_one_line(upload, error))) from None
        upload.info = info
        return {
            "upload": upload.id,
            "name": upload.name,
            "duration": info.duration,
            "sample_rate": info.sample_rate,
            "channels": info.channels,
            "format": f"{info.format} {info.subtype}",
            "waveform": peaks,
        }

    def drop_upload(self, upload_id: str) -> None:
        """Forget an upload not given to a job and delete its folder."""
        with self._lock:
            upload = self.uploads.pop(upload_id, None)
        if upload is not None:
            shutil.rmtree(upload.folder, ignore_errors=True)

    # ------------------------------------------------------------ jobs

    def submit(self, upload_id: str, request: JobRequest) -> Job:
        """Check the settings as the command line does (``tasks.prepare``, ``tasks.restore_options``) and
        queue the job; KeyError when the upload is unknown or already used, ValueError when it is bad."""
        with self._lock:
            upload = self.uploads.get(upload_id)
            if upload is None or upload.info is None:
                raise KeyError(upload_id)
        notes: list[str] = []
        output = upload.folder / f"restored{serve_media.output_suffix(upload.info)}"
        try:
            work = tasks.prepare(
                upload.path, output, False, False, None, request.build(notes.append), notes.append
            )
            options = tasks.restore_options(
                work.operator,
                steps=request.steps or self.steps,
                seed=request.seed,
                device=self.device,
                quality=request.quality,
            )
        except (ValueError, OSError, RuntimeError) as error:
            raise ValueError(upload.public(_one_line(upload, error))) from None
        job = Job(secrets.token_hex(16), upload, work, options, request, [upload.public(n) for n in notes])
        with self._lock:
            if self.uploads.pop(upload_id, None) is None:
                raise KeyError(upload_id)  # the same upload was submitted twice at once
            self.jobs[job.id] = job
            self._queue.put(job)
        self._forget_old_records()
        return job

    def status(self, job_id: str) -> dict:
        """What the page shows of a job (KeyError when unknown)."""
        with self._lock:
            job = self.jobs[job_id]
            queued = [j for j in self.jobs.values() if j.state == "queued"]
            position = queued.index(job) + (self._running is not None) if job in queued else 0
            now = time.time()
            elapsed = (job.ended or now) - job.started if job.started else 0.0
            eta = elapsed / job.done * (job.total - job.done) if job.state == "running" and job.done else None
            status = {
                "job": job.id,
                "name": job.upload.name,
                "task": job.request.task,
                "state": job.state,
                "position": position,  # jobs ahead of a queued one, the running one included
                "progress": {
                    "done": job.done,
                    "total": job.total,
                    "evaluations": job.evaluations,
                    "elapsed": round(elapsed, 1),
                    "eta": None if eta is None else round(eta, 1),
                },
                "notes": job.notes,
                "error": job.error,
            }
            if job.state == "done" and job.upload.folder.is_dir():
                status["result"] = self._result(job)
        return status

    def _result(self, job: Job) -> dict:
        """Addresses of the players, pictures and download, the marks and the settings of a done job."""
        base = f"/api/jobs/{job.id}/files"
        gaps, cutoff = _marks(job.work.operator, job.work.info.sample_rate)
        return {
            "before": f"{base}/before.wav",
            "after": f"{base}/after.wav",
            "spectrogram_before": f"{base}/before.png",
            "spectrogram_after": f"{base}/after.png",
            "download": f"/api/jobs/{job.id}/download",
            "filename": job.download_name(),
            "duration": job.work.info.duration,
            "gaps": gaps,
            "cutoff_hz": cutoff,
            "settings": [list(pair) for pair in job.settings],
        }

    def file(self, job_id: str, name: str) -> Path:
        """A result file of a done job (KeyError when there is none)."""
        with self._lock:
            job = self.jobs[job_id]
            if job.state != "done":
                raise KeyError(job_id)
            if name == "download":
                path = job.work.output
            elif name in RESULT_FILES:
                path = job.upload.folder / name
            else:
                raise KeyError(name)
        if not path.is_file():
            raise KeyError(name)
        return path

    def cancel(self, job_id: str) -> None:
        """Stop a queued or running job; its files are deleted (KeyError when unknown)."""
        with self._lock:
            job = self.jobs[job_id]
            job.cancel.set()
            if job.state != "queued":
                return
            job.state, job.ended = "cancelled", time.time()
        shutil.rmtree(job.upload.folder, ignore_errors=True)

    def discard(self, job_id: str) -> None:
        """Delete the files of a job (cancelling it first if it has not ended)."""
        self.cancel(job_id)
        with self._lock:
            job = self.jobs[job_id]
            ended = job.state not in ("queued", "running")
        if ended:
            shutil.rmtree(job.upload.folder, ignore_errors=True)

    def close(self, timeout: float = 30.0) -> None:
        """Cancel everything, stop the worker and delete every file under ``root``."""
        with self._lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            job.cancel.set()
        self._queue.put(None)
        self._worker.join(timeout)
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------ the worker

    def _check(self) -> None:
        """Called before every network evaluation: count it; raise Cancelled if the job was cancelled."""
        job = self._running
        if job is not None:
            job.evaluations += 1
            if job.cancel.is_set():
                raise Cancelled

    def _work(self) -> None:
        """Restore queued jobs one at a time until a None arrives."""
        torch.set_flush_denormal(True)  # as the command line: denormals at tiny noise levels are slow on x86
        while (job := self._queue.get()) is not None:
            with self._lock:
                if job.state != "queued" or job.cancel.is_set():
                    continue
                job.state, job.started, self._running = "running", time.time(), job
            state, error = self._restore(job)
            job.work.input.unlink(missing_ok=True)  # the upload goes when its job ends
            if state != "done":
                shutil.rmtree(job.upload.folder, ignore_errors=True)
            with self._lock:
                job.state, job.error, job.ended, self._running = state, error, time.time(), None
            self._forget_old_results()

    def _restore(self, job: Job) -> tuple[str, str | None]:
        """Run one job; (state, one-line error) — no failure stops the worker."""
        began = time.perf_counter()
        try:
            work = job.work
            report = self.restorer.restore_file(
                work.input, work.output, work.operator, job.options, job.progress
            )
            folder = job.upload.folder
            serve_media.write_preview(work.input, folder / "before.wav")
            serve_media.write_preview(work.output, folder / "after.wav")
            gaps, cutoff = _marks(work.operator, work.info.sample_rate)
            pairs = [(work.input, folder / "before.png"), (work.output, folder / "after.png")]
            serve_media.write_spectrograms(pairs, [tuple(g) for g in gaps], cutoff)
            job.settings = self._settings(job, report, time.perf_counter() - began)
        except Cancelled:
            return "cancelled", None
        except (CheckpointError, ValueError, OSError, RuntimeError, MemoryError) as error:
            return "failed", job.upload.public(_one_line(job.upload, error))
        except Exception as error:  # a bug: say so on the page, log it, keep serving
            log.exception("job %s failed", job.id)
            return "failed", f"internal error ({type(error).__name__}: {error}); the server goes on"
        return "done", None

    def _settings(self, job: Job, report: FileReport, seconds: float) -> list[tuple[str, str]]:
        """The settings used, as (label, value) rows for the result page."""
        guidance = report.guidance
        return [
            ("task", TASK_NAMES[job.request.task]),
            ("degradation", report.operator),
            ("conditioning", guidance.mode + (f", ξ' = {guidance.xi:g}" if "rg" in guidance.mode else "")),
            ("quality", job.request.quality),
            ("sampler", report.describe_sampler()),
            ("seed", str(job.options.seed)),
            ("checkpoint", self.checkpoint),
            ("device", self.device),
            ("windows", f"{report.windows_restored} of {report.windows} restored"),
            ("time", f"{seconds:.1f} s"),
            *(("note", note) for note in job.notes),
            *(
                [("clipped", f"{report.clipped_samples} samples to full scale")]
                if report.clipped_samples
                else []
            ),
        ]

    def _forget_old_results(self) -> None:
        """Keep the files of the newest ``keep`` done jobs only."""
        with self._lock:
            done = [j for j in self.jobs.values() if j.state == "done" and j.upload.folder.is_dir()]
        for job in sorted(done, key=lambda j: j.ended or 0)[: -self.keep or None]:
            shutil.rmtree(job.upload.folder, ignore_errors=True)

    def _forget_old_records(self) -> None:
        """Remember at most MAX_RECORDS ended jobs."""
        with self._lock:
            ended = [j for j in self.jobs.values() if j.state in ("cancelled", "failed", "done")]
            for job in sorted(ended, key=lambda j: j.ended or 0)[: max(0, len(self.jobs) - MAX_RECORDS)]:
                del self.jobs[job.id]
                shutil.rmtree(job.upload.folder, ignore_errors=True)


def _one_line(upload: Upload, error: Exception) -> str:
    """The error's message on one line; soundfile's own read errors (a truncated FLAC, say) named."""
    text = " ".join(str(error).split())
    if isinstance(error, sf.SoundFileError) and not isinstance(error, ValueError):
        return f"{upload.name}: cannot read it to the end ({text.rstrip('.')})"
    return text


def _display_name(name: str) -> str:
    """The last part of a browser's file name, printable and at most 120 characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable()).strip()
    return base[-120:] or "upload"


def _marks(operator: Operator, rate: int) -> tuple[list[list[float]], float | None]:
    """The gaps (seconds) and the lowpass cutoff (Hz) to mark on the spectrograms."""
    gaps = [[a / rate, b / rate] for a, b in gap_ranges(operator)]
    parts = operator.operators if isinstance(operator, Compose) else (operator,)
    return gaps, next((part.cutoff_hz for part in parts if isinstance(part, LowPass)), None)
