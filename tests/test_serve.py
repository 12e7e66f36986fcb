"""`cqtrestore serve`'s JSON API through Starlette's test client, with the tiny `debug` prior (fast)."""

from __future__ import annotations

import io
import socket
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

pytest.importorskip("starlette", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("httpx", reason="Starlette's test client needs httpx (pip install -e '.[test]')")

from starlette.testclient import TestClient  # noqa: E402

from cqtrestore import plot, serve  # noqa: E402
from cqtrestore.cli import app as cli_app  # noqa: E402
from cqtrestore.operators import LowPass  # noqa: E402
from cqtrestore.serve_settings import Limits  # noqa: E402

RATE = 22050


def tone_wav(
    seconds: float = 1.5, rate: int = RATE, subtype: str = "PCM_16", cutoff: float | None = 3000
) -> bytes:
    """Harmonic notes (lowpassed at ``cutoff``) as WAV bytes."""
    t = np.arange(round(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 30) if 220 * k < rate / 2)
    x = 0.2 * x * np.exp(-t) / np.abs(x).max()
    if cutoff is not None:
        x = LowPass(cutoff, rate)(torch.from_numpy(x[None]))[0].numpy()
    buffer = io.BytesIO()
    sf.write(buffer, x.astype(np.float32), rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module", autouse=True)
def _pytest_temp_first(tmp_path_factory):
    """pytest's own temporary folder, made before a running app points tempfile into its folder."""
    tmp_path_factory.getbasetemp()


@pytest.fixture(scope="module")
def web_app():
    return serve.create_app(serve.ServeSettings(checkpoint="debug", steps=2))


@pytest.fixture
def client(web_app):
    with TestClient(web_app) as client:
        yield client


def upload(client: TestClient, data: bytes, name: str = "take one.wav"):
    from urllib.parse import quote

    return client.post("/api/uploads", content=data, headers={"X-Filename": quote(name)})


def wait(client: TestClient, job: str, seconds: float = 60.0) -> tuple[dict, list[dict]]:
    """Poll until the job ends; the last status and every status seen."""
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job}").json()
        seen.append(status)
        if status["state"] not in ("queued", "running"):
            return status, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not end in {seconds} s: {seen[-1]}")


def run_job(
    client: TestClient, data: bytes, name: str = "take one.wav", **settings
) -> tuple[dict, list[dict]]:
    reply = upload(client, data, name)
    assert reply.status_code == 201, reply.text
    created = client.post("/api/jobs", json={"upload": reply.json()["upload"], **settings})
    assert created.status_code == 202, created.text
    return wait(client, created.json()["job"])


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def read_png(data: bytes) -> np.ndarray:
    """The RGB pixels of a PNG from plot.write_png (8-bit truecolour, filter 0 on every row)."""
    assert data.startswith(plot.PNG_SIGNATURE)
    width, height = np.frombuffer(data[16:24], ">u4")
    chunks, position = b"", 8
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            chunks += data[position + 8 : position + 8 + length]
        position += 12 + length
    rows = np.frombuffer(zlib.decompress(chunks), np.uint8).reshape(height, 1 + width * 3)
    assert not rows[:, 0].any()
    return rows[:, 1:].reshape(height, width, 3)


def test_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    assert client.get("/static/app.js").status_code == 200
    config = client.get("/api/config").json()
    assert config["checkpoint"] == "debug" and config["steps"] == 2 and "balanced" in config["qualities"]
    assert any("UNTRAINED" in note for note in config["notes"])  # the page warns about the debug prior


def test_bwe_job_from_upload_to_download(client, web_app):
    data = tone_wav()
    reply = upload(client, data)
    assert reply.status_code == 201
    described = reply.json()
    assert described["name"] == "take one.wav" and described["duration"] == pytest.approx(1.5)
    assert described["sample_rate"] == RATE and len(described["waveform"]) == 1000
    low, high = np.array(described["waveform"]).T
    peak = np.abs(sf.read(io.BytesIO(data))[0]).max()
    assert np.all(low <= high) and max(high.max(), -low.min()) == pytest.approx(peak, abs=1e-3)
    job = client.post("/api/jobs", json={"upload": described["upload"], "task": "bwe", "cutoff": "3k"}).json()
    assert job["state"] in ("queued", "running")
    status, seen = wait(client, job["job"])
    assert status["state"] == "done", status
    assert status["progress"]["done"] == status["progress"]["total"] == 1
    assert status["progress"]["evaluations"] >= 2  # two sampler steps, counted as they ran
    result = status["result"]
    settings = dict(map(tuple, result["settings"]))
    assert settings["task"] == "bandwidth extension" and settings["degradation"].startswith("lowpass 3000 Hz")
    assert settings["checkpoint"] == "debug" and "2 steps" in settings["sampler"]
    assert result["cutoff_hz"] == 3000 and result["gaps"] == []

    download = client.get(result["download"])
    assert download.status_code == 200
    assert "take%20one.restored.wav" in download.headers["content-disposition"]
    restored, rate = sf.read(io.BytesIO(download.content))
    original, _ = sf.read(io.BytesIO(data))
    assert rate == RATE and restored.shape == original.shape
    assert sf.info(io.BytesIO(download.content)).subtype == "PCM_16"  # the input's format is kept
    spectrum_in, spectrum_out = np.fft.rfft(original), np.fft.rfft(restored)
    band = np.fft.rfftfreq(original.size, 1 / RATE) < 2700
    assert np.linalg.norm((spectrum_out - spectrum_in)[band]) < 0.05 * np.linalg.norm(spectrum_in[band])

    before = client.get(result["before"])
    assert np.array_equal(
        sf.read(io.BytesIO(before.content), dtype="int16")[0], sf.read(io.BytesIO(data), dtype="int16")[0]
    )
    assert sf.read(io.BytesIO(client.get(result["after"]).content))[0].shape == original.shape
    for name in ("spectrogram_before", "spectrogram_after"):
        pixels = read_png(client.get(result[name]).content)
        assert pixels.shape == (200, 1000, 3)
        row = plot.frequency_row(3000, RATE, 200)
        assert (pixels[row] == plot.CUTOFF_COLOUR).all(axis=1).sum() > 100  # the cutoff is marked

    root = web_app.state.root
    assert not [p for p in files_under(root) if p.name.startswith("input")]  # the upload went with its job
    assert tempfile.gettempdir() == str(root / "tmp") and not files_under(root / "tmp")  # scratch inside
    ranged = client.get(result["after"], headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and len(ranged.content) == 100  # players can seek


def test_files_are_removed_when_the_server_stops(web_app):
    with TestClient(web_app) as client:
        status, _ = run_job(client, tone_wav(1.0), task="bwe", cutoff="3k")
        assert status["state"] == "done"
        root = web_app.state.root
        assert files_under(root)
    assert not root.exists() and tempfile.gettempdir() != str(root / "tmp")


def test_inpainting_with_marked_gaps_keeps_the_rest_exactly(client):
    data = tone_wav(2.0, cutoff=None)
    status, _ = run_job(client, data, task="inpaint", gaps=["0.6:0.8", "1.2:1.3"])
    assert status["state"] == "done", status
    result = status["result"]
    assert result["gaps"] == [pytest.approx([0.6, 0.8]), pytest.approx([1.2, 1.3])]
    pixels = read_png(client.get(result["spectrogram_after"]).content)
    column = round(0.7 / 2.0 * 1000)
    assert (pixels[:5, column] == plot.REGION_COLOUR).all()  # the gap's bar on top
    restored = sf.read(io.BytesIO(client.get(result["download"]).content), dtype="int16")[0]
    original = sf.read(io.BytesIO(data), dtype="int16")[0]
    keep = np.ones(original.size, bool)
    keep[round(0.6 * RATE) : round(0.8 * RATE)] = keep[round(1.2 * RATE) : round(1.3 * RATE)] = False
    assert np.array_equal(restored[keep], original[keep]) and np.any(restored[~keep] != original[~keep])


def test_auto_detectors_and_composite(client):
    clipped = np.clip(sf.read(io.BytesIO(tone_wav(1.5, subtype="FLOAT", cutoff=None)))[0], -0.08, 0.08)
    buffer = io.BytesIO()
    sf.write(buffer, clipped.astype(np.float32), RATE, subtype="FLOAT", format="WAV")
    status, _ = run_job(client, buffer.getvalue(), task="declip", threshold="auto")
    assert status["state"] == "done", status
    assert any(note.startswith("auto threshold") for note in status["notes"])
    status, _ = run_job(
        client, buffer.getvalue(), "both.wav", task="composite", threshold="0.08", cutoff="4k"
    )
    assert status["state"] == "done", status
    assert " then " in dict(map(tuple, status["result"]["settings"]))["degradation"]


def cli_error(tmp_path: Path, data: bytes, name: str) -> str:
    """The command line's one-line error for the same file, with its path shortened to the name."""
    path = tmp_path / name
    path.write_bytes(data)
    result = CliRunner().invoke(cli_app, ["bwe", str(path), "--cutoff", "3k", "--checkpoint", "debug"])
    assert result.exit_code == 2
    return " ".join(result.output.split()).removeprefix("error: ").replace(str(path), name)


def nan_wav() -> bytes:
    samples = np.zeros(RATE, np.float32)
    samples[RATE // 2] = np.nan
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, subtype="FLOAT", format="WAV")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [b"this is not audio at all" * 20, b"", tone_wav()[:30], nan_wav()],
    ids=["not-audio", "empty", "truncated-header", "nan"],
)
def test_bad_uploads_get_the_command_lines_error_and_the_server_goes_on(client, web_app, tmp_path, data):
    reply = upload(client, data, "take.wav")
    assert reply.status_code == 422
    message = reply.json()["error"]
    assert message == cli_error(tmp_path, data, "take.wav")
    assert "\n" not in message and "Traceback" not in message and str(web_app.state.root) not in message
    assert files_under(web_app.state.root / "jobs") == []
    assert upload(client, tone_wav(0.5)).status_code == 201  # still serving


def test_a_truncated_flac_gets_one_line_too(client, web_app):
    buffer = io.BytesIO()
    sf.write(buffer, sf.read(io.BytesIO(tone_wav(3.0, cutoff=None)))[0], RATE, format="FLAC")
    reply = upload(client, buffer.getvalue()[: len(buffer.getvalue()) // 2], "cut.flac")
    assert reply.status_code == 422 and reply.json()["error"].startswith(
        "cut.flac: cannot read it to the end ("
    )
    assert "\n" not in reply.json()["error"] and files_under(web_app.state.root / "jobs") == []


def test_size_and_duration_limits():
    small = serve.create_app(
        serve.ServeSettings(checkpoint="debug", limits=Limits(max_bytes=10_000, max_seconds=1.0))
    )
    with TestClient(small) as client:
        too_big = upload(client, tone_wav(1.0), "big.wav")
        assert (
            too_big.status_code == 413
            and too_big.json()["error"] == "big.wav: larger than this server's 0.01 MB limit (--max-mb)"
        )
        chunked = client.post(
            "/api/uploads", content=iter([tone_wav(1.0)]), headers={"X-Filename": "big.wav"}
        )
        assert chunked.status_code == 413  # no Content-Length: counted as it arrives
        long = upload(client, tone_wav(1.2, rate=4000, cutoff=None), "long.wav")
        assert long.status_code == 422 and long.json()["error"].startswith("long.wav: ")
        assert "long; this server restores files up to" in long.json()["error"]
        assert files_under(small.state.root / "jobs") == []


def test_bad_job_settings_get_one_line_errors(client):
    described = upload(client, tone_wav()).json()
    post = lambda **body: client.post("/api/jobs", json={"upload": described["upload"], **body})  # noqa: E731
    cases = {
        "unknown task 'restyle'": post(task="restyle"),
        "invalid frequency 'abc'": post(task="bwe", cutoff="abc"),
        "no gaps": post(task="inpaint"),
        "ends after the file": post(task="inpaint", gaps=["1.2:1.9"]),
        "unknown quality 'great'": post(task="bwe", cutoff="3k", quality="great"),
        "steps must be a whole number >= 1": post(task="bwe", cutoff="3k", steps=0),
        "nothing to restore": post(task="composite"),
    }
    for expected, reply in cases.items():
        assert reply.status_code == 422 and expected in reply.json()["error"], (expected, reply.text)
    plain = client.post("/api/jobs", content=b'{"task": "bwe"}', headers={"Content-Type": "text/plain"})
    assert plain.status_code == 422 and "JSON" in plain.json()["error"]
    assert post(task="bwe", cutoff="3k").status_code == 202
    gone = post(task="bwe", cutoff="3k")
    assert gone.status_code == 410 and "upload the file again" in gone.json()["error"]
    assert client.post("/api/uploads", content=tone_wav()).status_code == 400  # no X-Filename


@pytest.mark.parametrize(
    "name", ["../../escaped.wav", "..\\..\\escaped.wav", "/tmp/escaped.wav", "sub/dir/../escaped.wav\x00.txt"]
)
def test_names_from_the_client_are_never_paths(client, web_app, tmp_path, name):
    status, _ = run_job(client, tone_wav(1.0), name, task="bwe", cutoff="3k")
    assert status["state"] == "done"
    assert "/" not in status["name"] and "\\" not in status["name"] and "\x00" not in status["name"]
    download = client.get(status["result"]["download"])
    disposition = download.headers["content-disposition"]
    assert (
        "escaped" in disposition
        and "/" not in disposition
        and "%2F" not in disposition
        and ".." not in disposition
    )
    root = web_app.state.root
    for where in (root.parent, Path("/tmp"), tmp_path, Path.cwd()):
        assert not (where / "escaped.wav").exists() and not (where / "escaped.restored.wav").exists()
    assert all(path.parent.parent == root / "jobs" for path in files_under(root / "jobs"))


def test_ids_and_file_names_in_addresses_are_only_looked_up(client):
    status, _ = run_job(client, tone_wav(1.0), task="bwe", cutoff="3k")
    job = status["job"]
    for address in (
        f"/api/jobs/{job}/files/..%2Frestored.wav",
        f"/api/jobs/{job}/files/restored.wav",
        f"/api/jobs/{job}/files/%2Fetc%2Fpasswd",
        "/api/jobs/..%2F..%2Fetc%2Fpasswd",
        "/api/jobs/../../etc/passwd",
        "/static/..%2Fserve.py",
        "/static/../serve.py",
    ):
        reply = client.get(address)
        assert reply.status_code == 404 and b"cqtrestore" not in reply.content, address


def test_cancel_a_running_and_a_queued_job(client, web_app):
    first = upload(client, tone_wav(1.0)).json()["upload"]
    second = upload(client, tone_wav(1.0)).json()["upload"]
    slow = {"task": "bwe", "cutoff": "3k", "steps": 5000}
    running = client.post("/api/jobs", json={"upload": first, **slow}).json()["job"]
    queued = client.post("/api/jobs", json={"upload": second, **slow}).json()["job"]
    deadline = time.monotonic() + 30
    while client.get(f"/api/jobs/{running}").json()["progress"]["evaluations"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    waiting = client.get(f"/api/jobs/{queued}").json()
    assert waiting["state"] == "queued" and waiting["position"] == 1  # one job at a time
    assert client.post(f"/api/jobs/{queued}/cancel", json={}).json()["state"] == "cancelled"
    began = time.monotonic()
    client.post(f"/api/jobs/{running}/cancel", json={})
    status, _ = wait(client, running, 10)
    assert status["state"] == "cancelled" and time.monotonic() - began < 5
    assert status["progress"]["evaluations"] < 1000
    assert files_under(web_app.state.root / "jobs") == []
    assert client.post(f"/api/jobs/{running}/cancel", content=b"{}").status_code == 415  # JSON only
    assert client.post("/api/jobs/0123/cancel", json={}).status_code == 404
    status, _ = run_job(client, tone_wav(1.0), task="bwe", cutoff="3k")  # the worker goes on
    assert status["state"] == "done"
    assert client.delete(f"/api/jobs/{status['job']}").status_code == 204
    assert files_under(web_app.state.root / "jobs") == []


def test_only_loopback_hosts_unless_allowed():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        serve.check_host(host, allow_remote=False)
    for host in ("0.0.0.0", "192.168.1.10", "example.org", "::"):
        with pytest.raises(ValueError, match="--allow-remote"):
            serve.check_host(host, allow_remote=False)
        serve.check_host(host, allow_remote=True)
    guarded = serve.create_app(serve.ServeSettings(checkpoint="debug"), trusted_hosts=serve.LOOPBACK_NAMES)
    with TestClient(guarded, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/api/config").status_code == 200
        assert client.get("/api/config", headers={"Host": "[::1]:8000"}).status_code == 200
        assert client.get("/api/config", headers={"Host": "evil.example:8000"}).status_code == 400


def test_serve_command(monkeypatch):
    served = []
    monkeypatch.setattr(serve, "run", lambda app, sock: served.append(sock.getsockname()) or sock.close())
    result = CliRunner().invoke(cli_app, ["serve", "--port", "0", "--checkpoint", "debug"])
    assert result.exit_code == 0, result.output
    assert f"http://127.0.0.1:{served[0][1]}/" in result.output
    refused = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--checkpoint", "debug"])
    assert refused.exit_code == 2 and "not a loopback address" in refused.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = CliRunner().invoke(
            cli_app, ["serve", "--port", str(busy.getsockname()[1]), "--checkpoint", "debug"]
        )
    assert taken.exit_code == 2 and "choose another --port" in taken.output
    unknown = CliRunner().invoke(cli_app, ["serve", "--checkpoint", "no-such-prior"])
    assert (
        unknown.exit_code == 2 and "no-such-prior" in unknown.output and len(unknown.output.splitlines()) == 1
    )
    assert CliRunner().invoke(cli_app, ["serve", "--steps", "0", "--checkpoint", "debug"]).exit_code == 2
    assert len(served) == 1


def test_serve_without_the_web_extra_says_how_to_install_it(monkeypatch):
    import sys

    import cqtrestore

    for name in [m for m in sys.modules if m.split(".")[0] in ("starlette", "uvicorn")]:
        monkeypatch.setitem(sys.modules, name, None)  # None: "import starlette..." raises ImportError
    monkeypatch.setitem(sys.modules, "starlette", None)
    monkeypatch.delitem(sys.modules, "cqtrestore.serve")
    monkeypatch.delattr(cqtrestore, "serve")
    result = CliRunner().invoke(cli_app, ["serve"])
    assert result.exit_code == 2 and "pip install 'cqtrestore[web]'" in result.output


def test_hiss_removal_and_a_blind_cutoff_from_the_page(client):
    rng = np.random.default_rng(0)
    samples = sf.read(io.BytesIO(tone_wav(2.0, subtype="FLOAT", cutoff=None)))[0]
    noisy = samples + 10 ** (-45 / 20) * rng.standard_normal(samples.shape)
    buffer = io.BytesIO()
    sf.write(buffer, noisy.astype(np.float32), RATE, subtype="FLOAT", format="WAV")
    status, _ = run_job(client, buffer.getvalue(), "hiss.wav", task="denoise", hiss="auto")
    assert status["state"] == "done", status
    assert any(note.startswith("estimated noise at") for note in status["notes"]), status["notes"]
    assert dict(map(tuple, status["result"]["settings"]))["task"] == "hiss removal"
    status, _ = run_job(client, buffer.getvalue(), "old.wav", task="bwe", cutoff="blind")
    assert status["state"] == "done", status
    assert "blind lowpass (estimated" in dict(map(tuple, status["result"]["settings"]))["degradation"]
    reply = upload(client, buffer.getvalue(), "bad.wav")
    bad = client.post("/api/jobs", json={"upload": reply.json()["upload"], "task": "denoise", "hiss": "loud"})
    assert bad.status_code == 422 and "--hiss takes auto or a level" in bad.json()["error"]
