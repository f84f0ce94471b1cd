"""CLIP embedding passes for benchmarks: the models, fixed seeded inputs, and one pass to time.

Real architectures are built with random weights (open_clip `pretrained=None`): their speed depends
on the architecture, not on the values of the weights, and nothing has to be downloaded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..adapters import DualEncoder, load_dual_encoder
from ..config import DUAL_ENCODERS, Matrix, ModelSpec
from .memory import Pass
from .perf import synchronized

CAPTION = "a photo of a big red star."  # in the tiny CLIP's word vocabulary too


@dataclass(frozen=True)
class BenchModel:
    label: str  # how benchmarks and the report name it
    spec: ModelSpec
    weights: str  # "trained" or "random"


def bench_models(matrix: Matrix) -> list[BenchModel]:
    """What the matrix's [benchmarks] names: its dual encoders (all of them without the section), then the
    random-weight open_clip architectures it lists."""
    models = [BenchModel(name, matrix.models[name], "trained") for name in matrix.benchmarked_models()
              if matrix.models[name].backend in DUAL_ENCODERS]
    for arch in matrix.benchmarks.random_architectures:
        label = f"{arch}-random-weights"
        models.append(BenchModel(label, ModelSpec(name=label, backend="open_clip", model=arch), "random"))
    return models


def load(model: BenchModel, device: torch.device, seed: int = 0) -> DualEncoder:
    """The entry's encoder through the suites' own loader (its dtype and quantization included), offline."""
    from ..offline import hub_access

    torch.manual_seed(seed)  # random weights are the same on every run
    with hub_access(False):
        return load_dual_encoder(model.spec, device)


def make_inputs(encoder: DualEncoder, modality: str, batch_size: int, seed: int = 0):
    """A fixed batch: seeded noise images through the model's own preprocessing, or one caption repeated."""
    if modality == "text":
        return encoder.tokenizer([CAPTION] * batch_size).to(encoder.device)
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)) for _ in range(batch_size)]
    return encoder.preprocess(images).to(encoder.device)


def _autocast(encoder: DualEncoder, dtype: torch.dtype | None):
    return encoder.autocast() if dtype is None else torch.autocast(encoder.device.type, dtype=dtype)


def embedding_pass(encoder: DualEncoder, modality: str, inputs, dtype: torch.dtype | None = None) -> Pass:
    """One normalised embedding of `inputs`, without gradients, synchronised; under autocast to `dtype`,
    or the encoder's own autocast (fp16 on CUDA, none on CPU) when `dtype` is None."""
    encode = encoder.encode_image if modality == "image" else encoder.encode_text

    @torch.no_grad()
    def run() -> torch.Tensor:
        with _autocast(encoder, dtype):
            return encode(inputs, normalize=True)

    return synchronized(run, encoder.device)


def passes_of(model: BenchModel, device: str, dtype: torch.dtype | None = None) -> Callable[[tuple[str, int]], Pass]:
    """Loads `model` and returns `prepare((modality, batch_size))`: the shape `memory.peak_memory` runs."""
    encoder = load(model, torch.device(device))
    return functools.partial(_prepare, encoder, dtype)


def _prepare(encoder: DualEncoder, dtype: torch.dtype | None, key: tuple[str, int]) -> Pass:
    modality, batch_size = key
    return embedding_pass(encoder, modality, make_inputs(encoder, modality, batch_size), dtype)


def compute_dtype(encoder: DualEncoder, dtype: torch.dtype | None = None) -> torch.dtype:
    """The dtype an `embedding_pass` multiplies matrices in: its autocast dtype where autocast is on, else float32."""
    cast = _autocast(encoder, dtype)
    return cast.fast_dtype if cast._enabled else torch.float32
