"""Our own weights on disk: safetensors with the network config in the metadata (self-describing)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from cqtrestore.diffusion import SIGMA_DATA
from cqtrestore.unet import UNetConfig, build_unet

FORMAT = "cqtrestore-unet-1"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (corrupt, wrong format, wrong shapes)."""


def atomic_write(path: Path, write) -> None:
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


def save_weights(
    path: str | Path,
    net: nn.Module,
    sigma_data: float = SIGMA_DATA,
    dtype: torch.dtype | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write the network's state as safetensors with its ``UNetConfig`` and σ_data in the metadata."""
    state = {key: value.detach().contiguous().cpu() for key, value in net.state_dict().items()}
    if dtype is not None:
        state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
    meta = {"format": FORMAT, "config": json.dumps(net.config.to_dict()), "sigma_data": repr(sigma_data)}
    meta.update(metadata or {})
    atomic_write(Path(path), lambda tmp: save_file(state, str(tmp), metadata=meta))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata block of a safetensors file (no tensors are read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({error})") from error


def load_weights(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, str]]:
    """Build the network described by a checkpoint's metadata and load its weights (float32)."""
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: not a cqtrestore checkpoint (metadata format {meta.get('format')!r})")
    try:
        config = UNetConfig.from_dict(json.loads(meta["config"]))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid network config in metadata ({error})") from error
    net = build_unet(config)
    state = {key: value.float() for key, value in load_file(str(path)).items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: weights do not match the config ({str(error).splitlines()[0]})"
        ) from error
    return net.to(device).eval(), meta
