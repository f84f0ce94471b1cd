"""Paired statistics: a candidate against a baseline on the same samples (exact McNemar, Wald interval)."""

from __future__ import annotations

import math
from dataclasses import dataclass


def binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): the one-sided exact McNemar p-value for k of n discordant pairs."""
    if k <= 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n


@dataclass(frozen=True)
class PairedDrop:
    """Candidate vs baseline on the same samples: how much worse, and how sure."""

    baseline: float  # baseline accuracy on these samples
    candidate: float
    drop: float  # baseline - candidate (positive: worse)
    ci: tuple[float, float]  # two-sided 95% interval of the drop
    lost: list[int]  # samples right in the baseline, wrong now
    gained: list[int]  # wrong in the baseline, right now
    p_value: float  # one-sided exact McNemar: P(at least this many losses | no real change)
    n: int

    def worse(self, max_drop: float, alpha: float) -> bool:
        """Red when worse by more than `max_drop` with confidence 1 - alpha: the drop is larger than the
        tolerance and the losses outnumber the gains beyond chance (exact McNemar)."""
        return self.drop > max_drop and self.p_value < alpha


def paired_drop(baseline_correct: list[bool], candidate_correct: list[bool]) -> PairedDrop:
    if len(baseline_correct) != len(candidate_correct):
        raise ValueError(f"{len(candidate_correct)} samples against a baseline of {len(baseline_correct)}")
    n = len(baseline_correct)
    lost = [i for i, (b, c) in enumerate(zip(baseline_correct, candidate_correct, strict=True)) if b and not c]
    gained = [i for i, (b, c) in enumerate(zip(baseline_correct, candidate_correct, strict=True)) if c and not b]
    drop = (len(lost) - len(gained)) / n if n else 0.0
    # Paired differences are -1/0/+1; their variance gives the interval (Wald, fine at these n).
    var = ((len(lost) + len(gained)) / n - drop**2) / n if n else 0.0
    half = 1.96 * math.sqrt(max(var, 0.0))
    return PairedDrop(sum(baseline_correct) / n if n else 0.0, sum(candidate_correct) / n if n else 0.0, drop,
                      (drop - half, drop + half), lost, gained, binomial_tail(len(lost), len(lost) + len(gained)), n)
