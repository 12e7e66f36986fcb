"""Invertible constant-Q transform: a rasterised non-stationary Gabor frame computed with FFTs (paper §2.3).

The frame has ``bins_per_octave * octaves`` log-spaced Hann windows in frequency from
``sample_rate / 2 / 2**octaves`` up to Nyquist, plus a DC and a Nyquist window. Every row is
rasterised to the frame count of the widest window, so the coefficients form a regular
``(batch, 2, rows, frames)`` grid (channel 0 real, 1 imaginary; row 0 DC, the last row Nyquist).
The inverse uses the canonical dual frame (the frame operator is diagonal in frequency), so
``inverse(forward(x)) == x`` up to float rounding. Layout and scaling match the reference
implementation of CQT-Diff, so networks trained there see the same coefficients here.

Windows are at least ``MIN_WINDOW_BINS`` FFT bins wide, as in the reference; that floor is fixed in bins,
so at 22.05 kHz the rows below about 124 Hz (2^16 samples), 248 Hz (2^15) or 500 Hz (2^14) are wider in
Hz the shorter the signal. ``min_window_hz`` raises the floor to a width in Hz instead, the same at every
length from ``MIN_WINDOW_BINS * sample_rate / min_window_hz`` samples up: a network trained on short crops
then sees its lowest rows as it learnt them on long windows too (``UNetConfig.min_window_hz``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class FrameLayout:
    """Window placement of the full frame (non-negative rows then their mirror images), float64."""

    sample_rate: int
    length: int
    centres_hz: np.ndarray  # (rows,) nominal centres: DC, the log-spaced bins, Nyquist
    window_lengths: np.ndarray  # (2 * rows - 2,) window support in FFT bins
    centre_bins: np.ndarray  # (2 * rows - 2,) rounded centre FFT bin of each window
    frames: int  # time frames per row: the widest non-negative window

    @property
    def rows(self) -> int:
        """Number of coefficient rows (non-negative frequency windows)."""
        return len(self.centres_hz)


MIN_WINDOW_BINS = 4  # the reference's narrowest window, in FFT bins


def min_window_bins(sample_rate: int, length: int, min_window_hz: float = 0.0) -> int:
    """The narrowest window in FFT bins of ``length`` points: MIN_WINDOW_BINS or ``min_window_hz``."""
    return max(MIN_WINDOW_BINS, round(min_window_hz * length / sample_rate))


@functools.lru_cache(maxsize=32)
def frame_layout(
    sample_rate: int, length: int, bins_per_octave: int = 64, octaves: int = 7, min_window_hz: float = 0.0
) -> FrameLayout:
    """Place the frame's windows for a signal of ``length`` samples (the reference's construction; with
    ``min_window_hz``, no window narrower than that)."""
    if length < 8:
        raise ValueError(f"the CQT needs at least 8 samples, got {length}")
    n_bins = bins_per_octave * octaves
    nyquist = sample_rate / 2
    ratio = 2.0 ** (octaves / (n_bins - 1))
    log_centres = nyquist / 2**octaves * ratio ** np.arange(n_bins)
    centres_hz = np.concatenate([[0.0], log_centres, [nyquist]])
    # Mirror every centre except DC and Nyquist to negative frequencies, then convert to FFT bins.
    bins = np.concatenate([centres_hz, sample_rate - centres_hz[-2:0:-1]]) * length / sample_rate
    lengths = np.empty(len(bins), dtype=np.int64)
    lengths[0] = np.round(2 * bins[1])
    lengths[1:-1] = np.round(bins[2:] - bins[:-2])  # neighbour to neighbour
    lengths[-1] = np.round(length - bins[-2])
    lengths = np.maximum(lengths, min_window_bins(sample_rate, length, min_window_hz))
    # The last log-spaced centre coincides with Nyquist: move it (and its mirror) half-way between neighbours.
    placed = bins.copy()
    placed[n_bins] = (placed[n_bins - 1] + placed[n_bins + 1]) / 2
    placed[n_bins + 2] = (placed[n_bins + 3] + placed[n_bins + 1]) / 2
    centre_bins = np.round(placed).astype(np.int64)
    frames = int(lengths[: n_bins + 2].max())
    return FrameLayout(sample_rate, length, centres_hz, lengths, centre_bins, frames)


def hann_centred(n: int) -> np.ndarray:
    """Periodic Hann window of ``n`` samples stored with its peak at index 0."""
    return 0.5 + 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


@functools.lru_cache(maxsize=32)
def gather_tables(
    sample_rate: int, length: int, bins_per_octave: int = 64, octaves: int = 7, min_window_hz: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterised frame as (spectrum index, analysis weight, dual synthesis weight), each (rows, frames).

    Coefficient slot ``p mod frames`` of row ``j`` holds FFT bin ``(c_j + p) mod length`` for
    ``p`` in ``[-(n_j // 2), n_j - n_j // 2)``; unused slots point at bin 0 with weight 0.
    """
    layout = frame_layout(sample_rate, length, bins_per_octave, octaves, min_window_hz)
    frames, rows = layout.frames, layout.rows
    # Frame operator diagonal: sum of frames * g_j**2 over every window, mirrors included.
    diagonal = np.zeros(length)
    for n, centre in zip(layout.window_lengths, layout.centre_bins, strict=True):
        offsets = np.arange(-(n // 2), n - n // 2)
        np.add.at(diagonal, (centre + offsets) % length, frames * hann_centred(n)[offsets % n] ** 2)
    index = np.zeros((rows, frames), dtype=np.int64)
    analysis = np.zeros((rows, frames))
    synthesis = np.zeros((rows, frames))
    for row in range(rows):
        n, centre = layout.window_lengths[row], layout.centre_bins[row]
        offsets = np.arange(-(n // 2), n - n // 2)
        slots, spectrum_bins = offsets % frames, (centre + offsets) % length
        window = hann_centred(n)[offsets % n]
        index[row, slots] = spectrum_bins
        analysis[row, slots] = window
        synthesis[row, slots] = frames * window / diagonal[spectrum_bins]
    return index, analysis, synthesis


class CQT(nn.Module):
    """Constant-Q transform (batch, length) -> (batch, 2, rows, frames) with an exact inverse."""

    def __init__(
        self,
        sample_rate: int,
        length: int,
        bins_per_octave: int = 64,
        octaves: int = 7,
        min_window_hz: float = 0.0,
    ) -> None:
        super().__init__()
        if sample_rate <= 0 or bins_per_octave < 1 or octaves < 1:
            raise ValueError("sample_rate, bins_per_octave and octaves must be positive")
        if not 0 <= min_window_hz < sample_rate / 2:
            raise ValueError(f"min_window_hz must be from 0 to Nyquist, got {min_window_hz}")
        self.min_window_hz = float(min_window_hz)
        self.sample_rate = sample_rate
        self.length = length
        self.bins_per_octave = bins_per_octave
        self.octaves = octaves
        layout = self.layout(length)
        self.rows = layout.rows
        self.frames = layout.frames
        self._tables: dict[tuple[int, torch.dtype, torch.device], tuple[Tensor, Tensor, Tensor]] = {}

    def layout(self, length: int) -> FrameLayout:
        """The frame's window placement for signals of ``length`` samples."""
        return frame_layout(self.sample_rate, length, self.bins_per_octave, self.octaves, self.min_window_hz)

    def _tables_for(
        self, length: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor]:
        key = (length, dtype, device)
        if key not in self._tables:
            index, analysis, synthesis = gather_tables(
                self.sample_rate, length, self.bins_per_octave, self.octaves, self.min_window_hz
            )
            with torch.inference_mode(False):  # a cache made under inference mode could not serve autograd
                self._tables[key] = (
                    torch.as_tensor(index, device=device),
                    torch.as_tensor(analysis, dtype=dtype, device=device),
                    torch.as_tensor(synthesis, dtype=dtype, device=device),
                )
        return self._tables[key]

    def forward(self, x: Tensor) -> Tensor:
        """Analysis: audio (batch, length) -> coefficients (batch, 2, rows, frames)."""
        if x.dim() != 2:
            raise ValueError(f"expected audio of shape (batch, length), got {tuple(x.shape)}")
        index, analysis, _ = self._tables_for(x.shape[-1], x.dtype, x.device)
        spectrum = torch.fft.fft(x, dim=-1)
        rows = torch.fft.ifft(spectrum[:, index] * analysis, dim=-1)
        return torch.stack([rows.real, rows.imag], dim=1)

    def inverse(self, coefficients: Tensor, length: int | None = None) -> Tensor:
        """Synthesis with the canonical dual frame: (batch, 2, rows, frames) -> audio (batch, length)."""
        length = self.length if length is None else length
        index, _, synthesis = self._tables_for(length, coefficients.dtype, coefficients.device)
        if coefficients.dim() != 4 or coefficients.shape[1:] != (2, *index.shape):
            raise ValueError(
                f"expected coefficients of shape (batch, 2, {index.shape[0]}, {index.shape[1]}) "
                f"for {length} samples, got {tuple(coefficients.shape)}"
            )
        rows = torch.fft.fft(torch.complex(coefficients[:, 0], coefficients[:, 1]), dim=-1) * synthesis
        spectrum = rows.new_zeros(rows.shape[0], length).index_add(1, index.flatten(), rows.flatten(1))
        return torch.fft.irfft(spectrum[:, : length // 2 + 1], n=length, dim=-1)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, length={self.length}, bins_per_octave={self.bins_per_octave}, "
            f"octaves={self.octaves}, min_window_hz={self.min_window_hz:g}, rows={self.rows}, "
            f"frames={self.frames}"
        )
