"""Seconds per step of a preset's fit at a given size (median over steps after warm-up).

    python -m benchmarks.iter_time [--preset denoise-paper] [--size 256] [--steps 12] [--warmup 2]
                                   [--set FIELD=VALUE ...] [--tune-allocator]

``--size`` is the output's side (for super-resolution the input is 4x smaller).  ``--set`` changes
preset fields (e.g. ``--set sure_every=2``); ``--tune-allocator`` tunes the allocator as the CLI
does (deepprior.runtime).  The mean is given beside the median: a fit whose steps alternate in cost
(``sure_every``) has a mean, not a typical, step.
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
    ap.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE", help="preset fields to change")
    ap.add_argument("--tune-allocator", action="store_true")
    args = ap.parse_args(argv)

    import ast

    import torch

    from deepprior.presets import get_preset

    if args.tune_allocator:
        from deepprior.runtime import tune_allocator

        tune_allocator()
    changes = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.set)}
    per_step = step_times(get_preset(args.preset).replace(**changes), args.size, args.steps, args.warmup, args.device)
    med = statistics.median(per_step)
    label = args.preset + "".join(f" {k}={v}" for k, v in changes.items())
    print(f"{label} at {args.size}x{args.size} on {args.device} (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads): {med:.3f} s/step (median of {len(per_step)}, "
          f"mean {statistics.fmean(per_step):.3f}, min {min(per_step):.3f}, max {max(per_step):.3f})")


if __name__ == "__main__":
    main()
