"""What the bundled benchmark holds: the source classes, the ten target tasks and their styles.

The source set (filled shapes) pretrains the base detector; the target tasks range from near
transfer (a subset of the source classes) to far transfer (stroke-drawn letters, night-time
images, fine-grained notches). A :class:`Style` says how one set's images are drawn. Imports
only the shape names of ``benchmark._shapes``.
"""

from __future__ import annotations

from dataclasses import dataclass

from spotpatch.benchmark._shapes import DIGITS, EDGES, LETTERS

__all__ = ["BENCHMARK_TASKS", "SOURCE_CLASSES", "STYLES", "BenchmarkTask", "Style"]

#: The base's pretraining classes: the filled shapes of the source set, in category-id order.
SOURCE_CLASSES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon",
)  # fmt: skip


@dataclass(frozen=True)
class BenchmarkTask:
    """One target task of the bundled benchmark.

    Attributes:
        name: Kebab-case task name, also its folder name under ``tasks/``.
        transfer: How far the task lies from the source set: ``"near"``, ``"middle"`` or
            ``"far"``.
        classes: Class names in category-id order (ids ``1..K``).
        description: One line saying what the task is.
    """

    name: str
    transfer: str
    classes: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Style:
    """How the images of one set are drawn.

    ``classes`` holds (class name, shape name, palette or None for random colours) per class;
    ``backgrounds`` names backgrounds of ``_backgrounds.BACKGROUNDS``.
    """

    classes: tuple[tuple[str, str, str | None], ...]
    size: tuple[int, int] = (16, 56)  # nominal object diameter in px
    count: tuple[int, int] = (1, 4)  # objects per image, before any is left out for lack of room
    backgrounds: tuple[str, ...] = ("flat", "gradient", "blobs")
    outline: bool = False
    distractors: bool = False
    desaturate: bool = False
    night: bool = False
    min_contrast: float = 90.0  # mean RGB distance between an object and the pixels under it


def _plain(*names: str) -> tuple[tuple[str, str, None], ...]:
    return tuple((n, n, None) for n in names)


_TASK_TABLE: tuple[tuple[str, str, str, Style], ...] = (
    ("shapes-subset", "near", "four of the source shapes, drawn in the source style",
     Style(_plain("circle", "square", "triangle", "star"))),
    ("colored-shapes", "near", "red and blue circles and squares: the class is shape and colour",
     Style(tuple((f"{c}-{s}", s, c) for c in ("red", "blue") for s in ("circle", "square")),
            desaturate=True)),
    ("new-shapes", "middle", "shapes absent from the source set: arrow, heart, crescent, L, T",
     Style(_plain("arrow", "heart", "crescent", "l-shape", "t-shape"), size=(20, 56))),
    ("tiny-crowd", "middle", "three source shapes, tiny (8-16 px) and crowded (5-12 per image)",
     Style(_plain("circle", "square", "triangle"), size=(8, 16), count=(5, 12))),
    ("textured", "middle", "source shapes on stripes, checkerboards, distractor lines and blobs",
     Style(_plain("square", "triangle", "star", "cross"), size=(20, 56),
            backgrounds=("stripes", "checker", "blobs"), distractors=True)),
    ("outlines", "middle", "hollow source shapes drawn with thin 1-3 px strokes",
     Style(_plain("circle", "square", "triangle", "star", "hexagon"), size=(20, 56),
            outline=True, min_contrast=120.0)),
    ("glyphs", "far", "stroke-drawn capital letters with random stroke width, shear and scale",
     Style(_plain(*(f"letter-{k.lower()}" for k in LETTERS)), size=(20, 56))),
    ("digits", "far", "jittered seven-segment digits 2, 3, 4, 5 and 7",
     Style(_plain(*(f"digit-{k}" for k in DIGITS)), size=(24, 56))),
    # Objects start with a high contrast, as darkening and noise take most of it away.
    ("night", "far", "source shapes in dark, noisy, low-contrast and sometimes inverted images",
     Style(_plain("circle", "square", "triangle", "star"), size=(20, 56), night=True,
            min_contrast=150.0)),
    ("fine-grained", "far", "squares that differ only in which edge has a small notch",
     Style(_plain(*(f"notch-{k}" for k in EDGES)), size=(24, 56), count=(1, 3))),
)  # fmt: skip

BENCHMARK_TASKS: tuple[BenchmarkTask, ...] = tuple(
    BenchmarkTask(name, transfer, tuple(c[0] for c in style.classes), desc)
    for name, transfer, desc, style in _TASK_TABLE
)
# Index 0 is the source set and BENCHMARK_TASKS[i] is index i + 1: the index seeds the RNG.
STYLES: tuple[Style, ...] = (Style(_plain(*SOURCE_CLASSES)), *(t[3] for t in _TASK_TABLE))
