"""Dataset sources: local imagefolder and parquet load; what is missing is unavailable, with the reason."""

import pytest
from PIL import Image

from mmtests.config import DatasetSpec
from mmtests.data.sources import DatasetUnavailable, class_names, load_images_and_labels


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
    with pytest.raises(DatasetUnavailable, match=r"no column 'species' \(columns: image, label\)"):
        load_images_and_labels(spec)


def test_a_missing_local_path_is_unavailable(tmp_path):
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        load_images_and_labels(DatasetSpec("x", "parquet", str(tmp_path / "none.parquet"), "test", "label"))


def test_a_hub_dataset_not_in_the_cache_is_unavailable_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    spec = DatasetSpec("x", "hf", "mmtests-nobody/no-such-dataset", "test", "label")
    with pytest.raises(DatasetUnavailable, match="is not available here"):
        load_images_and_labels(spec)
