"""Reading a records file back: the run's environment and its figures."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Run:
    run_id: str = "unknown"
    environment: dict = field(default_factory=dict)
    figures: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unreadable lines, reported rather than fatal

    def select(self, suite: str, metric: str | None = None) -> list[dict]:
        return [f for f in self.figures if f["suite"] == suite and (metric is None or f["metric"] == metric)]


def read_run(path: str | Path) -> Run:
    """The last run in a JSON-lines records file; bad lines are listed in `problems`."""
    run = Run()
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            run.problems.append(f"{path}:{number}: not JSON ({err.msg}); line skipped")
            continue
        if record.get("kind") == "run":
            run = Run(record.get("run_id", "unknown"), record.get("environment", {}), [], run.problems)
        elif record.get("kind") == "figure":
            run.figures.append(record)
    return run


SWEEP_FIELDS = ("model", "modality", "batch_size", "items_per_s")


def benchmark_sweeps(bench: dict | None) -> list[dict]:
    """Benchmarks of one model, modality and batch size each (pytest-benchmark JSON): their extra_info, named."""
    return [{"name": b["name"], **b["extra_info"]} for b in (bench or {}).get("benchmarks", [])
            if all(b.get("extra_info", {}).get(k) is not None for k in SWEEP_FIELDS)]
