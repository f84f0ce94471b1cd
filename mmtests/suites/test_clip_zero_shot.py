"""CLIP zero-shot suites: accuracy per (model, dataset, prompt set) against its floor and, image by
image, against the model's known-good baseline; prompt-engineering gains."""

import pytest

from mmtests.figures import gates
from mmtests.figures.baseline_store import digest
from mmtests.figures.check import judged, measured

pytestmark = pytest.mark.clip

PROBE_IMAGES = 64  # first images of a dataset whose embeddings are compared with the baseline's


def _where(c, **extra):
    return dict(suite="zero_shot", test_id=c.id, model=c.model, dataset=c.dataset, prompt_set=c.prompt_set, **extra)


def _samples(mm, c):
    """This run's per-image outcomes (logged, and kept for --mm-save-baseline) and the baseline's, if any."""
    encoders = mm.encoders
    s = mm.available(encoders.zero_shot_samples, c, test_id=c.id, suite="zero_shot")
    feats = encoders.image_features(c.model, c.dataset)
    key = f"zero_shot/{c.dataset}/{c.prompt_set}"
    truth = digest([feats.labels.tolist(), list(feats.classnames)])
    mine = {"digest": truth, "predicted": s.predicted, "probability": [round(p, 7) for p in s.probability],
            "correct": s.correct}
    mm.samples(c.model, key, mine)
    baseline = mm.available(mm.baseline, c.model, test_id=c.id, suite="zero_shot")
    base = mm.available(baseline.entry, key, c.model, truth, test_id=c.id, suite="zero_shot") if baseline else None
    return mine, base, baseline


def test_zero_shot_top1(zero_shot_check, mm, request):
    c = zero_shot_check
    metrics = mm.available(mm.encoders.zero_shot, c, test_id=c.id, suite="zero_shot")
    mine, base, _ = _samples(mm, c)
    majority = max(metrics.class_shares.values())
    checks = [
        judged("top1", metrics.top1, c.min_top1, trivial=majority, fields={"n": metrics.n, "majority_baseline": majority}),
        measured("top5", metrics.top5),
        measured("mean_per_class_recall", metrics.mean_per_class_recall,
                 fields={"per_class": metrics.per_class_recall}),
    ]
    skipped = mm.encoders.skipped_images(c.dataset)
    if skipped:  # images that do not decode are left out of every check, and said so
        checks.append(measured("images_skipped", len(skipped),
                               explain="; ".join(skipped[:5]), fields={"skipped": skipped}))
    converted = mm.encoders.converted_images(c.dataset)
    if converted:  # images the one RGB rule changed (alpha, 16-bit or float values, frames): counted and named
        checks.append(measured("images_converted", len(converted),
                               explain="; ".join(converted[:5]), fields={"converted": converted}))
    if base is not None:
        names = [f"image {i}" for i in range(len(mine["correct"]))]
        checks.append(gates.accuracy_gate("top1_vs_baseline", base["correct"], mine["correct"], mm.tolerances(c.model),
                                      names))
    mm.judge(request, checks, **_where(c, dataset_description=mm.matrix.datasets[c.dataset].description))


def test_zero_shot_matches_baseline(zero_shot_check, mm, request):
    """Image by image, the model agrees with its known-good self: same predicted class, same probability,
    same embeddings on a probe set, same text classifier (within tolerances measured on clean reruns)."""
    c = zero_shot_check
    encoders = mm.encoders
    mine, base, baseline = _samples(mm, c)
    images = encoders.image_features(c.model, c.dataset).features[:PROBE_IMAGES]
    classifier = encoders.classifier(c.model, c.dataset, c.prompt_set).T
    image_key, text_key = f"image/{c.dataset}", f"classifier/{c.dataset}/{c.prompt_set}"
    mm.fingerprint(c.model, image_key, images)
    mm.fingerprint(c.model, text_key, classifier)
    if baseline is None:
        why = "recording the baseline" if mm.saving else "the model entry names no baseline"
        mm.judge(request, [measured("baseline_agreement", None, explain=why)], **_where(c))
        return
    tol = mm.tolerances(c.model)
    names = [f"image {i}" for i in range(len(mine["predicted"]))]
    change = [abs(a - b) for a, b in zip(mine["probability"], base["probability"], strict=True)]
    checks = [
        gates.agreement_gate("prediction_agreement", base["predicted"], mine["predicted"], tol, names, "predicted classes"),
        gates.largest_change_gate("probability_change", change, "max_score_change", tol, names,
                              "probability of the predicted class"),
    ]
    for key, now, what in ((image_key, images, "probe image embeddings"), (text_key, classifier, "class embeddings")):
        checks.append(gates.cosine_gate(f"{key.split('/')[0]}_cosine", baseline.array(key), now, tol, what))
    mm.judge(request, checks, **_where(c, precision=encoders.precision(c.model)))


def test_prompt_gain(gain_check, mm, request):
    c = gain_check
    gain = mm.available(mm.encoders.prompt_gain, c, test_id=c.id, suite="prompt_gain")
    check = judged("gain", gain.gain, c.min_gain, stderr=gain.stderr,
                     explain=f"'{c.candidate}' vs '{c.baseline}' on the same {gain.n} images (se {gain.stderr:.4f})",
                     fields={"baseline_top1": gain.baseline, "candidate_top1": gain.candidate, "n": gain.n})
    mm.judge(request, [check], suite="prompt_gain", test_id=c.id, model=c.model, dataset=c.dataset,
             baseline=c.baseline, candidate=c.candidate)
