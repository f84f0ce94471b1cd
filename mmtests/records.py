"""Records: one JSON line per measured figure, appended (and flushed) the moment it is measured."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "torchvision", "transformers", "open_clip_torch", "datasets", "mmtests")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_sha(where: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment(device: str, config: str) -> dict:
    """What a reader needs to compare two runs: device, versions, code revision, config used."""
    import torch

    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or platform.machine()
    return {
        "device": device,
        "device_name": name,
        "cuda": torch.version.cuda if device.startswith("cuda") else None,
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in PACKAGES},
        "git_sha": _git_sha(Path.cwd()),
        "config": config,
    }


class RecordWriter:
    """Appends records to a JSON-lines file; the first line of a run describes its environment."""

    def __init__(self, path: str | Path, env: dict):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self._file = self.path.open("a")
        self.samples_path = self.path.with_name(f"{self.path.stem}-samples.jsonl")
        self.samples_path.unlink(missing_ok=True)
        self._samples = None
        self._write({"kind": "run", "run_id": self.run_id, "started": time.time(), "environment": env})

    def _write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def figure(self, *, suite: str, test_id: str, metric: str, value: float | None, threshold: float | None = None,
               outcome: str | None = None, **fields) -> str:
        """Record one figure; outcome defaults to pass/fail against `threshold`, or 'measured'."""
        reserved = {"kind", "run_id"} & fields.keys()
        if reserved:
            raise ValueError(f"record fields {sorted(reserved)} are reserved; name them differently")
        if outcome is None:
            outcome = "measured" if threshold is None or value is None else ("pass" if value >= threshold else "fail")
        self._write({"kind": "figure", "run_id": self.run_id, "suite": suite, "test_id": test_id, "metric": metric,
                     "value": value, "threshold": threshold, "outcome": outcome, **fields})
        return outcome

    def check(self, *, suite: str, test_id: str, check, **where) -> str:
        """Record a judged (or measured) `mmtests.checks.Check`; min/max bounds keep the report's field names."""
        fields = check.record_fields()
        bound = fields.pop("bound")
        if check.kind == "min":
            fields["threshold"] = bound
        elif check.kind == "max":
            fields["max_allowed"] = bound
        elif check.kind == "baseline":
            fields["tolerance"] = bound
        return self.figure(suite=suite, test_id=test_id, **fields, **where)

    def samples(self, *, model: str, key: str, samples: dict) -> None:
        """Per-sample outcomes of one check, one JSON line, in a file beside the records (as lmms-eval's
        --log_samples): a red gate can be read sample by sample, and two runs compared item by item."""
        if self._samples is None:
            self._samples = self.samples_path.open("a")
        self._samples.write(json.dumps({"run_id": self.run_id, "model": model, "key": key, "samples": samples}) + "\n")
        self._samples.flush()

    def close(self) -> None:
        self._file.close()
        if self._samples is not None:
            self._samples.close()
