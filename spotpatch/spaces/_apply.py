"""Applying a patch to a base: one task's detector that shares every unpatched tensor.

The caller builds a *skeleton* of the detector for the task's classes (its class head freshly
initialized); :func:`apply_patch` binds every other tensor of it to the base's tensor objects (no
copy, so one base in memory serves any number of patched models) and gives the patched sites
tensors of their own. Only patch tensors train. Shared norm layers are pinned to eval mode, so
the base's running statistics cannot drift: every shared parameter and buffer stays bit-identical.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spotpatch._errors import UserError
from spotpatch.spaces._dtypes import from_stored, to_stored
from spotpatch.spaces._sites import NORM_TYPES
from spotpatch.spaces._space import PatchConfig, PatchSpace

__all__ = ["AppliedPatch", "apply_patch", "norm_eps", "LoRAConv2d", "LoRALinear"]


class LoRAConv2d(nn.Conv2d):
    """A conv whose weight is the base weight plus a low-rank delta ``lora_B @ lora_A``."""

    lora_A: nn.Parameter
    lora_B: nn.Parameter

    def forward(self, x: Tensor) -> Tensor:
        delta = (self.lora_B @ self.lora_A).view_as(self.weight)
        return self._conv_forward(x, self.weight + delta, self.bias)


class LoRALinear(nn.Linear):
    """A linear layer whose weight is the base weight plus ``lora_B @ lora_A``."""

    lora_A: nn.Parameter
    lora_B: nn.Parameter

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight + self.lora_B @ self.lora_A, self.bias)


def _eval_only(self: nn.Module, mode: bool = True) -> nn.Module:
    # A shared norm normalizes with the base's statistics and never updates them.
    return nn.Module.train(self, False)


_SHARED_NORMS: dict[type, type] = {}


def _pin_eval(module: nn.Module) -> None:
    cls = type(module)
    if cls not in _SHARED_NORMS:
        _SHARED_NORMS[cls] = type(f"Shared{cls.__name__}", (cls,), {"train": _eval_only})
    module.__class__ = _SHARED_NORMS[cls]
    module.eval()


def _add_lora(module: nn.Module, rank: int, fan_in: int, generator: torch.Generator | None):
    weight = module.weight
    a = torch.empty(rank, fan_in, dtype=weight.dtype)
    # The initialization nn.Linear uses, so B @ A starts at zero but A carries signal.
    bound = 1.0 / math.sqrt(fan_in)
    a.uniform_(-bound, bound, generator=generator)
    module.__class__ = LoRAConv2d if isinstance(module, nn.Conv2d) else LoRALinear
    module.lora_A = nn.Parameter(a.to(weight.device))
    module.lora_B = nn.Parameter(torch.zeros(weight.shape[0], rank, device=weight.device))


class AppliedPatch:
    """A task's detector: the base's shared tensors plus the patch's own.

    Use :func:`apply_patch` to make one. ``parameters()`` are what trains; ``state()`` is what a
    patch file stores; ``load()`` puts stored values back.
    """

    def __init__(self, model: nn.Module, space: PatchSpace, config: PatchConfig):
        self.model = model
        self.space = space
        self.config = config
        self.expected = space.patch_tensors(config)
        self._tensors = {n: t for n, t in _named_tensors(model).items() if n in self.expected}
        missing = set(self.expected) - set(self._tensors)
        if missing:
            raise RuntimeError(f"patched model lacks tensors {sorted(missing)[:3]}")

    def parameters(self) -> list[nn.Parameter]:
        """The trainable patch tensors (running statistics excluded: they are buffers)."""
        return [t for t in self._tensors.values() if isinstance(t, nn.Parameter)]

    def parameters_by_role(self) -> dict[str, list[nn.Parameter]]:
        """The trainable patch tensors grouped by :meth:`PatchSpace.tensor_roles`."""
        roles = self.space.tensor_roles(self.config)
        groups: dict[str, list[nn.Parameter]] = {}
        for name, t in self._tensors.items():
            if isinstance(t, nn.Parameter):
                groups.setdefault(roles[name], []).append(t)
        return groups

    def state(self, dtype: str | None = None) -> dict[str, Tensor]:
        """The patch tensors as stored: detached CPU copies at the storage dtype (the space's
        by default), file order; at ``int8`` each weight is followed by its scales and each norm
        is its affine map."""
        tensors = {n: self._tensors[n] for n in self.expected}
        return to_stored(tensors, dtype or self.space.dtype, norm_eps(self.model))

    def load(self, tensors: Mapping[str, Tensor]) -> None:
        """Copy stored patch tensors in (as :meth:`state` gives them at the space's dtype; int8
        weights are dequantized); names and shapes must match the config exactly."""
        values = from_stored(tensors, self.expected, self.space.dtype, norm_eps(self.model))
        with torch.no_grad():
            for name, value in values.items():
                target = self._tensors[name]
                if tuple(value.shape) != tuple(target.shape):
                    raise UserError(
                        f"patch tensor {name!r} has shape {tuple(value.shape)}, "
                        f"expected {tuple(target.shape)}"
                    )
                target.copy_(value.to(target.dtype))


def norm_eps(model: nn.Module) -> dict[str, float]:
    """Each norm layer's ``eps`` by module path (what int8 storage folds norms with)."""
    return {name: float(m.eps) for name, m in model.named_modules() if isinstance(m, NORM_TYPES)}


def _named_tensors(model: nn.Module) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for n, p in module._parameters.items():
            if p is not None:
                out[prefix + n] = p
        for n, b in module._buffers.items():
            if b is not None:
                out[prefix + n] = b
    return out


def apply_patch(
    model: nn.Module,
    base_state: Mapping[str, Tensor],
    space: PatchSpace,
    config: PatchConfig,
    *,
    tensors: Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> AppliedPatch:
    """Turn a task skeleton into the patched detector, in place.

    Args:
        model: the detector built for the task's classes; its class head is kept as is.
        base_state: the base's tensors by state-dict name (``state_dict(keep_vars=True)``).
        space: the task's patch space; ``config`` must be in it.
        config: which kind each site gets.
        tensors: stored patch tensors to load; without them the patch starts at the base.
        generator: seeds the random part of new patch tensors (LoRA's ``A``).

    Returns:
        The applied patch; ``model`` itself is modified and returned as ``.model``.
    """
    space.check_contains(config, any_kind=True)
    head = {h.name for h in space.head}
    patched = set(space.patch_tensors(config)) - head
    modules = dict(model.named_modules())
    for mod_name, module in modules.items():
        prefix = f"{mod_name}." if mod_name else ""
        for slot in (module._parameters, module._buffers):
            for n, own in list(slot.items()):
                full = prefix + n
                if own is None or full in head:
                    continue
                base = base_state.get(full)
                if base is None or base.shape != own.shape:
                    raise UserError(
                        f"base does not fit the {space.model} detector at tensor {full!r}"
                    )
                if full in patched or (
                    n == "num_batches_tracked" and f"{prefix}weight" in patched
                ):
                    copy = base.detach().clone()
                    slot[n] = nn.Parameter(copy) if slot is module._parameters else copy
                else:
                    slot[n] = base
    for name, kind in config.kinds.items():
        if kind.family == "lora":
            site = space.site(name)
            _add_lora(modules[name], kind.rank, site.fan_in, generator)
    for mod_name, module in modules.items():
        if isinstance(module, NORM_TYPES) and f"{mod_name}.weight" not in patched:
            _pin_eval(module)
    applied = AppliedPatch(model, space, config)
    if tensors is not None:
        applied.load(tensors)
    return applied
