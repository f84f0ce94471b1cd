"""Known-good baselines on disk: a model's per-sample outcomes and a probe-set fingerprint.

A baseline is a folder per model (the entry's `baseline = "..."`):
- `outcomes.json`: its `format`, the model it was recorded from, the environment it was taken on, and per check
  key the per-sample outcomes (predicted class and its probability per image; answer text, correctness and kind
  per question; rank and score of the first positive per retrieval query) with a digest of the samples' ground
  truth, so a changed dataset is told apart from a changed model. Its schema is `FIELDS` / `REQUIRED`, checked
  whole by `outcomes_problems` when it is read;
- `fingerprint.safetensors`: probe-set arrays (image embeddings, text classifier, caption embeddings,
  first-answer-token log-probabilities), with the model and the keys it holds in its metadata.

A part a gate needs that the folder lacks (no fingerprint, another model's, a key not in it) is a `MissingPart`:
the gate is red and says which part and how to re-record it, it never drops out of the report.

Recorded with `pytest --mm-save-baseline`; reviewable in a diff (JSON, one list per line).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EntryError

OUTCOMES, FINGERPRINT = "outcomes.json", "fingerprint.safetensors"
# outcomes.json's format: bump when a field changes meaning. A file without `format` was written before the field
# existed (the zoo's baselines up to this change) and is format 1.
FORMAT = 1
RERECORD = "re-record it from a known-good run with `pytest --mm-save-baseline`"

# The per-sample fields and the type of their elements; the fields each kind of check key (before its first "/")
# must hold. Every list of one key is one value per sample, so they have one length.
FIELDS: dict[str, tuple[type, str]] = {
    "predicted": (int, "class indices"), "probability": (float, "numbers"), "correct": (bool, "true/false"),
    "text": (str, "strings"), "kind": (str, "strings"), "rank": (int, "ranks"), "score": (float, "numbers"),
    "question": (int, "question indices"), "inside_outside": (float, "numbers"), "pointing_hit": (bool, "true/false"),
    "image_share_by_layer": (list, "per-layer lists of numbers"),
}
REQUIRED = {"zero_shot": ("predicted", "probability", "correct"), "answers": ("text", "correct", "kind"),
            "retrieval": ("rank", "score"),
            "attention": ("question", "inside_outside", "pointing_hit", "image_share_by_layer")}
TOP_LEVEL = {"model": str, "environment": dict, "samples": dict}
SHOWN = 3  # problems named in one message


def digest(values) -> str:
    """A short digest of a sample list's ground truth (labels, questions and expected answers)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _kind_of(value) -> str:
    return {bool: "true/false", int: "a whole number", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _is(value, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def outcomes_problems(data) -> list[str]:
    """Everything in a parsed outcomes.json that does not fit its schema, each naming its key; [] when it fits."""
    if not isinstance(data, dict):
        return [f"the file holds {_kind_of(data)}, not an object"]
    problems = []
    version = data.get("format", 1)
    if not _is(version, int):
        problems.append(f"'format' is {_kind_of(version)} ({version!r}), not a whole number")
    elif version > FORMAT:
        problems.append(f"'format' {version} is newer than this mmtests reads ({FORMAT}); upgrade mmtests or")
    for key, kind in TOP_LEVEL.items():
        if key not in data:
            problems.append(f"{key!r} is missing")
        elif not isinstance(data[key], kind):
            problems.append(f"{key!r} is {_kind_of(data[key])}, not {_kind_of(kind())}")
    samples = data.get("samples")
    for key, entry in (samples.items() if isinstance(samples, dict) else ()):
        where = f"samples[{key!r}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} is {_kind_of(entry)}, not an object")
            continue
        if not isinstance(entry.get("digest"), str):
            problems.append(f"{where}['digest'] is " + ("missing" if "digest" not in entry
                                                         else f"{_kind_of(entry['digest'])}, not a string"))
        lengths = {}
        for name in dict.fromkeys((*REQUIRED.get(key.split("/")[0], ()), *(f for f in FIELDS if f in entry))):
            kind, said = FIELDS[name]
            value = entry.get(name)
            if name not in entry:
                problems.append(f"{where}[{name!r}] is missing")
            elif not isinstance(value, list):
                problems.append(f"{where}[{name!r}] is {_kind_of(value)}, not a list of {said}")
            elif (bad := next((i for i, v in enumerate(value) if not _is(v, kind)), None)) is not None:
                problems.append(f"{where}[{name!r}][{bad}] is {_kind_of(value[bad])}, not one of {said}")
            else:
                lengths[name] = len(value)
        if len(set(lengths.values())) > 1:
            problems.append(f"{where} has lists of different lengths ("
                            + ", ".join(f"{k}: {n}" for k, n in lengths.items()) + "), one value per sample each")
    return problems


def read_outcomes(path: Path, model: str) -> dict:
    """A baseline folder's outcomes.json, parsed and checked whole against its schema: one EntryError naming the
    file, the keys that do not fit and the fix, whatever is wrong with it."""
    file = path / OUTCOMES
    if not file.is_file():
        raise EntryError(f"model {model!r}: its baseline folder {str(path)!r} has no {OUTCOMES}. Record one from "
                         "a known-good run with `pytest --mm-save-baseline` (it writes to the entry's `baseline`), "
                         "or remove `baseline` from [models." + model + "] to run without baseline gates.")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as err:
        raise EntryError(f"model {model!r}: baseline {str(file)!r} is not valid JSON ({err}); {RERECORD}") from err
    problems = outcomes_problems(data)
    if problems:
        more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise EntryError(f"model {model!r}: baseline {str(file)!r} does not fit the baseline format {FORMAT}: "
                         f"{'; '.join(problems[:SHOWN])}{more}; {RERECORD}")
    return data


@dataclass(frozen=True)
class MissingPart:
    """A part of a baseline that a gate needs and the folder lacks; the gate is red with this reason."""

    reason: str


def _read_fingerprint(path: Path, recorded_from: str) -> tuple[dict, str | None]:
    """The fingerprint's arrays, and why none of them can be used (None: they can): no file, a file that does
    not read, one recorded from another model than the outcomes beside it, or one whose keys are not those it
    lists."""
    file = path / FINGERPRINT
    if not file.is_file():
        return {}, f"baseline {str(path)!r} has no {FINGERPRINT}"
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), "pt") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  (safe_open has no iterator)
    except (SafetensorError, OSError, ValueError) as err:
        return {}, f"baseline fingerprint {str(file)!r} cannot be read ({err})"
    if meta.get("model") != recorded_from:
        return {}, (f"baseline fingerprint {str(file)!r} was recorded from model {meta.get('model')!r}, not from "
                    f"{recorded_from!r} whose {OUTCOMES} is beside it")
    listed = json.loads(meta.get("keys", "null"))
    if listed is not None and set(listed) != set(arrays):
        return {}, (f"baseline fingerprint {str(file)!r} lists the keys {sorted(listed)} but holds "
                    f"{sorted(arrays)}")
    return arrays, None


@dataclass
class Baseline:
    """One model's baseline as read from its folder."""

    path: Path
    environment: dict
    samples: dict[str, dict]
    arrays: dict = field(default_factory=dict)
    recorded_from: str = ""  # the model the baseline was recorded from (a comparative gate uses another's)
    fingerprint_problem: str | None = None  # why no fingerprint array can be used, if none can

    @classmethod
    def load(cls, path: str | Path, model: str) -> Baseline:
        path = Path(path)
        data = read_outcomes(path, model)
        arrays, problem = _read_fingerprint(path, data["model"])
        return cls(path, data["environment"], data["samples"], arrays, data["model"], problem)

    def array(self, key: str):
        """The fingerprint array `key`, or a `MissingPart` naming what is missing and the fix."""
        if self.fingerprint_problem is None and key in self.arrays:
            return self.arrays[key]
        reason = self.fingerprint_problem or (f"baseline fingerprint {str(self.path / FINGERPRINT)!r} has no {key!r} "
                                              f"(it holds: {', '.join(sorted(self.arrays)) or 'nothing'})")
        return MissingPart(f"{reason}; the gate needs it: {RERECORD} (the whole folder, or -k for this check)")

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
        # A copy: two checks' arrays may be views of one tensor (datasets sharing their images share their
        # embeddings), and safetensors refuses to save tensors that share memory.
        self.arrays.setdefault(model, {})[key] = tensor.detach().float().cpu().contiguous().clone()

    def write(self, model: str, path: str | Path, environment: dict) -> Path:
        """Both files written aside, then moved into place, the fingerprint first: a failure leaves the old folder."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        try:  # what this session did not measure is kept, if the folder held a readable baseline of this model
            old = read_outcomes(path, model)
            arrays, problem = _read_fingerprint(path, old["model"]) if old["model"] == model else ({}, "")
            old_samples = old["samples"] if old["model"] == model else {}
        except EntryError:
            old_samples, arrays, problem = {}, {}, ""
        samples = {**old_samples, **self.samples.get(model, {})}
        arrays = {**(arrays if problem is None else {}), **self.arrays.get(model, {})}
        # One sample list per line: a re-recorded baseline reads as a short diff.
        body = ",\n".join(f"    {json.dumps(k)}: {json.dumps(samples[k], sort_keys=True)}" for k in sorted(samples))
        text = (f'{{\n  "format": {FORMAT},\n  "model": {json.dumps(model)},\n'
                f'  "environment": {json.dumps(environment, sort_keys=True)},\n  "samples": {{\n{body}\n  }}\n}}\n')
        staged = []
        if arrays:
            save_file(arrays, str(path / f".{FINGERPRINT}.tmp"),
                      metadata={"model": model, "format": str(FORMAT), "keys": json.dumps(sorted(arrays))})
            staged.append(FINGERPRINT)
        (path / f".{OUTCOMES}.tmp").write_text(text, encoding="utf-8")
        staged.append(OUTCOMES)
        for name in staged:
            os.replace(path / f".{name}.tmp", path / name)
        return path
