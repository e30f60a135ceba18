"""Training speed of each preset relative to ``full``, measured in one run.

Run: ``.venv/bin/python benchmarks/step_speed.py [--steps 20] [--rounds 3] [--batch-size 16]``

Presets are timed round-robin (every round times each preset once) so that machine noise hits
all of them alike; the table reports the median images/s per preset and its ratio to ``full``.
Uses the shipped spotpatch-tiny base and a fixed synthetic batch (4 boxes per 128x128 image).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spotpatch.evaluators import load_base
from spotpatch.spaces import PRESETS


def _batch(n: int, size: int = 128):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g) for _ in range(n)]
    targets = []
    for _ in range(n):
        xy = torch.rand(4, 2, generator=g) * (size - 40)
        wh = 16 + torch.rand(4, 2, generator=g) * 24
        targets.append(
            {
                "boxes": torch.cat([xy, xy + wh], 1),
                "labels": torch.randint(1, 5, (4,), generator=g),
            }
        )
    return images, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per preset per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    base = load_base("spotpatch-tiny", device="cpu")
    space = base.space(5)
    images, targets = _batch(args.batch_size)
    models = {}
    for preset in PRESETS:
        applied = base.apply(space.preset(preset), space, seed=0)
        optimizer = torch.optim.AdamW(applied.parameters(), lr=1e-3, weight_decay=0.0)
        models[preset] = (applied, optimizer)
    speeds: dict[str, list[float]] = {p: [] for p in PRESETS}

    def step(preset: str) -> None:
        applied, optimizer = models[preset]
        applied.model.train()
        loss = sum(applied.model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for preset in PRESETS:  # warm up every kernel once
        for _ in range(3):
            step(preset)
    for _ in range(args.rounds):
        for preset in PRESETS:
            start = time.perf_counter()
            for _ in range(args.steps):
                step(preset)
            speeds[preset].append(args.steps * args.batch_size / (time.perf_counter() - start))
    full = statistics.median(speeds["full"])
    print(
        f"threads: {torch.get_num_threads()}, batch {args.batch_size}, "
        f"{args.rounds} rounds x {args.steps} steps"
    )
    print("| preset | trained tensors | patch (float32) | images/s | vs full |")
    print("|---|---:|---:|---:|---:|")
    for preset in PRESETS:
        applied, _ = models[preset]
        median = statistics.median(speeds[preset])
        print(
            f"| {preset} | {len(applied.expected)} | "
            f"{space.patch_bytes(space.preset(preset)) / 1024:,.1f} KiB | {median:,.0f} | "
            f"{median / full:.2f}x |"
        )


if __name__ == "__main__":
    main()
