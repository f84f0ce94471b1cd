"""CLIP retrieval suites: image -> text and text -> image recall@1/5/10 per (model, dataset) against their floors
and, query by query, against the model's known-good baseline (mmtests.evaluation.retrieval has the definition)."""

import pytest

from mmtests.evaluation.retrieval import KS
from mmtests.figures import gates
from mmtests.figures.baseline_store import digest
from mmtests.figures.check import judged, measured

pytestmark = pytest.mark.clip

PROBE_CAPTIONS = 64  # first distinct caption texts whose embeddings are compared with the baseline's
WAYS = ("image_to_text", "text_to_image")


def _outcome(rank: int) -> str:
    """A query's outcome as the recall figures count it: the smallest k reported that retrieves it ("R@1", "R@5",
    "R@10"), or "none" past the last one."""
    return next((f"R@{k}" for k in KS if rank <= k), "none")


def _where(c, **extra):
    return dict(suite="retrieval", test_id=c.id, model=c.model, dataset=c.dataset, **extra)


def _names(result, way: str) -> list[str]:
    if way == "image_to_text":
        return [f"image {i}" for i in range(result.n_images)]
    return [f"caption {t!r}" for t in result.texts]


def _samples(mm, c):
    """This run's per-query outcomes, per direction (logged, and kept for --mm-save-baseline), and the baseline's."""
    result = mm.available(mm.encoders.retrieval, c, test_id=c.id, suite="retrieval")
    per_image = mm.encoders.captions(c.dataset)[2]
    mine, base = {}, {}
    baseline = mm.available(mm.baseline, c.model, test_id=c.id, suite="retrieval")
    for way in WAYS:
        key = f"retrieval/{c.dataset}/{way}"
        outcome = getattr(result, way)
        mine[way] = {"digest": digest([way, per_image]), "rank": outcome.rank,
                     "score": [round(s, 7) for s in outcome.score]}
        mm.samples(c.model, key, mine[way])
        if baseline is not None:
            base[way] = mm.available(baseline.entry, key, c.model, mine[way]["digest"], test_id=c.id, suite="retrieval")
    return result, mine, base, baseline


def test_retrieval_recall(retrieval_check, mm, request):
    """Recall@1/5/10 both ways against the entry's floors (each must beat random ranking), and at k = 1 against the
    baseline, query by query: red only when worse beyond chance (paired, exact McNemar)."""
    c = retrieval_check
    result, _, base, _ = _samples(mm, c)
    checks = []
    for way in WAYS:
        outcome = getattr(result, way)
        for k in KS:
            name = f"{way}_r{k}"
            checks.append(judged(name, outcome.recall(k), c.floor(name), trivial=outcome.chance[k],
                                 fields={"n": len(outcome.rank), "k": k, "chance": outcome.chance[k]}))
    per_image = mm.encoders.captions(c.dataset)[2]
    checks.append(measured("captions_per_image", sum(map(len, per_image)) / len(per_image),
                           fields={"images": result.n_images, "distinct_captions": len(result.texts)}))
    for way, entry in base.items():
        base_hits = [r <= 1 for r in entry["rank"]]
        checks.append(gates.accuracy_gate(f"{way}_r1_vs_baseline", base_hits, getattr(result, way).hits(1),
                                          mm.tolerances(c.model), _names(result, way)))
    mm.judge(request, checks, **_where(c, dataset_description=mm.matrix.datasets[c.dataset].description))


def test_retrieval_matches_baseline(retrieval_check, mm, request):
    """Query by query, the model retrieves as its known-good self: at the same k (the smallest of 1, 5, 10 whose
    top k holds a positive, or none), with the same score (cosine) of its best positive, and the same caption
    embeddings on a probe set (within tolerances measured on clean reruns)."""
    c = retrieval_check
    result, mine, base, baseline = _samples(mm, c)
    captions = mm.encoders.caption_features(c.model, c.dataset)[:PROBE_CAPTIONS]
    key = f"captions/{c.dataset}"
    mm.fingerprint(c.model, key, captions)
    if baseline is None:
        why = "recording the baseline" if mm.saving else "the model entry names no baseline"
        mm.judge(request, [measured("baseline_agreement", None, explain=why)], **_where(c))
        return
    tol, checks = mm.tolerances(c.model), []
    for way in WAYS:
        names = _names(result, way)
        ranks = [_outcome(r) for r in mine[way]["rank"]]
        base_ranks = [_outcome(r) for r in base[way]["rank"]]
        change = [abs(a - b) for a, b in zip(mine[way]["score"], base[way]["score"], strict=True)]
        checks += [
            gates.agreement_gate(f"{way}_rank_agreement", base_ranks, ranks, tol, names,
                                 "outcomes (the smallest k that retrieves the query)"),
            gates.largest_change_gate(f"{way}_score_change", change, "max_score_change", tol, names,
                                      "score (cosine) of the first positive"),
        ]
    checks.append(gates.cosine_gate("captions_cosine", baseline.array(key), captions, tol, "probe caption embeddings"))
    mm.judge(request, checks, **_where(c, precision=mm.encoders.precision(c.model)))
