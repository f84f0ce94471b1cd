"""The records schema: what a record line holds, which fields name a figure's bound, and how a reader checks
a figure line. Written by `record_writer`, read by `record_reader`; the run header carries `SCHEMA_VERSION`.

Lines: a `run` header (environment, `schema`), a `plan` (the checks collected), one `figure` per measured
figure (or per crashed check: outcome "crashed"), an `end` line (counts, crashed checks among them, and pytest's
exit status).
"""

from __future__ import annotations

SCHEMA_VERSION = 1  # bump when a field changes meaning or a reader could no longer take an older line
# "crashed" (an exception in the check, with `error`, `message`, `origin`, `at`, `called_from` and, for a check
# that failed on a crash an earlier check met, `earlier`) was added without a bump: no older line changes meaning
# and this reader takes every older line. A reader older than it takes a crashed line for what it is not, an
# unreadable figure ("unknown outcome"), whose outcome it says is unknown and whose run it will not call good:
# it fails closed. Readers must accept every outcome below.
OUTCOMES = ("pass", "fail", "measured", "skip", "crashed")
REQUIRED = ("suite", "test_id", "metric", "outcome", "value")  # what every section of the report relies on
NUMBERS = ("value", "threshold", "max_allowed", "tolerance")  # a number or null
# pytest's exit statuses, as end lines carry them. 0, 1 (checks failed) and 5 (nothing collected) end a session
# normally; 2, 3, 4 (or any other) mean the writer stopped before its checks were done.
ENDINGS = {
    1: "checks failed (exit status 1)",
    2: "interrupted (exit status 2)",
    3: "crashed: pytest internal error (exit status 3)",
    4: "usage error (exit status 4)",
    5: "no checks selected (exit status 5: pytest collected no test; a -k, -m or path that matches none?)",
}
NORMAL_ENDS = (None, 0, 1, 5)
NEEDS = {  # fields the report's tables read, by (suite, metric); None: every metric of the suite
    ("zero_shot", "top1"): ("model", "dataset", "prompt_set"),
    ("prompt_gain", "gain"): ("model", "dataset", "baseline", "candidate", "baseline_top1", "candidate_top1", "stderr"),
    **{("retrieval", f"{way}_r{k}"): ("model", "dataset", "chance", "n") for way in ("image_to_text", "text_to_image")
       for k in (1, 5, 10)},
    ("vlm_answers", "accuracy"): ("model", "question_set", "question_kind"),
    ("pope", "f1"): ("model", "pope_set", "n"),
    ("pope", "yes_ratio_gap"): ("yes_ratio", "true_yes_ratio"),
    ("vlm_stability", None): ("model", "question_set"),
    ("attention", None): ("model",),
    ("attention", "pointing_hit"): ("chance",),
}


# The record field each bound kind is written under (the report's tables read these names).
BOUND_FIELDS = {"min": "threshold", "max": "max_allowed", "baseline": "tolerance"}


def bound_of(figure: dict) -> tuple[str, float | None]:
    """A figure line's bound kind and bound, from whichever field it was written under."""
    for kind, key in BOUND_FIELDS.items():
        if figure.get(key) is not None:
            return kind, figure[key]
    return figure.get("bound_kind") or "measured", None


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def figure_problem(record: dict) -> str | None:
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        return f"a figure without {', '.join(map(repr, missing))} (an older record format?)"
    for key in ("suite", "test_id", "metric"):
        if not isinstance(record[key], str):
            return f"{key} {record[key]!r} is not a string"
    if record["outcome"] not in OUTCOMES:
        return f"unknown outcome {record['outcome']!r}"
    for key in NUMBERS:
        if record.get(key) is not None and not _is_number(record[key]):
            return f"{key} {record[key]!r} is a {type(record[key]).__name__}, not a number"
    if record["outcome"] == "crashed":  # no figure was measured: only who crashed, and what, are known
        return None
    needs = NEEDS.get((record["suite"], record["metric"]), ()) + NEEDS.get((record["suite"], None), ())
    if record.get("bound_kind") == "baseline":
        needs += ("model",)
    missing = [k for k in needs if k not in record]
    if missing:
        what = f"a {record['suite']} {record['metric']} figure"
        return f"{what} without {', '.join(map(repr, missing))} (an older record format?)"
    return None
