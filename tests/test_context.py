"""Long context: the time mixers and the frequency gate (cqtrestore.context), and the presets using them."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cqtrestore.context import FrequencyGate, TimeAttention, TimeDilated
from cqtrestore.unet import PRESETS, UNetConfig, build_unet, flops_per_window, grows_from, load_grown
from tests.test_unet import randomised

MIXED = UNetConfig(
    channels=(4, 4, 8, 8),
    level_layers=(1, 2, 2, 3),
    bins_per_octave=16,
    octaves=5,
    noise_features=8,
    noise_mlp=(32, 32),
    freq_features=4,
    time_mixer="attention",
    time_levels=2,
    attention_heads=2,
)


@pytest.mark.parametrize(
    "mixer",
    [TimeAttention(8, 2), TimeDilated(8, (1, 2, 4)), FrequencyGate(8, bands=2, basis=3, hidden=4, rows=5)],
)
def test_fresh_mixers_are_the_identity(mixer):
    x = torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(mixer(x), x)


def test_time_attention_is_softmax_attention_along_time_in_each_row():
    torch.manual_seed(0)
    mixer = randomised(TimeAttention(6, 2)).double()
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    expected = torch.empty_like(x)
    for b in range(2):
        for r in range(3):
            tokens = torch.nn.functional.layer_norm(x[b, :, r].t(), (6,), mixer.norm.weight, mixer.norm.bias)
            q, k, v = (tokens @ mixer.qkv.weight.t()).split(6, dim=1)
            heads = []
            for h in range(2):
                qh, kh, vh = (t[:, 3 * h : 3 * h + 3] for t in (q, k, v))
                heads.append(torch.softmax(qh @ kh.t() / math.sqrt(3), dim=1) @ vh)
            expected[b, :, r] = x[b, :, r] + (torch.cat(heads, dim=1) @ mixer.out.weight.t()).t()
    torch.testing.assert_close(mixer(x), expected)


def test_time_attention_sees_every_frame_and_no_other_row():
    torch.manual_seed(1)
    mixer = randomised(TimeAttention(4, 1))
    x = torch.randn(1, 4, 3, 40, requires_grad=True)
    mixer(x)[0, :, 1, 0].sum().backward()
    assert (x.grad[0, :, 1].abs().sum(0) > 0).all()  # frame 0 depends on all 40 frames of its row
    assert x.grad[0, :, [0, 2]].abs().max() == 0


def test_time_dilated_reach_is_the_sum_of_its_dilations():
    torch.manual_seed(2)
    mixer = randomised(TimeDilated(4, (1, 2, 4, 8)))
    x = torch.randn(1, 4, 2, 64, requires_grad=True)
    mixer(x)[0, :, 0, 32].sum().backward()
    reached = (x.grad[0, :, 0].abs().sum(0) > 0).nonzero().flatten()
    assert reached.min() == 32 - 15 and reached.max() == 32 + 15


def far_gradient(config: UNetConfig, frames: int = 1024, far: int = 700) -> float:
    """max |d U-Net(c)[frame 0] / d c[frames >= far]| relative to the gradient from the first frames, on
    transform coefficients (the transform's own long low-frequency windows left out)."""
    torch.manual_seed(3)
    network = randomised(build_unet(config))
    coefficients = torch.randn(1, 2, config.rows, frames, requires_grad=True)
    embedding = network.embedding(torch.zeros(1, 1))
    network.unet(coefficients, embedding)[..., 0].sum().backward()
    grad = coefficients.grad.abs().amax(dim=(0, 1, 2))
    return float(grad[far:].max() / grad[:16].max())


def test_a_unit_at_the_bottom_sees_the_whole_window():
    assert far_gradient(MIXED) > 1e-4  # attention at the coarse levels: frame 0 sees frame 1023
    plain = UNetConfig(**{**MIXED.to_dict(), "time_mixer": "none", "time_levels": 0})
    assert far_gradient(plain) == 0  # without it, 700 frames are beyond the convolutions' reach


@pytest.mark.parametrize("mixer", ["attention", "dilated"])
def test_flop_count_with_mixers_matches_the_flop_counter(mixer):
    config = UNetConfig(**{**MIXED.to_dict(), "time_mixer": mixer})
    network = build_unet(config)

    def inplace_addmm(self_shape, a_shape, b_shape, out_shape=None, **kwargs) -> int:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]

    def cpu_attention(query_shape, key_shape, *args, out_shape=None, **kwargs) -> int:
        batch, heads, frames, width = query_shape  # QK^T and the weighted sum of V: 2 x 2 s^2 d
        return 4 * batch * heads * frames * key_shape[2] * width

    mapping = {
        torch.ops.aten.addmm_: inplace_addmm,
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention,  # not counted by torch
    }
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        with torch.no_grad():
            network(torch.randn(1, 2**13), torch.zeros(1, 1))
    assert counter.get_total_flops() == flops_per_window(config, 2**13)


@pytest.mark.parametrize("length", [2**14, 20000])
def test_mixed_network_any_length_and_batch_independent(length):
    torch.manual_seed(4)
    network = randomised(build_unet(MIXED))
    x = 0.1 * torch.randn(2, length)
    with torch.no_grad():
        both = network(x, torch.tensor([[-1.0], [0.3]]))
        first = network(x[:1], torch.tensor([[-1.0]]))
    assert both.shape == x.shape and torch.isfinite(both).all()
    assert (both[:1] - first).norm() < 1e-5 * first.norm()  # float rounding of batched products only


def test_cpu_candidates_cost_under_half_of_small_shallow_and_keep_old_layouts():
    for name in ("cpu-attn", "cpu-dilated"):
        config = PRESETS[name]
        assert flops_per_window(config) < 0.5 * flops_per_window("small-shallow")
        assert config.levels == 7 and config.layers_per_level[0] < config.layers_per_level[-1]
        assert UNetConfig.from_dict(config.to_dict()) == config
    keys = build_unet("small-shallow").state_dict().keys()
    assert not any(key.startswith("time_") for key in keys)


def test_the_wide_candidate_sees_the_whole_spectrum_at_full_time_resolution():
    wide, lean = PRESETS["cpu-wide"], PRESETS["cpu-dilated"]
    assert max(wide.level_dilations(0)) == 81 and max(lean.level_dilations(0)) == 3
    assert 2 * max(wide.level_dilations(0)) * 2 >= 4 * 64  # +-162 rows: over two octaves each way
    assert flops_per_window(lean) < flops_per_window(wide) < 0.6 * flops_per_window("small-shallow")
    network = build_unet(wide)
    with torch.no_grad():
        out = network(0.1 * torch.randn(1, 2**14), torch.tensor([[0.0]]))
    assert out.shape == (1, 2**14) and torch.isfinite(out).all()


def test_new_config_fields_are_validated():
    with pytest.raises(ValueError, match="one positive layer count per level"):
        UNetConfig(channels=(8, 8), level_layers=(1, 2, 3))
    with pytest.raises(ValueError, match="time_mixer"):
        UNetConfig(channels=(8, 8), time_mixer="lstm")
    with pytest.raises(ValueError, match="heads"):
        UNetConfig(channels=(8, 6), time_mixer="attention", time_levels=1, attention_heads=4)
    with pytest.raises(ValueError, match="freq_gate_levels"):
        UNetConfig(channels=(8, 8), freq_gate_levels=3)
    with pytest.raises(ValueError, match="freq_gate_levels"):
        UNetConfig(channels=(8, 8), freq_gate_levels=1, freq_gate_basis=0)


def test_frequency_gate_is_a_per_frame_gain_curve_from_band_levels():
    torch.manual_seed(5)
    gate = randomised(FrequencyGate(3, bands=2, basis=4, hidden=5, rows=6)).double()
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    expected = torch.empty_like(x)
    rows = (torch.arange(6, dtype=torch.float64) + 0.5) / 6
    cosines = torch.stack([torch.cos(math.pi * k * rows) for k in range(4)])  # (basis, rows)
    for b in range(2):
        for t in range(7):
            bands = x[b, :, :, t].square().reshape(3, 2, 3).mean(-1)  # rows 0-2 and 3-5, per channel
            level = torch.log10(bands + 1e-6).reshape(6)
            hidden = torch.nn.functional.gelu(gate.hidden.weight[:, :, 0, 0] @ level + gate.hidden.bias)
            coefficients = (gate.out.weight[:, :, 0, 0] @ hidden).reshape(3, 4)
            expected[b, :, :, t] = x[b, :, :, t] * (1 + coefficients @ cosines)
    torch.testing.assert_close(gate(x), expected)


def test_frequency_gate_lets_every_row_see_the_whole_frame_and_no_other_frame():
    torch.manual_seed(6)
    gate = randomised(FrequencyGate(4, bands=8, basis=8, hidden=16, rows=450))
    x = torch.randn(1, 4, 450, 5, requires_grad=True)
    gate(x)[0, :, 440, 2].sum().backward()  # a high row of frame 2
    assert (x.grad[0, :, :, 2].abs().sum(0) > 0).all()  # depends on the lowest rows of its frame
    assert x.grad[0, :, :, [0, 1, 3, 4]].abs().max() == 0


def test_gated_preset_grows_from_its_base_with_the_same_function():
    base, gated = PRESETS["cpu-dilated"], PRESETS["cpu-gate"]
    assert (
        grows_from(base, gated) and not grows_from(gated, base) and not grows_from(base, PRESETS["cpu-wide"])
    )
    assert flops_per_window(base) < flops_per_window(gated) < 1.01 * flops_per_window(base)
    torch.manual_seed(7)
    small = randomised(build_unet("debug"))
    grown = load_grown(build_unet("debug-gate"), small.state_dict())
    x = 0.1 * torch.randn(2, 2**13)
    with torch.no_grad():
        torch.testing.assert_close(grown(x, torch.tensor([[-0.5]])), small(x, torch.tensor([[-0.5]])))
        randomised(grown.gate_up)  # once trained, the gates change the function
        assert not torch.allclose(grown(x, torch.tensor([[-0.5]])), small(x, torch.tensor([[-0.5]])))
    with pytest.raises(ValueError, match="not a grown layout"):
        load_grown(build_unet("debug-gate"), build_unet("debug-attn").state_dict())


def test_time_mixers_grow_from_a_layout_without_them_with_the_same_function():
    shallow, context = PRESETS["small-shallow"], PRESETS["small-context"]
    assert grows_from(shallow, context) and not grows_from(context, shallow)
    assert not grows_from(PRESETS["cpu-attn"], PRESETS["cpu-dilated"])  # one mixer for another: no
    assert not grows_from(PRESETS["debug-attn"], replace(PRESETS["debug-attn"], time_levels=1))
    assert flops_per_window(shallow) < flops_per_window(context) < 1.05 * flops_per_window(shallow)
    torch.manual_seed(8)
    small = randomised(build_unet("debug"))
    for kind in ("attention", "dilated"):
        config = replace(PRESETS["debug-attn"], time_mixer=kind)
        grown = load_grown(build_unet(config), small.state_dict())
        x = 0.1 * torch.randn(2, 2**13)
        with torch.no_grad():
            torch.testing.assert_close(grown(x, torch.tensor([[-0.5]])), small(x, torch.tensor([[-0.5]])))
            randomised(grown.time_up)  # once trained, the mixers change the function
            assert not torch.allclose(grown(x, torch.tensor([[-0.5]])), small(x, torch.tensor([[-0.5]])))


def test_flop_count_with_gates_matches_the_flop_counter():
    config = UNetConfig(
        **{**MIXED.to_dict(), "time_mixer": "dilated", "freq_gate_levels": 2, "output_mask": True}
    )

    def inplace_addmm(self_shape, a_shape, b_shape, out_shape=None, **kwargs) -> int:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]

    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: inplace_addmm}) as counter:
        with torch.no_grad():
            build_unet(config)(torch.randn(1, 2**13), torch.zeros(1, 1))
    assert counter.get_total_flops() == flops_per_window(config, 2**13)
    plain = UNetConfig(**{**config.to_dict(), "freq_gate_levels": 0})
    assert flops_per_window(config, 2**13) > flops_per_window(plain, 2**13)


def test_the_output_mask_adds_a_gain_per_cell_on_the_networks_input_coefficients():
    config = replace(MIXED, output_mask=True)
    torch.manual_seed(9)
    network = randomised(build_unet(config))
    plain = build_unet(replace(config, output_mask=False))
    plain.load_state_dict({k: v for k, v in network.state_dict().items() if not k.startswith("mask_head.")})
    coefficients = torch.randn(1, 2, config.rows, 40)
    embedding = network.embedding(torch.zeros(1, 1))
    seen = {}
    hook = network.ups[-1][0].register_forward_hook(lambda module, args, out: seen.update(features=out))
    with torch.no_grad():
        masked = network.unet(coefficients, embedding)
        gain = torch.einsum("bcrt,c->brt", seen["features"], network.mask_head.weight[0, :, 0, 0])[:, None]
        torch.testing.assert_close(masked, plain.unet(coefficients, embedding) + gain * coefficients)
    hook.remove()
    assert grows_from(MIXED, config) and not grows_from(config, MIXED)
    fresh = load_grown(build_unet(config), plain.state_dict())  # a zero mask: the same function
    x = 0.1 * torch.randn(1, 2**13)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, torch.zeros(1, 1)), plain(x, torch.zeros(1, 1)))
    assert flops_per_window(config, 2**13) > flops_per_window(MIXED, 2**13)
