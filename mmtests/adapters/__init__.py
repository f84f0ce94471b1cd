"""Model adapters: one class per library, chosen by the matrix's `backend`."""

from __future__ import annotations

import torch

from ..config import ModelSpec
from .base import DualEncoder, ModelUnavailable, dynamic_int8
from .family import check_backend


def load_dual_encoder(spec: ModelSpec, device: torch.device) -> DualEncoder:
    """The dual encoder a model entry describes; raises `ModelUnavailable` when it cannot be had here."""
    check_backend(spec.name, spec.backend, spec.model)  # a folder of another family, said before anything loads
    if spec.backend == "open_clip":
        from .open_clip_backend import OpenClipEncoder

        encoder = OpenClipEncoder(spec.name, spec.model, spec.pretrained, device)
    elif spec.backend == "hf_clip":
        from .hf_clip import HFClipEncoder

        encoder = HFClipEncoder(spec.name, spec.model, device)
    else:
        raise ValueError(f"model {spec.name!r}: backend {spec.backend!r} has no dual-encoder adapter")
    return with_precision(encoder, spec)


def with_precision(encoder: DualEncoder, spec: ModelSpec) -> DualEncoder:
    """The encoder cast to the entry's `dtype`, or with its Linear layers dynamically quantized to int8
    (torch.ao, CPU): the low-precision copies users export, gated against the float32 baseline."""
    if spec.quantize == "dynamic-int8":
        # open_clip reads the dtype of each block's first MLP weight (`mlp.c_fc.weight.dtype`), which a
        # quantized Linear no longer has as a tensor: those layers stay in float32.
        encoder.model = dynamic_int8(encoder.model, keep_float=("mlp.c_fc",))
    elif spec.dtype:
        encoder.input_dtype = getattr(torch, spec.dtype)
        encoder.model = encoder.model.to(encoder.input_dtype)
    return encoder


__all__ = ["DualEncoder", "ModelUnavailable", "load_dual_encoder"]
