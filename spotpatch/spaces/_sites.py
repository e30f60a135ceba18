"""Patch sites: the conv and linear layers of a detector, each with its norm layer.

A site is named by the module path of its layer. It also knows its *block* (the inverted-residual
block, extra layer or head level it belongs to) and its *stage* (the detector part at one feature
resolution), the coarser granularities a search may gate at. Discovery works on any torchvision
detection model: shapes and strides are measured with one dummy forward, never hard-coded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual as _IR2
from torchvision.models.mobilenetv3 import InvertedResidual as _IR3
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = ["PatchSite", "HeadTensor", "discover_sites", "NORM_TYPES", "class_head_modules"]

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, FrozenBatchNorm2d)
_BLOCK_TYPES = (_IR2, _IR3, BasicBlock, Bottleneck)
_LAYER_TYPES = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class PatchSite:
    """One patchable layer: a conv or linear layer with its norm layer, if it has one.

    Attributes:
        name: module path of the layer, e.g. ``backbone.features.0.1.block.0.0``.
        layer: ``"conv"`` or ``"linear"``.
        weight_shape: shape of the layer's weight.
        bias: whether the layer has a bias.
        norm: module path of the norm layer that follows it, or ``None``.
        norm_features: channels of that norm (0 without one).
        groups: conv groups (1 for linear layers).
        block: module path of the block the site belongs to.
        stage: detector part at one resolution, e.g. ``backbone.features@s8``.

    Example:
        >>> site = PatchSite("conv", "conv", (16, 1, 3, 3), False, "bn", 16, 16, "b", "s")
        >>> site.depthwise, site.fan_in
        (True, 9)
    """

    name: str
    layer: str
    weight_shape: tuple[int, ...]
    bias: bool
    norm: str | None
    norm_features: int
    groups: int
    block: str
    stage: str

    @property
    def out_features(self) -> int:
        return self.weight_shape[0]

    @property
    def fan_in(self) -> int:
        """Inputs per output of the weight (``in/groups * kh * kw`` for a conv)."""
        return math.prod(self.weight_shape[1:])

    @property
    def depthwise(self) -> bool:
        """A conv with one input channel per group and more than one group."""
        return self.layer == "conv" and self.groups > 1 and self.weight_shape[1] == 1

    def weight_tensors(self) -> dict[str, tuple[int, ...]]:
        """The layer's own tensors (weight and bias) by state-dict name."""
        tensors = {f"{self.name}.weight": self.weight_shape}
        if self.bias:
            tensors[f"{self.name}.bias"] = (self.out_features,)
        return tensors

    def norm_tensors(self) -> dict[str, tuple[int, ...]]:
        """The norm's affine and running statistics by state-dict name (empty without a norm)."""
        if self.norm is None:
            return {}
        shape = (self.norm_features,)
        return {
            f"{self.norm}.{t}": shape for t in ("weight", "bias", "running_mean", "running_var")
        }


@dataclass(frozen=True)
class HeadTensor:
    """A tensor of the task-specific class head: always part of a patch, always stored whole."""

    name: str
    shape: tuple[int, ...]


def class_head_modules(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Module paths of ``model`` that fully match any of the regex ``patterns``."""
    compiled = [re.compile(p) for p in patterns]
    return [n for n, _ in model.named_modules() if n and any(c.fullmatch(n) for c in compiled)]


def _is_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def _ancestors(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _find_norm(parent: nn.Module, child_name: str) -> str | None:
    """The norm layer registered right after ``child_name`` in ``parent`` (torchvision's habit)."""
    names = list(parent._modules)
    index = names.index(child_name)
    if index + 1 < len(names) and isinstance(parent._modules[names[index + 1]], NORM_TYPES):
        return names[index + 1]
    return None


def _block_of(model: nn.Module, modules: dict[str, nn.Module], path: str, unit: str) -> str:
    ancestors = _ancestors(path)

    def parent(anc: str) -> nn.Module:
        return modules[anc.rsplit(".", 1)[0]] if "." in anc else model

    def holds_blocks(module: nn.Module) -> bool:
        return any(isinstance(m, _BLOCK_TYPES) for m in module.modules())

    for anc in reversed(ancestors):
        if isinstance(modules[anc], _BLOCK_TYPES):
            return anc
    # A sibling of blocks (a stem, an expansion layer, a block split in two by a feature tap)
    # is a block of its own.
    for anc in ancestors:
        siblings = parent(anc).children()
        if any(isinstance(m, _BLOCK_TYPES) for m in siblings) and not holds_blocks(modules[anc]):
            return anc
    # The deepest element of a ModuleList: a head level, an extra layer, an FPN level.
    for anc in reversed(ancestors):
        if isinstance(parent(anc), nn.ModuleList) and not holds_blocks(modules[anc]):
            return anc
    return unit


def _stage_of(path: str, stride: int | None) -> str:
    parts = path.split(".")
    part = ".".join(parts[:2]) if len(parts) > 2 else parts[0]
    if parts[0] == "backbone" and stride is not None:
        return f"{part}@s{stride}"
    return part


def _measure_strides(model: nn.Module, layers: Iterable[str], image_size: tuple[int, int]) -> dict:
    """Output stride of each layer from one dummy forward (None for non-spatial outputs)."""
    modules = dict(model.named_modules())
    strides: dict[str, int | None] = {}
    input_hw: list[int] = []
    hooks = []

    def first_input(_module, args):
        if not input_hw and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
            input_hw.extend(args[0].shape[-2:])

    def record(name):
        def hook(_module, _args, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4 and name not in strides:
                strides[name] = output.shape[-2]
            elif name not in strides:
                strides[name] = None

        return hook

    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    hooks.append(first_conv.register_forward_pre_hook(first_input))
    hooks += [modules[n].register_forward_hook(record(n)) for n in layers]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            model([torch.zeros(3, *image_size, device=device)])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    height = input_hw[0] if input_hw else None
    return {
        n: (max(1, round(height / h)) if height and h else None) for n, h in strides.items()
    } | {n: None for n in layers if n not in strides}


def discover_sites(
    model: nn.Module,
    *,
    class_head: Sequence[str] = (),
    image_size: tuple[int, int] = (128, 128),
) -> tuple[tuple[PatchSite, ...], tuple[HeadTensor, ...]]:
    """Find the patch sites and class-head tensors of a torchvision detection model.

    Args:
        model: a detection model (called as ``model([image])`` for the dummy forward).
        class_head: regex patterns of module paths whose tensors depend on the task's classes;
            their tensors form the class head instead of sites.
        image_size: (height, width) of the dummy image.

    Returns:
        The sites in module order, and the class-head tensors.
    """
    modules = dict(model.named_modules())
    heads = class_head_modules(model, class_head)
    head_tensors = tuple(
        HeadTensor(f"{h}.{n}", tuple(t.shape))
        for h in heads
        for n, t in list(modules[h].named_parameters()) + list(modules[h].named_buffers())
    )
    layers = [
        n
        for n, m in modules.items()
        if isinstance(m, _LAYER_TYPES) and not any(_is_under(n, h) for h in heads)
    ]
    found = []
    for name in layers:
        layer = modules[name]
        parent_path, _, child = name.rpartition(".")
        parent = modules[parent_path] if parent_path else model
        norm_child = _find_norm(parent, child)
        norm = f"{parent_path}.{norm_child}" if norm_child and parent_path else norm_child
        # A conv wrapped with its norm (Conv2dNormActivation) forms one unit with it.
        unit = parent_path if norm_child and parent_path else name
        found.append((name, layer, norm, _block_of(model, modules, name, unit)))
    # A stage is a detector part at one resolution: the stride of the site's block output
    # (a squeeze-excitation layer sees a pooled 1x1 map, its block does not).
    strides = _measure_strides(model, sorted({b for *_, b in found}), image_size)
    sites = []
    for name, layer, norm, block in found:
        conv = isinstance(layer, nn.Conv2d)
        sites.append(
            PatchSite(
                name=name,
                layer="conv" if conv else "linear",
                weight_shape=tuple(layer.weight.shape),
                bias=layer.bias is not None,
                norm=norm,
                norm_features=modules[norm].weight.shape[0] if norm else 0,
                groups=layer.groups if conv else 1,
                block=block,
                stage=_stage_of(name, strides.get(block)),
            )
        )
    return tuple(sites), head_tensors
