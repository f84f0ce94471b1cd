"""Datasets by source: the built-in shapes world, Hugging Face names, local imagefolder or parquet."""

from __future__ import annotations

from pathlib import Path

from ..config import DatasetSpec
from ..errors import DatasetUnavailable, EntryError  # noqa: F401  (re-exported)


def _load_hf(spec: DatasetSpec):
    from datasets import load_dataset

    if spec.source == "hf":
        return load_dataset(spec.path, split=spec.split)
    if not Path(spec.path).exists():
        raise DatasetUnavailable(f"dataset {spec.name!r}: {spec.source} path {spec.path!r} does not exist")
    if spec.source == "imagefolder":
        return load_dataset("imagefolder", data_dir=spec.path, split=spec.split)
    files = [str(p) for p in sorted(Path(spec.path).glob("*.parquet"))] if Path(spec.path).is_dir() else [spec.path]
    return load_dataset("parquet", data_files={spec.split: files}, split=spec.split)


def load_images_and_labels(spec: DatasetSpec):
    """The split a dataset entry names, checked for its image and label columns."""
    if spec.source == "shapes":
        from .shapes_world import at_sizes, load_split

        ds = at_sizes(load_split(spec.split, spec.size), spec.image_sizes)
    else:
        try:
            ds = _load_hf(spec)
        except (FileNotFoundError, ConnectionError, OSError, ValueError) as err:
            raise DatasetUnavailable(
                f"dataset {spec.name!r} ({spec.source} {spec.path!r}, split {spec.split!r}) is not available here "
                f"({err.__class__.__name__}: {str(err)[:300]}). Download it once where the hub is reachable "
                "(it lands in the HF cache), or point the entry at a local imagefolder or parquet copy."
            ) from err
    missing = [c for c in (spec.image_column, spec.label_column) if c is not None and c not in ds.column_names]
    if missing:
        raise DatasetUnavailable(
            f"dataset {spec.name!r} has no column {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(ds.column_names)}); set image_column / label_column in its entry"
        )
    if spec.limit is not None:
        ds = ds.select(range(min(spec.limit, len(ds))))
    return ds


def class_names(spec: DatasetSpec, ds) -> list[str]:
    """The entry's class names, else the label column's ClassLabel names."""
    if spec.classnames is not None:
        return list(spec.classnames)
    names = getattr(ds.features[spec.label_column], "names", None)
    if not names:
        raise DatasetUnavailable(
            f"dataset {spec.name!r}: label column {spec.label_column!r} has no class names; "
            "list them as 'classnames' in its entry"
        )
    return list(names)
