"""The stored format: what the record writer stores reads back the same, trials written by
earlier versions (no ``source`` on presets, no ``map50``) still read, and on an RDB storage a
trial's attributes of one write are one commit, in the same rows as one commit per attribute."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch
from sqlalchemy import event

from spotpatch.evaluators import EvalResult
from spotpatch.search import (
    StudyMeta,
    _record,
    relaxation_record,
    relaxation_trials,
    spotpatch_study_names,
    study_meta,
    trial_records,
    write_study_meta,
)
from spotpatch.spaces import PatchConfig
from spotpatch.studies import open_storage
from spotpatch.testing import completed_trial, failed_trial, synthetic_meta

S = optuna.trial.TrialState


def _meta(name: str) -> StudyMeta:
    return synthetic_meta(
        name,
        classes=("a", "b"),
        model="spotpatch-tiny",
        kinds=("bn", "full"),
        train={"steps": 1},
        category_ids=(3, 7),
    )


def _result(sites: dict[str, str], value: float, size: int) -> EvalResult:
    config = PatchConfig.from_dict(sites)
    return EvalResult(
        value, value + 0.1, size, 2.0, 0.5, config, {"x": torch.zeros(1)}, ((3, 0.2),)
    )


def test_written_trials_read_back():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trials(
        [
            completed_trial(_result({}, 0.3, 100), source="preset", preset="head"),
            completed_trial(_result({"a.0": "full", "b.1": "bn"}, 0.5, 400), artifact_id="x1"),
            failed_trial("RuntimeError: boom"),
        ]
    )
    head, searched, failed = trial_records(study)
    assert (head.source, head.preset, head.summary) == ("preset", "head", "head only")
    assert head.complete and head.map == 0.3 and head.map50 == pytest.approx(0.4)
    assert searched.source == "sampler" and searched.artifact_id == "x1"
    assert searched.config == PatchConfig.from_dict({"a.0": "full", "b.1": "bn"})
    assert searched.summary == "full x1, bn x1" and searched.patch_bytes == 400
    assert searched.intermediate == ((3, 0.2),) and searched.seconds == pytest.approx(2.5)
    assert not failed.complete and failed.error == "RuntimeError: boom"
    assert failed.state == S.FAIL and failed.counts_toward_total()


def test_trials_of_an_earlier_format_still_read():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(
        optuna.trial.create_trial(
            values=[0.4, 200.0],
            user_attrs={"config": {"a.0": "bn"}, "preset": "bn", "patch_bytes": 200},
            state=S.COMPLETE,
        )
    )
    (record,) = trial_records(study)
    assert record.source == "preset" and record.map50 is None and record.seconds == 0.0
    assert record.map == 0.4 and record.patch_bytes == 200 and record.intermediate == ()


def test_study_listing_keeps_spotpatch_studies_only():
    storage = optuna.storages.InMemoryStorage()
    for name in ("b", "a"):
        study = optuna.create_study(
            study_name=name, storage=storage, directions=["maximize", "minimize"]
        )
        write_study_meta(study, _meta(name))
    optuna.create_study(study_name="other", storage=storage)
    assert spotpatch_study_names(storage) == ["a", "b"]
    study = optuna.load_study(study_name="a", storage=storage)
    assert study_meta(study) == _meta("a") and study.metric_names == ["map", "patch_bytes"]


def test_warm_start_cost_in_trial_equivalents():
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert relaxation_record(study) is None
    study.set_user_attr("relaxation", {"seconds": 5.0, "steps": 10, "phases": []})
    study.add_trials([completed_trial(_result({}, 0.3, 100)), failed_trial("x")])
    relaxation = relaxation_record(study)
    assert relaxation.seconds == 5.0 and relaxation.phases == ()
    assert relaxation_trials(relaxation, trial_records(study)) == pytest.approx(2.0)
    assert relaxation_trials(relaxation, []) is None and relaxation_trials(None, []) is None


def _write_one_trial(storage) -> tuple[optuna.trial.FrozenTrial, int]:
    """A trial asked, told a result, then a failed one marked retried, as the controller and
    recovery write them; returns the first as stored and the commits its writes took."""
    study = optuna.create_study(
        study_name="s", storage=storage, directions=["maximize", "minimize"]
    )
    commits = [0]
    engine = getattr(storage, "engine", None)
    if engine is not None:
        event.listen(engine, "commit", lambda conn: commits.__setitem__(0, commits[0] + 1))
    trial = study.ask()
    commits[0] = 0
    result = _result({"a.0": "full", "b.1": "bn"}, 0.5, 400)
    _record.write_asked(trial, result.config, 400, None)
    values = _record.write_result(trial, result, "x1", "ab" * 32)
    written = commits[0]
    study.tell(trial, values=values)
    failed = study.ask()
    _record.write_pruned(failed, ((2, 0.1), (4, 0.2)))
    _record.mark_retried(storage, failed._trial_id, "its worker stopped")
    study.tell(failed, state=S.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # nothing half-written
        _record.mark_retried(storage, failed._trial_id, "again")
    return study.get_trials(), written


def _same(a: optuna.trial.FrozenTrial, b: optuna.trial.FrozenTrial) -> bool:
    ignore = {"started": None, "heartbeat": None}
    return (
        a.user_attrs == b.user_attrs
        and a.system_attrs == b.system_attrs
        and dataclasses.replace(_record.trial_record(a), **ignore)
        == dataclasses.replace(_record.trial_record(b), **ignore)
    )


def test_a_write_is_one_commit_in_the_rows_of_one_commit_per_attribute(tmp_path, monkeypatch):
    batched, commits = _write_one_trial(open_storage(f"sqlite:///{tmp_path / 'new.db'}"))
    assert commits == 2  # what the trial stores when asked, then when told
    # The way earlier versions wrote: a commit per attribute (Optuna's setters), as every
    # storage without the batched writer still does.
    monkeypatch.setattr(_record, "_rdb_storage", lambda storage: None)
    one_by_one, commits = _write_one_trial(open_storage(f"sqlite:///{tmp_path / 'old.db'}"))
    assert commits == 12  # 2 attributes asked, 10 told
    in_memory, _ = _write_one_trial(optuna.storages.InMemoryStorage())
    assert batched[0].user_attrs["artifact_id"] == "x1" and batched[1].system_attrs
    for new, old, memory in zip(batched, one_by_one, in_memory, strict=True):
        assert _same(new, old) and _same(new, memory)
    record = _record.trial_record(batched[1])
    assert record.retried and record.error == "its worker stopped" and record.pruned_at == 4
