"""LLaVA generation passes for benchmarks: prefill (time to first token) and fixed-length decoding.

Models: the embedded tiny LLaVA (trained weights, through the matrix) and LLaVA-1.5 architectures
with random weights: `llava-1.5-7b-shapes` (CLIP ViT-L/14 at 336 px + Llama-2-7B sizes, for GPUs)
and `llava-reduced` (ViT-B/32 at 224 px + an 8-layer, 512-wide Llama, for CPUs). Speed does not
depend on the weights' values; nothing is downloaded.

Inputs are synthetic and seeded: one image per sequence and a fixed prompt of `PROMPT_TOKENS`
text tokens around the image tokens, no padding, so every round does the same work. Decoding
always produces exactly `new_tokens` tokens (`min_new_tokens` holds EOS back).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

PROMPT_TOKENS = 24  # text tokens around the image, as in a one-line question with its chat template


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


def random_llava(architecture: str, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A LLaVA-1.5-style model of the named sizes with random weights, built directly on `device`."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    sizes = RANDOM[architecture]
    vision = CLIPVisionConfig(**sizes["vision"])
    text = LlamaConfig(**sizes["text"], bos_token_id=1, eos_token_id=2, pad_token_id=0)
    n_image = (vision.image_size // vision.patch_size) ** 2
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=sizes["text"]["vocab_size"] - 1,
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
    model.generation_config.pad_token_id = 0
    return model.eval()


def synthetic_inputs(model, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded pixels and token ids: BOS, the image tokens, then PROMPT_TOKENS ordinary tokens."""
    cfg = model.config
    vision = cfg.vision_config
    n_image = (vision.image_size // vision.patch_size) ** 2
    g = torch.Generator().manual_seed(seed)
    vocab = cfg.text_config.vocab_size
    special = {cfg.image_token_id, cfg.text_config.bos_token_id, cfg.text_config.eos_token_id,
               cfg.text_config.pad_token_id}
    ordinary = torch.tensor([t for t in range(min(vocab, 4096)) if t not in special])
    text = ordinary[torch.randint(len(ordinary), (batch_size, PROMPT_TOKENS), generator=g)]
    bos = torch.full((batch_size, 1), cfg.text_config.bos_token_id if cfg.text_config.bos_token_id is not None else 1)
    image = torch.full((batch_size, n_image), cfg.image_token_id)
    ids = torch.cat([bos, image, text], dim=1)
    pixels = torch.randn(batch_size, 3, vision.image_size, vision.image_size, generator=g)
    device = model.device
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": pixels.to(device, model.dtype)}


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

    return weight_bytes(model.model.language_model) + weight_bytes(model.lm_head)


def kv_cache_bytes(model, batch_size: int, length: int) -> int:
    """Bytes of keys and values held for `length` positions, all layers: read once per decode step."""
    t = model.config.text_config
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    return 2 * t.num_hidden_layers * batch_size * length * t.num_key_value_heads * head_dim * model.dtype.itemsize


def load(model: GenModel, device: torch.device):
    """The model to time: a matrix entry through the suites' own loader (its dtype, quantization, chat template
    checks; a hub id not cached here is ModelUnavailable, a broken checkpoint an EntryError naming the file),
    or a random-weight architecture (bf16 on CUDA, float32 on a CPU)."""
    if model.weights == "random":
        return random_llava(model.architecture, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    from ..adapters.llava import VisionLanguageModel
    from ..offline import hub_access

    spec = model.spec
    with hub_access(False):
        return VisionLanguageModel(spec.model, device, dtype=spec.dtype, generation=dict(spec.generation),
                                   quantize=spec.quantize, entry=spec.name).model


def passes_of(model: GenModel, device: str, new_tokens: int) -> Callable[[tuple[str, int]], Callable]:
    """For `mmtests.bench.memory.peak_memory`: load once, then make the ("prefill"|"decode", batch) pass."""
    loaded = load(model, torch.device(device))

    def prepare(key: tuple[str, int]):
        kind, batch = key
        inputs = synthetic_inputs(loaded, batch)
        return prefill(loaded, inputs) if kind == "prefill" else decode(loaded, inputs, new_tokens)

    return prepare
