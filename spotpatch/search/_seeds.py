"""Every seed a study trains or samples with, derived from the study's one ``seed``.

A study file gives one seed ``s``; everything stochastic in the study takes a seed from it here
and nowhere else, and no two purposes share a seed:

- trial ``n`` trains with ``s + n`` (class-head initialization, new patch tensors, batch order);
- the ``i`` th process that asks the study for trials seeds its sampler with ``s + i``;
- the warm start (the gate relaxation) trains with ``s``;
- the confirmation's deciding runs train with ``s + 1_000_000 + i`` and its reporting runs with
  ``s + 2_000_000 + i`` (``i`` = 0, 1, ...): no trial of a study under a million trials shares
  them, and a config and the full fine-tune trained with the same ``i`` are a pair (same
  batches, same class-head initialization).

Example:
    >>> decide_seeds(0, 3), report_seeds(7, 2)
    ((1000000, 1000001, 1000002), (2000007, 2000008))
"""

from __future__ import annotations

__all__ = [
    "DECIDE_OFFSET",
    "REPORT_OFFSET",
    "decide_seeds",
    "report_seeds",
    "sampler_seed",
    "trial_seed",
    "warm_start_seed",
]

DECIDE_OFFSET = 1_000_000
REPORT_OFFSET = 2_000_000


def trial_seed(study_seed: int, number: int) -> int:
    """The training seed of trial ``number``."""
    return study_seed + number


def sampler_seed(study_seed: int, proposer: int) -> int:
    """The sampler seed of the ``proposer`` th process asking the study for trials."""
    return study_seed + proposer


def warm_start_seed(study_seed: int) -> int:
    """The warm start's training seed."""
    return study_seed


def decide_seeds(study_seed: int, count: int) -> tuple[int, ...]:
    """The confirmation's first ``count`` deciding seeds (they choose the answer)."""
    return tuple(study_seed + DECIDE_OFFSET + i for i in range(count))


def report_seeds(study_seed: int, count: int) -> tuple[int, ...]:
    """The confirmation's first ``count`` reporting seeds (they measure the chosen answer)."""
    return tuple(study_seed + REPORT_OFFSET + i for i in range(count))
