"""The zoo's catalogue of silent faults: each a broken copy of an embedded model (weights, preprocessing config,
tokenizer, generation settings) or of its matrix entry that still loads and runs without a warning."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_CONFIG
from .edits import _image_processor, _json, _noise, _open_clip_preprocess, _permuted, _reinit, _set, code_fault

ZOO = DEFAULT_CONFIG.parent / "zoo"
# The model of the default matrix each fault is applied to: its entry, the files it lives in, the models
# a run needs (the LLaVA's attention check needs its control too).
TARGETS = {
    "tiny-clip": ("tiny-clip/open_clip", 'model = "local-dir:zoo/tiny-clip/open_clip"', ["tiny-clip"]),
    "tiny-clip-hf": ("tiny-clip/hf", 'model = "zoo/tiny-clip/hf"', ["tiny-clip-hf"]),
    "tiny-llava": ("tiny-llava", 'model = "zoo/tiny-llava"', ["tiny-llava", "tiny-llava-stage1"]),
}


DUAL_ENCODER_TARGETS = ("tiny-clip", "tiny-clip-hf")


@dataclass(frozen=True)
class Fault:
    name: str
    target: str  # a key of TARGETS
    what: str
    files: Callable[[Path], None] | None = None  # edits the copied model folder in place
    matrix: Callable[[str], str] | None = None  # edits the matrix text
    code: Callable[[Path], None] | None = None  # writes the plugin that breaks mmtests' own code into the run's folder

    @property
    def dual_encoder(self) -> bool:
        """A fault in a dual encoder's own files (weights, preprocessing, tokenizer), which every CLIP suite sees;
        the matrix faults edit prompts and class names, which only the zero-shot checks use."""
        return self.files is not None and self.target in DUAL_ENCODER_TARGETS


def _matrix_sub(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        if old not in text:
            raise ValueError(f"matrix text {old!r} not found: the default matrix changed; update mmtests.faults")
        return text.replace(old, new, 1)

    return edit


def _model_option(entry: str, line: str) -> Callable[[str], str]:
    return lambda text: re.sub(rf"(\[models\.{re.escape(entry)}\]\n)", rf"\1{line}\n", text, count=1)


VISION, TEXT = ("visual.",), ("transformer.", "token_embedding", "positional_embedding", "ln_final", "text_projection")

CATALOGUE = [
    Fault("mean-std-0.5-open_clip-only", "tiny-clip", "image mean/std 0.5 in the open_clip format only (formats disagree)",
          _open_clip_preprocess(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])),
    Fault("mean-std-0.5-hf-only", "tiny-clip-hf", "image mean/std 0.5 in the HF preprocessor only",
          _image_processor("preprocessor_config.json", image_mean=[0.5] * 3, image_std=[0.5] * 3)),
    Fault("rgb-bgr-swap", "tiny-clip", "input channels swapped (patch embedding sees BGR)",
          _set("visual.conv1.weight", lambda w: w[:, [2, 1, 0]].contiguous())),
    Fault("resize-bilinear", "tiny-clip", "bilinear instead of bicubic resizing",
          _open_clip_preprocess(interpolation="bilinear")),
    Fault("resize-squash", "tiny-clip", "squash resize instead of shortest side + centre crop",
          _open_clip_preprocess(resize_mode="squash")),
    Fault("hf-no-centre-crop", "tiny-clip-hf", "HF processor resizes to 64x64 without the centre crop",
          _image_processor("preprocessor_config.json", do_center_crop=False, size={"height": 64, "width": 64})),
    Fault("quickgelu-mismatch", "tiny-clip", "QuickGELU instead of the GELU the weights were trained with",
          lambda f: _json(f / "open_clip_config.json", lambda c: c["model_cfg"].update(quick_gelu=True))),
    Fault("text-projection-rows-shuffled", "tiny-clip", "rows of the text projection permuted",
          _set("text_projection", _permuted)),
    Fault("logit-scale-dropped", "tiny-clip", "logit scale reset to 1 (log 0)", _set("logit_scale", lambda w: w * 0)),
    Fault("tokenizer-context-truncated", "tiny-clip-hf", "tokenizer truncates prompts to 6 tokens",
          lambda f: _json(f / "tokenizer_config.json", lambda c: c.update(model_max_length=6))),
    Fault("vision-position-embedding-shuffled", "tiny-clip", "patch position embeddings permuted",
          _set("visual.positional_embedding", lambda w: _permuted(w, keep_first=1))),
    *[Fault(f"noise-{s}-image-tower", "tiny-clip", f"weight noise {s} x std in the image tower", _noise(VISION, s))
      for s in (0.1, 0.3, 0.5)],
    *[Fault(f"noise-{s}-text-tower", "tiny-clip", f"weight noise {s} x std in the text tower", _noise(TEXT, s))
      for s in (0.1, 0.3, 0.5)],
    Fault("prompt-template-changed", "tiny-clip",
          "a prompt set's template edited ('a photo of a big {}.' -> 'a photo of the big {}.')",
          matrix=_matrix_sub('templates = ["a photo of a big {}."]', 'templates = ["a photo of the big {}."]')),
    Fault("class-order-shuffled", "tiny-clip", "class names listed in another order than the labels",
          matrix=_matrix_sub('label_column = "shape"\ndescription = "shape of the big object',
                             'label_column = "shape"\nclassnames = ["square", "circle", "triangle", "star", "cross", '
                             '"ring"]\ndescription = "shape of the big object')),
    Fault("projector-reset", "tiny-llava", "LLaVA projector reset to initialization", _reinit("multi_modal_projector.")),
    Fault("wrong-vision-feature-layer", "tiny-llava", "vision_feature_layer -1 instead of -2",
          lambda f: _json(f / "config.json", lambda c: c.update(vision_feature_layer=-1))),
    Fault("right-padding", "tiny-llava", "right padding in batched generation",
          matrix=_model_option("tiny-llava", 'padding_side = "right"')),
    Fault("sampling-instead-of-greedy", "tiny-llava", "sampling (temperature 1) instead of greedy decoding",
          matrix=_model_option("tiny-llava", "generation = { do_sample = true, temperature = 1.0 }")),
    Fault("attention-mask-dropped", "tiny-llava", "tokenizer returns no attention mask (padding attended)",
          lambda f: _json(f / "tokenizer_config.json", lambda c: c.update(model_input_names=["input_ids"]))),
    Fault("llava-mean-std-0.5", "tiny-llava", "LLaVA image processor mean/std 0.5",
          _image_processor("processor_config.json", image_mean=[0.5] * 3, image_std=[0.5] * 3)),
    Fault("patch-grid-column-major", "tiny-llava", "image tokens mapped to patches column-major (mmtests' geometry)",
          code=code_fault("mmtests.adapters.geometry", "r, c = np.divmod(np.arange(rows * cols), cols)",
                          "c, r = np.divmod(np.arange(rows * cols), rows)")),
    Fault("noise-0.1-language-model", "tiny-llava", "weight noise 0.1 x std in the language model",
          _noise(("language_model.",), 0.1)),
]
# Clean reruns: the unbroken models at other batch sizes and thread counts. Any red here is a false alarm.
CLEAN_RUNS = [("clean", None, "2"), ("clean-batch-7-1-thread", 7, "1")]
