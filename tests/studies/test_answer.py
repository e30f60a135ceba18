"""One answer per study, with known scores: every command names the same trial (for the answer
and for an explicit rule), a preset can be the answer, the confirmation chooses on some seeds
and reports on others, a walk that runs out of front says so, a stopped confirmation resumes
without retraining, and ``patch.json`` carries the confirmation."""

from __future__ import annotations

import json
import signal

import pytest

from spotpatch.cli import main
from spotpatch.search import (
    DEFAULT_CONFIRM_MARGIN,
    Noise,
    StudyController,
    confirm_plan,
    decide_seeds,
    make_sampler,
    reaches,
    report_seeds,
    run_trials,
    study_answer,
    trial_records,
)
from spotpatch.studies import artifact_store, create_or_load_study, load_study, open_storage
from spotpatch.testing import (
    SYNTHETIC_SITES,
    StandInEvaluator,
    synthetic_meta,
    synthetic_space,
    synthetic_tensors,
)

NAME = "pets"
SITES = [s for s, _, _ in SYNTHETIC_SITES]
#: Configs by how many leading sites they patch in full: A, B and C lie between head and full.
A, B, C = 2, 5, 8


def config(n: int) -> dict[str, str]:
    return {site: "full" for site in SITES[:n]}


def size_of(sites: dict[str, str]) -> int:
    return len(sites)  # head-only patches none, the full fine-tune all 12


def scores(search: dict[int, float], decide: dict[int, float], report: dict[int, float]):
    """``score(sites, seed)``: search runs score ``search[n]``; a deciding run of seed ``i`` the
    full fine-tune's ``0.70 + 0.01 i`` plus ``decide[n]``; a reporting run ``0.71 - 0.01 i`` plus
    ``report[n]`` (``n``: the config's patched sites, 12 for the full fine-tune)."""
    full = len(SITES)

    def score(sites: dict[str, str], seed: int) -> float:
        n = size_of(sites)
        if seed >= decide_seeds(0, 1)[0] + 1_000_000:
            i = seed - report_seeds(0, 1)[0]
            return 0.71 - 0.01 * i + (0.0 if n == full else report[n] + 0.001 * i)
        if seed >= decide_seeds(0, 1)[0]:
            i = seed - decide_seeds(0, 1)[0]
            return 0.70 + 0.01 * i + (0.0 if n == full else decide[n])
        return search[n]

    return score


SEARCH = {0: 0.50, A: 0.700, B: 0.703, C: 0.708, 12: 0.705}


class Study:
    """A study of the synthetic space: head, full, then A, B and C, scored by ``score``."""

    def __init__(self, tmp_path, score, *, tolerance=1.0, test_score=None, total=5, seeds=0):
        self.space = synthetic_space(granularity="block")
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{tmp_path}/s.db"
        self.storage = open_storage(self.url)
        self.artifacts = tmp_path / "artifacts"
        self.artifacts.mkdir(exist_ok=True)
        meta = synthetic_meta(
            NAME,
            granularity="block",
            kinds=self.space.kinds,
            full_bytes=self.space.full_bytes(),
            head_bytes=self.space.head_bytes(),
            artifacts=str(self.artifacts),
            tolerance=tolerance,
        )
        create_or_load_study(meta, self.storage, sampler=None)
        self.tolerance = tolerance
        self.evaluator = StandInEvaluator(
            self.space, score=score, test_score=test_score, tensors=synthetic_tensors, delay=(0, 0)
        )
        controller = self.controller(seeds)
        controller.enqueue([self.space.preset("head"), self.space.preset("full")], source="preset")
        from spotpatch.spaces import PatchConfig

        controller.enqueue([PatchConfig.from_dict(config(n)) for n in (A, B, C)], source="sampler")
        run_trials(controller, self.evaluator, total)
        self.trial = {0: 0, 12: 1, A: 2, B: 3, C: 4}  # patched sites -> trial number

    def controller(self, confirm_seeds: int = 0, **options) -> StudyController:
        return StudyController(
            self.storage,
            NAME,
            self.space,
            sampler=make_sampler("random", 0),
            artifact_store=artifact_store(self.artifacts),
            tolerance=self.tolerance,
            confirm_seeds=confirm_seeds,
            **options,
        )

    def confirm(self, seeds: int = 3, **options) -> None:
        run_trials(self.controller(seeds, **options), self.evaluator, 5)

    def study(self):
        return load_study(NAME, self.storage)


def _json(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def named(study: Study, capsys, tmp_path, rule: str | None = None) -> dict[str, int]:
    """The trial each command names, for the answer (``rule`` None) or an explicit rule."""
    from spotpatch.dashboard import dashboard_data

    select = [] if rule is None else ["--select", rule]
    out = tmp_path / f"export-{rule}"
    export = _json(capsys, "export", NAME, "--storage", study.url, "--out", str(out), "--json",
                   *select)  # fmt: skip
    report = _json(capsys, "report", "--storage", study.url, "--json", *select)
    data = dashboard_data(study.url, rule)
    (panel,) = data.studies
    across = data.across.rows[0][-3]  # the answer's cell
    names = {
        "export": export["study"]["trial"],
        "report": report["rows"][0]["answer"]["trial"],
        "dashboard star": panel.scatter.selected,
        "dashboard fleet": data.fleet.trials[0],
        "dashboard across": int(across.hover.split(",")[0].removeprefix("trial ")),
        "python": study_answer(study.study(), rule).trial,
    }
    if rule is None:
        status = _json(capsys, "status", "--storage", study.url, "--json")
        plan = _json(capsys, "plan", "--storage", study.url, "--json")
        names["status"] = status[0]["answer"]["trial"]
        names["plan"] = plan["choices"][NAME]["trial"]
    return names


def test_every_command_names_the_same_trial_and_confirmation_chooses_on_other_seeds(
    tmp_path, capsys, caplog
):
    decide = {A: -0.02, B: -0.008, C: 0.0}  # A falls short on the deciding seeds, B holds
    report = {B: -0.006}  # and is measured on fresh seeds: Δ -0.006 + 0.001 i
    study = Study(tmp_path, scores(SEARCH, decide, report))
    # On the search's means the answer is A: the smallest within a point of full's 0.705.
    for rule in (None, "within-full=1", "knee", "max-bytes=60000"):
        names = named(study, capsys, tmp_path, rule)
        assert len(set(names.values())) == 1, (rule, names)
        if rule in (None, "within-full=1"):
            assert set(names.values()) == {study.trial[A]}
    patch = json.loads((tmp_path / "export-None" / "patch.json").read_text())
    assert patch["confirmation"] is None
    # Past the total, the study confirms: A and full on 3 deciding seeds; A falls short, so B;
    # B holds, and B and full train on 3 fresh seeds.
    study.evaluator.calls.clear()
    study.confirm(3)
    calls = [(size_of(sites), seed) for sites, seed in study.evaluator.calls]
    decides, reports = decide_seeds(0, 3), report_seeds(0, 3)
    assert calls == [
        *[(n, s) for n in (A, 12, B) for s in decides],
        *[(n, s) for n in (12, B) for s in reports],
    ]
    answer = study_answer(study.study())
    c = answer.confirmation
    assert answer.trial == study.trial[B] and c.state == "done" and c.holds
    assert [s.trial for s in c.walk] == [study.trial[A], study.trial[B]]
    assert c.walk[0].versus.delta == pytest.approx(-0.02)
    assert c.walk[1].versus.delta == pytest.approx(-0.008)
    # The reported Δ is the fresh seeds' (-0.006 + 0.001 i), not the deciding seeds' -0.008.
    assert c.reported.seeds == 3 and c.reported.delta == pytest.approx(-0.005)
    runs = [r for r in trial_records(study.study()) if r.confirmed]
    reported = {r.confirm_seed for r in runs if r.confirm_stage == "report"}
    assert reported == set(report_seeds(0, 3)) and not reported & set(decide_seeds(0, 3))
    # Nothing past the total counts as a search trial, and nothing shows on the front.
    status = _json(capsys, "status", "--storage", study.url, "--json")[0]
    assert (status["done"], status["confirmed"]) == (5, 15)
    assert status["cost_trials"] == pytest.approx(20.0)
    # Every command now names B, and patch.json carries its confirmation.
    names = named(study, capsys, tmp_path)
    assert set(names.values()) == {study.trial[B]}, names
    patch = json.loads((tmp_path / "export-None" / "patch.json").read_text())
    conf = patch["confirmation"]
    assert conf["seeds"] == 3 and conf["holds"] is True and conf["walked"] == [2, 3]
    assert conf["images"] == "val"  # the stand-in task has no test split
    assert conf["delta"] == pytest.approx(-0.005)
    assert conf["full_map_mean"] == pytest.approx(0.70)
    assert conf["map_mean"] == pytest.approx(0.695)
    assert conf["delta_sd"] == pytest.approx(0.001 / 3**0.5)
    for key in ("map_sd", "full_map_sd", "delta_interval", "tolerance"):
        assert key in conf
    # An explicit rule naming another trial carries no confirmation of B's, and says so.
    caplog.clear()
    export = _json(capsys, "export", NAME, "--storage", study.url, "--out",
                   str(tmp_path / "knee"), "--json", "--select", "min-map=0.5")  # fmt: skip
    assert export["study"]["trial"] == 0 and export["confirmation"] is None
    assert "not confirmed" in caplog.text
    # A study past its confirmation asks for nothing more.
    assert study.controller(3).ask(5) is None


def test_a_preset_can_be_the_answer(tmp_path, capsys):
    search = {**SEARCH, 0: 0.699}  # head-only within a point of the full fine-tune's 0.705
    study = Study(tmp_path, scores(search, {0: -0.005}, {0: -0.004}))
    answer = study_answer(study.study())
    assert (answer.trial, answer.preset) == (0, "head")
    study.confirm(2)
    answer = study_answer(study.study())
    assert (answer.trial, answer.preset, answer.holds) == (0, "head", True)
    assert _json(capsys, "status", "--storage", study.url, "--json")[0]["answer"]["preset"] == (
        "head"
    )


def test_a_walk_that_runs_out_of_front_says_so(tmp_path, capsys, monkeypatch):
    from spotpatch.studies import _confirm

    study = Study(tmp_path, scores(SEARCH, {A: -0.03, B: -0.02, C: -0.015}, {}))
    study.confirm(2)
    answer = study_answer(study.study())
    c = answer.confirmation
    assert answer.trial == study.trial[12] and answer.preset == "full"
    assert c.walked_out and [s.trial for s in c.walk] == [2, 3, 4]
    assert "no patch smaller than the full fine-tune held within 1 points" in c.note
    assert c.reported.delta == 0.0 and c.holds
    # Every command says so, where it would print the full fine-tune's Δ against itself.
    said = "none smaller held (3 walked): the full fine-tune"
    assert c.delta_text() == said
    assert main(["status", "--storage", study.url]) == 0
    assert said in capsys.readouterr().out
    assert main(["report", "--storage", study.url]) == 0
    out = capsys.readouterr().out
    assert f"| {said} |" in out and "± 0.0 (2 paired seeds)" not in out
    assert "holds within the tolerance in 1 (1 of them the full fine-tune: no smaller" in out
    export = tmp_path / "export"
    assert main(["export", NAME, "--storage", study.url, "--out", str(export)]) == 0
    assert said in capsys.readouterr().out
    confirmation = json.loads((export / "patch.json").read_text())["confirmation"]
    assert confirmation["walked_out"] and confirmation["walked"] == [2, 3, 4]
    from spotpatch.dashboard import dashboard_data
    from spotpatch.dashboard._figures import scatter_figure

    (panel,) = dashboard_data(study.url).studies
    (star,) = [t for t in scatter_figure(panel.scatter).data if t.marker.symbol == "star"]
    assert f"Δ vs full on fresh seeds: {said}" in star.hovertext[0]
    monkeypatch.setattr(_confirm, "recorded_spec", lambda meta: None)
    monkeypatch.setattr(_confirm, "evaluator_of", lambda spec, **kw: study.evaluator)
    assert main(["confirm", NAME, "--storage", study.url, "--seeds", "2"]) == 0
    assert f"answer: trial {answer.trial}, {said}" in capsys.readouterr().out


def test_past_the_front_the_walk_takes_the_best_config_just_off_it(tmp_path):
    from spotpatch.spaces import PatchConfig

    D = 10  # one run at 0.706, below C's 0.708 with more bytes: off the front, within a point
    search = {**SEARCH, D: 0.706}
    study = Study(tmp_path, scores(search, {A: -0.03, B: -0.02, C: -0.015, D: 0.0}, {D: 0.0}))
    controller = study.controller()
    controller.enqueue([PatchConfig.from_dict(config(D))], source="sampler")
    run_trials(controller, study.evaluator, 6)
    run_trials(study.controller(2), study.evaluator, 6)
    answer = study_answer(study.study())
    c = answer.confirmation
    assert [s.trial for s in c.walk] == [2, 3, 4, 5] and answer.trial == 5
    assert answer.holds and not c.walked_out and c.note is None


def test_a_stopped_confirmation_resumes_without_retraining_a_stored_run(tmp_path):
    study = Study(tmp_path, scores(SEARCH, {A: -0.02, B: -0.008, C: 0.0}, {B: -0.006}))
    evaluate = study.evaluator.evaluate
    calls = {"n": 0}

    def stopped_at_the_fifth(config, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return evaluate(config, **kw)

    study.evaluator.calls.clear()
    study.evaluator.evaluate = stopped_at_the_fifth
    with pytest.raises(KeyboardInterrupt):
        study.confirm(3)
    before = [r for r in trial_records(study.study()) if r.confirmed]
    assert len(before) == 4
    # A run left RUNNING by a process killed outright is failed and asked again.
    controller = study.controller(3, stale_after=0.0)
    left = controller.ask(5)
    controller._heartbeat.remove(left.number)
    study.evaluator.evaluate = evaluate
    study.evaluator.calls.clear()
    study.confirm(3, stale_after=0.0)
    runs = [
        (size_of(r.sites), r.confirm_seed) for r in trial_records(study.study()) if r.confirmed
    ]
    assert len(runs) == len(set(runs)) == 15  # every run once, the stored four included
    trained = [(size_of(s), seed) for s, seed in study.evaluator.calls if seed >= 1_000_000]
    stored = {(size_of(r.sites), r.confirm_seed) for r in before}
    assert len(trained) == 15 - 4 and not set(trained) & stored
    assert study_answer(study.study()).confirmation.state == "done"


def test_the_confirm_command_does_what_the_study_does(tmp_path, capsys, monkeypatch):
    from spotpatch.studies import _confirm

    score = scores(SEARCH, {A: -0.02, B: -0.008, C: 0.0}, {B: -0.006})
    inside, apart = Study(tmp_path / "in", score), Study(tmp_path / "apart", score)
    inside.confirm(2)
    monkeypatch.setattr(_confirm, "recorded_spec", lambda meta: None)
    monkeypatch.setattr(_confirm, "evaluator_of", lambda spec, **kw: apart.evaluator)
    assert main(["confirm", NAME, "--storage", apart.url, "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "decide seed 1000000: trial" in out
    assert "answer: trial 3, -0.6 ± 0.1 (2 paired seeds) against the full fine-tune" in out
    assert out.rstrip().endswith("holds the tolerance of 1 points")

    def runs(study):
        return sorted(
            (r.confirm_stage, r.confirm_seed, len(r.sites), r.map)
            for r in trial_records(study.study())
            if r.confirmed
        )

    assert runs(apart) == runs(inside)
    assert study_answer(apart.study()).to_json() == study_answer(inside.study()).to_json()
    # Again: everything is stored, nothing trains.
    assert main(["confirm", NAME, "--storage", apart.url, "--seeds", "2"]) == 0
    assert " seed " not in capsys.readouterr().out
    # From a rule's pick, without walking: C is measured on fresh seeds as it is.
    data = _json(capsys, "confirm", NAME, "--storage", apart.url, "--seeds", "2", "--no-walk",
                 "--select", "min-map=0.706", "--json")  # fmt: skip
    assert data["answer"]["trial"] == apart.trial[C]
    assert data["answer"]["confirmation"]["walk"] == []
    assert main(["confirm", NAME, "--storage", apart.url, "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err


def test_the_full_fine_tune_as_the_answer_needs_no_deciding_runs(tmp_path):
    search = {0: 0.5, A: 0.69, B: 0.69, C: 0.69, 12: 0.705}  # none within a point of 0.705
    study = Study(tmp_path, scores(search, {}, {}))
    assert study_answer(study.study()).trial == study.trial[12]
    study.confirm(2)
    runs = [r for r in trial_records(study.study()) if r.confirmed]
    assert [(r.confirm_stage, len(r.sites)) for r in runs] == [("report", 12)] * 2
    c = study_answer(study.study()).confirmation
    assert (c.walk, c.walked_out, c.reported.delta, c.holds) == ((), False, 0.0, True)


def walk_abc(tmp_path, base, n, offset):
    """A study scored by ``base``, but config ``n``'s deciding run of seed ``i`` scores the full
    fine-tune's plus ``offset(i)``, confirmed on 3 seeds; its walk went A, B, then C."""
    first = decide_seeds(0, 1)[0]

    def score(sites, seed):
        if len(sites) == n and first <= seed < first + 1_000_000:
            return 0.70 + 0.01 * (seed - first) + offset(seed - first)
        return base(sites, seed)

    study = Study(tmp_path, score)
    study.confirm(3)
    c = study_answer(study.study()).confirmation
    assert [s.trial for s in c.walk] == [study.trial[k] for k in (A, B, C)]
    return study, c


def test_an_unsure_decision_races_more_seeds_and_holds_only_by_more_than_its_noise(tmp_path):
    # B's pairs straddle the tolerance's edge (-1 point): -0.2, -1.8, -0.2, -1.8...
    base = scores(SEARCH, {A: -0.02, C: 0.0}, {C: 0.0})
    study, c = walk_abc(tmp_path, base, B, lambda i: (-0.002, -0.018)[i % 2])
    seeds = [s.versus.seeds for s in c.walk]
    assert seeds == [3, 6, 3]  # A surely short, B raced to twice the seeds, C surely holds
    b = c.walk[1].versus
    assert b.holds(1.0) and not b.surely_holds(1.0)  # its mean is in, not by more than noise
    assert c.trial == study.trial[C]


def test_a_config_holds_by_more_than_the_pooled_noise_not_by_its_own_few_pairs(tmp_path):
    # A's pairs spread widely: -3, -1, -5 points
    base = scores(SEARCH, {B: -0.007, C: 0.0}, {C: 0.0})
    study, c = walk_abc(tmp_path, base, A, lambda i: (-0.03, -0.01, -0.05)[i % 3])
    b = c.walk[1].versus
    # B's own pairs agree to the digit (-0.7 each): alone they would hold by far more than
    # their spread of 0; pooled with A's, B is within a standard error of the edge, races to
    # twice the seeds and does not hold.
    assert b.seeds == 6 and b.holds(1.0) and not b.surely_holds(1.0)
    assert b.delta_sd > 0.003 and b.low < b.delta < b.high
    assert c.trial == study.trial[C]


def test_a_config_holds_by_more_than_the_noise_of_the_reporting_seeds_to_come(tmp_path):
    offsets = (0.0, -0.014, -0.004, -0.016, -0.014, -0.012)  # B's paired Δs
    base = scores(SEARCH, {A: -0.02, C: 0.0}, {C: 0.0})
    study, c = walk_abc(tmp_path, base, B, offsets.__getitem__)
    b = c.walk[1].versus
    # On its first three pairs B is at -0.6 ± 0.3 (pooled with A's): within a point by more
    # than their standard error, not by more than the noise the three reporting pairs will add
    # to its mean. It races, its next pairs take it to the edge, and it does not hold.
    pooled = Noise().plus([-0.02] * 3)  # A's pairs, walked before B
    three = pooled.decided([0.70 + o for o in offsets[:3]], [0.70] * 3, fresh=3)
    assert reaches(three.delta - three.delta_sd, -0.01)  # on its own standard error: it holds
    assert not three.surely_holds(1.0)
    assert b.seeds == 6 and not b.surely_holds(1.0) and b.margin > b.delta_sd
    assert c.trial == study.trial[C]
    assert c.to_json()["walk"][1]["decide"]["margin"] == pytest.approx(b.margin)


def test_a_wider_margin_walks_on_where_the_default_holds_and_the_plan_keeps_it(tmp_path):
    # A's deciding pairs: -0.2, -0.6, -0.4 points, again and again: within a point by far more
    # than their noise, not by eight times it.
    offsets = (-0.002, -0.006, -0.004)
    base = scores(SEARCH, {B: 0.0, C: 0.0}, {A: 0.0, B: 0.0, C: 0.0})
    first = decide_seeds(0, 1)[0]

    def score(sites, seed):
        if len(sites) == A and first <= seed < first + 1_000_000:
            return 0.70 + 0.01 * (seed - first) + offsets[(seed - first) % 3]
        return base(sites, seed)

    plain = Study(tmp_path / "plain", score)
    plain.confirm(3, confirm_margin=1.0)
    c = study_answer(plain.study()).confirmation
    assert c.trial == plain.trial[A] and c.plan.margin == 1.0
    one = c.walk[0].versus

    wide = Study(tmp_path / "wide", score)
    wide.confirm(3, confirm_margin=8.0)
    c = study_answer(wide.study()).confirmation
    a = c.walk[0].versus
    assert c.walk[0].trial == wide.trial[A] and a.holds(1.0) and not a.surely_holds(1.0)
    assert a.seeds == 6 and c.trial != wide.trial[A]  # raced, then walked on
    assert confirm_plan(wide.study()).margin == 8.0 and c.to_json()["margin"] == 8.0
    # Eight times the margin of the default's decision on the same three pairs.
    three = Noise().decided([0.70 + o for o in offsets], [0.70] * 3, fresh=3, scale=8.0)
    assert three.margin == pytest.approx(8 * one.margin)
    # Resumed with the default (a study file changed back), the stored plan follows and A,
    # whose deciding runs are all stored, is the answer once its reporting runs are trained.
    wide.confirm(3)
    c = study_answer(wide.study()).confirmation
    assert confirm_plan(wide.study()).margin == DEFAULT_CONFIRM_MARGIN
    assert c.trial == wide.trial[A] and c.state == "done"
    # A plan stored before ``margin`` was recorded reads as 1.
    study = wide.study()
    study.set_user_attr("confirmation", {"seeds": 3, "start": None, "walk": True})
    assert confirm_plan(study).margin == 1.0


def test_a_task_with_a_test_split_confirms_on_val_and_test_together(tmp_path):
    # A's deciding pairs on val: -0.2, -1.8, -0.2... points; on test: -0.8, +0.8, -0.8...: on
    # the mean of both splits A is half a point short on every seed, on val alone a point.
    score = scores(SEARCH, {B: 0.0, C: 0.0}, {A: 0.0, B: 0.0, C: 0.0})
    first = decide_seeds(0, 1)[0]

    def val(sites, seed):
        i = seed - first
        if len(sites) == A and 0 <= i < 1_000_000:
            return 0.70 + 0.01 * i + (-0.002, -0.018)[i % 2]
        return score(sites, seed)

    def test(sites, seed):
        i = seed - first
        if len(sites) == A and 0 <= i < 1_000_000:
            return 0.70 + 0.01 * i + (-0.008, 0.008)[i % 2]
        return score(sites, seed)

    both = Study(tmp_path / "both", val, test_score=test)
    both.confirm(3, confirm_images="val+test")
    c = study_answer(both.study()).confirmation
    assert c.plan.images == "val+test" and c.to_json()["images"] == "val+test"
    a = c.walk[0].versus
    assert c.walk[0].trial == both.trial[A] and a.seeds == 3
    assert a.delta == pytest.approx(-0.005) and a.surely_holds(1.0)
    assert c.trial == both.trial[A] and c.reported.delta == pytest.approx(0.001)
    runs = [r for r in trial_records(both.study()) if r.confirmed or r.complete]
    assert all(r.test_map is not None for r in runs)
    # Confirmed on val alone (a task without a test split), A falls short and B is the answer.
    alone = Study(tmp_path / "val", val)
    alone.confirm(3, confirm_images="val")
    c = study_answer(alone.study()).confirmation
    assert c.plan.images == "val" and c.trial == alone.trial[B]
    # A plan stored before ``images`` was recorded reads as val: its runs were scored there.
    study = alone.study()
    study.set_user_attr("confirmation", {"seeds": 3, "start": None, "walk": True})
    assert confirm_plan(study).images == "val"


def test_the_pooled_noise_weighs_every_config_by_its_degrees_of_freedom():
    noise = Noise().plus([0.70, 0.72])  # a repeated config: variance 2e-4, 1 df
    noise = noise.plus([0.5])  # one run: nothing to pool
    p = noise.decided([0.70, 0.70, 0.70], [0.71, 0.71, 0.71], fresh=2)  # own spread 0, 2 df
    assert p.delta == pytest.approx(-0.01)
    assert p.delta_sd == pytest.approx((2e-4 / 3) ** 0.5 / 3**0.5)
    # The margin: the noise of the deciding mean and of the 2 reporting pairs' mean together.
    assert p.margin == pytest.approx((2e-4 / 3) ** 0.5 * (1 / 3 + 1 / 2) ** 0.5)
    assert Noise().decided([0.70, 0.70], [0.71, 0.71], fresh=2).delta_sd == 0.0  # no spread


def test_the_search_repeats_spread_counts_in_the_decision(tmp_path):
    base = scores(SEARCH, {A: -0.007, C: -0.03}, {})

    def score(sites, seed):
        if len(sites) == A and seed < decide_seeds(0, 1)[0] and seed > 2:
            return 0.730  # A's repeat: its runs 0.700 and 0.730, three points apart
        return base(sites, seed)

    study = Study(tmp_path, score)
    study.confirm(3, repeats=2)
    searched = [len(r.sites) for r in trial_records(study.study()) if r.complete]
    assert sorted(searched).count(A) == 2
    c = study_answer(study.study()).confirmation
    a = c.walk[0].versus
    assert c.walk[0].trial == study.trial[A]
    # A's deciding pairs agree (-0.7 each), but its search runs spread by three points: pooled,
    # A is not surely within a point, even at twice the seeds.
    assert a.seeds == 6 and a.holds(1.0) and not a.surely_holds(1.0)
    assert a.delta == pytest.approx(-0.007) and a.delta_sd > 0.003  # its own pairs: 0
    # A's second run put B and C off the front; past it, the best of them (C) falls short too.
    assert [s.trial for s in c.walk] == [study.trial[A], study.trial[C]]
    assert c.walked_out and c.trial == study.trial[12]


def test_progress_counts_the_confirmation_runs_still_to_come(tmp_path):
    study = Study(tmp_path, scores(SEARCH, {A: 0.0}, {A: 0.0}))  # A holds on its first pairs
    # While the search runs: the 4 x 3 runs of a confirmation whose first config holds.
    assert study.controller(3).progress(6).confirm_left == 12
    assert study.controller(0).progress(6).confirm_left == 0
    # Searched: A's and the full fine-tune's deciding pairs and reporting pairs, none trained.
    assert study.controller(3).progress(5).confirm_left == 12
    seen = []
    run_trials(study.controller(3), study.evaluator, 5, on_trial=lambda p: seen.append(p))
    assert [p.confirm_left for p in seen] == list(range(11, -1, -1))  # one fewer per run
    assert study.controller(3).progress(5).confirm_left == 0


def test_trials_still_queued_at_the_total_wait_for_a_larger_one(tmp_path):
    """Fewer trials than queued configs: the confirmation runs the answer past the total (not
    the oldest queued trial), and the trials left queued run when the total is raised."""
    import optuna

    score = scores(SEARCH, {A: 0.0, B: 0.0, C: 0.0}, {A: 0.0, B: 0.0, C: 0.0})

    def on_and_on(signum, frame):
        raise TimeoutError("the study runs on and on")

    signal.signal(signal.SIGALRM, on_and_on)
    signal.alarm(20)  # it takes a few seconds
    try:
        study = Study(tmp_path, score, total=3, seeds=3)  # head, full, A; B and C stay queued
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    records = trial_records(study.study())
    S = optuna.trial.TrialState
    queued = [r.number for r in records if r.state == S.WAITING]
    assert queued == [study.trial[B], study.trial[C]]
    assert sum(r.counts_toward_total() for r in records) == 3
    confirmed = [r for r in records if r.confirmed]
    assert {len(r.sites) for r in confirmed} == {A, 12}
    assert len(confirmed) == 12  # A and the full fine-tune, three deciding and three fresh pairs

    progress = run_trials(study.controller(3), study.evaluator, 5)
    assert progress.done == 5
    assert not [r for r in trial_records(study.study()) if r.state == S.WAITING]
