"""Checkpoint-level faults for the user's own model folders: the zoo catalogue's faults written once for every
folder of a family (open_clip `local-dir:`, Hugging Face CLIP / SigLIP, LLaVA), not for the zoo's file and key names.

Each edit works on a copy (`edits.copy_model`) and either breaks it or says why it cannot (a file or a weight the
folder does not have, a setting it already has); two faults set the entry's own decoding settings instead, since
mmtests' LLaVA adapter sets padding and greedy decoding from the entry, whatever the folder's generation_config says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import ModelSpec
from .edits import _json, _permuted, _weights, weight_files, weight_keys

OPENAI_MEAN, OPENAI_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
DUAL, ALL = ("open_clip", "hf_clip"), ("open_clip", "hf_clip", "llava")
# Which weights make up each part of a model, by backend (a "model." prefix, transformers' newer layout, ignored).
PARTS = {
    "open_clip": {"image tower": ("visual.",), "text tower": ("transformer.", "token_embedding", "positional_embedding",
                                                                "ln_final", "text_projection", "text.")},
    "hf_clip": {"image tower": ("vision_model.", "visual_projection"), "text tower": ("text_model.", "text_projection")},
    "llava": {"image tower": ("vision_tower.",), "language model": ("language_model.", "lm_head.")},
}
NOISE_SCALES = (0.01, 0.03, 0.1)


@dataclass(frozen=True)
class FolderFault:
    name: str
    backends: tuple[str, ...]
    what: str
    edit: Callable[[Path, str], str | None] | None = None  # (copy, backend) -> None once broken, or why not
    setting: Callable[[ModelSpec], tuple[str, object] | str] | None = None  # the entry's (key, value), or why not


def _bare(key: str) -> str:
    return key.removeprefix("model.")


# ----------------------------------------------------------------------------- settings files


def _image_settings(change: Callable[[dict, bool], str | None]) -> Callable[[Path, str], str | None]:
    """`change(settings, is_open_clip)` on the folder's image preprocessing settings."""

    def edit(folder: Path, backend: str) -> str | None:
        if backend == "open_clip":
            return _json(folder / "open_clip_config.json", lambda c: change(c.setdefault("preprocess_cfg", {}), True))
        for name in ("preprocessor_config.json", "processor_config.json"):
            path = folder / name
            if path.is_file() and "image_mean" in json.dumps(json.loads(path.read_text())):
                return _json(path, lambda c: change(c.get("image_processor", c), False))
        return "no image processor settings (preprocessor_config.json or processor_config.json with image_mean)"

    return edit


def _mean_std(d: dict, oc: bool) -> None:
    mean, std = ("mean", "std") if oc else ("image_mean", "image_std")
    half = bool(d.get(mean)) and all(abs(v - 0.5) < 1e-6 for v in d[mean])
    d[mean], d[std] = (OPENAI_MEAN, OPENAI_STD) if half else ([0.5] * 3, [0.5] * 3)


def _interpolation(d: dict, oc: bool) -> None:
    if oc:
        d["interpolation"] = "bilinear" if d.get("interpolation", "bicubic") == "bicubic" else "bicubic"
    else:  # PIL's codes: 3 bicubic, 2 bilinear
        d["resample"] = 2 if d.get("resample", 3) == 3 else 3


def _no_crop(d: dict, oc: bool) -> str | None:
    if oc:
        if d.get("resize_mode", "shortest") == "squash":
            return "its preprocessing already squashes (resize_mode 'squash'): no crop to drop"
        d["resize_mode"] = "squash"
        return None
    crop = d.get("crop_size")
    if not d.get("do_center_crop") or crop is None:
        return "its image processor does not centre-crop"
    d["size"] = crop if isinstance(crop, dict) else {"height": crop, "width": crop}
    d["do_center_crop"] = False
    return None


def _config(file: str, change: Callable[[dict], str | None]) -> Callable[[Path, str], str | None]:
    def edit(folder: Path, backend: str) -> str | None:
        if not (folder / file).is_file():
            return f"no {file}"
        return _json(folder / file, change)

    return edit


def _activation(folder: Path, backend: str) -> str | None:
    if backend == "open_clip":
        return _config("open_clip_config.json", lambda c: c["model_cfg"].update(
            quick_gelu=not c["model_cfg"].get("quick_gelu", False)))(folder, backend)

    def flip(c: dict) -> str | None:
        towers = [c[k] for k in ("text_config", "vision_config") if isinstance(c.get(k), dict) and "hidden_act" in c[k]]
        for t in towers:
            t["hidden_act"] = "gelu" if t["hidden_act"] == "quick_gelu" else "quick_gelu"
        return None if towers else "config.json names no hidden_act in text_config or vision_config"

    return _config("config.json", flip)(folder, backend)


def _feature_layer(c: dict) -> str | None:
    layer = c.get("vision_feature_layer")
    if not isinstance(layer, int):
        return "config.json has no single vision_feature_layer"
    c["vision_feature_layer"] = -1 if layer != -1 else -2
    return None


# ----------------------------------------------------------------------------- weights


def _on_weights(select: Callable[[str], bool], change: Callable[[str, object], object], said: str,
                keep: Callable[[list[str]], dict] | None = None) -> Callable[[Path, str], str | None]:
    """`change(key, tensor)` on every safetensors weight `select` picks (keep: extra arguments read from all keys)."""

    def edit(folder: Path, backend: str) -> str | None:
        if not weight_files(folder):
            return "no safetensors weights (weights in other formats are not edited)"
        keys = weight_keys(folder)
        if not any(select(k) for k in keys):
            return f"no weight {said}"
        extra = keep(keys) if keep else {}
        _weights(folder, lambda ts: ts.update({k: change(k, t, **extra) for k, t in ts.items() if select(k)}))
        return None

    return edit


def _part(backend: str, part: str) -> Callable[[str], bool]:
    return lambda k: _bare(k).startswith(PARTS[backend][part])


def _noise(part: str, scale: float) -> Callable[[Path, str], str | None]:
    import torch

    def noisy(key: str, t):
        return t + torch.randn_like(t) * t.std() * scale if t.dtype.is_floating_point and t.numel() > 1 else t

    return lambda folder, backend: _on_weights(_part(backend, part), noisy, f"in the {part}")(folder, backend)


def _is_patch_embedding(k: str) -> bool:
    return k.endswith(("visual.conv1.weight", "embeddings.patch_embedding.weight"))


def _is_position_embedding(k: str) -> bool:
    return k.endswith(("visual.positional_embedding", "embeddings.position_embedding.weight")) and "text" not in k


def _class_token(keys: list[str]) -> dict:
    return {"keep_first": int(any(k.endswith("class_embedding") for k in keys))}


def _reset(key: str, w):
    import torch

    return torch.zeros_like(w) if key.endswith("bias") else torch.randn_like(w) * 0.02


def _channels_swapped(key: str, w):
    return w[:, [2, 1, 0]].contiguous() if w.ndim == 4 and w.shape[1] == 3 else w


USER_CATALOGUE = [
    FolderFault("mean-std-changed", ALL, "image mean/std 0.5 (CLIP's when it already is 0.5) in the preprocessing",
                _image_settings(_mean_std)),
    FolderFault("resize-interpolation-changed", ALL, "bilinear instead of bicubic resizing (or the other way round)",
                _image_settings(_interpolation)),
    FolderFault("centre-crop-dropped", ALL, "squash resize instead of shortest side + centre crop",
                _image_settings(_no_crop)),
    FolderFault("rgb-bgr-swap", ALL, "input channels swapped (patch embedding sees BGR)",
                _on_weights(_is_patch_embedding, _channels_swapped, "of a patch embedding")),
    FolderFault("vision-position-embedding-shuffled", ALL, "patch position embeddings permuted (class token kept)",
                _on_weights(_is_position_embedding, lambda k, w, keep_first: _permuted(w, keep_first),
                            "of image position embeddings", keep=_class_token)),
    FolderFault("activation-mismatch", DUAL, "QuickGELU instead of GELU (or the other way round) in the towers",
                _activation),
    FolderFault("logit-scale-dropped", DUAL, "logit scale reset to 1 (log 0)",
                _on_weights(lambda k: _bare(k) == "logit_scale", lambda k, w: w * 0, "named logit_scale")),
    FolderFault("text-projection-rows-shuffled", DUAL, "rows of the text projection permuted",
                _on_weights(lambda k: _bare(k) in ("text_projection", "text_projection.weight"),
                            lambda k, w: _permuted(w), "named text_projection")),
    FolderFault("tokenizer-context-truncated", ("hf_clip",), "tokenizer truncates prompts to 6 tokens",
                _config("tokenizer_config.json", lambda c: c.update(model_max_length=6))),
    *[FolderFault(f"noise-{s}-{part.replace(' ', '-')}", backends, f"weight noise {s} x std in the {part}",
                  _noise(part, s))
      for part, backends in (("image tower", ALL), ("text tower", DUAL), ("language model", ("llava",)))
      for s in NOISE_SCALES],
    FolderFault("projector-reset", ("llava",), "projector reset to initialization",
                _on_weights(lambda k: _bare(k).startswith("multi_modal_projector."), _reset,
                            "under multi_modal_projector")),
    FolderFault("wrong-vision-feature-layer", ("llava",), "vision_feature_layer moved by one layer",
                _config("config.json", _feature_layer)),
    FolderFault("attention-mask-dropped", ("llava",), "tokenizer returns no attention mask (padding attended)",
                _config("tokenizer_config.json", lambda c: c.update(model_input_names=["input_ids"]))),
    FolderFault("right-padding", ("llava",), "right padding in batched generation (the entry's padding_side)",
                setting=lambda s: "the entry already pads on the right" if s.padding_side == "right"
                else ("padding_side", "right")),
    FolderFault("sampling-instead-of-greedy", ("llava",), "sampling (temperature 1) instead of greedy decoding "
                "(the entry's generation)",
                setting=lambda s: "the entry already samples" if dict(s.generation).get("do_sample")
                else ("generation", {**dict(s.generation), "do_sample": True, "temperature": 1.0})),
]
