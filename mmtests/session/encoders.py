"""Dual-encoder measurements over a matrix, each computed once per session and shared by every test.

Model loading and image embedding are the expensive steps: an encoder is loaded once, images of a
dataset are embedded once per model, and each (model, dataset, prompt set) classifier once. Datasets
are loaded (and their images checked) here for the VLM cache too.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..adapters import DualEncoder, load_dual_encoder
from ..config import DatasetSpec, GainCheck, Matrix, RetrievalCheck, ZeroShotCheck
from ..data.sources import LoadedDataset, labels_and_class_names, load_checked
from ..errors import EntryError
from ..evaluation.retrieval import RetrievalResult, caption_positives, retrieval
from ..evaluation.zero_shot import (
    PairedGain,
    ZeroShotMetrics,
    ZeroShotSamples,
    paired_gain,
    zero_shot_logits,
    zero_shot_metrics,
    zero_shot_samples,
)
from ..offline import hub_access
from .memo import ABSENT_OR_BROKEN, Memo
from .precision import model_precision

# A step's progress: (task, done, total, unit), called as items are done; the entry points show it (`mmtests.progress`).
Progress = Callable[[str, int, int, str], None]


def no_progress(task: str, done: int, total: int, unit: str) -> None:
    """Progress shown nowhere (the caches' default)."""


@dataclass(frozen=True)
class ImageFeatures:
    features: torch.Tensor  # N x D, on CPU
    labels: torch.Tensor  # N
    classnames: tuple[str, ...]


class BatchSizeWarning(UserWarning):
    """A batch ran out of device memory and was split: the figures are right, the batch size was not what was
    asked (the message says which was used)."""


@dataclass(frozen=True)
class OOMRetry:
    """A batch that ran out of device memory in the image encoder, and the batch size used from then on."""

    desc: str  # what was being embedded ("embedding <dataset> with <model>")
    failed: int  # images in the batch that ran out of memory
    retried: int  # the batch size used for it and for the rest of the dataset


@torch.no_grad()
def embed_images(encoder: DualEncoder, ds, column: str, batch_size: int = 256, desc: str = "embedding", *,
                 workers: int | None = None, gpu_decode: bool = False,
                 oom_retries: list[OOMRetry] | None = None, progress: Progress = no_progress) -> torch.Tensor:
    """L2-normalised image embeddings (N x D, CPU) of a dataset's image column, in order.

    Batches are decoded and preprocessed by `workers` DataLoader processes (None: `pipeline.resolve_workers`,
    0 on a CPU), in order: the embeddings are the same whatever the number of workers. On CUDA the batches
    are pinned and copied without blocking. With `gpu_decode` (CUDA only) the JPEG bytes are decoded and
    preprocessed on the GPU (`pipeline.tensor_pixels`), which agrees with the PIL path within a tolerance, not
    bit for bit.

    A batch that runs out of device memory in the image encoder is split in halves and retried, down to one
    image (then the out-of-memory error is raised as it came); each split is a `BatchSizeWarning` and an
    `OOMRetry` appended to `oom_retries`, and the smaller batch is kept for the rest of the dataset. `progress` is
    told the images embedded after each batch.

    The images were checked when the dataset was loaded (`load_checked`); one that no longer decodes (its file
    changed during the run) is an EntryError naming its row, not a traceback, also when met in a worker."""
    from ..data import pipeline

    cuda = encoder.device.type == "cuda"
    workers = pipeline.resolve_workers(workers, encoder.device)
    if gpu_decode:
        if not cuda:
            raise EntryError(f"{desc}: gpu_decode = true in [evaluation] needs a CUDA device, and this run is on "
                             f"{encoder.device}; set gpu_decode = false, or run on a GPU (--mm-device cuda)")
        recipe = encoder.pixel_recipe()
        raw = pipeline.raw_column(ds, column)

        def make(rows):
            return pipeline.encoded_images(raw, ds, column, rows, desc)
    else:
        def make(rows):
            return pipeline.preprocessed(encoder.preprocess, pipeline.decoded_images(ds, column, rows, desc), rows, desc)

    retries = [] if oom_retries is None else oom_retries
    limit = batch_size  # the largest batch known to fit (lowered when one runs out of memory)

    def encode(pixels: torch.Tensor) -> list[torch.Tensor]:
        nonlocal limit
        out, start = [], 0
        while start < len(pixels):
            part = pixels[start:start + limit]
            try:
                out.append(encoder.encode_image(part, normalize=True).float().cpu())
                start += len(part)
                continue
            except torch.OutOfMemoryError:  # torch.cuda.OutOfMemoryError is the same class
                if len(part) == 1:
                    raise
            # Out of the except block: the traceback, and the failed forward's tensors it holds, are gone.
            if cuda:
                torch.cuda.empty_cache()
            limit = (len(part) + 1) // 2
            retries.append(OOMRetry(desc, len(part), limit))
            warnings.warn(f"{desc}: out of device memory at batch {len(part)}; split in halves and retried, the rest "
                          f"of the dataset in batches of at most {limit} (lower --mm-batch-size to avoid the retry)",
                          BatchSizeWarning, stacklevel=4)  # the caller of embed_images
        return out

    chunks, done = [], 0
    progress(desc, 0, len(ds), "images")
    with encoder.autocast():
        for batch in pipeline.batches(len(ds), batch_size, make, workers, pin_memory=cuda and not gpu_decode):
            if gpu_decode:
                pixels = pipeline.tensor_pixels(batch, recipe, encoder.device, desc, ds, column)
            else:
                pixels = batch.to(encoder.device, non_blocking=True) if cuda else batch
            chunks += encode(pixels)
            done += len(pixels)
            progress(desc, done, len(ds), "images")
    return torch.cat(chunks)


class DualEncoderCache:
    """A session's dual encoders, datasets, image embeddings, classifiers and zero-shot results."""

    def __init__(self, matrix: Matrix, device: torch.device, batch_size: int | None = None, online: bool = False,
                 strict_images: bool | None = None, memo: Memo | None = None, progress: Progress = no_progress):
        self.matrix = matrix
        self.progress = progress  # told how loading and embedding go (the entry points show it)
        # An image that does not decode: skipped and named (skipped_images), or with strict_images a failure of
        # its dataset. None: the MMTESTS_STRICT_IMAGES environment variable decides.
        self.strict_images = strict_images
        self.online = online  # hubs reachable for mmtests' own loads (--mm-online); offline by default
        self.device = device
        # On 2 CPU cores the tiny CLIP runs fastest at batch 64 (742 vs 511 images/s at 256).
        self.batch_size = batch_size or (256 if self.device.type == "cuda" else 64)
        # The input pipeline ([evaluation] in the matrix): DataLoader workers (None: auto) and tensor decoding on
        # the GPU; batches that ran out of device memory and were split, in order.
        self.loader_workers = matrix.evaluation.loader_workers
        self.gpu_decode = matrix.evaluation.gpu_decode
        self.oom_retries: list[OOMRetry] = []
        memo = memo or Memo()
        self.encoder = memo(self._encoder, ABSENT_OR_BROKEN)  # a broken entry: once
        # A dataset is loaded and its images checked once, also when it fails (an EntryError is not retried).
        self._dataset = memo(self._load_dataset, ABSENT_OR_BROKEN)
        self._labels = memo(self._load_labels, ABSENT_OR_BROKEN)
        self._features = memo(self._embed)
        self._classifier = memo(self._text_classifier)
        self._logits = memo(self._classify)
        self._captions = memo(self._load_captions, ABSENT_OR_BROKEN)
        self._caption_features = memo(self._embed_captions)
        self._retrieval = memo(self._retrieve)

    def _encoder(self, model: str) -> DualEncoder:
        with hub_access(self.online):
            return load_dual_encoder(self.matrix.models[model], self.device)

    def _load_dataset(self, images_key: tuple, name: str) -> LoadedDataset:
        with hub_access(self.online):
            return load_checked(self.matrix.datasets[name], self.strict_images, self.progress)

    def dataset(self, spec: DatasetSpec):
        """The entry's rows as every check sees them (rows whose image does not decode left out)."""
        return self._dataset(spec.images_key, spec.name).dataset

    def skipped_images(self, dataset: str) -> list[str]:
        """The rows of a dataset left out because their image does not decode, each as "row N (file): reason"
        (loads the dataset if it is not loaded yet; raises as `dataset` does when it cannot be)."""
        spec = self.matrix.datasets[dataset]
        return [str(s) for s in self._dataset(spec.images_key, spec.name).skipped]

    def converted_images(self, dataset: str) -> list[str]:
        """The rows of a dataset whose image the one RGB rule changed (`mmtests.data.images`: alpha composited,
        16-bit or float values scaled, the first of several frames), each as "row N (file): what it did"."""
        spec = self.matrix.datasets[dataset]
        return [str(c) for c in self._dataset(spec.images_key, spec.name).converted]

    def _load_labels(self, dataset: str) -> tuple[torch.Tensor, tuple[str, ...]]:
        spec = self.matrix.datasets[dataset]
        labels, names = labels_and_class_names(spec, self.dataset(spec))
        return torch.tensor(labels, dtype=torch.long), tuple(names)

    def _embed(self, model: str, images_key: tuple) -> torch.Tensor:
        # Keyed by the images, not the entry: datasets that share their images (one split, two label
        # columns) are embedded once per model.
        dataset = next(d.name for d in self.matrix.datasets.values() if d.images_key == images_key)
        ds = self._dataset(images_key, dataset).dataset
        column = self.matrix.datasets[dataset].image_column
        return embed_images(self.encoder(model), ds, column, self.batch_size, desc=f"embedding {dataset} with {model}",
                            workers=self.loader_workers, gpu_decode=self.gpu_decode, oom_retries=self.oom_retries,
                            progress=self.progress)

    def image_features(self, model: str, dataset: str) -> ImageFeatures:
        spec = self.matrix.datasets[dataset]
        labels, names = self._labels(dataset)  # checked before anything is embedded
        return ImageFeatures(self._features(model, spec.images_key), labels, names)

    def precision(self, model: str) -> str:
        """The numeric precision a dual encoder runs in here, which sets its baseline gates' tolerances."""
        return model_precision(self.matrix.models[model], lambda: "float16" if self.device.type == "cuda" else "float32")

    def _text_classifier(self, model: str, dataset: str, prompt_set: str) -> torch.Tensor:
        feats = self.image_features(model, dataset)
        return self.encoder(model).text_classifier(feats.classnames, self.matrix.prompt_sets[prompt_set].templates).cpu()

    def classifier(self, model: str, dataset: str, prompt_set: str) -> torch.Tensor:
        """Class embeddings (D x C) of a dataset's class names under a prompt set."""
        return self._classifier(model, dataset, prompt_set)

    def _classify(self, model: str, dataset: str, prompt_set: str) -> torch.Tensor:
        return zero_shot_logits(self.image_features(model, dataset).features, self.classifier(model, dataset, prompt_set))

    def zero_shot_samples(self, check: ZeroShotCheck) -> ZeroShotSamples:
        """Per image: the predicted class, its probability (as the model's own head gives it), and whether it is
        right."""
        feats = self.image_features(check.model, check.dataset)
        logits = self._logits(check.model, check.dataset, check.prompt_set)
        return zero_shot_samples(logits, feats.labels, self.encoder(check.model).head())

    def zero_shot(self, check: ZeroShotCheck) -> ZeroShotMetrics:
        feats = self.image_features(check.model, check.dataset)
        logits = self._logits(check.model, check.dataset, check.prompt_set)
        return zero_shot_metrics(logits, feats.labels, list(feats.classnames))

    def prompt_gain(self, check: GainCheck) -> PairedGain:
        labels = self.image_features(check.model, check.dataset).labels
        return paired_gain(
            self._logits(check.model, check.dataset, check.candidate),
            self._logits(check.model, check.dataset, check.baseline),
            labels,
        )

    # ------------------------------------------------------------------ retrieval
    def _load_captions(self, dataset: str) -> tuple[list[str], torch.Tensor, list]:
        spec = self.matrix.datasets[dataset]
        ds = self.dataset(spec)
        column = spec.caption_column
        if column not in ds.column_names:
            raise EntryError(f"[datasets.{dataset}]: caption_column {column!r} is not a column of the dataset "
                             f"(columns: {', '.join(ds.column_names)}); set caption_column to the column holding "
                             "each image's captions")
        per_image = list(ds[column])
        try:
            texts, positives = caption_positives(per_image)
        except ValueError as err:
            raise EntryError(f"[datasets.{dataset}]: caption column {column!r}: {err}; give every row at least one "
                             "caption (a string or a list of strings), or leave the row out") from err
        return texts, positives, per_image

    def captions(self, dataset: str) -> tuple[list[str], torch.Tensor, list]:
        """A dataset's distinct caption texts, the positive pairs (images x texts) and each image's captions as read."""
        return self._captions(dataset)

    @torch.no_grad()
    def _embed_captions(self, model: str, dataset: str) -> torch.Tensor:
        texts = self.captions(dataset)[0]
        encoder, out = self.encoder(model), []
        desc = f"embedding the captions of {dataset} with {model}"
        self.progress(desc, 0, len(texts), "captions")
        with encoder.autocast():
            for start in range(0, len(texts), self.batch_size * 4):
                part = texts[start:start + self.batch_size * 4]
                out.append(encoder.encode_text(encoder.tokenizer(part), normalize=True).float().cpu())
                self.progress(desc, start + len(part), len(texts), "captions")
        return torch.cat(out)

    def caption_features(self, model: str, dataset: str) -> torch.Tensor:
        """L2-normalised embeddings (T x D) of a dataset's distinct caption texts, through the text tower as written
        (no template)."""
        return self._caption_features(model, dataset)

    def _retrieve(self, model: str, dataset: str) -> RetrievalResult:
        texts, positives, _ = self.captions(dataset)
        images = self._features(model, self.matrix.datasets[dataset].images_key)
        return retrieval(images, self.caption_features(model, dataset), positives, texts)

    def retrieval(self, check: RetrievalCheck) -> RetrievalResult:
        """Image -> text and text -> image, query by query (mmtests.evaluation.retrieval)."""
        return self._retrieval(check.model, check.dataset)
