"""The commands that read stored studies: ``status``, ``export``, ``predict``, ``dashboard``,
``plan``, ``report`` and ``confirm`` (which retrains), with their shared ``--storage`` and
``--select`` options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spotpatch._errors import UserError
from spotpatch.cli._command import command
from spotpatch.cli._text import kib, table

__all__ = ["COMMANDS"]


def _add_storage(p: argparse.ArgumentParser) -> None:
    from spotpatch.studies import DEFAULT_STORAGE

    p.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help=f"Optuna storage URL (default {DEFAULT_STORAGE})",
    )


def _add_select(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--select",
        metavar="RULE",
        help="which trial's patch: knee | min-map=X | max-bytes=B | within=D | within-full=D "
        "(default within=1.0: the smallest patch within 1 mAP point of the best; within-full: "
        "of the full fine-tune's trial; mAP in [0, 1], D in points)",
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
                    str(r.progress.pruned),
                    str(r.progress.front_size),
                    "-" if r.progress.best_map is None else f"{r.progress.best_map:.3f}",
                    "-"
                    if r.progress.smallest_front_bytes is None
                    else kib(r.progress.smallest_front_bytes),
                    "-" if r.progress.hypervolume is None else f"{r.progress.hypervolume:.3f}",
                ]
                for r in rows
            ],
            ["study", "done", "failed", "pruned", "front", "best mAP", "smallest front", "HV"],
        )
    )
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
    """write a study's chosen patch (no retraining): DIR/patch.safetensors + patch.json

    Write the patch of the trial a selection rule picks, from the tensors the trial stored. DIR
    must be new, empty or an earlier export (which is replaced).
    """
    from spotpatch.search import DEFAULT_RULE
    from spotpatch.studies import export_patch

    info = export_patch(
        args.study,
        args.out,
        rule=args.select or DEFAULT_RULE,
        storage=args.storage,
        onnx=args.onnx,
    )
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m = info["metrics"]
    test = f"{m['test_map']:.3f}" if "test_map" in m else "-"
    print(
        f"{info['study']['name']} trial {info['study']['trial']} -> {args.out}: "
        f"mAP {m['map']:.3f} (AP50 {m['map50']:.3f}), patch {kib(m['patch_bytes'])} "
        f"({m['patch_bytes']:,} bytes), test mAP {test}"
        + (f"; ONNX {args.onnx}" if args.onnx else "")
    )
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from spotpatch.studies import DEFAULT_SCORE_THRESHOLD

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
    from spotpatch.dashboard import DEFAULT_PORT

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

    Every study's trials and front, search progress, where the selected patches spend their
    bytes, and the fleet against one full detector per task.
    """
    from spotpatch.dashboard import DEFAULT_PORT, serve_dashboard, write_dashboard
    from spotpatch.search import DEFAULT_RULE

    rule = args.select or DEFAULT_RULE
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
    p.add_argument("--budget", required=True, help="total bytes: 2000000, 1.5MB, 900KiB...")
    _add_storage(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_plan(args: argparse.Namespace) -> int:
    """fleet plan: one front point per study, best mean mAP within a byte budget

    Pick one Pareto-front trial per study so that the mean val mAP is as high as possible with
    the patches' total bytes within the budget (solved exactly), and compare with storing one
    full detector per task.
    """
    from spotpatch.search import parse_bytes
    from spotpatch.studies import fleet_plan, open_storage

    plan = fleet_plan(open_storage(args.storage, existing=True), parse_bytes(args.budget))
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
        return 0
    rows = [
        [name, str(p.number), f"{p.map:.3f}", kib(p.bytes)] for name, p in plan.choices.items()
    ]
    print(table(rows, ["study", "trial", "val mAP", "patch"]))
    saving = f"{plan.full_bytes / plan.total_bytes:.1f}x smaller" if plan.total_bytes else ""
    print(
        f"\n{len(rows)} patches: {kib(plan.total_bytes)} of a {kib(plan.budget)} budget, "
        f"mean mAP {plan.mean_map:.3f}; one full detector per task: {kib(plan.full_bytes)} "
        f"({saving})"
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
    """the comparison across tasks: every technique against the selected searched patch

    One row per study, ordered by difficulty (full fine-tune mAP minus head-only mAP): val mAP
    and bytes (% of the full detector) of each preset run in the study and of the searched patch
    the rule picks among the searched trials, then the claims: (a) in how many studies the
    searched trials match or beat every preset, (b) the selected patches' mean and largest size
    and mean mAP difference to full fine-tuning, (c) Spearman's rho of difficulty vs size.
    """
    from spotpatch._files import write_text
    from spotpatch.search import DEFAULT_RULE
    from spotpatch.studies import fleet_report, open_storage, report_markdown

    suffix = args.out.suffix.lower() if args.out is not None else None
    if suffix not in (None, ".md", ".html"):
        raise UserError(f"--out must end in .md or .html, got {args.out}")
    report = fleet_report(open_storage(args.storage, existing=True), args.select or DEFAULT_RULE)
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
    from spotpatch.spaces import PRESETS

    p = command(sub, cmd_confirm)
    p.add_argument("study", metavar="STUDY_NAME", help="the study (its task's name)")
    _add_select(p)
    p.add_argument("--seeds", type=int, default=3, help="retrainings per config (default 3)")
    p.add_argument(
        "--preset",
        action="append",
        default=[],
        choices=PRESETS,
        help="also retrain this fixed recipe (repeatable)",
    )
    p.add_argument(
        "--walk",
        action="store_true",
        help="while the last patch retrained falls more than D points below the full "
        "fine-tune (rule within=D or within-full=D), retrain the next larger searched front "
        "trial: finds the smallest patch confirmed within D",
    )
    _add_storage(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_confirm(args: argparse.Namespace) -> int:
    """retrain the selected patch and the full fine-tune with new seeds: mean ± sd of each

    The searched patch the rule picks (presets left out, as in `report`), the full fine-tune
    and each --preset train again SEEDS times at the study's budget, with seeds no trial used.
    Every run is stored in the study: a stopped confirm resumes, a larger --seeds adds runs,
    and `report` then uses the means.
    """
    from spotpatch.search import DEFAULT_RULE
    from spotpatch.studies import confirm_study

    def said(label: str, seed: int, value: float) -> None:
        if not args.json:
            print(f"{label} seed {seed}: mAP {value:.3f}", flush=True)

    result = confirm_study(
        args.study,
        storage=args.storage,
        rule=args.select or DEFAULT_RULE,
        seeds=args.seeds,
        presets=args.preset,
        on_run=said,
        walk=args.walk,
    )
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    rows = [
        [
            c.label,
            "-" if c.trial is None else str(c.trial),
            kib(c.patch_bytes),
            f"{c.mean:.3f} ± {c.sd:.3f}",
            str(len(c.maps)),
        ]
        for c in result.configs
    ]
    print(table(rows, ["config", "trial", "patch", "val mAP", "seeds"]))
    v = result.versus_full
    print(
        f"selected vs full: {100 * v.delta:+.1f} ± {100 * v.delta_sd:.1f} mAP points "
        f"({v.seeds} seeds each)"
    )
    if args.walk:
        h = result.held_versus_full
        print(
            f"smallest searched patch within the rule's distance, confirmed: trial {result.held}, "
            f"{100 * h.delta:+.1f} ± {100 * h.delta_sd:.1f} mAP points"
            if h is not None
            else "no searched front trial was confirmed within the rule's distance"
        )
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
