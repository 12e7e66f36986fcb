"""Warm starts: the classical restoration of an observation, to start the sampler from instead of noise.

Come-Closer-Diffuse-Faster (Chung et al., CVPR 2022) and SDEdit: noise a good estimate x̃ to a level
σ₀ ≪ σ_max, x = x̃ + σ₀·ε, and run only the sampler's steps below σ₀. The estimates are the baselines
the prior is measured against: linear prediction for gaps, A-SPADE for clipping. For a lowpass it is the
observation itself, not the spectral-envelope noise fill: measured on the piano prior (bench/sampler.py,
docs/benchmarks.md), the noise fill's extrapolated envelope can be far too loud from 1 kHz (SI-SDR
−40 dB on one of two valid segments after the warm start, against +10 dB from noise), and from 3 kHz it
did not beat a start from noise either. A chain's estimate undoes its parts in reverse order (hiss: y itself).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from cqtrestore.aspade import aspade_declip
from cqtrestore.baselines import lpc_inpaint
from cqtrestore.blind import BlindLowPass
from cqtrestore.noise import Hiss
from cqtrestore.operators import Clip, Compose, Gap, LowPass, Operator, Stack


def has_estimate(operator: Operator) -> bool:
    """Whether ``classical_estimate`` has a method for this operator (every item's, for a stack)."""
    if isinstance(operator, Stack | Compose):
        return all(has_estimate(part) for part in operator.operators)
    return isinstance(operator, LowPass | BlindLowPass | Gap | Clip | Hiss)


def classical_estimate(operator: Operator, y: Tensor) -> Tensor:
    """The classical restoration of every item of y (batch, length), row by row (each row its own
    operator in a ``Stack``). ValueError for an operator without one (see ``has_estimate``)."""
    if not has_estimate(operator):
        raise ValueError(f"no classical estimate for {operator.describe()}: start from noise")
    parts = operator.operators if isinstance(operator, Stack) else (operator,) * len(y)
    rows = [_estimate(part, row[None]) for part, row in zip(parts, y, strict=True)]
    return torch.cat(rows)


def _estimate(operator: Operator, y: Tensor) -> Tensor:
    if isinstance(operator, Compose):  # y = A_k(… A_1(x)): undo the last degradation first
        for part in reversed(operator.operators):
            y = _estimate(part, y)
        return y
    if isinstance(operator, LowPass | BlindLowPass | Hiss):
        return y.clone()  # the observed band; the missing one is left to the sampler (see above)
    if isinstance(operator, Gap):
        return lpc_inpaint(y, operator)
    row = y[0].detach().cpu().double().numpy()
    restored = aspade_declip(
        row, operator.threshold, tolerance=operator.tolerance, workers=torch.get_num_threads()
    )
    return torch.from_numpy(np.asarray(restored))[None].to(y)
