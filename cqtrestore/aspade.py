"""A-SPADE declipping baseline (Kitić et al. 2015; Záviška et al. 2019), written from the papers.

The clipped signal is cut into overlapping Hann-windowed blocks. In each block the analysis-sparse
problem  min ‖Ax‖₀  s.t.  x ∈ Γ  is attacked by ADMM with hard thresholding at a sparsity k that grows
by ``sparsity_step`` every ``grow_every`` iterations, where

- A is a Parseval frame: the block zero-padded to ``redundancy`` times its length, unitary DFT (held
  as the half spectrum of a real signal: every quantity below stays Hermitian, so rfft/irfft compute
  the same iterations at half the cost; norms count each conjugate pair twice);
- Γ is the clipping-consistent set: reliable samples equal the observation, samples clipped at +θ are
  ≥ θ (times the window), samples clipped at −θ are ≤ −θ (times the window).

One iteration (Záviška et al. 2019, Algorithm 1):
  z̄ = H_k(A x̂ + u);  x̂ = P_Γ(A*(z̄ − u));  u = u + A x̂ − z̄;  stop once ‖A x̂ − z̄‖₂ ≤ ε.
Blocks are overlap-added and divided by the summed window, a weighted average of consistent blocks, so
the output is consistent too. Numpy only: all blocks are processed at once, each stopping on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ASpadeOptions:
    """Block length and hop (samples), frame redundancy, sparsity schedule, tolerance ε, iteration cap."""

    block: int = 2048  # 93 ms at 22.05 kHz; 1024 converges faster but restores less at low SDR
    hop: int = 512
    redundancy: int = 2
    sparsity_step: int = 1
    grow_every: int = 1
    epsilon: float = 0.1
    max_iterations: int = 500

    def __post_init__(self) -> None:
        for name in ("block", "hop", "redundancy", "sparsity_step", "grow_every", "max_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"A-SPADE {name.replace('_', ' ')} must be an integer >= 1, got {value!r}")
        if self.hop > self.block:
            raise ValueError(f"A-SPADE hop ({self.hop}) must not exceed the block length ({self.block})")
        if not (np.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"A-SPADE epsilon must be finite and > 0, got {self.epsilon!r}")


def hard_threshold(coefficients: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Keep the k[b] largest-magnitude bins of each row of a real signal's half spectrum (rfft layout:
    each bin stands for a conjugate pair of the full spectrum)."""
    half = np.abs(coefficients)
    ordered = -np.sort(-half, axis=-1)
    kth = np.take_along_axis(ordered, np.minimum(k, half.shape[-1])[:, None] - 1, axis=-1)
    return np.where(half >= kth, coefficients, 0)  # ties at the k-th magnitude are all kept


def pair_norm(spectrum: np.ndarray, padded: int) -> np.ndarray:
    """Euclidean norm per row of the full spectrum whose rfft half is ``spectrum`` (``padded`` points)."""
    weights = np.full(spectrum.shape[-1], 2.0)
    weights[0] = 1.0
    if padded % 2 == 0:
        weights[-1] = 1.0
    return np.sqrt(np.sum(weights * np.abs(spectrum) ** 2, axis=-1))


def project_consistent(
    x: np.ndarray, observed: np.ndarray, reliable: np.ndarray, upper: np.ndarray, lower: np.ndarray
) -> np.ndarray:
    """P_Γ: reliable samples from the observation; clipped ones pushed beyond the clipping level."""
    out = np.where(reliable, observed, x)
    out = np.where(upper, np.maximum(x, observed), out)
    return np.where(lower, np.minimum(x, observed), out)


def aspade_blocks(
    blocks: np.ndarray,
    threshold: np.ndarray,
    window: np.ndarray,
    options: ASpadeOptions,
    tolerance: float = 1e-6,
) -> np.ndarray:
    """Declip windowed blocks (n_blocks, block) clipped at ±threshold·window (less the relative
    ``tolerance``); returns the same shape."""
    n_blocks, length = blocks.shape
    padded = length * options.redundancy
    level = threshold * (1 - tolerance) * window
    upper = blocks >= level - 1e-12
    lower = blocks <= -level + 1e-12
    upper, lower = upper & (window > 0), lower & (window > 0)
    reliable = ~(upper | lower)

    def analysis(x: np.ndarray) -> np.ndarray:
        return np.fft.rfft(x, padded, axis=-1, norm="ortho")

    def synthesis(z: np.ndarray) -> np.ndarray:
        return np.fft.irfft(z, padded, axis=-1, norm="ortho")[:, :length]

    x_hat = blocks.copy()
    u = np.zeros((n_blocks, padded // 2 + 1), dtype=complex)
    k = np.full(n_blocks, options.sparsity_step)
    active = upper.any(axis=1) | lower.any(axis=1)  # unclipped blocks are already consistent
    for iteration in range(1, options.max_iterations + 1):
        if not active.any():
            break
        rows = np.flatnonzero(active)
        z_bar = hard_threshold(analysis(x_hat[rows]) + u[rows], k[rows])
        x_new = project_consistent(
            synthesis(z_bar - u[rows]), blocks[rows], reliable[rows], upper[rows], lower[rows]
        )
        residual = analysis(x_new) - z_bar
        x_hat[rows], u[rows] = x_new, u[rows] + residual
        done = pair_norm(residual, padded) <= options.epsilon * threshold
        active[rows[done]] = False
        if iteration % options.grow_every == 0:
            k[rows] += options.sparsity_step
    return x_hat


def aspade_declip(
    y: np.ndarray, threshold: float, options: ASpadeOptions = ASpadeOptions(), tolerance: float = 1e-6
) -> np.ndarray:
    """Declip a 1-D signal y hard-clipped at ±threshold; consistent with y on its unclipped samples
    (samples within the relative ``tolerance`` of the threshold count as clipped)."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"A-SPADE takes a non-empty 1-D signal, got shape {y.shape}")
    if not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"clipping threshold must be finite and > 0, got {threshold!r}")
    block, hop = options.block, options.hop
    count = max(1, -(-(len(y) + block - hop) // hop))
    pad_left = block - hop
    padded = np.pad(y, (pad_left, count * hop + block - len(y) - pad_left))
    window = np.hanning(block + 1)[:block]  # periodic Hann: sums to a constant at hop block/4 and block/2
    starts = np.arange(count) * hop
    blocks = np.stack([padded[s : s + block] for s in starts]) * window
    restored = aspade_blocks(blocks, threshold, window, options, tolerance)
    total, weight = np.zeros(len(padded)), np.zeros(len(padded))
    for start, piece in zip(starts, restored, strict=True):
        total[start : start + block] += piece
        weight[start : start + block] += window
    out = total / np.maximum(weight, 1e-12)
    return np.where(weight > 1e-12, out, padded)[pad_left : pad_left + len(y)]
