"""The matrix schema as a specification: any wrong value of any key is one named ConfigError, generation settings
are transformers' own, and reading a matrix costs no heavy import."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtests.config import BACKENDS, DTYPES, ConfigError, load_matrix
from mmtests.config.schema import ARRAY_SECTIONS, SETTINGS_SECTIONS, TABLE_SECTIONS, keys
from mmtests.config.tables import ImageSizes
from mmtests.config.values import Choice, Counts

# One valid entry of every section; each generated case spoils one key of one of them.
BASE = {
    "models": {"m1": {"backend": "open_clip", "model": "ViT-B-32"}, "vlm": {"backend": "llava", "model": "some/llava"},
               "ctl": {"backend": "llava", "model": "other/llava"}},
    "datasets": {"d1": {"source": "hf", "path": "some/dataset", "label_column": "label"},
                 "s": {"source": "shapes", "split": "test", "caption_column": "captions"}},
    "prompt_sets": {"p": {"templates": ["{}"]}, "q": {"templates": ["a {}."]}},
    "question_sets": {"qa": {"dataset": "s", "questions": "shapes"}},
    "zero_shot": [{"dataset": "d1", "prompt_set": "p"}],
    "prompt_gain": [{"dataset": "d1", "baseline": "p", "candidate": "q"}],
    "retrieval": [{"dataset": "s"}],
    "answers": [{"question_set": "qa"}],
    "pope": [{"question_set": "qa"}],
    "stability": [{"question_set": "qa"}],
    "attention": [{"question_set": "qa", "models": ["vlm"], "control": "ctl"}],
    "benchmarks": {"models": ["m1"]},
    "evaluation": {"loader_workers": 0},
}
ENTRY = {section: next(iter(BASE[section])) for section in TABLE_SECTIONS}  # the entry spoilt in [section.NAME]
WRONG_TYPES = [True, 7, 2.5, "x", [7], {"x": 7}]


def toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(toml, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


def matrix_text(matrix: dict) -> str:
    lines = []
    for section, value in matrix.items():
        if section in TABLE_SECTIONS:
            tables = [(f"[{section}.{name}]", entry) for name, entry in value.items()]
        elif section in ARRAY_SECTIONS:
            tables = [(f"[[{section}]]", entry) for entry in value]
        else:
            tables = [(f"[{section}]", value)]
        for header, entry in tables:
            lines += [header, *(f"{k} = {toml(v)}" for k, v in entry.items()), ""]
    return "\n".join(lines)


def wrong_values(kind) -> list:
    """Values of a TOML type the kind does not take, a string outside its choices, and numbers out of its range."""
    values = [v for v in WRONG_TYPES if not isinstance(v, kind.types) or (isinstance(v, bool) and bool not in kind.types)]
    if isinstance(kind, Choice):
        values.append("x")
    lo, hi = getattr(kind, "lo", None), getattr(kind, "hi", None)
    numbers = [n for n in (None if lo is None else lo - 1, None if hi is None else hi + 1) if n is not None]
    if isinstance(kind, ImageSizes):
        return values + [[[n, lo]] for n in numbers]
    if isinstance(kind, Counts):
        return values + [[n] for n in numbers] + [[]]
    return values + numbers


def cases():
    for section, entry_type in {**TABLE_SECTIONS, **ARRAY_SECTIONS, **SETTINGS_SECTIONS}.items():
        where = (f"[{section}.{ENTRY[section]}]" if section in TABLE_SECTIONS
                 else f"[[{section}]] #1" if section in ARRAY_SECTIONS else f"[{section}]")
        for key, field in keys(entry_type).items():
            for value in wrong_values(field.metadata["kind"]):
                yield pytest.param(section, where, key, value, id=f"{section}.{key}={toml(value)}")


def spoilt(section: str, key: str, value) -> dict:
    matrix = json.loads(json.dumps(BASE))
    entry = matrix[section]
    entry = entry[ENTRY[section]] if section in TABLE_SECTIONS else entry[0] if section in ARRAY_SECTIONS else entry
    entry[key] = value
    return matrix


def test_the_base_of_the_generated_cases_loads(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(matrix_text(BASE))
    matrix = load_matrix(path)
    assert [c.id for c in matrix.attention] == ["vlm/qa/colour"] and matrix.attention[0].control == "ctl"


@pytest.mark.parametrize(("section", "where", "key", "value"), list(cases()))
def test_a_wrong_value_for_any_key_is_a_config_error_naming_entry_and_key(tmp_path, section, where, key, value):
    path = tmp_path / "m.toml"
    path.write_text(matrix_text(spoilt(section, key, value)))
    with pytest.raises(ConfigError) as err:
        load_matrix(path)
    lines = str(err.value).splitlines()[1:]
    assert any(line.strip().startswith(where) and key in line for line in lines), str(err.value)


def load_with_generation(tmp_path, generation: str):
    path = tmp_path / "m.toml"
    path.write_text(matrix_text(BASE).replace('model = "some/llava"', f'model = "some/llava"\ngeneration = {generation}'))
    return load_matrix(path)


@pytest.mark.parametrize(("generation", "message"), [
    ("{ bogus_kw = 1 }", "[models.vlm]: generation has no setting 'bogus_kw'; use generate() settings of transformers' "
                         "GenerationConfig, e.g. do_sample, num_beams, temperature, top_p"),
    ("{ num_beam = 2 }", "[models.vlm]: generation has no setting 'num_beam' (did you mean 'num_beams'?)"),
])
def test_unknown_generation_settings_are_named_with_a_suggestion(tmp_path, generation, message):
    with pytest.raises(ConfigError) as err:
        load_with_generation(tmp_path, generation)
    assert message in str(err.value)


def test_generation_settings_of_generation_config_are_accepted(tmp_path):
    matrix = load_with_generation(tmp_path, "{ do_sample = false, num_beams = 1, max_new_tokens = 8 }")
    assert matrix.models["vlm"].generation == (("do_sample", False), ("max_new_tokens", 8), ("num_beams", 1))


def test_reading_a_matrix_imports_no_heavy_library(tmp_path):
    """numpy, PIL, torch, transformers and open_clip cost seconds at pytest start-up; a matrix needs none of them
    (an empty generation table included)."""
    path = tmp_path / "m.toml"
    path.write_text(matrix_text(BASE).replace('model = "some/llava"', 'model = "some/llava"\ngeneration = {}'))
    code = ("import sys\nfrom mmtests.config import load_matrix\nload_matrix()\nload_matrix(sys.argv[1])\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'PIL', 'torch', 'transformers', 'open_clip'}))")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(root), os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]"


class ClassName:
    """The class name as a template receives it: refuses a format spec and a conversion (!r, !s, !a)."""

    def __format__(self, spec: str) -> str:
        if spec:
            raise ValueError("format spec")
        return "Q"

    def __str__(self) -> str:
        raise ValueError("conversion")

    __repr__ = __str__


def filled(template: str) -> str | None:
    """The prompt str.format makes of a template with one class name, as '{}' or as '{c}': None unless exactly one
    of the two works and puts the name in once."""
    prompts = []
    for args, kwargs in (((ClassName(),), {}), ((), {"c": ClassName()})):
        try:
            prompts.append(template.format(*args, **kwargs))
        except (ValueError, IndexError, KeyError, AttributeError, TypeError):
            pass
    return prompts[0] if len(prompts) == 1 and prompts[0].count("Q") == 1 else None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["{", "}", "{}", "{c}", "{{", "}}", "c", "a ", "!r", ":>", "x", ".", "[0]", "{big}"]),
                max_size=6).map("".join))
def test_a_template_is_read_as_str_format_reads_it_or_named(text):
    """Exactly one '{}' or '{c}', no format spec or conversion, literal braces doubled: loaded, and it makes the
    prompt str.format makes; anything else ('{big}', a stray brace, two fields) is a ConfigError naming it."""
    matrix = json.loads(json.dumps(BASE))
    matrix["prompt_sets"]["p"]["templates"] = [text]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.toml"
        path.write_text(matrix_text(matrix))
        try:
            loaded = load_matrix(path)
        except ConfigError as err:
            assert filled(text) is None, str(err)
            assert any(line.strip().startswith(f"[prompt_sets.p]: template {text!r} ") for line in str(err).splitlines())
            return
    assert filled(text) is not None, text
    assert loaded.prompt_sets["p"].templates[0].format(ClassName()) == filled(text)


@pytest.mark.parametrize(("template", "prompt"), [("a {{}} {}.", "a {} Q."), ("{{c}} {c}", "{c} Q")])
def test_literal_braces_are_kept(tmp_path, template, prompt):
    matrix = json.loads(json.dumps(BASE))
    matrix["prompt_sets"]["p"]["templates"] = [template]
    path = tmp_path / "m.toml"
    path.write_text(matrix_text(matrix))
    assert load_matrix(path).prompt_sets["p"].templates[0].format("Q") == prompt


PRECISIONS = [(dtype, quantize) for dtype in (None, *DTYPES) for quantize in (None, "dynamic-int8")]
ONE_BACKEND_KEYS = {"pretrained": ("openai", "open_clip"), "padding_side": ("left", "llava"),
                    "generation": ({"do_sample": False}, "llava")}


@pytest.mark.parametrize("extra", [None, *ONE_BACKEND_KEYS])
@pytest.mark.parametrize(("dtype", "quantize"), PRECISIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_dtype_quantize_and_backend_keys_load_only_as_the_adapters_run_them(tmp_path, backend, dtype, quantize, extra):
    """Every (backend, dtype, quantize, backend-only key): loaded, or one problem per wrong combination, named."""
    entry = {"backend": backend, "model": "some/model", **({"dtype": dtype} if dtype else {}),
             **({"quantize": quantize} if quantize else {})}
    if extra:
        entry[extra] = ONE_BACKEND_KEYS[extra][0]
    path = tmp_path / "m.toml"
    path.write_text(matrix_text({"models": {"m": entry}}))
    wrong = [f"[models.m]: dtype = {dtype!r} with quantize" for _ in [1] if quantize and dtype not in (None, "float32")]
    wrong += [f"[models.m]: {extra} applies to backend" for _ in [1] if extra and ONE_BACKEND_KEYS[extra][1] != backend]
    if not wrong:
        assert load_matrix(path).models["m"].quantize == quantize
        return
    with pytest.raises(ConfigError) as err:
        load_matrix(path)
    problems = [line.strip() for line in str(err.value).splitlines()[1:]]
    assert len(problems) == len(wrong) and all(p.startswith(w) for p, w in zip(problems, wrong, strict=True)), problems


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("quantize", [None, "dynamic-int8"])
def test_a_quantized_entry_on_cuda_names_mm_device_cpu(device, quantize):
    from mmtests.config import ModelSpec
    from mmtests.config.rules import on_device

    problems = on_device({"m": ModelSpec("m", "llava", "some/llava", quantize=quantize)}, device)
    assert problems == ([] if device == "cpu" or not quantize else [
        "[models.m]: quantize = 'dynamic-int8' runs on a CPU only (torch.ao dynamic quantization) and this run's device "
        "is cuda; pass --mm-device cpu, or leave the entry out (--mm-model)"])


def quoted(text: str) -> str:
    """A TOML basic string: JSON's escapes, and DEL escaped as TOML wants."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def inline(value) -> str:
    """Any TOML value written inline (tables and arrays of tables too), keys quoted."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{quoted(k)} = {inline(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(map(inline, value)) + "]"
    if isinstance(value, str):
        return quoted(value)
    return repr(value) if isinstance(value, float) else toml(value)  # nan, inf and -inf are TOML's spelling too


SCALARS = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=12),
                    st.sampled_from(["{}", "{c}", "{big}", "{", "open_clip:NOPE", "shapes", "llava", "dynamic-int8",
                                     "bfloat16", "auto", "local-dir:", "test", "tiny-clip", "shapes-qa"]))
VALUES_ANY = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                          max_leaves=6)


def mutate(data, document: dict) -> None:
    """One change to a matrix as a user makes it: a value of another type or range, a key removed, renamed or
    added, a whole section replaced or removed, an entry dropped or duplicated."""
    section = data.draw(st.sampled_from(sorted(document)))
    value = document[section]
    entries = list(value.items()) if isinstance(value, dict) else list(enumerate(value)) if isinstance(value, list) else []
    how = data.draw(st.sampled_from(["value", "drop key", "rename key", "add key", "section", "drop section",
                                     "drop entry", "duplicate entry"]))
    if how == "section" or not entries:
        document[section] = data.draw(VALUES_ANY)
    elif how == "drop section":
        del document[section]
    else:
        name, entry = data.draw(st.sampled_from(entries))
        if how == "drop entry":
            del value[name]
        elif how == "duplicate entry":
            if isinstance(value, list):
                value.append(json.loads(json.dumps(entry)))
            else:
                value[f"{name}-copy"] = json.loads(json.dumps(entry))
        elif not isinstance(entry, dict) or not entry:
            value[name] = data.draw(VALUES_ANY)
        else:
            key = data.draw(st.sampled_from(sorted(entry)))
            if how == "value":
                entry[key] = data.draw(VALUES_ANY)
            elif how == "drop key":
                del entry[key]
            elif how == "rename key":
                entry[data.draw(st.text(min_size=1, max_size=8))] = entry.pop(key)
            else:
                entry[data.draw(st.sampled_from([*{k for t in TABLE_SECTIONS.values() for k in keys(t)}, "x"]))] = \
                    data.draw(VALUES_ANY)


@settings(max_examples=250, deadline=None)
@given(st.data())
def test_any_change_to_the_default_matrix_loads_or_is_one_config_error(data):
    """The packaged default, changed one to three times: a Matrix, or a ConfigError listing the problems; never
    another exception."""
    import tomllib

    from mmtests.config import DEFAULT_CONFIG, Matrix

    document = tomllib.loads(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    for _ in range(data.draw(st.integers(1, 3))):
        if document:
            mutate(data, document)
    text = "\n".join(f"{quoted(k)} = {inline(v)}" for k, v in document.items())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.toml"
        path.write_text(text, encoding="utf-8")
        try:
            loaded = load_matrix(path)
        except ConfigError as err:
            assert str(err).startswith(f"{path}:") and len(str(err).splitlines()) > 1, str(err)
            return
    assert isinstance(loaded, Matrix)
