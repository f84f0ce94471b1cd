"""Data behind the report's pictures, stored beside the records by the suites and drawn by the report.

A heatmap set is an `.npz` file: per sample the image (uint8, H x W x 3), the attention map over its
patches, the box of the asked-about object and the crop size (model pixels), for the model and,
where there is one, the control model on the same questions.
"""

from __future__ import annotations

import json
from pathlib import Path

FIELDS = ("image", "map", "box", "crop")


def save_heatmaps(path: Path, samples: list[dict], control: list[dict] | None, title: str) -> Path:
    """Write the samples (and the control's) to `path` (.npz), with the picture's title."""
    import numpy as np

    arrays = {"title": np.array(title)}
    for group, items in (("model", samples), ("control", control or [])):
        for i, s in enumerate(items):
            for key in FIELDS:
                arrays[f"{group}/{i}/{key}"] = np.asarray(s[key])
    arrays["counts"] = np.array(json.dumps({"model": len(samples), "control": len(control or [])}))
    with open(path, "wb") as f:  # np.savez adds ".npz" to a bare name; the path is taken as given
        np.savez_compressed(f, **arrays)
    return path


def load_heatmaps(path: Path) -> tuple[list[dict], list[dict] | None, str]:
    """The samples, the control's (None when there was no control) and the title saved by `save_heatmaps`."""
    import numpy as np

    with np.load(path) as data:
        counts = json.loads(str(data["counts"]))
        groups = {group: [{key: data[f"{group}/{i}/{key}"] for key in FIELDS} for i in range(counts[group])]
                  for group in ("model", "control")}
        title = str(data["title"])
    return groups["model"], groups["control"] or None, title
