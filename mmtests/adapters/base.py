"""The dual-encoder interface every CLIP-style backend offers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from ..errors import EntryError, ModelUnavailable  # noqa: F401  (re-exported)


class DualEncoder(ABC):
    """A CLIP-style model: batched preprocessing, tokenizer, and the two encoders.

    `encode_text(tokens, normalize=...)` and `tokenizer(texts)` follow open_clip's conventions, so
    open_clip's `build_zero_shot_classifier` works on any backend.
    """

    name: str
    device: torch.device
    tokenizer: Callable[[list[str]], object]
    input_dtype: torch.dtype = torch.float32  # pixels are cast to it: the model's dtype when cast as a whole

    @abstractmethod
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> a pixel batch the image encoder accepts (on CPU)."""

    @abstractmethod
    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...

    @abstractmethod
    def encode_text(self, tokens, normalize: bool = False) -> torch.Tensor: ...

    def logit_scale(self) -> float:
        """The learned temperature that turns cosine similarities into logits (exp of the stored log scale)."""
        return float(self.model.logit_scale.detach().float().exp())

    def autocast(self):
        """Half-precision autocast on GPU; a no-op on CPU where it would only slow things down."""
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda")

    @torch.no_grad()
    def text_classifier(self, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """Class embeddings (D x C): each class's prompts ("{}" templates) encoded, averaged, re-normalised."""
        from open_clip import build_zero_shot_classifier

        with self.autocast():
            return build_zero_shot_classifier(
                self, self.tokenizer, list(classnames), list(templates), num_classes_per_batch=None, device=self.device,
            ).float()
