"""Prefix caching: a task's frozen activations, computed once and reused by its trials.

A patch config's shared layers are frozen and their norms stay in eval mode, so every layer
before its first patched site computes the same activations for the same image in every step of
every trial. For SSD-style detectors (``Detector.cached_prefix``: a backbone that runs the
children of each ``backbone.features.N`` in turn, then its extra layers, and hands the output of
each ``features.N`` and each extra layer to the heads) those activations are cached at *cut
points*: before each child of a ``backbone.features.N`` (the first of all excepted: that would
only cache the input), before each extra layer, and at the backbone's outputs. A trial runs from
the last cut point at or before its first patched tensor; the rest is the model's own modules.

Exactness: a cut's cache holds, for each image, what the uncached forward computes there (the
model's transform, then the frozen blocks; the same batch size as scoring), and for training
also the transformed targets and their anchor matches. With flips it holds the flipped images'
activations as well (flipping an activation is not the activation of the flipped image); the
trainer draws batches and flips exactly as without a cache and picks the rows it drew.

Memory: one store per process holds every cache within a cap (``TrainSettings.prefix_cache``);
a cut whose cache would take the store over it is computed as before, with one log line. Caches
are keyed by the split (held weakly: they go when the task goes), the base's name, weights and
device, the cut and whether flipped images are held.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spotpatch._errors import UserError
from spotpatch._format import size_text
from spotpatch.evaluators._coco import CocoSplit, sample
from spotpatch.spaces import parse_bytes

__all__ = [
    "AUTO_SHARE",
    "CacheRequest",
    "PrefixCache",
    "cache_size_problem",
    "prefix_cache_bytes",
    "clear_prefix_caches",
    "cut_point",
    "cut_points",
    "parse_cache_size",
    "prefix_caches",
]

log = logging.getLogger("spotpatch")

#: ``prefix_cache = "auto"``: this share of the memory available on the device (the GPU's free
#: memory, else the machine's available RAM) when the process first caches there.
AUTO_SHARE = 0.25
#: Images per forward while a cache is built: the batch size of scoring.
BUILD_BATCH = 32


def parse_cache_size(text: str) -> int | None:
    """Bytes of a size (``512MiB``, ``2GB``, ``1000000``; ``off`` is 0), None for ``auto``.

    Example:
        >>> parse_cache_size("1.5KiB"), parse_cache_size("off"), parse_cache_size("auto")
        (1536, 0, None)
    """
    if text == "auto":
        return None
    if text == "off":
        return 0
    return parse_bytes(text)


def cache_size_problem(text: object) -> str | None:
    """What is wrong with a ``prefix_cache`` value, or None."""
    try:
        parse_cache_size(str(text))
    except UserError:
        return "must be auto, off or a size such as 512MiB"
    return None


def _available(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


# -- cut points ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Step:
    """One module the backbone runs; ``tap``: its output goes to the heads."""

    path: str
    module: nn.Module
    tap: bool


def _steps(model: nn.Module) -> list[_Step]:
    """What an SSD-style backbone runs, in order (its ``forward`` does exactly this)."""
    steps = []
    for i, stage in enumerate(model.backbone.features):
        children = list(stage.named_children()) if isinstance(stage, nn.Sequential) else []
        if not children:
            steps.append(_Step(f"backbone.features.{i}", stage, True))
        for j, (name, child) in enumerate(children):
            steps.append(_Step(f"backbone.features.{i}.{name}", child, j == len(children) - 1))
    for k, block in enumerate(model.backbone.extra):
        steps.append(_Step(f"backbone.extra.{k}", block, True))
    return steps


def _under(name: str, path: str) -> bool:
    return name.startswith(path + ".")


def cut_points(model: nn.Module) -> tuple[str, ...]:
    """The cut points of an SSD-style detector, by the module a trial starts from there
    (``backbone outputs`` for the last)."""
    return tuple(s.path for s in _steps(model)[1:]) + ("backbone outputs",)


def cut_point(model: nn.Module, patched: Sequence[str]) -> int | None:
    """The cut a model with these patched tensors (state-dict names) runs from: the index of
    the step with its first patched tensor (the number of steps: none in the backbone); None
    when nothing before it can be cached."""
    steps = _steps(model)
    first = len(steps)
    for name in patched:
        if not _under(name, "backbone"):
            continue
        owner = next((c for c, s in enumerate(steps) if _under(name, s.path)), 0)
        first = min(first, owner)
    return first or None


def _run(steps: Sequence[_Step], taps: list[Tensor], x: Tensor) -> tuple[list[Tensor], Tensor]:
    """Run steps on ``x``: the feature maps so far (``taps``, extended) and the last output."""
    for step in steps:
        x = step.module(x)
        if step.tap:
            taps.append(x)
    return taps, x


# -- one cache -----------------------------------------------------------------------------------
def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


@dataclass(eq=False)
class PrefixCache:
    """One split's activations at one cut point, for every image (and its flip, with flips).

    Row ``i`` holds image ``i``; with flips, row ``len(split) + i`` holds it flipped.
    ``losses`` and ``detect`` give what the model's own forward gives for those images.
    """

    cut: int
    name: str
    images: int
    flips: bool
    taps: tuple[Tensor, ...]
    x: Tensor | None  # None: the last tap
    image_size: tuple[int, int]
    original_sizes: tuple[tuple[int, int], ...]
    anchors: Tensor
    targets: tuple[dict[str, Tensor], ...] | None = None
    matched: Tensor | None = None

    @property
    def nbytes(self) -> int:
        tensors = [*self.taps, *([self.x] if self.x is not None else []), self.anchors]
        if self.matched is not None:
            tensors.append(self.matched)
        for target in self.targets or ():
            tensors += target.values()
        return sum(_nbytes(t) for t in tensors)

    def _features(self, model: nn.Module, rows: Sequence[int]) -> list[Tensor]:
        index = torch.tensor(rows, device=self.taps[0].device if self.taps else self.x.device)
        taps = [t.index_select(0, index) for t in self.taps]
        x = taps[-1] if self.x is None else self.x.index_select(0, index)
        return _run(_steps(model)[self.cut :], taps, x)[0]

    def _anchors(self, count: int) -> list[Tensor]:
        # The default boxes depend only on the input and feature-map sizes: every image's are
        # the same, and the same in every batch.
        return [self.anchors] * count

    def losses(self, model: nn.Module, idx: Sequence[int], flips: Sequence[bool]):
        """The training losses of a batch: ``model(images, targets)`` for these images."""
        if self.targets is None or self.matched is None:
            raise ValueError("this cache holds no training targets")
        rows = [i + self.images * bool(f) for i, f in zip(idx, flips, strict=True)]
        if not self.flips and any(flips):
            raise ValueError("this cache holds no flipped images")
        features = self._features(model, rows)
        head_outputs = model.head(features)
        anchors = self._anchors(len(rows))
        targets = [self.targets[r] for r in rows]
        matched = [self.matched[r].long() for r in rows]
        return model.compute_loss(targets, head_outputs, anchors, matched)

    def detect(self, model: nn.Module, idx: Sequence[int]) -> list[dict[str, Tensor]]:
        """Detections of images (model in eval mode): ``model(images)`` for these images."""
        rows = list(idx)
        features = self._features(model, rows)
        head_outputs = model.head(features)
        anchors = self._anchors(len(rows))
        sizes = [self.image_size] * len(rows)
        detections = model.postprocess_detections(head_outputs, anchors, sizes)
        originals = [self.original_sizes[r] for r in rows]
        return model.transform.postprocess(detections, sizes, originals)


def _inputs(model: nn.Module, split: CocoSplit, rows: Sequence[int], device, train: bool):
    """The transformed images and targets of cache rows (row n + i: image i flipped)."""
    n = len(split)
    pairs = [sample(split, r % n, device, r >= n) for r in rows]
    return model.transform([p[0] for p in pairs], [p[1] for p in pairs] if train else None)


@torch.no_grad()
def _plan(model: nn.Module, split: CocoSplit, cut: int, flips: bool, train: bool, device):
    """(bytes the cache will take, the anchors of one image, the image size after the
    transform) from one image run through the whole detector."""
    steps = _steps(model)
    images, _ = _inputs(model, split, [0], device, False)
    taps, x = _run(steps[:cut], [], images.tensors)
    kept = [*taps, *([] if steps[cut - 1].tap else [x])]
    per_row = sum(_nbytes(t) for t in kept)
    features, _ = _run(steps[cut:], list(taps), x)
    image_size = tuple(images.image_sizes[0])
    anchors = model.anchor_generator(images, features)[0]
    rows = len(split) * (2 if flips else 1)
    total = rows * per_row + _nbytes(anchors)
    if train:
        per_target = split.boxes[0].element_size() * 4 + split.labels[0].element_size()
        boxes = sum(len(b) for b in split.boxes) * (2 if flips else 1)
        total += rows * len(anchors) * 4 + boxes * per_target
    return total, anchors, image_size


@torch.no_grad()
def _build(
    model: nn.Module, split: CocoSplit, cut: int, flips: bool, train: bool, anchors, image_size
) -> PrefixCache:
    from torchvision.ops import boxes as box_ops

    steps = _steps(model)
    device = anchors.device
    count = len(split) * (2 if flips else 1)
    taps: list[Tensor] = []
    x_rows: Tensor | None = None
    keep_x = not steps[cut - 1].tap
    targets: list[dict[str, Tensor]] = []
    matched = torch.empty(count if train else 0, len(anchors), dtype=torch.int32, device=device)
    for start in range(0, count, BUILD_BATCH):
        rows = range(start, min(start + BUILD_BATCH, count))
        images, batch_targets = _inputs(model, split, rows, device, train)
        out, x = _run(steps[:cut], [], images.tensors)
        if start == 0:  # allocated once: a growing list and a final cat would need twice as much
            taps = [t.new_empty((count, *t.shape[1:])) for t in out]
            x_rows = x.new_empty((count, *x.shape[1:])) if keep_x else None
        for whole, part in zip(taps, out, strict=True):
            whole[start : start + len(rows)] = part
        if x_rows is not None:
            x_rows[start : start + len(rows)] = x
        for r, target in zip(rows, batch_targets or (), strict=False):
            boxes = target["boxes"]
            if boxes.numel() == 0:  # as SSD's forward matches an image without boxes
                matched[r] = -1
            else:
                matched[r] = model.proposal_matcher(box_ops.box_iou(boxes, anchors)).int()
            targets.append({"boxes": boxes, "labels": target["labels"]})
    n = len(split)
    return PrefixCache(
        cut=cut,
        name=cut_points(model)[cut - 1],
        images=n,
        flips=flips,
        taps=tuple(taps),
        x=x_rows,
        image_size=image_size,
        original_sizes=tuple(tuple(split.images[r % n].shape[-2:]) for r in range(count)),
        anchors=anchors,
        targets=tuple(targets) if train else None,
        matched=matched if train else None,
    )


# -- the store -----------------------------------------------------------------------------------
class _Store:
    """Every cache of this process, by split (weakly), then by base, cut and flips."""

    def __init__(self) -> None:
        self.caches: weakref.WeakKeyDictionary[CocoSplit, dict] = weakref.WeakKeyDictionary()
        self.refused: weakref.WeakKeyDictionary[CocoSplit, set] = weakref.WeakKeyDictionary()
        self.auto: dict[str, int] = {}

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for caches in self.caches.values() for c in caches.values())

    def cap(self, setting: str, device: torch.device) -> int:
        size = parse_cache_size(setting)
        if size is not None:
            return size
        if str(device) not in self.auto:
            self.auto[str(device)] = int(AUTO_SHARE * (_available(device) + self.nbytes))
        return self.auto[str(device)]


_STORE = _Store()


def prefix_cache_bytes() -> int:
    """Bytes every prefix cache of this process holds."""
    return _STORE.nbytes


def clear_prefix_caches() -> None:
    """Drop every prefix cache of this process (and what ``auto`` measured)."""
    _STORE.__init__()


@dataclass(frozen=True)
class CacheRequest:
    """A split to cache at a cut.

    Attributes:
        split: the images (and, with ``train``, the targets) to cache.
        what: names it in log lines (``glyphs train``).
        flips: hold each image flipped too.
        train: hold the transformed targets and their anchor matches too.
    """

    split: CocoSplit
    what: str
    flips: bool = False
    train: bool = False


def prefix_caches(
    model: nn.Module,
    cut: int,
    requests: Sequence[CacheRequest],
    *,
    base: tuple[str, str],
    cap: str,
) -> list[PrefixCache | None]:
    """The caches of splits at a cut point: found, else built within the cap, else None.

    A cut whose caches do not all fit says so in one log line (once per process).

    Args:
        model: a patched detector whose modules before ``cut`` are the base's, frozen.
        cut: from :func:`cut_point`.
        requests: the splits, in the order to build them (what fits first is built).
        base: the base's name and weights' sha256.
        cap: ``TrainSettings.prefix_cache``.
    """
    device = next(model.parameters()).device
    limit = _STORE.cap(cap, device)
    if limit == 0:
        return [None] * len(requests)
    name = cut_points(model)[cut - 1]
    found: list[PrefixCache | None] = []
    over: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for r in requests:
            key = (*base, str(device), cut, r.flips, r.train)
            caches = _STORE.caches.setdefault(r.split, {})
            refused = _STORE.refused.setdefault(r.split, set())
            if key in caches or (key, limit) in refused:
                found.append(caches.get(key))
                continue
            need, anchors, image_size = _plan(model, r.split, cut, r.flips, r.train, device)
            if _STORE.nbytes + need > limit:
                refused.add((key, limit))
                over.append(f"{r.what} ({size_text(need)})")
                found.append(None)
                continue
            cache = _build(model, r.split, cut, r.flips, r.train, anchors, image_size)
            if cache.nbytes > need:
                raise RuntimeError(f"prefix cache took {cache.nbytes} bytes, planned {need}")
            caches[key] = cache
            log.info("prefix cache of %s at %s: %s", r.what, name, size_text(cache.nbytes))
            found.append(cache)
    finally:
        model.train(was_training)
    if over:
        log.warning(
            "prefix cache at %s: %s over the cap of %s (%s held): computed as before",
            name,
            ", ".join(over),
            size_text(limit),
            size_text(_STORE.nbytes),
        )
    return found
