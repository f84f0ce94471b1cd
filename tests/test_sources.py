"""Dataset sources: local imagefolder and parquet load; a hub dataset not here is unavailable, and an entry that
points at something that does not exist or does not fit (path, split, column) is an EntryError naming it."""

import os

import pytest
from datasets import Value
from PIL import Image

from mmtests.config import DatasetSpec
from mmtests.data.sources import DatasetUnavailable, EntryError, class_names, load_images_and_labels
from mmtests.offline import hub_access


def make_imagefolder(root):
    for cls, colour in (("cat", (200, 0, 0)), ("dog", (0, 0, 200))):
        (root / "test" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), colour).save(root / "test" / cls / f"{i}.png")
    return root


def test_imagefolder_loads_with_class_names_from_folders(tmp_path):
    spec = DatasetSpec("pets", "imagefolder", str(make_imagefolder(tmp_path)), "test", "label")
    ds = load_images_and_labels(spec)
    assert len(ds) == 6 and class_names(spec, ds) == ["cat", "dog"]


def test_parquet_loads_and_limit_keeps_the_first_rows(tmp_path):
    ds = load_images_and_labels(DatasetSpec("p", "imagefolder", str(make_imagefolder(tmp_path)), "test", "label"))
    ds.to_parquet(str(tmp_path / "pets.parquet"))
    spec = DatasetSpec("pq", "parquet", str(tmp_path / "pets.parquet"), "test", "label", limit=4)
    assert len(load_images_and_labels(spec)) == 4


def test_a_missing_column_names_the_columns_there_are(tmp_path):
    spec = DatasetSpec("pets", "imagefolder", str(make_imagefolder(tmp_path)), "test", "species")
    with pytest.raises(EntryError, match=r"no column 'species' \(columns: image, label\); set image_column / label_column "
                                         r"in \[datasets.pets\]"):
        load_images_and_labels(spec)


@pytest.mark.parametrize(("source", "path"), [("parquet", "none.parquet"), ("imagefolder", "no-dir"), ("hf", "./no-dir")])
def test_a_missing_local_path_is_an_entry_error(tmp_path, monkeypatch, source, path):
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / path) if source != "hf" else path
    with pytest.raises(EntryError, match=rf"\[datasets.x\]: {source} path '.*no.*' does not exist; fix 'path' in \[datasets.x\]"):
        load_images_and_labels(DatasetSpec("x", source, path, "test", "label"))


def test_a_hub_dataset_not_in_the_cache_is_unavailable_offline():
    spec = DatasetSpec("x", "hf", "mmtests-nobody/no-such-dataset", "test", "label")
    with pytest.raises(DatasetUnavailable, match="is not available here"), hub_access(online=False):
        load_images_and_labels(spec)
    assert "HF_DATASETS_OFFLINE" not in os.environ  # offline only while mmtests loads


@pytest.mark.parametrize("source", ["imagefolder", "hf"])
def test_a_split_that_does_not_exist_names_the_splits_there_are(tmp_path, source):
    spec = DatasetSpec("pets", source, str(make_imagefolder(tmp_path)), "validation", "label")
    with pytest.raises(EntryError, match=r"\[datasets.pets\]: .* has no split 'validation' \(splits: test\); set 'split'"):
        load_images_and_labels(spec)


def test_a_missing_image_column_is_named(tmp_path):
    spec = DatasetSpec("pets", "imagefolder", str(make_imagefolder(tmp_path)), "test", "label", image_column="img")
    with pytest.raises(EntryError, match=r"dataset 'pets' \(imagefolder '.*', split 'test'\) has no column 'img'"):
        load_images_and_labels(spec)


def test_a_label_column_without_class_names_asks_for_classnames(tmp_path):
    ds = load_images_and_labels(DatasetSpec("p", "imagefolder", str(make_imagefolder(tmp_path)), "test", "label"))
    ds.cast_column("label", Value("int64")).to_parquet(str(tmp_path / "pets.parquet"))
    spec = DatasetSpec("pq", "parquet", str(tmp_path / "pets.parquet"), "test", "label")
    with pytest.raises(EntryError, match=r"label column 'label' has no class names .* 'classnames' in \[datasets.pq\]"):
        class_names(spec, load_images_and_labels(spec))


@pytest.mark.parametrize("content", [b"garbage", b""])
def test_a_parquet_file_that_does_not_read_is_an_entry_error(tmp_path, content):
    (tmp_path / "bad.parquet").write_bytes(content)
    with pytest.raises(EntryError, match=r"\[datasets.pq\]: parquet '.*bad.parquet' \(split 'test'\) cannot be loaded"):
        load_images_and_labels(DatasetSpec("pq", "parquet", str(tmp_path / "bad.parquet"), "test", "label"))


def test_an_empty_parquet_folder_is_an_entry_error(tmp_path):
    with pytest.raises(EntryError, match="holds no [*].parquet files"):
        load_images_and_labels(DatasetSpec("pq", "parquet", str(tmp_path), "test", "label"))
