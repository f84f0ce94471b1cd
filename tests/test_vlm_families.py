"""Every tiny vision-language family through the adapter, one family at a time: the prompt is built (chat template,
or the processor's prefix form), images are batched as the family's processor wants them, the image's tokens are
found where the processor put them (as many as the model's image features), and greedy answers do not depend on
the batch they are asked in."""

from pathlib import Path

import pytest
import torch

from mmtests.adapters.llava import VisionLanguageModel
from mmtests.data.render import render_scene
from mmtests.data.shapes_qa import PHRASINGS
from mmtests.tiny_families import build, names

CPU = torch.device("cpu")
# Image tokens of one 64-pixel shapes image, from the tiny builders' sizes (32-pixel tiles, 8-pixel patches):
IMAGE_TOKENS = {
    "llava": 16, "llava-qwen2": 16,  # one 4x4 grid
    "llava-next": 16 + 64 + 8, "llava-onevision": 16 + 64 + 8,  # base view + 2x2 tiles (8x8 patches) + 8 row ends
    "qwen2-vl": 16, "qwen2-5-vl": 16,  # 8x8 patches merged 2x2
    "idefics3": 5 * 4, "smolvlm": 5 * 4,  # 2x2 tiles + the global view, 4x4 patches shuffled 2x2 each
    "paligemma": 16, "gemma3": 16,  # PaliGemma: one 4x4 grid; Gemma 3: an 8x8 grid pooled to 4x4
    "mllama": 4 * 17,  # cross-attention keys: 4 tiles of a class token and 4x4 patches
}
QUESTIONS = [ps[0] for k, ps in PHRASINGS.items() if "{o}" not in ps[0]]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlm-families")
    return {name: Path(build(name, root / name)["model"]) for name in names("vlm")}


def images(n: int):
    from PIL import Image

    return [Image.fromarray(render_scene(seed, "test")[0]) for seed in range(n)]


def test_every_family_has_an_expected_image_token_count():
    assert set(IMAGE_TOKENS) == set(names("vlm"))


def test_the_same_seed_builds_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    a, b, c = (load_file(Path(build("qwen2-vl", tmp_path / n, seed)["model"]) / "model.safetensors")
               for n, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("family", names("vlm"))
def test_family_through_the_adapter(folders, family):
    vlm = VisionLanguageModel(str(folders[family]), CPU, entry=family)
    prompt = vlm.prompt(QUESTIONS[0])
    assert QUESTIONS[0] in prompt
    pics = images(3)
    maps = vlm.attention_maps(pics[0], QUESTIONS[0])
    assert len(maps.image_positions) == IMAGE_TOKENS[family]
    ids = maps.inputs["input_ids"][0].tolist()
    if maps.mask == "cross":
        assert maps.attentions.shape[-1] == IMAGE_TOKENS[family]  # keys: the vision tokens
        assert ids.count(vlm.image_token_id) == 1  # one <|image|> token in the text
    else:
        assert [i for i, t in enumerate(ids) if t == vlm.image_token_id] == maps.image_positions
        assert maps.attentions.shape[-1] == len(ids)
    assert (maps.grid is not None) == (family in ("llava", "llava-qwen2"))
    if maps.mask == "prefix":
        assert maps.bidirectional is not None
        start, end = maps.bidirectional
        assert start <= maps.image_positions[0] and maps.image_positions[-1] < end
    # Greedy answers: a batch of 3 (padded on the left) gives what one at a time gives.
    one = [g.tokens for q, im in zip(QUESTIONS[:3], pics, strict=True) for g in vlm.generate([im], [q], 6, 1)]
    three = [g.tokens for g in vlm.generate(pics, QUESTIONS[:3], 6, 3)]
    assert three == one
    assert all(len(t) > 0 for t in one)
