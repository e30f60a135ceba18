"""Where a patch must go: hand-placed configs on one task, against the full fine-tune.

Run: ``.venv/bin/python benchmarks/placement.py --data runs/reproduce/bench --task glyphs``

Trains, exactly as a study's trial would (the spec's seed, ``--steps`` per trial: 150 by
default, the budget of ``reproduce.py``; the bundled specs say 300), configs that give whole
detector parts one kind: ``full`` on the early feature stages (``backbone.features.0``, the
stem to stride 8, and ``backbone.features.1``, stride 16) and/or the heads, everything else
shared. These are diagnostics of the search (what its front should reach), not presets.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace

import torch

from spotpatch.studies import evaluator_of, load_spec


def _early0(gate: str) -> bool:
    return gate.startswith("backbone.features.0")


def _early1(gate: str) -> bool:
    return gate.startswith("backbone.features.1")


def _heads(gate: str) -> bool:
    return gate.startswith("head.")


#: name -> gate label -> kind (None: shared).
CONFIGS: dict[str, Callable[[str], str | None]] = {
    "full features.0-1 + heads": lambda g: (
        "full" if _early0(g) or _early1(g) or _heads(g) else None
    ),
    "full features.0-1": lambda g: "full" if _early0(g) or _early1(g) else None,
    "full heads": lambda g: "full" if _heads(g) else None,
    "full features.0 + heads, lora4 features.1": lambda g: (
        "full" if _early0(g) or _heads(g) else ("lora4" if _early1(g) else None)
    ),
    "full features.0 + heads": lambda g: "full" if _early0(g) or _heads(g) else None,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a written bundled benchmark")
    parser.add_argument("--task", default="glyphs")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--steps", type=int, default=150, help="steps per trial (default 150)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = load_spec(f"{args.data}/studies/{args.task}.toml")
    spec = replace(spec, train=replace(spec.train, steps=args.steps))
    evaluator = evaluator_of(spec, progress=False)
    space = evaluator.space
    for name in ["full", *args.configs]:
        if name == "full":
            config = space.preset("full")
        else:
            rule = CONFIGS[name]
            config = space.config_from_gates(
                {g: kind for g in space.groups() if (kind := rule(g)) is not None}
            )
        result = evaluator.evaluate(config)
        line = {
            "task": args.task,
            "config": name,
            "map": round(result.map, 4),
            "bytes_pct": round(100 * result.patch_bytes / space.full_bytes(), 1),
            "steps": args.steps,
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
