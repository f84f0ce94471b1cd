"""open_clip models: built-in configs with pretrained tags or files, and `local-dir:` folders."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from .base import DualEncoder, ModelUnavailable


class OpenClipEncoder(DualEncoder):
    def __init__(self, name: str, model: str, pretrained: str | None, device: torch.device):
        import open_clip

        self.name, self.device = name, device
        try:
            self.model, _, self._preprocess = open_clip.create_model_and_transforms(
                model, pretrained=pretrained, device=device
            )
        except (FileNotFoundError, RuntimeError, OSError) as err:
            where = f"'{model}'" + (f" with pretrained '{pretrained}'" if pretrained else "")
            raise ModelUnavailable(
                f"open_clip model {where} could not be loaded here ({err.__class__.__name__}: {str(err)[:300]}). "
                "Fetch it once where the hub is reachable (it lands in the HF cache), or point 'pretrained' "
                "at a local weights file, or 'model' at local-dir:<folder>."
            ) from err
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([self._preprocess(im) for im in images])

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.model.encode_image(pixels.to(self.device), normalize=normalize)

    def encode_text(self, tokens, normalize: bool = False) -> torch.Tensor:
        return self.model.encode_text(tokens.to(self.device), normalize=normalize)
