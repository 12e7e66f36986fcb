"""Degradation operators y = A(x) for the three CQT-Diff tasks: bandwidth limitation, gaps and clipping.

Every operator acts on audio of shape (batch, length) (any leading shape works; time is the last
axis), returns an observation of the same shape, and uses torch ops only, so reconstruction guidance can
back-propagate through it. Operators with an exact data-consistency step set ``has_projection`` and
implement ``project``. This module is on the ground floor: it imports nothing from cqtrestore.
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

DEFAULT_ORDER = 500
# Kaiser's rule A = beta / 0.1102 + 8.7 dB: beta 8.0 gives about 81 dB of stopband attenuation and
# 0.001 dB of passband ripple; at order 500 the transition is about 225 Hz wide at 22.05 kHz (fc ± 113 Hz).
DEFAULT_BETA = 8.0
REFERENCE_NUMTAPS = 500
EXACT_TOLERANCE = 1e-6  # clipped samples of an observation at the model rate: |y| >= threshold, to rounding
# ... and of one resampled from another rate. Measured on a piano excerpt clipped at 44.1 or 48 kHz to 1, 5
# and 10 dB SDR, then resampled to 22.05 kHz: 5 % finds 97.5-100 % of the clipped samples and flags 0.5-2 %
# of the unclipped ones; the exact test finds only 51-54 %.
RESAMPLED_TOLERANCE = 0.05


class Operator(abc.ABC):
    """A degradation y = A(x) with an optional data-consistency projection and a one-line description."""

    has_projection: bool = False

    @abc.abstractmethod
    def __call__(self, x: Tensor) -> Tensor:
        """Apply the degradation: y = A(x), same shape as x."""

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Data consistency: correct x_hat so that A(result) matches the observation y."""
        raise NotImplementedError(
            f"{type(self).__name__} has no data-consistency projection; use reconstruction guidance"
        )

    def residual(self, y: Tensor, x_hat: Tensor) -> Tensor:
        """The misfit whose squared norm reconstruction guidance descends: y − A(x̂) (white noise)."""
        return y - self(x_hat)

    @abc.abstractmethod
    def describe(self) -> str:
        """One line saying what the operator does."""

    def window(self, start: int, length: int) -> Operator:
        """The operator as seen by the sub-signal x[start : start + length] (time-invariant: itself)."""
        return self

    @property
    def time_varying(self) -> bool:
        """True when ``window`` can differ between windows (gaps), so windows cannot share one batch."""
        return False

    def at_rate(self, sample_rate: int) -> Operator:
        """The same degradation for audio at ``sample_rate`` (rate-free operators: itself)."""
        return self

    def scaled(self, gain: float) -> Operator:
        """The degradation of ``gain * x``: A'(g x) = g A(x) (linear operators: itself)."""
        return self

    def resampled(self) -> Operator:
        """The operator for an observation that was resampled after the degradation (a file at another
        rate than the model's): what the degradation left exact may now be only nearly so (itself here)."""
        return self

    @property
    def observes_everything(self) -> bool:
        """True when nothing is degraded (an empty gap): restoring would only resample the prior."""
        return False

    def same_as(self, other: Operator) -> bool:
        """True when ``other`` degrades exactly like this operator (so both can act on one batch)."""
        return other is self or (type(other) is type(self) and other._settings() == self._settings())

    def _settings(self) -> object:
        """What defines the degradation (``same_as`` compares it); by default the object itself."""
        return id(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.describe()}>"


class Identity(Operator):
    """No degradation: A(x) = x (unconditional generation); the projection returns y."""

    has_projection = True

    def __call__(self, x: Tensor) -> Tensor:
        """Return x unchanged."""
        return x

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Everything is observed, so the consistent signal is y itself."""
        return y

    @property
    def observes_everything(self) -> bool:
        """Nothing is degraded."""
        return True

    def describe(self) -> str:
        """One line saying what the operator does."""
        return "identity (no degradation)"

    def _settings(self) -> object:
        return ()


class LowPass(Operator):
    """Bandwidth limitation: a linear-phase Kaiser-window FIR lowpass applied with zero net delay.

    ``order`` N gives N + 1 taps. With an odd tap count (even order: the default 500 gives 501 taps) the
    filter is symmetric about its centre sample and the output has exactly zero delay. With an even tap
    count the centre falls between two samples; the output then follows ``conv1d(padding="same")``:
    output n is centred on input n + 1/2 (a half-sample advance), as in the reference implementation.
    The taps are a windowed sinc normalised to unit DC gain (scipy ``firwin(..., scale=True)``).
    Samples outside the signal count as zeros (zero-padded linear convolution, computed by FFT: at 2^16
    samples and 500 taps it is 5x (float32) to 25x (float64) faster than conv1d on CPU).
    ``project`` is the paper's bandwidth-extension data-consistency step; an FIR lowpass is not idempotent,
    so A(project(x_hat, y)) equals y only to the filter's accuracy (off only in the transition band).
    """

    has_projection = True

    def __init__(
        self, cutoff_hz: float, sample_rate: int, order: int = DEFAULT_ORDER, beta: float = DEFAULT_BETA
    ) -> None:
        self.sample_rate = _check_sample_rate(sample_rate)
        self.cutoff_hz = float(cutoff_hz)
        if not 0 < self.cutoff_hz < self.sample_rate / 2:
            raise ValueError(
                f"cutoff_hz must lie strictly between 0 and Nyquist ({self.sample_rate / 2:g} Hz), "
                f"got {cutoff_hz!r}"
            )
        if isinstance(order, bool) or int(order) != order or order < 1:
            raise ValueError(f"order must be an integer >= 1, got {order!r}")
        self.order = int(order)
        self.beta = float(beta)
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be finite and >= 0, got {beta!r}")
        self._taps: dict[tuple[torch.dtype, torch.device], Tensor] = {}
        self._spectra: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}

    @classmethod
    def reference(cls, cutoff_hz: float, sample_rate: int) -> LowPass:
        """The reference implementation's filter: firwin(numtaps=500, width=1 Hz) -> beta 0, conv1d "same"."""
        return cls(cutoff_hz, sample_rate, order=REFERENCE_NUMTAPS - 1, beta=0.0)

    def at_rate(self, sample_rate: int) -> LowPass:
        """The same cutoff, order and beta at another sample rate."""
        if sample_rate == self.sample_rate:
            return self
        return LowPass(self.cutoff_hz, sample_rate, order=self.order, beta=self.beta)

    def _settings(self) -> object:
        return (self.cutoff_hz, self.sample_rate, self.order, self.beta)

    @property
    def numtaps(self) -> int:
        """Number of FIR taps (order + 1)."""
        return self.order + 1

    def taps(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        """The (numtaps,) impulse response, designed in float64 and cached per dtype and device."""
        key = (dtype, torch.device(device) if device is not None else torch.device("cpu"))
        if key not in self._taps:
            with torch.inference_mode(False):  # a cache made in inference mode could not serve autograd later
                self._taps[key] = torch.as_tensor(self._design(), dtype=dtype, device=key[1])
        return self._taps[key]

    def _design(self) -> np.ndarray:
        """Kaiser-windowed sinc with cutoff fc, scaled to unit DC gain (scipy firwin with scale=True)."""
        relative_cutoff = self.cutoff_hz / (self.sample_rate / 2)
        m = np.arange(self.numtaps) - (self.numtaps - 1) / 2
        h = relative_cutoff * np.sinc(relative_cutoff * m) * np.kaiser(self.numtaps, self.beta)
        return h / h.sum()

    def _spectrum(self, n_fft: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """rfft of the zero-padded taps, cached per FFT size, dtype and device."""
        key = (n_fft, dtype, device)
        if key not in self._spectra:
            if len(self._spectra) >= 8:
                self._spectra.clear()
            with torch.inference_mode(False):  # usable by reconstruction guidance after a DC run
                self._spectra[key] = torch.fft.rfft(self.taps(dtype, device), n_fft)
        return self._spectra[key]

    def __call__(self, x: Tensor) -> Tensor:
        """y = h * x, zero-padded linear convolution cropped to the input's samples (zero net delay)."""
        length = x.shape[-1]
        n_fft = _fast_fft_size(length + self.numtaps - 1)
        spectrum = torch.fft.rfft(x, n_fft) * self._spectrum(n_fft, x.dtype, x.device)
        full = torch.fft.irfft(spectrum, n_fft)
        offset = self.numtaps // 2
        return full[..., offset : offset + length]

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Bandwidth-extension data consistency: y's low band, x_hat's high band: y + x_hat - LPF(x_hat)."""
        return y + x_hat - self(x_hat)

    def describe(self) -> str:
        """One line, e.g. "lowpass 3000 Hz (Kaiser FIR, 501 taps, beta 8)"."""
        shift = ", half-sample advance" if self.numtaps % 2 == 0 else ""
        return f"lowpass {self.cutoff_hz:g} Hz (Kaiser FIR, {self.numtaps} taps, beta {self.beta:g}{shift})"


class Gap(Operator):
    """Inpainting: missing time ranges, A(x) = x * mask with mask 0 on the gaps and 1 elsewhere.

    An interval [start, end) in seconds removes the samples n whose time n / sample_rate lies in it, that is
    n = ceil(start * sr) ... ceil(end * sr) - 1 (products within 1e-6 of an integer are snapped to it, so
    0.07 s at 100 Hz is sample 7, not 8). Intervals sharing a sample are rejected; masking a signal
    shorter than the last gap's end is a ValueError (use ``window`` to restrict a gap to part of a signal).
    """

    has_projection = True

    def __init__(self, intervals: Sequence[tuple[float, float]], sample_rate: int) -> None:
        self.sample_rate = _check_sample_rate(sample_rate)
        ranges = []
        for start, end in intervals:
            if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
                raise ValueError(f"a gap needs 0 <= start < end (finite seconds), got [{start!r}, {end!r})")
            ranges.append(
                (_seconds_to_sample(start, self.sample_rate), _seconds_to_sample(end, self.sample_rate))
            )
        self.ranges = _check_ranges(ranges)

    @classmethod
    def from_samples(cls, ranges: Sequence[tuple[int, int]], sample_rate: int) -> Gap:
        """A gap from sample ranges [first, stop) (stop excluded)."""
        gap = cls([], sample_rate)
        gap.ranges = _check_ranges([(int(first), int(stop)) for first, stop in ranges])
        return gap

    @property
    def intervals(self) -> tuple[tuple[float, float], ...]:
        """The gaps in seconds, [first / sr, stop / sr) (sample-exact)."""
        return tuple((first / self.sample_rate, stop / self.sample_rate) for first, stop in self.ranges)

    @property
    def missing_samples(self) -> int:
        """How many samples the gaps remove."""
        return sum(stop - first for first, stop in self.ranges)

    def mask(
        self, length: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """(length,) tensor: 1 where a sample is observed, 0 where it is missing."""
        if self.ranges and self.ranges[-1][1] > length:
            raise ValueError(
                f"gap ends at sample {self.ranges[-1][1]} but the signal has only {length} samples"
            )
        mask = torch.ones(length, device=device, dtype=dtype)
        for first, stop in self.ranges:
            mask[first:stop] = 0
        return mask

    def window(self, start: int, length: int) -> Gap:
        """The gap as seen by the sub-signal x[start : start + length], in that window's own sample time.

        ``start`` may be negative (a window reaching before the signal, zero-padded there)."""
        if length < 1:
            raise ValueError(f"a window needs length >= 1, got {length}")
        clipped = [(max(first, start), min(stop, start + length)) for first, stop in self.ranges]
        return Gap.from_samples([(a - start, b - start) for a, b in clipped if a < b], self.sample_rate)

    @property
    def time_varying(self) -> bool:
        """Gaps sit at given times: windows see different operators."""
        return True

    @property
    def observes_everything(self) -> bool:
        """True when the gap list is empty."""
        return not self.ranges

    def _settings(self) -> object:
        return (self.ranges, self.sample_rate)

    def at_rate(self, sample_rate: int) -> Gap:
        """The same time ranges at another sample rate (the samples whose time lies in a range)."""
        if sample_rate == self.sample_rate:
            return self
        return Gap(self.intervals, sample_rate)

    def __call__(self, x: Tensor) -> Tensor:
        """y = x * mask: the missing samples are zeroed."""
        return x * self.mask(x.shape[-1], x.device, x.dtype)

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Inpainting data consistency: observed samples from y, missing ones from x_hat."""
        mask = self.mask(x_hat.shape[-1], x_hat.device, x_hat.dtype)
        return y * mask + x_hat * (1 - mask)

    def describe(self) -> str:
        """One line, e.g. "gap [1, 1.05) s (1103 samples missing at 22050 Hz)"."""
        if not self.ranges:
            return f"gap (none: nothing missing at {self.sample_rate} Hz)"
        spans = ", ".join(f"[{start:.6g}, {end:.6g})" for start, end in self.intervals)
        return f"gap {spans} s ({self.missing_samples} samples missing at {self.sample_rate} Hz)"


class Clip(Operator):
    """Declipping: hard clipping A(x) = clamp(x, -threshold, threshold); its projection keeps the unclipped
    samples and holds the clipped ones beyond the threshold (consistent declipping)."""

    has_projection = True

    def __init__(self, threshold: float, tolerance: float = EXACT_TOLERANCE) -> None:
        self.threshold, self.tolerance = float(threshold), float(tolerance)
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"clipping threshold must be finite and > 0, got {threshold!r}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"clipping tolerance must be in [0, 1), got {tolerance!r}")

    @classmethod
    def from_sdr(cls, x: Tensor | np.ndarray, sdr_db: float) -> Clip:
        """The clipping whose threshold gives SDR(x, clip(x)) = sdr_db over all of x, solved by bisection."""
        sdr_db = float(sdr_db)
        if not (math.isfinite(sdr_db) and sdr_db > 0):
            raise ValueError(
                f"target SDR must be finite and > 0 dB (clipping never goes below 0 dB), got {sdr_db!r}"
            )
        magnitude = np.abs(_as_float64_array(x))
        if magnitude.max() == 0:
            raise ValueError("cannot reach a clipping SDR on a silent signal")
        # SDR(tau) rises from 0 dB at tau = 0 to +inf at the peak: bisect on the clipped-off energy.
        target_residual_energy = np.sum(np.square(magnitude)) * 10 ** (-sdr_db / 10)
        low, high = 0.0, float(magnitude.max())
        for _ in range(200):
            middle = 0.5 * (low + high)
            if middle in (low, high):
                break
            magnitude = magnitude[magnitude > low]  # samples at or below `low` stay unclipped from now on
            if _clipped_off_energy(magnitude, middle) > target_residual_energy:
                low = middle
            else:
                high = middle
        return cls(0.5 * (low + high))

    def __call__(self, x: Tensor) -> Tensor:
        """y = clamp(x, -threshold, threshold); gradient 1 inside, 0 where clipped."""
        return torch.clamp(x, -self.threshold, self.threshold)

    def clipped(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Boolean masks of the samples of y clipped at the top and at the bottom: |y| >= threshold, less
        the relative ``tolerance`` (1e-6 for rounding; 5 % once y was resampled, see ``resampled``)."""
        level = self.threshold * (1 - self.tolerance)
        return y >= level, y <= -level

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Consistent declipping: unclipped samples from y; clipped ones from x_hat, but at least as far
        out as y on their side (the Euclidean projection onto {x : A(x) = y}, elementwise)."""
        top, bottom = self.clipped(y)
        return torch.where(top, torch.maximum(x_hat, y), torch.where(bottom, torch.minimum(x_hat, y), y))

    def scaled(self, gain: float) -> Clip:
        """Clipping of ``gain * x``: the threshold scales with the signal."""
        return Clip(self.threshold * float(gain), self.tolerance)

    def resampled(self) -> Clip:
        """Resampling turns a clipped plateau into ripple around the threshold (half of its samples fall
        below it at 44.1 kHz -> 22.05 kHz): samples within 5 % of the threshold count as clipped."""
        return Clip(self.threshold, max(self.tolerance, RESAMPLED_TOLERANCE))

    def _settings(self) -> object:
        return (self.threshold, self.tolerance)

    def describe(self) -> str:
        """One line, e.g. "hard clip at |x| <= 0.1"."""
        loose = (
            f" (|y| within {100 * self.tolerance:g} % of it counts as clipped)"
            if self.tolerance > 1e-3
            else ""
        )
        return f"hard clip at |x| <= {self.threshold:.6g}{loose}"


class Compose(Operator):
    """A chain applied first argument first: A = A_n o ... o A_1; projects only when it wraps one operator."""

    def __init__(self, *operators: Operator) -> None:
        if not operators:
            raise ValueError("Compose needs at least one operator")
        for operator in operators:
            if not isinstance(operator, Operator):
                raise ValueError(f"Compose takes Operator instances, got {type(operator).__name__}")
        self.operators = operators
        self.has_projection = len(operators) == 1 and operators[0].has_projection

    def __call__(self, x: Tensor) -> Tensor:
        """Apply each operator in turn, the first argument first."""
        for operator in self.operators:
            x = operator(x)
        return x

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Delegate to the single wrapped operator's projection."""
        if not self.has_projection:
            return super().project(x_hat, y)
        return self.operators[0].project(x_hat, y)

    def residual(self, y: Tensor, x_hat: Tensor) -> Tensor:
        """The last part's misfit of the earlier parts' output (a noise model ending a chain weights it)."""
        for operator in self.operators[:-1]:
            x_hat = operator(x_hat)
        return self.operators[-1].residual(y, x_hat)

    def window(self, start: int, length: int) -> Compose:
        """Each part restricted to the window."""
        return Compose(*(operator.window(start, length) for operator in self.operators))

    @property
    def time_varying(self) -> bool:
        """True when any part is."""
        return any(operator.time_varying for operator in self.operators)

    def at_rate(self, sample_rate: int) -> Compose:
        """Each part at the new rate."""
        return Compose(*(operator.at_rate(sample_rate) for operator in self.operators))

    def scaled(self, gain: float) -> Compose:
        """Each part for the scaled signal."""
        return Compose(*(operator.scaled(gain) for operator in self.operators))

    def resampled(self) -> Compose:
        """Each part for a resampled observation."""
        return Compose(*(operator.resampled() for operator in self.operators))

    @property
    def observes_everything(self) -> bool:
        """True when every part does."""
        return all(operator.observes_everything for operator in self.operators)

    def same_as(self, other: Operator) -> bool:
        """True for a chain of the same length whose parts are each the same."""
        return (
            isinstance(other, Compose)
            and len(other.operators) == len(self.operators)
            and all(a.same_as(b) for a, b in zip(self.operators, other.operators, strict=True))
        )

    def describe(self) -> str:
        """The parts' descriptions joined by " then "."""
        return " then ".join(operator.describe() for operator in self.operators)


class Stack(Operator):
    """One operator per batch item: row i of x is degraded by ``operators[i]`` (so windows of different
    files, or with gaps at different places, can share a batch). Projects when every item's operator does."""

    def __init__(self, operators: Sequence[Operator]) -> None:
        if not operators:
            raise ValueError("Stack needs at least one operator")
        self.operators = tuple(operators)
        self.has_projection = all(operator.has_projection for operator in self.operators)

    def _rows(self, x: Tensor) -> list[Tensor]:
        """x split into its items, one per operator."""
        if x.shape[0] != len(self.operators):
            raise ValueError(f"a stack of {len(self.operators)} operators got a batch of {x.shape[0]}")
        return list(x.split(1))

    def __call__(self, x: Tensor) -> Tensor:
        """Row i -> operators[i](row i)."""
        return torch.cat([operator(row) for operator, row in zip(self.operators, self._rows(x), strict=True)])

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Each item's own projection."""
        if not self.has_projection:
            return super().project(x_hat, y)
        pairs = zip(self.operators, self._rows(x_hat), self._rows(y), strict=True)
        return torch.cat([operator.project(row, observed) for operator, row, observed in pairs])

    @property
    def observes_everything(self) -> bool:
        """True when every item's operator does."""
        return all(operator.observes_everything for operator in self.operators)

    def describe(self) -> str:
        """The distinct descriptions, e.g. "per item: gap [0.1, 0.2) s (...); lowpass 3000 Hz (...)"."""
        return "per item: " + "; ".join(dict.fromkeys(operator.describe() for operator in self.operators))


def stack(operators: Sequence[Operator]) -> Operator:
    """The operator of a batch whose item i is degraded by ``operators[i]``: the shared one when all are
    the same, else a ``Stack``."""
    first = operators[0]
    return first if all(first.same_as(operator) for operator in operators[1:]) else Stack(operators)


OPERATORS: dict[str, Callable[..., Operator]] = {
    "lowpass": LowPass,
    "lowpass-reference": LowPass.reference,
    "gap": Gap,
    "gap-samples": Gap.from_samples,
    "clip": Clip,
    "identity": Identity,
}


def build_operator(kind: str, **options: object) -> Operator:
    """Build a registered operator from keyword options; ValueError on unknown kinds or bad options."""
    if kind not in OPERATORS:
        raise ValueError(f"unknown operator {kind!r}; choose one of: {', '.join(OPERATORS)}")
    factory = OPERATORS[kind]
    signature = inspect.signature(factory)
    try:
        signature.bind(**options)
        return factory(**options)
    except TypeError as error:
        raise ValueError(f"bad options for {kind!r} ({error}); it takes {signature}") from None


def clipping_sdr_db(x: Tensor | np.ndarray, threshold: float) -> float:
    """SDR of hard clipping in dB: 20 log10(||x|| / ||x - clip(x, threshold)||), in float64 over all of x."""
    magnitude = np.abs(_as_float64_array(x))
    residual_energy = _clipped_off_energy(magnitude, threshold)
    if residual_energy == 0:
        return math.inf
    return 10 * math.log10(np.sum(np.square(magnitude)) / residual_energy)


def _clipped_off_energy(magnitude: np.ndarray, threshold: float) -> float:
    """||x - clip(x, threshold)||^2 from |x| (plain numpy sums: BLAS threads stall on a busy machine)."""
    return float(np.sum(np.square(np.maximum(magnitude - threshold, 0.0))))


def _as_float64_array(x: Tensor | np.ndarray) -> np.ndarray:
    """Flatten a tensor or array to a finite, non-empty float64 numpy vector."""
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(x, dtype=np.float64).ravel()
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError("signal must be non-empty and finite")
    return array


def _check_sample_rate(sample_rate: int) -> int:
    """A positive integer sample rate in Hz."""
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)


def _seconds_to_sample(seconds: float, sample_rate: int) -> int:
    """Index of the first sample at or after a time: ceil(seconds * sr), snapping float noise below 1e-6."""
    position = seconds * sample_rate
    nearest = round(position)
    return nearest if abs(position - nearest) < 1e-6 else math.ceil(position)


def _check_ranges(ranges: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort sample ranges [first, stop); reject empty, negative and overlapping ones."""
    ordered = sorted(ranges)
    for first, stop in ordered:
        if not 0 <= first < stop:
            raise ValueError(f"gap [{first}, {stop}) covers no sample (needs 0 <= first < stop)")
    for (first_a, stop_a), (first_b, stop_b) in zip(ordered[:-1], ordered[1:], strict=True):
        if first_b < stop_a:
            raise ValueError(f"gaps [{first_a}, {stop_a}) and [{first_b}, {stop_b}) overlap (in samples)")
    return tuple(ordered)


@lru_cache(maxsize=64)
def _fast_fft_size(n: int) -> int:
    """Smallest 7-smooth integer >= n (sizes pocketfft and cuFFT handle fastest)."""
    size = n
    while True:
        rest = size
        for factor in (2, 3, 5, 7):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return size
        size += 1
