"""The commands that write and use a study's patch: ``export``, ``predict``, ``bundle``, and
the ``dashboard`` that shows every study's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spotpatch._errors import UserError
from spotpatch._files import write_text
from spotpatch.cli._command import command
from spotpatch.cli._options import add_select, add_storage
from spotpatch.cli._text import MISSING, kib

__all__ = ["COMMANDS"]


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = command(sub, cmd_export)
    p.add_argument("study", metavar="STUDY_NAME", help="the study (its task's name)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the patch folder")
    add_select(p)
    add_storage(p)
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
    from spotpatch.search import to_points, walked_out_text
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
    if c is not None and c["walked_out"]:
        confirmed = walked_out_text(len(c["walked"]))
    elif c is not None:
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
    p.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="[DIR] IMAGE",
        help="a folder written by export (not with --bundle), then image files",
    )
    p.add_argument("--bundle", type=Path, metavar="DIR", help="a folder written by bundle")
    p.add_argument("--task", metavar="NAME", help="the bundle's task (with --bundle)")
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
    """run base + an exported patch (or a bundle's task) on images; COCO results JSON

    Detect with base + patch, or with a bundle's task through spotpatch.runtime (ONNX Runtime,
    no PyTorch). image_id is the file stem when every stem is a number (COCO naming), else the
    image's position (from 0); bbox is [x, y, w, h] in the original image's pixels.
    """
    threshold = {} if args.score_threshold is None else {"score_threshold": args.score_threshold}
    if args.bundle is not None:
        from spotpatch.runtime import predict_files

        if args.task is None:
            raise UserError("--bundle needs --task NAME")
        if args.checkpoint is not None:
            raise UserError("--checkpoint goes with an export folder, not --bundle")
        images = args.paths
        results = predict_files(args.bundle, args.task, images, **threshold)
    else:
        from spotpatch.studies import predict_images

        if args.task is not None:
            raise UserError("--task goes with --bundle")
        patch, images = args.paths[0], args.paths[1:]
        if not images:
            raise UserError("no images given (predict DIR IMAGE...)")
        results = predict_images(
            patch, images, checkpoint=args.checkpoint, device=args.device, **threshold
        )
    text = json.dumps(results)
    if args.out is None:
        print(text)
        return 0
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write --out {args.out}: {e.strerror or e}") from None
    write_text(args.out, text + "\n")
    print(f"{len(results)} detections on {len(images)} images -> {args.out}")
    return 0


def _add_bundle(sub: argparse._SubParsersAction) -> None:
    from spotpatch._defaults import DTYPES

    p = command(sub, cmd_bundle)
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the bundle folder")
    add_storage(p)
    p.add_argument(
        "--studies", nargs="+", metavar="NAME", help="these studies only (default: every study)"
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        help="store every task's tensors at this dtype (default: each study's own)",
    )
    p.add_argument("--json", action="store_true", help="print manifest.json instead of a summary")


def cmd_bundle(args: argparse.Namespace) -> int:
    """the fleet for a device: the base once, each study's answer as one small file

    Write DIR/base.onnx and DIR/base.safetensors (the base detector up to its raw outputs,
    stored once), DIR/tasks/NAME.safetensors per study (its answer's patch, never retrained)
    and DIR/manifest.json (classes, category ids, bytes and sha256 of every file). Run a task
    with `spotpatch predict --bundle DIR --task NAME` or spotpatch.runtime.Fleet (no PyTorch).
    DIR must be new, empty or an earlier bundle (which is replaced).
    """
    from spotpatch.studies import write_bundle

    manifest = write_bundle(args.out, storage=args.storage, studies=args.studies, dtype=args.dtype)
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    base = manifest["base"]
    base_bytes = base["graph"]["bytes"] + base["weights"]["bytes"]
    print(f"{args.out}: base {base['model']} {kib(base_bytes)} (once)")
    for name, task in manifest["tasks"].items():
        print(f"  {name:<20} trial {task['trial']:>4}  {kib(task['bytes']):>12}  {task['dtype']}")
    total = base_bytes + sum(t["bytes"] for t in manifest["tasks"].values())
    print(f"{len(manifest['tasks'])} tasks, {kib(total)} in all")
    return 0


def _add_dashboard(sub: argparse._SubParsersAction) -> None:
    from spotpatch._defaults import DEFAULT_PORT

    p = command(sub, cmd_dashboard)
    add_storage(p)
    add_select(p)
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

    Each study's trials and front with its answer starred (one study at a time, chosen from a
    list), search progress, where the answers spend their bytes, the report across tasks, and
    the fleet against one full detector per task.
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


COMMANDS = (_add_export, _add_predict, _add_bundle, _add_dashboard)
