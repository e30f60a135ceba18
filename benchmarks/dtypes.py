"""Storage dtypes: each study's selected patch at float32, float16 and int8, scored as stored.

Run: ``.venv/bin/python benchmarks/dtypes.py --storage sqlite:///runs/reproduce/spotpatch.db
--studies glyphs shapes-subset [--select RULE | --trial N] [--out benchmarks/results/dtypes.json]``

Nothing trains. For each study, its answer (or the trial ``--select`` picks, as ``export``
would, or its trial ``--trial``) gives the patch tensors it stored. Those tensors are stored
again at each dtype (``float32`` as they are; ``float16``; ``int8`` as ``spotpatch.spaces``
lays it out: weights with float16 scales, norms as their affine map, other 1-D tensors
float16), each stored patch is applied to the study's
base and scored on val by the evaluator's own scoring (what a trial's mAP is), and its bytes are
the payload a patch file of it holds. Δ is in mAP points against the float32 row. A study
searched at float32 gives the tensors as trained; one searched at another dtype gives tensors
already rounded to it, which the float32 row then holds as they are.

The study file each study recorded must still read (its val split is scored), and its base must
be the study's (same sha256). Prints a Markdown table and writes every row to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import replace
from pathlib import Path

import torch

from spotpatch import UserError
from spotpatch.evaluators import load_base
from spotpatch.search import study_meta, trial_records
from spotpatch.spaces import DTYPES
from spotpatch.studies import (
    evaluator_of,
    load_study,
    open_storage,
    recorded_spec,
    selected_trial,
    study_space,
    trial_patch,
)


def measure(
    storage_url: str,
    names: list[str],
    rule: str | None,
    device: str | None,
    trial: int | None = None,
) -> list[dict]:
    """One row per study and dtype: bytes and val mAP of the selected patch stored at it."""
    storage = open_storage(storage_url, existing=True)
    rows = []
    for name in names:
        study = load_study(name, storage)
        meta = study_meta(study)
        if trial is None:
            record = selected_trial(study, rule)
        else:
            record = next(r for r in trial_records(study) if r.number == trial)
        patch = trial_patch(study, record, storage)
        spec = recorded_spec(meta)
        base = load_base(meta.model, meta.checkpoint, device=device or spec.base.device)
        if base.sha256 != meta.base_sha256:
            raise UserError(f"the base at {base.source} is not study {name!r}'s base")
        evaluator = evaluator_of(spec, base=base, progress=False)
        # The stored patch in the model, read back at float32: the values every dtype re-stores.
        applied = base.apply_stored(patch, study_space(base, meta))
        reference = None
        for dtype in DTYPES:
            stored = replace(patch, tensors=applied.state(dtype), dtype=dtype)
            size = stored.payload_bytes
            expected = applied.space.with_options(dtype=dtype).patch_bytes(patch.config)
            if size != expected:
                raise RuntimeError(f"{name} at {dtype}: {size} bytes stored, {expected} counted")
            value, value50 = evaluator.score(stored)
            row = {
                "study": name,
                "trial": record.number,
                "study_dtype": meta.dtype,
                "dtype": dtype,
                "bytes": size,
                "map": value,
                "map50": value50,
                "trial_map": record.map,
            }
            reference = reference or row
            row["bytes_vs_float32"] = size / reference["bytes"]
            row["delta_points"] = 100 * (value - reference["map"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| study | dtype | bytes | bytes vs float32 | val mAP | Δ mAP points vs float32 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['study']} | {r['dtype']} | {r['bytes']:,} | {r['bytes_vs_float32']:.3f} | "
            f"{r['map']:.4f} | {r['delta_points']:+.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="the studies' storage URL")
    parser.add_argument("--studies", nargs="+", required=True, help="study names")
    parser.add_argument("--select", help="a selection rule (default: each study's answer)")
    parser.add_argument("--trial", type=int, help="this trial of each study (a preset's, say)")
    parser.add_argument("--device", default=None, help="default: each study file's device")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dtypes.json"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure(args.storage, args.studies, args.select, args.device, args.trial)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "storage": args.storage,
        "select": args.select,
        "trial": args.trial,
        "device": args.device,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
