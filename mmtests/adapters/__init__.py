"""Model adapters: one class per library, chosen by the matrix's `backend`."""

from __future__ import annotations

import torch

from ..config import ModelSpec
from .base import DualEncoder, ModelUnavailable


def load_dual_encoder(spec: ModelSpec, device: torch.device) -> DualEncoder:
    """The dual encoder a model entry describes; raises `ModelUnavailable` when it cannot be had here."""
    if spec.backend == "open_clip":
        from .open_clip_backend import OpenClipEncoder

        return OpenClipEncoder(spec.name, spec.model, spec.pretrained, device)
    if spec.backend == "hf_clip":
        from .hf_clip import HFClipEncoder

        return HFClipEncoder(spec.name, spec.model, device)
    raise ValueError(f"model {spec.name!r}: backend {spec.backend!r} has no dual-encoder adapter")


__all__ = ["DualEncoder", "ModelUnavailable", "load_dual_encoder"]
