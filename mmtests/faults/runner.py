"""One run of the suites on a fault's matrix, in a subprocess, and the figures it turned red."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import DEFAULT_CONFIG
from .catalogue import TARGETS, ZOO, Fault
from .edits import CODE_PLUGIN


@dataclass
class Result:
    name: str
    what: str
    red: list[str]  # "test_id metric" of every failed figure
    exit_code: int
    seconds: float
    suites: dict[str, int] = field(default_factory=dict)  # red figures per suite
    dual_encoder: bool = False  # a fault in a dual encoder's own files (weights, preprocessing, tokenizer)

    @property
    def caught(self) -> bool:
        return bool(self.red) or self.exit_code not in (0, 5)


def _run(matrix: Path, models: list[str], workdir: Path, batch: int | None = None, threads: str = "2",
         select: str | None = None, log: Path | None = None) -> Result:
    """The suites on `matrix`, narrowed to `models` (and `-k select`), in a subprocess; the red figures."""
    records = workdir / "records.jsonl"
    records.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "mmtests.suites", "-q", "-p", "no:cacheprovider",
           f"--mm-config={matrix}", f"--mm-records={records}", "--mm-require-all",
           *[f"--mm-model={m}" for m in models]]
    if batch:
        cmd.append(f"--mm-batch-size={batch}")
    if select:
        cmd += ["-k", select]
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if (workdir / f"{CODE_PLUGIN}.py").is_file():  # a code fault: its plugin, importable from the run's folder
        cmd += ["-p", CODE_PLUGIN]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(workdir), env.get("PYTHONPATH"))))
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=workdir)
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    red, suites = [], {}
    if records.is_file():
        for line in records.read_text().splitlines():
            r = json.loads(line)
            if r.get("kind") == "figure" and r.get("outcome") in ("fail", "crashed"):  # a crash is loud: caught
                red.append(f"{r['test_id']} {r['metric']}")
                suites[r["suite"]] = suites.get(r["suite"], 0) + 1
    return Result("", "", red, proc.returncode, time.perf_counter() - start, suites)


def apply(fault: Fault, workdir: Path) -> Path:
    """A matrix file whose target model is the broken copy (baselines: the committed, healthy ones)."""
    folder, line, _ = TARGETS[fault.target]
    text = DEFAULT_CONFIG.read_text()
    if fault.files is not None:
        copy = workdir / "model"
        shutil.copytree(ZOO / folder, copy)
        fault.files(copy)
        prefix = "local-dir:" if "local-dir:" in line else ""
        text = text.replace(line, f'model = "{prefix}{copy}"')
    if fault.matrix is not None:
        text = fault.matrix(text)
    if fault.code is not None:
        fault.code(workdir)
    # Everything else stays relative to the packaged default's folder.
    text = re.sub(r'"(local-dir:)?zoo/', lambda m: f'"{m.group(1) or ""}{ZOO}/', text)
    matrix = workdir / "matrix.toml"
    matrix.write_text(text)
    return matrix
