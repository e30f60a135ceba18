"""The study controller: asks and tells the trials of one task's Optuna study.

Search sees configs and finished results, never torch modules. Per trial: :meth:`ask` (a trial,
or None when the study has its total) -> :meth:`job` (what a worker runs) -> score it anywhere
(:func:`spotpatch.search.run_job`) -> :meth:`tell` the outcome. What is stored goes through
:mod:`spotpatch.search._record`; liveness through :mod:`~spotpatch.search._heartbeat`;
recovering what stopped workers left behind through :mod:`~spotpatch.search._recovery`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from spotpatch.search._answer import answer_inputs, study_confirmation
from spotpatch.search._artifacts import store_patch
from spotpatch.search._confirmation import Confirmation, free_job, plan_with
from spotpatch.search._early_stopping import EarlyStopping, early_stop_references
from spotpatch.search._heartbeat import Heartbeat, host_lock, this_process
from spotpatch.search._progress import StudyProgress, summarize
from spotpatch.search._record import (
    TrialRecord,
    confirmation_seed,
    enqueue_attrs,
    queued_config,
    source_of,
    trial_records,
    write_asked,
    write_duplicate,
    write_heartbeat,
    write_pruned,
    write_result,
)
from spotpatch.search._recovery import (
    MAX_ATTEMPTS,
    attempts,
    beat_is_stale,
    fail_confirmation,
    give_up,
    recover_stale,
    retry_trial,
)
from spotpatch.search._repeats import next_repeat
from spotpatch.search._seeds import trial_seed
from spotpatch.search._study_record import (
    claim_proposer,
    confirm_plan,
    relaxation_record,
    warm_start_claim,
    write_confirm_plan,
    write_relaxation,
    write_warm_start_claim,
)
from spotpatch.search._trial import TrialJob, TrialOutcome
from spotpatch.search._units import DEFAULT_CONFIRM_MARGIN, DEFAULT_TOLERANCE
from spotpatch.spaces import PRESETS, PatchConfig, PatchSpace

__all__ = ["MAX_ATTEMPTS", "StudyController", "WARM_START", "WAIT"]

log = logging.getLogger("spotpatch")
#: :meth:`StudyController.next_work`'s answers besides a trial and None (the first is also the
#: heartbeat's key for the warm start's claim).
WARM_START = "warm start"
WAIT = "wait"
#: Proposals of already-trained configs in a row before one is trained anyway (a sampler stuck
#: in a space it has exhausted still ends).
MAX_DUPLICATES = 32


class StudyController:
    """Asks and tells the trials of one task's study.

    Args:
        storage: the Optuna storage holding the study.
        study_name: the study (directions: maximize mAP, minimize patch bytes).
        space: the task's patch space; its gates are the study's parameters.
        sampler: the Optuna sampler that proposes configs.
        sampler_for: makes the sampler from this process's index among those that asked the
            study for trials (processes sharing a study never propose in lockstep); replaces
            ``sampler`` at the first ask.
        artifact_store: where patch tensors go (an Optuna artifact store).
        early_stopping: on when given.
        heartbeat: seconds between heartbeats of running trials (default: a sixth of
            ``stale_after``).
        stale_after: a running trial with no heartbeat for this long is failed and retried.
        repeats: runs of the full fine-tune and of the answer on the means, each with its own
            seed (:func:`~spotpatch.search.next_repeat`); 1: none run twice.
        tolerance: mAP points the answer may lose against the full fine-tune.
        confirm_seeds: past the total, confirm the answer on this many paired seeds
            (:mod:`~spotpatch.search._confirmation`); 0: only a confirmation already started.
        confirm_images: what a confirmation that starts here scores its runs on: ``val+test``
            where the task has a test split, else ``val`` (one already started keeps its own).
        confirm_margin: how surely a config must hold on its deciding seeds, in standard
            deviations of the Δ its reporting seeds are expected to show (with
            ``confirm_seeds`` > 0, a confirmation already started takes it too).

    Example:
        >>> controller = StudyController(storage, "pets", space)  # doctest: +SKIP
        >>> while (trial := controller.ask(total=24)) is not None:  # doctest: +SKIP
        ...     controller.tell(trial, run_job(controller.job(trial, seed=0), evaluator))
    """

    def __init__(
        self,
        storage,
        study_name: str,
        space: PatchSpace,
        *,
        sampler=None,
        sampler_for: Callable[[int], Any] | None = None,
        artifact_store=None,
        early_stopping: EarlyStopping | None = None,
        heartbeat: float | None = None,
        stale_after: float = 120.0,
        repeats: int = 1,
        tolerance: float = DEFAULT_TOLERANCE,
        confirm_seeds: int = 0,
        confirm_images: str = "val",
        confirm_margin: float = DEFAULT_CONFIRM_MARGIN,
    ):
        import optuna
        from optuna.distributions import CategoricalDistribution

        self.storage = storage
        self.study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
        self.space = space
        self.artifact_store = artifact_store
        self.early_stopping = early_stopping
        self.stale_after = stale_after
        self.repeats = repeats
        self.tolerance = tolerance
        self.confirm_seeds = confirm_seeds
        self.confirm_images = confirm_images
        self.confirm_margin = confirm_margin
        self.distributions = {
            label: CategoricalDistribution(space.choices(label)) for label in space.groups()
        }
        self._study_id = storage.get_study_id_from_name(study_name)
        self._heartbeat = Heartbeat(stale_after / 6 if heartbeat is None else heartbeat)
        self._presets: dict[str, dict[str, str]] | None = None
        self._sampler_for = sampler_for
        self._tensor_sets: dict[frozenset, frozenset[str]] = {}

    # -- reading ------------------------------------------------------------------------------
    def records(self) -> list[TrialRecord]:
        """Every trial of the study, as stored."""
        return trial_records(self.study)

    def counted(self) -> int:
        """Trials toward the total: finished ones (retried failures aside) and running ones."""
        return sum(r.counts_toward_total() for r in self.records())

    def progress(self, total: int) -> StudyProgress:
        records = self.records()
        state = summarize(records, total, self.space.full_bytes())
        return dataclasses.replace(state, confirm_left=self._confirm_left(records, state))

    def _confirm_left(self, records: list[TrialRecord], state: StudyProgress) -> int:
        """The confirmation runs still to train, at the least (running ones included): while
        the search runs, the ``4 x confirm_seeds`` of a confirmation whose first config holds;
        then the runs it needs now, and while it decides the settled config's reporting runs
        to come."""
        if state.done < state.total or state.running:
            return 4 * self.confirm_seeds
        confirmation = self.confirmation(records)
        if confirmation is None or confirmation.state == "failed":
            return 0
        # a done confirmation needs no run and has settled its config: 0 below as well
        to_come = confirmation.plan.seeds if confirmation.trial is None else 0
        return len(confirmation.needed) + to_come

    def config_of(self, trial) -> PatchConfig:
        """The config a trial trains: the one it was queued with, else its gates'."""
        queued = queued_config(trial)
        return queued if queued is not None else self.space.config_from_gates(trial.params)

    def preset_of(self, config: PatchConfig) -> str | None:
        """The fixed recipe (``head``, ``bn``, ...) a config equals, if any."""
        if self._presets is None:
            self._presets = {name: self.space.preset(name).to_dict() for name in PRESETS}
        wanted = config.to_dict()
        return next((name for name, c in self._presets.items() if c == wanted), None)

    # -- asking -------------------------------------------------------------------------------
    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Hold the study's host lock: no other process of this host asks meanwhile (for work
        that must happen once per study, such as the warm start)."""
        return host_lock(self.storage, self.study.study_name)

    def enqueue(self, configs: list[PatchConfig], *, source: str) -> int:
        """Enqueue configs as the next trials (those already tried or queued, or storing the
        same tensors as one, are skipped).

        A config the gates cannot express (a fixed recipe in a coarser space) is queued with
        its nearest gates as params and trains as it is: a reference trial, stored and counted
        like any other.
        """
        known = {
            self._tensors_of(
                r.sites if r.sites is not None else self.space.config_from_gates(r.params)
            )
            for r in self.records()
            if r.confirm_stage is None
        }
        added = 0
        for config in configs:
            if self._tensors_of(config) in known:
                continue
            params = self.space.nearest_gates(config)
            self.study.enqueue_trial(params, user_attrs=enqueue_attrs(source, config=config))
            known.add(self._tensors_of(config))
            added += 1
        return added

    def ask(self, total: int):
        """The next trial (an Optuna ``Trial``), or None when ``total`` trials are done or
        running."""
        work = self.next_work(total, waits=False)
        return None if work == WAIT else work

    def next_work(self, total: int, *, warm_start: bool = False, waits: bool = True):
        """What this process should do next for the study: a trial (an Optuna ``Trial``),
        :data:`WARM_START` (this process now holds the study's warm start: run it, then
        :meth:`finish_warm_start`), :data:`WAIT` (another process runs the warm start and no
        queued trial is left meanwhile, or the study has its ``total`` only once the trials now
        running finish), or None (the study has its ``total``, nothing runs and nothing is due
        past it; with ``waits=False``, as soon as it has its ``total`` while a trial runs). Past
        the ``total`` come the repeats of an answer the last trials found, then the runs of its
        confirmation (:mod:`~spotpatch.search._confirmation`), which parallel processes share.

        With ``warm_start``, a study without a warm-start record runs one before the sampler
        proposes anything; its queued trials (the presets) may run meanwhile.
        """
        import optuna

        with self.exclusive():
            records = self.records()
            if recover_stale(self.study, self.storage, records, self.stale_after):
                records = self.records()
            S = optuna.trial.TrialState
            if sum(r.counts_toward_total() for r in records) >= total:
                # Done once no search trial runs: a running trial may still fail and need a
                # retry, or change the answer.
                if any(r.state == S.RUNNING and r.confirm_stage is None for r in records):
                    return WAIT if waits else None
                # An answer the last trials found gets its repeats past the total: a study does
                # not end on one lucky run. A repeat that failed is queued again as a retry,
                # taken first; other trials still queued stay queued, for a larger total.
                retry = _queued_repeat(records)
                if retry is not None:
                    trial = self._take(retry)
                    if trial is None:
                        return WAIT if waits else None
                elif (again := next_repeat(records, self.repeats, self.tolerance)) is not None:
                    trial = self._repeat(again)
                else:
                    trial = self._confirm_work(records)
                    if trial is None or trial == WAIT:
                        return WAIT if trial == WAIT and waits else None
            else:
                if warm_start and relaxation_record(self.study) is None:
                    if self._claim_warm_start():
                        return WARM_START
                    if not any(r.state == S.WAITING for r in records):
                        return WAIT
                trial = self._ask_new(records)
            # Stamped and described before the lock goes: a RUNNING trial always names its
            # process and its config, and no other host fails it before it is written.
            self._heartbeat.add(trial.number, functools.partial(self._stamp_trial, trial.number))
            config = self.config_of(trial)
            write_asked(trial, config, self.space.patch_bytes(config), self.preset_of(config))
        return trial

    def _tensors_of(self, config: PatchConfig | Mapping[str, str]) -> frozenset[str]:
        """What a config (or its stored ``{site: kind}``) trains and stores: configs that differ
        only in names (``dw`` and ``full`` on a depthwise site store the same tensors) train the
        same patch. Remembered per config: every ask compares against every trained trial."""
        sites = config.to_dict() if isinstance(config, PatchConfig) else config
        key = frozenset(sites.items())
        tensors = self._tensor_sets.get(key)
        if tensors is None:
            config = PatchConfig.from_dict(sites)
            tensors = self._tensor_sets[key] = frozenset(self.space.patch_tensors(config))
        return tensors

    def _ask_new(self, records: list[TrialRecord]):
        """Ask for the next trial: a queued one as it is, else a repeat
        (:func:`~spotpatch.search.next_repeat`, with ``repeats`` > 1), else the sampler's
        proposal of a config not trained yet. A proposal that trains the same tensors as a
        trained config is told that trial's stored result (the sampler learns from it) and the
        sampler asked again."""
        if self._sampler_for is not None:  # the study's lock is held: the index is ours
            self.study.sampler = self._sampler_for(claim_proposer(self.study))
            self._sampler_for = None
        again = self._due_repeat(records)
        if again is not None:
            return self._repeat(again)
        trained = {
            self._tensors_of(r.sites): r for r in records if r.complete and r.sites is not None
        }
        for _ in range(MAX_DUPLICATES):
            trial = self.study.ask(self.distributions)
            if queued_config(trial) is not None:
                return trial  # queued on purpose: a preset, the warm start's or a retry
            earlier = trained.get(self._tensors_of(self.config_of(trial)))
            if earlier is None:
                return trial
            log.info("trial %d proposes trial %d's config again", trial.number, earlier.number)
            self.study.tell(trial, values=write_duplicate(trial, earlier))
        return self.study.ask(self.distributions)

    def _due_repeat(self, records: list[TrialRecord]) -> TrialRecord | None:
        """The trial whose config runs again now (:func:`~spotpatch.search.next_repeat`); none
        while trials are queued (they come first)."""
        import optuna

        if any(r.state == optuna.trial.TrialState.WAITING for r in records):
            return None
        return next_repeat(records, self.repeats, self.tolerance)

    def _repeat(self, again: TrialRecord):
        """Start a run of ``again``'s config with another seed (a config that decides the
        selection)."""
        attrs = enqueue_attrs("repeat", repeat_of=again.number, config=again.config)
        return self._start(dict(again.params), attrs)

    def _take(self, queued: TrialRecord):
        """Run the queued trial ``queued`` now (Optuna's own ``study.ask()`` takes the oldest
        queued trial); None when a process of another host took it first. Under the study's
        lock."""
        import optuna

        storage = self.study._storage  # the study's own: Optuna's cache in front of the given one
        trial_id = storage.get_trial_id_from_study_id_trial_number(self._study_id, queued.number)
        if not storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING):
            return None  # another host took it first
        trial = optuna.Trial(self.study, trial_id)
        for name, distribution in self.distributions.items():
            trial.suggest_categorical(name, distribution.choices)  # its queued gates
        return trial

    def _start(self, params: Mapping[str, Any], attrs: Mapping[str, Any]):
        """A trial of ``params`` (gates), running from now, that carries ``attrs`` as a queued
        trial would. Not asked through Optuna's queue: ``study.ask()`` takes the oldest queued
        trial, and trials still queued when the study reached its total (presets, the warm
        start's configs) stay queued, for a larger total on a later run."""
        import optuna

        template = optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING,
            params=dict(params),
            distributions={name: self.distributions[name] for name in params},
            system_attrs={"fixed_params": dict(params)},
            user_attrs=dict(attrs),
        )
        storage = self.study._storage  # the study's own: Optuna's cache in front of the given one
        trial_id = storage.create_new_trial(self._study_id, template_trial=template)
        return optuna.Trial(self.study, trial_id)

    def confirmation(self, records: list[TrialRecord] | None = None) -> Confirmation | None:
        """Where the study's confirmation stands under this controller's settings (None: none
        started and ``confirm_seeds`` is 0, or none can start)."""
        plan = plan_with(
            confirm_plan(self.study), self.confirm_seeds, self.confirm_images, self.confirm_margin
        )
        if plan is None:
            return None
        inputs = answer_inputs(self.study, self.records() if records is None else records)
        return study_confirmation(inputs, plan=plan, tolerance=self.tolerance)

    def _confirm_work(self, records: list[TrialRecord]):
        """The next confirmation run (an Optuna ``Trial``), :data:`WAIT` while the runs still
        needed all run elsewhere, or None when it is done (or there is none). Under the lock."""
        state = self.confirmation(records)
        if state is None:
            return None
        if confirm_plan(self.study) != state.plan:  # what status and report then read
            write_confirm_plan(self.study, state.plan)
        if not state.needed:
            return None
        job = free_job(state, records)
        if job is None:
            return WAIT
        config = PatchConfig.from_dict(job.sites)
        attrs = enqueue_attrs("confirm", config=config, confirm=(job.seed, job.stage))
        return self._start(self.space.nearest_gates(config), attrs)

    def claim_warm_start(self, total: int) -> bool:
        """Take the study's warm start for this process, unless the study has its ``total``,
        has a warm start already, or another live process runs it."""
        with self.exclusive():
            if self.counted() >= total or relaxation_record(self.study) is not None:
                return False
            return self._claim_warm_start()

    def _claim_warm_start(self) -> bool:
        claim = warm_start_claim(self.study)
        here = this_process()
        mine = claim is not None and (claim.get("host"), claim.get("pid")) == (
            here["host"],
            here["pid"],
        )
        if claim is None or mine or beat_is_stale(claim, self.stale_after):
            self._heartbeat.add(WARM_START, self._stamp_claim)
            return True
        return False

    def finish_warm_start(self, result) -> int:
        """Store the warm start's record, queue its distinct configs as the next trials and
        release the claim; returns how many configs were queued."""
        with self.exclusive():
            write_relaxation(self.study, result)
            added = self.enqueue(result.distinct_configs(), source="relaxation")
            self.abandon_warm_start()
        return added

    def abandon_warm_start(self) -> None:
        """Release this process's claim on the warm start (it stopped): another may take it."""
        self._heartbeat.remove(WARM_START)
        write_warm_start_claim(self.study, None)

    def job(self, trial, seed: int) -> TrialJob:
        """What a worker needs to score ``trial``: its seed is the study's ``seed`` plus its
        number, a confirmation run's its own (:mod:`~spotpatch.search._seeds`). A repeat or a
        confirmation run is not stopped early: it runs to be averaged."""
        confirming = source_of(trial) == "confirm"
        early = None if source_of(trial) == "repeat" or confirming else self.early_stopping
        references = ()
        if early is not None:
            size = self.space.patch_bytes(self.config_of(trial))
            references = tuple(
                tuple(sorted(ref.items())) for ref in early_stop_references(self.records(), size)
            )
        return TrialJob(
            number=trial.number,
            sites=self.config_of(trial).to_dict(),
            seed=confirmation_seed(trial) if confirming else trial_seed(seed, trial.number),
            fractions=tuple(early.checkpoints) if early else (),
            margin=early.margin if early else 0.0,
            references=references,
        )

    # -- telling ------------------------------------------------------------------------------
    def tell(self, trial, outcome: TrialOutcome) -> None:
        """Record how a trial ended: scored (metrics, config, patch tensors as an artifact),
        failed (its error; its config is asked again, see :meth:`tell_failed`) or stopped
        early (the mAPs that stopped it)."""
        import optuna

        artifact_id = None
        try:
            if outcome.result is not None:
                artifact_id, sha256 = self._upload(trial, outcome.result.tensors)
                values = write_result(trial, outcome.result, artifact_id, sha256)
                self.study.tell(trial, values=values)
            elif outcome.error is not None:
                log.warning("trial %d failed: %s", trial.number, outcome.error)
                self.tell_failed(trial, outcome.error, raised=True)
            else:
                write_pruned(trial, outcome.intermediate)
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            if not self._finished_elsewhere(trial):
                raise
            self._drop(trial, artifact_id)
        finally:
            self._heartbeat.remove(trial.number)

    def _finished_elsewhere(self, trial) -> bool:
        """Whether another process finished ``trial`` while this one ran it: it failed the
        trial when no heartbeat of it reached the storage for ``stale_after`` seconds (a
        network cut, a process paused), and queued its config again."""
        import optuna

        trial_id = self.storage.get_trial_id_from_study_id_trial_number(
            self._study_id, trial.number
        )
        return self.storage.get_trial(trial_id).state != optuna.trial.TrialState.RUNNING

    def _drop(self, trial, artifact_id: str | None) -> None:
        log.warning(
            "trial %d: another process failed it while this one ran it (no heartbeat of it "
            "reached the storage for %.0f s); its result is dropped, and its config runs again "
            "as its retry",
            trial.number,
            self.stale_after,
        )
        if artifact_id is not None:
            with contextlib.suppress(Exception):  # an orphan file only costs its bytes
                self.artifact_store.remove(artifact_id)

    def tell_interrupted(self, trial, why: str = "interrupted") -> None:
        """A trial that stopped before it finished (Ctrl-C): failed with ``why``, and its
        config queued to run again (on resume, or next; a confirmation run is asked again by
        the confirmation, which still needs it)."""
        if source_of(trial) == "confirm":
            self._heartbeat.remove(trial.number)
            fail_confirmation(self.study, self.storage, trial.number, f"not finished: {why}")
            return
        self._retry(trial, f"not finished: {why}")

    def tell_failed(self, trial, why: str, *, raised: bool = False) -> None:
        """A trial that failed: it raised (``why`` is its error), or its worker died before it
        sent an outcome. Failed with ``why`` and its config queued again, unless it is the
        :data:`MAX_ATTEMPTS` th run of that config in a row to fail (a retry of a retry...):
        then it stays failed, and counts."""
        if source_of(trial) == "confirm":  # asked again while the confirmation needs it
            self._heartbeat.remove(trial.number)
            text = why if raised else f"not finished: {why}"
            fail_confirmation(self.study, self.storage, trial.number, text)
            return
        runs = attempts(self.records(), trial.number)
        if runs < MAX_ATTEMPTS:
            self._retry(trial, why if raised else f"not finished: {why}")
            return
        self._heartbeat.remove(trial.number)
        give_up(self.study, self.storage, trial.number, why, runs)

    def _retry(self, trial, why: str) -> None:
        self._heartbeat.remove(trial.number)
        with self.exclusive():
            config = self.config_of(trial)
            retry_trial(self.study, self.storage, trial.number, trial.params, why, config=config)

    # -- internals ----------------------------------------------------------------------------
    def _stamp_trial(self, number: int, stamp) -> None:
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, number)
        write_heartbeat(self.storage, trial_id, stamp)

    def _stamp_claim(self, stamp) -> None:
        write_warm_start_claim(self.study, stamp)

    def _upload(self, trial, tensors) -> tuple[str | None, str | None]:
        """Store a trial's patch tensors (:func:`~spotpatch.search._artifacts.store_patch`):
        the artifact's id and the sha256 its readers check."""
        if self.artifact_store is None or source_of(trial) == "confirm":
            return None, None  # a confirmation run is a number, not a patch to ship
        return store_patch(self.artifact_store, trial, tensors)


def _queued_repeat(records: list[TrialRecord]) -> TrialRecord | None:
    """The first queued retry of a repeat (or of a retry of one), if any."""
    import optuna

    by_number = {r.number: r for r in records}

    def origin(r: TrialRecord) -> TrialRecord:
        while r.retry_of is not None and r.retry_of in by_number:
            r = by_number[r.retry_of]
        return r

    return next(
        (
            r
            for r in records
            if r.state == optuna.trial.TrialState.WAITING
            and r.retry_of is not None
            and origin(r).source == "repeat"
        ),
        None,
    )
