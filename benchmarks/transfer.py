"""The transfer facts the test suite's margins rest on (``tests/evaluators/test_transfer.py``).

Run: ``.venv/bin/python benchmarks/transfer.py [--steps 30] [--seeds 0 1 2]``

At the suite's scale (the bundled benchmark at a quarter of its size: 128 train / 32 val
images), with the suite's recipe (batch 16, lr 3e-3): on glyphs (far) the class head alone and
the full fine-tune from the shipped base; on shapes-subset (near) the full fine-tune from the
shipped base and from a random one. Prints val mAP per seed.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from spotpatch.benchmark import write_benchmark
from spotpatch.evaluators import PatchEvaluator, TrainSettings, load_base
from spotpatch.studies import evaluator_of, load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    out = Path(tempfile.mkdtemp()) / "bench"
    write_benchmark(out, scale=0.25, tasks=["shapes-subset", "glyphs"], progress=False)
    settings = TrainSettings(steps=args.steps, batch_size=16, lr=3e-3)
    bases = {
        "shipped": load_base("spotpatch-tiny", device="cpu"),
        "random": load_base("spotpatch-tiny", random_init=True, seed=0, device="cpu"),
    }

    def score(task: str, base: str, preset: str, seed: int) -> float:
        spec = load_spec(out / "studies" / f"{task}.toml")
        task_ = evaluator_of(spec, progress=False).task
        evaluator = PatchEvaluator(task_, bases[base], settings, progress=False)
        return evaluator.evaluate(evaluator.space.preset(preset), seed=seed).map

    print("| seed | glyphs: head | glyphs: full | shapes-subset: full | ... from a random base |")
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        cells = [
            score("glyphs", "shipped", "head", seed),
            score("glyphs", "shipped", "full", seed),
            score("shapes-subset", "shipped", "full", seed),
            score("shapes-subset", "random", "full", seed),
        ]
        print(f"| {seed} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
