"""Selection rules and the fleet plan (checked against brute force)."""

from __future__ import annotations

import itertools
import random

import pytest

from spotpatch._errors import UserError
from spotpatch.search import FrontPoint, parse_bytes, parse_rule, plan_fleet, select_point

POINTS = [
    FrontPoint(0, 0.20, 100),
    FrontPoint(1, 0.40, 300),
    FrontPoint(2, 0.45, 600),
    FrontPoint(3, 0.455, 900),
    FrontPoint(4, 0.30, 800),  # dominated
    FrontPoint(5, 0.10, 50),
]
FULL = 1000


@pytest.mark.parametrize(
    ("rule", "number"),
    [
        ("within=1.0", 2),  # best 0.455; 0.45 is within 0.01 and smaller
        ("within=0", 3),
        ("within=30", 0),  # the smallest patch at or above 0.455 - 0.30
        ("min-map=0.4", 1),
        ("min-map=0.41", 2),
        ("max-bytes=650", 2),
        ("max-bytes=299", 0),
        ("max-bytes=50", 5),
        ("knee", 1),
    ],
)
def test_each_rule_picks_its_point(rule, number):
    assert select_point(POINTS, rule, FULL).number == number


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("min-map=0.5", "no trial reaches mAP 0.5"),
        ("max-bytes=10", "no trial has at most 10 bytes"),
    ],
)
def test_rules_nothing_satisfies_say_so(rule, message):
    with pytest.raises(UserError, match=message):
        select_point(POINTS, rule, FULL)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "knees",
        "within",
        "within=x",
        "min-map=1.5",
        "within=-1",
        "within-full=-1",
        "max-bytes=3 parsecs",
    ],
)
def test_bad_rules_are_refused(text):
    with pytest.raises(UserError):
        parse_rule(text)


def test_byte_units():
    assert parse_bytes("250000") == 250000
    assert parse_bytes("200KiB") == 204800
    assert parse_bytes("1.5MB") == 1_500_000
    assert parse_rule("max-bytes=1MiB").value == 1024**2


def test_an_empty_study_has_nothing_to_select():
    with pytest.raises(UserError, match="no completed trial"):
        select_point([], "knee", FULL)


def _brute_force(fronts, budget):
    names = sorted(fronts)
    best = None
    for combo in itertools.product(*(fronts[n] for n in names)):
        total = sum(p.bytes for p in combo)
        if total > budget:
            continue
        score = sum(p.map for p in combo)
        if best is None or score > best[0] + 1e-12:
            best = (score, total)
    return best


def test_the_fleet_plan_matches_brute_force_on_random_fronts():
    rng = random.Random(0)
    for _ in range(200):
        fronts = {
            f"task{i}": [
                FrontPoint(j, round(rng.random(), 3), rng.randint(1, 60))
                for j in range(rng.randint(1, 5))
            ]
            for i in range(rng.randint(1, 4))
        }
        budget = rng.randint(1, 150)
        expected = _brute_force(fronts, budget)
        if expected is None:
            with pytest.raises(UserError, match="cannot hold even the smallest patch"):
                plan_fleet(fronts, budget)
            continue
        plan = plan_fleet(fronts, budget)
        assert plan.total_bytes <= budget
        assert abs(plan.mean_map * len(fronts) - expected[0]) < 1e-9
        assert sum(p.bytes for p in plan.choices.values()) == plan.total_bytes
        for name, point in plan.choices.items():
            assert point in fronts[name]


def test_the_plan_compares_with_one_full_detector_per_task():
    fronts = {"a": POINTS, "b": [FrontPoint(0, 0.5, 200), FrontPoint(1, 0.6, 700)]}
    plan = plan_fleet(fronts, 999, {"a": FULL, "b": FULL})  # 1000 fits 0.6 + 0.4
    assert plan.full_bytes == 2 * FULL
    assert plan.choices["b"].number == 0 and plan.choices["a"].number == 2
    assert plan.to_json()["choices"]["a"]["patch_bytes"] == 600


def test_within_full_measures_from_the_full_fine_tune():
    # The full fine-tune scored 0.44: 0.40 is 4 points short, 0.45 within a point.
    assert select_point(POINTS, "within-full=1.0", FULL, full_map=0.44).number == 2
    assert select_point(POINTS, "within-full=5", FULL, full_map=0.44).number == 1
    # A lucky run above the full fine-tune does not raise the mark, unlike within's.
    assert select_point(POINTS, "within=1.0", FULL).number == 2
    assert select_point(POINTS, "within-full=1.0", FULL, full_map=0.30).number == 1
    missing = "no trial comes within 1 points of the full fine-tune's 0.5"
    with pytest.raises(UserError, match=missing):
        select_point(POINTS, "within-full=1", FULL, full_map=0.50)
    with pytest.raises(UserError, match="needs the full fine-tune's trial"):
        select_point(POINTS, "within-full=1", FULL)
    assert str(parse_rule("within-full=1")) == "within-full=1"


def test_the_full_fine_tune_is_the_mean_of_the_full_presets_runs():
    from spotpatch.search import full_point
    from spotpatch.testing import record

    records = [record(0, "full", 0.5, 100, preset="full"), record(1, "full", 0.6, 100)]
    records[1:1] = [record(2, "head", 0.9, 10, preset="head")]
    records.append(record(3, "full", None, 100, preset="full", state="RUNNING"))
    assert full_point(records).map == pytest.approx(0.55)
    assert full_point(records).runs == 2
    assert full_point(records[1:2]) is None
