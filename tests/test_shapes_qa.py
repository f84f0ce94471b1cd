"""Questions from shapes-world ground truth: answers agree with the scene, POPE sets are balanced and honest."""

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmtests.data import facts, render
from mmtests.data import shapes_qa as qa

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rows():
    return render.build_split("test", 60).remove_columns(["image", "captions"]).to_list()


def test_position_cells_around_a_central_band():
    assert qa.position([0, 0, 20, 20]) == "top left"
    assert qa.position([24, 24, 40, 40]) == "centre"  # centre (32, 32)
    assert qa.position([30, 50, 50, 64]) == "bottom right"  # centre (40, 57)
    assert qa.position([20, 10, 44, 30]) == "top"  # centre (32, 20)


def test_question_set_answers_follow_ground_truth(rows):
    for i, q in qa.question_set(rows):
        row = rows[i]
        present = {f"{c} {s}" for c, s, _ in qa.objects_of(row)}
        if q.kind == "colour":
            assert q.answer == facts.COLOURS[row["colour"]]
        elif q.kind == "shape":
            assert q.answer == facts.SHAPES[row["shape"]]
        elif q.kind == "count":
            assert q.answer == qa.NUMBERS[1 + len(row["distractors"])]
        elif q.kind == "pope":
            named = q.question.removeprefix("is there ").removesuffix(" in the image?").split(" ", 1)[1]
            assert (named in present) == (q.answer == "yes")


def test_pope_sets_are_balanced_and_adversarial_negatives_share_an_attribute(rows):
    pope = [(i, q) for i, q in qa.question_set(rows) if q.kind == "pope"]
    by_set = Counter((q.pope, q.answer) for _, q in pope)
    for name in qa.POPE_KINDS:
        assert by_set[(name, "yes")] == by_set[(name, "no")] == len(rows) // 2
    for i, q in pope:
        if q.pope == "adversarial" and q.answer == "no":
            colour, shape = q.question.split()[3:5]
            objects = qa.objects_of(rows[i])
            assert colour in {c for c, _, _ in objects} or shape in {s for _, s, _ in objects}


def test_absent_objects_are_absent(rows):
    rng = np.random.default_rng(0)
    popular = qa.popular_objects(rows)
    for row in rows:
        present = {f"{c} {s}" for c, s, _ in qa.objects_of(row)}
        for how in qa.POPE_KINDS:
            assert qa.absent_object(row, how, rng, popular) not in present


def test_training_encoding_matches_the_processor():
    """The training script's token ids for a question equal what the saved processor produces."""
    from transformers import AutoProcessor

    zoo = ROOT / "mmtests" / "zoo" / "tiny-llava"
    if not (zoo / "processor_config.json").is_file():
        pytest.skip("no tiny LLaVA in the zoo")
    sys.path.insert(0, str(ROOT / "fixtures"))
    from train_tiny_llava import IMAGE_TOKEN

    processor = AutoProcessor.from_pretrained(zoo)
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what shape is the big object?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    ids = processor(images=[image], text=[prompt], return_tensors="pt").input_ids[0].tolist()
    manual = processor.tokenizer(prompt.replace(IMAGE_TOKEN, IMAGE_TOKEN * 64)).input_ids
    assert ids == manual
    assert ids.count(processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)) == 64
    assert processor.tokenizer.unk_token_id not in ids
