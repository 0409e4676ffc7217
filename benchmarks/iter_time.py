"""Seconds per step of a preset's fit at a given size (median over steps after warm-up).

    python -m benchmarks.iter_time [--preset denoise-paper] [--size 256] [--steps 12] [--warmup 2]

``--size`` is the output's side (for super-resolution the input is 4x smaller).
"""

from __future__ import annotations

import argparse
import statistics
import time


def step_times(preset, size: int, steps: int, warmup: int = 2, device: str = "cpu") -> list[float]:
    """Seconds of each step after ``warmup`` steps of ``preset`` (a name or a Preset) on a random
    ``size`` x ``size`` image, timed from the fit's step-end callback."""
    import torch

    from deepprior.pipeline import restore
    from deepprior.presets import get_preset

    preset = get_preset(preset)
    gen = torch.Generator().manual_seed(0)
    kw: dict = {}
    if preset.task == "sr":
        y, kw = torch.rand(1, 3, size // 4, size // 4, generator=gen), {"scale": 4}
    else:
        y = torch.rand(1, 3, size, size, generator=gen)
        if preset.loss == "sure":  # a random image's estimated noise level is far above SURE's range
            kw = {"sigma": 25 / 255}
        if preset.loss == "blindspot":
            kw = {"known": (torch.rand(1, 1, size, size, generator=gen) < 0.5).float()}
    stamps: list[float] = []
    restore(y, preset.replace(iters=steps + warmup), rng=0, device=device,
            callback=lambda step, state: stamps.append(time.perf_counter()), **kw)
    return [b - a for a, b in zip(stamps[max(warmup, 1) - 1:], stamps[max(warmup, 1):])]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="denoise-paper")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import torch

    per_step = step_times(args.preset, args.size, args.steps, args.warmup, args.device)
    med = statistics.median(per_step)
    print(f"{args.preset} at {args.size}x{args.size} on {args.device} (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads): {med:.3f} s/step (median of {len(per_step)}, "
          f"min {min(per_step):.3f}, max {max(per_step):.3f})")


if __name__ == "__main__":
    main()
