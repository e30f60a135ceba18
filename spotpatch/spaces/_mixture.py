"""The mixed patch: every gate carries all its candidate kinds at once, mixed by learnable
weights, then frozen into one discrete config.

This is what the differentiable gate relaxation trains. Each site keeps the base's tensors and
adds one delta per distinct kind its gate can resolve to (a dense delta for ``dw``/``full``, a
``B @ A`` pair per LoRA rank, an affine delta for the norm); a gate's weights over its kinds
scale those deltas. Deltas start at zero, so the mixed model starts as the base.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spotpatch.spaces._apply import _named_tensors, apply_patch
from spotpatch.spaces._kinds import PatchKind, parse_kind
from spotpatch.spaces._space import PatchConfig, PatchSpace

__all__ = ["MixedPatch"]


class _MixedConv2d(nn.Conv2d):
    def forward(self, x: Tensor) -> Tensor:
        weight, bias = _mixed_weight(self)
        return self._conv_forward(x, weight, bias)


class _MixedLinear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, *_mixed_weight(self))


def _mixed_weight(layer: nn.Module) -> tuple[Tensor, Tensor | None]:
    weight, bias = layer.weight, layer.bias
    mix: dict[str, Tensor] = layer.mix
    if "dense" in mix:
        weight = weight + mix["dense"] * layer.delta_weight
        if bias is not None:
            bias = bias + mix["dense"] * layer.delta_bias
    for rank, (a, b) in layer.lora.items():
        weight = weight + mix[f"lora{rank}"] * (b @ a).view_as(weight)
    return weight, bias


class _MixedBatchNorm(nn.BatchNorm2d):
    """Normalizes with the base's statistics; only the affine delta mixes in."""

    def train(self, mode: bool = True) -> nn.Module:
        return nn.Module.train(self, False)

    def forward(self, x: Tensor) -> Tensor:
        on = self.mix["norm"]
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight + on * self.delta_weight,
            self.bias + on * self.delta_bias,
            False,
            0.0,
            self.eps,
        )


class MixedPatch:
    """A task's detector in which every gate mixes all its kinds.

    Call sequence: ``sample(temperature)`` before each forward (a straight-through
    Gumbel-softmax draw per gate), ``expected_bytes()`` for the size penalty,
    ``probabilities()`` to read the gates, ``freeze()`` for the discrete config.

    Example:
        >>> mixed = MixedPatch(skeleton, base_state, space)  # doctest: +SKIP
        >>> mixed.sample(temperature=1.0)  # doctest: +SKIP
        >>> loss = detection_loss + lam * mixed.expected_bytes()  # doctest: +SKIP
        >>> mixed.freeze()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        base_state: Mapping[str, Tensor],
        space: PatchSpace,
        *,
        generator: torch.Generator | None = None,
    ):
        self.space = space
        self.model = apply_patch(model, base_state, space, PatchConfig()).model
        head = {h.name for h in space.head}
        self.head_parameters = [t for n, t in _named_tensors(self.model).items() if n in head]
        modules = dict(self.model.named_modules())
        device = next(self.model.parameters()).device
        self.labels = list(space.groups())
        self.choices = {g: [parse_kind(k) for k in space.choices(g)] for g in self.labels}
        self.logits = [
            nn.Parameter(torch.zeros(len(self.choices[g]), device=device)) for g in self.labels
        ]
        #: The deltas by the role of the tensor they change (as ``PatchSpace.tensor_roles``).
        self.deltas: dict[str, list[nn.Parameter]] = {"weight": [], "norm": [], "lora": []}
        # Per site: for each gate choice, the component it switches on ("dense", "loraR" or
        # nothing) and whether the norm is on.
        self._routes: list[
            tuple[nn.Module, nn.Module | None, int, list[tuple[str | None, bool]]]
        ] = []
        sizes = []
        for gi, label in enumerate(self.labels):
            per_choice = torch.zeros(len(self.choices[label]), dtype=torch.float64)
            for name in space.groups()[label]:
                site = space.site(name)
                layer = modules[name]
                resolved = [space.resolve(site, k) for k in self.choices[label]]
                per_choice += torch.tensor(
                    [space.site_bytes(site, r) for r in resolved], dtype=torch.float64
                )
                route = [(_component(r), r.family != "shared") for r in resolved]
                self._add_deltas(layer, site, {c for c, _ in route if c}, generator)
                norm = modules[site.norm] if site.norm and any(on for _, on in route) else None
                if norm is not None:
                    self._add_norm_delta(norm)
                self._routes.append((layer, norm, gi, route))
            sizes.append(per_choice / max(space.full_bytes(), 1))
        self._relative_bytes = [s.to(device, torch.float32) for s in sizes]
        self.sample(1.0, hard=False)

    def _add_deltas(self, layer: nn.Module, site, components: set[str], generator) -> None:
        layer.lora = {}
        layer.mix = {}
        if not components:
            return
        layer.__class__ = _MixedConv2d if isinstance(layer, nn.Conv2d) else _MixedLinear
        device = layer.weight.device
        if "dense" in components:
            layer.delta_weight = nn.Parameter(torch.zeros_like(layer.weight))
            self.deltas["weight"].append(layer.delta_weight)
            if layer.bias is not None:
                layer.delta_bias = nn.Parameter(torch.zeros_like(layer.bias))
                self.deltas["weight"].append(layer.delta_bias)
        for c in sorted(components - {"dense"}):
            rank = int(c[4:])
            bound = 1.0 / math.sqrt(site.fan_in)
            a = torch.empty(rank, site.fan_in).uniform_(-bound, bound, generator=generator)
            a = nn.Parameter(a.to(device))
            b = nn.Parameter(torch.zeros(site.out_features, rank, device=device))
            layer.lora[rank] = (a, b)
            self.deltas["lora"] += [a, b]

    def _add_norm_delta(self, norm: nn.Module) -> None:
        if isinstance(norm, _MixedBatchNorm):
            return
        norm.__class__ = _MixedBatchNorm
        norm.mix = {}
        norm.delta_weight = nn.Parameter(torch.zeros_like(norm.weight))
        norm.delta_bias = nn.Parameter(torch.zeros_like(norm.bias))
        self.deltas["norm"] += [norm.delta_weight, norm.delta_bias]

    @property
    def delta_parameters(self) -> list[nn.Parameter]:
        """Every delta, whatever its role."""
        return [p for group in self.deltas.values() for p in group]

    # -- the gates ----------------------------------------------------------------------------
    def sample(self, temperature: float, *, hard: bool = True, noise: bool | None = None) -> None:
        """Draw each gate's weights for the next forward: a Gumbel-softmax at ``temperature``.

        ``hard``: one-hot in the forward and soft in the backward (straight-through);
        otherwise the soft weights themselves. ``noise`` (default: ``hard``): add Gumbel noise;
        without it the weights are the plain softmax.
        """
        noise = hard if noise is None else noise
        weights = []
        for logits in self.logits:
            if noise:
                weights.append(F.gumbel_softmax(logits, tau=temperature, hard=hard))
            else:
                weights.append(F.softmax(logits / temperature, dim=0))
        self.set_weights(weights)

    def set_weights(self, weights: list[Tensor]) -> None:
        for layer, norm, gi, route in self._routes:
            w = weights[gi]
            mix: dict[str, Tensor] = {}
            norm_on = w.new_zeros(())
            for j, (component, on) in enumerate(route):
                if component:
                    mix[component] = mix.get(component, 0) + w[j]
                if on:
                    norm_on = norm_on + w[j]
            for component in ("dense", *(f"lora{r}" for r in layer.lora)):
                mix.setdefault(component, w.new_zeros(()))
            layer.mix = mix
            if norm is not None:
                norm.mix = {"norm": norm_on}

    def expected_bytes(self) -> Tensor:
        """Expected patch bytes under the gates' softmax, as a fraction of the full patch."""
        return sum(
            (F.softmax(lg, dim=0) * size).sum()
            for lg, size in zip(self.logits, self._relative_bytes, strict=True)
        )

    def probabilities(self) -> dict[str, dict[str, float]]:
        """Each gate's probability of each of its kinds."""
        return {
            label: {
                str(k): float(p)
                for k, p in zip(self.choices[label], F.softmax(lg.detach(), 0), strict=True)
            }
            for label, lg in zip(self.labels, self.logits, strict=True)
        }

    def freeze(self) -> PatchConfig:
        """The discrete config: each gate's most probable kind."""
        gates = {
            label: str(self.choices[label][int(lg.detach().argmax())])
            for label, lg in zip(self.labels, self.logits, strict=True)
        }
        return self.space.config_from_gates(gates)


def _component(kind: PatchKind) -> str | None:
    if kind.family in ("dw", "full"):
        return "dense"
    if kind.family == "lora":
        return f"lora{kind.rank}"
    return None
