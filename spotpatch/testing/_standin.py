"""A stand-in evaluator that scores a config in milliseconds, without training, and a worker
process built on it: what the soak test runs by the hundred while it kills workers.

The evaluator logs every evaluation it starts (one append-only file per process, one line per
evaluation: the trial's seed), so a test can count how often each trial was evaluated; it
raises at random, seeded by the trial's seed, so a run's failures are the same whichever
process scores a trial.
"""

from __future__ import annotations

import collections
import os
import random
import time
from pathlib import Path

from spotpatch.evaluators import EvalResult
from spotpatch.spaces import PatchConfig, PatchSpace
from spotpatch.testing._synthetic import synthetic_space

__all__ = ["STAND_IN_ERROR", "StandInEvaluator", "evaluation_counts", "stand_in_worker"]

STAND_IN_ERROR = "RuntimeError: the stand-in evaluator failed on purpose"


class StandInEvaluator:
    """Scores a config by a noisy function of its bytes in a few milliseconds.

    Args:
        space: the study's patch space.
        log_dir: a folder for the evaluation logs (None: no log).
        fail_rate: the chance that an evaluation raises.
        delay: (shortest, longest) seconds an evaluation takes.
        seed: with the trial's seed, decides failures, noise and delay.
        score: ``score(sites, seed)`` gives the mAP instead (a test's known scores).
        test_score: ``test_score(sites, seed)`` gives a test-split mAP (None: the task has no
            test split).
        tensors: ``tensors(config)`` gives the stored patch tensors instead of a placeholder
            (:func:`~spotpatch.testing.synthetic_tensors`: a payload of the config's bytes).

    Example:
        >>> evaluator = StandInEvaluator(synthetic_space(), fail_rate=0.1)
        >>> evaluator.evaluate(PatchConfig(), seed=3).patch_bytes > 0
        True
    """

    def __init__(
        self,
        space: PatchSpace,
        *,
        log_dir: str | Path | None = None,
        fail_rate: float = 0.0,
        delay: tuple[float, float] = (0.002, 0.02),
        seed: int = 0,
        score=None,
        test_score=None,
        tensors=None,
    ):
        self.space = space
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.fail_rate = fail_rate
        self.delay = delay
        self.seed = seed
        self.score = score
        self.test_score = test_score
        self.tensors = tensors
        self.calls: list[tuple[dict[str, str], int]] = []

    def evaluate(self, config: PatchConfig, *, callback=None, fractions=(), seed: int = 0):
        import torch

        if self.log_dir is not None:
            _append(self.log_dir / f"evaluations-{os.getpid()}.log", f"{seed}\n")
        self.calls.append((config.to_dict(), seed))
        rng = random.Random(f"{self.seed}:{seed}")
        time.sleep(rng.uniform(*self.delay))
        if rng.random() < self.fail_rate:
            raise RuntimeError(STAND_IN_ERROR.partition(": ")[2])
        size = self.space.patch_bytes(config)
        value = min(1.0, (size / self.space.full_bytes()) ** 0.5 * 0.8 + rng.gauss(0, 0.02))
        if self.score is not None:
            value = self.score(config.to_dict(), seed)
        seen = tuple((i + 1, value * f) for i, f in enumerate(fractions))
        if callback is not None:
            for (step, v), f in zip(seen, fractions, strict=True):
                callback(step, f, v)
        tensors = {"x": torch.zeros(2)} if self.tensors is None else self.tensors(config)
        test = None if self.test_score is None else self.test_score(config.to_dict(), seed)
        return EvalResult(value, value, size, 0.001, 0.001, config, tensors, seen, test)


def _append(path: Path, line: str) -> None:
    # One write of a short line to a file opened for appending: a process killed at any point
    # leaves whole lines only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def evaluation_counts(log_dir: str | Path) -> collections.Counter[int]:
    """How many evaluations each trial seed had, over every process's log in ``log_dir``."""
    counts: collections.Counter[int] = collections.Counter()
    for path in Path(log_dir).glob("evaluations-*.log"):
        counts.update(int(line) for line in path.read_text().split())
    return counts


def stand_in_worker(
    storage_url: str,
    study_name: str,
    total: int,
    *,
    log_dir: str,
    artifacts: str,
    sampler_seed: int,
    sampler: str = "random",
    fail_rate: float = 0.0,
    delay: tuple[float, float] = (0.002, 0.02),
    seed: int = 0,
    stale_after: float = 120.0,
) -> None:
    """One worker process of a study of :func:`synthetic_space` scored by
    :class:`StandInEvaluator`: runs trials until the study has ``total``, as a local worker of
    ``spotpatch run`` does (trial ``n`` trains with seed ``seed + n``). ``stale_after`` is the
    controller's: how soon a trial that another process left running is retried."""
    from spotpatch.search import StudyController, make_sampler, run_trials
    from spotpatch.studies import artifact_store, open_storage

    space = synthetic_space(granularity="block")
    controller = StudyController(
        open_storage(storage_url),
        study_name,
        space,
        sampler=make_sampler(sampler, sampler_seed),
        artifact_store=artifact_store(artifacts),
        stale_after=stale_after,
    )
    evaluator = StandInEvaluator(
        space, log_dir=log_dir, fail_rate=fail_rate, delay=delay, seed=seed
    )
    run_trials(controller, evaluator, total, seed=seed)
