"""LLaVA attention-map properties at the answer position (the prompt's last token, which predicts the
first answer token), from eager attention of the language model.

Structural properties (rows sum to one, causality, shapes) do not depend on what the model knows and
are measured on every sampled question; the others on the questions it answers correctly.

Aggregation, stated once: per layer, maps are averaged over heads; the localization figures use the
map averaged over all layers and heads (no layer or head is picked after looking), per-layer
figures are recorded for the report. Attention is measured on the questions the model answers
correctly (a model that cannot answer cannot pass by where it looks), and every localization figure
is compared with the control model measured on the same questions, since the pointing game alone
can look good for an untrained model.
"""

import numpy as np
import pytest
import torch

from mmtests.figures import gates
from mmtests.figures.artifacts import save_heatmaps
from mmtests.figures.baseline_store import digest
from mmtests.figures.check import judged, measured

pytestmark = pytest.mark.llava
MIN_SAMPLES = 5  # fewer correctly answered questions than this and localization is not measurable


def _summary(mm, check, model=None, answered_only=True):
    vlms = mm.vlms
    return mm.available(vlms.attention, model or check.model, check, answered_only, test_id=check.id,
                        suite="attention")


def _judge(mm, request, check, checks, **extra):
    mm.judge(request, checks, suite="attention", test_id=check.id, model=check.model,
             question_set=check.question_set, question_kind=check.kind, **extra)


def _measurable(mm, request, check):
    """The attention summary over the correctly answered questions (every boxed one with `on = "all"`); fails when
    too few are answered correctly."""
    items, total = mm.available(mm.vlms.attention_items, check, test_id=check.id, suite="attention")
    needed = min(MIN_SAMPLES, check.samples)
    if len(items) < needed and check.on == "answered":
        _judge(mm, request, check, [judged("answered_for_attention", len(items), needed,
                                             explain=f"the model answers {len(items)} of {total} {check.kind!r} "
                                                     "questions correctly; attention is measured on correct answers")])
    s = _summary(mm, check)
    if s is not None and not s.ratio:
        _judge(mm, request, check, [judged("localizable_samples", 0, 1, explain=(
            s.shape_mismatch or f"in every sampled question ({s.undefined}) the box holds no image token's centre, "
            "or all of them: the model's image tokens are too coarse for these boxes"))])
    return s


def test_attention_rows_sum_to_one(attention_check, mm, request):
    """Softmax rows sum to 1 within the configured tolerance, or the compute dtype's resolution when coarser:
    weights stored in bfloat16 are each rounded by up to 2**-8 of themselves, so a row's sum by up to that
    (measured 2.9e-3 on an H200)."""
    s = _summary(mm, attention_check, answered_only=False)
    tol = max(attention_check.row_sum_tolerance, torch.finfo(getattr(torch, s.dtype)).eps)
    _judge(mm, request, attention_check, [judged("row_sum_error", s.row_sum_error, tol, fields={"dtype": s.dtype})])


def test_attention_is_causal(attention_check, mm, request):
    """No weight where the model's mask kind forbids it: a later key ("causal"), a later key outside the
    bidirectional prefix ("prefix"); cross-attention over vision keys has no order to keep."""
    s = _summary(mm, attention_check, answered_only=False)
    _judge(mm, request, attention_check, [judged("causal_leak", s.causal_leak, 0.0, fields={"mask": s.mask},
                                                  explain=f"largest weight the {s.mask!r} mask forbids")])


def test_attention_shapes(attention_check, mm, request):
    """Layers and heads as the model config says; as many image tokens as the processor's geometry gives the
    image regions (tiles, newlines, merged or pooled patches included)."""
    s = _summary(mm, attention_check, answered_only=False)
    ok = ((s.layers, s.heads) == (s.expected_layers, s.expected_heads) and not s.shape_mismatch
          and s.image_tokens == s.expected_image_tokens)
    grid = list(s.grid) if s.grid else None
    check = judged("shapes", float(ok), 1.0, fields={"layers": s.layers, "heads": s.heads, "grid": grid,
                                                       "image_tokens": s.image_tokens,
                                                       "expected_image_tokens": s.expected_image_tokens},
                     explain=f"{s.layers} layers x {s.heads} heads (config {s.expected_layers} x {s.expected_heads}); "
                             + (s.shape_mismatch or f"{s.image_tokens} image tokens, {s.expected_image_tokens} "
                                "regions by the processor's geometry"))
    _judge(mm, request, attention_check, [check])


def test_image_share(attention_check, mm, request):
    """FastV's view: how much of the answer position's attention goes to image tokens, per layer."""
    c = attention_check
    s = _measurable(mm, request, c)
    curve = np.mean(s.image_share, axis=0)
    fraction = float(np.mean(s.image_token_fraction))
    check = judged("image_share", float(curve.mean()), c.min_image_share,
                     explain=f"image tokens are {fraction:.2f} of the keys",
                     fields={"per_layer": curve.tolist(), "image_token_fraction": fraction,
                             "per_token_efficiency": (curve / fraction).tolist(),
                             "sink_per_layer": np.mean(s.sink_share, axis=0).tolist(), "n": len(s.image_share)})
    _judge(mm, request, c, [check])


def test_sink_share(attention_check, mm, request):
    """StreamingLLM's attention sink: the first token's share, per layer (the largest is the figure)."""
    c = attention_check
    s = _measurable(mm, request, c)
    curve = np.mean(s.sink_share, axis=0)
    _judge(mm, request, c, [judged("sink_share", float(curve.max()), c.max_sink_share,
                                    fields={"per_layer": curve.tolist(), "n": len(s.sink_share)})])


def test_localization(attention_check, mm, request):
    """On questions the model answers correctly, the answer position looks inside the object's box:
    inside/outside ratio and pointing game, each against chance and against the control model."""
    c = attention_check
    s = _measurable(mm, request, c)
    _, total = mm.vlms.attention_items(c)
    ratio, hit, chance = float(np.mean(s.ratio)), float(np.mean(s.hit)), float(np.mean(s.chance))
    control = _summary(mm, c, c.control) if c.control else None
    c_ratio = float(np.mean(control.ratio)) if control else None
    c_hit = float(np.mean(control.hit)) if control else None
    per_layer = {"per_layer": np.mean(s.ratio_by_layer, axis=0).tolist(),
                 "control_per_layer": np.mean(control.ratio_by_layer, axis=0).tolist() if control else None}
    checks = [
        judged("inside_outside", ratio, c.min_inside_outside, fields={"control_value": c_ratio, **per_layer}),
        judged("pointing_hit", hit, c.min_pointing_hit, explain=f"chance {chance:.2f}",
                 fields={"chance": chance, "control_value": c_hit,
                         "per_layer": np.mean(s.hit_by_layer, axis=0).tolist(),
                         "control_per_layer": np.mean(control.hit_by_layer, axis=0).tolist() if control else None}),
    ]
    if control is not None:
        checks.append(judged("margin_over_control", ratio - c_ratio, c.min_margin_over_control,
                               explain=f"inside/outside {ratio:.2f} vs the control {c.control!r} {c_ratio:.2f}"))
    heatmaps = save_heatmaps(mm.artifact(f"attention-{c.id.replace('/', '-')}.npz"), s.heatmaps,
                             control.heatmaps if control else None,
                             f"rows: image, {c.model}, control {c.control}; {c.kind} questions" if control else c.model)
    checks.append(measured("heatmaps", None, fields={"artifact": str(heatmaps)}))
    _judge(mm, request, c, checks, control=c.control, n=len(s.ratio), answered=len(s.ratio), of=total)


def _attention_samples(mm, check, model):
    """`model`'s per-sample attention outcomes on the check's questions (the check's model's correct answers),
    logged beside the records and kept for --mm-save-baseline; with its baseline's, when it has one."""
    vlms = mm.vlms
    s = _summary(mm, check, model)
    candidates = [(i, q) for i, q in enumerate(vlms.questions(check.question_set)) if q.qa.kind == check.kind and q.bbox]
    truth = digest([[i, q.qa.question, q.qa.answer, list(q.bbox)] for i, q in candidates])
    key = f"attention/{check.question_set}/{check.kind}"
    mine = {"digest": truth, "question": list(s.questions), "inside_outside": [float(x) for x in s.ratio],
            "pointing_hit": [bool(x) for x in s.hit],
            "image_share_by_layer": [[float(v) for v in x] for x in s.image_share]}
    mm.samples(model, key, mine)
    baseline = mm.available(mm.baseline, model, test_id=check.id, suite="attention")
    base = mm.available(baseline.entry, key, model, truth, test_id=check.id, suite="attention") if baseline else None
    return mine, base


def test_attention_matches_baseline(attention_check, mm, request):
    """Sample by sample, the model (and its control) attend as their known-good selves: inside/outside ratio,
    pointing outcome and per-layer image share within tolerances measured on clean reruns. The floors above
    judge how good localization is; this gate notices that it changed."""
    c = attention_check
    _measurable(mm, request, c)
    checks = []
    for model, role in ((c.model, ""), (c.control, "control_")) if c.control else ((c.model, ""),):
        mine, base = _attention_samples(mm, c, model)
        if base is None:
            why = "recording the baseline" if mm.saving else f"model {model!r} names no baseline"
            checks.append(measured(f"{role}attention_vs_baseline", None, explain=why))
            continue
        checks += gates.attention_gates(role, base, mine, mm.tolerances(model))
    _judge(mm, request, c, checks, control=c.control)
