"""The committed tiny CLIP: both formats load through the real loaders and agree with each other."""

from pathlib import Path

import pytest
import torch

from mmtests.adapters import load_dual_encoder
from mmtests.config import load_matrix
from mmtests.data.render import build_split

ZOO = Path(__file__).resolve().parent.parent / "mmtests" / "zoo" / "tiny-clip"
TEXTS = ["a photo of a big red circle.", "star", "a small blue cross next to a big white ring.", "a photo of a dog."]


@pytest.fixture(scope="module")
def encoders():
    matrix = load_matrix()
    return [load_dual_encoder(matrix.models[name], torch.device("cpu")) for name in ("tiny-clip", "tiny-clip-hf")]


@pytest.fixture(scope="module")
def images():
    return build_split("test", 16)["image"]


def test_both_formats_are_committed_as_safetensors():
    assert (ZOO / "open_clip" / "open_clip_model.safetensors").is_file()
    assert (ZOO / "hf" / "model.safetensors").is_file()


def test_tokenizers_agree(encoders):
    open_clip_tokens = encoders[0].tokenizer(TEXTS)
    hf_tokens = encoders[1].tokenizer(TEXTS)["input_ids"]
    width = hf_tokens.shape[1]
    assert torch.equal(open_clip_tokens[:, :width], hf_tokens)
    assert (open_clip_tokens[:, width:] == 0).all()


def test_batched_preprocessing_equals_the_transform_image_by_image(encoders, images):
    per_image = torch.stack([encoders[0]._preprocess(im) for im in images])
    assert torch.equal(encoders[0].preprocess(images), per_image)


def test_preprocessing_agrees(encoders, images):
    torch.testing.assert_close(encoders[0].preprocess(images), encoders[1].preprocess(images), atol=1e-5, rtol=0)


@torch.no_grad()
def test_image_embeddings_agree_across_backends(encoders, images):
    a, b = (e.encode_image(e.preprocess(images), normalize=True) for e in encoders)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@torch.no_grad()
def test_text_embeddings_and_logits_agree_across_backends(encoders, images):
    texts = [e.encode_text(e.tokenizer(TEXTS), normalize=True) for e in encoders]
    torch.testing.assert_close(texts[0], texts[1], atol=1e-4, rtol=0)
    logits = [e.encode_image(e.preprocess(images), normalize=True) @ t.T for e, t in zip(encoders, texts, strict=True)]
    torch.testing.assert_close(logits[0], logits[1], atol=1e-4, rtol=0)


def test_unknown_words_fall_back_to_the_unknown_token(encoders):
    tokens = encoders[1].tokenizer(["a photo of a dog."])["input_ids"][0].tolist()
    assert encoders[1]._tokenizer.unk_token_id in tokens
