"""Study specs: ``STUDY.toml`` read with tomllib, validated key by key.

Every problem is one :class:`UserError` line that names the file and the key. Paths resolve
relative to the spec's folder; the storage is a URL, as Optuna takes it (a relative SQLite path
is relative to the working directory, like every Optuna tool). ``_spec_writer`` writes a spec
back as a file. Imports from ``spaces`` and ``studies._storage``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotpatch._defaults import BACKENDS
from spotpatch._errors import UserError
from spotpatch._files import read_toml
from spotpatch.evaluators import TrainSettings, cache_size_problem
from spotpatch.search import (
    DEFAULT_CONFIRM_MARGIN,
    DEFAULT_LAMBDAS,
    DEFAULT_TOLERANCE,
    SAMPLER_NAMES,
)
from spotpatch.spaces import DTYPES, PRESETS
from spotpatch.studies._storage import DEFAULT_STORAGE

__all__ = [
    "StudySpec",
    "DataSpec",
    "BaseSpec",
    "SpaceSpec",
    "TrainSpec",
    "SearchSpec",
    "load_spec",
    "spec_from_text",
    "SAMPLERS",
    "BACKENDS",
    "WARM_STARTS",
]

SAMPLERS = SAMPLER_NAMES
WARM_STARTS = ("relaxation", "none")


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be at least {low}"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be positive"


def _fraction_list(v: list) -> str | None:
    return None if all(0 < x < 1 for x in v) else "values must be in (0, 1)"


def _preset_list(v: list) -> str | None:
    unknown = [x for x in v if x not in PRESETS]
    return f"has unknown presets {unknown} (expected {', '.join(PRESETS)})" if unknown else None


@dataclass(frozen=True)
class DataSpec:
    train: Path
    train_images: Path
    val: Path
    val_images: Path
    test: Path | None = None
    test_images: Path | None = None


@dataclass(frozen=True)
class BaseSpec:
    model: str = "spotpatch-tiny"
    checkpoint: Path | None = None
    device: str = "auto"


@dataclass(frozen=True)
class SpaceSpec:
    granularity: str = "site"
    kinds: tuple[str, ...] = ("bn", "dw", "lora4", "full")
    dtype: str = "float32"


#: A study file's ``[train]`` section is the trainer's own settings (its keys are the ones
#: :data:`_SCHEMA` lets a user set; the others keep the trainer's defaults).
TrainSpec = TrainSettings


@dataclass(frozen=True)
class SearchSpec:
    trials: int = 40
    sampler: str = "nsga2"
    warm_start: str = "relaxation"
    backend: str = "local"
    workers: int = 1
    storage: str = DEFAULT_STORAGE
    artifacts: Path | None = None
    ray_address: str | None = None
    early_stopping: bool = False
    checkpoints: tuple[float, ...] = (0.33, 0.67)
    relaxation_lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    presets: tuple[str, ...] = ()
    repeats: int = 1
    tolerance: float = DEFAULT_TOLERANCE
    confirm_seeds: int = 0
    confirm_margin: float = DEFAULT_CONFIRM_MARGIN
    stale_after: float = 120.0


@dataclass(frozen=True)
class StudySpec:
    """A validated study file.

    Example:
        >>> spec = load_spec("studies/pets.toml")  # doctest: +SKIP
        >>> spec.name, spec.search.sampler  # doctest: +SKIP
        ('pets', 'nsga2')
    """

    name: str
    path: Path
    data: DataSpec
    seed: int = 0
    base: BaseSpec = field(default_factory=BaseSpec)
    space: SpaceSpec = field(default_factory=SpaceSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    search: SearchSpec = field(default_factory=SearchSpec)


# (type, check, item type) per key. "file" and "dir" are paths relative to the spec that must
# exist; "path" need not (it is created).
_SCHEMA: dict[str, dict[str, tuple[Any, ...]]] = {
    "data": {
        "train": ("file",),
        "train_images": ("dir",),
        "val": ("file",),
        "val_images": ("dir",),
        "test": ("file",),
        "test_images": ("dir",),
    },
    "base": {"model": (str,), "checkpoint": ("file",), "device": (str,)},
    "space": {
        "granularity": (str, _one_of(("site", "block", "stage"))),
        "kinds": (list, None, str),
        "dtype": (str, _one_of(DTYPES)),
    },
    "train": {
        "steps": (int, _at_least(1)),
        "batch_size": (int, _at_least(2)),
        "lr": (float, _positive),
        "hflip": (bool,),
        "norm_lr_scale": (float, _positive),
        "lora_lr_scale": (float, _positive),
        "prefix_cache": (str, cache_size_problem),
    },
    "search": {
        "trials": (int, _at_least(1)),
        "sampler": (str, _one_of(SAMPLERS)),
        "warm_start": (str, _one_of(WARM_STARTS)),
        "backend": (str, _one_of(BACKENDS)),
        "workers": (int, _at_least(1)),
        "storage": (str,),
        "artifacts": ("path",),
        "ray_address": (str,),
        "early_stopping": (bool,),
        "repeats": (int, _at_least(1)),
        "tolerance": (float, _at_least(0.0)),
        "confirm_seeds": (int, _at_least(0)),
        "confirm_margin": (float, _at_least(0.0)),
        "stale_after": (float, _at_least(1.0)),
        "checkpoints": (list, _fraction_list, float),
        "relaxation_lambdas": (
            list,
            lambda v: (
                None if all(x >= 0 for x in v) and v else "must be a non-empty list of values >= 0"
            ),
            float,
        ),
        "presets": (list, _preset_list, str),
    },
}
_REQUIRED = {"data": ("train", "train_images", "val", "val_images")}
_TOP = {"name": str, "seed": int}
_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
}


def _typed(where: str, key: str, value: Any, kind: Any, item: Any = None) -> Any:
    def bad(expected: str) -> UserError:
        return UserError(f"{where}: {key} must be {expected}, got {value!r}")

    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float) and isinstance(value, bool):
        raise bad(_TYPE_NAMES[kind])
    if not isinstance(value, kind):
        raise bad(_TYPE_NAMES[kind])
    if kind is list:
        return tuple(_typed(where, f"{key}[{i}]", v, item) for i, v in enumerate(value))
    return value


def _path(where: str, key: str, value: Any, kind: str, folder: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise UserError(f"{where}: {key} must be a path string, got {value!r}")
    path = (folder / value).resolve()
    if kind == "file" and not path.is_file():
        raise UserError(f"{where}: {key}: file not found: {path}")
    if kind == "dir" and not path.is_dir():
        raise UserError(f"{where}: {key}: folder not found: {path}")
    return path


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file.

    Raises:
        UserError: a missing or malformed file, an unknown key, a wrong type, a missing
            path, an impossible value; the message names the key.
    """
    path = Path(path)
    return _parsed(read_toml(path, what="study file"), path)


def spec_from_text(text: str, path: str | Path) -> StudySpec:
    """A study file's text, validated as if it were the file at ``path`` (its relative paths
    are relative to that folder; the file itself need not exist): a spec a study stored.

    Raises:
        UserError: as :func:`load_spec`, the message naming ``path``.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: malformed TOML ({e})") from None
    return _parsed(raw, Path(path))


def _parsed(raw: dict[str, Any], path: Path) -> StudySpec:
    where, folder = str(path), path.resolve().parent
    for key in raw:
        if key not in _TOP and key not in _SCHEMA:
            raise UserError(f"{where}: unknown key {key!r}")
    if "name" not in raw:
        raise UserError(f"{where}: missing key 'name'")
    top = {k: _typed(where, k, raw[k], t) for k, t in _TOP.items() if k in raw}
    if not top["name"].strip():
        raise UserError(f"{where}: name must not be empty")
    sections: dict[str, dict[str, Any]] = {}
    for section, schema in _SCHEMA.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise UserError(f"{where}: {section} must be a table ([{section}])")
        for key in _REQUIRED.get(section, ()):
            if key not in table:
                raise UserError(f"{where}: missing key '{section}.{key}'")
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in schema:
                raise UserError(f"{where}: unknown key '{section}.{key}'")
            kind, *rest = schema[key]
            dotted = f"{section}.{key}"
            if isinstance(kind, str):
                values[key] = _path(where, dotted, value, kind, folder)
                continue
            value = _typed(where, dotted, value, kind, rest[1] if len(rest) > 1 else None)
            check = rest[0] if rest else None
            problem = check(value) if check else None
            if problem:
                raise UserError(f"{where}: {dotted} {problem}, got {table[key]!r}")
            values[key] = value
        sections[section] = values
    data = sections["data"]
    if ("test" in data) != ("test_images" in data):
        raise UserError(f"{where}: data.test and data.test_images go together")
    if "kinds" in sections["space"]:
        from spotpatch.spaces import parse_kind

        try:
            kinds = [str(parse_kind(k)) for k in sections["space"]["kinds"]]
        except UserError as e:
            raise UserError(f"{where}: space.kinds: {e}") from None
        if not [k for k in kinds if k != "shared"]:
            raise UserError(f"{where}: space.kinds must name at least one kind besides shared")
        sections["space"]["kinds"] = tuple(kinds)
    return StudySpec(
        name=top["name"],
        path=path.resolve(),
        seed=top.get("seed", 0),
        data=DataSpec(**data),
        base=BaseSpec(**sections["base"]),
        space=SpaceSpec(**sections["space"]),
        train=TrainSpec(**sections["train"]),
        search=SearchSpec(**sections["search"]),
    )
