"""The device bundle: its outputs against PyTorch's, its bytes against one ONNX model per task,
and the time to switch task and to detect.

Run: ``.venv/bin/python benchmarks/bundle.py --storage sqlite:///runs/reproduce/spotpatch.db
[--map-studies glyphs night tiny-crowd] [--out benchmarks/results/bundle.json]``

Nothing trains. Every study's answer goes into one bundle at its own dtype (float32 for the
bundled specs) and into one at ``int8``; each answer is also exported as a whole ONNX model
(``export --onnx``), as a fleet without the bundle would ship it. Then:

- *bytes*: the bundle's files against the ten whole models; the bundle's overhead is its bytes
  (``manifest.json`` included) less the base's (graph and weights) and the patches' payload
  (what the studies count);
- *outputs*: for ``--map-studies``, the largest absolute difference between the runtime's raw
  outputs and PyTorch's patched detector (``RawSSD``) on the test images, and the COCO mAP on
  the test split from PyTorch (``predict``), from the float32 bundle and from the int8 bundle
  (all through pycocotools);
- *time*: making each task's detector (checking its files, applying its patch, the ONNX Runtime
  session) five times, the median; and one image, and a batch of 32, through a detector (the
  median of 20 runs), on this machine's CPU.

The study files the studies recorded must still read (for the test splits). Prints Markdown
tables and writes everything to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from spotpatch.evaluators import load_split, predict, results_map
from spotpatch.runtime import Fleet
from spotpatch.search import study_meta
from spotpatch.studies import (
    RawSSD,
    answer_patch,
    each_study,
    export_onnx,
    open_storage,
    recorded_spec,
    study_base,
    study_space,
    write_bundle,
)


def _runtime_results(detector, split) -> list[dict]:
    results = []
    for start in range(0, len(split), 32):
        idx = range(start, min(start + 32, len(split)))
        images = [split.images[i].permute(1, 2, 0).numpy() for i in idx]
        for i, found in zip(idx, detector(images), strict=True):
            w, h = split.sizes[i]
            rh, rw = split.images[i].shape[1:]
            boxes = found["boxes"] * np.array([w / rw, h / rh, w / rw, h / rh], np.float32)
            for box, score, cid in zip(
                boxes.tolist(),
                found["scores"].tolist(),
                found["category_ids"].tolist(),
                strict=True,
            ):
                results.append(
                    {
                        "image_id": split.image_ids[i],
                        "category_id": int(cid),
                        "bbox": [round(v, 3) for v in box],
                        "score": round(score, 5),
                    }
                )
    return results


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(storage_url: str, map_studies: list[str], work: Path) -> dict:
    storage = open_storage(storage_url, existing=True)
    f32, i8 = work / "float32", work / "int8"
    manifest = write_bundle(f32, storage=storage_url)
    manifest_i8 = write_bundle(i8, storage=storage_url, dtype="int8")
    whole, models = {}, {}
    for study in each_study(storage):
        meta = study_meta(study)
        base = study_base(meta, "cpu", required=True)
        patch, _, _ = answer_patch(study, storage_url)
        model = base.apply_stored(patch, study_space(base, meta)).model
        path = export_onnx(
            model, base.detector.image_size, work / "whole" / f"{study.study_name}.onnx"
        )
        whole[study.study_name] = path.stat().st_size
        models[study.study_name] = (model, patch, meta)

    def bundle_bytes(m: dict, folder: Path) -> dict:
        base = m["base"]["graph"]["bytes"] + m["base"]["weights"]["bytes"]
        tasks = sum(t["bytes"] for t in m["tasks"].values())
        payload = sum(t["payload_bytes"] for t in m["tasks"].values())
        listed = (folder / "manifest.json").stat().st_size
        return {
            "base": base,
            "base_weights": m["base"]["weights"]["bytes"],
            "tasks": tasks,
            "payload": payload,
            "manifest": listed,
            "total": base + tasks + listed,
        }

    sizes = {
        "float32": bundle_bytes(manifest, f32),
        "int8": bundle_bytes(manifest_i8, i8),
        "whole_models": sum(whole.values()),
        "whole_per_task": whole,
    }
    fleet, fleet_i8 = Fleet(f32), Fleet(i8)
    rows = []
    for name in map_studies:
        model, patch, meta = models[name]
        spec = recorded_spec(meta)
        split, cats = load_split(
            spec.data.test,
            spec.data.test_images,
            resize=study_base(meta, "cpu", required=True).detector.resized,
        )
        ids = tuple(cats)
        detector = fleet.detector(name)
        batch = torch.stack([split.images[i] for i in range(min(32, len(split)))]).float() / 255
        with torch.no_grad():
            want = RawSSD(model, tuple(detector.image_size))(batch)
        got = detector.raw(batch.numpy())
        diff = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))
        rows.append(
            {
                "study": name,
                "sites": manifest["tasks"][name]["sites"],
                "max_abs_diff": diff,
                "map_pytorch": results_map(split, predict(model, split, ids))[0],
                "map_float32": results_map(split, _runtime_results(detector, split))[0],
                "map_int8": results_map(split, _runtime_results(fleet_i8.detector(name), split))[
                    0
                ],
            }
        )
    timing = {}
    image = np.zeros((128, 128, 3), np.uint8)
    images = [image] * 32
    for name in manifest["tasks"]:
        detector = fleet.detector(name)
        timing[name] = {
            "switch_s": _median_seconds(lambda n=name: fleet.detector(n), 5),
            "image_s": _median_seconds(lambda d=detector: d([image]), 20),
            "batch32_per_image_s": _median_seconds(lambda d=detector: d(images), 5) / 32,
            "task_bytes": manifest["tasks"][name]["bytes"],
        }
    return {"sizes": sizes, "outputs": rows, "timing": timing}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", required=True)
    p.add_argument("--map-studies", nargs="+", default=["glyphs", "night", "tiny-crowd"])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/bundle.json"))
    args = p.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.storage, args.map_studies, Path(tmp))
    result["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    s = result["sizes"]
    kib = lambda b: f"{b / 1024:,.1f} KiB"  # noqa: E731
    print("| | bytes |\n|---|---|")
    for key in ("float32", "int8"):
        b = s[key]
        overhead = b["total"] - b["base"] - b["payload"]
        print(
            f"| bundle ({key}) | {kib(b['total'])}: base {kib(b['base'])} + tasks "
            f"{kib(b['tasks'])} (payload {kib(b['payload'])}) + manifest {kib(b['manifest'])}, "
            f"overhead {kib(overhead)} = "
            f"{100 * overhead / (b['base'] + b['payload']):.1f} % of base + payload |"
        )
    print(f"| {len(s['whole_per_task'])} whole ONNX models | {kib(s['whole_models'])} |")
    print("\n| study | max abs diff | test mAP PyTorch | runtime float32 | runtime int8 |")
    print("|---|---|---|---|---|")
    for r in result["outputs"]:
        print(
            f"| {r['study']} | {r['max_abs_diff']:.1e} | {r['map_pytorch']:.4f} | "
            f"{r['map_float32']:.4f} | {r['map_int8']:.4f} |"
        )
    t = result["timing"]
    print("\n| study | task file | switch | 1 image | per image in a batch of 32 |")
    print("|---|---|---|---|---|")
    for name, v in t.items():
        print(
            f"| {name} | {kib(v['task_bytes'])} | {1e3 * v['switch_s']:.1f} ms | "
            f"{1e3 * v['image_s']:.1f} ms | {1e3 * v['batch32_per_image_s']:.2f} ms |"
        )


if __name__ == "__main__":
    main()
