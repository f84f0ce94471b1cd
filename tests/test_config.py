"""The matrix file: the packaged default loads; every mistake is named with its entry and fix."""

import textwrap

import pytest

from mmtests.config import ConfigError, load_matrix

VALID = """
[models.m1]
backend = "open_clip"
model = "ViT-B-32"
pretrained = "openai"

[datasets.d1]
source = "hf"
path = "some/dataset"
label_column = "label"
classnames = ["cat", "dog"]

[prompt_sets.bare]
templates = ["{}"]

[prompt_sets.photo]
templates = ["a photo of a {c}."]

[[zero_shot]]
dataset = "d1"
prompt_set = "photo"
min_top1 = 0.5

[[prompt_gain]]
dataset = "d1"
baseline = "bare"
candidate = "photo"
min_gain = 0.01
"""


def write(tmp_path, text):
    path = tmp_path / "matrix.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_packaged_default_loads_with_readable_ids():
    matrix = load_matrix()
    ids = [c.id for c in matrix.zero_shot]
    assert "tiny-clip/shapes-test/ensemble" in ids
    assert {"tiny-clip", "tiny-clip-hf"} <= set(matrix.models)


def test_valid_matrix_expands_checks_over_models_and_rewrites_c_placeholders(tmp_path):
    matrix = load_matrix(write(tmp_path, VALID))
    assert [c.id for c in matrix.zero_shot] == ["m1/d1/photo"]
    assert [c.id for c in matrix.prompt_gain] == ["m1/d1/photo-vs-bare"]
    assert matrix.prompt_sets["photo"].templates == ("a photo of a {}.",)


@pytest.mark.parametrize(
    "change, message",
    [
        (("min_top1 = 0.5", "min_top1 = 1.5"), "min_top1 = 1.5 must be a number in [0, 1]"),
        (('prompt_set = "photo"', 'prompt_set = "fancy"'), "prompt set 'fancy' in prompt_set is not defined"),
        (('templates = ["{}"]', 'templates = ["a photo"]'), "needs exactly one placeholder"),
        (('backend = "open_clip"', 'backend = "keras"'), "backend = 'keras' must be one of open_clip, hf_clip"),
        (('label_column = "label"', 'labels = "label"'), "[datasets.d1]: missing 'label_column'"),
        (('dataset = "d1"\nprompt_set', 'dataset = "d2"\nprompt_set'), "dataset 'd2' in dataset is not defined (known: d1)"),
    ],
)
def test_mistakes_are_named_with_the_entry(tmp_path, change, message):
    with pytest.raises(ConfigError) as err:
        load_matrix(write(tmp_path, VALID.replace(*change)))
    assert message in str(err.value)


def test_all_problems_are_reported_together(tmp_path):
    text = VALID.replace("min_top1 = 0.5", "min_top1 = -2").replace('templates = ["{}"]', 'templates = ["x"]')
    with pytest.raises(ConfigError) as err:
        load_matrix(write(tmp_path, text))
    assert "min_top1" in str(err.value) and "placeholder" in str(err.value)


def test_narrowing_to_an_unknown_model_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"model 'm2' in --mm-model is not defined \(known: m1\)"):
        load_matrix(write(tmp_path, VALID)).narrowed(["m2"], None)


def test_missing_file_says_what_to_pass(tmp_path):
    with pytest.raises(ConfigError, match="pass an existing TOML file to --mm-config"):
        load_matrix(tmp_path / "nope.toml")


def test_open_clip_template_lists_can_be_named(tmp_path):
    text = VALID.replace('templates = ["a photo of a {c}."]', 'templates = "open_clip:OPENAI_IMAGENET_TEMPLATES"')
    matrix = load_matrix(write(tmp_path, text))
    assert len(matrix.prompt_sets["photo"].templates) == 80
    assert all("{}" in t for t in matrix.prompt_sets["photo"].templates)


def test_a_bad_matrix_stops_pytest_with_one_message_not_a_traceback(pytester):
    bad = pytester.makefile(".toml", matrix=VALID.replace("min_top1 = 0.5", "min_top1 = 7"))
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess(f"--mm-config={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*mmtests matrix error:*", "*min_top1 = 7 must be a number in [[]0, 1]*"])
    assert "Traceback" not in result.stderr.str()


def test_readme_matrix_examples_load(tmp_path):
    """The README's TOML examples, together, are a valid matrix."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 2
    matrix = load_matrix(write(tmp_path, "\n".join(blocks)))
    assert matrix.models["llava-7b"].is_vlm
    assert [c.id for c in matrix.pope] == ["llava-7b/pope"]
    assert {c.model for c in matrix.zero_shot} == {"vitb32-openai"}  # dual encoders only


LLAVA = """
[models.clip]
backend = "open_clip"
model = "ViT-B-32"

[models.vlm]
backend = "llava"
model = "some/llava"

[datasets.shapes]
source = "shapes"
split = "test"

[datasets.real]
source = "hf"
path = "some/vqa"

[question_sets.qa]
dataset = "shapes"
questions = "shapes"
images = 10
"""


@pytest.mark.parametrize(("extra", "message"), [
    ('[[answers]]\nquestion_set = "nope"\n', "[[answers]] #1: question set 'nope' in question_set is not defined"),
    ('[[pope]]\nquestion_set = "qa"\nmodels = ["clip"]\n', "model 'clip' has backend 'open_clip'; models needs backend 'llava'"),
    ('[[zero_shot]]\ndataset = "shapes"\nprompt_set = "p"\nmodels = ["vlm"]\n[prompt_sets.p]\ntemplates = ["{}"]\n',
     "is a vision-language model"),
    ('[question_sets.bad]\ndataset = "real"\nquestions = "shapes"\n',
     "questions = 'shapes' needs a dataset with source 'shapes'"),
    ('[[attention]]\nquestion_set = "qa"\nmin_margin_over_control = 1.0\n', "min_margin_over_control needs a 'control' model"),
    ('[[pope]]\nquestion_set = "qa"\nmin_f1 = 1.5\n', "min_f1 = 1.5 must be a number in [0, 1]"),
])
def test_vlm_sections_name_each_mistake(tmp_path, extra, message):
    with pytest.raises(ConfigError) as err:
        load_matrix(write(tmp_path, LLAVA + extra))
    assert message in str(err.value)


def test_vlm_checks_default_to_every_vlm(tmp_path):
    matrix = load_matrix(write(tmp_path, LLAVA + '[[answers]]\nquestion_set = "qa"\nmin_accuracy = { colour = 0.9 }\n'))
    assert [(c.id, c.min_accuracy) for c in matrix.answers] == [("vlm/qa", (("colour", 0.9),))]
