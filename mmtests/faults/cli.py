"""`python -m mmtests.faults`: the zoo's catalogue (no `--mm-config`), or the folder faults on a user's matrix."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ..figures.record_files import anchored
from .catalogue import CATALOGUE, CLEAN_RUNS, TARGETS, Fault
from .runner import Result, _run, apply

DESCRIPTION = ("Detection power, measured: apply a catalogue of silent faults to the embedded zoo (or, with "
               "--mm-config, to copies of your own model folders) and count how many turn the checks red, and how "
               "many clean reruns stay green.")


def _by_retrieval(results: list[Result], clean: list[Result]) -> dict | None:
    """How many of the faults in the dual encoders' files the retrieval checks alone turn red (None: no such fault)."""
    dual = [r for r in results if r.dual_encoder]
    if not dual:
        return None
    caught = [r for r in dual if r.suites.get("retrieval")]
    return {"faults": len(dual), "caught": len(caught), "rate": len(caught) / len(dual),
            "missed": [r.name for r in dual if not r.suites.get("retrieval")],
            "false_alarms": sum(bool(r.suites.get("retrieval")) for r in clean)}


def _summary(results: list[Result], clean: list[Result], path: Path, **extra) -> int:
    from tabulate import tabulate

    rows = [[r.name, r.what, len(r.red), "; ".join(r.red[:3]) + (" ..." if len(r.red) > 3 else ""),
             "yes" if r.caught else "no"] for r in results]
    print(tabulate(rows, headers=["fault", "what", "red checks", "e.g.", "caught"]))
    rate = sum(r.caught for r in results) / len(results) if results else 0.0
    alarms = sum(r.caught for r in clean)
    print(f"detection rate: {rate:.0%} ({sum(r.caught for r in results)} of {len(results)})")
    if clean:
        print(f"false alarms: {alarms} (of {len(clean)} clean reruns)")
    retrieval = _by_retrieval(results, clean)
    if retrieval:
        print(f"retrieval: {retrieval['caught']} of {retrieval['faults']} faults in the dual encoders' files caught by "
              f"the retrieval checks ({retrieval['rate']:.0%}); missed: {', '.join(retrieval['missed']) or 'none'}; "
              f"false alarms of retrieval on clean reruns: {retrieval['false_alarms']}")
        extra["retrieval"] = retrieval
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "detection_rate": rate, "false_alarms": alarms if clean else None,
        "faults": [r.__dict__ | {"caught": r.caught} for r in results],
        "clean": [r.__dict__ | {"caught": r.caught} for r in clean], **extra}, indent=2))
    return 1 if alarms else 0


def _zoo(args: argparse.Namespace) -> int:
    known = {f.name: f for f in CATALOGUE}
    faults = [known[n] for n in args.only] if args.only else CATALOGUE
    results, clean = [], []
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory(prefix="mmtests-faults-") as tmp:
        if not args.only:
            for name, batch, threads in CLEAN_RUNS:
                workdir = Path(tmp) / name
                workdir.mkdir()
                matrix = apply(Fault(name, "tiny-clip", "clean"), workdir)
                r = _run(matrix, sorted({m for _, _, ms in TARGETS.values() for m in ms}), workdir, batch, threads)
                r.name, r.what = name, f"clean models, batch {batch or 'default'}, {threads} thread(s)"
                clean.append(r)
                print(f"{name}: {'FALSE ALARM ' + '; '.join(r.red[:3]) if r.caught else 'green'} ({r.seconds:.0f} s)",
                      flush=True)
        for fault in tqdm(faults, desc="faults", disable=None):
            workdir = Path(tmp) / fault.name
            workdir.mkdir()
            r = _run(apply(fault, workdir), TARGETS[fault.target][2], workdir)
            r.name, r.what, r.dual_encoder = fault.name, fault.what, fault.dual_encoder
            results.append(r)
            tqdm.write(f"{fault.name}: {'caught by ' + str(len(r.red)) + ' checks' if r.caught else 'MISSED'} "
                       f"({r.seconds:.0f} s)")
    return _summary(results, clean, args.json)


def _user(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    from ..config import ConfigError, load_matrix
    from .user import plan, run_entry

    try:
        matrix = load_matrix(args.mm_config)
    except ConfigError as err:
        print(f"mmtests faults: matrix error: {err}", file=sys.stderr)
        return 4
    unknown = [m for m in args.mm_model or [] if m not in matrix.models]
    if unknown:
        ap.error(f"model(s) {', '.join(unknown)} not in {args.mm_config} (known: {', '.join(matrix.models)})")
    plans = plan(matrix, args.mm_model, args.only)
    results, clean = [], []
    with tempfile.TemporaryDirectory(prefix="mmtests-faults-") as tmp:
        for p in plans:
            if p.folder is None:
                print(f"{p.name}: its faults are not measurable: {p.why}", flush=True)
                continue
            c, rs = run_entry(matrix, p, Path(tmp), args.k, say=lambda line: print(line, flush=True))
            clean.append(c)
            results += rs
    not_measurable = {p.name: p.why for p in plans if p.folder is None}
    not_applicable = {p.name: p.not_applicable for p in plans if p.folder is not None and p.not_applicable}
    for name, why in not_measurable.items():
        print(f"not measurable: {name}: {why}")
    for name, faults in not_applicable.items():
        for fault, why in faults.items():
            print(f"not applicable: {name}: {fault}: {why}")
    code = _summary(results, clean, args.json, matrix=str(matrix.path), not_measurable=not_measurable,
                    not_applicable=not_applicable)
    if not results:
        print("no fault was measured: nothing above could be copied, broken and gated against a baseline")
        return code or 2
    return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmtests.faults", description=DESCRIPTION)
    ap.add_argument("--mm-config", type=anchored, default=None, metavar="FILE",
                    help="your matrix: apply the folder faults to copies of its local model folders (never to the "
                         "folders themselves), gated against each entry's baseline")
    ap.add_argument("--mm-model", action="append", metavar="NAME", help="with --mm-config: break only this entry "
                    "(repeatable; default: every entry)")
    ap.add_argument("-k", metavar="EXPR", help="with --mm-config: run only the checks pytest's -k EXPR selects")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these faults (zoo: and no clean reruns)")
    ap.add_argument("--json", type=anchored, default="reports/faults.json",
                    help="write the results here (relative: to the current directory)")
    ap.add_argument("--list", action="store_true", help="list the catalogue and exit")
    args = ap.parse_args(argv)
    if args.mm_config is None and (args.mm_model or args.k):
        ap.error("--mm-model and -k narrow a matrix of yours: pass it with --mm-config")
    from .folders import USER_CATALOGUE

    catalogue = USER_CATALOGUE if args.mm_config else CATALOGUE
    if args.list:
        for f in catalogue:
            print(f"{f.name:40s} {'/'.join(f.backends):27s} {f.what}" if args.mm_config
                  else f"{f.name:40s} {f.target:13s} {f.what}")
        return 0
    unknown = [n for n in args.only or [] if n not in {f.name for f in catalogue}]
    if unknown:
        ap.error(f"unknown fault(s) {', '.join(unknown)}; `--list` shows the catalogue")
    return _user(args, ap) if args.mm_config else _zoo(args)
