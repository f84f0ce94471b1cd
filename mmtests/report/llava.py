"""The report's LLaVA section, from records only: answers, POPE, stability, attention, pictures."""

from __future__ import annotations

from pathlib import Path

from ..figures.artifacts import load_heatmaps
from ..figures.record_reader import Run
from ..figures.record_schema import bound_of
from .markdown import MARK, _table, bounded
from .plots import accuracy_by_kind, attention_heatmaps, per_layer_curves


def _fmt(figure: dict | None) -> str:
    if figure is None or figure.get("value") is None:
        return "–"
    return f"{figure['value']:.3f}" + bounded(figure)


def answers(run: Run) -> str:
    figures = run.select("vlm_answers", "accuracy")
    if not figures:
        return ""
    kinds = list(dict.fromkeys(f["question_kind"] for f in figures))
    by = {(f["model"], f["question_set"], f["question_kind"]): f for f in figures}
    pairs = list(dict.fromkeys((f["model"], f["question_set"]) for f in figures))
    rows = [[m, q, *(_fmt(by.get((m, q, k))) for k in kinds)] for m, q in pairs]
    baseline = {k: next((f.get("majority_baseline") for f in figures if f["question_kind"] == k), None) for k in kinds}
    rows.append(["*majority answer*", "", *(f"{baseline[k]:.3f}" if baseline[k] is not None else "–" for k in kinds)])
    text = _table(rows, ["model", "question set", *kinds])
    text += ("\n\nNormalized exact match (lower case, no punctuation or articles, synonyms); `describe` counts "
             "a description that names the object. *Majority answer*: always giving the most frequent answer "
             "of the set, what a model blind to the image can reach.")
    return text


def pope(run: Run) -> str:
    f1s = run.select("pope", "f1")
    if not f1s:
        return ""
    others = {(f["test_id"], f["metric"]): f for f in run.select("pope")}
    rows = []
    for f in f1s:
        yes = others.get((f["test_id"], "yes_ratio_gap"), {})
        ratio = "–" if not yes else (f"{yes['yes_ratio']:.2f} (true {yes['true_yes_ratio']:.2f})"
                                     + (f" {MARK[yes['outcome']]}" if bound_of(yes)[1] is not None else ""))
        rows.append([f["model"], f["pope_set"], *(others.get((f["test_id"], m), {}).get("value")
                                                  for m in ("accuracy", "precision", "recall")), _fmt(f), ratio,
                     f.get("always_yes_f1"), f["n"]])
    return _table(rows, ["model", "POPE set", "accuracy", "precision", "recall", "F1", "yes-ratio of predictions",
                         "always-yes F1", "questions"])


def stability(run: Run) -> str:
    figures = run.select("vlm_stability")
    if not figures:
        return ""
    metrics = ["same_answer_twice", "batched_equals_single", "non_empty", "finished", "max_repeated_bigrams"]
    by = {(f["model"], f["question_set"], f["metric"]): f for f in figures}
    pairs = list(dict.fromkeys((f["model"], f["question_set"]) for f in figures))
    rows = [[m, q, *(_fmt(by.get((m, q, k))) for k in metrics)] for m, q in pairs]
    return _table(rows, ["model", "question set", "same answers twice", "batched = one at a time", "non-empty",
                         "ended by EOS", "max repeated bigrams"])


def attention(run: Run) -> str:
    figures = run.select("attention")
    if not figures:
        return ""
    by = {(f["test_id"], f["metric"]): f for f in figures}
    rows = []
    for test_id in dict.fromkeys(f["test_id"] for f in figures):
        def get(metric, test_id=test_id):
            return by.get((test_id, metric))
        loc, hit = get("inside_outside"), get("pointing_hit")
        control = loc.get("control") if loc else None
        rows.append([
            test_id,
            _fmt(get("row_sum_error")), _fmt(get("causal_leak")),
            "✅" if (get("shapes") or {}).get("value") == 1.0 else "❌" if get("shapes") else "–",
            _fmt(get("image_share")), _fmt(get("sink_share")),
            _fmt(loc) + (f" vs {loc['control_value']:.2f}" if loc and loc.get("control_value") is not None else ""),
            (f"{hit['value']:.2f} (chance {hit['chance']:.2f}"
             + (f", control {hit['control_value']:.2f})" if hit.get("control_value") is not None else ")")) if hit else "–",
            control or "–",
        ])
    return _table(rows, ["check", "row-sum error", "causal leak", "shapes", "image share (mean of layers)",
                         "max sink share", "inside/outside ratio vs control", "pointing game", "control"])


def pictures(run: Run, run_dir: Path) -> list[str]:
    """Per-layer curves drawn from the records, and heatmaps drawn from the data the suites saved beside them."""
    out = []
    share = run.select("attention", "image_share")
    curve = per_layer_curves(
        [(f"{f['model']}: image tokens", f.get("per_layer")) for f in share]
        + [(f"{f['model']}: first token (sink)", f.get("sink_per_layer")) for f in share],
        run_dir / "attention_share_by_layer.png", "share of the answer position's attention",
        "Where the answer position looks, per layer (mean over heads and samples)",
        reference=share[0].get("image_token_fraction") if share else None, reference_label="image tokens' share of keys")
    if curve:
        out.append(f"![attention share by layer]({curve.name})")
    loc = run.select("attention", "inside_outside")
    ratio = per_layer_curves(
        [(f["model"], f.get("per_layer")) for f in loc]
        + [(f"{f['control']} (control)", f.get("control_per_layer")) for f in loc if f.get("control")],
        run_dir / "localization_by_layer.png", "mean attention inside box / outside",
        "Localization per layer: answer position over image patches", reference=1.0, reference_label="no preference",
        log=True)
    if ratio:
        out.append(f"![localization by layer]({ratio.name})")
    for f in run.select("attention", "heatmaps"):
        source = Path(f.get("artifact", ""))
        if not source.is_file():
            run.problems.append(f"heatmap data {source} named by the records is missing")
            continue
        try:
            samples, control, title = load_heatmaps(source)
        except (OSError, ValueError, KeyError) as err:
            run.problems.append(f"heatmap data {source} cannot be read ({err.__class__.__name__}: {err}); skipped")
            continue
        picture = attention_heatmaps(samples, control, run_dir / f"{source.stem}.png", title)
        out.append(f"![attention heatmaps {f['test_id']}]({picture.name})")
    return out


def section(run: Run, run_dir: Path) -> list[str]:
    parts = [("### Answers by question kind", answers(run)), ("### POPE-style yes/no probes", pope(run)),
             ("### Generation stability", stability(run)), ("### Attention maps", attention(run))]
    parts = [(title, body) for title, body in parts if body]
    if not parts:
        return []
    out = ["## LLaVA"]
    for title, body in parts:
        out += [title, body]
        if title.startswith("### Answers") and (plot := accuracy_by_kind(run.select("vlm_answers", "accuracy"),
                                                                          run_dir / "llava_accuracy_by_kind.png")):
            out.append(f"![LLaVA answer accuracy by kind, 95% intervals]({plot.name})")
    return out + pictures(run, run_dir)
