"""The commands that read stored studies: ``status``, ``export``, ``predict``, ``dashboard``,
``plan``, ``report`` and ``confirm`` (which retrains), with their shared ``--storage`` and
``--select`` options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spotpatch._errors import UserError
from spotpatch.cli._command import command
from spotpatch.cli._text import MISSING, answer_cells, kib, table

__all__ = ["COMMANDS"]


def _add_storage(p: argparse.ArgumentParser) -> None:
    from spotpatch._defaults import DEFAULT_STORAGE

    p.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help=f"Optuna storage URL (default {DEFAULT_STORAGE})",
    )


def _add_select(p: argparse.ArgumentParser, what: str = "which trial's patch") -> None:
    p.add_argument(
        "--select",
        metavar="RULE",
        help=f"{what}, instead of the study's answer (the smallest patch within the study's "
        "tolerance of the full fine-tune, as confirmed): knee | min-map=X | max-bytes=B | "
        "within=D (of the best) | within-full=D (of the full fine-tune); mAP in [0, 1], D in "
        "mAP points",
    )


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = command(sub, cmd_status)
    _add_storage(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_status(args: argparse.Namespace) -> int:
    """one line per study"""
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


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = command(sub, cmd_export)
    p.add_argument("study", metavar="STUDY_NAME", help="the study (its task's name)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the patch folder")
    _add_select(p)
    _add_storage(p)
    p.add_argument(
        "--onnx",
        type=Path,
        metavar="FILE",
        help="also write the patched detector as ONNX (raw head outputs and anchors, no NMS)",
    )
    p.add_argument("--json", action="store_true", help="print patch.json instead of a summary")


def cmd_export(args: argparse.Namespace) -> int:
    """write a study's answer (no retraining): DIR/patch.safetensors + patch.json

    Write the patch of the study's answer (or of the trial --select picks), from the tensors
    its trial stored, with the study's confirmation of it. DIR must be new, empty or an earlier
    export (which is replaced).
    """
    from spotpatch.search import to_points
    from spotpatch.studies import export_patch

    info = export_patch(
        args.study, args.out, rule=args.select, storage=args.storage, onnx=args.onnx
    )
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m, c = info["metrics"], info["confirmation"]
    test = f"{m['test_map']:.3f}" if "test_map" in m else MISSING
    confirmed = "not confirmed"
    if c is not None:
        confirmed = (
            f"Δ vs full {to_points(c['delta']):+.1f} ± {to_points(c['delta_sd']):.1f} on "
            f"{c['seeds']} fresh paired seeds ({'holds' if c['holds'] else 'misses'})"
        )
    print(
        f"{info['study']['name']} trial {info['study']['trial']} -> {args.out}: "
        f"mAP {m['map']:.3f} (AP50 {m['map50']:.3f}), patch {kib(m['patch_bytes'])} "
        f"({m['patch_bytes']:,} bytes), test mAP {test}, {confirmed}"
        + (f"; ONNX {args.onnx}" if args.onnx else "")
    )
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from spotpatch._defaults import DEFAULT_SCORE_THRESHOLD

    p = command(sub, cmd_predict)
    p.add_argument("patch", type=Path, metavar="DIR", help="a folder written by export")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    p.add_argument("--out", type=Path, help="write the results here (default: stdout)")
    p.add_argument(
        "--score-threshold",
        type=float,
        help=f"drop detections scoring below (default {DEFAULT_SCORE_THRESHOLD:g})",
    )
    p.add_argument(
        "--checkpoint", type=Path, help="base weights (default: the model's shipped weights)"
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda...")


def cmd_predict(args: argparse.Namespace) -> int:
    """run base + an exported patch on images; COCO results JSON

    Detect with base + patch. image_id is the file stem when every stem is a number (COCO
    naming), else the image's position (from 0); bbox is [x, y, w, h] in the original image's
    pixels.
    """
    from spotpatch.studies import predict_images

    threshold = {} if args.score_threshold is None else {"score_threshold": args.score_threshold}
    results = predict_images(
        args.patch, args.images, checkpoint=args.checkpoint, device=args.device, **threshold
    )
    text = json.dumps(results)
    if args.out is None:
        print(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"{len(results)} detections on {len(args.images)} images -> {args.out}")
    return 0


def _add_dashboard(sub: argparse._SubParsersAction) -> None:
    from spotpatch._defaults import DEFAULT_PORT

    p = command(sub, cmd_dashboard)
    _add_storage(p)
    _add_select(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, metavar="FILE.html", help="write one HTML file")
    where.add_argument(
        "--serve", action="store_true", help="serve it on 127.0.0.1, rebuilt on each reload"
    )
    p.add_argument(
        "--port", type=int, help=f"port for --serve (default {DEFAULT_PORT}; 0: any free one)"
    )


def cmd_dashboard(args: argparse.Namespace) -> int:
    """the Pareto dashboard: one offline HTML file, or a local server

    Every study's trials and front with its answer starred, search progress, where the answers
    spend their bytes, the report across tasks, and the fleet against one full detector per
    task.
    """
    from spotpatch._defaults import DEFAULT_PORT
    from spotpatch.dashboard import serve_dashboard, write_dashboard

    rule = args.select
    if args.out is not None and args.port is not None:
        raise UserError("--port goes with --serve, not --out")
    if args.out is not None:
        out = write_dashboard(args.storage, args.out, rule=rule)
        print(f"wrote the dashboard to {out} ({out.stat().st_size / 1e6:.1f} MB, opens offline)")
        return 0

    def ready(url: str) -> None:
        print(f"serving the dashboard on {url} (Ctrl-C stops)", flush=True)

    port = DEFAULT_PORT if args.port is None else args.port
    serve_dashboard(args.storage, port=port, rule=rule, on_ready=ready)
    print("stopped the dashboard server")
    return 0


def _add_plan(sub: argparse._SubParsersAction) -> None:
    p = command(sub, cmd_plan)
    p.add_argument(
        "--budget",
        help="total bytes: 2000000, 1.5MB, 900KiB... (default: no budget, every study's answer)",
    )
    _add_storage(p)
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


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = command(sub, cmd_report)
    _add_storage(p)
    _add_select(p)
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


def _add_confirm(sub: argparse._SubParsersAction) -> None:
    p = command(sub, cmd_confirm)
    p.add_argument("study", metavar="STUDY_NAME", help="the study (its task's name)")
    _add_select(p, "where the walk starts")
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
    _add_storage(p)
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
    if c.reported is not None:
        verdict = "holds" if c.holds else "misses"
        print(
            f"answer: trial {c.trial}, {c.reported.text()} against the full fine-tune on fresh "
            f"seeds: {verdict} the tolerance of {c.tolerance:g} points"
        )
    else:
        print(f"confirmation {c.state}")
    return 0


COMMANDS = (
    _add_status,
    _add_export,
    _add_predict,
    _add_dashboard,
    _add_plan,
    _add_report,
    _add_confirm,
)
