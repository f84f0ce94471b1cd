"""Known-good baselines: a model's per-sample outcomes and a probe-set fingerprint, and the gates
that compare a run with them sample by sample.

A baseline is a folder per model (the entry's `baseline = "..."`):
- `outcomes.json`: the environment it was taken on, and per check key the per-sample outcomes
  (predicted class and its probability per image; answer text and correctness per question) with a
  digest of the samples' ground truth, so a changed dataset is told apart from a changed model;
- `fingerprint.safetensors`: probe-set arrays (image embeddings, text classifier, first-answer-token
  log-probabilities).

Recorded with `pytest --mm-save-baseline`; reviewable in a diff (JSON, one list per line).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .checks import Check, paired_drop
from .errors import EntryError

OUTCOMES, FINGERPRINT = "outcomes.json", "fingerprint.safetensors"

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
# - float16 is not measured here (no GPU in this project's CI); it takes bfloat16's tolerances, which
#   bound it from above (fp16 keeps 3 more mantissa bits).
TOLERANCES: dict[str, dict[str, float]] = {
    "float32": {"max_drop": 0.0, "min_agreement": 0.998, "max_score_change": 1e-4, "min_cosine": 0.9999,
                "max_kl": 1e-5},
    "bfloat16": {"max_drop": 0.01, "min_agreement": 0.98, "max_score_change": 0.1, "min_cosine": 0.9998,
                 "max_kl": 1e-4},
    "int8": {"max_drop": 0.02, "min_agreement": 0.93, "max_score_change": 0.3, "min_cosine": 0.998, "max_kl": 2e-3},
}
TOLERANCES["float16"] = TOLERANCES["bfloat16"]
ALPHA = 0.05  # confidence of the paired accuracy gate: red only when worse beyond chance at 95%
EXAMPLES = 5  # flipped samples named in a failure message and kept in the record


def tolerances(precision: str, overrides: dict | None = None) -> dict[str, float]:
    known = TOLERANCES.get(precision, TOLERANCES["bfloat16"])
    return {**known, **(overrides or {})}


def digest(values) -> str:
    """A short digest of a sample list's ground truth (labels, questions and expected answers)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Baseline:
    """One model's baseline as read from its folder."""

    path: Path
    environment: dict
    samples: dict[str, dict]
    arrays: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, model: str) -> Baseline:
        path = Path(path)
        if not (path / OUTCOMES).is_file():
            raise EntryError(f"model {model!r}: its baseline folder {str(path)!r} has no {OUTCOMES}. Record one from "
                             "a known-good run with `pytest --mm-save-baseline` (it writes to the entry's `baseline`), "
                             "or remove `baseline` from [models." + model + "] to run without baseline gates.")
        try:
            data = json.loads((path / OUTCOMES).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise EntryError(f"model {model!r}: baseline {str(path / OUTCOMES)!r} is not valid JSON ({err}); "
                             "re-record it with `pytest --mm-save-baseline`") from err
        arrays = {}
        if (path / FINGERPRINT).is_file():
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                arrays = load_file(str(path / FINGERPRINT))
            except (SafetensorError, OSError) as err:
                raise EntryError(f"model {model!r}: baseline fingerprint {str(path / FINGERPRINT)!r} cannot be read "
                                 f"({err}); re-record it with `pytest --mm-save-baseline`") from err
        return cls(path, data.get("environment", {}), data.get("samples", {}), arrays)

    def entry(self, key: str, model: str, truth_digest: str) -> dict:
        """The baseline's per-sample outcomes for `key`, checked to be about the same samples."""
        found = self.samples.get(key)
        if found is None:
            raise EntryError(f"model {model!r}: baseline {str(self.path)!r} has no outcomes for {key!r} (recorded: "
                             f"{', '.join(sorted(self.samples)) or 'none'}). Record them from a known-good run with "
                             f"`pytest --mm-save-baseline -k ...`")
        if found.get("digest") != truth_digest:
            raise EntryError(f"model {model!r}: the samples of {key!r} are not those of its baseline (ground-truth "
                             f"digest {truth_digest} vs {found.get('digest')}): the dataset, its labels or the "
                             "questions changed. If that is intended, re-record the baseline with "
                             "`pytest --mm-save-baseline`; otherwise check the data.")
        return found


class BaselineWriter:
    """Collects one session's per-sample outcomes and arrays per model, then writes each model's folder,
    updating the keys this session measured and keeping the others (like a snapshot update)."""

    def __init__(self):
        self.samples: dict[str, dict[str, dict]] = {}
        self.arrays: dict[str, dict] = {}

    def add(self, model: str, key: str, samples: dict) -> None:
        self.samples.setdefault(model, {})[key] = samples

    def add_array(self, model: str, key: str, tensor) -> None:
        self.arrays.setdefault(model, {})[key] = tensor.detach().float().cpu().contiguous()

    def write(self, model: str, path: str | Path, environment: dict) -> Path:
        from safetensors.torch import load_file, save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        old = json.loads((path / OUTCOMES).read_text()) if (path / OUTCOMES).is_file() else {}
        samples = {**old.get("samples", {}), **self.samples.get(model, {})}
        arrays = load_file(str(path / FINGERPRINT)) if (path / FINGERPRINT).is_file() else {}
        arrays.update(self.arrays.get(model, {}))
        # One sample list per line: a re-recorded baseline reads as a short diff.
        body = ",\n".join(f"    {json.dumps(k)}: {json.dumps(samples[k], sort_keys=True)}" for k in sorted(samples))
        text = (f'{{\n  "model": {json.dumps(model)},\n  "environment": {json.dumps(environment, sort_keys=True)},\n'
                f'  "samples": {{\n{body}\n  }}\n}}\n')
        (path / OUTCOMES).write_text(text, encoding="utf-8")
        if arrays:
            save_file(arrays, str(path / FINGERPRINT), metadata={"model": model})
        return path


# ----------------------------------------------------------------------------- the gates


def accuracy_gate(metric: str, baseline_correct: list[bool], correct: list[bool], tol: dict, names: list[str]) -> Check:
    """Paired comparison on the same samples: red when worse by more than `max_drop` beyond chance."""
    d = paired_drop(baseline_correct, correct)
    worse = d.worse(tol["max_drop"], ALPHA)
    lost = ", ".join(names[i] for i in d.lost[:EXAMPLES])
    explain = (f"{len(d.lost)} samples lost, {len(d.gained)} gained against the baseline; drop {d.drop:+.4f} "
               f"(95% CI {d.ci[0]:+.4f} to {d.ci[1]:+.4f}, McNemar p = {d.p_value:.2g}, tolerance {tol['max_drop']:g})"
               + (f"; lost e.g. {lost}" if lost else ""))
    return Check(metric, d.candidate, "baseline", tol["max_drop"], True, d.baseline, ci=d.ci, ok=not worse,
                 explain=explain, fields={"drop": d.drop, "p_value": d.p_value, "lost": len(d.lost),
                                          "gained": len(d.gained), "flipped": [names[i] for i in d.lost[:EXAMPLES]]})


def agreement_gate(metric: str, baseline_values: list, values: list, tol: dict, names: list[str], what: str) -> Check:
    """Share of samples whose output (predicted class, answer text) is the baseline's."""
    differ = [i for i, (a, b) in enumerate(zip(baseline_values, values, strict=True)) if a != b]
    share = 1 - len(differ) / len(values) if values else 1.0
    shown = "; ".join(f"{names[i]}: {baseline_values[i]!r} -> {values[i]!r}" for i in differ[:EXAMPLES])
    return Check(metric, share, "baseline", tol["min_agreement"], True, 1.0, ok=share >= tol["min_agreement"],
                 explain=f"{len(differ)} of {len(values)} {what} differ from the baseline (min agreement "
                         f"{tol['min_agreement']:g})" + (f"; e.g. {shown}" if shown else ""),
                 fields={"changed": len(differ), "flipped": [names[i] for i in differ[:EXAMPLES]]})


def largest_change_gate(metric: str, change: list[float], tol_key: str, tol: dict, names: list[str], what: str) -> Check:
    worst = max(range(len(change)), key=lambda i: change[i]) if change else None
    value = change[worst] if worst is not None else 0.0
    return Check(metric, value, "baseline", tol[tol_key], False, 0.0, ok=value <= tol[tol_key],
                 explain=f"largest {what} change against the baseline {value:.3g} (tolerance {tol[tol_key]:g})"
                         + (f", at {names[worst]}" if worst is not None else ""))


def cosine_gate(metric: str, baseline, current, tol: dict, what: str) -> Check:
    """Smallest cosine between the run's probe vectors and the baseline's (rows of two N x D tensors)."""
    import torch

    if baseline.shape != current.shape:
        return Check(metric, None, "baseline", tol["min_cosine"], True, 1.0, ok=False,
                     explain=f"{what}: shape {tuple(current.shape)} against the baseline's {tuple(baseline.shape)}")
    cos = torch.nn.functional.cosine_similarity(current.float(), baseline.float(), dim=-1)
    worst = float(cos.min())
    return Check(metric, worst, "baseline", tol["min_cosine"], True, 1.0, ok=worst >= tol["min_cosine"],
                 explain=f"{what}: smallest cosine to the baseline {worst:.7f} at row {int(cos.argmin())}, mean "
                         f"{float(cos.mean()):.7f} (min {tol['min_cosine']:g})")


def kl_gate(metric: str, baseline_logprobs, logprobs, tol: dict, names: list[str]) -> Check:
    """Mean KL(baseline || run) of the first answer token's distribution over the probe questions."""

    if baseline_logprobs.shape != logprobs.shape:
        return Check(metric, None, "baseline", tol["max_kl"], False, 0.0, ok=False,
                     explain=f"first-token log-probs of shape {tuple(logprobs.shape)} against the baseline's "
                             f"{tuple(baseline_logprobs.shape)} (vocabulary or probe set changed)")
    kl = (baseline_logprobs.exp() * (baseline_logprobs - logprobs)).sum(-1).clamp_min(0)
    mean, worst = float(kl.mean()), int(kl.argmax())
    return Check(metric, mean, "baseline", tol["max_kl"], False, 0.0, ok=mean <= tol["max_kl"],
                 explain=f"mean first-token KL to the baseline {mean:.3g} (max {tol['max_kl']:g}); largest "
                         f"{float(kl[worst]):.3g} at {names[worst]}")
