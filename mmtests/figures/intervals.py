"""95% confidence intervals of the report's figures: Wilson's for a share of n samples, normal for a paired gain."""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # two-sided 95% of the standard normal


def wilson(share: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a share of `n` samples (right at 0 and 1, unlike share ± z·se)."""
    if n <= 0:
        raise ValueError(f"a share of {n} samples has no interval")
    centre = share + z * z / (2 * n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - half) / scale), min(1.0, (centre + half) / scale)


def figure_interval(figure: dict) -> tuple[float, float] | None:
    """A record's 95% interval: Wilson's from its `n` for a share, value ± 1.96 `stderr` for a gain; None when the
    record has neither (a figure without `n` draws no bar)."""
    value = figure.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    stderr, n = figure.get("stderr"), figure.get("n")
    if isinstance(stderr, int | float) and not isinstance(stderr, bool) and math.isfinite(stderr):
        return value - Z95 * stderr, value + Z95 * stderr
    if isinstance(n, int) and not isinstance(n, bool) and n > 0 and 0 <= value <= 1:
        return wilson(value, n)
    return None
