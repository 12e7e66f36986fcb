"""Fetching checkpoint files: https downloads (streamed, hashed, atomic, cached) and hf:// via the Hub.

Imports nothing model-side (no torch), so it can be used and tested on its own.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cqtrestore import __version__

CHUNK = 1 << 20
TIMEOUT_S = 60.0
HF_PREFIX = "hf://"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, fetched, verified or used; the message is one line."""


class ChecksumError(CheckpointError):
    """A file whose sha256 is not the expected one."""

    def __init__(self, label: str, expected: str, actual: str) -> None:
        super().__init__(f"{label}: sha256 mismatch: expected {expected}, got {actual}")
        self.expected, self.actual = expected, actual


class UnverifiedDownloadWarning(UserWarning):
    """A download that had no expected sha256 to be checked against."""


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``, so readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Download cache: ``$CQTRESTORE_CACHE``, else ``~/.cache/cqtrestore`` (read at each call)."""
    return Path(os.environ.get("CQTRESTORE_CACHE") or Path.home() / ".cache" / "cqtrestore").expanduser()


def url_cache_path(url: str, root: Path | None = None) -> Path:
    """Where a URL's file lives in the cache: ``root/<host>/<path>``, every part made filesystem-safe."""
    parts = urllib.parse.urlsplit(url)
    segments = [_UNSAFE.sub("_", s) for s in parts.path.split("/") if s not in ("", ".", "..")]
    segments = segments or ["index"]
    if parts.query:
        segments[-1] += "-" + hashlib.sha256(parts.query.encode()).hexdigest()[:8]
    return (root or cache_dir()).joinpath(_UNSAFE.sub("_", parts.netloc) or "_", *segments)


def download_url(url: str, *, sha256: str = "", progress: bool = True) -> Path:
    """A local copy of an http(s) URL: reused from the cache, else streamed there atomically.

    With ``sha256`` a cached copy is reused only when it matches, and a fresh download that does not
    match is discarded (``ChecksumError``). Without it, a fresh download warns with the hash it computed.
    """
    path = url_cache_path(url)
    if path.is_file() and (not sha256 or sha256_file(path) == sha256):
        return path
    actual = ""

    def fetch(tmp: Path) -> None:
        nonlocal actual
        actual = _stream(url, tmp, progress)
        if sha256 and actual != sha256:
            raise ChecksumError(url, sha256, actual)

    atomic_write(path, fetch)
    if not sha256:
        warnings.warn(
            f"{url}: no sha256 to verify against; the downloaded file's sha256 is {actual}",
            UnverifiedDownloadWarning,
            stacklevel=2,
        )
    return path


def _stream(url: str, out: Path, progress: bool) -> str:
    """Write the body of ``url`` to ``out``; the sha256 of what was written."""
    request = urllib.request.Request(url, headers={"User-Agent": f"cqtrestore/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(out, "wb") as handle:
            expected = int(response.headers.get("Content-Length") or -1)
            digest, received = hashlib.sha256(), 0
            with _progress_bar(Path(urllib.parse.urlsplit(url).path).name, expected, progress) as advance:
                while chunk := response.read(CHUNK):
                    handle.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    advance(len(chunk))
    except urllib.error.HTTPError as error:
        raise CheckpointError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise CheckpointError(f"cannot download {url}: {_reason(error.reason)}") from None
    except (OSError, ValueError, http.client.HTTPException) as error:  # reset, timeout, IncompleteRead
        raise CheckpointError(f"cannot download {url}: {_reason(error)}") from None
    if 0 <= expected != received:
        raise CheckpointError(f"download of {url} was cut short: got {received} of {expected} bytes")
    return digest.hexdigest()


def _reason(reason: object) -> str:
    """A short, one-line reason for a network failure."""
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return text.splitlines()[0]


@contextmanager
def _progress_bar(label: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich download bar on stderr (``total`` < 0: unknown size); yields ``advance(n_bytes)``."""
    if not enabled:
        yield lambda size: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total if total >= 0 else None)
        yield lambda size: bar.advance(task, size)


# --- Hugging Face Hub --------------------------------------------------------------------------


def parse_hf_spec(spec: str) -> tuple[str, str, str | None]:
    """``hf://OWNER/REPO/FILE[@REV]`` -> (repo_id, filename, revision or None)."""
    body, at, revision = spec.removeprefix(HF_PREFIX).partition("@")
    owner, _, rest = body.partition("/")
    repo, _, filename = rest.partition("/")
    if not spec.startswith(HF_PREFIX) or not (owner and repo and filename) or (at and not revision):
        raise CheckpointError(f"{spec!r} is not of the form hf://OWNER/REPO/FILE[@REVISION]")
    return f"{owner}/{repo}", filename, revision or None


def hf_download(spec: str, *, progress: bool = True) -> Path:
    """A local copy of ``hf://OWNER/REPO/FILE[@REV]`` through ``huggingface_hub`` and its cache.

    ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` apply as for any Hub download.
    """
    repo_id, filename, revision = parse_hf_spec(spec)
    import huggingface_hub
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    was_enabled = not huggingface_hub.utils.are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision))
    except Exception as error:  # the hub's errors, mapped to one clear line
        raise _hf_error(spec, error) from None
    finally:
        if was_enabled and not progress:
            enable_progress_bars()


def _hf_error(spec: str, error: Exception) -> CheckpointError:
    """A one-line ``CheckpointError`` for what ``hf_hub_download`` raised."""
    from huggingface_hub import constants
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, LocalEntryNotFoundError):
        if constants.HF_HUB_OFFLINE:
            return CheckpointError(f"{spec} is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
        return CheckpointError(f"cannot reach the Hugging Face Hub for {spec} and it is not in the cache")
    if isinstance(error, RepositoryNotFoundError):
        return CheckpointError(f"{spec}: repository not found (or private: log in with 'hf auth login')")
    if isinstance(error, RevisionNotFoundError):
        return CheckpointError(f"{spec}: revision not found in the repository")
    if isinstance(error, EntryNotFoundError):
        return CheckpointError(f"{spec}: file not found in the repository")
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return CheckpointError(f"cannot download {spec}: HTTP {error.response.status_code}")
    return CheckpointError(f"cannot download {spec}: {_reason(error)}")
