"""Warm starts: the classical restoration of an observation, to start the sampler from instead of noise.

Come-Closer-Diffuse-Faster (Chung et al., CVPR 2022) and SDEdit: noise a good estimate x̃ to a level
σ₀ ≪ σ_max, x = x̃ + σ₀·ε, and run only the sampler's steps below σ₀. The estimates are the baselines
the prior is measured against: the spectral-envelope noise fill for a lowpass, linear prediction for
gaps, A-SPADE for clipping. Operators without one (chains, the identity) have no warm start.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from cqtrestore.aspade import aspade_declip
from cqtrestore.baselines import lpc_inpaint, noise_fill_bwe
from cqtrestore.operators import Clip, Gap, LowPass, Operator, Stack


def has_estimate(operator: Operator) -> bool:
    """Whether ``classical_estimate`` has a method for this operator (every item's, for a stack)."""
    if isinstance(operator, Stack):
        return all(has_estimate(part) for part in operator.operators)
    return isinstance(operator, LowPass | Gap | Clip)


def classical_estimate(
    operator: Operator, y: Tensor, generators: Sequence[torch.Generator] | None = None
) -> Tensor:
    """The baseline's restoration of every item of y (batch, length); item i's noise (for the noise
    fill) from ``generators[i]``. ValueError for an operator without one (see ``has_estimate``)."""
    if not has_estimate(operator):
        raise ValueError(f"no classical estimate for {operator.describe()}: start from noise")
    parts = operator.operators if isinstance(operator, Stack) else (operator,) * len(y)
    generators = generators or [None] * len(y)
    rows = [_estimate(part, row[None], g) for part, row, g in zip(parts, y, generators, strict=True)]
    return torch.cat(rows)


def _estimate(operator: Operator, y: Tensor, generator: torch.Generator | None) -> Tensor:
    if isinstance(operator, LowPass):
        return noise_fill_bwe(y, operator, generator)
    if isinstance(operator, Gap):
        return lpc_inpaint(y, operator)
    restored = aspade_declip(y[0].detach().cpu().double().numpy(), operator.threshold)
    return torch.from_numpy(np.asarray(restored))[None].to(y)
