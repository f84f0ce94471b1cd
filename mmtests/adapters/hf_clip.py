"""Hugging Face dual encoders (CLIPModel, SiglipModel, Siglip2Model, ...): hub ids or local directories."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from .base import DualEncoder, ImageInputs, Pixels
from .hf_checkpoint import Checkpoint


def _features(output) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output holds the projected features.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class HFClipEncoder(DualEncoder):
    def __init__(self, name: str, model: str, device: torch.device):
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        self.name, self.device = name, device
        # Hub ids not in the cache are unavailable (ModelUnavailable); a folder or checkpoint that does not
        # load as configured is an EntryError naming the file.
        checkpoint = Checkpoint(name, model)
        checkpoint.check_tokenizer_files()
        checkpoint.check_processor_files()
        self.model = checkpoint.load_model(AutoModel).to(device).eval()
        self.image_processor = checkpoint.load("preprocessor_config.json",
                                               lambda: AutoImageProcessor.from_pretrained(model))
        self._tokenizer = checkpoint.load(checkpoint.tokenizer_files(), lambda: AutoTokenizer.from_pretrained(model))
        checkpoint.check_vocabulary(self._tokenizer)
        # SigLIP-style text towers pool the last position and were trained on max-length padding.
        self._padding = "max_length" if "siglip" in self.model.config.model_type else True

    def tokenizer(self, texts: list[str]):
        return self._tokenizer(texts, padding=self._padding, truncation=True, return_tensors="pt")

    def preprocess(self, images: Sequence[Image.Image]) -> Pixels:
        """The pixels, or everything the image processor returns where that is more (SigLIP 2: the patches with
        `pixel_attention_mask` and `spatial_shapes`), as `ImageInputs`."""
        out = self.image_processor(list(images), return_tensors="pt")
        return out["pixel_values"] if set(out) == {"pixel_values"} else ImageInputs(out)

    def encode_image(self, pixels: Pixels, normalize: bool = False) -> torch.Tensor:
        inputs = dict(pixels.tensors) if isinstance(pixels, ImageInputs) else {"pixel_values": pixels}
        inputs = {name: t.to(self.device) for name, t in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.input_dtype)  # the masks and shapes stay integers
        feats = _features(self.model.get_image_features(**inputs))
        return torch.nn.functional.normalize(feats, dim=-1) if normalize else feats

    def encode_text(self, tokens, normalize: bool = False) -> torch.Tensor:
        feats = _features(self.model.get_text_features(**tokens.to(self.device)))
        return torch.nn.functional.normalize(feats, dim=-1) if normalize else feats
