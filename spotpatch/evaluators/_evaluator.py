"""The patch evaluator: train one patch config for a step budget, then score it on val.

The score is that of the patch *as stored* (cast to its storage dtype, or quantized at int8,
and loaded back), so a saved patch applied to a freshly loaded base reproduces it exactly.
Where the detector allows it, a trial runs from its first patched site on: the frozen
activations before it come from the task's prefix cache (``_prefix``), built by the first trial
that needs them (in its training seconds) and reused by the later ones.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import Tensor

from spotpatch._errors import UserError
from spotpatch.evaluators._base import Base
from spotpatch.evaluators._coco import Task
from spotpatch.evaluators._metrics import coco_map
from spotpatch.evaluators._prefix import CacheRequest, PrefixCache, cut_point, prefix_caches
from spotpatch.evaluators._trainer import TrainSettings, train_detector
from spotpatch.spaces import AppliedPatch, Patch, PatchConfig, PatchSpace

__all__ = ["EvalResult", "PatchEvaluator", "evaluate", "IntermediateCallback"]

#: ``callback(step, fraction, map)`` at each checkpoint; raising from it stops the trial.
IntermediateCallback = Callable[[int, float, float], None]


@dataclass(frozen=True)
class EvalResult:
    """The score of one patch config.

    Attributes:
        map: COCO AP@[.5:.95] on val, in [0, 1].
        map50: COCO AP50 on val.
        patch_bytes: exact payload of the stored patch.
        train_seconds: wall time of training (intermediate scoring excluded).
        eval_seconds: wall time of the final scoring.
        config: the config scored.
        tensors: the patch tensors as stored.
        intermediate: (step, map) at each checkpoint.
        test_map: COCO AP@[.5:.95] on the task's test split (None: the task has none). Nothing
            chooses on it; a study's confirmation scores on val and test together.
    """

    map: float
    map50: float
    patch_bytes: int
    train_seconds: float
    eval_seconds: float
    config: PatchConfig
    tensors: Mapping[str, Tensor] = field(repr=False)
    intermediate: tuple[tuple[int, float], ...] = ()
    test_map: float | None = None

    def metrics(self) -> dict[str, float]:
        return {"map": self.map, "map50": self.map50, "patch_bytes": self.patch_bytes}


class PatchEvaluator:
    """Scores patch configs for one task on one base.

    Call sequence: build it once per task (this loads nothing), then ``evaluate(config)`` per
    trial; ``space`` says which configs are valid; ``score(patch)`` rescores a stored patch.

    Example:
        >>> evaluator = PatchEvaluator(task, base, TrainSettings(steps=300))  # doctest: +SKIP
        >>> result = evaluator.evaluate(evaluator.space.preset("bn"))  # doctest: +SKIP
        >>> result.map, result.patch_bytes  # doctest: +SKIP
    """

    def __init__(
        self,
        task: Task,
        base: Base,
        settings: TrainSettings | None = None,
        *,
        kinds: Sequence[str] = ("bn", "dw", "lora4", "full"),
        granularity: str = "site",
        dtype: str = "float32",
        seed: int = 0,
        progress: bool | None = None,
    ):
        self.task = task
        self.base = base
        self.settings = settings or TrainSettings()
        self.seed = seed
        self.progress = progress
        self.space: PatchSpace = base.space(
            task.num_classes, kinds=kinds, granularity=granularity, dtype=dtype
        )

    def evaluate(
        self,
        config: PatchConfig,
        *,
        callback: IntermediateCallback | None = None,
        fractions: Sequence[float] = (),
        seed: int | None = None,
    ) -> EvalResult:
        """Train ``config``'s patch tensors, then score the stored patch on val (and on test,
        where the task has one).

        Args:
            config: the patch config (kinds outside the space's list are fine where a site
                allows them, so fixed presets evaluate in any space).
            callback: called as ``callback(step, fraction, map)`` at each of ``fractions`` of
                the step budget, with val mAP at that point.
            fractions: where in (0, 1) to score intermediately.
            seed: seeds the class head, new patch tensors and batch order (default: the
                evaluator's seed).
        """
        seed = self.seed if seed is None else seed
        for f in fractions:
            if not 0 < f < 1:
                raise UserError(f"intermediate fractions must be in (0, 1), got {f}")
        applied = self.base.apply(config, self.space, seed=seed)
        steps = self.settings.steps
        marks = sorted({max(1, min(steps - 1, round(f * steps))) for f in fractions})
        seen: list[tuple[int, float]] = []
        start = time.perf_counter()
        train_cache, val_cache = self._prefix_caches(applied)
        build_seconds = time.perf_counter() - start
        model = applied.model
        detect = None if val_cache is None else functools.partial(val_cache.detect, model)

        def checkpoint(step: int) -> None:
            value, _ = coco_map(model, self.task.val, self.task.category_ids, detect=detect)
            seen.append((step, value))
            if callback is not None:
                callback(step, step / steps, value)

        train_seconds = build_seconds + train_detector(
            model,
            self.settings.param_groups(applied.parameters_by_role()),
            self.task.train,
            self.settings,
            seed=seed,
            checkpoints=marks,
            on_checkpoint=checkpoint,
            step_losses=None
            if train_cache is None
            else functools.partial(train_cache.losses, model),
            progress=self.progress,
            desc=f"{self.task.name}: {config.summary()}"[:60],
        )
        tensors = applied.state()
        # Score what is stored: the same tensors, cast (int8: quantized) and loaded back.
        applied.load(tensors)
        start = time.perf_counter()
        value, value50 = coco_map(model, self.task.val, self.task.category_ids, detect=detect)
        test = None
        if self.task.test is not None:
            test = coco_map(model, self.task.test, self.task.category_ids)[0]
        return EvalResult(
            map=value,
            map50=value50,
            patch_bytes=self.space.patch_bytes(config),
            train_seconds=train_seconds,
            eval_seconds=time.perf_counter() - start,
            config=config,
            tensors=tensors,
            intermediate=tuple(seen),
            test_map=test,
        )

    def _prefix_caches(
        self, applied: AppliedPatch
    ) -> tuple[PrefixCache | None, PrefixCache | None]:
        """The task's train and val caches at the cut this patch runs from (None: computed in
        full)."""
        if not self.base.detector.cached_prefix:
            return None, None
        cut = cut_point(applied.model, list(applied.expected))
        if cut is None:
            return None, None
        name = self.task.name
        train, val = prefix_caches(
            applied.model,
            cut,
            [
                CacheRequest(self.task.train, f"{name} train", self.settings.hflip, train=True),
                CacheRequest(self.task.val, f"{name} val"),
            ],
            base=(self.base.name, self.base.sha256),
            cap=self.settings.prefix_cache,
        )
        return train, val

    def to_patch(self, result: EvalResult, **study) -> Patch:
        """The storable patch of a result (``study`` keys go to ``patch.json``'s study)."""
        return Patch(
            config=result.config,
            tensors=result.tensors,
            model=self.base.name,
            base_sha256=self.base.sha256,
            task=self.task.name,
            classes=self.task.classes,
            dtype=self.space.dtype,
            metrics=result.metrics(),
            study=study,
        )

    def score(self, patch: Patch, split: str = "val") -> tuple[float, float]:
        """(mAP, AP50) of a stored patch on ``val`` or ``test``; nothing trains."""
        if tuple(patch.classes) != self.task.classes:
            raise UserError(
                f"patch classes {list(patch.classes)} differ from task {self.task.name!r} "
                f"classes {list(self.task.classes)}"
            )
        data = getattr(self.task, split)
        if data is None:
            raise UserError(f"task {self.task.name!r} has no {split} split")
        space = self.space.with_options(dtype=patch.dtype)
        applied = self.base.apply_stored(patch, space)
        return coco_map(applied.model, data, self.task.category_ids)


def evaluate(
    config: PatchConfig,
    task: Task,
    base: Base,
    budget: TrainSettings,
    **options,
) -> EvalResult:
    """Train and score one patch config: ``PatchEvaluator(task, base, budget).evaluate(config)``.

    ``options`` go to :class:`PatchEvaluator` (``dtype``, ``seed``, ``progress``...) or, for
    ``callback`` and ``fractions``, to :meth:`PatchEvaluator.evaluate`.
    """
    call = {k: options.pop(k) for k in ("callback", "fractions") if k in options}
    return PatchEvaluator(task, base, budget, **options).evaluate(config, **call)
