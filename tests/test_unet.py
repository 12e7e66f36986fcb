"""The network F: reference layout and checkpoints, reference forward passes, any length, FLOPs, gradients."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode

from cqtrestore.unet import (
    PRESETS,
    TimeResample,
    UNetConfig,
    build_unet,
    config_from_state_dict,
    dilated_residual,
    flops_per_window,
    load_reference_checkpoint,
    reference_parameter_names,
    sinc_resample_kernel,
)
from tests.conftest import relative_error

SIGMA_DATA = 0.057  # the reference's preconditioning constant


def reference_state(manifest: dict, fixed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fixtures README's deterministic weights: scale * sin(0.37 i + k) for the k-th state-dict entry."""
    state = {}
    for k, entry in enumerate(manifest["state_dict"]):
        if not entry["trainable"]:
            state[entry["key"]] = fixed[entry["key"]]
            continue
        shape = entry["shape"]
        n = math.prod(shape)
        scale = 1 / math.sqrt(n / shape[0]) if len(shape) >= 2 else 0.1
        values = scale * np.sin(0.37 * np.arange(n, dtype=np.float64) + k)
        state[entry["key"]] = torch.from_numpy(values.reshape(shape).astype(np.float32))
    return state


def denoise(network, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(F, D): the raw output given (c_in x, c_noise) and the preconditioned denoiser output (EDM)."""
    sigma = sigma[:, None]
    norm = torch.sqrt(sigma**2 + SIGMA_DATA**2)
    c_skip, c_out, c_in = SIGMA_DATA**2 / norm**2, sigma * SIGMA_DATA / norm, 1 / norm
    with torch.no_grad():
        raw = network(c_in * x, torch.log(sigma) / 4)
    return raw, c_skip * x + c_out * raw


def torchaudio_resample(x: torch.Tensor, kernel: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """torchaudio's Resample semantics, written out: pad (w, w + orig), strided conv1d, interleave, crop."""
    half_width = (kernel.shape[-1] - orig) // 2
    rows = F.pad(x.reshape(-1, 1, x.shape[-1]), (half_width, half_width + orig))
    out = F.conv1d(rows, kernel, stride=orig).transpose(1, 2).reshape(rows.shape[0], -1)
    return out[:, : math.ceil(new * x.shape[-1] / orig)].reshape(*x.shape[:-1], -1)


def test_paper_layout_matches_manifest(official):
    manifest = json.loads((official / "unet_paper_manifest.json").read_text())
    network = build_unet("paper")
    state = network.state_dict()
    assert [(key, list(value.shape)) for key, value in state.items()] == [
        (entry["key"], entry["shape"]) for entry in manifest["state_dict"]
    ]
    trainable = {name for name, p in network.named_parameters() if p.requires_grad}
    assert trainable == {entry["key"] for entry in manifest["state_dict"] if entry["trainable"]}
    assert sum(p.numel() for p in network.parameters() if p.requires_grad) == manifest["trainable_parameters"]
    assert reference_parameter_names(state) == manifest["parameters_order"]
    total = sum(state[name].numel() for name in manifest["parameters_order"])
    assert total == manifest["total_parameters"] == 15_487_232
    assert network.config.channels == tuple(manifest["config"]["channels"][:6])


def test_fixed_tensors_are_rebuilt_exactly(official):
    fixed = load_file(official / "unet_paper_fixed_tensors.safetensors")
    network = build_unet("paper")
    for key, value in fixed.items():
        if key.endswith("resample.kernel"):  # deterministic: a fresh network has the same kernels
            assert torch.equal(network.state_dict()[key], value), key
    assert torch.equal(sinc_resample_kernel(2, 1), fixed["downs.0.1.resample.kernel"])
    assert torch.equal(sinc_resample_kernel(1, 2), fixed["ups.0.1.resample.kernel"])
    table = type(network.freq_encoding).table(fixed["freq_encoding.RFF_freq"], 450)
    # float32 sin/cos: vectorised kernels differ by an ulp between CPUs (3 of 28,800 values on AVX2 here)
    torch.testing.assert_close(table, fixed["freq_encoding.embeddings"], rtol=0, atol=2.4e-7)


@pytest.mark.parametrize("frames", [704, 89, 22, 5])
def test_resampling_matches_torchaudio_semantics(frames):
    x = torch.randn(2, 3, 7, frames, generator=torch.Generator().manual_seed(frames))
    x = x.contiguous(memory_format=torch.channels_last)
    down, up = TimeResample(up=False), TimeResample(up=True)
    expected_down = torchaudio_resample(x, down.resample.kernel, 2, 1)
    expected_up = torchaudio_resample(x, up.resample.kernel, 1, 2)
    assert expected_down.shape[-1] == (frames + 1) // 2 and expected_up.shape[-1] == 2 * frames
    torch.testing.assert_close(down(x), expected_down, rtol=0, atol=1e-6)
    torch.testing.assert_close(up(x), expected_up, rtol=0, atol=1e-6)


def test_tiny_reference_checkpoint_forward(official):
    network = load_reference_checkpoint(official / "unet_tiny_reference_checkpoint.pt")
    assert network.config.channels == (4, 8, 8, 16, 16, 16) and network.config.dilated_layers == 8
    ref = np.load(official / "unet_tiny_forward.npz")
    raw, denoised = denoise(network, torch.from_numpy(ref["x"]), torch.from_numpy(ref["sigma"]))
    assert relative_error(raw, ref["F"]) < 1e-4
    assert relative_error(denoised, ref["D"]) < 1e-4


def test_checkpoint_ema_and_raw_weights_are_told_apart(official, tmp_path):
    path = official / "unet_tiny_reference_checkpoint.pt"
    ema_state = state_of(load_reference_checkpoint(path))
    raw_state = state_of(load_reference_checkpoint(path, ema=False))
    published = load_file(official / "unet_tiny_state.safetensors")
    assert ema_state.keys() == published.keys()
    for key, value in published.items():
        assert torch.equal(ema_state[key], value), key
        trained = "RFF" not in key and "embeddings" not in key and "resample" not in key
        expected = value * 0.9 if trained else value
        torch.testing.assert_close(raw_state[key], expected, rtol=1e-6, atol=0)
    # Checkpoints from older torchaudio lack the resampler kernels; they are rebuilt.
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["model"] = {k: v for k, v in checkpoint["model"].items() if not k.endswith("resample.kernel")}
    torch.save(checkpoint, tmp_path / "old.pt")
    for key, value in state_of(load_reference_checkpoint(tmp_path / "old.pt")).items():
        assert torch.equal(value, ema_state[key]), key


def state_of(network) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in network.state_dict().items()}


def test_checkpoint_loader_refuses_pickled_objects(tmp_path):
    torch.save({"model": {}, "ema_weights": [], "payload": UNetConfig()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights.only|unpickl"):
        load_reference_checkpoint(tmp_path / "evil.pt")


@pytest.mark.slow  # one batch-2 forward of the paper network: ~12 s on 2 free cores (runs by default)
def test_paper_forward_with_deterministic_weights(official):
    manifest = json.loads((official / "unet_paper_manifest.json").read_text())
    fixed = load_file(official / "unet_paper_fixed_tensors.safetensors")
    network = build_unet("paper").eval()
    network.load_state_dict(reference_state(manifest, fixed))
    ref = np.load(official / "unet_paper_forward.npz")
    raw, denoised = denoise(network, torch.from_numpy(ref["x"]), torch.from_numpy(ref["sigma"]))
    assert relative_error(raw, ref["F"]) < 1e-4
    assert relative_error(denoised, ref["D"]) < 1e-4


def test_config_is_read_off_a_state_dict():
    for name in ("paper", "small-shallow"):
        expected = PRESETS[name]
        state = build_unet(name).state_dict()
        assert config_from_state_dict(state, dilation_growth=expected.dilation_growth) == expected


@pytest.mark.parametrize("length", [10000, 2**14, 150])  # 150 is below min_length: padded inside
def test_debug_network_any_length_and_batch_independent(length):
    torch.manual_seed(0)
    network = randomised(build_unet("debug"))
    x = 0.1 * torch.randn(2, length)
    c_noise = torch.tensor([[-1.0], [0.3]])
    with torch.no_grad():
        both = network(x, c_noise)
        first = network(x[:1], c_noise[:1])
    assert both.shape == x.shape and torch.isfinite(both).all()
    assert relative_error(both[:1], first) < 1e-5
    assert relative_error(both[0], both[1]) > 0.1  # the items (and noise levels) differ


def randomised(network):
    """Random non-zero weights everywhere (the decoder's output convolutions start at zero)."""
    with torch.no_grad():
        for parameter in network.parameters():
            fan_in = parameter[0].numel() if parameter.dim() > 1 else 1
            parameter.copy_(torch.randn_like(parameter) / math.sqrt(fan_in))
    return network


def test_compact_presets_cost_a_fifteenth_of_the_paper():
    paper = flops_per_window("paper")
    assert 0.9e12 < paper < 1.1e12
    for name in ("small", "small-shallow"):
        assert flops_per_window(name) <= paper / 15, name
        assert max(PRESETS[name].dilations) >= 64  # still sees several octaves per block


def test_flop_count_matches_the_flop_counter():
    network = build_unet("debug")

    def inplace_addmm(self_shape, a_shape, b_shape, out_shape=None, **kwargs) -> int:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]

    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: inplace_addmm}) as counter:
        with torch.no_grad():
            network(torch.randn(1, 2**14), torch.zeros(1, 1))
    assert counter.get_total_flops() == flops_per_window("debug", 2**14)


def test_gradients_flow_and_match_finite_differences():
    torch.manual_seed(1)
    network = randomised(build_unet("debug")).double()
    x = (0.1 * torch.randn(1, 2048, dtype=torch.float64)).requires_grad_()
    c_noise = torch.full((1, 1), -0.7, dtype=torch.float64)
    probe = torch.randn(1, 2048, dtype=torch.float64)
    (network(x, c_noise) * probe).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in network.parameters())
    direction, step = torch.randn_like(x), 1e-6
    with torch.no_grad():
        plus = (network(x + step * direction, c_noise) * probe).sum()
        minus = (network(x - step * direction, c_noise) * probe).sum()
    numeric = (plus - minus) / (2 * step)
    assert abs(numeric - (x.grad * direction).sum()) < 1e-6 * abs(numeric)


@pytest.mark.parametrize("dilation", [1, 3])
def test_dilated_layer_values_and_gradients(dilation):
    generator = torch.Generator().manual_seed(dilation)
    y = torch.randn(1, 2, 11, 4, dtype=torch.float64, generator=generator).requires_grad_()
    weight = torch.randn(2, 2, 5, 3, dtype=torch.float64, generator=generator).requires_grad_()
    padding = (1, 1, 2 * dilation, 2 * dilation)
    expected = F.conv2d(F.pad(F.gelu(y), padding, mode="reflect"), weight, dilation=(dilation, 1))
    torch.testing.assert_close(dilated_residual(y, weight, dilation, 0.7), 0.7 * (y + expected))
    workspace = torch.empty(1_000, dtype=torch.float64)
    layer = lambda y, w: dilated_residual(y, w, dilation, 0.7, workspace)  # noqa: E731
    assert torch.autograd.gradcheck(layer, (y, weight), fast_mode=True)


def test_block_checkpointing_gives_the_same_gradients():
    torch.manual_seed(2)
    network = randomised(build_unet("debug"))
    x = 0.1 * torch.randn(1, 2048)
    grads = []
    for checkpointing in (False, True):
        network.checkpoint_blocks = checkpointing
        xi = x.clone().requires_grad_()
        network(xi, torch.zeros(1, 1)).square().sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_presets_and_config_validation():
    with pytest.raises(ValueError, match="paper"):
        build_unet("huge")
    with pytest.raises(ValueError, match="reflect"):
        UNetConfig(dilated_layers=9)  # dilation 256 reaches beyond the 450 rows
    network = build_unet("debug")
    assert network.config is PRESETS["debug"]
    assert UNetConfig.from_dict(network.config.to_dict()) == network.config
    with pytest.raises(ValueError, match="min_window_hz"):
        UNetConfig(min_window_hz=-1.0)


def test_the_minimum_window_in_hz_reaches_the_networks_transform():
    # A config written before the option (no key) reads as the reference's 4-bin floor; with a floor in
    # Hz the network's transform, and so its output, change on a short window, and the option survives
    # the metadata round trip.
    old = {k: v for k, v in PRESETS["debug"].to_dict().items() if k != "min_window_hz"}
    assert UNetConfig.from_dict(old).min_window_hz == 0.0
    wide = replace(PRESETS["debug"], min_window_hz=40.0)
    assert UNetConfig.from_dict(wide.to_dict()) == wide
    plain, widened = build_unet("debug"), build_unet(wide)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the output layer starts at zero: random weights everywhere instead
        for parameter in plain.parameters():
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    widened.load_state_dict(plain.state_dict())
    assert widened.transform(4096).min_window_hz == 40.0 and plain.transform(4096).min_window_hz == 0.0
    x = 0.05 * torch.randn(1, 4096, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert relative_error(widened(x, torch.zeros(1)), plain(x, torch.zeros(1))) > 1e-3


@pytest.mark.parametrize(
    ("batch", "pad_rows", "pad_frames", "channels_last"),
    [(1, 0, 1, True), (1, 2, 1, True), (3, 7, 2, True), (2, 19, 0, False), (1, 19, 3, False)],
)
def test_gelu_reflect_pad_equals_pad_of_gelu(batch, pad_rows, pad_frames, channels_last):
    from cqtrestore.unet import gelu_reflect_pad

    y = torch.randn(batch, 5, 20, 9, generator=torch.Generator().manual_seed(batch))
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    expected = F.pad(F.gelu(y), (pad_frames, pad_frames, pad_rows, pad_rows), mode="reflect")
    workspace = torch.full((10_000,), float("nan"))  # stale contents must all be overwritten
    for buffer in (None, workspace):  # GELU's vector and scalar tails may differ in the last bit
        torch.testing.assert_close(gelu_reflect_pad(y, pad_rows, pad_frames, buffer), expected)


def test_compiled_dilated_layer_agrees_with_eager():
    """Under torch.compile (inductor, CPU) the dilated layers take their plain-op path: the eager path's
    padded buffers, carved from one shared workspace, fail inductor's size checks. Outputs within 1e-4
    of eager. The whole network: bench/compile.py."""
    torch.manual_seed(0)
    y = torch.randn(1, 6, 40, 24).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(6, 6, 5, 3) / math.sqrt(90)

    def block(y: torch.Tensor) -> torch.Tensor:  # two layers sharing one workspace, as in a U-Net block
        workspace = y.new_empty(6 * (40 + 2 * 18) * (24 + 2))
        return dilated_residual(dilated_residual(y, weight, 3, 0.7, workspace), weight, 9, 0.7, workspace)

    with torch.inference_mode():
        eager, fast = block(y), torch.compile(block)(y)
    assert eager.abs().max() > 0.5 and (fast - eager).abs().max() < 1e-4


def test_a_widened_finest_level_keeps_the_function_and_its_copies_can_part():
    from cqtrestore.unet import grows_from, load_grown

    narrow = replace(PRESETS["debug"], channels=(4, 6, 8, 8))
    wide = replace(narrow, channels=(8, 6, 8, 8))
    assert grows_from(narrow, wide) and not grows_from(wide, narrow)
    assert not grows_from(narrow, replace(wide, channels=(8, 12, 8, 8)))  # only the finest level
    assert not grows_from(
        PRESETS["debug"], replace(PRESETS["debug"], channels=(8, 4, 8, 8))
    )  # 4 = 4 -> 8 != 4
    assert grows_from(PRESETS["cpu-dilated"], PRESETS["cpu-fine"])
    torch.manual_seed(8)
    small = randomised(build_unet(narrow))
    x, c = 0.1 * torch.randn(2, 2**13), torch.tensor([[-0.5], [0.2]])
    with torch.no_grad():
        expected = small(x, c)
        same = load_grown(build_unet(wide), small.state_dict(), narrow)
        torch.testing.assert_close(same(x, c), expected, rtol=1e-4, atol=1e-5)
        jittered = load_grown(build_unet(wide), small.state_dict(), narrow, jitter=1e-2, seed=1)
        change = (jittered(x, c) - expected).norm() / expected.norm()
        assert 1e-5 < change < 0.05
    first = jittered.downs[0][0].H[0].conv.weight
    assert not torch.equal(first[:4], first[4:])  # the copies differ, so training can part them
    with pytest.raises(ValueError, match="not a grown layout"):
        load_grown(build_unet("debug-attn"), small.state_dict())
