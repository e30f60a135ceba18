"""A bundle on a device: the base graph once, each task's patch applied when its session is made.

``Fleet(DIR).detector(TASK)`` checks the files against ``manifest.json`` (sha256 of the base's
files and of the task's), reads the task's tensors (int8 ones dequantized, low-rank factors
added to the base weight they change), makes an ONNX Runtime session of the base graph with the
patched initializers replaced, and returns a callable that turns images into detections. Needs
numpy, onnxruntime and safetensors only (``pip install 'spotpatch[runtime]'``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spotpatch._errors import UserError
from spotpatch.runtime._detections import detections, scaled_xywh, to_batch

__all__ = ["Fleet", "TaskDetector", "MANIFEST", "BUNDLE_FORMAT", "BUNDLE_VERSION"]

MANIFEST = "manifest.json"
BUNDLE_FORMAT = "spotpatch-bundle"
BUNDLE_VERSION = 1
_SCALE = ".qscale"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror or e})") from None


class Fleet:
    """A bundle folder written by ``spotpatch bundle``.

    Example:
        >>> fleet = Fleet("bundle")  # doctest: +SKIP
        >>> detect = fleet.detector("glyphs")  # doctest: +SKIP
        >>> found = detect([image])[0]  # doctest: +SKIP
        >>> found["boxes"], found["scores"], found["category_ids"]  # doctest: +SKIP
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise UserError(f"not a bundle: {path} not found")
        try:
            manifest = json.loads(_read(path))
            ok = manifest.get("format") == BUNDLE_FORMAT
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise UserError(f"{path} is not a spotpatch bundle manifest")
        if manifest.get("format_version") != BUNDLE_VERSION:
            raise UserError(
                f"{path}: format_version {manifest.get('format_version')} is not supported "
                f"(this spotpatch reads {BUNDLE_VERSION})"
            )
        self.manifest: dict[str, Any] = manifest
        self._base_names: set[str] | None = None

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.manifest["tasks"])

    def _checked(self, entry: Mapping[str, Any], what: str) -> bytes:
        """A file of the bundle, refused when its sha256 is not the manifest's."""
        path = self.folder / entry["file"]
        if not path.is_file():
            raise UserError(f"{what}: {path} not found")
        data = _read(path)
        if (actual := _sha256(data)) != entry["sha256"]:
            raise UserError(
                f"{path} changed after the bundle was written: sha256 {actual[:12]}, "
                f"{MANIFEST} records {entry['sha256'][:12]}"
            )
        return data

    def _base(self) -> set[str]:
        """The names of the base graph's initializers, once both base files are checked."""
        if self._base_names is None:
            from safetensors.numpy import load

            base = self.manifest["base"]
            self._checked(base["graph"], "the base graph")
            self._base_names = set(load(self._checked(base["weights"], "the base weights")))
        return self._base_names

    def _base_weight(self, name: str) -> np.ndarray:
        from safetensors import safe_open

        path = self.folder / self.manifest["base"]["weights"]["file"]
        with safe_open(str(path), framework="np") as f:
            return f.get_tensor(name)

    def detector(self, task: str, *, providers: Sequence[str] | None = None) -> TaskDetector:
        """The task's detector: the base graph with the task's patch, in an ONNX Runtime
        session (CPU unless ``providers`` say otherwise).

        Raises:
            UserError: an unknown task, a file whose sha256 differs from the manifest's, a
                patch made for another base, a patch tensor the base does not have.
        """
        import onnxruntime as ort
        from safetensors import SafetensorError
        from safetensors.numpy import load

        start = time.perf_counter()
        tasks = self.manifest["tasks"]
        if task not in tasks:
            raise UserError(f"no task {task!r} in {self.folder} (tasks: {', '.join(tasks)})")
        entry = tasks[task]
        base = self.manifest["base"]
        if entry["base_sha256"] != base["sha256"]:
            raise UserError(
                f"task {task!r} was patched for another base (sha256 "
                f"{entry['base_sha256'][:12]}, the bundle's base is {base['sha256'][:12]})"
            )
        base_names = self._base()
        try:
            stored = load(self._checked(entry, f"task {task!r}"))
        except SafetensorError as e:
            raise UserError(f"task {task!r}: not a readable safetensors file ({e})") from None
        tensors = _dequantized(stored)
        if entry["dtype"] == "int8":
            _unfolded(tensors, base_names, base["norm_eps"])
        for site, kind in entry["sites"].items():
            if kind.startswith("lora"):
                a, b = tensors.pop(f"{site}.lora_A"), tensors.pop(f"{site}.lora_B")
                weight = self._base_weight(f"{site}.weight")
                tensors[f"{site}.weight"] = weight + (b @ a).reshape(weight.shape)
        head_names = base["inputs"][1:]
        missing = [n for n in head_names if n not in tensors]
        unknown = [n for n in tensors if n not in base_names and n not in head_names]
        if missing or unknown:
            what = f"lacks {missing[0]!r}" if missing else f"has {unknown[0]!r}"
            raise UserError(f"task {task!r}'s patch {what}, which the base graph does not")
        head = {n: np.ascontiguousarray(tensors.pop(n), dtype=np.float32) for n in head_names}
        options = ort.SessionOptions()
        values = [
            ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v, np.float32))
            for v in tensors.values()
        ]
        if values:
            options.add_external_initializers(list(tensors), values)
        session = ort.InferenceSession(
            str(self.folder / base["graph"]["file"]),
            options,
            providers=list(providers or ["CPUExecutionProvider"]),
        )
        return TaskDetector(
            task=task,
            classes=tuple(entry["classes"]),
            category_ids=tuple(entry["category_ids"]),
            session=session,
            head=head,
            keep=values,
            image_size=tuple(base["image_size"]),
            post=self.manifest["postprocess"],
            switch_seconds=time.perf_counter() - start,
        )


def _dequantized(stored: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float32 tensors from a task file: int8 weights times their ``.qscale`` scales (one per
    output channel, or per rank column of a LoRA ``lora_B``: the layout of
    ``spotpatch.spaces``), float16 ones cast."""
    out: dict[str, np.ndarray] = {}
    scales = {f"{n}{_SCALE}" for n, v in stored.items() if v.dtype == np.int8}
    for name, value in stored.items():
        if name in scales:
            continue
        if value.dtype != np.int8:
            out[name] = value.astype(np.float32)
            continue
        scale = stored.get(f"{name}{_SCALE}")
        axes = (1, 0) if name.endswith(".lora_B") else (0,)
        axis = next(
            (a for a in axes if scale is not None and scale.shape == (value.shape[a],)), None
        )
        if axis is None:
            raise UserError(f"int8 tensor {name!r} lacks its scales")
        shape = [1] * value.ndim
        shape[axis] = -1
        out[name] = value.astype(np.float32) * scale.astype(np.float32).reshape(shape)
    return out


def _unfolded(
    tensors: dict[str, np.ndarray], base_names: set[str], eps: Mapping[str, float]
) -> None:
    """Norms an int8 task stores as their affine map (weight and bias, no running statistics)
    get running mean 0 and running variance ``1 - eps``: the same map in the base graph."""
    for name in [n for n in tensors if n.endswith(".weight")]:
        m = name[: -len(".weight")]
        if f"{m}.running_mean" in base_names and f"{m}.running_mean" not in tensors:
            size = tensors[name].shape
            tensors[f"{m}.running_mean"] = np.zeros(size, np.float32)
            tensors[f"{m}.running_var"] = np.full(size, 1.0 - eps[m], np.float32)


class TaskDetector:
    """One task's detector from a bundle: ``detector(images)`` gives, per image, ``boxes``
    (``[x, y, w, h]`` in its pixels), ``scores`` and ``category_ids``, best first.

    Images are ``H x W x 3`` uint8 arrays of any size (RGB). ``switch_seconds`` is how long
    making it took (checking and reading the files, applying the patch, the session).
    """

    def __init__(
        self, *, task, classes, category_ids, session, head, keep, image_size, post, switch_seconds
    ):
        self.task = task
        self.classes = classes
        self.category_ids = category_ids
        self.session = session
        self.image_size = image_size
        self.switch_seconds = switch_seconds
        self._head = head
        self._keep = keep  # the replaced initializers live as long as the session
        self._post = post

    def raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The graph's outputs for an ``(N, 3, H, W)`` float32 batch in [0, 1] at the
        detector's size: box regressions, class logits (background first) and anchors."""
        feeds = {"images": np.ascontiguousarray(batch, dtype=np.float32), **self._head}
        codes, logits, anchors = self.session.run(None, feeds)
        return codes, logits, anchors

    def __call__(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        for image in images:
            if not (
                isinstance(image, np.ndarray)
                and image.ndim == 3
                and image.shape[2] == 3
                and image.dtype == np.uint8
            ):
                raise UserError("images must be H x W x 3 uint8 arrays (RGB)")
        if not images:
            return []
        codes, logits, anchors = self.raw(to_batch(list(images), self.image_size))
        ids = np.asarray(self.category_ids, dtype=np.int64)
        results = []
        for i, image in enumerate(images):
            boxes, scores, labels = detections(
                codes[i], logits[i], anchors[i], self.image_size, self._post
            )
            results.append(
                {
                    "boxes": scaled_xywh(boxes, self.image_size, image.shape[:2]),
                    "scores": scores,
                    "category_ids": ids[labels - 1],
                }
            )
        return results
