"""The numeric precision a model runs in here, which sets its baseline gates' tolerances."""

from __future__ import annotations

from collections.abc import Callable

from ..config import ModelSpec


def model_precision(spec: ModelSpec, runs_in: Callable[[], str]) -> str:
    """int8 for a quantized entry, else the entry's dtype, else what the loaded model runs in (`runs_in`)."""
    if spec.quantize:
        return "int8"
    return spec.dtype or runs_in()
