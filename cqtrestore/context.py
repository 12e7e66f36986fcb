"""Long context for the U-Net: along time at the coarse levels (self-attention or dilated convolutions),
and across the whole spectrum at the fine levels (a frequency gate).

The U-Net's residual blocks mix frequency widely (dilated 5x3 convolutions) but time only by ±1 frame
per layer, so at high noise levels nothing sees more than a fraction of a second. These mixers sit
after the blocks of the coarsest levels, where a frame is 30-270 ms of audio and a layer costs 1/2^k of
one at full resolution. Both act on every frequency row separately (frequency is mixed by the blocks),
keep the (batch, channels, rows, frames) shape, work for any number of frames, and start as the
identity (zero-initialised output), so a fresh network is still the spectral Gaussian prior.

The frequency gate answers the opposite lack: the fine levels' blocks see only a few frequency rows,
so a quiet frame's high rows cannot tell that the frame is quiet (docs/model-card.md). The gate gives
every frame a gain curve over frequency computed from the whole frame's band levels. It too starts as
the identity, so it can be added to a trained network without changing its function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIXERS = ("none", "attention", "dilated")


class TimeAttention(nn.Module):
    """x + W_o·MHA(LN(x)) along time within each frequency row (pre-norm; no positional encoding:
    the convolutions around it give each frame its local context, and any length works)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} attention heads")
        self.heads = heads
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.out = nn.Linear(channels, channels, bias=False)
        nn.init.zeros_(self.out.weight)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, channels, rows, frames) -> the same shape."""
        batch, channels, rows, frames = x.shape
        tokens = x.permute(0, 2, 3, 1)  # (batch, rows, frames, channels): a channels-last view
        qkv = self.qkv(self.norm(tokens)).reshape(batch * rows, frames, 3, self.heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch * rows, heads, frames, head width)
        mixed = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, rows, frames, channels)
        return x + self.out(mixed).permute(0, 3, 1, 2)

    def flops(self, rows: int, frames: int) -> int:
        """Multiply-adds x 2 on one item (projections and the two attention products)."""
        channels = self.qkv.in_features
        return 2 * rows * frames * (4 * channels**2 + 2 * frames * channels)


class TimeDilated(nn.Module):
    """x <- x + conv_t(GELU(x)) for each time dilation: (1 x 3) convolutions along time, zero padded, so
    that a stack with dilations 1, 2, 4, 8 sees ±15 frames of its level."""

    def __init__(self, channels: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.dilations = tuple(dilations)
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, (1, 3), bias=False) for _ in self.dilations)
        for conv in self.convs:
            nn.init.zeros_(conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        for dilation, conv in zip(self.dilations, self.convs, strict=True):
            x = x + F.conv2d(F.gelu(x), conv.weight, padding=(0, dilation), dilation=(1, dilation))
        return x

    def flops(self, rows: int, frames: int) -> int:
        channels = self.convs[0].in_channels
        return 2 * rows * frames * len(self.dilations) * 3 * channels**2


class FrequencyGate(nn.Module):
    """x <- x · (1 + Σ_k basis_k(row) · g_k(frame)): a per-frame, per-channel gain curve over frequency.

    g comes from the frame's log mean-square level per channel in ``bands`` equal bands of rows,
    through a small MLP (GELU) whose zero-initialised output gives ``basis`` coefficients per channel
    on a fixed cosine basis over the rows. Cost: O(channels · rows · frames) plus the MLP per frame.
    """

    def __init__(self, channels: int, bands: int, basis: int, hidden: int, rows: int) -> None:
        super().__init__()
        self.bands, self.basis = bands, basis
        self.hidden = nn.Conv2d(channels * bands, hidden, 1)
        self.out = nn.Conv2d(hidden, channels * basis, 1, bias=False)
        nn.init.zeros_(self.out.weight)
        position = (torch.arange(rows, dtype=torch.float64) + 0.5) / rows
        cosines = torch.cos(math.pi * torch.arange(basis, dtype=torch.float64)[:, None] * position)
        self.register_buffer("cosines", cosines.float(), persistent=False)  # (basis, rows), fixed

    def forward(self, x: Tensor) -> Tensor:
        """(batch, channels, rows, frames) -> the same shape."""
        batch, channels, rows, frames = x.shape
        power = F.adaptive_avg_pool2d(x.square(), (self.bands, frames))  # (batch, channels, bands, frames)
        level = torch.log10(power + 1e-6).reshape(batch, channels * self.bands, 1, frames)
        coefficients = self.out(F.gelu(self.hidden(level))).reshape(batch, channels, self.basis, frames)
        gain = torch.einsum("bckt,kr->bcrt", coefficients, self.cosines.to(x.dtype))
        return x * (1 + gain)

    def flops(self, rows: int, frames: int) -> int:
        """Multiply-adds x 2 on one item: the MLP and the gain curve (element-wise work not counted)."""
        hidden = self.hidden.out_channels
        channels = self.out.out_channels // self.basis
        return 2 * frames * (hidden * channels * (self.bands + self.basis) + channels * rows * self.basis)


def build_mixer(kind: str, channels: int, heads: int, dilations: tuple[int, ...]) -> nn.Module:
    """A time mixer by name (``MIXERS``, not "none")."""
    if kind == "attention":
        return TimeAttention(channels, heads)
    if kind == "dilated":
        return TimeDilated(channels, dilations)
    raise ValueError(f"unknown time mixer {kind!r}; choose one of {MIXERS}")
