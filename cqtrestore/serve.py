"""``cqtrestore serve``: a local web page that restores a file and plays it before and after.

Starlette routes over ``serve_jobs.JobQueue``, served by uvicorn; the page is plain HTML, JS and CSS
in ``cqtrestore/web`` (no build step). Needs the ``web`` extra: ``pip install "cqtrestore[web]"``.

    GET  /                          the page            GET  /api/config       limits, presets, prior
    POST /api/uploads               raw file body, its name URL-encoded in the X-Filename header
    POST /api/jobs                  {"upload", "task", "cutoff", "threshold", "gaps", "quality", ...}
    GET  /api/jobs/ID               state, progress (windows done, ETA), error, result
    POST /api/jobs/ID/cancel        DELETE /api/jobs/ID (cancel and delete its files)
    GET  /api/jobs/ID/files/NAME    before.wav, after.wav, before.png, after.png
    GET  /api/jobs/ID/download      the restored file, in the input's format
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cqtrestore import __version__, tasks
from cqtrestore.checkpoints import default_checkpoint
from cqtrestore.quality import QUALITIES
from cqtrestore.serve_jobs import JobQueue
from cqtrestore.serve_settings import JobRequest, Limits

WEB = Path(__file__).with_name("web")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServeSettings:
    """How the server restores: the prior, steps overriding the presets', device, limits, results kept."""

    checkpoint: str | None = None
    steps: int | None = None
    device: str = "auto"
    limits: Limits = field(default_factory=Limits)
    keep: int = 4

    def __post_init__(self) -> None:
        if self.steps is not None and not 1 <= self.steps <= 10_000:
            raise ValueError(f"--steps must be an integer from 1 to 10000, got {self.steps}")
        if self.keep < 1:
            raise ValueError(f"results kept must be >= 1, got {self.keep}")


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback address unless ``allow_remote``: the page has no login."""
    if not (allow_remote or is_loopback(host)):
        raise ValueError(
            f"--host {host} is not a loopback address, and the page has no login: anyone who reaches it "
            "could use it; pass --allow-remote to serve it there anyway"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(
    settings: ServeSettings = ServeSettings(),
    trusted_hosts: Sequence[str] | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> Starlette:
    """The app, with the prior loaded (CheckpointError/ValueError here, before serving). Its files live in
    a temporary folder made when it starts and removed when it stops. ``trusted_hosts``: the only Host
    header names answered (None: any; ``serve`` passes the loopback names, against DNS rebinding)."""
    device = tasks.pick_device(settings.device)
    notes: list[str] = []
    restorer = tasks.load_restorer(settings.checkpoint, device, notes.append)
    for note in notes:
        say(note)
    checkpoint = settings.checkpoint or default_checkpoint()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        root = Path(tempfile.mkdtemp(prefix="cqtrestore-serve-"))
        (root / "jobs").mkdir()
        (root / "tmp").mkdir()
        previous, tempfile.tempdir = tempfile.tempdir, str(root / "tmp")  # the pipeline's scratch files too
        app.state.jobs = JobQueue(
            root / "jobs", restorer, checkpoint, settings.limits, settings.steps, settings.keep
        )
        app.state.root = root
        try:
            yield
        finally:
            await run_in_threadpool(app.state.jobs.close)
            tempfile.tempdir = previous
            shutil.rmtree(root, ignore_errors=True)

    config = {
        "version": __version__,
        "checkpoint": checkpoint,
        "steps": settings.steps,
        "qualities": list(QUALITIES),
        "max_bytes": settings.limits.max_bytes,
        "max_seconds": settings.limits.max_seconds,
        "notes": [_plain(note) for note in notes],
    }
    routes = [
        Route("/", lambda request: FileResponse(WEB / "index.html")),
        Route("/api/config", lambda request: JSONResponse(config)),
        Route("/api/uploads", upload, methods=["POST"]),
        Route("/api/jobs", create_job, methods=["POST"]),
        Route("/api/jobs/{job}", job_status, methods=["GET"]),
        Route("/api/jobs/{job}", discard_job, methods=["DELETE"]),
        Route("/api/jobs/{job}/cancel", cancel_job, methods=["POST"]),
        Route("/api/jobs/{job}/files/{name}", job_file),
        Route("/api/jobs/{job}/download", download),
        Mount("/static", StaticFiles(directory=WEB)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    if trusted_hosts is not None:
        app.add_middleware(_TrustedHosts, hosts=tuple(trusted_hosts))
    return app


def _error(message: str, status: int, **extra: object) -> JSONResponse:
    """A one-line error for the page to show."""
    return JSONResponse({"error": message, **extra}, status_code=status)


def _plain(message: str) -> str:
    """A note without rich's markup."""
    return message.replace("[bold yellow]", "").replace("[/]", "")


async def upload(request: Request) -> Response:
    """Stream the body into a new upload folder (size-limited), then check it as the CLI checks input."""
    jobs: JobQueue = request.app.state.jobs
    if "x-filename" not in request.headers:
        return _error("send the file's name, URL-encoded, in the X-Filename header", 400)
    name = unquote(request.headers["x-filename"])
    limit = jobs.limits.max_bytes
    entry = jobs.new_upload(name)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        jobs.drop_upload(entry.id)
        return _error(jobs.too_large(entry), 413)
    size = 0
    try:
        with entry.path.open("wb") as sink:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    break
                sink.write(chunk)
    except ClientDisconnect:
        jobs.drop_upload(entry.id)
        return _error("the upload was interrupted", 400)
    if size > limit:
        jobs.drop_upload(entry.id)
        return _error(jobs.too_large(entry), 413)
    try:
        described = await run_in_threadpool(jobs.accept_upload, entry)
    except ValueError as error:
        return _error(str(error), 422)
    return JSONResponse(described, status_code=201)


async def create_job(request: Request) -> Response:
    """Check the settings and queue the job (202 with its status)."""
    jobs: JobQueue = request.app.state.jobs
    try:
        data = await _json(request)
        job_request = JobRequest.from_json(data)
        job = await run_in_threadpool(jobs.submit, str(data.get("upload", "")), job_request)
    except KeyError:
        return _error("that upload is gone (each upload serves one job): upload the file again", 410)
    except ValueError as error:
        return _error(str(error), 422)
    return JSONResponse(jobs.status(job.id), status_code=202)


async def _json(request: Request) -> dict:
    """The JSON object body; only with Content-Type application/json (so other sites cannot post it)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ValueError("send the job as JSON (Content-Type: application/json)")
    try:
        data = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"the job is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError("a job is a JSON object with 'upload' and 'task'")
    return data


async def job_status(request: Request) -> Response:
    """State, progress and result of a job."""
    try:
        return JSONResponse(request.app.state.jobs.status(request.path_params["job"]))
    except KeyError:
        return _error("no such job", 404)


async def cancel_job(request: Request) -> Response:
    """Cancel a queued or running job (needs a JSON body, as job creation does)."""
    try:
        await _json(request)
        request.app.state.jobs.cancel(request.path_params["job"])
    except ValueError as error:
        return _error(str(error), 415)
    except KeyError:
        return _error("no such job", 404)
    return JSONResponse(request.app.state.jobs.status(request.path_params["job"]))


async def discard_job(request: Request) -> Response:
    """Cancel a job if it runs and delete its files."""
    try:
        request.app.state.jobs.discard(request.path_params["job"])
    except KeyError:
        return _error("no such job", 404)
    return Response(status_code=204)


async def job_file(request: Request) -> Response:
    """A preview or spectrogram of a done job (names from a fixed list only)."""
    try:
        path = request.app.state.jobs.file(request.path_params["job"], request.path_params["name"])
    except KeyError:
        return _error("no such file", 404)
    return FileResponse(path, headers={"Cache-Control": "no-store"})


async def download(request: Request) -> Response:
    """The restored file, named IN_STEM.restored.EXT after the uploaded one."""
    jobs: JobQueue = request.app.state.jobs
    job_id = request.path_params["job"]
    try:
        path = jobs.file(job_id, "download")
        name = jobs.jobs[job_id].download_name()
    except KeyError:
        return _error("no such file", 404)
    return FileResponse(path, filename=name, headers={"Cache-Control": "no-store"})


class _TrustedHosts:
    """Answer only requests whose Host header names one of ``hosts`` (IPv6 in brackets understood)."""

    def __init__(self, app: Callable, hosts: tuple[str, ...]) -> None:
        self.app, self.hosts = app, {host.lower().strip("[]") for host in hosts}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket"):
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            host = header[1:].split("]")[0] if header.startswith("[") else header.split(":")[0]
            if host not in self.hosts:
                response = PlainTextResponse(f"unknown host {header!r}: use {sorted(self.hosts)[0]}", 400)
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port) (port 0: a free one); ValueError saying why not."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except socket.gaierror as error:
        raise ValueError(f"--host {host}: unknown address ({error.strerror})") from None
    except OSError as error:
        raise ValueError(
            f"cannot listen on {host}:{port} ({error.strerror}): choose another --port"
        ) from None


def url_of(sock: socket.socket) -> str:
    """The page's address for a listening socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run(app: Starlette, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C (then the jobs are cancelled and the files removed)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
