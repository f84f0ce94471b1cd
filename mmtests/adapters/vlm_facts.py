"""What differs between vision-language families, as one table of facts keyed by `config.json`'s `model_type`.

`VisionLanguageModel` reads these facts and nothing else about the family: how a batch's images go to the
processor, how a prompt is built when the checkpoint has no chat template, and which positions attend which
(`AttentionMaps.mask`). Where the image's tokens are is read from the processor's `input_ids` (the config's image
token), never assumed; a model_type not in the table gets the defaults (a flat image list, a chat template, causal
attention over the image's tokens), which is how most image-text-to-text models work.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VLMFacts:
    # The processor takes one list of images per sample (Gemma 3, Mllama, Idefics3 / SmolVLM) instead of a flat list.
    nested_images: bool = False
    # Without a chat template: "prefix" = the question is the processor's prefix (PaliGemma puts the image tokens
    # and BOS before it and a newline after); None = a chat template is required.
    prompt_without_template: str | None = None
    # "causal"; "prefix" (causal, except the block marked by `bidirectional_type` in token_type_ids attends both
    # ways); "cross" (the image reaches the text through cross-attention layers: those layers' maps are measured,
    # their keys being the vision tokens).
    mask: str = "causal"
    bidirectional_type: int | None = None  # the token_type_ids value of the block that attends both ways
    # LLaVA-1.5: an image is one (image_size / patch_size)^2 grid of tokens, row-major (AttentionMaps.grid).
    single_grid: bool = False


FACTS: dict[str, VLMFacts] = {
    "llava": VLMFacts(single_grid=True),
    "llava_next": VLMFacts(),  # anyres tiles: base view, then the tiles unpadded with a newline token per row
    "llava_onevision": VLMFacts(),
    "qwen2_vl": VLMFacts(),  # dynamic resolution: image_grid_thw, 2x2 patches merged into one token
    "qwen2_5_vl": VLMFacts(),
    "idefics3": VLMFacts(nested_images=True),  # tiles + global view; <row_i_col_j> text tokens between them
    "smolvlm": VLMFacts(nested_images=True),
    "paligemma": VLMFacts(prompt_without_template="prefix", mask="prefix", bidirectional_type=0),
    "gemma3": VLMFacts(nested_images=True, mask="prefix", bidirectional_type=1),  # image tokens attend both ways
    "mllama": VLMFacts(nested_images=True, mask="cross"),
}
DEFAULT = VLMFacts()


def facts_of(model_type: str) -> VLMFacts:
    return FACTS.get(model_type, DEFAULT)
