"""The checkpoint registry and resolver, against loopback stand-ins for https servers and the Hub."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from cqtrestore.checkpoints import (
    WEIGHTS_DIR,
    CheckpointEntry,
    CheckpointError,
    ChecksumError,
    Registry,
    default_checkpoint,
    get_entry,
    list_checkpoints,
    load_checkpoint,
    load_registry,
    parse_registry,
    resolve,
    verify,
)
from cqtrestore.download import UnverifiedDownloadWarning, parse_hf_spec, sha256_file, url_cache_path
from cqtrestore.unet import UNetConfig, build_unet, reference_parameter_names
from tests.conftest import REPO_ROOT

PAYLOAD = b"cqtrestore test payload " * 1000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
BUNDLED_SHA = sha256_file(WEIGHTS_DIR / "piano-small.safetensors")


# --- loopback servers --------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """/files/<name>: plain files; /short/<name>: Content-Length too large, then close; /hub/...: a Hub."""

    files: dict[str, bytes] = {}
    hub: dict[str, dict[str, bytes]] = {}  # repo_id -> filename -> content
    revisions = ("main", "v1")
    requests: list[tuple[str, str]] = []

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self.respond(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self.respond(body=True)

    def respond(self, body: bool) -> None:
        Handler.requests.append((self.command, self.path))
        kind, _, rest = self.path.lstrip("/").partition("/")
        rest = urllib.parse.unquote(rest)
        if kind == "hub":
            return self.respond_hub(rest, body)
        content = self.files.get(rest)
        if content is None:
            return self.send_status(404)
        self.send_response(200)
        self.send_header("Content-Length", str(len(content) + (1000 if kind == "short" else 0)))
        self.end_headers()
        if body:
            self.wfile.write(content)

    def respond_hub(self, path: str, body: bool) -> None:
        """``/{owner}/{repo}/resolve/{revision}/{filename}`` with the headers hf_hub_download reads."""
        owner, repo, resolve_, revision, filename = (path.split("/", 4) + [""] * 5)[:5]
        files = self.hub.get(f"{owner}/{repo}")
        if resolve_ != "resolve" or files is None:
            return self.send_status(401, {"X-Error-Code": "RepoNotFound"})
        commit = hashlib.sha1(revision.encode()).hexdigest()
        if revision not in self.revisions:
            return self.send_status(404, {"X-Error-Code": "RevisionNotFound"})
        if filename not in files:
            return self.send_status(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
        content = files[filename]
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if body:
            self.wfile.write(content)

    def send_status(self, code: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    """Base URL of a threaded HTTP server on 127.0.0.1."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test downloads into its own cache folder."""
    monkeypatch.setenv("CQTRESTORE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def gets(path: str) -> int:
    return sum(1 for method, p in Handler.requests if method == "GET" and p == path)


def entry(name: str = "test", **fields) -> CheckpointEntry:
    base = dict(source="bundled:piano-small.safetensors", sha256=BUNDLED_SHA, sample_rate=22050)
    base.update(preset=get_entry("piano-small").preset, licence="MIT", description="a test entry")
    return CheckpointEntry(name=name, **{**base, **fields})


def registry(*entries: CheckpointEntry) -> Registry:
    return Registry(entries[0].name, MappingProxyType({e.name: e for e in entries}))


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# --- registry ----------------------------------------------------------------------------------


def test_registry_lists_entries_and_default():
    entries = {e.name: e for e in list_checkpoints()}
    assert {"piano-small", "prior2-context", "prior2-context-train", "cqtdiff-paper", "debug"} <= set(entries)
    default = entries[default_checkpoint()]
    assert default.name == "prior2-context" and default.source.startswith("bundled:") and default.is_trained
    assert "(default)" in default.description and "(default)" not in entries["piano-small"].description
    paper = entries["cqtdiff-paper"]
    assert paper.format == "reference" and paper.preset == "paper" and paper.sample_rate == 22050
    assert paper.source.endswith("/CQTdiff/releases/download/weights_and_examples/cqt_weights.pt")
    assert not entries["debug"].is_trained and entries["piano-small"].is_trained
    assert get_entry("debug").source == "builtin:debug"


def test_unknown_name_lists_the_valid_ones():
    names = [e.name for e in list_checkpoints()]
    for call in (lambda: get_entry("piano-large"), lambda: resolve("piano-large")):
        with pytest.raises(CheckpointError, match="piano-large") as info:
            call()
        assert all(name in str(info.value) for name in names) and "\n" not in str(info.value)


GOOD = f"""default = "good"

[good]
source = "bundled:piano-small.safetensors"
sha256 = "{BUNDLED_SHA}"
sample_rate = 22050
preset = "small"
licence = "MIT"
description = "test entry"
"""


@pytest.mark.parametrize(
    "old, new, problem",
    [
        (BUNDLED_SHA, "abc", "64 lower-case hex"),
        (BUNDLED_SHA, "", "bundled files need their sha256"),
        ('"small"', '"huge"', "unknown preset 'huge'"),
        ("22050", '"22050"', "sample_rate must be a positive integer"),
        ("22050", "true", "sample_rate must be a positive integer"),
        ("22050", "0", "sample_rate must be a positive integer"),
        ('licence = "MIT"', 'licence = "MIT"\nformat = "onnx"', "format 'onnx'"),
        ('licence = "MIT"', 'licence = "MIT"\nsha265 = "x"', "unknown keys ['sha265']"),
        ('licence = "MIT"\n', "", "missing keys ['licence']"),
        ('licence = "MIT"', "licence = 3", "licence must be a string"),
        ('"test entry"', '"  "', "must not be empty"),
        ("bundled:piano-small", "bundled:../piano-small", "must name a file in cqtrestore/weights/"),
        ("bundled:piano-small.safetensors", "ftp://host/x.pt", "must start with one of"),
        ("bundled:piano-small.safetensors", "builtin:large", "builtin sources are debug"),
        ("bundled:piano-small.safetensors", "hf://owner/repo", "hf://OWNER/REPO/FILE"),
    ],
)
def test_bad_entries_are_rejected_naming_the_entry(old, new, problem):
    assert old in GOOD
    with pytest.raises(CheckpointError, match="checkpoint 'good'") as info:
        parse_registry(GOOD.replace(old, new, 1))
    assert problem in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, problem",
    [
        (GOOD.replace('default = "good"', 'default = "other"'), "must name one of its entries"),
        (GOOD.replace('default = "good"\n', ""), "must name one of its entries"),
        (GOOD.replace('default = "good"', 'default = "good"\nstray = 3'), "'stray' must be a [table]"),
        (GOOD.replace("[good]", "[Good]").replace('"good"', '"Good"'), "lower-case letters"),
        (GOOD + "[broken\n", "not valid TOML"),
    ],
)
def test_bad_registries_are_rejected(text, problem):
    with pytest.raises(CheckpointError) as info:
        parse_registry(text)
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_shipped_registry_parses_like_a_good_one():
    good = parse_registry(GOOD)
    assert good.default == "good" and good.entries["good"] == entry(
        "good", preset="small", description="test entry"
    )
    assert load_registry().entries == load_registry(REPO_ROOT / "checkpoints.toml").entries


# --- local files and bundled weights -----------------------------------------------------------


def test_local_paths_resolve_and_missing_ones_are_named(tmp_path):
    path = tmp_path / "mine.safetensors"
    path.write_bytes(b"x")
    assert resolve(str(path)) == path
    with pytest.raises(CheckpointError, match="checkpoint file not found: .*absent.safetensors"):
        resolve(str(tmp_path / "absent.safetensors"))
    with pytest.raises(CheckpointError, match="is a folder"):
        resolve(str(tmp_path))


def test_bundled_hash_mismatch_is_detected_with_both_hashes():
    wrong = "0" * 64
    reg = registry(entry(sha256=wrong))
    with pytest.raises(ChecksumError) as info:
        resolve("test", registry=reg)
    assert wrong in str(info.value) and BUNDLED_SHA in str(info.value)
    assert verify("test", registry=reg) == (False, wrong, BUNDLED_SHA)
    assert verify("piano-small") == (True, get_entry("piano-small").sha256, get_entry("piano-small").sha256)


def test_missing_bundled_file_is_an_error():
    reg = registry(entry(source="bundled:gone.safetensors"))
    with pytest.raises(CheckpointError, match="bundled file .*gone.safetensors is missing"):
        resolve("test", registry=reg)


def test_entry_must_hold_what_the_registry_says():
    real = get_entry("piano-small").preset
    other = "small" if real != "small" else "small-shallow"
    reg = registry(entry(preset=other))
    with pytest.raises(CheckpointError, match=f"holds preset '{real}' at 22050 Hz.*says '{other}'"):
        load_checkpoint("test", registry=reg)


def test_debug_builtin_is_seed_zero_and_never_downloaded(cache):
    net, info = load_checkpoint("debug")
    again, again_info = load_checkpoint("debug")
    assert again_info.sha256 == info.sha256  # the cached file is kept while it is right
    torch.manual_seed(0)
    fresh = build_unet("debug")
    for key, value in fresh.state_dict().items():
        assert torch.equal(net.state_dict()[key], value) and torch.equal(again.state_dict()[key], value)
    assert not info.is_trained and info.preset == "debug" and info.path.is_relative_to(cache)
    assert info.sha256 == sha256_file(info.path) and not net.training
    verified = verify("debug")
    assert verified[:2] == (False, "") and len(verified[2]) == 64


# --- https downloads ---------------------------------------------------------------------------


def test_download_is_verified_cached_and_reused(server, cache, capsys):
    Handler.files["good.pt"] = PAYLOAD
    reg = registry(entry(source=f"{server}/files/good.pt", sha256=PAYLOAD_SHA))
    path = resolve("test", progress=False, registry=reg)
    assert path.read_bytes() == PAYLOAD and path.is_relative_to(cache) and path.name == "good.pt"
    assert resolve("test", progress=False, registry=reg) == path and gets("/files/good.pt") == 1
    assert capsys.readouterr().err == ""
    path.write_bytes(b"corrupted")  # a cached copy that no longer matches is fetched again
    assert resolve("test", progress=False, registry=reg).read_bytes() == PAYLOAD
    assert gets("/files/good.pt") == 2 and files_in(cache) == [path]


def test_progress_bar_goes_to_stderr(server, capsys):
    Handler.files["shown.pt"] = PAYLOAD
    with pytest.warns(UnverifiedDownloadWarning):
        resolve(f"{server}/files/shown.pt", progress=True)
    captured = capsys.readouterr()
    assert "shown.pt" in captured.err and captured.out == ""


def test_download_hash_mismatch_leaves_nothing(server, cache):
    Handler.files["other.pt"] = b"not what the registry expects"
    reg = registry(entry(source=f"{server}/files/other.pt", sha256=PAYLOAD_SHA))
    with pytest.raises(ChecksumError) as info:
        resolve("test", progress=False, registry=reg)
    actual = hashlib.sha256(Handler.files["other.pt"]).hexdigest()
    assert PAYLOAD_SHA in str(info.value) and actual in str(info.value)
    assert files_in(cache) == []
    assert verify("test", progress=False, registry=reg) == (False, PAYLOAD_SHA, actual)


def test_download_without_hash_warns_with_the_computed_one(server):
    Handler.files["unhashed.pt"] = PAYLOAD
    reg = registry(entry(source=f"{server}/files/unhashed.pt", sha256=""))
    with pytest.warns(UnverifiedDownloadWarning, match=PAYLOAD_SHA):
        assert resolve("test", progress=False, registry=reg).read_bytes() == PAYLOAD
    assert verify("test", progress=False, registry=reg) == (False, "", PAYLOAD_SHA)


def test_truncated_download_leaves_nothing_in_the_cache(server, cache):
    Handler.files["cut.pt"] = PAYLOAD
    cut = f"cut short: got {len(PAYLOAD)} of {len(PAYLOAD) + 1000} bytes"
    with pytest.raises(CheckpointError, match=cut):
        resolve(f"{server}/short/cut.pt", progress=False)
    assert files_in(cache) == []


def test_http_errors_and_refused_connections_are_one_line(server, cache):
    with pytest.raises(CheckpointError, match="cannot download .*/files/absent.pt: HTTP 404"):
        resolve(f"{server}/files/absent.pt", progress=False)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = f"cannot download http://127.0.0.1:{port}/x.pt: connection refused"
    with pytest.raises(CheckpointError, match=refused):
        resolve(f"http://127.0.0.1:{port}/x.pt", progress=False)
    assert files_in(cache) == []


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40), st.text(max_size=10))
def test_cache_paths_stay_inside_the_cache(path, query):
    root = Path("/cache/root")
    url = "https://example.org/" + urllib.parse.quote(path) + ("?" + query if query else "")
    cached = url_cache_path(url, root)
    assert cached.is_relative_to(root / "example.org") and ".." not in cached.parts
    assert cached == url_cache_path(url, root)


def test_hf_specs_parse():
    assert parse_hf_spec("hf://owner/repo/w.safetensors") == ("owner/repo", "w.safetensors", None)
    assert parse_hf_spec("hf://owner/repo/sub/w.pt@v1.0") == ("owner/repo", "sub/w.pt", "v1.0")
    for bad in ("hf://owner/repo", "hf://owner", "hf:///repo/file", "hf://owner/repo/file@", "https://x/y/z"):
        with pytest.raises(CheckpointError, match="hf://OWNER/REPO/FILE"):
            parse_hf_spec(bad)


# --- the Hugging Face Hub (subprocesses: huggingface_hub reads its environment at import) ------

RESOLVE_SCRIPT = """
import json, sys
from cqtrestore.checkpoints import CheckpointError, resolve
out = {}
for spec in sys.argv[1:]:
    try:
        out[spec] = str(resolve(spec, progress=False))
    except CheckpointError as error:
        out[spec] = "error: " + str(error)
print(json.dumps(out))
"""


def resolve_in_subprocess(specs: list[str], env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    base.update(env, PYTHONPATH=str(REPO_ROOT), HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1")
    run = subprocess.run(
        [sys.executable, "-c", RESOLVE_SCRIPT, *specs], env=base, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def test_hub_downloads_then_works_offline_from_its_cache(server, tmp_path):
    Handler.hub["owner/repo"] = {"w.safetensors": PAYLOAD, "sub/v.pt": b"v" * 100}
    env = {"HF_ENDPOINT": f"{server}/hub", "HF_HOME": str(tmp_path / "hf")}
    specs = ["hf://owner/repo/w.safetensors", "hf://owner/repo/sub/v.pt@v1"]
    missing = ["hf://owner/repo/absent.pt", "hf://owner/repo/w.safetensors@nope", "hf://other/repo/w.pt"]
    online = resolve_in_subprocess(specs + missing, env)
    assert Path(online[specs[0]]).read_bytes() == PAYLOAD
    assert Path(online[specs[1]]).read_bytes() == b"v" * 100
    assert Path(online[specs[0]]).is_relative_to(tmp_path / "hf" / "hub")
    assert online[missing[0]] == f"error: {missing[0]}: file not found in the repository"
    assert online[missing[1]] == f"error: {missing[1]}: revision not found in the repository"
    assert online[missing[2]].startswith(f"error: {missing[2]}: repository not found")

    served = len(Handler.requests)
    offline = resolve_in_subprocess([*specs, "hf://owner/repo/never.pt"], {**env, "HF_HUB_OFFLINE": "1"})
    assert [offline[spec] for spec in specs] == [online[spec] for spec in specs]
    assert offline["hf://owner/repo/never.pt"] == (
        "error: hf://owner/repo/never.pt is not in the Hugging Face cache and HF_HUB_OFFLINE is set"
    )
    assert len(Handler.requests) == served  # offline means no request at all


# --- formats -----------------------------------------------------------------------------------


def tiny_reference_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Save a small network in the paper's trainer format; return the state it should load as."""
    torch.manual_seed(1)
    config = UNetConfig(channels=(4, 4), dilated_layers=2, noise_features=4, noise_mlp=(8,), freq_features=2)
    state = build_unet(config).state_dict()
    names = reference_parameter_names(state)
    ema = [state[name] * 0.5 for name in names]
    model = {f"module.{key}": value for key, value in state.items()}  # as saved from DataParallel
    torch.save({"step": 7, "model": model, "ema_weights": ema}, path)
    return {**state, **dict(zip(names, ema, strict=True))}


def test_reference_format_loads_through_the_converter(tmp_path, server):
    expected = tiny_reference_checkpoint(tmp_path / "ref.pt")
    net, info = load_checkpoint(str(tmp_path / "ref.pt"))
    assert info.format == "reference" and info.preset == "custom" and info.sigma_data == 0.057
    assert info.sample_rate == 22050 and info.is_trained and info.sha256 == sha256_file(tmp_path / "ref.pt")
    assert net.state_dict().keys() == expected.keys()
    assert all(torch.equal(net.state_dict()[key], value) for key, value in expected.items())

    Handler.files["ref.pt"] = (tmp_path / "ref.pt").read_bytes()
    fields = dict(source=f"{server}/files/ref.pt", sha256=info.sha256, preset="paper")
    reg = registry(entry("ref", format="reference", **fields), entry("wrong", **fields))
    _, named = load_checkpoint("ref", progress=False, registry=reg)
    assert named.name == "ref" and named.preset == "paper" and named.format == "reference"
    with pytest.raises(CheckpointError, match="is a PyTorch checkpoint file, not safetensors"):
        load_checkpoint("wrong", progress=False, registry=reg)


def test_official_reference_checkpoint_loads(official):
    from safetensors.torch import load_file

    net, info = load_checkpoint(str(official / "unet_tiny_reference_checkpoint.pt"))
    published = load_file(official / "unet_tiny_state.safetensors")
    assert info.format == "reference" and net.config.channels == (4, 8, 8, 16, 16, 16)
    assert all(torch.equal(net.state_dict()[key], value) for key, value in published.items())


def test_corrupt_and_foreign_files_are_refused(tmp_path):
    (tmp_path / "noise.bin").write_bytes(bytes(range(1, 256)) * 16)
    with pytest.raises(CheckpointError, match="neither a safetensors nor a PyTorch checkpoint"):
        load_checkpoint(str(tmp_path / "noise.bin"))
    content = (WEIGHTS_DIR / "piano-small.safetensors").read_bytes()
    (tmp_path / "half.safetensors").write_bytes(content[: len(content) // 2])
    with pytest.raises(CheckpointError, match="half.safetensors"):
        load_checkpoint(str(tmp_path / "half.safetensors"))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not a cqtrestore checkpoint"):
        load_checkpoint(str(tmp_path / "foreign.safetensors"))
    torch.save({"model": {}, "payload": UNetConfig()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused to unpickle") as info:
        load_checkpoint(str(tmp_path / "evil.pt"))
    assert "\n" not in str(info.value)


def test_safetensors_whose_header_length_starts_with_pickles_byte_is_still_safetensors(tmp_path):
    # The first 8 bytes are the header length; a low byte of 0x80 is also pickle's first byte.
    from cqtrestore.checkpoints import sniff_format

    path = tmp_path / "w.safetensors"
    for pad in range(256):
        save_file({"w": torch.zeros(2)}, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert sniff_format(path) == "cqtrestore"
