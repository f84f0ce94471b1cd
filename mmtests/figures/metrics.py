"""The metric table: every figure mmtests records, with its direction, the matrix key that bounds it,
the range that key takes, how the report labels it, and the trivial strategy a floor must beat.

Adding a metric is a row here and the line that measures it; suites, the matrix, history and the
report read directions, keys and labels from this table only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool = True
    matrix_key: str | None = None  # the matrix key whose value bounds it (a floor for higher-is-better, else a ceiling)
    range: tuple[float, float] = (0.0, 1.0)  # values that key may take
    label: str = ""  # for the report; the name when empty
    trivial: str | None = None  # the trivial strategy a floor must beat, as its failure message names it
    history: str = "judged"  # run-to-run deltas: "judged"; "neutral" (describes the model, never flagged); "target"

    @property
    def bound_kind(self) -> str:
        return "min" if self.higher_is_better else "max"

    @property
    def shown(self) -> str:
        return self.label or self.name


def _rows(*metrics: Metric) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


LOWER = False  # higher_is_better=LOWER reads as "lower is better"

METRICS: dict[str, Metric] = _rows(
    # CLIP zero-shot and prompt engineering
    Metric("top1", matrix_key="min_top1", label="top-1", trivial="always answering the most frequent class"),
    Metric("top5", label="top-5"),
    Metric("mean_per_class_recall", label="mean per-class recall"),
    Metric("images_skipped", LOWER, label="images left out (undecodable)"),
    Metric("images_converted", LOWER, history="neutral", label="images converted to RGB (alpha, 16-bit, frames)"),
    Metric("gain", matrix_key="min_gain", range=(-1.0, 1.0), label="top-1 gain"),
    # image <-> text retrieval (mmtests.evaluation.retrieval): recall@k, at least one positive in the top k
    *[Metric(f"{way}_r{k}", matrix_key=f"min_{way}_r{k}", label=f"{arrow} R@{k}",
             trivial="random ranking (recall@k about k/N per query)")
      for way, arrow in (("image_to_text", "i→t"), ("text_to_image", "t→i")) for k in (1, 5, 10)],
    Metric("captions_per_image", history="neutral", range=(0.0, 1e6), label="captions per image"),
    # LLaVA answers, POPE, generation stability
    Metric("accuracy", matrix_key="min_accuracy", trivial="always giving the most frequent answer"),
    Metric("precision"),
    Metric("recall"),
    Metric("f1", matrix_key="min_f1", label="F1", trivial="answering 'yes' to everything"),
    Metric("yes_ratio_gap", LOWER, matrix_key="max_yes_ratio_gap", label="yes-ratio gap"),
    Metric("yes_ratio", history="target", label="yes-ratio"),
    Metric("same_answer_twice"),
    Metric("batched_equals_single"),
    Metric("non_empty"),
    Metric("finished", matrix_key="min_finished"),
    Metric("max_repeated_bigrams", LOWER, matrix_key="max_repeated_ngram", label="repeated bigrams (worst)"),
    Metric("distinct_2_describe", history="neutral", label="distinct-2 of descriptions"),
    # attention maps
    Metric("row_sum_error", LOWER, matrix_key="row_sum_tolerance", label="row-sum error"),
    Metric("causal_leak", LOWER, label="causal leak"),
    Metric("shapes"),
    Metric("answered_for_attention"),
    Metric("image_share", matrix_key="min_image_share", history="neutral", label="image share"),
    Metric("sink_share", LOWER, matrix_key="max_sink_share", history="neutral", label="sink share"),
    Metric("inside_outside", matrix_key="min_inside_outside", range=(0.0, 1000.0), label="inside/outside"),
    Metric("pointing_hit", matrix_key="min_pointing_hit", label="pointing game"),
    Metric("margin_over_control", matrix_key="min_margin_over_control", range=(0.0, 1000.0),
           label="margin over control"),
    Metric("heatmaps"),
    # gates against the known-good baseline (bounded by tolerances, mmtests.figures.gates)
    Metric("top1_vs_baseline"),
    Metric("accuracy_vs_baseline"),
    Metric("baseline_agreement"),
    Metric("prediction_agreement"),
    Metric("answer_agreement"),
    Metric("probability_change", LOWER),
    Metric("image_cosine"),
    Metric("classifier_cosine"),
    Metric("first_token_kl", LOWER, label="first-token KL"),
    *[m for way in ("image_to_text", "text_to_image") for m in (
        Metric(f"{way}_r1_vs_baseline"), Metric(f"{way}_rank_agreement"), Metric(f"{way}_score_change", LOWER))],
    Metric("captions_cosine"),
    Metric("attention_vs_baseline"),
    Metric("inside_outside_vs_baseline", LOWER),
    Metric("pointing_vs_baseline"),
    Metric("image_share_vs_baseline", LOWER),
    Metric("attention_samples_vs_baseline"),
    Metric("control_attention_vs_baseline"),
    Metric("control_inside_outside_vs_baseline", LOWER),
    Metric("control_pointing_vs_baseline"),
    Metric("control_image_share_vs_baseline", LOWER),
    Metric("control_attention_samples_vs_baseline"),
    # why a check has no figure
    Metric("usable"),
    Metric("localizable_samples", label="samples whose box localization is defined"),
    Metric("available"),
)

# Benchmark figures: limits the benchmarks apply and the report restates.
HARNESS_TOLERANCE = 0.03  # the timed harness may cost this share of the bare forward's throughput, either way
LARGE_SPREAD = 0.10  # rounds' IQR / median above which a throughput figure is too noisy to judge
CONTENDED_SHARE = 0.10  # of all CPUs taken by other processes: above it a benchmark is "contended"


def metric(name: str) -> Metric:
    """The table's row for `name`; a figure not in the table is a mistake in the code that measures it."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"metric {name!r} is not in mmtests.figures.metrics.METRICS; add its row there") from None


def bounded_by(matrix_key: str) -> Metric | None:
    """The metric a matrix key bounds (None for keys that bound no figure)."""
    return next((m for m in METRICS.values() if m.matrix_key == matrix_key), None)
