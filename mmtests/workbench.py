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
from .data.sources import DatasetUnavailable, LoadedDataset, labels_and_class_names, load_checked
from .errors import EntryError
from .evaluation.zero_shot import (
    PairedGain,
    ZeroShotMetrics,
    ZeroShotSamples,
    paired_gain,
    zero_shot_logits,
    zero_shot_metrics,
    zero_shot_samples,
)
from .offline import hub_access

T = TypeVar("T")


@dataclass(frozen=True)
class ImageFeatures:
    features: torch.Tensor  # N x D, on CPU
    labels: torch.Tensor  # N
    classnames: tuple[str, ...]


@torch.no_grad()
def embed_images(encoder: DualEncoder, ds, column: str, batch_size: int = 256, desc: str = "embedding") -> torch.Tensor:
    """L2-normalised image embeddings (N x D, CPU) of a dataset's image column, in order.

    The images were checked when the dataset was loaded (`load_checked`); one that no longer decodes (its file
    changed during the run) is an EntryError naming its row, not a traceback."""

    def pixels_of(idx):
        try:
            images = ds[idx[0]:idx[-1] + 1][column]
        except Exception as err:  # noqa: BLE001  (whatever PIL raises)
            row = next((i for i in idx if _fails(ds, i, column)), idx[0])
            raise EntryError(f"{desc}: the image of row {row} cannot be decoded ({err.__class__.__name__}: "
                             f"{str(err)[:200]}); it decoded when the dataset was loaded: were its files changed "
                             "during the run?") from err
        return encoder.preprocess(images)

    loader = torch.utils.data.DataLoader(range(len(ds)), batch_size=batch_size, collate_fn=pixels_of)
    chunks = []
    with encoder.autocast():
        for pixels in tqdm(loader, desc=desc, leave=False, disable=len(ds) < 5000):
            chunks.append(encoder.encode_image(pixels, normalize=True).float().cpu())
    return torch.cat(chunks)


def _fails(ds, row: int, column: str) -> bool:
    try:
        ds[row][column]
    except Exception:  # noqa: BLE001
        return True
    return False


def _memo(fn: Callable[..., T], errors: tuple[type[Exception], ...] = (ModelUnavailable, DatasetUnavailable)
          ) -> Callable[..., T]:
    """Cache results *and* failures (`errors`) per arguments: a model that cannot be loaded is tried once."""
    results: dict[tuple, tuple[bool, object]] = {}

    def wrapper(*args):
        if args not in results:
            try:
                results[args] = (True, fn(*args))
            except errors as err:
                results[args] = (False, err)
        ok, value = results[args]
        if not ok:
            raise value
        return value

    return wrapper


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Workbench:
    def __init__(self, matrix: Matrix, device: torch.device | None = None, batch_size: int | None = None,
                 online: bool = False, strict_images: bool | None = None):
        self.matrix = matrix
        # An image that does not decode: skipped and named (skipped_images), or with strict_images a failure of
        # its dataset. None: the MMTESTS_STRICT_IMAGES environment variable decides.
        self.strict_images = strict_images
        self.online = online  # hubs reachable for mmtests' own loads (--mm-online); offline by default
        self.device = device or default_device()
        # On 2 CPU cores the tiny CLIP runs fastest at batch 64 (742 vs 511 images/s at 256).
        self.batch_size = batch_size or (256 if self.device.type == "cuda" else 64)
        self.vlm_batch_size = batch_size
        self.encoder = _memo(self._encoder)
        # A dataset is loaded and its images checked once, also when it fails (an EntryError is not retried).
        self._dataset = _memo(self._load_dataset, (ModelUnavailable, DatasetUnavailable, EntryError))
        self._labels = _memo(self._load_labels, (ModelUnavailable, DatasetUnavailable, EntryError))
        self._features = _memo(self._embed)
        self._classifier = _memo(self._text_classifier)
        self._logits = _memo(self._classify)
        from .vlm_bench import VLMBench

        self.vlm = VLMBench(self)

    def _encoder(self, model: str) -> DualEncoder:
        with hub_access(self.online):
            return load_dual_encoder(self.matrix.models[model], self.device)

    def _load_dataset(self, images_key: tuple, name: str) -> LoadedDataset:
        with hub_access(self.online):
            return load_checked(self.matrix.datasets[name], self.strict_images)

    def dataset(self, spec: DatasetSpec):
        """The entry's rows as every check sees them (rows whose image does not decode left out)."""
        return self._dataset(spec.images_key, spec.name).dataset

    def skipped_images(self, dataset: str) -> list[str]:
        """The rows of a dataset left out because their image does not decode, each as "row N (file): reason"
        (loads the dataset if it is not loaded yet; raises as `dataset` does when it cannot be)."""
        spec = self.matrix.datasets[dataset]
        return [str(s) for s in self._dataset(spec.images_key, spec.name).skipped]

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
        return embed_images(self.encoder(model), ds, column, self.batch_size, desc=f"embedding {dataset} with {model}")

    def image_features(self, model: str, dataset: str) -> ImageFeatures:
        spec = self.matrix.datasets[dataset]
        labels, names = self._labels(dataset)  # checked before anything is embedded
        return ImageFeatures(self._features(model, spec.images_key), labels, names)

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
