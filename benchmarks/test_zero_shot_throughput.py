"""Zero-shot evaluation throughput against the raw image-encoder forward on pre-made tensors.

    pytest benchmarks -k throughput --benchmark-only

Both run on the same model and images; `extra_info["items_per_s"]` holds each figure (images/s), and their
ratio says how much data loading and preprocessing cost on top of the model.
"""

import pytest
import torch

from mmtests.config import ZeroShotCheck
from mmtests.evaluation.zero_shot import zero_shot_logits, zero_shot_metrics
from mmtests.workbench import embed_images

MODEL, DATASET, PROMPTS = "tiny-clip", "shapes-test", "ensemble"


@pytest.fixture(scope="module")
def setup(workbench):
    spec = workbench.matrix.datasets[DATASET]
    ds = workbench.dataset(spec)
    encoder = workbench.encoder(MODEL)
    workbench.zero_shot(ZeroShotCheck(MODEL, DATASET, PROMPTS, None))  # warm caches and the classifier path
    classnames = list(workbench.image_features(MODEL, DATASET).classnames)
    classifier = encoder.text_classifier(classnames, workbench.matrix.prompt_sets[PROMPTS].templates)
    return workbench, spec, ds, encoder, classifier, classnames


def test_throughput_raw_image_forward(benchmark, setup):
    workbench, spec, ds, encoder, _, _ = setup
    pixels = encoder.preprocess(ds[spec.image_column])
    batch = workbench.batch_size

    @torch.no_grad()
    def forward():
        with encoder.autocast():
            for i in range(0, len(pixels), batch):
                encoder.encode_image(pixels[i:i + batch], normalize=True)
        if workbench.device.type == "cuda":
            torch.cuda.synchronize()

    benchmark.pedantic(forward, rounds=5, warmup_rounds=1)
    if benchmark.stats:  # None under --benchmark-disable, where the function just runs once
        benchmark.extra_info["items_per_s"] = len(pixels) / benchmark.stats.stats.median


def test_throughput_zero_shot_end_to_end(benchmark, setup):
    """Dataset rows to accuracy: decode, preprocess, encode, classify, score."""
    workbench, spec, ds, encoder, classifier, classnames = setup
    labels = torch.tensor(ds[spec.label_column])

    def evaluate():
        features = embed_images(encoder, ds, spec.image_column, workbench.batch_size)
        return zero_shot_metrics(zero_shot_logits(features, classifier.cpu()), labels, classnames)

    metrics = benchmark.pedantic(evaluate, rounds=5, warmup_rounds=1)
    assert metrics.n == len(ds)
    if benchmark.stats:
        benchmark.extra_info["items_per_s"] = len(ds) / benchmark.stats.stats.median
        benchmark.extra_info["top1"] = metrics.top1
