"""Vision-language generation passes for benchmarks: prefill (time to first token) and fixed-length decoding.

Models: the matrix's vision-language entries of any family (through the suites' own adapter) and LLaVA-1.5
architectures with random weights: `llava-1.5-7b-shapes` (CLIP ViT-L/14 at 336 px + Llama-2-7B sizes, for GPUs)
and `llava-reduced` (ViT-B/32 at 224 px + an 8-layer, 512-wide Llama, for CPUs), with a LLaVA processor over the
shapes world's words. Speed does not depend on the weights' values; nothing is downloaded.

Inputs are made by the model's own processor (its resizing, tiling, image_sizes / image_grid_thw, pixel and
cross-attention masks) from a real shapes-world image and a fixed question in the model's prompt form, the same
for every sequence of the batch (no padding), so every round does the same work. Decoding always produces
exactly `new_tokens` tokens (`min_new_tokens` holds EOS back).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

QUESTION = "what colour is the big shape? where is the big shape? how many shapes are there?"
IMAGE_SEED = 0  # the shapes-world test scene every sequence shows


@dataclass
class Loaded:
    """A model to time with what makes its inputs: the processor, the family's facts and the prompt form."""

    model: object
    processor: object
    facts: object  # mmtests.adapters.vlm_facts.VLMFacts
    prompt: Callable[[str], str]

    def inputs(self, batch_size: int) -> dict:
        """`batch_size` copies of the question about the shapes image, through the processor, on the model's device."""
        from PIL import Image

        from ..adapters.llava import processor_batch
        from ..data.render import render_scene

        image = Image.fromarray(render_scene(IMAGE_SEED, "test")[0])
        return dict(processor_batch(self.processor, self.facts, [image] * batch_size,
                                    [self.prompt(QUESTION)] * batch_size, self.model.device, self.model.dtype))


@dataclass(frozen=True)
class GenModel:
    label: str
    weights: str  # "trained" or "random"
    spec: object = None  # for trained models: the matrix entry (a ModelSpec)
    architecture: str | None = None  # for random weights: a key of RANDOM


def bench_models(matrix) -> list[GenModel]:
    """What the matrix's [benchmarks] names: its LLaVA-style entries (all of them without the section), then
    the random-weight architectures it lists."""
    models = [GenModel(name, "trained", matrix.models[name]) for name in matrix.benchmarked_models()
              if matrix.models[name].backend == "llava"]
    return models + [GenModel(f"{arch}-random-weights", "random", architecture=arch)
                     for arch in matrix.benchmarks.random_vlms]


RANDOM = {
    # LLaVA-1.5-7B: CLIP ViT-L/14-336 (24 layers, 1024 wide, 576 patches), 2-layer MLP projector,
    # Llama-2-7B (32 layers, 4096 wide, 11008 MLP, 32 heads, 32064 vocabulary).
    "llava-1.5-7b-shapes": dict(
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    image_size=336, patch_size=14, projection_dim=768),
        text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096)),
    # A CPU-sized cousin with the same structure: ViT-B/32 at 224 px (49 patches), 8-layer 512-wide
    # Llama; ~13 GFLOP a prefill (the 7B's is ~8 TFLOP), a few seconds on 2 cores.
    "llava-reduced": dict(
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    image_size=224, patch_size=32, projection_dim=512),
        text=dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=8, vocab_size=32064, max_position_embeddings=2048)),
}


def random_llava(architecture: str, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Loaded:
    """A LLaVA-1.5-style model of the named sizes with random weights, built directly on `device`, with a LLaVA
    processor (CLIP preprocessing at the tower's size, a word tokenizer in the model's vocabulary)."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from ..adapters.llava import prompt_text
    from ..adapters.vlm_facts import facts_of
    from ..tiny_families.tokenizer import build_word_tokenizer
    from ..tiny_families.vlm import LLAVA_TEMPLATE, words

    sizes = RANDOM[architecture]
    vision = CLIPVisionConfig(**sizes["vision"])
    vocab = sizes["text"]["vocab_size"]
    tok = build_word_tokenizer(words(), vocab, sizes["text"]["max_position_embeddings"], append_eos=False,
                               extra_specials=("<image>",), padding_side="left")
    side = vision.image_size
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": side},
                                                                  crop_size={"height": side, "width": side}),
                               tokenizer=tok, patch_size=vision.patch_size, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE)
    text = LlamaConfig(**sizes["text"], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id)
    n_image = (vision.image_size // vision.patch_size) ** 2
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=n_image,
                         projector_hidden_act="gelu")
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.pad_token_id = tok.pad_token_id

    return Loaded(model.eval(), processor, facts_of("llava"), partial(prompt_text, processor))


def prefill(model, inputs: dict) -> Callable[[], torch.Tensor]:
    """Time to first token: the prompt (image included) through the model, then the first greedy token."""
    @torch.no_grad()
    def run():
        return model(**inputs, use_cache=True, logits_to_keep=1).logits[:, -1].argmax(-1)
    return run


def decode(model, inputs: dict, new_tokens: int) -> Callable[[], torch.Tensor]:
    """Prefill plus exactly `new_tokens` greedy tokens with the KV cache."""
    @torch.no_grad()
    def run():
        return model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    return run


def language_model_bytes(model) -> int:
    """Bytes of the language model's weights (and head): what each decode step must read at least."""
    from .perf import weight_bytes

    inner = model.model
    language = getattr(inner, "language_model", None) or getattr(inner, "text_model", None)  # Idefics3: text_model
    return weight_bytes(language) + weight_bytes(model.lm_head)


def kv_cache_bytes(model, batch_size: int, length: int) -> int:
    """Bytes of keys and values held for `length` positions, all layers: read once per decode step."""
    t = model.config.get_text_config()
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    return 2 * t.num_hidden_layers * batch_size * length * t.num_key_value_heads * head_dim * model.dtype.itemsize


def load(model: GenModel, device: torch.device) -> Loaded:
    """The model to time and its processor: a matrix entry through the suites' own loader (its dtype, quantization,
    chat template checks; a hub id not cached here is ModelUnavailable, a broken checkpoint an EntryError naming the
    file), or a random-weight architecture (bf16 on CUDA, float32 on a CPU)."""
    if model.weights == "random":
        return random_llava(model.architecture, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    from ..adapters.llava import VisionLanguageModel
    from ..offline import hub_access

    spec = model.spec
    with hub_access(False):
        vlm = VisionLanguageModel(spec.model, device, dtype=spec.dtype, generation=dict(spec.generation),
                                  quantize=spec.quantize, entry=spec.name)
    return Loaded(vlm.model, vlm.processor, vlm.facts, vlm.prompt)


def passes_of(model: GenModel, device: str, new_tokens: int) -> Callable[[tuple[str, int]], Callable]:
    """For `mmtests.bench.memory.peak_memory`: load once, then make the ("prefill"|"decode", batch) pass."""
    loaded = load(model, torch.device(device))

    def prepare(key: tuple[str, int]):
        kind, batch = key
        inputs = loaded.inputs(batch)
        return prefill(loaded.model, inputs) if kind == "prefill" else decode(loaded.model, inputs, new_tokens)

    return prepare
