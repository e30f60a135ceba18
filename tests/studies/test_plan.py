"""`spotpatch plan` on stored studies: the exact plan, its comparison and its errors."""

from __future__ import annotations

import json

from spotpatch.cli import main
from spotpatch.search import front_points, plan_fleet, study_meta, trial_records
from spotpatch.studies import fleet_plan, open_storage
from spotpatch.testing import synthetic_study


def test_plan_picks_one_front_point_per_study_within_the_budget(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/s.db"
    storage = open_storage(url)
    studies = [synthetic_study(storage, name, trials=12, seed=i) for i, name in enumerate("ab")]
    smallest = sum(min(int(t.values[1]) for t in s.trials if t.values) for s in studies)
    budget = 3 * smallest
    plan = fleet_plan(storage, budget)
    expected = plan_fleet({s.study_name: front_points(trial_records(s)) for s in studies}, budget)
    assert plan.choices == expected.choices and plan.total_bytes <= budget
    assert plan.full_bytes == sum(study_meta(s).full_bytes for s in studies)

    assert main(["plan", "--budget", str(budget), "--storage", url, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["total_bytes"] == plan.total_bytes
    assert {k: v["trial"] for k, v in printed["choices"].items()} == {
        k: p.number for k, p in plan.choices.items()
    }
    assert main(["plan", "--budget", str(budget), "--storage", url]) == 0
    assert "one full detector per task" in capsys.readouterr().out


def test_plan_errors_are_one_line_and_exit_2(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/s.db"
    open_storage(url)  # an empty storage
    assert main(["plan", "--budget", "1MB", "--storage", url]) == 2
    assert "no spotpatch study" in capsys.readouterr().err
    synthetic_study(open_storage(url), "a", trials=5)
    for budget, message in (("10", "cannot hold even the smallest patch"), ("lots", "not a byte")):
        assert main(["plan", "--budget", budget, "--storage", url]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_without_a_budget_the_plan_is_every_studys_answer(tmp_path, capsys):
    from spotpatch.search import study_answer

    url = f"sqlite:///{tmp_path}/s.db"
    storage = open_storage(url)
    studies = [synthetic_study(storage, name, trials=12, seed=i) for i, name in enumerate("ab")]
    synthetic_study(storage, "c", trials=0)
    plan = fleet_plan(storage)
    answers = {s.study_name: study_answer(s) for s in studies}
    assert {n: a.trial for n, a in plan.choices.items()} == {
        n: a.trial for n, a in answers.items()
    }
    assert plan.total_bytes == sum(a.patch_bytes for a in answers.values())
    assert list(plan.missing) == ["c"] and "no completed trial" in plan.missing["c"]
    assert main(["plan", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "the answers" in out and "c: no answer: " in out
