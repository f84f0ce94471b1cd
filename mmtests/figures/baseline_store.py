"""Known-good baselines on disk: a model's per-sample outcomes and a probe-set fingerprint.

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

from ..errors import EntryError

OUTCOMES, FINGERPRINT = "outcomes.json", "fingerprint.safetensors"


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
