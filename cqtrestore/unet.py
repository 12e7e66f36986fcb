"""The network F of CQT-Diff (paper §2.4, Fig. 1): a U-Net over the constant-Q transform.

F maps audio to audio: CQT -> U-Net over (frequency, time) -> inverse CQT, trimmed to the input
length. The U-Net only downsamples time; its residual blocks stack frequency-dilated 5x3
convolutions (dilations 1, 2, ..., 128 along frequency) so one block sees several octaves and the
harmonics of a note. The noise level enters through random-Fourier features of
``c_noise = ln(sigma) / 4``, an MLP and a per-block FiLM scale; the frequency index enters as a fixed
random-Fourier table concatenated to the two transform channels. Time is resampled by 2 with
windowed-sinc filters, and progressive-growing pyramids of the input (encoder) and of the output
(decoder) tie every level to the transform.

The ``paper`` preset reproduces the reference implementation's layout: the same state-dict keys,
shapes and order, and the same parameter order, so published reference weights load unchanged
(see ``load_reference_checkpoint``).

Lengths: the network is fully convolutional in time. A signal of L samples gives ``T = CQT frames``
(704 for 65,536 samples); every downsampling keeps ``ceil(T / 2)`` frames and every upsampled
feature map is cropped at the end to its skip connection, so any T works as long as the deepest
level keeps at least 2 frames for its reflect padding: ``T > 2 ** (levels - 1)``. Shorter inputs are
zero-padded at the end up to ``min_length(config)`` samples (3,027 for six levels at 22,050 Hz) and
the output is cropped back, so every length works (training crops of 8,192 samples give T = 88).

Speed (CPU): features are kept channels-last; the resampling filters run as depthwise convolutions
and 1x1 convolutions as matrix products (the reference's per-row conv1d resampling and oneDNN 1x1
convolutions are several times slower); constant scale factors are folded into weights; GELU writes
straight into the reflect-padded buffer; the frequency table's share of the first convolution is
computed once per row. ``dilated_residual`` keeps only its input for backpropagation.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from cqtrestore.context import MIXERS, FrequencyGate, build_mixer
from cqtrestore.cqt import CQT, frame_layout

INV_SQRT2 = 1 / math.sqrt(2)
RESAMPLER_SUFFIX = "resample.kernel"  # the only buffers of the reference network


@dataclass(frozen=True)
class UNetConfig:
    """Shape of the network. ``channels`` has one width per level; the middle block uses the last.

    The reference's channel list ``[32, 64, 64, 128, 128, 128, 128, 128]`` is per level for its
    first six entries, then the middle block (equal to the sixth), then an unused entry; here it is
    ``channels=(32, 64, 64, 128, 128, 128)``.
    """

    channels: tuple[int, ...] = (32, 64, 64, 128, 128, 128)
    dilated_layers: int = 8  # residual layers per block; dilations growth**0 ... growth**(layers - 1)
    dilation_growth: int = 2  # ratio of successive frequency dilations (the reference: 2)
    kernel_size: tuple[int, int] = (5, 3)  # (frequency, time) of the dilated convolutions
    bins_per_octave: int = 64
    octaves: int = 7
    sample_rate: int = 22050
    # The CQT's narrowest window in Hz (cqtrestore.cqt): 0 is the reference's 4 FFT bins at any length.
    min_window_hz: float = 0.0
    noise_features: int = 32  # random-Fourier frequencies of the noise embedding (sin + cos each)
    noise_mlp: tuple[int, ...] = (128, 256, 512)  # MLP widths; the last one feeds every FiLM layer
    freq_features: int = 32  # random-Fourier frequencies of the frequency embedding
    fourier_scale: float = 16.0  # std of the random-Fourier frequencies at initialisation
    # Per-level dilated layers (() = ``dilated_layers`` everywhere; the middle block uses the last).
    level_layers: tuple[int, ...] = ()
    # Long context in time (cqtrestore.context): a mixer after the blocks of the ``time_levels``
    # coarsest levels (encoder and decoder) and after the middle block.
    time_mixer: str = "none"  # "none", "attention" or "dilated"
    time_levels: int = 0
    attention_heads: int = 4
    time_dilations: tuple[int, ...] = (1, 2, 4, 8)
    # Context across the spectrum (cqtrestore.context.FrequencyGate): a per-frame gain curve over
    # frequency after the blocks of the ``freq_gate_levels`` finest levels (encoder and decoder).
    freq_gate_levels: int = 0
    freq_gate_bands: int = 8  # band levels per channel the gate reads
    freq_gate_basis: int = 8  # cosines over the rows its gain curve is made of
    freq_gate_hidden: int = 64
    # A per-cell gain on the network's own input coefficients added to its output (a mask head on the
    # finest decoder features, zero at the start): cancelling the noise of a cell where there is no
    # note becomes one number per cell instead of a copy of the noise with the opposite sign.
    output_mask: bool = False

    def __post_init__(self) -> None:
        for name in ("channels", "kernel_size", "noise_mlp", "level_layers", "time_dilations"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.level_layers and (len(self.level_layers) != len(self.channels) or min(self.level_layers) < 1):
            raise ValueError(
                f"level_layers must give one positive layer count per level ({len(self.channels)}), "
                f"got {self.level_layers}"
            )
        if self.time_mixer not in MIXERS or not 0 <= self.time_levels <= len(self.channels):
            raise ValueError(
                f"time_mixer must be one of {MIXERS} and time_levels from 0 to the number of levels, "
                f"got {self.time_mixer!r} and {self.time_levels}"
            )
        if self.time_mixer == "attention" and any(c % self.attention_heads for c in self.mixer_channels):
            raise ValueError(f"{self.attention_heads} attention heads do not divide {self.mixer_channels}")
        if (
            not 0 <= self.freq_gate_levels <= len(self.channels)
            or min(self.freq_gate_bands, self.freq_gate_basis, self.freq_gate_hidden) < 1
        ):
            raise ValueError(
                f"freq_gate_levels must be from 0 to the number of levels and the gate's bands, basis "
                f"and hidden width positive, got {self.freq_gate_levels}, {self.freq_gate_bands}, "
                f"{self.freq_gate_basis}, {self.freq_gate_hidden}"
            )
        if not self.time_dilations or min(self.time_dilations) < 1:
            raise ValueError(f"time_dilations must be positive, got {self.time_dilations}")
        if len(self.channels) < 2 or min(self.channels) < 1:
            raise ValueError(
                f"channels must list 2 or more positive widths (one per level), got {self.channels}"
            )
        if len(self.kernel_size) != 2 or any(k < 1 or k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"kernel_size must be two odd positive sizes, got {self.kernel_size}")
        if not 0 <= self.min_window_hz < self.sample_rate / 2:
            raise ValueError(f"min_window_hz must be from 0 to Nyquist, got {self.min_window_hz}")
        if min(self.bins_per_octave, self.octaves, self.sample_rate, self.noise_features) < 1:
            raise ValueError("bins_per_octave, octaves, sample_rate and noise_features must be positive")
        if self.freq_features < 0 or not self.noise_mlp or min(self.noise_mlp) < 1:
            raise ValueError("freq_features must be >= 0 and noise_mlp a non-empty list of positive widths")
        deepest = max(self.layers_per_level)
        reach = (self.kernel_size[0] // 2) * self.dilation_growth ** (deepest - 1)
        if deepest < 1 or min(self.layers_per_level) < 1 or self.dilation_growth < 1 or reach >= self.rows:
            raise ValueError(
                f"{deepest} dilated layers reach {reach} rows, more than the "
                f"{self.rows} rows that reflect padding allows"
            )

    @property
    def rows(self) -> int:
        """Frequency rows of the transform: the log-spaced bins plus DC and Nyquist."""
        return self.bins_per_octave * self.octaves + 2

    @property
    def levels(self) -> int:
        return len(self.channels)

    @property
    def dilations(self) -> tuple[int, ...]:
        """Frequency dilations of the deepest block."""
        return tuple(self.dilation_growth**i for i in range(max(self.layers_per_level)))

    @property
    def layers_per_level(self) -> tuple[int, ...]:
        return self.level_layers or (self.dilated_layers,) * len(self.channels)

    def level_dilations(self, level: int) -> tuple[int, ...]:
        """Frequency dilations of the blocks at ``level`` (the middle block: the last level's)."""
        return tuple(self.dilation_growth**i for i in range(self.layers_per_level[level]))

    def has_mixer(self, level: int) -> bool:
        """Whether the blocks at ``level`` (and, for any mixer, the middle block) are followed by one."""
        return self.time_mixer != "none" and level >= len(self.channels) - self.time_levels

    def has_gate(self, level: int) -> bool:
        """Whether the blocks at ``level`` (encoder and decoder) are followed by a frequency gate."""
        return level < self.freq_gate_levels

    @property
    def mixer_channels(self) -> tuple[int, ...]:
        """Widths the time mixers act on: the encoder's level widths, and the decoder's outputs."""
        levels = len(self.channels)
        if self.time_mixer == "none" or not self.time_levels:
            return ()
        down = self.channels[levels - self.time_levels :]
        up = tuple(self.channels[max(i - 1, 0)] for i in range(levels - self.time_levels, levels))
        return down + up

    def to_dict(self) -> dict:
        """Plain JSON-able dict (for checkpoint metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> UNetConfig:
        return cls(**values)


PRESETS: dict[str, UNetConfig] = {
    # The reference layout: 15,458,368 trained parameters.
    "paper": UNetConfig(),
    # Compact candidates for CPUs, each under 1/15 of the paper's FLOPs (see ``flops_per_window``):
    # the paper's layout at a quarter of its width (every block still spans the whole spectrum) ...
    "small": UNetConfig(channels=(8, 16, 16, 32, 32, 32)),
    # ... or twice that width at the top with five layers of dilations 1, 3, 9, 27, 81 (+-242 rows).
    "small-shallow": UNetConfig(channels=(16, 16, 24, 24, 32, 32), dilated_layers=5, dilation_growth=3),
    # CPU candidates of the second prior (docs/model-card.md): seven levels whose widths grow as the
    # frames halve (a 5x3 layer costs about the same at every level), few dilated layers at full
    # resolution and more below; the three coarsest levels (44, 22 and 11 frames of a 2^16 window:
    # 68-270 ms each) add long context in time, by self-attention along time or by time-dilated
    # convolutions. Both cost under half of small-shallow per evaluation.
    "cpu-attn": UNetConfig(
        channels=(8, 12, 16, 24, 32, 48, 64),
        level_layers=(2, 2, 3, 3, 4, 4, 5),
        dilation_growth=3,
        time_mixer="attention",
        time_levels=3,
    ),
    # Tiny random network for tests and smoke runs.
    "debug": UNetConfig(
        channels=(4, 4, 8, 8),
        dilated_layers=3,
        bins_per_octave=16,
        octaves=5,
        noise_features=8,
        noise_mlp=(32, 32),
        freq_features=4,
    ),
}
PRESETS["cpu-dilated"] = replace(PRESETS["cpu-attn"], time_mixer="dilated")  # the other long context
# A third candidate: cpu-dilated with frequency context across the whole spectrum (dilations 1 ... 81,
# +-162 rows) at the two finest time levels, as small-shallow has. cpu-dilated's highs do not decay with
# the notes (docs/model-card.md): its full-resolution blocks see +-6 rows, so the envelope of the low
# partials reaches the highs only at levels whose frames are 4-16x longer. 37 GFLOP per 2^16 window.
PRESETS["cpu-wide"] = replace(PRESETS["cpu-dilated"], level_layers=(5, 5, 3, 3, 4, 4, 5))
# A fourth: cpu-dilated with a frequency gate after the blocks of its two finest levels, a per-frame
# gain curve over the spectrum from the frame's band levels (cqtrestore.context.FrequencyGate). It
# starts as the identity, so it grows from cpu-dilated's trained weights (``grows_from``); it costs
# under 0.1 GFLOP more.
PRESETS["cpu-gate"] = replace(PRESETS["cpu-dilated"], freq_gate_levels=2)
# A fifth: cpu-dilated with twice the channels at full resolution (16), where the quiet cells' noise is
# decided; grown from cpu-dilated's weights by splitting each channel in two (Net2Net). 40.9 GFLOP.
PRESETS["cpu-fine"] = replace(PRESETS["cpu-dilated"], channels=(16, 12, 16, 24, 32, 48, 64))
# A sixth: cpu-dilated with an output mask (``UNetConfig.output_mask``), grown from its weights.
PRESETS["cpu-mask"] = replace(PRESETS["cpu-dilated"], output_mask=True)
# A seventh: small-shallow (the shipped prior's layout) with cpu-dilated's long context in time,
# time-dilated convolutions after the blocks of its three coarsest levels and the middle. The mixers
# start as the identity, so it grows from piano-small's trained weights (``grows_from``). Its capacity
# stays at full resolution, where the quiet frames' highs are decided (docs/model-card.md).
PRESETS["small-context"] = replace(PRESETS["small-shallow"], time_mixer="dilated", time_levels=3)
# An eighth: small-context with the CQT's narrowest window fixed at 5.38 Hz, its width on the 2^14-sample
# crops piano-small learnt on (4 FFT bins), at every length: on 2^16 windows the reference's 4-bin floor
# makes the rows below 500 Hz narrower than any crop taught it, and unconditional samples lose the
# 100-Hz band (docs/model-card.md). The same weights; small-context's load into it (``initialise_from``).
MIN_WINDOW_HZ_2E14 = 4 * 22050 / 2**14
PRESETS["small-context-hz"] = replace(PRESETS["small-context"], min_window_hz=MIN_WINDOW_HZ_2E14)
# ... and the debug network with attention along time at its two coarsest levels (the cpu-* code path).
PRESETS["debug-attn"] = replace(PRESETS["debug"], time_mixer="attention", time_levels=2, attention_heads=2)
# ... and with a frequency gate at its finest level (grows from debug).
PRESETS["debug-gate"] = replace(PRESETS["debug"], freq_gate_levels=1)
# ... and with a floor of 20 Hz on its transform's windows (the debug network of small-context-hz).
PRESETS["debug-hz"] = replace(PRESETS["debug"], min_window_hz=20.0)


def resolve_config(preset_or_config: str | UNetConfig) -> UNetConfig:
    """A preset name or a config -> a config; unknown names list the valid ones."""
    if isinstance(preset_or_config, UNetConfig):
        return preset_or_config
    if preset_or_config not in PRESETS:
        raise ValueError(f"unknown network preset {preset_or_config!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset_or_config]


# --- building blocks --------------------------------------------------------------------------
# Attribute names (``RFF_freq``, ``MLP``, ``H``, ``first_conv``, ...) are the reference's state-dict keys.


def sinc_resample_kernel(orig: int, new: int, lowpass_width: int = 6, rolloff: float = 0.99) -> Tensor:
    """Hann-windowed sinc kernels for resampling by ``new / orig`` (coprime), shape (new, 1, taps).

    The same kernel as torchaudio's ``Resample`` (sinc_interp_hann, lowpass width 6, rolloff 0.99),
    built in float64 and rounded to float32: ``taps = 2 * ceil(lowpass_width * orig / cutoff) + orig``
    with ``cutoff = rolloff * min(orig, new)``; row ``p`` is the phase for output sample ``p`` mod new.
    """
    cutoff = min(orig, new) * rolloff
    half_width = math.ceil(lowpass_width * orig / cutoff)
    taps = torch.arange(-half_width, half_width + orig, dtype=torch.float64) / orig
    phases = -torch.arange(new, dtype=torch.float64)[:, None, None] / new
    t = ((phases + taps) * cutoff).clamp(-lowpass_width, lowpass_width)
    window = torch.cos(t * math.pi / lowpass_width / 2) ** 2
    sinc = torch.special.sinc(t)  # sin(pi t) / (pi t), 1 at t = 0
    return (sinc * (window * (cutoff / orig))).float()


class SincKernel(nn.Module):
    """Holds the resampling kernel as the buffer ``kernel`` (the reference's state-dict entry)."""

    def __init__(self, orig: int, new: int) -> None:
        super().__init__()
        self.register_buffer("kernel", sinc_resample_kernel(orig, new))


class TimeResample(nn.Module):
    """Resample time (the last axis) by 2 as torchaudio's ``Resample`` does: ceil(T / 2) or 2T frames.

    The reference runs ``torchaudio.transforms.Resample``, a 1-channel conv1d over every (channel,
    row) pair with zero padding (13, 15) down or (7, 8) up; here the same sums run as a depthwise
    (transposed) convolution over channels-last tensors, an order of magnitude faster on CPUs.
    """

    def __init__(self, up: bool) -> None:
        super().__init__()
        self.up = up
        self.resample = SincKernel(1, 2) if up else SincKernel(2, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, channels, rows, T) -> (batch, channels, rows, 2T or ceil(T / 2))."""
        channels, frames, kernel = x.shape[1], x.shape[-1], self.resample.kernel
        if self.up:
            # Output 2t + p is phase p; as one transposed convolution the two phases interleave,
            # taps[2u + p] = kernel[p, 14 - u], and padding 14 aligns output 0 with torchaudio's.
            taps = kernel[:, 0].flip(-1).t().reshape(1, 1, 1, -1).expand(channels, 1, 1, -1)
            pad = (taps.shape[-1] - 2) // 2
            return F.conv_transpose2d(x, taps, stride=(1, 2), padding=(0, pad), groups=channels)
        taps = kernel.reshape(1, 1, 1, -1).expand(channels, 1, 1, -1)
        half_width = (taps.shape[-1] - 2) // 2  # 13: output t is centred on input 2t + 0.5
        if frames % 2 == 0:
            return F.conv2d(x, taps, stride=(1, 2), padding=(0, half_width), groups=channels)
        out = F.conv2d(x, taps, stride=(1, 2), padding=(0, half_width + 2), groups=channels)
        return out[..., 1 : 2 + frames // 2]  # odd T: the last output needs 15 zeros on the right


def conv1x1(x: Tensor, weight: Tensor, scale: float = 1.0) -> Tensor:
    """1x1 convolution as one matrix product over the channels-last pixels (faster than oneDNN here)."""
    out = torch.matmul(x.permute(0, 2, 3, 1), weight.flatten(1).t() * scale)
    return out.permute(0, 3, 1, 2)


def add_conv1x1_(out: Tensor, x: Tensor, weight: Tensor, scale: float = 1.0) -> Tensor:
    """out += scale * conv1x1(x, weight), in place when ``out`` is channels-last contiguous."""
    out = out.contiguous(memory_format=torch.channels_last)
    pixels = out.permute(0, 2, 3, 1).view(-1, out.shape[1])
    pixels.addmm_(x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]), weight.flatten(1).t(), alpha=scale)
    return out


def reflect_conv(x: Tensor, weight: Tensor, dilation: int = 1) -> Tensor:
    """'Same'-size convolution with reflect padding, dilated along frequency (dim 2) only."""
    pad_f, pad_t = dilation * (weight.shape[2] // 2), weight.shape[3] // 2
    return F.conv2d(F.pad(x, (pad_t, pad_t, pad_f, pad_f), mode="reflect"), weight, dilation=(dilation, 1))


def gelu_reflect_pad(y: Tensor, pad_rows: int, pad_frames: int, workspace: Tensor | None = None) -> Tensor:
    """``F.pad(F.gelu(y), (pad_frames,) * 2 + (pad_rows,) * 2, mode="reflect")`` in about one pass.

    GELU writes straight into the padded buffer's interior and only the borders are copied: in the
    buffer's channels-last memory a padded row is one contiguous block, so the mirrored rows are
    gathered with ``index_select`` (``flip`` along a channels-last dimension runs element by element,
    3-10x slower, and the frequency padding reaches 2 x 256 rows at dilation 128). The buffer is carved
    from ``workspace`` (flat, large enough) when given, saving a fresh allocation.
    Not differentiable by itself: ``dilated_residual`` provides the backward pass.
    """
    y = y.contiguous(memory_format=torch.channels_last)  # gelu.out needs the layout of its output
    batch, channels, rows, frames = y.shape
    shape = (batch, rows + 2 * pad_rows, frames + 2 * pad_frames, channels)  # channels-last memory
    if workspace is None:
        workspace = torch.empty(math.prod(shape), dtype=y.dtype, device=y.device)
    memory = workspace[: math.prod(shape)].view(shape)  # (batch, padded rows, padded frames, channels)
    out = memory.permute(0, 3, 1, 2)
    torch.ops.aten.gelu.out(y, out=out[:, :, pad_rows : pad_rows + rows, pad_frames : pad_frames + frames])
    body = memory[:, pad_rows : pad_rows + rows]
    for j in range(1, pad_frames + 1):  # reflect without repeating the edge: padded frame -j mirrors j
        body[:, :, pad_frames - j].copy_(body[:, :, pad_frames + j])
        body[:, :, pad_frames + frames - 1 + j].copy_(body[:, :, pad_frames + frames - 1 - j])
    if pad_rows:  # whole padded rows (frame padding included, so the corners mirror both ways)
        reverse = torch.arange(pad_rows - 1, -1, -1, device=y.device)
        for item in memory:
            torch.index_select(item[pad_rows + 1 : 2 * pad_rows + 1], 0, reverse, out=item[:pad_rows])
            torch.index_select(item[rows - 1 : rows - 1 + pad_rows], 0, reverse, out=item[pad_rows + rows :])
    return out


def dilated_residual(
    y: Tensor, weight: Tensor, dilation: int, scale: float, workspace: Tensor | None = None
) -> Tensor:
    """``scale * (y + conv(reflect_pad(GELU(y)), weight))``, convolution dilated along frequency.

    A custom autograd function: it keeps only ``y`` for the backward pass (autograd would also keep
    the padded GELU output, up to twice the size of ``y``) and recomputes that only when the
    weight needs a gradient, which roughly halves the memory that backpropagation needs. The
    padded buffer is dead after the convolution, so consecutive layers can share one ``workspace``.
    """
    if torch.compiler.is_compiling():  # inductor fuses the plain ops itself; the in-place buffer breaks it
        return scale * (y + reflect_conv(F.gelu(y), weight, dilation))
    if torch.is_grad_enabled() and (y.requires_grad or weight.requires_grad):
        return _DilatedResidual.apply(y, weight, dilation, scale, workspace)
    return _dilated_residual_forward(y, weight, dilation, scale, workspace)  # sampling: no autograd node


def _dilated_residual_forward(
    y: Tensor, weight: Tensor, dilation: int, scale: float, workspace: Tensor | None
) -> Tensor:
    """The forward pass of ``dilated_residual``."""
    padded = gelu_reflect_pad(y, dilation * (weight.shape[2] // 2), weight.shape[3] // 2, workspace)
    return F.conv2d(padded, weight * scale, dilation=(dilation, 1)).add_(y, alpha=scale)


class _DilatedResidual(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, y: Tensor, weight: Tensor, dilation: int, scale: float, workspace: Tensor | None
    ) -> Tensor:
        ctx.save_for_backward(y, weight)
        ctx.dilation, ctx.scale = dilation, scale
        ctx.pad = (dilation * (weight.shape[2] // 2), weight.shape[3] // 2)
        return _dilated_residual_forward(y, weight, dilation, scale, workspace)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        y, weight = ctx.saved_tensors
        (pad_rows, pad_frames), dilation, scale = ctx.pad, [ctx.dilation, 1], ctx.scale
        need_input, need_weight = ctx.needs_input_grad[:2]
        if need_weight:  # the weight gradient needs the padded GELU output again
            padded = gelu_reflect_pad(y, pad_rows, pad_frames)
        else:  # only its shape and layout matter: an untouched allocation
            shape = (*y.shape[:2], y.shape[2] + 2 * pad_rows, y.shape[3] + 2 * pad_frames)
            padded = torch.empty(shape, dtype=y.dtype, device=y.device, memory_format=torch.channels_last)
        geometry = ([1, 1], [0, 0], dilation, False, [0, 0], 1)  # stride, padding, dilation, ..., groups
        grad_padded, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad, padded, weight * scale, None, *geometry, [need_input, need_weight, False]
        )
        grad_y = None
        if need_input:
            padding = [pad_frames, pad_frames, pad_rows, pad_rows]
            grad_gelu = torch.ops.aten.reflection_pad2d_backward(grad_padded, y, padding)
            grad_y = torch.ops.aten.gelu_backward(grad_gelu, y).add_(grad, alpha=scale)
        if need_weight:
            grad_weight = grad_weight.mul_(scale)
        return grad_y, grad_weight, None, None, None


class NoiseEmbedding(nn.Module):
    """c_noise (batch, 1) -> random-Fourier features [sin, cos] -> MLP with ReLU after every layer."""

    def __init__(self, features: int, widths: tuple[int, ...], scale: float) -> None:
        super().__init__()
        self.register_buffer("RFF_freq", scale * torch.randn(1, features))
        sizes = (2 * features, *widths)
        self.MLP = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def forward(self, c_noise: Tensor) -> Tensor:
        phase = (2 * math.pi * c_noise) * self.RFF_freq
        h = torch.cat([phase.sin(), phase.cos()], dim=1)
        for layer in self.MLP:
            h = F.relu(layer(h))
        return h


class FrequencyEmbedding(nn.Module):
    """A fixed (2N, rows) table [sin, cos](2 pi n f) of row index n, concatenated after the input channels.

    The table is constant in time, so its share of the first convolution is a (channels, rows) map:
    ``input_bias`` computes it once per call instead of convolving 2N constant channels at every frame.
    """

    def __init__(self, features: int, rows: int, scale: float) -> None:
        super().__init__()
        self.register_buffer("RFF_freq", scale * torch.randn(1, features))
        self.register_buffer("embeddings", self.table(self.RFF_freq, rows))

    @staticmethod
    def table(frequencies: Tensor, rows: int) -> Tensor:
        """(1, 2N, rows) table, computed in float32 like the reference."""
        phase = 2 * math.pi * torch.arange(rows)[None, None, :] * frequencies[..., None]
        return torch.cat([phase.sin(), phase.cos()], dim=1)

    def input_bias(self, weight: Tensor) -> Tensor:
        """The table's part of a reflect-padded 'same' convolution with ``weight``: (1, out, rows, 1).

        With reflect padding in time a time-constant input stays constant, so the time taps sum up.
        """
        table = self.embeddings.to(weight.dtype)[..., None]
        return reflect_conv(table, weight[:, -table.shape[1] :].sum(-1, keepdim=True))


class Film(nn.Module):
    """Per-channel scale from the noise embedding (the reference's FiLM has no shift)."""

    def __init__(self, embedding_dim: int, channels: int) -> None:
        super().__init__()
        self.output_layer = nn.Linear(embedding_dim, channels)

    def forward(self, embedding: Tensor) -> Tensor:
        return self.output_layer(embedding)[:, :, None, None]


class DilatedLayer(nn.Module):
    """y <- (y + conv(GELU(y))) / sqrt(2), conv dilated along frequency, reflect 'same' padding."""

    def __init__(self, channels: int, kernel_size: tuple[int, int], dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv2d(channels, channels, kernel_size, dilation=(dilation, 1), bias=False)

    def forward(self, y: Tensor, scale: float = INV_SQRT2, workspace: Tensor | None = None) -> Tensor:
        """``scale * (y + conv(GELU(y)))`` with the scale folded into the weights: one pass over y."""
        return dilated_residual(y, self.conv.weight, self.dilation, scale, workspace)

    def padded_size(self, y: Tensor) -> int:
        """Elements of this layer's padded GELU buffer for input ``y``."""
        _, _, kernel_rows, kernel_frames = self.conv.weight.shape
        rows, frames = (
            y.shape[2] + 2 * self.dilation * (kernel_rows // 2),
            y.shape[3] + kernel_frames // 2 * 2,
        )
        return y.shape[0] * y.shape[1] * rows * frames


class ResidualBlock(nn.Module):
    """FiLM scale -> GELU -> 1x1 conv -> dilated layers, plus a (1x1-projected) residual, / sqrt(2)."""

    def __init__(
        self, config: UNetConfig, channels_in: int, channels_out: int, dilations: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.film = Film(config.noise_mlp[-1], channels_in)
        self.res_conv = None
        if channels_in != channels_out:
            self.res_conv = nn.Conv2d(channels_in, channels_out, 1, bias=False)
        self.H = nn.ModuleList(DilatedLayer(channels_out, config.kernel_size, d) for d in dilations)
        self.first_conv = nn.Sequential(nn.GELU(), nn.Conv2d(channels_in, channels_out, 1, bias=False))

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        x = x * self.film(embedding)
        y = conv1x1(F.gelu(x), self.first_conv[1].weight)
        workspace = y.new_empty(max(layer.padded_size(y) for layer in self.H))  # shared by the layers
        for layer in self.H[:-1]:
            y = layer(y, workspace=workspace)
        y = self.H[-1](y, scale=0.5, workspace=workspace)  # the block's closing 1/sqrt(2): (y + conv) / 2
        if self.res_conv is None:
            return y.add_(x, alpha=INV_SQRT2)
        return add_conv1x1_(y, x, self.res_conv.weight, INV_SQRT2)


class CombinerDown(nn.Module):
    """Encoder pyramid: features <- (conv1x1(pyramid) + features) / sqrt(2), after both are downsampled."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(2, channels, 1, bias=False)

    def forward(self, pyramid: Tensor, features: Tensor) -> Tensor:
        return conv1x1(pyramid, self.conv1x1.weight, INV_SQRT2).add_(features, alpha=INV_SQRT2)


class CombinerUp(nn.Module):
    """Decoder pyramid: conv1x1(features) -> 2 channels, averaged with the (cropped) previous pyramid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(channels, 2, 1, bias=False)
        nn.init.zeros_(self.conv1x1.weight)  # the network starts by predicting zero

    def forward(self, pyramid: Tensor | None, features: Tensor) -> Tensor:
        if pyramid is None:
            return conv1x1(features, self.conv1x1.weight)
        out = conv1x1(features, self.conv1x1.weight, INV_SQRT2)
        return out.add_(pyramid[..., : out.shape[-1]], alpha=INV_SQRT2)


# --- the network ------------------------------------------------------------------------------


class CQTUNet(nn.Module):
    """F(x, c_noise): audio (batch, length) and c_noise (batch, 1) -> audio (batch, length)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        channels, levels = config.channels, config.levels
        self.embedding = NoiseEmbedding(config.noise_features, config.noise_mlp, config.fourier_scale)
        self.freq_encoding = FrequencyEmbedding(config.freq_features, config.rows, config.fourier_scale)
        self.init_conv = nn.Conv2d(2 + 2 * config.freq_features, channels[0], config.kernel_size, bias=False)
        self.downs = nn.ModuleList()
        for i in range(levels):
            modules = [ResidualBlock(config, channels[max(i - 1, 0)], channels[i], config.level_dilations(i))]
            if i < levels - 1:
                modules += [TimeResample(up=False), CombinerDown(channels[i])]
            self.downs.append(nn.ModuleList(modules))
        middle = ResidualBlock(config, channels[-1], channels[-1], config.level_dilations(levels - 1))
        self.middle = nn.ModuleList([nn.ModuleList([middle])])
        self.ups = nn.ModuleList()
        for i in reversed(range(levels)):
            modules = [
                ResidualBlock(config, 2 * channels[i], channels[max(i - 1, 0)], config.level_dilations(i))
            ]
            if i > 0:
                modules += [TimeResample(up=True), CombinerUp(channels[i - 1])]
            self.ups.append(nn.ModuleList(modules))
        # Time mixers after the coarse levels' blocks (keys only where there is one: old layouts keep theirs).
        mixer = lambda width: build_mixer(  # noqa: E731
            config.time_mixer, width, config.attention_heads, config.time_dilations
        )
        coarse = [i for i in range(levels) if config.has_mixer(i)]
        self.time_down = nn.ModuleDict({str(i): mixer(channels[i]) for i in coarse})
        self.time_middle = mixer(channels[-1]) if coarse else None
        self.time_up = nn.ModuleDict({str(i): mixer(channels[max(i - 1, 0)]) for i in coarse})
        gate = lambda width: FrequencyGate(  # noqa: E731
            width, config.freq_gate_bands, config.freq_gate_basis, config.freq_gate_hidden, config.rows
        )
        fine = [i for i in range(levels) if config.has_gate(i)]
        self.gate_down = nn.ModuleDict({str(i): gate(channels[i]) for i in fine})
        self.gate_up = nn.ModuleDict({str(i): gate(channels[max(i - 1, 0)]) for i in fine})
        self.mask_head = None
        if config.output_mask:
            self.mask_head = nn.Conv2d(channels[0], 1, 1, bias=False)
            nn.init.zeros_(self.mask_head.weight)  # no mask at the start: the same function as without
        self.min_length = min_length(config)
        self.checkpoint_blocks = False  # recompute each block in backward: less memory, ~1/3 more time
        self._transforms: OrderedDict[int, CQT] = OrderedDict()  # not submodules: no state-dict entries

    def transform(self, length: int) -> CQT:
        """The CQT for signals of ``length`` samples (the last few lengths are kept)."""
        if length not in self._transforms:
            cfg = self.config
            self._transforms[length] = CQT(
                cfg.sample_rate, length, cfg.bins_per_octave, cfg.octaves, cfg.min_window_hz
            )
            while len(self._transforms) > 8:
                self._transforms.popitem(last=False)
        self._transforms.move_to_end(length)
        return self._transforms[length]

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        """F(x, c_noise): x (batch, length), c_noise (batch, 1), (batch,) or one value -> (batch, length)."""
        if x.dim() != 2:
            raise ValueError(f"expected audio of shape (batch, length), got {tuple(x.shape)}")
        length = x.shape[-1]
        padded = max(length, self.min_length)
        x = F.pad(x, (0, padded - length)) if padded > length else x
        cqt = self.transform(padded)
        embedding = self.embedding(c_noise.reshape(-1, 1).to(x.dtype))
        coefficients = self.unet(cqt(x), embedding)
        return cqt.inverse(coefficients)[:, :length]

    def _block(self, block: ResidualBlock, x: Tensor, embedding: Tensor) -> Tensor:
        if self.checkpoint_blocks and torch.is_grad_enabled():
            return checkpoint(block, x, embedding, use_reentrant=False)
        return block(x, embedding)

    def unet(self, coefficients: Tensor, embedding: Tensor) -> Tensor:
        """The U-Net on transform coefficients (batch, 2, rows, frames) -> (batch, 2, rows, frames).

        Features are kept channels-last: the depthwise resampling, the 1x1 convolutions (matrix
        products) and oneDNN's 5x3 convolutions are all fastest in that layout on CPUs.
        """
        pyramid = coefficients.contiguous(memory_format=torch.channels_last)
        weight = self.init_conv.weight
        x = reflect_conv(pyramid, weight[:, :2])
        if self.config.freq_features:
            x = x.add_(self.freq_encoding.input_bias(weight))
        skips = []
        for level, modules in enumerate(self.downs):
            x = self._block(modules[0], x, embedding)
            if str(level) in self.time_down:
                x = self.time_down[str(level)](x)
            if str(level) in self.gate_down:
                x = self.gate_down[str(level)](x)
            skips.append(x)
            if len(modules) > 1:
                _, downsample, combiner = modules
                pyramid = downsample(pyramid)
                x = combiner(pyramid, downsample(x))
        x = self._block(self.middle[0][0], x, embedding)
        if self.time_middle is not None:
            x = self.time_middle(x)
        pyramid, combiner = None, None
        for level, modules in zip(reversed(range(len(self.ups))), self.ups, strict=True):
            skip = skips.pop()
            x = self._block(modules[0], torch.cat([x[..., : skip.shape[-1]], skip], dim=1), embedding)
            if str(level) in self.time_up:
                x = self.time_up[str(level)](x)
            if str(level) in self.gate_up:
                x = self.gate_up[str(level)](x)
            if len(modules) > 1:  # the last level reuses the previous level's combiner, as the reference does
                combiner = modules[2]
            pyramid = combiner(pyramid, x)
            if len(modules) > 1:
                x, pyramid = modules[1](x), modules[1](pyramid)
        if self.mask_head is not None:  # + m ⊙ input, one real gain m per cell from the finest features
            return pyramid + conv1x1(x, self.mask_head.weight) * coefficients
        return pyramid


def config_frames(config: UNetConfig, length: int) -> int:
    """Time frames of the transform that ``config`` builds for ``length`` samples."""
    return frame_layout(
        config.sample_rate, length, config.bins_per_octave, config.octaves, config.min_window_hz
    ).frames


def min_length(config: UNetConfig) -> int:
    """Shortest input whose deepest level keeps 2 frames (``frames > 2 ** (levels - 1)``)."""

    def long_enough(length: int) -> bool:
        return config_frames(config, length) > 2 ** (config.levels - 1)

    low, high = 7, 8  # the transform needs 8 samples; bisect, as the frame count grows with the length
    while not long_enough(high):
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if long_enough(mid) else (mid, high)
    return high


def grows_from(old: UNetConfig, new: UNetConfig) -> bool:
    """Whether ``new`` is ``old`` grown so that ``old``'s trained weights give it the same function
    (``load_grown``): frequency gates or time mixers added to a layout without them (both start as
    the identity), an output mask, and/or the finest level twice as wide (each channel split in two,
    Net2Net)."""
    mixers = old.time_mixer == "none" or not old.time_levels
    same = (
        replace(
            new,
            freq_gate_levels=old.freq_gate_levels,
            channels=old.channels,
            output_mask=old.output_mask,
            **({"time_mixer": old.time_mixer, "time_levels": old.time_levels} if mixers else {}),
        )
        == old
    )
    first, second = old.channels[:2]
    wider = new.channels == old.channels or (
        new.channels[0] == 2 * first
        and new.channels[1:] == old.channels[1:]
        # the blocks next to the finest level keep their residual projections (width in != width out)
        and (2 * second != first) == (second != first)
        and (first != second) == (2 * first != second)
    )
    return (
        same and wider and new.freq_gate_levels >= old.freq_gate_levels and new.output_mask >= old.output_mask
    )


def load_grown(
    network: CQTUNet,
    state: dict[str, Tensor],
    old: UNetConfig | None = None,
    jitter: float = 0.0,
    seed: int = 0,
) -> CQTUNet:
    """Load the weights of a layout ``network`` grows from (``grows_from``; ``old`` its config when the
    finest level was widened): new gates, time mixers and masks stay the identity; a widened level's
    channels are copied in pairs, with the weights reading them halved (Chen et al. 2016,
    Net2WiderNet), so the function is the same. ``jitter``: noise of this fraction of each widened
    weight's std on the copies' rows, so that the pairs can part in training (the function then
    changes by about as much)."""
    if old is not None and old.channels != network.config.channels:
        state = widen_finest_level(state, old, network.config, jitter, seed)
    own = network.state_dict()
    if any(key in own and own[key].shape != value.shape for key, value in state.items()):
        raise ValueError("not a grown layout: tensor shapes differ (a widened level needs ``old``)")
    missing, unexpected = network.load_state_dict(state, strict=False)
    new_parts = ("gate_down.", "gate_up.", "mask_head.", "time_down.", "time_up.", "time_middle.")
    grown = [key for key in missing if not key.startswith(new_parts)]
    if unexpected or grown:
        raise ValueError(f"not a grown layout: missing {grown[:3]}, unexpected {unexpected[:3]}")
    return network


def widen_finest_level(
    state: dict[str, Tensor], old: UNetConfig, new: UNetConfig, jitter: float = 0.0, seed: int = 0
) -> dict[str, Tensor]:
    """``state`` of ``old`` -> the same function with the finest level's C channels doubled (Net2Net).

    New channel k copies old channel k mod C. Weights writing those channels (rows) are repeated;
    weights reading them (columns) are repeated and halved, so every sum is unchanged; FiLM scales and
    biases are repeated. The finest decoder block reads [features, skip] (2C, each half widened)."""
    width = old.channels[0]
    concat_block = f"ups.{old.levels - 1}.0."
    generator = torch.Generator().manual_seed(seed)
    target = CQTUNet(
        replace(new, freq_gate_levels=old.freq_gate_levels, output_mask=old.output_mask)
    ).state_dict()
    widened = {}
    for key, value in state.items():
        shape = target[key].shape
        if value.shape == shape:
            widened[key] = value
            continue
        reads = key.endswith("weight") and value.dim() >= 2 and ".film." not in key
        for dim in range(value.dim()):
            if shape[dim] == value.shape[dim]:
                continue
            if shape[dim] != 2 * value.shape[dim]:
                raise ValueError(f"{key}: {tuple(value.shape)} does not widen to {tuple(shape)}")
            halves = 2 if key.startswith(concat_block) and value.shape[dim] == 2 * width else 1
            parts = value.chunk(halves, dim)
            value = torch.cat([part for piece in parts for part in (piece, piece)], dim)
            if reads and dim == 1:
                value = value / 2
        if jitter and reads and shape[0] != state[key].shape[0]:  # convolutions' rows [C:] are the copies
            noise = torch.randn(value.shape, generator=generator, dtype=torch.float64).to(value.dtype)
            copies = torch.zeros_like(value)
            copies[state[key].shape[0] :] = 1  # the second copy of each row
            value = value + jitter * value.std() * noise * copies
        widened[key] = value
    return widened


def build_unet(preset_or_config: str | UNetConfig) -> CQTUNet:
    """The raw network F for a preset name (``PRESETS``) or a ``UNetConfig``, randomly initialised."""
    return CQTUNet(resolve_config(preset_or_config))


def level_frames(config: UNetConfig, length: int) -> list[int]:
    """Time frames at each level for a ``length``-sample input (after padding to ``min_length``)."""
    length = max(length, min_length(config))
    frames = [config_frames(config, length)]
    for _ in range(config.levels - 1):
        frames.append(-(-frames[-1] // 2))
    return frames


def flops_per_window(config: str | UNetConfig, length: int = 65536) -> int:
    """Multiply-adds x 2 of one network evaluation on one ``length``-sample window (batch 1).

    Counts every convolution, matrix product and resampling filter as computed here (the
    frequency table's share of the first convolution is computed once per row, not per frame);
    element-wise work and the transform's FFTs are not counted.
    """
    cfg = resolve_config(config)
    rows, taps, width = cfg.rows, cfg.kernel_size[0] * cfg.kernel_size[1], cfg.noise_mlp[-1]
    frames, channels = level_frames(cfg, length), cfg.channels
    sizes = (2 * cfg.noise_features, *cfg.noise_mlp)
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    macs += rows * (2 * taps * frames[0] + 2 * cfg.freq_features * cfg.kernel_size[0]) * channels[0]

    def block(c_in: int, c_out: int, t: int, level: int) -> int:
        projections = 2 if c_in != c_out else 1  # first 1x1 conv, plus the residual 1x1 conv
        layers = cfg.layers_per_level[level]
        return width * c_in + rows * t * (projections * c_in * c_out + layers * taps * c_out**2)

    def mixer(c: int, t: int, level: int) -> int:
        if not cfg.has_mixer(level):
            return 0
        if cfg.time_mixer == "attention":
            return rows * t * (4 * c**2 + 2 * t * c)
        return rows * t * len(cfg.time_dilations) * 3 * c**2

    def gate(c: int, t: int, level: int) -> int:
        if not cfg.has_gate(level):
            return 0
        bands, basis, hidden = cfg.freq_gate_bands, cfg.freq_gate_basis, cfg.freq_gate_hidden
        return t * (hidden * c * (bands + basis) + c * rows * basis)

    down_taps, up_taps = sinc_resample_kernel(2, 1).shape[-1], sinc_resample_kernel(1, 2).numel()
    for i in range(cfg.levels):
        macs += block(channels[max(i - 1, 0)], channels[i], frames[i], i) + mixer(channels[i], frames[i], i)
        macs += gate(channels[i], frames[i], i)
        if i < cfg.levels - 1:  # resample features and pyramid, then the 2 -> C combiner
            macs += rows * frames[i + 1] * ((channels[i] + 2) * down_taps + 2 * channels[i])
    macs += block(channels[-1], channels[-1], frames[-1], cfg.levels - 1)
    macs += mixer(channels[-1], frames[-1], cfg.levels - 1)
    if cfg.output_mask:
        macs += rows * frames[0] * channels[0]
    for i in reversed(range(cfg.levels)):
        c_out = channels[max(i - 1, 0)]
        macs += block(2 * channels[i], c_out, frames[i], i) + rows * frames[i] * 2 * c_out
        macs += mixer(c_out, frames[i], i) + gate(c_out, frames[i], i)
        if i > 0:
            macs += rows * frames[i] * (c_out + 2) * up_taps
    return 2 * macs


# --- reference checkpoints --------------------------------------------------------------------


def config_from_state_dict(
    state: dict[str, Tensor],
    *,
    sample_rate: int = 22050,
    bins_per_octave: int = 64,
    octaves: int = 7,
    dilation_growth: int = 2,
) -> UNetConfig:
    """Read the layout (channels, dilated layers, kernel, embedding sizes) off a state dict's shapes.

    What shapes cannot tell (the transform settings, the dilation growth) is given; the defaults
    are the reference's.
    """
    levels = 0
    while f"downs.{levels}.0.first_conv.1.weight" in state:
        levels += 1
    layers = 0
    while f"downs.0.0.H.{layers}.conv.weight" in state:
        layers += 1
    widths, k = [], 0
    while f"embedding.MLP.{k}.weight" in state:
        widths.append(state[f"embedding.MLP.{k}.weight"].shape[0])
        k += 1
    if levels == 0 or layers == 0 or not widths:
        raise ValueError("not a CQT-Diff U-Net state dict (no downs.*.0.first_conv / H / embedding.MLP keys)")
    config = UNetConfig(
        channels=tuple(state[f"downs.{i}.0.first_conv.1.weight"].shape[0] for i in range(levels)),
        dilated_layers=layers,
        dilation_growth=dilation_growth,
        kernel_size=tuple(state["downs.0.0.H.0.conv.weight"].shape[2:]),
        bins_per_octave=bins_per_octave,
        octaves=octaves,
        sample_rate=sample_rate,
        noise_features=state["embedding.RFF_freq"].shape[1],
        noise_mlp=tuple(widths),
        freq_features=state["freq_encoding.RFF_freq"].shape[1],
    )
    rows = state["freq_encoding.embeddings"].shape[-1]
    if rows != config.rows:
        raise ValueError(
            f"the checkpoint has {rows} frequency rows; bins_per_octave * octaves + 2 is {config.rows}"
        )
    return config


def reference_parameter_names(state: dict[str, Tensor]) -> list[str]:
    """Names in the reference's ``model.parameters()`` order (its EMA list follows it).

    The random-Fourier tables are frozen parameters there and buffers here; only the resampler
    kernels are buffers in both, so the order is the state-dict order without them.
    """
    return [key for key in state if not key.endswith(RESAMPLER_SUFFIX)]


def convert_reference_state(checkpoint: dict, *, ema: bool = True) -> dict[str, Tensor]:
    """A reference trainer checkpoint ``{"step", "model", "ema_weights"}`` -> a state dict.

    With ``ema`` the trained tensors come from ``ema_weights``, a list in the reference
    ``model.parameters()`` order: the state-dict order without the resampler-kernel buffers.
    Fixed tensors (random-Fourier tables, resampler kernels if present) come from ``model``.
    """
    state = {key.removeprefix("module."): value for key, value in checkpoint["model"].items()}
    if not ema:
        return state
    names = reference_parameter_names(state)
    weights = checkpoint.get("ema_weights")
    if weights is None or len(weights) != len(names):
        count = 0 if weights is None else len(weights)
        raise ValueError(f"ema_weights holds {count} tensors but the model has {len(names)} parameters")
    for name, weight in zip(names, weights, strict=True):
        if weight.shape != state[name].shape:
            expected = tuple(state[name].shape)
            raise ValueError(f"EMA tensor for {name} has shape {tuple(weight.shape)}, expected {expected}")
        state[name] = weight
    return state


def load_reference_state(network: CQTUNet, state: dict[str, Tensor]) -> CQTUNet:
    """Load a reference-layout state dict strictly; resampler kernels may be absent (they are fixed)."""
    state = dict(state)
    for key, value in network.state_dict().items():
        if key.endswith(RESAMPLER_SUFFIX):
            state.setdefault(key, value)
    network.load_state_dict(state, strict=True)
    return network


def load_reference_checkpoint(
    path: str | os.PathLike,
    *,
    ema: bool = True,
    sample_rate: int = 22050,
    bins_per_octave: int = 64,
    octaves: int = 7,
) -> CQTUNet:
    """Build the network from a reference-format checkpoint (EMA weights unless ``ema=False``).

    The file is read with ``torch.load(weights_only=True)``: tensors and plain containers only.
    The transform settings are not stored in the checkpoint; the defaults are the paper's.
    """
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise ValueError(f"{path} is not a reference checkpoint (a dict with 'model' and 'ema_weights')")
    state = convert_reference_state(checkpoint, ema=ema)
    config = config_from_state_dict(
        state, sample_rate=sample_rate, bins_per_octave=bins_per_octave, octaves=octaves
    )
    return load_reference_state(CQTUNet(config), state).eval()
