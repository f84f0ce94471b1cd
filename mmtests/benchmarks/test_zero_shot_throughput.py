"""Zero-shot evaluation throughput against the raw image-encoder forward on pre-made tensors.

    pytest --pyargs mmtests.benchmarks -k throughput --benchmark-only

Both run on the same model and images; `extra_info["items_per_s"]` holds each figure (images/s), and their
ratio says how much data loading and preprocessing cost on top of the model. The same pair on the shapes scenes
as photo-like JPEGs (`test_throughput_photos_*`: the end-to-end one records `ratio_to_raw_forward`,
`loader_workers`, `batch_size`, `device`), and on CUDA (marked gpu) ViT-B-32 with random weights at batch 256:
raw forward, PIL decoding in DataLoader workers, GPU decoding (`gpu_decode`).
"""

import statistics
import time

import pytest
import torch

from mmtests.adapters.base import Pixels, concat
from mmtests.bench import embedding
from mmtests.config import DatasetSpec, ModelSpec, ZeroShotCheck
from mmtests.data import pipeline
from mmtests.data.sources import labels_and_class_names, load_checked
from mmtests.evaluation.zero_shot import zero_shot_logits, zero_shot_metrics
from mmtests.mmsession import session_matrix
from mmtests.session.encoders import embed_images

_RAW_FORWARD: dict[tuple[str, int], float] = {}  # (model or "dataset", batch) -> raw forward images/s, this session


@pytest.fixture(scope="module")
def model(encoders) -> str:
    """The matrix's first benchmarked dual encoder (the tiny CLIP by default)."""
    trained = [m.label for m in embedding.bench_models(encoders.matrix) if m.weights == "trained"]
    if not trained:
        pytest.skip("the matrix benchmarks no dual encoder of its own ([benchmarks] models)")
    return trained[0]


@pytest.fixture(scope="module")
def check(encoders, model) -> ZeroShotCheck:
    """The model's first [[zero_shot]] check: its dataset and prompt set (the ensemble on shapes-test by default)."""
    checks = [c for c in encoders.matrix.zero_shot if c.model == model]
    if not checks:
        pytest.skip(f"the matrix has no [[zero_shot]] check of {model}")
    return max(checks, key=lambda c: len(encoders.matrix.prompt_sets[c.prompt_set].templates))


@pytest.fixture(scope="module")
def setup(encoders, model, check):
    spec = encoders.matrix.datasets[check.dataset]
    ds = encoders.dataset(spec)
    encoder = encoders.encoder(model)
    encoders.zero_shot(ZeroShotCheck(model, check.dataset, check.prompt_set, None))  # warm caches, classifier path
    classnames = list(encoders.image_features(model, check.dataset).classnames)
    classifier = encoder.text_classifier(classnames, encoders.matrix.prompt_sets[check.prompt_set].templates)
    return encoders, spec, ds, encoder, classifier, classnames


def test_throughput_raw_image_forward(benchmark, setup):
    encoders, spec, ds, encoder, _, _ = setup
    pixels = encoder.preprocess(ds[spec.image_column])
    batch = encoders.batch_size
    benchmark.pedantic(_raw_forward(encoder, pixels, batch), rounds=5, warmup_rounds=1)
    if benchmark.stats:  # None under --benchmark-disable, where the function just runs once
        benchmark.extra_info["items_per_s"] = len(pixels) / benchmark.stats.stats.median
        _RAW_FORWARD[("dataset", batch)] = benchmark.extra_info["items_per_s"]


def test_throughput_zero_shot_end_to_end(benchmark, setup):
    """Dataset rows to accuracy: decode, preprocess, encode, classify, score."""
    encoders, spec, ds, encoder, classifier, classnames = setup
    labels = torch.tensor(ds[spec.label_column])

    def evaluate():
        features = embed_images(encoder, ds, spec.image_column, encoders.batch_size)
        return zero_shot_metrics(zero_shot_logits(features, classifier.cpu()), labels, classnames)

    metrics = benchmark.pedantic(evaluate, rounds=5, warmup_rounds=1)
    assert metrics.n == len(ds)
    if benchmark.stats:
        benchmark.extra_info["items_per_s"] = len(ds) / benchmark.stats.stats.median
        benchmark.extra_info["top1"] = metrics.top1
        raw = _RAW_FORWARD.get(("dataset", encoders.batch_size))  # the test above, this session
        if raw:
            benchmark.extra_info["ratio_to_raw_forward"] = benchmark.extra_info["items_per_s"] / raw


# ------------------------------------------------------------------------------------------ from JPEG bytes
# The shapes scenes as photo-like JPEGs (224-512 pixels a side, quality 90: mmtests.data.variants), where decoding and
# resizing cost what they cost on real data; the 64-pixel PNG scenes above decode almost for free.

PHOTOS = DatasetSpec("shapes-photos", "shapes", "", "test", "shape", size=1000, image_format="jpeg",
                     description="the shapes test scenes as JPEG photos, 224-512 pixels a side")
PHOTO_ROUNDS = {"cpu": 5, "cuda": 10}


@pytest.fixture(scope="module")
def photos(encoders):
    ds = load_checked(PHOTOS).dataset
    labels, classnames = labels_and_class_names(PHOTOS, ds)
    return ds, torch.tensor(labels), classnames


PHOTO_TEMPLATES = ("a photo of a {}.", "a photo of a big {}.")


def _classifier(encoder, classnames):
    return encoder.text_classifier(classnames, PHOTO_TEMPLATES).cpu()


def _pil_pixels(encoder, ds, batch: int) -> Pixels:
    """The images as the end-to-end path preprocesses them (PIL decode, the model's own preprocess), made once."""
    return concat([encoder.preprocess(pipeline.decoded_images(ds, PHOTOS.image_column, range(i, min(len(ds), i + batch)),
                                                                 "pixels")) for i in range(0, len(ds), batch)])


def _raw_forward(encoder, pixels: Pixels, batch: int):
    pixels = pixels.to(encoder.device)

    @torch.no_grad()
    def forward():
        with encoder.autocast():
            for i in range(0, len(pixels), batch):
                encoder.encode_image(pixels[i:i + batch], normalize=True)
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()

    return forward


def _median_items_per_s(fn, items: int, rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return items / statistics.median(times)


# Two subjects: the matrix's model (the tiny CLIP: 64-pixel input, a forward cheaper than decoding and resizing a
# 224-512 pixel JPEG, so the input pipeline bounds it), and ViT-B-32 with random weights (a published model's
# compute per image, 8.8 GFLOP; on a CPU on the first CPU_PHOTOS images only, about 80 ms an image on 2 cores).
CPU_ARCH, CPU_PHOTOS, CPU_ARCH_BATCH, CPU_ARCH_ROUNDS = "ViT-B-32", 64, 32, 3


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The ViT-B-32 subjects (CPU photos, the CUDA paths) run when the matrix's [benchmarks] random_architectures
    names ViT-B-32 (the default does); the matrix's own model always."""
    wanted = CPU_ARCH in session_matrix(metafunc.config).benchmarks.random_architectures
    if "subject" in metafunc.fixturenames:
        metafunc.parametrize("subject", ["matrix-model", *([f"{CPU_ARCH}-random-weights"] if wanted else [])])
    if "label" in metafunc.fixturenames:
        metafunc.parametrize("label", [f"{GPU_ARCH}-random-weights"] if wanted else [])


@pytest.fixture(scope="module")
def random_vit(encoders):
    return embedding.load(embedding.BenchModel(f"{CPU_ARCH}-random-weights", ModelSpec(
        name=f"{CPU_ARCH}-random-weights", backend="open_clip", model=CPU_ARCH), "random"), encoders.device)


def _subject(request, encoders, photos, subject: str):
    """(label, encoder, batch, images, labels, classnames, rounds) of a subject on the photos."""
    ds, labels, classnames = photos
    if subject == "matrix-model":
        label = request.getfixturevalue("model")
        return label, encoders.encoder(label), encoders.batch_size, ds, labels, classnames, PHOTO_ROUNDS[
            encoders.device.type]
    if encoders.device.type == "cuda":
        pytest.skip("on CUDA, ViT-B-32 is timed at batch 256 in test_throughput_photos_cuda")
    n = min(CPU_PHOTOS, len(ds))
    return (subject, request.getfixturevalue("random_vit"), CPU_ARCH_BATCH, ds.select(range(n)), labels[:n], classnames,
            CPU_ARCH_ROUNDS)


def test_throughput_photos_raw_image_forward(benchmark, request, encoders, photos, subject):
    """The image encoder alone on pre-made pixel tensors of the JPEG photos (made by the PIL path, outside the
    timing): what the end-to-end figure below is compared with."""
    label, encoder, batch, ds, _, _, rounds = _subject(request, encoders, photos, subject)
    benchmark.pedantic(_raw_forward(encoder, _pil_pixels(encoder, ds, batch), batch), rounds=rounds, warmup_rounds=1)
    if benchmark.stats:
        _RAW_FORWARD[(label, batch)] = len(ds) / benchmark.stats.stats.median
        benchmark.extra_info.update(items_per_s=_RAW_FORWARD[(label, batch)], batch_size=batch,
                                    device=encoders.device.type, model=label, images=len(ds))


def test_throughput_photos_zero_shot_end_to_end(benchmark, request, encoders, photos, subject):
    """JPEG bytes to accuracy: decode, preprocess (in `loader_workers` DataLoader workers), encode, classify, score;
    `ratio_to_raw_forward` is its items/s over the raw forward's on the same images, model and batch (measured
    by the test above in this session, else here, right after)."""
    label, encoder, batch, ds, labels, classnames, rounds = _subject(request, encoders, photos, subject)
    classifier = _classifier(encoder, classnames)
    workers = pipeline.resolve_workers(encoders.loader_workers, encoders.device)

    def evaluate():
        features = embed_images(encoder, ds, PHOTOS.image_column, batch, workers=workers)
        return zero_shot_metrics(zero_shot_logits(features, classifier), labels, classnames)

    metrics = benchmark.pedantic(evaluate, rounds=rounds, warmup_rounds=1)
    assert metrics.n == len(ds)
    if benchmark.stats:
        items_per_s = len(ds) / benchmark.stats.stats.median
        raw = _RAW_FORWARD.get((label, batch)) or _median_items_per_s(
            _raw_forward(encoder, _pil_pixels(encoder, ds, batch), batch), len(ds), rounds)
        benchmark.extra_info.update(items_per_s=items_per_s, ratio_to_raw_forward=items_per_s / raw,
                                    loader_workers=workers, batch_size=batch, device=encoders.device.type,
                                    model=label, images=len(ds), top1=metrics.top1)


# On CUDA: ViT-B-32 with random weights (speed does not depend on the weights) at batch 256 in fp16 autocast:
# the raw forward, end to end with PIL decoding in DataLoader workers, and end to end with GPU decoding.
GPU_ARCH, GPU_BATCH = "ViT-B-32", 256
GPU_PATHS = ("raw-forward", "cpu-decode", "gpu-decode")


@pytest.fixture(scope="module")
def vit_b_32():
    from mmtests.bench import embedding

    model = embedding.BenchModel(f"{GPU_ARCH}-random-weights",
                                 ModelSpec(name=f"{GPU_ARCH}-random-weights", backend="open_clip", model=GPU_ARCH), "random")
    return embedding.load(model, torch.device("cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("path", GPU_PATHS)
def test_throughput_photos_cuda(benchmark, encoders, photos, vit_b_32, label, path):
    ds, labels, classnames = photos
    encoder = vit_b_32
    workers = pipeline.resolve_workers(encoders.loader_workers, encoder.device)
    if path == "raw-forward":
        run = _raw_forward(encoder, _pil_pixels(encoder, ds, GPU_BATCH), GPU_BATCH)
    else:
        classifier = _classifier(encoder, classnames)

        def run():
            features = embed_images(encoder, ds, PHOTOS.image_column, GPU_BATCH, workers=workers,
                                    gpu_decode=path == "gpu-decode")
            return zero_shot_metrics(zero_shot_logits(features, classifier), labels, classnames)

    benchmark.pedantic(run, rounds=PHOTO_ROUNDS["cuda"], warmup_rounds=1)
    if benchmark.stats:
        items_per_s = len(ds) / benchmark.stats.stats.median
        if path == "raw-forward":
            _RAW_FORWARD[(label, GPU_BATCH)] = items_per_s
        raw = _RAW_FORWARD.get((label, GPU_BATCH))  # GPU_PATHS puts the raw forward first
        benchmark.extra_info.update(items_per_s=items_per_s, batch_size=GPU_BATCH, device="cuda", model=label,
                                    path=path, loader_workers=0 if path == "raw-forward" else workers,
                                    images=len(ds), precision="float16 autocast")
        if raw and path != "raw-forward":
            benchmark.extra_info["ratio_to_raw_forward"] = items_per_s / raw
