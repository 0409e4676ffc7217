"""Seconds per step of a preset's fit at a given size (median over steps after warm-up).

    python -m benchmarks.iter_time [--preset denoise-paper] [--size 256] [--steps 12] [--warmup 2]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="denoise-paper")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import torch

    from deepprior.pipeline import restore
    from deepprior.presets import get_preset

    preset = get_preset(args.preset)
    y = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    stamps = []
    restore(y, preset.replace(iters=args.steps + args.warmup), rng=0, device=args.device,
            callback=lambda step, state: stamps.append(time.perf_counter()))
    per_step = [b - a for a, b in zip(stamps[args.warmup - 1 :], stamps[args.warmup:])] if args.warmup else []
    med = statistics.median(per_step)
    print(f"{args.preset} at {args.size}x{args.size} on {args.device} (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads): {med:.3f} s/step (median of {len(per_step)}, "
          f"min {min(per_step):.3f}, max {max(per_step):.3f})")


if __name__ == "__main__":
    main()
