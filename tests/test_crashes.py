"""Crashes are outcomes (issue 15): any exception in a check, at any stage (loading a model, loading a dataset,
measuring, evaluating) and in any suite, is recorded as one crashed figure per check with its class, message and
where it was raised; the exception that took the checks down is shown once with its traceback, every later check
that needs it fails in one line naming the first; the session fails, and the report counts the crashes."""

import json
from pathlib import Path

import pytest

ZOO = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"

MATRIX = f"""
[models.tiny-clip]
backend = "open_clip"
model = "local-dir:{ZOO}/tiny-clip/open_clip"

[models.tiny-llava]
backend = "llava"
model = "{ZOO}/tiny-llava"

[datasets.shapes-mini]
source = "shapes"
split = "test"
label_column = "shape"
limit = 16

[prompt_sets.bare]
templates = ["{{}}"]

[prompt_sets.big]
templates = ["a photo of a big {{}}."]

[[zero_shot]]
dataset = "shapes-mini"
prompt_set = "bare"

[[zero_shot]]
dataset = "shapes-mini"
prompt_set = "big"

[[prompt_gain]]
dataset = "shapes-mini"
baseline = "bare"
candidate = "big"

[question_sets.qa]
dataset = "shapes-mini"
questions = "shapes"
images = 4
max_new_tokens = 8

[[answers]]
question_set = "qa"
models = ["tiny-llava"]

[[attention]]
question_set = "qa"
models = ["tiny-llava"]
kind = "colour"
samples = 2
"""
