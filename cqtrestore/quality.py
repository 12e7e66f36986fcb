"""Quality presets: what ``--quality fast|balanced|best`` means for each task (solver, steps, warm start,
guidance), chosen from the quality-versus-evaluations curves of ``bench/sampler.py`` (docs/benchmarks.md).

``best`` is the paper's sampler as the project ran it before the presets (stochastic Heun, T = 35,
S_churn = 5, from noise at σ_max = 1): 69 evaluations. ``balanced`` (the default) and ``fast`` start
from the classical estimate noised to a small σ₀ (``cqtrestore.warmstart``) and take few
DPM-Solver++(2M) steps below it; reconstruction guidance, where the task uses it, runs only at the
upper noise levels of that short schedule. ``balanced`` averages posterior draws for gaps (3) and
clipping (2), where the error that SI-SDR measures is partly one draw's own sampling noise (the mean of K
draws has 1/K of it; docs/benchmarks.md). Explicit options (``--steps``, ``--mode``, ``--draws``) override.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cqtrestore.blind import BlindLowPass
from cqtrestore.diffusion import SamplerOptions
from cqtrestore.guidance import GuidanceOptions, default_guidance
from cqtrestore.noise import Hiss
from cqtrestore.operators import Clip, Compose, Gap, LowPass, Operator, Stack
from cqtrestore.warmstart import has_estimate

QUALITIES = ("fast", "balanced", "best")
DEFAULT_QUALITY = "balanced"
TASKS = ("bwe", "inpaint", "declip", "denoise", "composite")


@dataclass(frozen=True)
class Plan:
    """What a preset resolves to for one operator."""

    sampler: SamplerOptions
    guidance: GuidanceOptions
    warm_start: bool  # start from the classical estimate noised to sampler.sigma_max
    draws: int = 1  # posterior draws per window, averaged

    @property
    def evaluations(self) -> int:
        """Network evaluations per window (a reconstruction-guidance one costs about 2.5x a DC one)."""
        return self.sampler.evaluations * self.draws


@dataclass(frozen=True)
class Setting:
    """One task's entry of a preset: solver, steps, σ₀ (warm start; None: from noise at σ_max = 1), churn,
    the lowest σ at which reconstruction guidance, and the projection, still run, and the posterior draws
    averaged per window."""

    solver: str
    steps: int
    sigma_start: float | None
    s_churn: float = 0.0
    rg_sigma_min: float = 0.0
    dc_sigma_min: float = 0.0
    draws: int = 1


HISS_LEVEL = 1.0  # hiss: a placeholder, sampling starts from y at the noise's own level (cqtrestore.noise)
BEST = Setting("heun", 35, None, s_churn=5.0)
PRESETS: dict[str, dict[str, Setting]] = {
    "best": dict.fromkeys(TASKS, BEST),
    "balanced": {
        "bwe": Setting("dpmpp2m", 6, 0.2),
        "inpaint": Setting("dpmpp2m", 5, 0.05, rg_sigma_min=0.01, draws=3),
        "declip": Setting("dpmpp2m", 5, 0.02, rg_sigma_min=0.005, dc_sigma_min=0.005, draws=2),
        "denoise": Setting("dpmpp2m", 6, HISS_LEVEL),
        "composite": Setting("dpmpp2m", 8, 0.2, rg_sigma_min=0.01),
    },
    "fast": {
        "bwe": Setting("dpmpp2m", 4, 0.2),
        "inpaint": Setting("dpmpp2m", 4, 0.05, rg_sigma_min=0.01),
        "declip": Setting("dpmpp2m", 4, 0.02, rg_sigma_min=0.005, dc_sigma_min=0.005),
        "denoise": Setting("dpmpp2m", 4, HISS_LEVEL),
        "composite": Setting("dpmpp2m", 6, 0.2, rg_sigma_min=0.01),
    },
}


def task_of(operator: Operator) -> str:
    """'bwe', 'inpaint' or 'declip' when every part of the operator is of that one kind, else 'composite'."""
    parts = operator.operators if isinstance(operator, Compose | Stack) else (operator,)
    flat = [p for part in parts for p in (part.operators if isinstance(part, Compose) else (part,))]
    kinds = (("bwe", LowPass | BlindLowPass), ("inpaint", Gap), ("declip", Clip), ("denoise", Hiss))
    for task, kind in kinds:
        if flat and all(isinstance(part, kind) for part in flat):
            return task
    return "composite"


def resolve(quality: str, operator: Operator, xi: float = 0.35) -> Plan:
    """The preset ``quality`` for ``operator``: its sampler, guidance and warm start."""
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}: use one of {', '.join(QUALITIES)}")
    setting = PRESETS[quality][task_of(operator)]
    warm = (setting.sigma_start is not None or isinstance(operator, Hiss)) and has_estimate(operator)
    sampler = SamplerOptions(
        steps=setting.steps,
        sigma_max=setting.sigma_start if warm else 1.0,
        s_churn=setting.s_churn,
        solver=setting.solver,
    )
    guidance = replace(
        default_guidance(operator, xi), rg_sigma_min=setting.rg_sigma_min, dc_sigma_min=setting.dc_sigma_min
    )
    return Plan(sampler, guidance, warm, setting.draws)
