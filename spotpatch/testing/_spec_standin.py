"""A stand-in for a real study's evaluator: the spec's own base and patch space, its classes read
from the train annotations (no image decoded), its configs scored by :class:`StandInEvaluator`
in milliseconds. ``run_studies(..., evaluator_for=stand_in_for)`` runs many real study files
end to end, on every backend, in seconds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from spotpatch._files import read_json
from spotpatch.evaluators import Base, load_base
from spotpatch.studies import StudySpec
from spotpatch.testing._standin import StandInEvaluator

__all__ = ["stand_in_for"]


@dataclass(frozen=True)
class _Classes:
    """What a study's metadata reads of its task."""

    name: str
    classes: tuple[str, ...]
    category_ids: tuple[int, ...]


@functools.lru_cache(maxsize=4)
def _base(model: str, checkpoint: str | None, device: str) -> Base:
    # Many studies of one base in a process load it once.
    return load_base(model, checkpoint, device=device)


def stand_in_for(
    spec: StudySpec,
    *,
    log_dir: str | Path | None = None,
    delay: tuple[float, float] = (0.002, 0.02),
) -> StandInEvaluator:
    """A stand-in evaluator of ``spec``: scores its configs by their bytes (see
    :class:`StandInEvaluator`, whose ``log_dir`` and ``delay`` these are); has the ``task``
    and ``base`` a study records.

    Example:
        >>> spec = load_spec("bench/studies/glyphs.toml")  # doctest: +SKIP
        >>> stand_in_for(spec).space.granularity  # doctest: +SKIP
        'block'
    """
    checkpoint = str(spec.base.checkpoint) if spec.base.checkpoint else None
    base = _base(spec.base.model, checkpoint, spec.base.device)
    train = read_json(spec.data.train, what="annotation file")
    categories = sorted((c["id"], c["name"]) for c in train["categories"])
    space = base.space(
        len(categories) + 1,
        kinds=spec.space.kinds,
        granularity=spec.space.granularity,
        dtype=spec.space.dtype,
    )
    evaluator = StandInEvaluator(space, log_dir=log_dir, delay=delay, seed=spec.seed)
    evaluator.task = _Classes(
        spec.name, tuple(n for _, n in categories), tuple(i for i, _ in categories)
    )
    evaluator.base = base
    return evaluator
