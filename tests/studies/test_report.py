"""The report across tasks on studies with known results: rows, ordering and the three claims,
ties at the matching tolerance included, and a study without presets."""

from __future__ import annotations

import json

import optuna
import pytest

from spotpatch.cli import main
from spotpatch.evaluators import EvalResult
from spotpatch.search import StudyMeta, completed_trial
from spotpatch.spaces import PatchConfig
from spotpatch.studies import (
    create_or_load_study,
    fleet_report,
    held_text,
    open_storage,
    report_markdown,
)
from spotpatch.testing import synthetic_meta

FULL = 1000
# study -> trials as (preset or None for a searched trial, val mAP, bytes)
STUDIES = {
    "near": [("head", 0.600, 100), ("full", 0.650, 1000), (None, 0.595, 100), (None, 0.650, 400)],
    "mid": [
        ("head", 0.300, 100),
        ("bn", 0.400, 200),
        ("full", 0.600, 1000),
        (None, 0.394, 200),  # 0.006 below bn: not a match
        (None, 0.300, 100),
        (None, 0.600, 600),
    ],
    "far": [("head", 0.100, 100), ("full", 0.700, 1000), (None, 0.650, 800)],
    "no-presets": [(None, 0.500, 300)],
}


def _meta(name: str) -> StudyMeta:
    return synthetic_meta(name, classes=("a",), full_bytes=FULL, kinds=("bn", "full"), train={})


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('report')}/s.db"
    storage = open_storage(url)
    for name, trials in STUDIES.items():
        study = create_or_load_study(_meta(name), storage, sampler=None)
        study.add_trials(
            [
                completed_trial(
                    EvalResult(m, m, size, 1.0, 0.1, PatchConfig({f"site{i}": "bn"}), {}),
                    source="preset" if preset else "sampler",
                    preset=preset,
                )
                for i, (preset, m, size) in enumerate(trials)
            ]
        )
    optuna.create_study(study_name="not-ours", storage=storage)
    return url


def test_rows_in_order_of_difficulty(url):
    report = fleet_report(open_storage(url))
    assert [r.study for r in report.rows] == ["near", "mid", "far", "no-presets"]
    assert report.techniques == ("head", "bn", "full")
    near, mid, far, none = report.rows
    assert near.difficulty == pytest.approx(0.05) and far.difficulty == pytest.approx(0.6)
    assert none.difficulty is None and none.techniques == {}
    assert mid.techniques["bn"].map == 0.4 and mid.techniques["bn"].bytes_pct == 20.0
    # within=1.0 among the searched trials only: the smallest within 0.01 of their best.
    assert (near.selected.bytes, mid.selected.bytes, far.selected.bytes) == (400, 600, 800)
    assert near.delta_vs_full == pytest.approx(0.0)
    assert far.delta_vs_full == pytest.approx(-0.05)
    # Ties at the tolerance match (near: 0.595 vs head 0.600, same bytes); 0.006 below does not.
    assert near.unmatched == () and near.matches_presets is True
    assert mid.unmatched == ("bn",)
    assert far.unmatched == ("head", "full")
    assert none.matches_presets is None


def test_claims(url):
    claims = fleet_report(open_storage(url)).claims
    assert (claims.matched, claims.with_presets) == (1, 3)
    assert claims.mean_bytes_pct == pytest.approx((40 + 60 + 80 + 30) / 4)
    assert claims.max_bytes_pct == pytest.approx(80.0)
    assert claims.mean_delta_vs_full == pytest.approx(-0.05 / 3)
    assert claims.correlated == ("near", "mid", "far")
    assert claims.rho == pytest.approx(1.0)
    assert any(n.startswith("no-presets:") and "(c)" in n for n in claims.notes)


def test_a_rule_that_nothing_meets_leaves_the_study_out(url):
    report = fleet_report(open_storage(url), "min-map=0.66")
    assert [r.study for r in report.rows if r.selected] == []
    assert report.claims.mean_bytes_pct is None and report.claims.rho is None
    assert all("0.66" in r.note for r in report.rows)


def test_report_command(url, tmp_path, capsys):
    assert main(["report", "--storage", url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["claims"]["matched"] == 1 and len(data["rows"]) == 4
    out = tmp_path / "report.md"
    assert main(["report", "--storage", url, "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "| near | 0.050 | 0.600 (10.0 %) |" in text
    assert "in 1 of 3 studies" in text and "ρ" in text
    assert main(["report", "--storage", url, "--out", str(tmp_path / "r.txt")]) == 2
    assert "must end in .md or .html" in capsys.readouterr().err


def _trial(m, size, site, **kw):
    """A completed trial of config ``{site: bn}`` with mAP ``m`` and ``size`` bytes."""
    config = PatchConfig({site: "bn"})
    return completed_trial(EvalResult(m, m, size, 1.0, 0.1, config, {}), **kw)


def _study(tmp_path, *trials):
    """A storage holding one study of ``trials``."""
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = create_or_load_study(_meta("one"), storage, sampler=None)
    study.add_trials(list(trials))
    return storage, study


def test_a_preset_the_sampler_proposed_again_counts_as_found(tmp_path):
    storage, study = _study(
        tmp_path,
        _trial(0.3, 100, "a", source="preset", preset="head"),
        _trial(0.6, 1000, "b", source="preset", preset="full"),
        _trial(0.55, 500, "c"),
        _trial(0.3, 100, "a", duplicate_of=0),  # the sampler proposed head-only again
    )
    (row,) = fleet_report(storage).rows
    assert row.unmatched == ("full",)  # head is matched by the search's own proposal
    # The duplicate trained nothing: the front and the trial counts leave it out.
    from spotpatch.search import summarize, trial_records

    assert summarize(trial_records(study), 4, FULL).done == 3


def test_configs_run_again_count_at_their_mean_and_repeats_of_presets_stay_presets(tmp_path):
    storage, _ = _study(
        tmp_path,
        _trial(0.30, 100, "a", source="preset", preset="head"),
        _trial(0.60, 1000, "b", source="preset", preset="full"),
        _trial(0.62, 200, "c"),  # lucky once...
        _trial(0.64, 1000, "b", source="repeat", repeat_of=1, preset="full"),
        _trial(0.56, 200, "c", source="repeat", repeat_of=2),  # ...not twice
        _trial(0.615, 400, "d"),
    )
    (row,) = fleet_report(storage, rule="within-full=1").rows
    full = row.techniques["full"]
    assert (full.trial, full.runs) == (1, 2) and full.map == pytest.approx(0.62)
    # The mark is the full fine-tune's mean, 0.62: c's mean 0.59 misses it, d's 0.615 holds.
    assert (row.selected.trial, row.selected.runs) == (5, 1)
    assert row.delta_vs_full == pytest.approx(-0.005)
    near = fleet_report(storage, rule="within-full=4").rows[0].selected
    assert (near.trial, near.runs) == (2, 2) and near.map == pytest.approx(0.59)


def test_the_smallest_patch_retrained_within_d_of_the_full_fine_tune_is_named(tmp_path):
    from spotpatch.search import ConfirmRun, write_confirm_run

    storage, study = _study(
        tmp_path,
        _trial(0.30, 100, "a", source="preset", preset="head"),
        _trial(0.60, 1000, "b", source="preset", preset="full"),
        _trial(0.62, 200, "c"),  # the pick on its run...
        _trial(0.615, 400, "d"),
        _trial(0.64, 700, "e"),  # never retrained
    )
    (row,) = fleet_report(storage, rule="within-full=1").rows
    assert (row.held, row.retrained, held_text(row)) == (None, 0, "-")
    maps = {"b": (0.60, 0.62), "c": (0.58, 0.59), "d": (0.605, 0.615)}  # ...falls short retrained
    for site, (m1, m2) in maps.items():
        for seed, m in enumerate((m1, m2)):
            write_confirm_run(study, ConfirmRun({site: "bn"}, seed, m, 1))
    report = fleet_report(storage, rule="within-full=1")
    (row,) = report.rows
    assert row.selected.trial == 2 and row.confirmed.delta == pytest.approx(-0.025)
    assert (row.held.trial, row.retrained) == (3, 2)
    assert row.held_confirmed.delta == pytest.approx(0.0) and row.held.bytes_pct == 40.0
    assert held_text(row) == "40.0 % (+0.0 ± 1.1, 2 seeds)"
    claims = report.claims
    assert (claims.tolerance, claims.retrained, claims.held) == (1.0, 1, 1)
    assert claims.mean_held_pct == 40.0
    text = report_markdown(report)
    assert "| smallest retrained within 1 of full |" in text
    assert "(d) Retrained with other seeds (`spotpatch confirm`): in 1 of 1 studies" in text
    from spotpatch.dashboard import render_report_html

    page = render_report_html(report)
    assert "<th>smallest retrained within 1 of full</th>" in page
    assert "<td>40.0 % (+0.0 ± 1.1, 2 seeds)</td>" in page
    # Within 3 points, the smaller retrained patch holds; a rule without a distance has no (d).
    assert fleet_report(storage, rule="within-full=3").rows[0].held.trial == 2
    knee = fleet_report(storage, rule="knee")
    assert knee.claims.tolerance is None and "(d)" not in report_markdown(knee)
