"""Measurements over a matrix, each computed once per session and shared by every test.

Model loading and image embedding are the expensive steps: an encoder is loaded once, images of a
dataset are embedded once per model, and each (model, dataset, prompt set) classifier once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from tqdm.auto import tqdm

from .adapters import DualEncoder, ModelUnavailable, load_dual_encoder
from .config import DatasetSpec, GainCheck, Matrix, ZeroShotCheck
from .data.sources import DatasetUnavailable, class_names, load_images_and_labels
from .evaluation.zero_shot import (
    PairedGain,
    ZeroShotMetrics,
    ZeroShotSamples,
    paired_gain,
    zero_shot_logits,
    zero_shot_metrics,
    zero_shot_samples,
)

T = TypeVar("T")


@dataclass(frozen=True)
class ImageFeatures:
    features: torch.Tensor  # N x D, on CPU
    labels: torch.Tensor  # N
    classnames: tuple[str, ...]


@torch.no_grad()
def embed_images(encoder: DualEncoder, ds, column: str, batch_size: int = 256, desc: str = "embedding") -> torch.Tensor:
    """L2-normalised image embeddings (N x D, CPU) of a dataset's image column, in order."""
    loader = torch.utils.data.DataLoader(
        range(len(ds)), batch_size=batch_size,
        collate_fn=lambda idx: encoder.preprocess(ds[idx[0]:idx[-1] + 1][column]),
    )
    chunks = []
    with encoder.autocast():
        for pixels in tqdm(loader, desc=desc, leave=False, disable=len(ds) < 5000):
            chunks.append(encoder.encode_image(pixels, normalize=True).float().cpu())
    return torch.cat(chunks)


def _memo(fn: Callable[..., T]) -> Callable[..., T]:
    """Cache results *and* failures per arguments: a model that cannot be loaded is tried once."""
    results: dict[tuple, tuple[bool, object]] = {}

    def wrapper(*args):
        if args not in results:
            try:
                results[args] = (True, fn(*args))
            except (ModelUnavailable, DatasetUnavailable) as err:
                results[args] = (False, err)
        ok, value = results[args]
        if not ok:
            raise value
        return value

    return wrapper


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Workbench:
    def __init__(self, matrix: Matrix, device: torch.device | None = None, batch_size: int | None = None):
        self.matrix = matrix
        self.device = device or default_device()
        # On 2 CPU cores the tiny CLIP runs fastest at batch 64 (742 vs 511 images/s at 256).
        self.batch_size = batch_size or (256 if self.device.type == "cuda" else 64)
        self.vlm_batch_size = batch_size
        self.encoder = _memo(self._encoder)
        self._dataset = _memo(self._load_dataset)
        self._features = _memo(self._embed)
        self._classifier = _memo(self._text_classifier)
        self._logits = _memo(self._classify)
        from .vlm_bench import VLMBench

        self.vlm = VLMBench(self)

    def _encoder(self, model: str) -> DualEncoder:
        return load_dual_encoder(self.matrix.models[model], self.device)

    def _load_dataset(self, images_key: tuple, name: str):
        return load_images_and_labels(self.matrix.datasets[name])

    def dataset(self, spec: DatasetSpec):
        return self._dataset(spec.images_key, spec.name)

    def _embed(self, model: str, images_key: tuple, dataset: str) -> torch.Tensor:
        ds = self._dataset(images_key, dataset)
        column = self.matrix.datasets[dataset].image_column
        return embed_images(self.encoder(model), ds, column, self.batch_size, desc=f"embedding {dataset} with {model}")

    def image_features(self, model: str, dataset: str) -> ImageFeatures:
        spec = self.matrix.datasets[dataset]
        ds = self.dataset(spec)
        features = self._features(model, spec.images_key, spec.name)
        return ImageFeatures(features, torch.tensor(ds[spec.label_column]), tuple(class_names(spec, ds)))

    def precision(self, model: str) -> str:
        """The numeric precision a model runs in here, which sets its baseline gates' tolerances."""
        spec = self.matrix.models[model]
        if spec.quantize:
            return "int8"
        if spec.dtype:
            return spec.dtype
        if spec.is_vlm:
            return str(self.vlm.model(model).model.dtype).removeprefix("torch.")
        return "float16" if self.device.type == "cuda" else "float32"

    def _text_classifier(self, model: str, dataset: str, prompt_set: str) -> torch.Tensor:
        feats = self.image_features(model, dataset)
        return self.encoder(model).text_classifier(feats.classnames, self.matrix.prompt_sets[prompt_set].templates).cpu()

    def classifier(self, model: str, dataset: str, prompt_set: str) -> torch.Tensor:
        """Class embeddings (D x C) of a dataset's class names under a prompt set."""
        return self._classifier(model, dataset, prompt_set)

    def _classify(self, model: str, dataset: str, prompt_set: str) -> torch.Tensor:
        return zero_shot_logits(self.image_features(model, dataset).features, self.classifier(model, dataset, prompt_set))

    def zero_shot_samples(self, check: ZeroShotCheck) -> ZeroShotSamples:
        """Per image: the predicted class, its probability (the model's own logit scale), and whether it is right."""
        feats = self.image_features(check.model, check.dataset)
        logits = self._logits(check.model, check.dataset, check.prompt_set)
        return zero_shot_samples(logits, feats.labels, self.encoder(check.model).logit_scale())

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
