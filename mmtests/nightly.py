"""The nightly job: suites, benchmarks, detection power (with --faults), then the report, each in its own process.

    mmtests nightly --out reports [--faults] [pytest args for the suites]   (or python -m mmtests.nightly)

The suites are mmtests' own (`--pyargs mmtests.suites`), on the matrix --mm-config names (the embedded
default without it); unit tests are CI's job (`.ci/run`). Detection power (`python -m mmtests.faults`, about
4-5 minutes on 2 CPU cores) runs with --faults: weekly in the workflow, or `tox -e faults`.

Every step runs even when an earlier one failed (the report is always written); the exit status is non-zero
when any step failed, and the failed steps are named.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from .figures.record_files import anchored


def steps(out: Path, pytest_args: list[str], faults: bool = False) -> list[tuple[str, list[str]]]:
    records, benchmarks, detection = out / "records.jsonl", out / "benchmarks.json", out / "faults.json"
    py = [sys.executable, "-m"]
    power = [("faults", [*py, "mmtests.faults", "--json", str(detection)])] if faults else []
    return [
        ("suites", [*py, "pytest", "--pyargs", "mmtests.suites", "--mm-records", str(records), "--mm-require-all",
                    *pytest_args]),
        ("benchmarks", [*py, "pytest", "--pyargs", "mmtests.benchmarks", "--benchmark-enable", "--benchmark-only",
                        "--benchmark-json", str(benchmarks), *_matrix_args(pytest_args)]),
        *power,
        ("report", [*py, "mmtests.report", "--records", str(records), "--benchmarks", str(benchmarks),
                    *(["--faults", str(detection)] if faults else []), "--out", str(out), "--fail-on-failure",
                    "--fail-on-regression"]),
    ]


# The plugin's options that take no value; and those that belong to the suites' records and baselines only.
MM_FLAGS = ("--mm-online", "--mm-strict-images", "--mm-require-all", "--mm-save-baseline")
SUITES_ONLY = ("--mm-records", "--mm-run-id", "--mm-save-baseline", "--mm-shard")


def _matrix_args(pytest_args: list[str]) -> list[str]:
    """The suites' mm options (--mm-config, --mm-device, --mm-batch-size, --mm-online, --mm-model, ...), passed on
    to the benchmarks: they time the same matrix, the same way; the records, run id, shard and baselines stay the
    suites'."""
    out, take = [], False
    for arg in pytest_args:
        if take:
            out.append(arg)
            take = False
            continue
        name = arg.partition("=")[0]
        if not name.startswith("--mm-") or name in SUITES_ONLY:
            continue
        out.append(arg)
        take = "=" not in arg and name not in MM_FLAGS
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmtests.nightly", description=__doc__.split("\n\n")[0],
                                 allow_abbrev=False)
    ap.add_argument("--out", type=anchored, default="reports",
                    help="folder for records, benchmarks and the report (relative: to the current directory)")
    ap.add_argument("--faults", action="store_true",
                    help="add the detection-power step (python -m mmtests.faults, 4-5 minutes on 2 CPU cores)")
    args, pytest_args = ap.parse_known_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name, command in steps(args.out, pytest_args, args.faults):
        print(f"mmtests.nightly: {name}: {' '.join(command)}", flush=True)
        code = subprocess.call(command)  # pytest's 5 (no tests collected) is a failure too: nothing was checked
        if code != 0:
            print(f"mmtests.nightly: step {name!r} failed (exit code {code})", flush=True)
            failed.append(f"{name} ({code})")
    if failed:
        print(f"mmtests.nightly: FAILED: {', '.join(failed)}", flush=True)
        return 1
    print("mmtests.nightly: all steps passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
