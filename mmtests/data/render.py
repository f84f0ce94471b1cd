"""The shapes world rendered: deterministic procedural scenes with ground truth, as a `datasets.Dataset` split.

Each image holds one big *main* object (the thing every task asks about) and zero to two small
distractors of other shapes. Captions always say which object is big and which is small, so a
bare class word ("star") is ambiguous between the main object and a distractor, while a prompt
such as "a photo of a big {}." names the main object: the same reason prompts help real CLIP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from .facts import COLOURS, IMAGE_SIZE, OBJECTS, POSITIONS, SHAPES, SPLIT_SEEDS

if TYPE_CHECKING:
    from datasets import Dataset

RGB = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 220, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
}
# One held-out combination per colour, spread over the shapes, never shown in training.
HELDOUT_COMBOS = frozenset((c, SHAPES[i % len(SHAPES)]) for i, c in enumerate(COLOURS))
# Bump when rendered pixels or captions change: it names the on-disk cache, and a test pins a
# digest of sample scenes to it, so a stale cache can never be mistaken for the current world.
WORLD_VERSION = 1
_SUPERSAMPLE = 4
MAIN_RADIUS = (16.0, 24.0)
DISTRACTOR_RADIUS = (7.0, 10.0)


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    colour: str
    cx: float
    cy: float
    radius: float
    angle: float


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Outline of a polygonal shape, rotated by `angle` radians."""
    if shape == "square":
        pts = [(r * math.cos(a), r * math.sin(a)) for a in np.arange(4) * math.pi / 2 + math.pi / 4]
    elif shape == "triangle":
        pts = [(r * math.cos(a), r * math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3 - math.pi / 2]
    elif shape == "star":
        pts = [
            ((r if k % 2 == 0 else 0.45 * r) * math.cos(a), (r if k % 2 == 0 else 0.45 * r) * math.sin(a))
            for k, a in enumerate(np.arange(10) * math.pi / 5 - math.pi / 2)
        ]
    elif shape == "cross":
        w = 0.33 * r
        pts = [(w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r),
               (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w), (-w, -r)]
    else:
        raise ValueError(f"shape {shape!r} is not a polygon")
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]


def _mask(obj: ShapeObject) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one object on the image grid (drawn 4x, box-filtered)."""
    big = IMAGE_SIZE * _SUPERSAMPLE
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    s = _SUPERSAMPLE
    cx, cy, r = obj.cx * s, obj.cy * s, obj.radius * s
    if obj.shape in ("circle", "ring"):
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        if obj.shape == "ring":
            inner = 0.55 * r
            draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    else:
        draw.polygon(_polygon(obj.shape, cx, cy, r, obj.angle), fill=255)
    small = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _background(rng: np.random.Generator) -> np.ndarray:
    """A calm grey texture: a tilted gradient plus mild smoothed noise."""
    base = rng.uniform(80, 140)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) / IMAGE_SIZE
    gx, gy = rng.uniform(-20, 20, size=2)
    noise = rng.normal(0, 6, size=(IMAGE_SIZE // 4, IMAGE_SIZE // 4)).astype(np.float32)
    noise = np.kron(noise, np.ones((4, 4), np.float32))
    grey = base + gx * (xx - 0.5) + gy * (yy - 0.5) + noise + rng.normal(0, 3, size=xx.shape)
    return np.repeat(grey[..., None], 3, axis=2)


def position_word(cx: float, cy: float) -> str:
    col = min(2, int(cx / (IMAGE_SIZE / 3)))
    row = min(2, int(cy / (IMAGE_SIZE / 3)))
    return POSITIONS[row][col]


def _combo_ok(colour: str, shape: str, split: str) -> bool:
    held = (colour, shape) in HELDOUT_COMBOS
    return held if split == "heldout" else not held


def _sample_objects(rng: np.random.Generator, split: str) -> list[ShapeObject]:
    while True:
        colour, shape = COLOURS[rng.integers(len(COLOURS))], SHAPES[rng.integers(len(SHAPES))]
        if _combo_ok(colour, shape, split):
            break
    r = rng.uniform(*MAIN_RADIUS)
    main = ShapeObject(shape, colour, rng.uniform(r, IMAGE_SIZE - r), rng.uniform(r, IMAGE_SIZE - r),
                       r, rng.uniform(-0.35, 0.35))
    objects = [main]
    for _ in range(rng.integers(0, 3)):
        for _attempt in range(30):
            d_shape = SHAPES[rng.integers(len(SHAPES))]
            d_colour = COLOURS[rng.integers(len(COLOURS))]
            # Distractors never show a held-out combination, so held-out stays unseen in training.
            if d_shape == shape or (d_colour, d_shape) in HELDOUT_COMBOS:
                continue
            dr = rng.uniform(*DISTRACTOR_RADIUS)
            dx, dy = rng.uniform(dr, IMAGE_SIZE - dr, size=2)
            if all(math.hypot(dx - o.cx, dy - o.cy) > o.radius + dr + 2 for o in objects):
                objects.append(ShapeObject(d_shape, d_colour, dx, dy, dr, rng.uniform(-0.35, 0.35)))
                break
    return objects


def render_scene(seed: int, split: str) -> tuple[np.ndarray, list[ShapeObject], list[list[int]]]:
    """Render one scene; returns (HxWx3 uint8 image, objects (main first), their bounding boxes)."""
    rng = np.random.default_rng([SPLIT_SEEDS[split], seed])
    objects = _sample_objects(rng, split)
    canvas = _background(rng)
    boxes = []
    for obj in objects:
        alpha = _mask(obj)[..., None]
        jitter = rng.integers(-15, 16, size=3)
        colour = np.clip(np.array(RGB[obj.colour]) + jitter, 0, 255).astype(np.float32)
        canvas = canvas * (1 - alpha) + colour * alpha
        ys, xs = np.nonzero(alpha[..., 0] > 0.5)
        boxes.append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1])
    return np.clip(canvas, 0, 255).round().astype(np.uint8), objects, boxes


def captions(objects: list[ShapeObject], rng: np.random.Generator, count: int = 8) -> list[str]:
    """Sentence captions; every mention of an object carries a size word, as people describe scenes."""
    main, distractors = objects[0], objects[1:]

    def pick(options):
        return options[rng.integers(len(options))]

    out = []
    for _ in range(count):
        b, c, s = pick(("big", "large")), main.colour, main.shape
        if distractors and rng.random() < 0.5:
            d, sm = pick(distractors), pick(("small", "little"))
            options = (
                f"a {b} {c} {s} and a {sm} {d.colour} {d.shape}.",
                f"a {sm} {d.colour} {d.shape} next to a {b} {c} {s}.",
                f"a photo of a {sm} {d.colour} {d.shape}.",
                f"a {sm} {d.shape} near a {b} {s}.",
            )
        else:
            options = (
                f"a photo of a {b} {c} {s}.",
                f"a {b} {c} {s}.",
                f"a picture of a {b} {s}.",
                f"a {b} {s}.",
                f"a {b} {c} {s} in the {position_word(main.cx, main.cy)}.",
                f"there is a {b} {c} shape.",
            )
        out.append(pick(options))
    return out


SPLIT_SIZES = {"train": 40000, "test": 2000, "heldout": 1000}


def _features():
    from datasets import ClassLabel, Features, List, Value
    from datasets import Image as ImageFeature

    box = List(Value("int16"), length=4)
    return Features({
        "image": ImageFeature(),
        "shape": ClassLabel(names=list(SHAPES)),
        "colour": ClassLabel(names=list(COLOURS)),
        "object": ClassLabel(names=list(OBJECTS)),
        "bbox": box,
        "position": Value("string"),
        "radius": Value("float32"),
        "distractors": List({"shape": Value("string"), "colour": Value("string"), "bbox": box}),
        "captions": List(Value("string")),
    })


def build_split(split: str, size: int | None = None) -> Dataset:
    """Generate a split as a `datasets.Dataset` (same bytes for the same split and size)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"shapes world has no split {split!r} (known: {', '.join(SPLIT_SEEDS)})")
    from datasets import Dataset
    from tqdm.auto import tqdm

    size = SPLIT_SIZES[split] if size is None else size
    rows: dict[str, list] = {name: [] for name in _features()}
    for i in tqdm(range(size), desc=f"shapes world: {split}", disable=size < 5000):
        image, objects, boxes = render_scene(i, split)
        main = objects[0]
        rows["image"].append(Image.fromarray(image))
        rows["shape"].append(SHAPES.index(main.shape))
        rows["colour"].append(COLOURS.index(main.colour))
        rows["object"].append(OBJECTS.index(f"{main.colour} {main.shape}"))
        rows["bbox"].append(boxes[0])
        rows["position"].append(position_word(main.cx, main.cy))
        rows["radius"].append(main.radius)
        rows["distractors"].append(
            [{"shape": o.shape, "colour": o.colour, "bbox": b} for o, b in zip(objects[1:], boxes[1:], strict=True)]
        )
        rows["captions"].append(captions(objects, np.random.default_rng([SPLIT_SEEDS[split], i, 1])))
    return Dataset.from_dict(rows, features=_features())
