"""Writing study specs: a :class:`StudySpec` as the ``STUDY.toml`` that :func:`load_spec` reads.

The one writer of study files (the benchmark's, the demo's, the tests'), so that none is made
by editing TOML text. Imports only ``studies._spec``.

A spec holds strings, numbers, booleans, paths and lists of those, so a small emitter does:

- strings are TOML basic strings, escaped as JSON escapes them (``\\"``, ``\\\\``, ``\\n``,
  ``\\uXXXX``...), each of which TOML reads the same; DEL, which JSON leaves as it is and TOML
  refuses raw, is escaped too. Other characters are written as they are, in UTF-8.
- floats are written by ``repr``, which always reads back as the same float (``0.003``,
  ``1e-05``, ``inf``), never as an integer.
- paths are written relative to the folder of the file written, with forward slashes; the
  storage URL is written as it is (a relative SQLite path is relative to the working
  directory, as every Optuna tool reads it).

Keys whose value is the dataclass default are left out, except those a user wants to see in
every study file (:data:`_SHOWN`); keys whose value is None are always left out.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from spotpatch._files import write_text
from spotpatch.studies._spec import StudySpec

__all__ = ["spec_toml", "write_spec"]

# Written even when they hold the default: what the bundled study files have always shown.
_SHOWN: dict[str, tuple[str, ...]] = {
    "data": ("train", "train_images", "val", "val_images", "test", "test_images"),
    "base": ("model",),
    "space": ("granularity", "kinds", "dtype"),
    "train": ("steps", "batch_size", "lr", "norm_lr_scale", "lora_lr_scale"),
    "search": ("trials", "sampler", "warm_start", "backend", "workers", "storage"),
}


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any, folder: Path) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Path):
        return _string(Path(os.path.relpath(value.resolve(), folder)).as_posix())
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_value(v, folder) for v in value) + "]"
    raise TypeError(f"a study spec holds no {type(value).__name__} values: {value!r}")


def _is_default(field: dataclasses.Field, value: Any) -> bool:
    if field.default is not dataclasses.MISSING:
        return value == field.default
    if field.default_factory is not dataclasses.MISSING:
        return value == field.default_factory()
    return False


def spec_toml(spec: StudySpec, *, comment: str | None = None) -> str:
    """The text of a study file for ``spec``, to be written at ``spec.path``.

    Args:
        spec: The study; its paths are written relative to ``spec.path``'s folder.
        comment: Written first, each line as a ``#`` comment.

    Returns:
        TOML text that :func:`load_spec` reads back as ``spec``.

    Example:
        >>> spec = load_spec("studies/pets.toml")  # doctest: +SKIP
        >>> print(spec_toml(spec))  # doctest: +SKIP
        name = "pets"
        seed = 0
        ...
    """
    folder = spec.path.resolve().parent
    lines = [f"# {line}".rstrip() for line in (comment.splitlines() if comment else [])]
    lines += [f"name = {_value(spec.name, folder)}", f"seed = {_value(spec.seed, folder)}"]
    for section in _SHOWN:
        record = getattr(spec, section)
        lines += ["", f"[{section}]"]
        for field in dataclasses.fields(record):
            value = getattr(record, field.name)
            if value is None or (field.name not in _SHOWN[section] and _is_default(field, value)):
                continue
            lines.append(f"{field.name} = {_value(value, folder)}")
    return "\n".join(lines) + "\n"


def write_spec(spec: StudySpec, path: str | Path, *, comment: str | None = None) -> Path:
    """Write ``spec`` as a study file at ``path`` (its folder is created when missing).

    The text is written beside the file and renamed over it, so a reader never sees half a
    spec.

    Args:
        spec: The study; its own ``path`` is ignored.
        path: The file to write; the spec's paths are written relative to its folder.
        comment: Written first, each line as a ``#`` comment.

    Returns:
        The resolved path written; ``load_spec(write_spec(spec, p)) == replace(spec,
        path=p.resolve())``.

    Example:
        >>> spec = load_spec("studies/pets.toml")  # doctest: +SKIP
        >>> write_spec(replace(spec, seed=1), "pets-seed1.toml")  # doctest: +SKIP
    """
    path = Path(path).resolve()
    text = spec_toml(dataclasses.replace(spec, path=path), comment=comment)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, text, what="study file")
