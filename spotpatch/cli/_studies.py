"""The commands about each study's answer: ``status``, ``confirm`` (which trains), ``report``
and ``plan``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spotpatch._errors import UserError
from spotpatch.cli._command import command
from spotpatch.cli._options import add_select, add_storage
from spotpatch.cli._text import MISSING, answer_cells, kib, table

__all__ = ["COMMANDS"]


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = command(sub, cmd_status)
    add_storage(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_status(args: argparse.Namespace) -> int:
    """each study's progress, cost and answer, one line per study"""
    from spotpatch.studies import open_storage, study_status

    rows = study_status(open_storage(args.storage, existing=True))
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return 0
    if not rows:
        print(f"no spotpatch studies in {args.storage}")
        return 0
    print(
        table(
            [
                [
                    r.name,
                    str(r.progress.done),
                    str(r.progress.failed),
                    str(r.progress.front_size),
                    f"{r.cost:.1f}",
                    *answer_cells(r.answer, r.full_bytes),
                ]
                for r in rows
            ],
            [
                "study",
                "done",
                "failed",
                "front",
                "cost (trials)",
                "answer: trial",
                "patch",
                "val mAP",
                "Δ vs full",
            ],  # fmt: skip
        )
    )
    for r in rows:
        if r.note:
            print(f"{r.name}: no answer: {r.note}")
    return 0


def _add_confirm(sub: argparse._SubParsersAction) -> None:
    p = command(sub, cmd_confirm)
    p.add_argument("study", metavar="STUDY_NAME", help="the study (its task's name)")
    add_select(p, "where the walk starts")
    p.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="paired seeds per config, to decide and again to report (default 3)",
    )
    p.add_argument(
        "--walk",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="while a patch falls more than the study's tolerance short of the full fine-tune "
        "on the deciding seeds, try the next larger front point (default; --no-walk measures "
        "the start as it is)",
    )
    add_storage(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_confirm(args: argparse.Namespace) -> int:
    """confirm a study's answer: chosen on some seeds, its Δ measured on fresh ones

    For a study that ran without search.confirm_seeds: its answer and the full fine-tune
    retrain on SEEDS paired deciding seeds (the same seed for both); while the answer falls
    short of the study's tolerance, the next larger front point (presets included) is tried.
    The config that holds and the full fine-tune then retrain on SEEDS fresh paired seeds: their
    mean paired Δ is what status, report, the dashboard and export show. Every run is stored:
    a stopped confirm resumes, and a larger --seeds adds runs.
    """
    from spotpatch.studies import confirm_study

    def said(record) -> None:
        if not args.json:
            print(
                f"{record.confirm_stage} seed {record.confirm_seed}: trial {record.number} "
                f"({kib(record.patch_bytes)}) mAP {record.map:.3f}",
                flush=True,
            )

    result = confirm_study(
        args.study,
        storage=args.storage,
        rule=args.select,
        seeds=args.seeds,
        walk=args.walk,
        on_run=said,
    )
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    c = result.confirmation
    rows = [
        [
            str(s.trial),
            kib(s.patch_bytes),
            MISSING if s.versus is None else s.versus.text(),
            MISSING if s.versus is None else ("holds" if s.versus.holds(c.tolerance) else "short"),
        ]
        for s in c.walk
    ]
    if rows:
        print(table(rows, ["trial", "patch", "Δ vs full, deciding seeds", "within tolerance"]))
    if c.note:
        print(c.note)
    if c.walked_out:
        print(f"answer: trial {c.trial}, {c.delta_text()}")
    elif c.reported is not None:
        verdict = "holds" if c.holds else "misses"
        print(
            f"answer: trial {c.trial}, {c.reported.text()} against the full fine-tune on fresh "
            f"seeds: {verdict} the tolerance of {c.tolerance:g} points"
        )
    else:
        print(f"confirmation {c.state}")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = command(sub, cmd_report)
    add_storage(p)
    add_select(p)
    p.add_argument(
        "--out", type=Path, metavar="FILE", help="write it to FILE.md (Markdown) or FILE.html"
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_report(args: argparse.Namespace) -> int:
    """the comparison across tasks: every technique against each study's answer

    One row per study, ordered by difficulty (full fine-tune mAP minus head-only mAP): val mAP
    and bytes (% of the full detector) of each preset run in the study and of its answer, the
    answer's Δ to the full fine-tune (on fresh paired seeds where confirmed), then the claims:
    (a) in how many studies the search's smallest patch within the tolerance is no larger than
    the smallest preset's, (b) the answers' mean and largest size and mean Δ, (c) Spearman's
    rho of difficulty vs size, (d) how many confirmed answers hold.
    """
    from spotpatch._files import write_text
    from spotpatch.studies import fleet_report, open_storage, report_markdown

    suffix = args.out.suffix.lower() if args.out is not None else None
    if suffix not in (None, ".md", ".html"):
        raise UserError(f"--out must end in .md or .html, got {args.out}")
    report = fleet_report(open_storage(args.storage, existing=True), args.select)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    elif args.out is None:
        print(report_markdown(report), end="")
    if suffix == ".md":
        write_text(args.out, report_markdown(report))
    elif suffix == ".html":
        from spotpatch.dashboard import write_report_html

        write_report_html(report, args.out)
    if args.out is not None and not args.json:
        print(f"wrote the report of {len(report.rows)} studies to {args.out}")
    return 0


def _add_plan(sub: argparse._SubParsersAction) -> None:
    p = command(sub, cmd_plan)
    p.add_argument(
        "--budget",
        help="total bytes: 2000000, 1.5MB, 900KiB... (default: no budget, every study's answer)",
    )
    add_storage(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_plan(args: argparse.Namespace) -> int:
    """fleet plan: every study's answer, or the best mean mAP within a byte budget

    Without --budget: every study's answer, and what they weigh together. With it: one
    Pareto-front trial per study so that the mean val mAP is as high as possible with the
    patches' total bytes within the budget (solved exactly). Both against storing one full
    detector per task.
    """
    from spotpatch.search import parse_bytes
    from spotpatch.studies import FleetAnswers, fleet_plan, open_storage

    budget = None if args.budget is None else parse_bytes(args.budget)
    plan = fleet_plan(open_storage(args.storage, existing=True), budget)
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
        return 0
    if isinstance(plan, FleetAnswers):
        rows = [
            [name, str(a.trial), f"{a.map:.3f}", kib(a.patch_bytes)]
            for name, a in plan.choices.items()
        ]
        within = "the answers"
    else:
        rows = [
            [name, str(p.number), f"{p.map:.3f}", kib(p.bytes)] for name, p in plan.choices.items()
        ]
        within = f"of a {kib(plan.budget)} budget"
    print(table(rows, ["study", "trial", "val mAP", "patch"]))
    for name, why in getattr(plan, "missing", {}).items():
        print(f"{name}: no answer: {why}")
    saving = f"{plan.full_bytes / plan.total_bytes:.1f}x smaller" if plan.total_bytes else ""
    mean = MISSING if plan.mean_map is None else f"{plan.mean_map:.3f}"
    print(
        f"\n{len(rows)} patches: {kib(plan.total_bytes)}, {within}, mean mAP {mean}; one full "
        f"detector per task: {kib(plan.full_bytes)} ({saving})"
    )
    return 0


COMMANDS = (_add_status, _add_confirm, _add_report, _add_plan)
