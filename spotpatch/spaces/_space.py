"""The patch space of one detector for one task, and patch configs in it.

A :class:`PatchSpace` is a flat, labelled set of choices: one per site (or per block or stage,
for coarser granularities), each over the kinds that site allows. A :class:`PatchConfig` is one
point of it: site -> kind. Byte accounting is exact and shape-only: the bytes of a config are
the payload of the tensors its patch file stores at the space's dtype (``_dtypes`` says which
tensors those are, int8 scales included).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from spotpatch._defaults import PRESETS
from spotpatch._errors import UserError
from spotpatch.spaces._dtypes import check_dtype, stored_bytes
from spotpatch.spaces._kinds import PatchKind, parse_kind
from spotpatch.spaces._sites import HeadTensor, PatchSite

__all__ = [
    "PatchConfig",
    "PatchSpace",
    "PRESETS",
    "GRANULARITIES",
]

GRANULARITIES = ("site", "block", "stage")
#: The fixed recipes users compare against (the existing transfer techniques), smallest first.
#: Module paths of the pretrained feature extractor inside torchvision detection backbones
#: (SSD's ``features``, the FPN backbones' ``body``): what ``tail`` fine-tuning keeps shared.
FEATURE_BODIES = ("backbone.features", "backbone.body")
_ALL_KINDS = ("bn", "dw", "lora4", "lora8", "lora16", "full")


@dataclass(frozen=True)
class PatchConfig:
    """Which kind each site gets; sites not listed are ``shared``.

    Example:
        >>> cfg = PatchConfig.from_dict({"backbone.features.0.0.0": "full", "x": "shared"})
        >>> cfg.to_dict()
        {'backbone.features.0.0.0': 'full'}
    """

    kinds: Mapping[str, PatchKind] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clean = {s: parse_kind(k) for s, k in sorted(self.kinds.items())}
        clean = {s: k for s, k in clean.items() if k.family != "shared"}
        object.__setattr__(self, "kinds", MappingProxyType(clean))

    @classmethod
    def from_dict(cls, sites: Mapping[str, str]) -> PatchConfig:
        if not isinstance(sites, Mapping):
            raise UserError("a patch config maps site names to kind names")
        return cls({str(s): parse_kind(k) for s, k in sites.items()})

    def kind(self, site: str) -> PatchKind:
        return self.kinds.get(site, PatchKind("shared"))

    def to_dict(self) -> dict[str, str]:
        return {s: str(k) for s, k in self.kinds.items()}

    def summary(self) -> str:
        """Counts per kind, e.g. ``full x3, bn x12`` (``head only`` for the empty patch)."""
        counts: dict[str, int] = {}
        for k in self.kinds.values():
            counts[str(k)] = counts.get(str(k), 0) + 1
        order = sorted(counts, key=lambda k: parse_kind(k).strength, reverse=True)
        return ", ".join(f"{k} x{counts[k]}" for k in order) or "head only"

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))

    def __reduce__(self):
        # Configs cross process boundaries (worker processes, Ray); a mappingproxy does not
        # pickle, its plain dict does.
        return (PatchConfig.from_dict, (self.to_dict(),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PatchConfig) and self.to_dict() == other.to_dict()


@dataclass(frozen=True)
class PatchSpace:
    """What can be patched in one detector for one task.

    Args:
        model: detector name (recorded in patches).
        sites: the detector's patch sites, in module order.
        head: the task's class-head tensors (always patched, always whole).
        kinds: the kinds a search may choose (``shared`` is always allowed).
        granularity: ``site``, ``block`` or ``stage``: what one gate decides.
        dtype: storage dtype of patch tensors: ``float32``, ``float16`` or ``int8``.

    Example:
        >>> space = PatchSpace("m", sites, head, kinds=("bn", "full"))  # doctest: +SKIP
        >>> space.patch_bytes(space.preset("full"))  # doctest: +SKIP
    """

    model: str
    sites: tuple[PatchSite, ...]
    head: tuple[HeadTensor, ...]
    kinds: tuple[str, ...] = ("bn", "dw", "lora4", "full")
    granularity: str = "site"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        kinds = tuple(dict.fromkeys(str(parse_kind(k)) for k in self.kinds if k != "shared"))
        object.__setattr__(self, "kinds", kinds)
        if self.granularity not in GRANULARITIES:
            raise UserError(
                f"unknown granularity {self.granularity!r} (expected {', '.join(GRANULARITIES)})"
            )
        check_dtype(self.dtype)
        by_name = {s.name: s for s in self.sites}
        object.__setattr__(self, "_by_name", MappingProxyType(by_name))
        for kind in self.kinds:
            if not any(self._intrinsic(s, parse_kind(kind)) for s in self.sites):
                raise UserError(f"space.kinds: no site of {self.model} allows kind {kind!r}")

    # -- what each site allows -------------------------------------------------------------
    def site(self, name: str) -> PatchSite:
        try:
            return self._by_name[name]  # type: ignore[attr-defined]
        except KeyError:
            raise UserError(f"unknown site {name!r} for {self.model}") from None

    @staticmethod
    def _intrinsic(site: PatchSite, kind: PatchKind) -> bool:
        """Whether the kind makes sense for the site at all, whatever the study allows."""
        if kind.family in ("shared", "full"):
            return True
        if kind.family == "bn":
            return site.norm is not None
        if kind.family == "dw":
            return site.depthwise
        # A rank-r delta only pays off below the weight's own rank and size.
        return (
            site.groups == 1
            and kind.rank < min(site.out_features, site.fan_in)
            and kind.rank * (site.out_features + site.fan_in) < site.out_features * site.fan_in
        )

    def allowed(
        self, site: str | PatchSite, kinds: Iterable[str] | None = None
    ) -> list[PatchKind]:
        """Kinds the site allows among ``kinds`` (the space's kinds by default), weakest first."""
        site = self.site(site) if isinstance(site, str) else site
        pool = [PatchKind("shared")] + [parse_kind(k) for k in (kinds or self.kinds)]
        return sorted((k for k in set(pool) if self._intrinsic(site, k)), key=lambda k: k.strength)

    def resolve(self, site: str | PatchSite, kind: str | PatchKind, kinds=None) -> PatchKind:
        """The kind a site gets when its gate asks for ``kind``.

        An allowed kind is kept. Otherwise: ``lora`` on a depthwise site becomes ``dw``, and on a
        layer too small for that rank becomes ``full`` (no larger, as expressive); any other
        kind steps down to the strongest allowed kind below it.
        """
        site = self.site(site) if isinstance(site, str) else site
        kind = parse_kind(kind)
        allowed = self.allowed(site, kinds)
        if kind in allowed:
            return kind
        if kind.family == "lora":
            names = {str(k) for k in allowed}
            if site.depthwise and "dw" in names:
                return PatchKind("dw")
            full = PatchKind("full")
            if "full" in names and self.site_bytes(site, full) <= self.site_bytes(site, kind):
                return full
        return max((k for k in allowed if k.strength < kind.strength), key=lambda k: k.strength)

    # -- gates at a granularity -------------------------------------------------------------
    def groups(self) -> dict[str, tuple[str, ...]]:
        """Gate label -> the sites it decides, in module order."""
        groups: dict[str, list[str]] = {}
        for s in self.sites:
            label = {"site": s.name, "block": s.block, "stage": s.stage}[self.granularity]
            groups.setdefault(label, []).append(s.name)
        return {g: tuple(v) for g, v in groups.items()}

    def stage_gates(self) -> dict[str, tuple[str, ...]]:
        """Stage -> the gate labels in it, in module order (each gate is placed by its first
        site): the coarse groups a search can move together."""
        stages: dict[str, list[str]] = {}
        for label, sites in self.groups().items():
            stages.setdefault(self.site(sites[0]).stage, []).append(label)
        return {stage: tuple(labels) for stage, labels in stages.items()}

    def choices(self, group: str) -> tuple[str, ...]:
        """Kinds a gate offers: those some site of the group allows, weakest first."""
        found: set[PatchKind] = set()
        for name in self.groups()[group]:
            found.update(self.allowed(name))
        return tuple(str(k) for k in sorted(found, key=lambda k: k.strength))

    def config_from_gates(self, gates: Mapping[str, str]) -> PatchConfig:
        """Freeze gate decisions into a config; a missing gate means ``shared``."""
        groups = self.groups()
        unknown = set(gates) - set(groups)
        if unknown:
            raise UserError(
                f"unknown gate {sorted(unknown)[0]!r} for granularity {self.granularity}"
            )
        kinds = {}
        for label, sites in groups.items():
            asked = gates.get(label, "shared")
            for name in sites:
                kinds[name] = self.resolve(name, asked)
        return PatchConfig(kinds)

    def gates_of(self, config: PatchConfig) -> dict[str, str]:
        """The gate decision per group that best describes a config (its strongest kind)."""
        return {
            label: str(max((config.kind(s) for s in sites), key=lambda k: k.strength))
            for label, sites in self.groups().items()
        }

    def nearest_gates(self, config: PatchConfig) -> dict[str, str]:
        """Gate decisions every gate offers, closest to a config that the gates may not express
        (a fixed recipe in a coarser space): each group's strongest kind where its gate offers
        it, else the strongest the gate offers below it."""
        gates = {}
        for label, wanted in self.gates_of(config).items():
            kind = parse_kind(wanted)
            offered = [parse_kind(c) for c in self.choices(label)]
            below = [k for k in offered if k.strength <= kind.strength] or offered[:1]
            gates[label] = str(max(below, key=lambda k: k.strength))
        return gates

    def expresses(self, config: PatchConfig) -> bool:
        """Whether some gate decision gives exactly ``config``."""
        return self.config_from_gates(self.nearest_gates(config)) == config

    # -- checking and presets ---------------------------------------------------------------
    def check_contains(self, config: PatchConfig, *, any_kind: bool = False) -> None:
        """Raise :class:`UserError` unless every site of the config exists and allows its kind.

        With ``any_kind`` a kind outside the space's ``kinds`` is accepted where it makes sense
        for the site (the fixed presets and hand-written configs use this).
        """
        for name, kind in config.kinds.items():
            site = self.site(name)
            pool = _ALL_KINDS + (str(kind),) if any_kind else self.kinds
            if kind not in self.allowed(site, pool):
                raise UserError(f"site {name!r} does not allow kind {str(kind)!r}")

    def preset(self, name: str) -> PatchConfig:
        """A fixed recipe: ``head`` (class head only), ``bn`` (every norm), ``dw`` (depthwise
        layers and every norm), ``lora4`` (rank-4 deltas where they fit, else the closest
        kind), ``tail`` (every layer after the feature extractor trained fully, the extractor
        shared: SSD's extra layers and heads), ``full`` (every tensor: a full fine-tune)."""
        if name not in PRESETS:
            raise UserError(f"unknown preset {name!r} (expected {', '.join(PRESETS)})")
        # A space is immutable: each preset is resolved once (readers of many trials ask often).
        presets = self.__dict__.setdefault("_presets", {})
        if name not in presets:
            presets[name] = self._preset(name)
        return presets[name]

    def _preset(self, name: str) -> PatchConfig:
        kinds = {}
        for s in self.sites:
            if name == "tail":
                in_body = any(s.name.startswith(f"{body}.") for body in FEATURE_BODIES)
                kinds[s.name] = PatchKind("shared" if in_body else "full")
            elif name == "dw" and s.depthwise:
                kinds[s.name] = PatchKind("dw")
            else:
                asked = {"head": "shared", "dw": "bn"}.get(name, name)
                kinds[s.name] = self.resolve(s, asked, kinds=_ALL_KINDS)
        return PatchConfig(kinds)

    # -- exact bytes --------------------------------------------------------------------------
    def site_tensors(self, site: PatchSite, kind: PatchKind) -> dict[str, tuple[int, ...]]:
        """The tensors a patch stores for one site, by name, with their shapes."""
        if kind.family == "shared":
            return {}
        tensors: dict[str, tuple[int, ...]] = {}
        if kind.family in ("dw", "full"):
            tensors.update(site.weight_tensors())
        elif kind.family == "lora":
            tensors[f"{site.name}.lora_A"] = (kind.rank, site.fan_in)
            tensors[f"{site.name}.lora_B"] = (site.out_features, kind.rank)
        tensors.update(site.norm_tensors())
        return tensors

    def tensor_roles(self, config: PatchConfig) -> dict[str, str]:
        """What each tensor of ``config``'s patch is, by name: ``weight`` (a layer's own
        tensors and the class head), ``norm`` (a norm layer's affine and statistics) or
        ``lora`` (low-rank factors). Training sets a learning rate per role."""
        roles = {h.name: "weight" for h in self.head}
        for name, kind in config.kinds.items():
            site = self.site(name)
            norms = site.norm_tensors()
            own = "lora" if kind.family == "lora" else "weight"
            for tensor in self.site_tensors(site, kind):
                roles[tensor] = "norm" if tensor in norms else own
        return roles

    def patch_tensors(self, config: PatchConfig) -> dict[str, tuple[int, ...]]:
        """Every tensor the patch for ``config`` stores: the class head, then the sites."""
        tensors = {h.name: h.shape for h in self.head}
        for name, kind in config.kinds.items():
            tensors.update(self.site_tensors(self.site(name), kind))
        return tensors

    def site_bytes(self, site: PatchSite, kind: PatchKind) -> int:
        return stored_bytes(self.site_tensors(site, kind), self.dtype)

    def head_bytes(self) -> int:
        return stored_bytes({h.name: h.shape for h in self.head}, self.dtype)

    def patch_bytes(self, config: PatchConfig) -> int:
        """Exact payload in bytes of the patch file for ``config`` (class head included)."""
        return stored_bytes(self.patch_tensors(config), self.dtype)

    def gates_bytes(self, gates: Mapping[str, str]) -> int:
        """:meth:`patch_bytes` of the config that gate decisions give."""
        return self.patch_bytes(self.config_from_gates(gates))

    def full_bytes(self) -> int:
        """Bytes of the ``full`` preset: the reference a patch's size is measured against."""
        return self.patch_bytes(self.preset("full"))

    def with_options(self, **changes) -> PatchSpace:
        """A copy with other ``kinds``, ``granularity`` or ``dtype``."""
        fields = {
            "model": self.model,
            "sites": self.sites,
            "head": self.head,
            "kinds": self.kinds,
            "granularity": self.granularity,
            "dtype": self.dtype,
        }
        return PatchSpace(**(fields | changes))
