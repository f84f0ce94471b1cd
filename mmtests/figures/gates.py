"""The gates against a model's known-good baseline, and their tolerances by precision.

Each gate compares a run with the baseline sample by sample (paired accuracy, agreement, the largest
change of a probability, embedding cosines, first-token KL) and returns a `Check` the plugin judges.
"""

from __future__ import annotations

from .baseline_store import MissingPart
from .check import Check, baseline_check
from .paired import paired_drop

# Tolerances of the gates against a baseline, by the run's precision; a model entry's
# `tolerance = {...}` overrides any of them. Measured with fixtures/measure_tolerances.py on the
# embedded zoo, CPU, batch sizes 7/64/256 and 1-2 threads, 0 red figures in all runs:
# - float32 (clean reruns): predictions and answers identical, first-token KL 0, probabilities within
#   5e-7, embeddings within a cosine of 1 - 1.2e-7. The tolerances leave room for other kernels
#   (another CPU's vector width, a GPU's float32 matmuls), about 1,000 times the deviation measured.
# - bfloat16 (the models cast whole) and int8 (torch.ao dynamic int8 of the Linear layers), gated
#   against the float32 baselines: 3 times the worst deviation measured, rounded up. Worst measured,
#   bf16 / int8: agreement .991 / .978, probability change .027 / .093, cosine 1 - 4.5e-5 / 1 - 5e-4,
#   first-token KL 1.7e-5 / 5e-4, accuracy drop .01 / .02 (never beyond chance).
# - attention (max_attention_change: the largest relative change of a sample's inside/outside ratio;
#   max_share_change: of a per-layer image share; the pointing outcomes use min_agreement), same runs with
#   the tiny LLaVA's [[attention]] check (24 colour questions, with its control): float32 clean reruns
#   identical (0 and 0; tolerances 1e-3 and 1e-4 leave the same room for other kernels as the probability's);
#   worst bf16 / int8: ratio .0043 / .040, share .0015 / .0097, pointing agreement 1 / 1, the same questions
#   answered correctly; tolerances 3 times that, rounded up. The patch-grid-column-major fault moved the ratio
#   by .36 (5.03 -> 3.23) and the pointing agreement to .75: red at every precision.
# - float16 is not measured here (no GPU in this project's CI); it takes bfloat16's tolerances, which
#   bound it from above (fp16 keeps 3 more mantissa bits).
TOLERANCES: dict[str, dict[str, float]] = {
    "float32": {"max_drop": 0.0, "min_agreement": 0.998, "max_score_change": 1e-4, "min_cosine": 0.9999,
                "max_kl": 1e-5, "max_attention_change": 1e-3, "max_share_change": 1e-4},
    "bfloat16": {"max_drop": 0.01, "min_agreement": 0.98, "max_score_change": 0.1, "min_cosine": 0.9998,
                 "max_kl": 1e-4, "max_attention_change": 0.02, "max_share_change": 0.005},
    "int8": {"max_drop": 0.02, "min_agreement": 0.93, "max_score_change": 0.3, "min_cosine": 0.998, "max_kl": 2e-3,
             "max_attention_change": 0.2, "max_share_change": 0.03},
}
TOLERANCES["float16"] = TOLERANCES["bfloat16"]
ALPHA = 0.05  # confidence of the paired accuracy gate: red only when worse beyond chance at 95%
EXAMPLES = 5  # flipped samples named in a failure message and kept in the record


def tolerances(precision: str, overrides: dict | None = None) -> dict[str, float]:
    known = TOLERANCES.get(precision, TOLERANCES["bfloat16"])
    return {**known, **(overrides or {})}


def accuracy_gate(metric: str, baseline_correct: list[bool], correct: list[bool], tol: dict, names: list[str]) -> Check:
    """Paired comparison on the same samples: red when worse by more than `max_drop` beyond chance."""
    d = paired_drop(baseline_correct, correct)
    worse = d.worse(tol["max_drop"], ALPHA)
    lost = ", ".join(names[i] for i in d.lost[:EXAMPLES])
    explain = (f"{len(d.lost)} samples lost, {len(d.gained)} gained against the baseline; drop {d.drop:+.4f} "
               f"(95% CI {d.ci[0]:+.4f} to {d.ci[1]:+.4f}, McNemar p = {d.p_value:.2g}, tolerance {tol['max_drop']:g})"
               + (f"; lost e.g. {lost}" if lost else ""))
    return baseline_check(metric, d.candidate, tol["max_drop"], d.baseline, not worse, ci=d.ci,
                 explain=explain, fields={"drop": d.drop, "p_value": d.p_value, "lost": len(d.lost),
                                          "gained": len(d.gained), "flipped": [names[i] for i in d.lost[:EXAMPLES]]})


def agreement_gate(metric: str, baseline_values: list, values: list, tol: dict, names: list[str], what: str) -> Check:
    """Share of samples whose output (predicted class, answer text) is the baseline's."""
    differ = [i for i, (a, b) in enumerate(zip(baseline_values, values, strict=True)) if a != b]
    share = 1 - len(differ) / len(values) if values else 1.0
    shown = "; ".join(f"{names[i]}: {baseline_values[i]!r} -> {values[i]!r}" for i in differ[:EXAMPLES])
    return baseline_check(metric, share, tol["min_agreement"], 1.0, share >= tol["min_agreement"],
                 explain=f"{len(differ)} of {len(values)} {what} differ from the baseline (min agreement "
                         f"{tol['min_agreement']:g})" + (f"; e.g. {shown}" if shown else ""),
                 fields={"changed": len(differ), "flipped": [names[i] for i in differ[:EXAMPLES]]})


def largest_change_gate(metric: str, change: list[float], tol_key: str, tol: dict, names: list[str], what: str) -> Check:
    worst = max(range(len(change)), key=lambda i: change[i]) if change else None
    value = change[worst] if worst is not None else 0.0
    return baseline_check(metric, value, tol[tol_key], 0.0, value <= tol[tol_key],
                 explain=f"largest {what} change against the baseline {value:.3g} (tolerance {tol[tol_key]:g})"
                         + (f", at {names[worst]}" if worst is not None else ""))


def missing_part_gate(metric: str, part: MissingPart, tolerance: float, perfect: float) -> Check:
    """A gate whose baseline lacks the part it compares with: red, saying which part and how to record it."""
    return baseline_check(metric, None, tolerance, perfect, False, explain=part.reason)


def cosine_gate(metric: str, baseline, current, tol: dict, what: str) -> Check:
    """Smallest cosine between the run's probe vectors and the baseline's (rows of two N x D tensors; the
    baseline's may be a `MissingPart`)."""
    import torch

    if isinstance(baseline, MissingPart):
        return missing_part_gate(metric, baseline, tol["min_cosine"], 1.0)
    if baseline.shape != current.shape:
        return baseline_check(metric, None, tol["min_cosine"], 1.0, False,
                     explain=f"{what}: shape {tuple(current.shape)} against the baseline's {tuple(baseline.shape)}")
    cos = torch.nn.functional.cosine_similarity(current.float(), baseline.float(), dim=-1)
    worst = float(cos.min())
    return baseline_check(metric, worst, tol["min_cosine"], 1.0, worst >= tol["min_cosine"],
                 explain=f"{what}: smallest cosine to the baseline {worst:.7f} at row {int(cos.argmin())}, mean "
                         f"{float(cos.mean()):.7f} (min {tol['min_cosine']:g})")


def kl_gate(metric: str, baseline_logprobs, logprobs, tol: dict, names: list[str]) -> Check:
    """Mean KL(baseline || run) of the first answer token's distribution over the probe questions (the baseline's
    may be a `MissingPart`)."""
    if isinstance(baseline_logprobs, MissingPart):
        return missing_part_gate(metric, baseline_logprobs, tol["max_kl"], 0.0)
    if baseline_logprobs.shape != logprobs.shape:
        return baseline_check(metric, None, tol["max_kl"], 0.0, False,
                     explain=f"first-token log-probs of shape {tuple(logprobs.shape)} against the baseline's "
                             f"{tuple(baseline_logprobs.shape)} (vocabulary or probe set changed)")
    kl = (baseline_logprobs.exp() * (baseline_logprobs - logprobs)).sum(-1).clamp_min(0)
    mean, worst = float(kl.mean()), int(kl.argmax())
    return baseline_check(metric, mean, tol["max_kl"], 0.0, mean <= tol["max_kl"],
                 explain=f"mean first-token KL to the baseline {mean:.3g} (max {tol['max_kl']:g}); largest "
                         f"{float(kl[worst]):.3g} at {names[worst]}")


def attention_gates(prefix: str, baseline: dict, current: dict, tol: dict) -> list[Check]:
    """Per-sample attention outcomes against the baseline's, matched by question: the largest relative change of
    the inside/outside ratio, the pointing outcomes' agreement and the largest change of a per-layer image share.
    Questions measured in one run only (the model answers others correctly now) count as changed samples."""
    base = {q: i for i, q in enumerate(baseline["question"])}
    mine = {q: i for i, q in enumerate(current["question"])}
    common = [q for q in current["question"] if q in base]
    only = sorted(set(base) ^ set(mine))
    names = [f"q{q}" for q in common]
    ratio = [abs(current["inside_outside"][mine[q]] / baseline["inside_outside"][base[q]] - 1)
             if baseline["inside_outside"][base[q]] else float(current["inside_outside"][mine[q]] != 0) for q in common]
    share = [max((abs(a - b) for a, b in zip(current["image_share_by_layer"][mine[q]],
                                             baseline["image_share_by_layer"][base[q]], strict=True)), default=0.0)
             if len(current["image_share_by_layer"][mine[q]]) == len(baseline["image_share_by_layer"][base[q]])
             else float("inf") for q in common]
    hits = agreement_gate(f"{prefix}pointing_vs_baseline", [baseline["pointing_hit"][base[q]] for q in common],
                          [current["pointing_hit"][mine[q]] for q in common], tol, names, "pointing outcomes")
    checks = [largest_change_gate(f"{prefix}inside_outside_vs_baseline", ratio, "max_attention_change", tol, names,
                                  "relative inside/outside ratio"),
              hits,
              largest_change_gate(f"{prefix}image_share_vs_baseline", share, "max_share_change", tol, names,
                                  "per-layer image share")]
    if only:
        n = len(set(base) | set(mine))
        agree = 1 - len(only) / n
        checks.append(baseline_check(f"{prefix}attention_samples_vs_baseline", agree, tol["min_agreement"], 1.0,
                                     agree >= tol["min_agreement"],
                                     explain=f"{len(only)} of {n} questions measured in one run only "
                                             f"(e.g. {', '.join(f'q{q}' for q in only[:EXAMPLES])}): the model "
                                             "answers other questions correctly than its baseline"))
    return checks
