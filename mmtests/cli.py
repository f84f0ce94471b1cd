"""The `mmtests` command: one way in to the suites, the benchmarks, the nightly job, the report, comparisons and
detection power. pytest stays the engine: `run` and `bench` are pytest sessions over the installed package
(`--pyargs mmtests.suites`, `--pyargs mmtests.benchmarks`), so they work from any folder, a wheel install included.
The `python -m mmtests.report`, `mmtests.nightly` and `mmtests.faults` entry points stay as aliases.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

PYTEST_STATUSES = """exit status (pytest's):
  0  every check passed (or was measured)
  1  a check failed
  2  interrupted
  3  internal error
  4  usage error: a bad option or matrix file (the message names the entry and the fix)
  5  no test collected (nothing selected, or a matrix with no check)"""


def _matrix_options() -> argparse.ArgumentParser:
    """The mm options `run`, `bench` and `nightly` share, handed to pytest as they are."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("the matrix (passed to pytest)")
    g.add_argument("--mm-config", metavar="FILE", help="matrix TOML (`mmtests init` writes one); default: the embedded "
                   "zoo. Relative paths: to the current folder")
    g.add_argument("--mm-model", action="append", metavar="NAME", help="only this model of the matrix (repeatable)")
    g.add_argument("--mm-dataset", action="append", metavar="NAME", help="only this dataset of the matrix (repeatable)")
    g.add_argument("--mm-device", metavar="auto|cpu|cuda", help="device (default auto: cuda when available)")
    g.add_argument("--mm-batch-size", metavar="N", help="images per forward, questions per generate() batch")
    g.add_argument("--mm-online", action="store_true", help="allow downloads from model and dataset hubs (default: "
                   "offline; a hub model not in the local cache is skipped)")
    g.add_argument("--mm-require-all", action="store_true", help="a model or dataset not available here fails "
                   "instead of skipping")
    return p


def _mm_args(args: argparse.Namespace) -> list[str]:
    out = []
    for name in ("mm_config", "mm_device", "mm_batch_size"):
        if getattr(args, name) is not None:
            out += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    for name in ("mm_model", "mm_dataset"):
        for value in getattr(args, name) or []:
            out += [f"--{name.replace('_', '-')}", value]
    return out + [f"--{n.replace('_', '-')}" for n in ("mm_online", "mm_require_all") if getattr(args, n)]


def _hub_note(args: argparse.Namespace) -> None:
    """Said before a run starts: hub models not in the local cache are skipped offline."""
    if args.mm_online or not args.mm_config:
        return
    from .config import ConfigError, load_matrix
    from .starter import uncached_hub_models

    try:
        missing = uncached_hub_models(load_matrix(Path(args.mm_config)).models)
    except (ConfigError, OSError, ImportError):
        return  # pytest names a matrix error itself
    if missing:
        print(f"mmtests: model(s) {', '.join(missing)} are hub models not in the local cache: offline they are skipped "
              "(with --mm-require-all, they fail); pass --mm-online to download them", file=sys.stderr, flush=True)


def _pytest(args: list[str]) -> int:
    command = [sys.executable, "-m", "pytest", *args]
    print(f"mmtests: {' '.join(command)}", flush=True)
    return subprocess.call(command)


def cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    _hub_note(args)
    return _pytest(["--pyargs", "mmtests.suites", *_mm_args(args), "--mm-records", str(args.mm_records), *rest])


def cmd_bench(args: argparse.Namespace, rest: list[str]) -> int:
    _hub_note(args)
    return _pytest(["--pyargs", "mmtests.benchmarks", *_mm_args(args), "--benchmark-enable", "--benchmark-only",
                    "--benchmark-json", str(args.json), *rest])


def cmd_nightly(args: argparse.Namespace, rest: list[str]) -> int:
    from . import nightly

    _hub_note(args)
    return nightly.main(["--out", str(args.out), *(["--faults"] if args.faults else []), *_mm_args(args), *rest])


def cmd_init(args: argparse.Namespace, rest: list[str]) -> int:
    from .config import ConfigError, load_matrix
    from .starter import starter_matrix, target_of

    out = args.out
    if out.exists() and not args.force:
        print(f"mmtests init: {out} already exists; pass --force to overwrite it, or --out another file", file=sys.stderr)
        return 2
    try:
        target = target_of(args.model, out)
    except ConfigError as err:
        print(f"mmtests init: {err}", file=sys.stderr)
        return 1
    if args.name:
        target = replace(target, name=args.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(starter_matrix(target, out), encoding="utf-8")
    try:
        load_matrix(out)  # what was written reads back as a valid matrix
    except ConfigError as err:
        print(f"mmtests init: the matrix written to {out} does not read back: {err}", file=sys.stderr)
        return 1
    print(f"mmtests init: wrote {out} for {target.model} ({target.evidence})")
    online = " --mm-online" if target.hub else ""
    print(f"next: mmtests run --mm-config {out}{online}")
    if target.hub:
        print("  (a hub model: --mm-online lets the first run download it; offline, a model not in the local cache "
              "is skipped)")
    return 0


def cmd_compare(args: argparse.Namespace, rest: list[str]) -> int:
    from .figures.record_reader import read_run
    from .report.compare import Side, comparison

    second_file = args.second or args.first
    if second_file == args.first and not args.models and args.second_run is None:
        print("mmtests compare: give two records files, --second-run ID, or --models A B", file=sys.stderr)
        return 2
    one, two = read_run(args.first, args.run), read_run(second_file, args.second_run)
    for run, path in ((one, args.first), (two, second_file)):
        if not run.figures and run.problems:
            print(f"mmtests compare: {path}: {run.problems[0]}", file=sys.stderr)
            return 2
    a, b = args.models or (None, None)
    text, shared = comparison(Side(one, a), Side(two, b))
    print(text, end="")
    return 0 if shared else 2


def _parser() -> tuple[argparse.ArgumentParser, dict]:
    ap = argparse.ArgumentParser(prog="mmtests", description=__doc__.split("\n\n")[0],
                                 epilog="`mmtests COMMAND --help` says what each does and its exit statuses.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    mm = _matrix_options()
    raw = argparse.RawDescriptionHelpFormatter

    def add(name: str, summary: str, epilog: str, parents=(mm,)) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary, epilog=epilog, parents=list(parents),
                              formatter_class=raw, allow_abbrev=False)

    init = add("init", "write a starter matrix for a model folder, a Hugging Face hub id or an open_clip name",
               "The family is read from the model's files (open_clip_config.json, config.json); the matrix uses the "
               "built-in\nshapes datasets and prompt sets, with the checks that apply, commented for editing.\n\n"
               "exit status:\n  0  written\n  1  the model cannot be read (not a model folder, a family mmtests does "
               "not run)\n  2  usage error, or the file exists (pass --force)", parents=())
    init.add_argument("model", metavar="MODEL", help="a folder (open_clip or transformers), a hub id "
                      "(org/name) or an open_clip name (ViT-B-32 or ViT-B-32:openai)")
    init.add_argument("--out", type=Path, default=Path("mmtests.toml"), metavar="FILE",
                      help="the matrix to write (default %(default)s)")
    init.add_argument("--name", help="the model's name in the matrix (default: from the folder or id)")
    init.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    run = add("run", "run the suites on a matrix (pytest --pyargs mmtests.suites); pytest args go after --",
              "e.g. mmtests run --mm-config mmtests.toml -- -k zero_shot -x\n\n" + PYTEST_STATUSES)
    run.add_argument("--mm-records", type=Path, default=Path("reports/records.jsonl"), metavar="FILE",
                     help="where the figures go (default %(default)s), for `mmtests report` and `mmtests compare`")

    bench = add("bench", "run the benchmarks on a matrix (pytest --pyargs mmtests.benchmarks), timed, into JSON",
                "The matrix's [benchmarks] section sets the models, batch sizes and rounds.\n\n" + PYTEST_STATUSES)
    bench.add_argument("--json", type=Path, default=Path("reports/benchmarks.json"), metavar="FILE",
                       help="pytest-benchmark JSON to write (default %(default)s), for `mmtests report --benchmarks`")

    nightly = add("nightly", "the main job: suites, benchmarks (and detection power with --faults), then the report",
                  "Every mm option goes to both the suites and the benchmarks; pytest args after -- go to the suites.\n"
                  "The report is always written (OUT/latest.md).\n\nexit status:\n  0  every step passed\n  1  a step "
                  "failed (named), a figure failed, the run is incomplete or a figure regressed\n  2  usage error")
    nightly.add_argument("--out", type=Path, default=Path("reports"), metavar="FOLDER",
                         help="records, benchmarks and the report (default %(default)s)")
    nightly.add_argument("--faults", action="store_true", help="add detection power (mmtests faults; minutes)")

    add("report", "write the Markdown report of a run's records (see mmtests report --help)", "", parents=())
    add("faults", "detection power: silent faults applied to the embedded zoo (see mmtests faults --help)", "",
        parents=())

    compare = add("compare", "compare two runs' records, or two models of one run: figures and paired per-sample "
                  "outcomes", "Per figure both share: both values and the difference (second - first). Per set of "
                  "samples both scored\n(records-samples.jsonl): the paired difference and its two-sided exact McNemar "
                  "p-value.\n\nexit status:\n  0  compared\n  2  usage error, no records, or nothing in common",
                  parents=())
    compare.add_argument("first", type=Path, metavar="RECORDS", help="a records file (reports/records.jsonl)")
    compare.add_argument("second", type=Path, nargs="?", metavar="SECOND_RECORDS",
                         help="another run's records file (default: RECORDS again, with --second-run or --models)")
    compare.add_argument("--run", metavar="RUN_ID", help="the run of RECORDS (default: its newest with figures)")
    compare.add_argument("--second-run", metavar="RUN_ID", help="the run of SECOND_RECORDS (default: its newest)")
    compare.add_argument("--models", nargs=2, metavar=("A", "B"), help="compare model A with model B of the runs")
    return ap, {"init": cmd_init, "run": cmd_run, "bench": cmd_bench, "nightly": cmd_nightly, "compare": cmd_compare}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":  # its own parser: `mmtests report --help` is the report's
        from .report.__main__ import main as report_main

        return report_main(argv[1:])
    if argv and argv[0] == "faults":
        from .faults import main as faults_main

        return faults_main(argv[1:])
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap, commands = _parser()
    args = ap.parse_args(argv)
    return commands[args.command](args, rest)


if __name__ == "__main__":
    sys.exit(main())
