"""Data behind the report's pictures, stored beside the records by the suites and drawn by the report.

A heatmap set is an `.npz` file: per sample the image (uint8, H x W x 3), the attention map on a coarse canvas
over the original image (each image token's attention spread over the region of the image it covers, so every
model family is drawn alike), the box of the asked-about object and the extent (H, W) the map and box are in
(original pixels), for the model and, where there is one, the control model on the same questions. Sets written
before the extent existed hold the model's crop size instead ("crop": map and box in model pixels).
"""

from __future__ import annotations

import json
from pathlib import Path

FIELDS = ("image", "map", "box", "extent")


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
        def sample(group: str, i: int) -> dict:
            old = f"{group}/{i}/extent" not in data  # an older set: the crop size, in model pixels
            return {key: data[f"{group}/{i}/{'crop' if old and key == 'extent' else key}"] for key in FIELDS}

        groups = {group: [sample(group, i) for i in range(counts[group])] for group in ("model", "control")}
        title = str(data["title"])
    return groups["model"], groups["control"] or None, title
