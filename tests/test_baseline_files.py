"""Baseline folders as files mmtests reads: outcomes.json fits one schema, checked whole when read (any value of a
wrong type, a key dropped, the file cut short: one EntryError naming the key, never another exception); a part a
gate needs that the folder lacks is a red gate naming the part and the fix, never a gate that drops out; a
baseline written before the `format` field reads as format 1; views of one tensor are saved."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmtests.errors import EntryError
from mmtests.figures import baseline_store, gates
from mmtests.figures.baseline_store import FINGERPRINT, OUTCOMES, Baseline, BaselineWriter, MissingPart
from mmtests.figures.check import FAIL, PASS

ZOO_BASELINES = Path(baseline_store.__file__).resolve().parents[1] / "zoo" / "baselines"
TOL = gates.tolerances("float32")
N = 3  # samples per check key in the valid baseline below


def valid_baseline(folder: Path) -> Path:
    writer = BaselineWriter()
    writer.add("m", "zero_shot/d/p", {"digest": "abc", "predicted": [0, 2, 1], "probability": [0.5, 0.9, 1],
                                      "correct": [True, False, True]})
    writer.add("m", "answers/q", {"digest": "def", "text": ["red", "", "a star"], "correct": [True, False, False],
                                  "kind": ["colour", "shape", "describe"]})
    writer.add_array("m", "image/d", torch.ones(4, 3))
    writer.add_array("m", "first_token_logprobs/q", torch.zeros(2, 5))
    return writer.write("m", folder, {"device": "cpu"})


# Each slot of outcomes.json (a path of keys and indices), what fits it, and the key a message must name.
ELEMENT = {"predicted": int, "probability": float, "correct": bool, "text": str, "kind": str}


def slots() -> list[tuple[tuple, type, str]]:
    out = [(("format",), int, "'format'"), (("model",), str, "'model'"), (("environment",), dict, "'environment'"),
           (("samples",), dict, "'samples'")]
    for key, fields in (("zero_shot/d/p", ("predicted", "probability", "correct")),
                        ("answers/q", ("text", "correct", "kind"))):
        named = f"samples[{key!r}]"
        out += [(("samples", key), dict, named), (("samples", key, "digest"), str, f"{named}['digest']")]
        for f in fields:
            out.append((("samples", key, f), list, f"{named}[{f!r}]"))
            out += [(("samples", key, f, i), ELEMENT[f], f"{named}[{f!r}]") for i in range(N)]
    return out


SLOTS = slots()
# Keys whose absence is fine: `format` (an older file, format 1), a whole check key (its gate says it has none).
DROPPABLE = [s for s in SLOTS if isinstance(s[0][-1], str) and s[0] not in (("format",),)
             and not (len(s[0]) == 2 and s[0][0] == "samples")]
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2, allow_nan=False)
                           | st.text(max_size=3), lambda inner: st.lists(inner, max_size=2)
                           | st.dictionaries(st.text(max_size=2), inner, max_size=2), max_leaves=4)


def fits(value, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def at(data, path):
    for p in path[:-1]:
        data = data[p]
    return data


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> tuple[Path, dict]:
    folder = valid_baseline(tmp_path_factory.mktemp("baseline") / "m")
    return folder, json.loads((folder / OUTCOMES).read_text())


def read_back(folder: Path, data_or_text) -> EntryError | None:
    text = data_or_text if isinstance(data_or_text, str) else json.dumps(data_or_text)
    (folder / OUTCOMES).write_text(text, encoding="utf-8")
    try:
        Baseline.load(folder, "m")
    except EntryError as err:
        return err
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(slot=st.sampled_from(SLOTS), value=JSON_VALUES)
def test_a_value_of_the_wrong_type_anywhere_is_one_error_naming_its_key(valid, tmp_path, slot, value):
    path, kind, named = slot
    if fits(value, kind):
        return
    data = json.loads(json.dumps(valid[1]))
    at(data, path)[path[-1]] = value
    folder = tmp_path / "m"
    shutil.copytree(valid[0], folder, dirs_exist_ok=True)
    err = read_back(folder, data)
    assert err is not None, f"{path} = {value!r} was read"
    assert named in str(err) and "--mm-save-baseline" in str(err), str(err)
    problems = str(err).split(": ", 2)[-1].split("; ")
    assert len(problems) == len(set(problems)), str(err)  # each said once


@pytest.mark.parametrize("slot", DROPPABLE, ids=lambda s: "/".join(map(str, s[0])))
def test_a_dropped_key_is_one_error_naming_it(valid, tmp_path, slot):
    path, _, named = slot
    data = json.loads(json.dumps(valid[1]))
    del at(data, path)[path[-1]]
    shutil.copytree(valid[0], tmp_path / "m")
    err = read_back(tmp_path / "m", data)
    assert err is not None and named in str(err) and "missing" in str(err), err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 1, exclude_max=True))
def test_a_file_cut_short_is_one_error_naming_the_file(valid, tmp_path, cut):
    text = (valid[0] / OUTCOMES).read_text()
    end = text.rindex("}")  # a cut after the closing brace leaves the whole object
    err = read_back(Path(shutil.copytree(valid[0], tmp_path / "m", dirs_exist_ok=True)), text[:int(cut * end)])
    assert err is not None and OUTCOMES in str(err) and "--mm-save-baseline" in str(err)


def test_the_valid_baseline_reads_and_gates_pass(valid):
    loaded = Baseline.load(valid[0], "m")
    assert json.loads((valid[0] / OUTCOMES).read_text())["format"] == baseline_store.FORMAT
    assert gates.cosine_gate("image_cosine", loaded.array("image/d"), torch.ones(4, 3), TOL, "p").outcome == PASS
    assert gates.kl_gate("first_token_kl", loaded.array("first_token_logprobs/q"), torch.zeros(2, 5), TOL,
                         ["a", "b"]).outcome == PASS


def test_a_newer_format_is_named(valid, tmp_path):
    data = {**valid[1], "format": baseline_store.FORMAT + 1}
    err = read_back(Path(shutil.copytree(valid[0], tmp_path / "m")), data)
    assert err is not None and "newer than this mmtests reads" in str(err)


@pytest.mark.parametrize("model", sorted(p.name for p in ZOO_BASELINES.iterdir()))
def test_the_zoo_baselines_read_as_format_1(model):
    """Those recorded before the format field existed (no `format`) and those re-recorded since (format 1)."""
    assert json.loads((ZOO_BASELINES / model / OUTCOMES).read_text()).get("format", 1) == 1
    loaded = Baseline.load(ZOO_BASELINES / model, model)
    assert loaded.fingerprint_problem is None and loaded.arrays
    assert not any(isinstance(loaded.array(k), MissingPart) for k in loaded.arrays)


# ------------------------------------------------------------------ a part a gate needs, missing

def zoo_copy(tmp_path: Path, model: str) -> Path:
    return Path(shutil.copytree(ZOO_BASELINES / model, tmp_path / model))


def the_gate(key: str, part):
    """The gate that compares `key` (as the suites build it), on the part the baseline gave."""
    if key.startswith("first_token_logprobs/"):
        return gates.kl_gate("first_token_kl", part, torch.zeros(48, 8), TOL, [f"q{i}" for i in range(48)])
    return gates.cosine_gate(f"{key.split('/')[0]}_cosine", part, torch.ones(64, 8), TOL, key)


def fingerprint_keys(model: str) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(ZOO_BASELINES / model / FINGERPRINT), "pt") as f:
        return sorted(f.keys())  # noqa: SIM118


CASES = [(m, k) for m in sorted(p.name for p in ZOO_BASELINES.iterdir()) for k in fingerprint_keys(m)]


@pytest.mark.parametrize(("model", "key"), CASES, ids=[f"{m}:{k}" for m, k in CASES])
def test_every_fingerprint_gate_is_red_when_its_part_is_missing(tmp_path, model, key):
    """For each gate a zoo baseline feeds: without the fingerprint file, with another model's, and with its key
    removed, the gate is there, red, naming the part and the fix."""
    from safetensors.torch import load_file, save_file

    other = "tiny-llava" if model.startswith("tiny-clip") else "tiny-clip"
    arrays = load_file(str(ZOO_BASELINES / model / FINGERPRINT))
    folder = zoo_copy(tmp_path, model)
    variants = {
        "no file": (lambda: (folder / FINGERPRINT).unlink(), f"has no {FINGERPRINT}"),
        "another model's": (lambda: shutil.copy(ZOO_BASELINES / other / FINGERPRINT, folder),
                            f"recorded from model {other!r}, not from {model!r}"),
        "key removed": (lambda: save_file({k: v for k, v in arrays.items() if k != key}, str(folder / FINGERPRINT),
                                          metadata={"model": model}), f"has no {key!r}"),
    }
    for what, (damage, said) in variants.items():
        damage()
        check = the_gate(key, Baseline.load(folder, model).array(key))
        assert check.outcome == FAIL, what
        assert said in check.explain and "--mm-save-baseline" in check.explain, (what, check.explain)
        shutil.copy(ZOO_BASELINES / model / FINGERPRINT, folder)


def test_a_fingerprint_whose_listed_keys_differ_is_red(tmp_path):
    from safetensors.torch import save_file

    folder = valid_baseline(tmp_path / "m")
    save_file({"image/d": torch.ones(4, 3)}, str(folder / FINGERPRINT),
              metadata={"model": "m", "keys": json.dumps(["image/d", "first_token_logprobs/q"])})
    assert "lists the keys" in Baseline.load(folder, "m").array("image/d").reason


def test_a_comparative_gate_reads_another_entrys_baseline():
    """A candidate entry (an int8 copy) names the reference model's folder: its fingerprint is that model's."""
    loaded = Baseline.load(ZOO_BASELINES / "tiny-clip-hf", "tiny-clip-hf-int8")
    assert loaded.recorded_from == "tiny-clip-hf" and loaded.fingerprint_problem is None


def test_views_of_one_tensor_are_saved_as_one_complete_folder(tmp_path):
    """Issue 15: two datasets sharing images give two views of one embedding tensor."""
    shared = torch.randn(100, 8)
    writer = BaselineWriter()
    writer.add("m", "zero_shot/a/p", {"digest": "x", "predicted": [0], "probability": [0.5], "correct": [True]})
    writer.add_array("m", "image/a", shared[:64])
    writer.add_array("m", "image/b", shared[:64])
    writer.write("m", tmp_path / "m", {})
    loaded = Baseline.load(tmp_path / "m", "m")
    assert torch.equal(loaded.array("image/a"), shared[:64]) and torch.equal(loaded.array("image/b"), shared[:64])


@pytest.mark.integration  # a whole pytest session: tox -e integration, not the default run
def test_saving_baselines_for_the_default_matrix_writes_complete_folders(pytester, tmp_path):
    """Issue 15: shapes-test and shapes-test-colour share their images, so their probe embeddings were views of
    one tensor, safetensors refused them at teardown and outcomes.json was left without its fingerprint. Recorded
    here into a copy of the zoo's tiny-clip folder through a copy of the default matrix."""
    from mmtests import faults

    matrix = faults.apply(faults.Fault("clean", "tiny-clip", "clean"), tmp_path)
    folder = zoo_copy(tmp_path, "tiny-clip")
    text = matrix.read_text().replace(f'"{ZOO_BASELINES / "tiny-clip"}"', f'"{folder}"')
    matrix.write_text(text.replace('split = "test"\n', 'split = "test"\nlimit = 96\n'))  # still one set of images
    (folder / FINGERPRINT).unlink()  # only what this session records
    result = pytester.runpytest_inprocess("--pyargs", "mmtests.suites", f"--mm-config={matrix}", "--mm-model=tiny-clip",
                                          "-k", "matches_baseline and bare", "--mm-save-baseline", "-p",
                                          "no:cacheprovider", f"--mm-records={tmp_path / 'records.jsonl'}")
    assert result.ret == 0, result.stdout.str()[-2000:]
    loaded = Baseline.load(folder, "tiny-clip")
    assert json.loads((folder / OUTCOMES).read_text())["format"] == baseline_store.FORMAT
    for dataset in ("shapes-test", "shapes-test-colour"):
        for key in (f"image/{dataset}", f"classifier/{dataset}/bare"):
            assert isinstance(loaded.array(key), torch.Tensor), loaded.array(key)
    assert torch.equal(loaded.array("image/shapes-test"), loaded.array("image/shapes-test-colour"))
