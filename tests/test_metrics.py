"""Metric identities and known values."""

from __future__ import annotations

import math

import torch

from cqtrestore.metrics import lsd, si_sdr


def test_lsd_identities():
    x = torch.randn(2, 22050, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.all(lsd(x, x) == 0)
    # Scaling by a multiplies every power by a², so every log-power difference is 2·log10(a).
    torch.testing.assert_close(lsd(x, 3 * x), torch.full((2,), 2 * math.log10(3), dtype=torch.float64))
    y = torch.randn(2, 22050, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(lsd(x, y), lsd(y, x))
    assert torch.all(lsd(x, y) > 0.3)


def test_lsd_band_sees_only_that_band():
    t = torch.arange(22050, dtype=torch.float64) / 22050
    low, high = torch.sin(2 * math.pi * 500 * t)[None], 0.1 * torch.sin(2 * math.pi * 8000 * t)[None]
    assert lsd(low + high, low + high * 1.5, band=(42, 51)).item() < 1e-4  # 500 Hz is bin 46, 8 kHz bin 743
    assert lsd(low + high, low + high * 1.5, band=(600, 1025)).item() > 0.01


def test_si_sdr_known_values_and_scale_invariance():
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(3, 10000, dtype=torch.float64, generator=g)
    noise = torch.randn(3, 10000, dtype=torch.float64, generator=g)
    # Make the noise exactly orthogonal to the (zero-mean) reference, at a power ratio of 100 (20 dB).
    ref = ref - ref.mean(-1, keepdim=True)
    noise = noise - noise.mean(-1, keepdim=True)
    noise = noise - (noise * ref).sum(-1, keepdim=True) / ref.pow(2).sum(-1, keepdim=True) * ref
    noise = noise * (ref.pow(2).sum(-1, keepdim=True) / noise.pow(2).sum(-1, keepdim=True) / 100).sqrt()
    est = ref + noise
    torch.testing.assert_close(si_sdr(ref, est), torch.full((3,), 20.0, dtype=torch.float64))
    torch.testing.assert_close(si_sdr(ref, 0.1 * est), si_sdr(ref, est))
    assert torch.all(si_sdr(ref, ref) > 100)
