"""What the shapes world is made of, as plain constants: its vocabulary, splits and question kinds.

Kept free of numpy and PIL so that reading a matrix file (which checks splits and question kinds
against these) costs nothing at pytest start-up.
"""

from __future__ import annotations

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white")
OBJECTS = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
POSITIONS = (
    ("top left", "top", "top right"),
    ("left", "centre", "right"),
    ("bottom left", "bottom", "bottom right"),
)
SPLIT_SEEDS = {"train": 0, "test": 1, "heldout": 2}
IMAGE_SIZE = 64  # pixels a side of a scene as rendered
KINDS = ("colour", "shape", "position", "size", "count", "describe")  # question kinds of the shapes questions
POPE_KINDS = ("random", "popular", "adversarial")  # POPE's ways of choosing an absent object
