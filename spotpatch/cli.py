"""The ``spotpatch`` command: parse, call one function of a room, print.

A :class:`UserError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from spotpatch import __version__
from spotpatch._errors import UserError

__all__ = ["main", "build_parser"]

STORAGE = "sqlite:///spotpatch.db"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(
            str(v).rjust(w) if i else str(v).ljust(w)
            for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


# -- commands ----------------------------------------------------------------------------------
def cmd_demo_data(args: argparse.Namespace) -> int:
    from spotpatch.benchmark import write_benchmark

    out = write_benchmark(
        args.out, seed=args.seed, scale=args.scale, tasks=args.tasks or None, overwrite=args.force
    )
    print(f"wrote the bundled benchmark to {out} (study specs in {out / 'studies'})")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from spotpatch.evaluators import PRETRAIN_SETTINGS, pretrain

    settings = replace(
        PRETRAIN_SETTINGS,
        **{
            k: v
            for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr))
            if v is not None
        },
    )
    result = pretrain(
        args.data,
        args.out,
        model=args.model,
        settings=settings,
        seed=args.seed,
        device=args.device,
    )
    print(
        f"base {args.model} -> {result.out}: val mAP {result.map:.3f} (AP50 {result.map50:.3f}),"
        f" {result.seconds:.0f} s, sha256 {result.sha256[:12]}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from spotpatch.studies import evaluate_spec

    result, evaluator = evaluate_spec(args.study, preset=args.preset, config_file=args.config)
    what = args.preset or str(args.config)
    record = {
        "study": evaluator.task.name,
        "config": what,
        "map": result.map,
        "map50": result.map50,
        "patch_bytes": result.patch_bytes,
        "train_seconds": round(result.train_seconds, 2),
        "sites": result.config.to_dict(),
    }
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(
            _table(
                [
                    [
                        what,
                        f"{result.map:.3f}",
                        f"{result.map50:.3f}",
                        _kib(result.patch_bytes),
                        f"{result.train_seconds:.1f}",
                        result.config.summary(),
                    ]
                ],
                ["config", "mAP", "AP50", "patch", "train s", "sites"],
            )
        )
    return 0


def _progress_line(state) -> str:
    best = "-" if state.best_map is None else f"{state.best_map:.3f}"
    small = "-" if state.smallest_front_bytes is None else _kib(state.smallest_front_bytes)
    extra = f", {state.failed} failed" if state.failed else ""
    extra += f", {state.pruned} pruned" if state.pruned else ""
    return (
        f"trials {state.done}/{state.total}{extra} | front {state.front_size} | "
        f"best mAP {best} | smallest front patch {small}"
    )


def cmd_run(args: argparse.Namespace) -> int:
    from spotpatch.studies import run_study

    tty = sys.stderr.isatty()

    def report(state) -> None:
        line = _progress_line(state)
        print(
            f"\r{line}\033[K" if tty else line,
            end="" if tty else "\n",
            file=sys.stderr,
            flush=True,
        )

    try:
        state = run_study(
            args.study,
            trials=args.trials,
            backend=args.backend,
            workers=args.workers,
            storage=args.storage,
            ray_address=args.ray_address,
            on_trial=report,
        )
    except KeyboardInterrupt:
        print("\nspotpatch: stopped; run the same command again to resume", file=sys.stderr)
        return 130
    if tty:
        print(file=sys.stderr)
    print(_progress_line(state))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from spotpatch.studies import open_storage, study_status

    rows = study_status(open_storage(args.storage, existing=True))
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return 0
    if not rows:
        print(f"no spotpatch studies in {args.storage}")
        return 0
    print(
        _table(
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
                    else _kib(r.progress.smallest_front_bytes),
                    "-" if r.progress.hypervolume is None else f"{r.progress.hypervolume:.3f}",
                ]
                for r in rows
            ],
            ["study", "done", "failed", "pruned", "front", "best mAP", "smallest front", "HV"],
        )
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
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
        f"mAP {m['map']:.3f} (AP50 {m['map50']:.3f}), patch {_kib(m['patch_bytes'])} "
        f"({m['patch_bytes']:,} bytes), test mAP {test}"
        + (f"; ONNX {args.onnx}" if args.onnx else "")
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
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


def cmd_dashboard(args: argparse.Namespace) -> int:
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


def cmd_plan(args: argparse.Namespace) -> int:
    from spotpatch.search import parse_bytes
    from spotpatch.studies import fleet_plan, open_storage

    plan = fleet_plan(open_storage(args.storage, existing=True), parse_bytes(args.budget))
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
        return 0
    rows = [
        [name, str(p.number), f"{p.map:.3f}", _kib(p.bytes)] for name, p in plan.choices.items()
    ]
    print(_table(rows, ["study", "trial", "val mAP", "patch"]))
    saving = f"{plan.full_bytes / plan.total_bytes:.1f}x smaller" if plan.total_bytes else ""
    print(
        f"\n{len(rows)} patches: {_kib(plan.total_bytes)} of a {_kib(plan.budget)} budget, "
        f"mean mAP {plan.mean_map:.3f}; one full detector per task: {_kib(plan.full_bytes)} "
        f"({saving})"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from spotpatch.demo import run_demo

    return run_demo(Path(args.out))


# -- parser ------------------------------------------------------------------------------------
def _add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=STORAGE, help=f"Optuna storage URL (default {STORAGE})")


def _add_select(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--select",
        metavar="RULE",
        help="which trial's patch: knee | min-map=X | max-bytes=B | within=D (default "
        "within=1.0: the smallest patch within 1 mAP point of the best; mAP in [0, 1], D in "
        "points)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spotpatch",
        description="Find, per detection task, the smallest patch to a shared mobile detector "
        "that reaches the task's accuracy.",
    )
    parser.add_argument("--version", action="version", version=f"spotpatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo-data",
        help="write the bundled benchmark: a source set, 10 tasks and a study spec per task",
    )
    p.add_argument("out", type=Path, help="folder to write (must be empty or missing)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every image count (default 1.0: 512/128/128 per task)",
    )
    p.add_argument("--tasks", nargs="+", metavar="NAME", help="only these tasks")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("pretrain", help="train a base detector on a COCO set")
    p.add_argument(
        "--data", type=Path, required=True, help="folder with train.json, train/, val.json, val/"
    )
    p.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    p.add_argument("--model", default="spotpatch-tiny", help="detector (default spotpatch-tiny)")
    p.add_argument("--steps", type=int, help="optimizer steps (default 4000)")
    p.add_argument("--batch-size", type=int, help="images per step (default 32)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.003)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda...")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("evaluate", help="train and score one patch config of a study")
    p.add_argument("study", type=Path, help="the study file (STUDY.toml)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--preset", choices=["head", "bn", "dw", "lora4", "full"], help="a fixed recipe"
    )
    which.add_argument("--config", type=Path, help="a JSON file {site: kind}, or a patch.json")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="run or resume a task's study")
    p.add_argument("study", type=Path, help="the study file (STUDY.toml)")
    p.add_argument("--trials", type=int, help="trials in total (default: the spec's)")
    p.add_argument("--backend", choices=["local", "ray"], help="where trials run")
    p.add_argument("--ray-address", help="join a running Ray cluster: auto or HOST:PORT")
    p.add_argument("--workers", type=int, help="trials at once (local processes or Ray)")
    p.add_argument("--storage", help="Optuna storage URL (default: the spec's)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="one line per study")
    _add_storage(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "export",
        help="write a study's chosen patch (no retraining): DIR/patch.safetensors + patch.json",
        description="Write the patch of the trial a selection rule picks, from the tensors the "
        "trial stored. DIR must be new, empty or an earlier export (which is replaced).",
    )
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
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "predict",
        help="run base + an exported patch on images; COCO results JSON",
        description="Detect with base + patch. image_id is the file stem when every stem is a "
        "number (COCO naming), else the image's position (from 0); bbox is [x, y, w, h] in the "
        "original image's pixels.",
    )
    p.add_argument("patch", type=Path, metavar="DIR", help="a folder written by export")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    p.add_argument("--out", type=Path, help="write the results here (default: stdout)")
    p.add_argument(
        "--score-threshold", type=float, help="drop detections scoring below (default 0.05)"
    )
    p.add_argument(
        "--checkpoint", type=Path, help="base weights (default: the model's shipped weights)"
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda...")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "dashboard",
        help="the Pareto dashboard: one offline HTML file, or a local server",
        description="Every study's trials and front, search progress, where the selected patches "
        "spend their bytes, and the fleet against one full detector per task.",
    )
    _add_storage(p)
    _add_select(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, metavar="FILE.html", help="write one HTML file")
    where.add_argument(
        "--serve", action="store_true", help="serve it on 127.0.0.1, rebuilt on each reload"
    )
    p.add_argument("--port", type=int, help="port for --serve (default 8050; 0: any free one)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser(
        "plan",
        help="fleet plan: one front point per study, best mean mAP within a byte budget",
        description="Pick one Pareto-front trial per study so that the mean val mAP is as high "
        "as possible with the patches' total bytes within the budget (solved exactly), and "
        "compare with storing one full detector per task.",
    )
    p.add_argument("--budget", required=True, help="total bytes: 2000000, 1.5MB, 900KiB...")
    _add_storage(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "demo",
        help="the demo: bundled benchmark, studies on 3 tasks, dashboard, exports, fleet plan",
    )
    p.add_argument("--out", default="demo", help="working folder (default ./demo)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="spotpatch: %(levelname)s: %(message)s",
    )
    try:
        return args.func(args)
    except UserError as e:
        print(f"spotpatch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spotpatch: interrupted", file=sys.stderr)
        return 130
