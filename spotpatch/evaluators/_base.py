"""The base detector: loaded once, frozen, shared by every task's patch.

``load_base`` reads weights from a safetensors file (the shipped ``spotpatch-tiny`` base by
default), a ``torch.load(weights_only=True)`` checkpoint, or torchvision's weights API. A
:class:`Base` makes each task's patched detector without copying or touching its own tensors.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from spotpatch._errors import UserError
from spotpatch.evaluators._detectors import WEIGHTS_DIR, Detector, get_detector
from spotpatch.spaces import (
    AppliedPatch,
    HeadTensor,
    Patch,
    PatchConfig,
    PatchSite,
    PatchSpace,
    apply_patch,
    discover_sites,
    state_sha256,
)

__all__ = ["Base", "load_base", "save_base", "resolve_device"]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` is CUDA where present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}") from None


def _build(detector: Detector, num_classes: int, seed: int) -> nn.Module:
    # The class head's initialization is part of a trial: seed it, leave global RNG alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return detector.build(num_classes)


@dataclass(eq=False)
class Base:
    """A frozen base detector and what a patch may change in it.

    Example:
        >>> base = load_base("spotpatch-tiny")
        >>> space = base.space(num_classes=4, kinds=("bn", "full"))
        >>> model = base.apply(space.preset("bn"), space).model  # shares the base's tensors
    """

    detector: Detector
    model: nn.Module
    num_classes: int
    sha256: str
    classes: tuple[str, ...] | None = None
    source: str = ""
    _sites: tuple[PatchSite, ...] | None = field(default=None, repr=False)
    _heads: dict[int, tuple[HeadTensor, ...]] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.detector.name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def state(self) -> dict[str, Tensor]:
        return self.model.state_dict(keep_vars=True)

    @property
    def sites(self) -> tuple[PatchSite, ...]:
        if self._sites is None:
            self._sites, _ = discover_sites(
                self.model,
                class_head=self.detector.class_head,
                image_size=self.detector.image_size,
            )
        return self._sites

    def head(self, num_classes: int) -> tuple[HeadTensor, ...]:
        """The class-head tensors of a task with ``num_classes`` (background included)."""
        if num_classes not in self._heads:
            skeleton = _build(self.detector, num_classes, 0)
            state = skeleton.state_dict()
            self._heads[num_classes] = tuple(
                HeadTensor(n, tuple(t.shape))
                for n, t in state.items()
                if self.detector.is_class_head(n.rsplit(".", 1)[0])
            )
        return self._heads[num_classes]

    def space(
        self,
        num_classes: int,
        *,
        kinds=("bn", "dw", "lora4", "full"),
        granularity: str = "site",
        dtype: str = "float32",
    ) -> PatchSpace:
        """The patch space of a task with ``num_classes`` classes (background included)."""
        return PatchSpace(
            model=self.name,
            sites=self.sites,
            head=self.head(num_classes),
            kinds=tuple(kinds),
            granularity=granularity,
            dtype=dtype,
        )

    def apply(
        self,
        config: PatchConfig,
        space: PatchSpace,
        *,
        tensors: dict[str, Tensor] | None = None,
        seed: int = 0,
    ) -> AppliedPatch:
        """A task's detector: this base's tensors, shared, plus the patch's own.

        ``seed`` initializes the class head and new patch tensors when ``tensors`` is None.
        """
        num_classes = _infer_num_classes(self.detector, {h.name: h.shape for h in space.head})
        skeleton = _build(self.detector, num_classes, seed).to(self.device)
        generator = torch.Generator().manual_seed(seed)
        return apply_patch(
            skeleton, self.state, space, config, tensors=tensors, generator=generator
        )

    def apply_stored(self, patch: Patch, space: PatchSpace | None = None) -> AppliedPatch:
        """Apply a patch read from disk; refused when it was made for another base."""
        if patch.model != self.name:
            raise UserError(f"patch is for base model {patch.model!r}, not {self.name!r}")
        if patch.base_sha256 != self.sha256:
            raise UserError(
                f"patch was made for another {self.name} base (sha256 {patch.base_sha256[:12]}, "
                f"this base is {self.sha256[:12]})"
            )
        space = space or self.space(len(patch.classes) + 1, dtype=patch.dtype)
        return self.apply(patch.config, space, tensors=dict(patch.tensors))


@functools.cache
def _head_probe(detector: Detector) -> tuple[str, int, int]:
    """The first class-head tensor's name, its first dimension at 2 classes, and how much it
    grows per class (it grows linearly, so two probe builds pin any class count down)."""
    sizes = {}
    for k in (2, 3):
        skeleton = _build(detector, k, 0).state_dict()
        name = next(n for n in skeleton if detector.is_class_head(n.rsplit(".", 1)[0]))
        sizes[k] = skeleton[name].shape[0]
    return name, sizes[2], sizes[3] - sizes[2]


def _infer_num_classes(detector: Detector, shapes: dict[str, tuple[int, ...]]) -> int:
    """Classes (background included) of a class head, from its tensors' shapes."""
    name, at_two, slope = _head_probe(detector)
    if name not in shapes:
        raise UserError(f"checkpoint has no class head tensor {name!r} for {detector.name}")
    count, rem = divmod(shapes[name][0] - at_two, slope)
    if rem or count + 2 < 2:
        raise UserError(f"checkpoint's class head does not fit {detector.name}")
    return count + 2


def _read_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        except (SafetensorError, OSError) as e:
            raise UserError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad or unsafe file
        raise UserError(f"{path}: not a loadable weights-only checkpoint ({e})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"{path}: not a state dict of tensors")
    return state, {}


def _torchvision_state(detector: Detector) -> tuple[dict[str, Tensor], str]:
    import os

    from torchvision.models import detection

    weights = getattr(detection, detector.torchvision_weights).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.is_file():
        # Downloading is torchvision's job and the user's call: say exactly what to fetch.
        raise UserError(
            f"no local weights for {detector.name}: download {weights.url} to {cached} "
            f"or set [base] checkpoint"
        )
    return torch.load(cached, map_location="cpu", weights_only=True), str(cached)


def load_base(
    model: str = "spotpatch-tiny",
    checkpoint: str | Path | None = None,
    *,
    device: str = "auto",
    random_init: bool = False,
    seed: int = 0,
) -> Base:
    """Load a base detector, frozen, in eval mode.

    Args:
        model: detector family name (``spotpatch-tiny``, ``torchvision:<builder>``).
        checkpoint: weights file (``.safetensors``, or a ``.pth`` read with
            ``weights_only=True``); default: the family's default weights.
        device: ``auto``, ``cpu``, ``cuda``...
        random_init: a randomly initialized base instead (a baseline to compare against).
        seed: seeds the random initialization.
    """
    detector = get_detector(model)
    meta: dict[str, str] = {}
    if random_init:
        num_classes = 2
        net = _build(detector, num_classes, seed)
        source = f"random init (seed {seed})"
    else:
        if checkpoint is None and detector.default_weights == "torchvision":
            state, source = _torchvision_state(detector)
        else:
            path = Path(checkpoint) if checkpoint else WEIGHTS_DIR / str(detector.default_weights)
            if checkpoint is None and not path.is_file():
                raise UserError(f"no shipped base for {model}: pretrain one (spotpatch pretrain)")
            state, meta = _read_checkpoint(path)
            source = str(path)
        if meta.get("model", model) != model:
            raise UserError(f"checkpoint {source} is a {meta['model']} base, not {model}")
        num_classes = _infer_num_classes(detector, {k: tuple(v.shape) for k, v in state.items()})
        net = _build(detector, num_classes, 0)
        result = net.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
            raise UserError(f"checkpoint {source} does not fit {model}: {what}")
    net = net.to(resolve_device(device)).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    classes = tuple(json.loads(meta["classes"])) if "classes" in meta else None
    return Base(
        detector=detector,
        model=net,
        num_classes=num_classes,
        sha256=state_sha256(net.state_dict()),
        classes=classes,
        source=source,
    )


def save_base(model: nn.Module, detector: str, out: str | Path, **meta: object) -> str:
    """Write a base checkpoint as safetensors with its model name and metadata; returns sha256."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    text = {"model": detector} | {k: json.dumps(v) for k, v in meta.items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(state, str(tmp), metadata=text)
    tmp.replace(out)
    return state_sha256(state)
