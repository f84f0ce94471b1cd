"""Data shape: what the checks ask of a dataset against what it has (mmtests/data/shape.py). More asked for than
there is (a dataset's `limit`, a question set's `images`, a stability check's `single_sample`, an attention check's
`samples`) uses all there is and says so with both counts; a class list of fewer than two classes, an empty name or
a name twice is one EntryError naming them (a single-class imagefolder too), never a figure that means nothing."""

import io
import warnings
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Image as ImageFeature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mmtests.config import DatasetSpec, load_matrix
from mmtests.data.shape import at_most, check_class_names, check_question_rows
from mmtests.data.sources import labels_and_class_names, load_checked
from mmtests.errors import DataWarning, EntryError
from mmtests.session.memo import Memo
from mmtests.session.vlms import VLMCache

COUNTS = st.integers(0, 5000)


@given(asked=st.none() | st.integers(1, 5000), available=COUNTS)
def test_more_asked_than_there_is_uses_all_there_is_and_says_so(asked, available):
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        used = at_most(asked, available, "[question_sets.q]", "images", "images")
    assert used == (available if asked is None else min(asked, available))
    assert len(said) == (asked is not None and asked > available)
    if said:
        text = str(said[0].message)
        assert said[0].category is DataWarning and f"images = {asked}" in text and f"({available})" in text
        assert "[question_sets.q]" in text


NAMES = st.lists(st.sampled_from(["cat", "Cat", "dog", " dog", "bird", "", " ", "red fox", "red  fox"]), max_size=6)


def _norm(n: str) -> str:
    return " ".join(n.split()).casefold()


@given(names=NAMES)
def test_class_lists_of_one_class_empty_or_repeated_names_are_named(names):
    bad = len(names) < 2 or any(not n.strip() for n in names) or len({_norm(n) for n in names}) < len(names)
    if not bad:
        check_class_names(names, "dataset 'd'", "[datasets.d]")
        return
    with pytest.raises(EntryError) as err:
        check_class_names(names, "dataset 'd'", "[datasets.d]")
    text = str(err.value)
    assert "dataset 'd'" in text and "[datasets.d]" in text
    if len(names) < 2:
        assert "always right" in text
    elif any(not n.strip() for n in names):
        assert "empty" in text
    else:
        assert "more than once" in text


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, "PNG")
    return buf.getvalue()


def parquet(path: Path, rows: int, names: list[str] | None) -> Path:
    """`rows` images with a ClassLabel of `names`, or integer labels 0/1 when None."""
    images = [{"bytes": png((20 * i % 255, 0, 0)), "path": f"{i}.png"} for i in range(rows)]
    label = ClassLabel(names=names) if names else Value("int64")
    Dataset.from_dict({"image": images, "label": [i % len(names or "ab") for i in range(rows)]},
                      features=Features({"image": ImageFeature(), "label": label})).to_parquet(str(path))
    return path


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 6), limit=st.integers(1, 9))
def test_a_dataset_limit_beyond_its_rows_is_a_data_warning_with_the_counts(tmp_path, rows, limit):
    spec = DatasetSpec("pq", "parquet", str(parquet(tmp_path / f"{rows}.parquet", rows, ["a", "b"])), "test", "label",
                       limit=limit)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        loaded = load_checked(spec)
    assert len(loaded.dataset) == min(rows, limit)
    shape = [w for w in said if w.category is DataWarning]
    assert len(shape) == (limit > rows)
    if shape:
        assert f"limit = {limit}" in str(shape[0].message) and f"({rows})" in str(shape[0].message)


UNUSABLE = [["cat"], ["cat", "cat"], ["cat", ""], ["cat", "dog", "Cat"]]
# A ClassLabel holds each name once (datasets refuses duplicates): repeated names come from 'classnames'.
CLASS_LISTS = [(n, "classnames") for n in UNUSABLE] + [(n, "ClassLabel") for n in UNUSABLE if len(set(n)) == len(n)]


@pytest.mark.parametrize(("names", "source"), CLASS_LISTS)
def test_a_label_column_whose_class_list_is_unusable_is_named(tmp_path, names, source):
    path = parquet(tmp_path / "p.parquet", 4, names if source == "ClassLabel" else None)
    spec = DatasetSpec("pq", "parquet", str(path), "test", "label",
                       classnames=tuple(names) if source == "classnames" else None)
    with pytest.raises(EntryError, match=r"dataset 'pq' .*(always right|more than once|empty)"):
        labels_and_class_names(spec, load_checked(spec).dataset)


def test_a_single_class_imagefolder_is_told_it_has_one_class(tmp_path):
    """Issue: it was told to set label_column (datasets infers no label from a single folder)."""
    (tmp_path / "test" / "cat").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "test" / "cat" / f"{i}.png").write_bytes(png((200, 10 * i, 0)))
    spec = DatasetSpec("cats", "imagefolder", str(tmp_path), "test", "label")
    with pytest.raises(EntryError, match=r"\[datasets.cats\]: imagefolder .* has 1 class \('cat'\): zero-shot "
                                         r"classification among one class is always right"):
        load_checked(spec)


MATRIX = """
[models.vlm]
backend = "llava"
model = "{zoo}/tiny-llava"
[datasets.scenes]
source = "parquet"
path = "{data}"
[question_sets.qa]
dataset = "scenes"
questions = "columns"
kind = "vqa"
images = {images}
[[stability]]
question_set = "qa"
single_sample = {single}
"""


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 5), images=st.integers(1, 8), single=st.integers(1, 8))
def test_question_set_images_and_stability_samples_beyond_what_there_is(tmp_path, monkeypatch, rows, images, single):
    data = tmp_path / f"{rows}.parquet"
    Dataset.from_dict({"image": [{"bytes": png((i, 0, 0)), "path": None} for i in range(rows)],
                       "question": [f"q{i}?" for i in range(rows)], "answer": ["yes"] * rows},
                      features=Features({"image": ImageFeature(), "question": Value("string"),
                                         "answer": Value("string")})).to_parquet(str(data))
    zoo = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"
    (tmp_path / "m.toml").write_text(MATRIX.format(zoo=zoo, data=data, images=images, single=single))
    matrix = load_matrix(str(tmp_path / "m.toml"))
    vlms = VLMCache(matrix, torch.device("cpu"), 4, False, Memo(), dataset=lambda spec: load_checked(spec).dataset)
    monkeypatch.setattr(vlms, "_generate", lambda model, qset, items, batch: list(items))  # no model needed
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        questions = vlms.questions("qa")
        idx, _ = vlms.rerun("vlm", "qa", single, 1)
    asked = min(images, rows)
    assert len(questions) == asked and len(idx) == min(single, asked)
    texts = [str(w.message) for w in said if w.category is DataWarning]
    assert any(f"images = {images}" in t and f"({rows})" in t for t in texts) == (images > rows)
    assert any(f"single_sample = {single}" in t and f"({asked})" in t for t in texts) == (single > asked)


GOOD_TEXT = st.text(min_size=1).filter(str.strip) | st.integers()
BAD_TEXT = st.none() | st.just("") | st.just("  ") | st.booleans() | st.just(float("nan")) | st.lists(st.text())
BOX = st.tuples(*[st.integers(0, 100)] * 4).filter(lambda b: b[0] < b[2] and b[1] < b[3]).map(list)
BAD_BOX = st.none() | st.lists(st.integers(0, 100), max_size=3) | st.tuples(*[st.integers(0, 100)] * 4).filter(
    lambda b: not (b[0] < b[2] and b[1] < b[3])).map(list) | st.just([0, 0, float("inf"), 5]) | st.just("0,0,5,5")


@given(rows=st.lists(st.tuples(GOOD_TEXT | BAD_TEXT, GOOD_TEXT | BAD_TEXT, BOX | BAD_BOX), min_size=1, max_size=12),
       boxed=st.booleans())
def test_question_rows_without_a_question_an_answer_or_a_box_are_named(rows, boxed):
    """A row scored against "None", or a box that is not one, would be a silently wrong figure: named instead."""
    questions, answers, boxes = (list(column) for column in zip(*rows, strict=True))
    def bad_text(v):
        return isinstance(v, bool) or not isinstance(v, (str, int, float)) or not str(v).strip() or v != v
    def bad_box(b):
        return not (isinstance(b, list) and len(b) == 4 and all(isinstance(v, int) for v in b)
                    and b[0] < b[2] and b[1] < b[3])
    bad = [i for i, (q, a, b) in enumerate(rows) if bad_text(q) or bad_text(a) or boxed and bad_box(b)]
    if not bad:
        check_question_rows(questions, answers, boxes if boxed else None, "question set 'q'", "[question_sets.q]")
        return
    with pytest.raises(EntryError, match=rf"question set 'q': {len(bad)} of {len(rows)} rows cannot be asked and "
                                         rf"scored \(row {bad[0]}: .*\[question_sets.q\]"):
        check_question_rows(questions, answers, boxes if boxed else None, "question set 'q'", "[question_sets.q]")


def test_a_question_set_with_an_unanswered_row_is_named_through_the_cache(tmp_path):
    """End to end: a null answer in the dataset (an unlabelled row) is not scored against the text 'None'."""
    data = tmp_path / "qa.parquet"
    Dataset.from_dict({"image": [{"bytes": png((i, 0, 0)), "path": None} for i in range(3)],
                       "question": ["q0?", "q1?", "q2?"], "answer": ["yes", None, "no"]},
                      features=Features({"image": ImageFeature(), "question": Value("string"),
                                         "answer": Value("string")})).to_parquet(str(data))
    zoo = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"
    (tmp_path / "m.toml").write_text(MATRIX.format(zoo=zoo, data=data, images=3, single=1))
    vlms = VLMCache(load_matrix(str(tmp_path / "m.toml")), torch.device("cpu"), 4, False, Memo(),
                    dataset=lambda spec: load_checked(spec).dataset)
    with pytest.raises(EntryError, match=r"question set 'qa' \(dataset 'scenes'\): 1 of 3 rows cannot be asked and "
                                         r"scored \(row 1: answer None\)"):
        vlms.questions("qa")
