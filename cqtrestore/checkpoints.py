"""Checkpoints: the registry (checkpoints.toml), one resolver for every kind of spec, and weights I/O.

A spec is a registry name, a local path, ``hf://OWNER/REPO/FILE[@REV]`` or an http(s) URL. Our own
weights are safetensors with the network config in the metadata (self-describing); the paper's
``.pt`` files ("reference" format) are converted on load and never unpickled beyond plain tensors.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from cqtrestore.diffusion import SIGMA_DATA, Denoiser, check_spectrum
from cqtrestore.download import (  # noqa: F401 (CheckpointError and atomic_write are re-exported)
    HF_PREFIX,
    CheckpointError,
    ChecksumError,
    atomic_write,
    cache_dir,
    download_url,
    hf_download,
    parse_hf_spec,
    sha256_file,
)
from cqtrestore.unet import PRESETS, UNetConfig, build_unet, load_reference_checkpoint

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMAT = "cqtrestore-unet-1"
FORMATS = ("cqtrestore", "reference")  # safetensors written by us | the paper's PyTorch checkpoint
FORMAT_NAMES = {"cqtrestore": "safetensors", "reference": "PyTorch checkpoint"}
SCHEMES = ("bundled:", "builtin:", HF_PREFIX, "https://", "http://")
BUILTINS = {"debug": "debug"}  # builtin:<name> -> network preset, seed-0 weights, never downloaded
REGISTRY_PATH = Path(__file__).with_name("checkpoints.toml")  # a symlink to the top-level file
WEIGHTS_DIR = Path(__file__).with_name("weights")  # where bundled:<file> points
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIELDS = ("source", "sha256", "sample_rate", "preset", "licence", "description", "format")

# --- registry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointEntry:
    """One named checkpoint of the registry; validated on construction."""

    name: str
    source: str
    sha256: str
    sample_rate: int
    preset: str
    licence: str
    description: str
    format: str = "cqtrestore"

    def __post_init__(self) -> None:
        problem = next(self._problems(), None)
        if problem:
            raise CheckpointError(f"checkpoint {self.name!r} in checkpoints.toml: {problem}")

    def _problems(self) -> Iterator[str]:
        if not _NAME.fullmatch(self.name):
            yield "names use lower-case letters, digits, '.', '_' and '-'"
        if not self.source.startswith(SCHEMES):
            yield f"source {self.source!r} must start with one of {', '.join(SCHEMES)}"
        if self.sha256 and not _SHA256.fullmatch(self.sha256):
            yield "sha256 must be 64 lower-case hex digits (or empty when unknown)"
        if self.format not in FORMATS:
            yield f"format {self.format!r} must be one of {', '.join(FORMATS)}"
        if type(self.sample_rate) is not int or self.sample_rate < 1:  # a bool is no sample rate
            yield f"sample_rate must be a positive integer, got {self.sample_rate!r}"
        if self.preset not in PRESETS:
            yield f"unknown preset {self.preset!r}; choose one of {', '.join(sorted(PRESETS))}"
        if not (self.licence.strip() and self.description.strip()):
            yield "licence and description must not be empty"
        yield from self._source_problems()

    def _source_problems(self) -> Iterator[str]:
        kind, _, rest = self.source.partition(":")
        if kind == "bundled" and (not rest or rest.startswith(".") or re.search(r"[/\\]", rest)):
            yield f"bundled source {self.source!r} must name a file in cqtrestore/weights/"
        if kind == "bundled" and not self.sha256:
            yield "bundled files need their sha256"
        if kind == "builtin" and (rest not in BUILTINS or self.sha256 or self.format != "cqtrestore"):
            yield f"builtin sources are {', '.join(BUILTINS)}, with an empty sha256 and format cqtrestore"
        if kind == "hf":
            try:
                parse_hf_spec(self.source)
            except CheckpointError as error:
                yield str(error)

    @property
    def is_trained(self) -> bool:
        """False for builtin (random, untrained) networks."""
        return not self.source.startswith("builtin:")


@dataclass(frozen=True)
class Registry:
    """The named checkpoints (in file order) and the default name."""

    default: str
    entries: MappingProxyType[str, CheckpointEntry]


def parse_registry(text: str) -> Registry:
    """Parse and validate the registry's TOML text (a top-level ``default`` and one table per entry)."""
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CheckpointError(f"checkpoints.toml is not valid TOML: {error}") from None
    default = tables.pop("default", None)
    entries = {name: _entry(name, table) for name, table in tables.items()}
    if not isinstance(default, str) or default not in entries:
        raise CheckpointError(f"checkpoints.toml: default = {default!r} must name one of its entries")
    return Registry(default, MappingProxyType(entries))


def _entry(name: str, table: object) -> CheckpointEntry:
    """One ``[name]`` table -> ``CheckpointEntry``; unknown or missing keys are errors."""
    if not isinstance(table, dict):
        raise CheckpointError(f"checkpoints.toml: {name!r} must be a [table] (only 'default' is a plain key)")
    unknown = sorted(set(table) - set(_FIELDS))
    missing = [key for key in _FIELDS if key not in table and key not in ("sha256", "format")]
    if unknown or missing:
        problem = f"unknown keys {unknown}" if unknown else f"missing keys {missing}"
        raise CheckpointError(f"checkpoint {name!r} in checkpoints.toml: {problem}")
    strings = [key for key in _FIELDS if key != "sample_rate" and not isinstance(table.get(key, ""), str)]
    if strings:
        raise CheckpointError(f"checkpoint {name!r} in checkpoints.toml: {strings[0]} must be a string")
    return CheckpointEntry(name=name, **{"sha256": "", **table})


def load_registry(path: str | Path | None = None) -> Registry:
    """The registry shipped with the package (or the one at ``path``)."""
    path = Path(path or REGISTRY_PATH)
    try:
        return parse_registry(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CheckpointError(f"cannot read the checkpoint registry {path}: {error.strerror}") from None


def list_checkpoints(registry: Registry | None = None) -> list[CheckpointEntry]:
    """Every registered checkpoint, in file order."""
    return list((registry or load_registry()).entries.values())


def default_checkpoint(registry: Registry | None = None) -> str:
    """The name of the default checkpoint."""
    return (registry or load_registry()).default


def get_entry(name: str, registry: Registry | None = None) -> CheckpointEntry:
    """The entry called ``name``; unknown names list the valid ones."""
    registry = registry or load_registry()
    if name not in registry.entries:
        raise CheckpointError(f"unknown checkpoint {name!r}; choose one of {', '.join(registry.entries)}")
    return registry.entries[name]


# --- resolver ----------------------------------------------------------------------------------


def resolve(spec: str | os.PathLike, *, progress: bool = True, registry: Registry | None = None) -> Path:
    """A local file for a registry name, a local path, ``hf://...`` or an http(s) URL.

    Registry entries with a sha256 are verified every time (cached or fresh): ``ChecksumError``.
    Names win over same-named local files (write ``./name`` for those).
    """
    spec, registry = os.fspath(spec), registry or load_registry()
    entry = registry.entries.get(spec)
    if entry is None:
        return _resolve_unnamed(spec, progress, registry)
    path = _fetch_entry(entry, progress)
    if entry.sha256 and (actual := sha256_file(path)) != entry.sha256:
        raise ChecksumError(f"checkpoint {entry.name!r} ({path})", entry.sha256, actual)
    return path


def _resolve_unnamed(spec: str, progress: bool, registry: Registry) -> Path:
    """URLs, hf:// and local paths; anything else is an unknown name."""
    if spec.startswith(("https://", "http://")):
        return download_url(spec, progress=progress)
    if spec.startswith(HF_PREFIX):
        return hf_download(spec, progress=progress)
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise CheckpointError(f"{spec} is a folder, not a checkpoint file")
    if re.search(r"[/\\]", spec) or path.suffix in (".safetensors", ".pt", ".pth", ".ckpt"):
        raise CheckpointError(f"checkpoint file not found: {spec}")
    raise CheckpointError(
        f"unknown checkpoint {spec!r}: not a file, and not one of {', '.join(registry.entries)}"
    )


def _fetch_entry(entry: CheckpointEntry, progress: bool) -> Path:
    """The entry's file, downloaded or built if needed (not verified here)."""
    kind, _, rest = entry.source.partition(":")
    if kind == "bundled":
        path = WEIGHTS_DIR / rest
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint {entry.name!r}: bundled file {path} is missing (broken install?)"
            )
        return path
    if kind == "builtin":
        return _materialise_builtin(rest)
    if kind == "hf":
        return hf_download(entry.source, progress=progress)
    return download_url(entry.source, sha256=entry.sha256, progress=progress)


def _materialise_builtin(name: str) -> Path:
    """The builtin network's seed-0 weights as a file in the cache, rewritten only when they differ."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_unet(BUILTINS[name])
    path = cache_dir() / "builtin" / f"{name}.safetensors"
    if not _holds(path, net):
        save_weights(path, net, metadata={"preset": BUILTINS[name], "seed": "0", "trained": "false"})
    return path


def _holds(path: Path, net: nn.Module) -> bool:
    """Whether ``path`` already holds exactly this network (config and tensors)."""
    try:
        if read_metadata(path).get("config") != json.dumps(net.config.to_dict()):
            return False
        saved, ours = load_file(str(path)), net.state_dict()
    except (CheckpointError, SafetensorError, OSError):
        return False
    return saved.keys() == ours.keys() and all(torch.equal(saved[key], ours[key]) for key in ours)


def verify(name: str, *, progress: bool = True, registry: Registry | None = None) -> tuple[bool, str, str]:
    """(ok, expected, actual) sha256 of a registered checkpoint, fetching it if needed.

    ``ok`` is False when the registry records no hash. A cached download that does not match is
    fetched again before it is judged.
    """
    entry = get_entry(name, registry)
    try:
        path = resolve(name, progress=progress, registry=registry)
    except ChecksumError as error:
        return False, error.expected, error.actual
    if entry.sha256:
        return True, entry.sha256, entry.sha256  # resolve has just checked it
    return False, "", sha256_file(path)


# --- loading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a loaded network came from and how to use it."""

    name: str
    path: Path
    sample_rate: int
    sigma_data: float
    preset: str  # a PRESETS name, or "custom"
    format: str  # one of FORMATS
    sha256: str
    is_trained: bool
    data_spectrum: tuple[float, ...] | None = None  # spectral preconditioning's P(f), 0 Hz to Nyquist

    def denoiser(self, net: nn.Module) -> Denoiser:
        """D(x, σ) around the raw network F, preconditioned as the checkpoint was trained."""
        return Denoiser(net, sigma_data=self.sigma_data, spectrum=self.data_spectrum)


def sniff_format(path: str | Path) -> str | None:
    """What a file holds by its first bytes: "cqtrestore" (safetensors), "reference" (torch) or None."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    # safetensors first: its 8-byte header length may itself start with 0x80, pickle's first byte.
    if len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") < Path(path).stat().st_size:
        return "cqtrestore"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):  # torch zip or legacy pickle
        return "reference"
    return None


def load_checkpoint(
    spec: str | os.PathLike,
    device: torch.device | str = "cpu",
    *,
    progress: bool = True,
    registry: Registry | None = None,
) -> tuple[nn.Module, CheckpointInfo]:
    """The raw network F (eval mode, float32, on ``device``) and its ``CheckpointInfo`` for any spec."""
    spec, registry = os.fspath(spec), registry or load_registry()
    entry = registry.entries.get(spec)
    path = resolve(spec, progress=progress, registry=registry)
    found = sniff_format(path)
    expected = entry.format if entry else found
    if found is None:
        raise CheckpointError(f"{path}: neither a safetensors nor a PyTorch checkpoint (corrupt file?)")
    if found != expected:
        raise CheckpointError(
            f"checkpoint {spec!r}: {path} is a {FORMAT_NAMES[found]} file, not {FORMAT_NAMES[expected]}"
        )
    if found == "reference":
        net, meta = _load_reference(path, entry.sample_rate if entry else 22050), {}
    else:
        net, meta = load_weights(path)
    _check_against_entry(net, meta, entry, path)
    info = CheckpointInfo(
        name=entry.name if entry else spec,
        path=path,
        sample_rate=net.config.sample_rate,
        sigma_data=float(meta.get("sigma_data", SIGMA_DATA)),
        preset=entry.preset if entry else meta.get("preset") or preset_of(net.config),
        format=found,
        sha256=(entry.sha256 if entry else "") or sha256_file(path),
        is_trained=entry.is_trained if entry else meta.get("trained") != "false",
        data_spectrum=_spectrum_of(meta, path),
    )
    return net.to(device).eval(), info


def _spectrum_of(meta: dict[str, str], path: Path) -> tuple[float, ...] | None:
    """The data spectrum a checkpoint's metadata holds (spectral preconditioning), if any."""
    if "data_spectrum" not in meta:
        return None
    try:
        return tuple(check_spectrum(json.loads(meta["data_spectrum"])).tolist())
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid data spectrum in metadata ({_line(error)})") from None


def preset_of(config: UNetConfig) -> str:
    """The name of the preset with exactly this config, else "custom"."""
    return next((name for name, preset in PRESETS.items() if preset == config), "custom")


def _load_reference(path: Path, sample_rate: int) -> nn.Module:
    """The paper's checkpoint format through the converter (tensors only, EMA weights)."""
    try:
        return load_reference_checkpoint(path, sample_rate=sample_rate)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to unpickle: it holds more than plain tensors ({_line(error)})"
        ) from None
    except (RuntimeError, ValueError, KeyError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path}: not a usable reference checkpoint ({_line(error)})") from None


def _check_against_entry(net: nn.Module, meta: dict, entry: CheckpointEntry | None, path: Path) -> None:
    """A registered file must hold what the registry says (preset, sample rate)."""
    if entry is None:
        return
    rate, preset = net.config.sample_rate, meta.get("preset", entry.preset)
    if rate != entry.sample_rate or preset != entry.preset:
        raise CheckpointError(
            f"checkpoint {entry.name!r}: {path} holds preset {preset!r} at {rate} Hz, "
            f"but checkpoints.toml says {entry.preset!r} at {entry.sample_rate} Hz"
        )


def _line(error: BaseException) -> str:
    """The first line of an exception's message."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# --- safetensors I/O ---------------------------------------------------------------------------


def save_weights(
    path: str | Path,
    net: nn.Module,
    sigma_data: float = SIGMA_DATA,
    dtype: torch.dtype | None = None,
    metadata: dict[str, str] | None = None,
    spectrum: Sequence[float] | torch.Tensor | None = None,
) -> None:
    """Write the network's state as safetensors with its ``UNetConfig``, σ_data and, for spectral
    preconditioning, the data spectrum in the metadata."""
    state = {key: value.detach().contiguous().cpu() for key, value in net.state_dict().items()}
    if dtype is not None:
        state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
    meta = {"format": FORMAT, "config": json.dumps(net.config.to_dict()), "sigma_data": repr(sigma_data)}
    if spectrum is not None:
        meta["data_spectrum"] = json.dumps([float(f"{p:.6g}") for p in check_spectrum(spectrum).tolist()])
    meta.update(metadata or {})
    atomic_write(Path(path), lambda tmp: save_file(state, str(tmp), metadata=meta))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata block of a safetensors file (no tensors are read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({_line(error)})") from error


def load_weights(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, str]]:
    """Build the network described by a checkpoint's metadata and load its weights (float32)."""
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: not a cqtrestore checkpoint (metadata format {meta.get('format')!r})")
    try:
        config = UNetConfig.from_dict(json.loads(meta["config"]))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid network config in metadata ({_line(error)})") from error
    net = build_unet(config)
    try:
        state = {key: value.float() for key, value in load_file(str(path)).items()}
        net.load_state_dict(state)
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CheckpointError(f"{path}: weights do not load ({_line(error)})") from error
    return net.to(device).eval(), meta
