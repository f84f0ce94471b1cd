"""LLaVA attention-map properties at the answer position (the prompt's last token, which predicts the
first answer token), from eager attention of the language model.

Aggregation, stated once: per layer, maps are averaged over heads; the localization figures use the
map averaged over all layers and heads (no layer or head is picked after looking), per-layer
figures are recorded for the report. Every localization figure is compared with the control model
measured the same way, since the pointing game alone can look good for an untrained model.
"""

import numpy as np
import pytest
import torch

from mmtests.report.plots import attention_heatmaps

pytestmark = pytest.mark.llava


def _summary(mm, check, model=None):
    bench = mm.workbench.vlm
    return mm.available(bench.attention, model or check.model, check, test_id=check.id, suite="attention")


def _where(check, **extra):
    return dict(suite="attention", test_id=check.id, model=check.model, question_set=check.question_set,
                question_kind=check.kind, **extra)


def test_attention_rows_sum_to_one(attention_check, mm):
    """Softmax rows sum to 1 within the configured tolerance, or the compute dtype's resolution when coarser:
    weights stored in bfloat16 are each rounded by up to 2**-8 of themselves, so a row's sum by up to that
    (measured 2.9e-3 on an H200)."""
    s = _summary(mm, attention_check)
    tol = max(attention_check.row_sum_tolerance, torch.finfo(getattr(torch, s.dtype)).eps)
    mm.records.figure(metric="row_sum_error", value=s.row_sum_error, max_allowed=tol, dtype=s.dtype,
                      outcome="pass" if s.row_sum_error <= tol else "fail", **_where(attention_check))
    assert s.row_sum_error <= tol, f"an attention row sums to 1 ± {s.row_sum_error:.2e} (tolerance {tol:g})"


def test_attention_is_causal(attention_check, mm):
    s = _summary(mm, attention_check)
    mm.records.figure(metric="causal_leak", value=s.causal_leak, max_allowed=0.0,
                      outcome="pass" if s.causal_leak == 0 else "fail", **_where(attention_check))
    assert s.causal_leak == 0, f"a query attends to a later key with weight {s.causal_leak:.2e}"


def test_attention_shapes(attention_check, mm):
    """Layers and heads as the model config says; one image token per patch of the grid."""
    s = _summary(mm, attention_check)
    rows, cols = s.grid
    ok = (s.layers, s.heads) == (s.expected_layers, s.expected_heads) and s.image_tokens == rows * cols
    mm.records.figure(metric="shapes", value=float(ok), threshold=1.0, layers=s.layers, heads=s.heads,
                      grid=[rows, cols], image_tokens=s.image_tokens, **_where(attention_check))
    assert (s.layers, s.heads) == (s.expected_layers, s.expected_heads), (
        f"attentions have {s.layers} layers x {s.heads} heads; the config says "
        f"{s.expected_layers} x {s.expected_heads}")
    assert s.image_tokens == rows * cols, f"{s.image_tokens} image tokens for a {rows}x{cols} patch grid"


def test_image_share(attention_check, mm):
    """FastV's view: how much of the answer position's attention goes to image tokens, per layer."""
    c = attention_check
    s = _summary(mm, c)
    curve = np.mean(s.image_share, axis=0)
    fraction = float(np.mean(s.image_token_fraction))
    mean = float(curve.mean())
    mm.records.figure(metric="image_share", value=mean, threshold=c.min_image_share, per_layer=curve.tolist(),
                      image_token_fraction=fraction, per_token_efficiency=(curve / fraction).tolist(),
                      sink_per_layer=np.mean(s.sink_share, axis=0).tolist(), n=len(s.image_share), **_where(c))
    if c.min_image_share is None:
        pytest.skip(f"image share {mean:.3f} (image tokens are {fraction:.2f} of the keys): reported only")
    assert mean >= c.min_image_share, f"image tokens get {mean:.3f} of the attention (min {c.min_image_share})"


def test_sink_share(attention_check, mm):
    """StreamingLLM's attention sink: the first token's share, per layer."""
    c = attention_check
    s = _summary(mm, c)
    curve = np.mean(s.sink_share, axis=0)
    worst = float(curve.max())
    outcome = "measured" if c.max_sink_share is None else "pass" if worst <= c.max_sink_share else "fail"
    mm.records.figure(metric="sink_share", value=worst, max_allowed=c.max_sink_share, per_layer=curve.tolist(),
                      outcome=outcome, n=len(s.sink_share), **_where(c))
    if c.max_sink_share is None:
        pytest.skip(f"first-token share up to {worst:.3f} in a layer: reported only")
    assert worst <= c.max_sink_share, f"a layer gives the first token {worst:.3f} (max {c.max_sink_share})"


def test_localization(attention_check, mm):
    """The answer position looks inside the object's box: inside/outside ratio and pointing game,
    each against chance and against the control model."""
    c = attention_check
    s = _summary(mm, c)
    ratio, hit, chance = float(np.mean(s.ratio)), float(np.mean(s.hit)), float(np.mean(s.chance))
    control = _summary(mm, c, c.control) if c.control else None
    c_ratio = float(np.mean(control.ratio)) if control else None
    c_hit = float(np.mean(control.hit)) if control else None
    where = _where(c, control=c.control, n=len(s.ratio))
    mm.records.figure(metric="inside_outside", value=ratio, threshold=c.min_inside_outside, control_value=c_ratio,
                      per_layer=np.mean(s.ratio_by_layer, axis=0).tolist(),
                      control_per_layer=np.mean(control.ratio_by_layer, axis=0).tolist() if control else None,
                      outcome=None if c.min_inside_outside is None else "pass" if ratio >= c.min_inside_outside else "fail",
                      **where)
    mm.records.figure(metric="pointing_hit", value=hit, threshold=c.min_pointing_hit, chance=chance,
                      control_value=c_hit, per_layer=np.mean(s.hit_by_layer, axis=0).tolist(),
                      control_per_layer=np.mean(control.hit_by_layer, axis=0).tolist() if control else None, **where)
    picture = mm.artifact(f"attention-{c.id.replace('/', '-')}.png")
    attention_heatmaps(s.heatmaps, control.heatmaps if control else None, picture,
                       f"rows: image, {c.model}, control {c.control}; {c.kind} questions" if control else c.model)
    mm.records.figure(metric="heatmaps", value=None, outcome="measured", artifact=str(picture), **where)
    problems = []
    if c.min_inside_outside is not None and ratio < c.min_inside_outside:
        problems.append(f"inside/outside ratio {ratio:.2f} < {c.min_inside_outside}")
    if c.min_pointing_hit is not None and hit < c.min_pointing_hit:
        problems.append(f"pointing game {hit:.2f} < {c.min_pointing_hit} (chance {chance:.2f})")
    if c.min_margin_over_control is not None:
        margin = ratio - c_ratio
        mm.records.figure(metric="margin_over_control", value=margin, threshold=c.min_margin_over_control, **where)
        if margin < c.min_margin_over_control:
            problems.append(f"inside/outside ratio {ratio:.2f} is only {margin:+.2f} above the control "
                            f"{c.control!r} ({c_ratio:.2f}); min margin {c.min_margin_over_control}")
    if not any(x is not None for x in (c.min_inside_outside, c.min_pointing_hit, c.min_margin_over_control)):
        pytest.skip(f"ratio {ratio:.2f}, pointing {hit:.2f} (chance {chance:.2f}): reported only")
    assert not problems, f"{c.id}: " + "; ".join(problems)
