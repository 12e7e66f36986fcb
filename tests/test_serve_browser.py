"""The page in a real browser: `cqtrestore serve` in its own process, headless Chromium driven by Playwright.

Uses the system's Chromium (Debian's `chromium`, or $CQTRESTORE_CHROMIUM); Playwright never downloads a
browser here. Set CQTRESTORE_SCREENSHOT=FILE.png to also save a picture of the finished page.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("starlette", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("uvicorn", reason="the web extra is not installed (pip install -e '.[web]')")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install playwright)"
)

CHROMIUM = (
    os.environ.get("CQTRESTORE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (apt-get install chromium, or set CQTRESTORE_CHROMIUM)"
)
# As root in a container, with no network: no sandbox, and none of Chromium's background connections.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RATE = 22050


def piano_like(seconds: float) -> np.ndarray:
    """Decaying notes with harmonics, mono float32."""
    t = np.arange(round(seconds * RATE)) / RATE
    out = np.zeros_like(t)
    for onset, f0 in zip(np.arange(0, seconds, 0.5), (220, 277, 330, 440), strict=False):
        env = np.where(t >= onset, np.exp(-(t - onset) * 3), 0.0)
        out += sum(env * np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 10))
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture
def server(tmp_path):
    """`cqtrestore serve --port 0 --checkpoint debug --steps 2` as a child process; its address. When it
    stops it must exit cleanly and leave its temporary folder ($TMPDIR) empty."""
    command = [
        sys.executable,
        "-m",
        "cqtrestore",
        "serve",
        "--port",
        "0",
        "--checkpoint",
        "debug",
        "--steps",
        "2",
    ]
    scratch = tmp_path / "server-tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            found = re.search(r"http://127\.0\.0\.1:\d+/", line)
            if found:
                break
        else:
            raise AssertionError("cqtrestore serve did not print its address:\n" + "".join(lines))
        yield found.group(0)
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down, the app removes its folder
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(lines) + process.stdout.read()
    assert list(scratch.iterdir()) == []  # uploads, results and scratch files all removed


def test_restore_a_file_in_the_page_and_download_it(server, tmp_path):
    source = tmp_path / "short take.wav"
    sf.write(source, piano_like(2.0), RATE, subtype="PCM_16")
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are not samples\n" * 10)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900}, accept_downloads=True)
            page.set_default_timeout(60_000)
            page.goto(server)
            assert list((tmp_path / "server-tmp").glob("cqtrestore-serve-*"))  # its files go in there
            page.wait_for_selector("body[data-ready=true]")
            assert "UNTRAINED" in page.inner_text("#warning")

            page.set_input_files("#file", str(not_audio))  # a bad file: the CLI's one-line error
            page.wait_for_selector("#error:not([hidden])")
            assert re.fullmatch(
                r"error: notes\.wav: not an audio file soundfile can read \(.+\)", page.inner_text("#error")
            )

            page.set_input_files("#file", str(source))
            page.wait_for_selector("#settings:not([hidden])")
            assert page.is_hidden("#error")
            assert "short take.wav: 0:02 (2.00 s), 22050 Hz, 1 channel" in page.inner_text("#file-desc")

            page.check('input[name="task"][value="inpaint"]')
            box = page.locator("#wave").bounding_box()
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + 0.40 * box["width"], y)
            page.mouse.down()
            page.mouse.move(box["x"] + 0.48 * box["width"], y, steps=4)
            page.mouse.move(box["x"] + 0.55 * box["width"], y, steps=4)
            page.mouse.up()
            start, end = map(float, re.findall(r"\d+\.\d+", page.inner_text("#gap-list")))
            assert start == pytest.approx(0.8, abs=0.01) and end == pytest.approx(1.1, abs=0.01)

            page.click("#start")
            page.wait_for_selector("#result:not([hidden])")
            page.wait_for_function(
                "['before', 'after'].every(id => document.getElementById(id).readyState >= 1)"
                " && ['spec-before', 'spec-after'].every(id => document.getElementById(id).naturalWidth > 0)"
            )
            duration = page.evaluate("document.getElementById('after').duration")
            assert duration == pytest.approx(2.0, abs=0.01)
            page.evaluate("document.getElementById('before').currentTime = 0.9")
            page.click("#switch")  # the same moment, in the other player
            assert page.evaluate("document.getElementById('after').currentTime") == pytest.approx(
                0.9, abs=0.01
            )
            assert page.inner_text("#switch") == "Switch to before"
            assert page.evaluate("document.getElementById('spec-after').naturalWidth") == 1000
            settings = page.inner_text("#used")
            assert "inpainting" in settings and "dpmpp2m, 2 steps" in settings and "debug" in settings

            if os.environ.get("CQTRESTORE_SCREENSHOT"):
                page.screenshot(path=os.environ["CQTRESTORE_SCREENSHOT"], full_page=True)
            with page.expect_download() as download_info:
                page.click("#download")
            download = download_info.value
            assert download.suggested_filename == "short take.restored.wav"
            saved = tmp_path / "downloaded.wav"
            download.save_as(saved)
        finally:
            browser.close()
    restored, rate = sf.read(saved, dtype="int16")
    original, _ = sf.read(source, dtype="int16")
    assert rate == RATE and restored.shape == original.shape and sf.info(saved).subtype == "PCM_16"
    gap = np.zeros(original.size, bool)
    gap[round(start * RATE) : round(end * RATE)] = True
    assert np.array_equal(restored[~gap], original[~gap]) and np.any(restored[gap] != original[gap])
