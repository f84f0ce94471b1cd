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
    # dual encoders only; the quickstart's [[zero_shot]] names no models, so it runs every dual encoder of the file
    assert {c.model for c in matrix.zero_shot} == {"vitb32-openai", "mine", "my-finetune", "my-finetune-gated"}


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


@pytest.mark.parametrize(("text", "change", "message"), [
    (VALID, ("min_top1 = 0.5", "min_top_1 = 0.5"), "[[zero_shot]] #1: unknown key 'min_top_1' (did you mean 'min_top1'?)"),
    (VALID, ('pretrained = "openai"', 'pretrianed = "openai"'),
     "[models.m1]: unknown key 'pretrianed' (did you mean 'pretrained'?)"),
    (VALID, ('label_column = "label"', 'label_column = "label"\nlabel_colum = "x"'),
     "[datasets.d1]: unknown key 'label_colum' (did you mean 'label_column'?)"),
    (VALID, ('templates = ["{}"]', 'templates = ["{}"]\ntemplate = ["{}"]'),
     "[prompt_sets.bare]: unknown key 'template' (did you mean 'templates'?)"),
    (VALID, ("min_gain = 0.01", "min_gian = 0.01"), "[[prompt_gain]] #1: unknown key 'min_gian' (did you mean 'min_gain'?)"),
    (VALID, ("min_gain = 0.01", "colour = 'red'"), "[[prompt_gain]] #1: unknown key 'colour' (known: baseline, candidate,"),
    (LLAVA, ("images = 10", "image = 10"), "[question_sets.qa]: unknown key 'image' (did you mean 'images'?)"),
    (LLAVA + '[[answers]]\nquestion_set = "qa"\nmin_acuracy = {}\n', (), "[[answers]] #1: unknown key 'min_acuracy'"),
    (LLAVA + '[[pope]]\nquestion_set = "qa"\nmin_f = 0.5\n', (), "[[pope]] #1: unknown key 'min_f' (did you mean 'min_f1'?)"),
    (LLAVA + '[[stability]]\nquestion_set = "qa"\nsingle_samples = 4\n', (),
     "[[stability]] #1: unknown key 'single_samples' (did you mean 'single_sample'?)"),
    (LLAVA + '[[attention]]\nquestion_set = "qa"\nsample = 4\n', (),
     "[[attention]] #1: unknown key 'sample' (did you mean 'samples'?)"),
    (VALID + "[zero_shots]\n", (), "unknown section [zero_shots] (did you mean 'zero_shot'?)"),
])
def test_unknown_keys_suggest_the_closest_known_key(tmp_path, text, change, message):
    with pytest.raises(ConfigError) as err:
        load_matrix(write(tmp_path, text.replace(*change) if change else text))
    assert message in str(err.value)


def test_optional_model_and_dataset_keys_are_accepted(tmp_path):
    text = VALID.replace('pretrained = "openai"', 'pretrained = "openai"\nbaseline = "b"\ntolerance = {max_drop = 0.1}\n'
                         'dtype = "float16"')
    text += ('[datasets.s]\nsource = "shapes"\nsplit = "test"\nimage_sizes = [[96, 80]]\n'
             '[models.q]\nbackend = "hf_clip"\nmodel = "x/y"\nquantize = "dynamic-int8"\n')
    matrix = load_matrix(write(tmp_path, text))
    assert matrix.models["m1"].dtype == "float16" and matrix.datasets["s"].image_sizes == ((96, 80),)
    vlm = LLAVA + "".join(f'[[{s}]]\nquestion_set = "qa"\n' for s in ("answers", "pope", "stability", "attention"))
    assert len(load_matrix(write(tmp_path, vlm)).attention) == 1


@pytest.mark.parametrize(("change", "message"), [
    (('pretrained = "openai"', 'pretrained = "openai"\nrequired = true'), "[models.m1]: unknown key 'required'"),
    (('label_column = "label"', 'label_column = "label"\nrequired = false'), "[datasets.d1]: unknown key 'required'"),
    (("min_top1 = 0.5", 'min_top1 = 0.5\ngate = "baseline"'), "[[zero_shot]] #1: unknown key 'gate'"),
])
def test_gate_and_required_keys_that_nothing_reads_are_unknown(tmp_path, change, message):
    with pytest.raises(ConfigError) as err:
        load_matrix(write(tmp_path, VALID.replace(*change)))
    assert message in str(err.value)


@pytest.mark.parametrize(("text", "message"), [
    (VALID.replace("[[zero_shot]]", "[zero_shot]"), "[[zero_shot]] must be an array of tables, one [[zero_shot]] per "
                                                     "check; write [[zero_shot]], not [zero_shot]"),
    ("models = 3\n" + VALID.split("[datasets.d1]")[1], "[models] must be tables, one per entry ([models.NAME]), not a number"),
    ('[models]\nm1 = "ViT-B-32"\n', "[models.m1] must be a table of settings"),
    ("zero_shot = [1, 2]\n", "[[zero_shot]] #2 must be a table of settings"),
    (VALID.replace('prompt_set = "photo"', 'prompt_set = ["photo"]'), "prompt set \"['photo']\" in prompt_set is not defined"),
    (VALID.replace('dataset = "d1"\nprompt_set', 'models = "m1"\ndataset = "d1"\nprompt_set'),
     "[[zero_shot]] #1: models = 'm1' must be a list of model names"),
])
def test_sections_and_entries_of_the_wrong_type_are_named_not_a_crash(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_matrix(write(tmp_path, text))
    assert message in str(err.value)


def test_a_matrix_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(VALID.replace("a photo of a {c}.", "une photo d'un {c} \xe9t\xe9.").encode("latin-1"))
    with pytest.raises(ConfigError, match=f"{path}: not UTF-8 text .*save the matrix file as UTF-8"):
        load_matrix(path)


def test_a_prompt_gain_over_itself_is_a_mistake(tmp_path):
    with pytest.raises(ConfigError, match=r"\[\[prompt_gain\]\] #1: baseline and candidate are both 'photo'"):
        load_matrix(write(tmp_path, VALID.replace('baseline = "bare"', 'baseline = "photo"')))


def test_question_columns_need_a_kind_and_shapes_questions_take_none(tmp_path):
    columns = '[question_sets.real-qa]\ndataset = "real"\nquestions = "columns"\n'
    with pytest.raises(ConfigError, match=r"\[question_sets.real-qa\]: questions = 'columns' needs 'kind'"):
        load_matrix(write(tmp_path, LLAVA + columns))
    assert load_matrix(write(tmp_path, LLAVA + columns + 'kind = "vqa"\n')).question_sets["real-qa"].kind == "vqa"
    with pytest.raises(ConfigError, match=r"\[question_sets.qa\]: kind applies to questions = 'columns' only"):
        load_matrix(write(tmp_path, LLAVA + 'kind = "pope"\n'))


@pytest.mark.parametrize(("text", "change", "message"), [
    (VALID, ('label_column = "label"', 'label_column = "label"\nlimit = 0'),
     "[datasets.d1]: limit = 0 must be a whole number of at least 1"),
    (VALID, ('label_column = "label"', 'label_column = "label"\nlimit = true'), "limit = true must be a whole number"),
    (VALID, ('label_column = "label"', 'label_column = "label"\nlimit = 2.5'), "limit = 2.5 must be a whole number"),
    (LLAVA, ('split = "test"', 'split = "test"\nsize = -3'), "[datasets.shapes]: size = -3 must be a whole number"),
    (VALID, ('label_column = "label"', 'label_column = "label"\nsize = 10'), "size applies to the shapes world only"),
    (VALID, ('label_column = "label"', 'label_column = "label"\nsplit = 1'), "[datasets.d1]: split = 1 must be a string"),
    (LLAVA, ('split = "test"', 'split = "validation"'), "the shapes world has no split 'validation' (known: train,"),
    (LLAVA, ("images = 10", "images = 0"), "[question_sets.qa]: images = 0 must be a whole number of at least 1"),
    (LLAVA, ('model = "some/llava"', 'model = "some/llava"\ndtype = "fp16"'),
     "[models.vlm]: dtype = 'fp16' must be one of float32, float16, bfloat16"),
    (LLAVA, ('model = "some/llava"', 'model = "some/llava"\npadding_side = "middle"'),
     "padding_side = 'middle' must be 'left' or 'right'"),
    (VALID, ("min_top1 = 0.5", "min_top1 = true"), "min_top1 = true must be a number in [0, 1]"),
    (LLAVA + '[[pope]]\nquestion_set = "qa"\n', ('question_set = "qa"\n', 'question_set = "qa"\nmin_f1 = false\n'),
     "[[pope]] #1: min_f1 = false must be a number"),
])
def test_types_and_ranges_are_checked(tmp_path, text, change, message):
    with pytest.raises(ConfigError) as err:
        load_matrix(write(tmp_path, text.replace(*change)))
    assert message in str(err.value)


def test_an_entry_rejected_for_its_own_problem_is_not_also_called_undefined(tmp_path):
    """Cases 7 and 33 of the bad-inputs note: one mistake, one line."""
    path = tmp_path / "m.toml"
    path.write_text('[models.m]\nbackend = "open_clip"\nmodel = "ViT-B-32"\n[datasets.d]\nsource = "s3"\npath = "x"\n'
                    '[prompt_sets.p]\ntemplates = ["{}"]\n[[zero_shot]]\ndataset = "d"\nprompt_set = "p"\n')
    with pytest.raises(ConfigError) as err:
        load_matrix(path)
    assert "source = 's3' must be one of" in str(err.value) and "not defined" not in str(err.value)


def test_a_matrix_path_that_is_not_a_regular_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="'/dev/null' is not a regular file; pass a TOML file to --mm-config"):
        load_matrix("/dev/null")


def _default_matrix():
    from pathlib import Path

    import mmtests

    return load_matrix(Path(mmtests.__file__).parent / "default.toml")


@pytest.mark.parametrize("model", sorted(_default_matrix().models))
def test_narrowing_to_a_model_keeps_the_controls_its_attention_checks_measure(model):
    """--mm-model NAME keeps NAME's checks; a kept attention check's control stays loadable, with none of its own
    checks (else the check crashes on a model the narrowed matrix does not have)."""
    full = _default_matrix()
    narrowed = full.narrowed([model], None)
    for check in narrowed.attention:
        assert check.control is None or check.control in narrowed.models
    checks = [*narrowed.zero_shot, *narrowed.prompt_gain, *narrowed.retrieval, *narrowed.answers, *narrowed.pope,
              *narrowed.stability, *narrowed.attention]
    assert {c.model for c in checks} <= {model}
    assert set(narrowed.models) == {model} | {c.control for c in narrowed.attention if c.control}
