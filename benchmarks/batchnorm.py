"""BatchNorm's channel counts on a CPU: PyTorch's channels-last kernel against deepprior's route.

    python -m benchmarks.batchnorm [--repeats 3] [--out batchnorm.md]

PyTorch's channels-last BatchNorm vectorises over the channels and runs 2-5x slower per channel
when their count is not a multiple of 16: the paper's 4-channel skips and the merges' 4 + 32,
4 + 64, 4 + 128.  :class:`deepprior.networks.BatchNorm` normalises a merge part by part and a few
channels through an NCHW copy (the same function).  This measures, in one process on this machine:

1. forward + backward of one BatchNorm at the skip networks' shapes, PyTorch's kernel on the
   concatenation against deepprior's route (median of 15 alternated rounds of 20 calls);
2. seconds per step of whole fits (median over steps after 5 warm-up steps), the old route
   (PyTorch's kernel everywhere) and the new one alternated ``--repeats`` times, the allocator tuned
   as the CLI runs.

Writes ``benchmarks/results/batchnorm.md`` (a section of BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# (skip channels, deeper channels, side): the merges of the small network (4 + 32 at full size,
# 4 + 64 below) and of the paper's (4 + 128); a skip branch's own 4 channels (deeper 0)
SHAPES = [(4, 0, 128), (4, 32, 128), (4, 64, 64), (4, 128, 128), (4, 128, 256)]
# (preset, image side, steps timed): the presets whose networks have such channel counts
FITS = [("sr-x4-fast", 128, 40), ("denoise-sure", 128, 40), ("sr-x4-paper", 128, 15), ("denoise-paper", 256, 8)]


def _alternated_ms(fns, rounds: int = 15, per_round: int = 20) -> list[float]:
    """Median milliseconds per call of each function, timed in alternating rounds (this machine's
    speed drifts within seconds)."""
    for fn in fns:
        for _ in range(10):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, t in zip(fns, times):
            t0 = time.perf_counter()
            for _ in range(per_round):
                fn()
            t.append((time.perf_counter() - t0) / per_round * 1e3)
    return [statistics.median(t) for t in times]


def layer_times() -> list[dict]:
    import torch
    from torch import nn

    from deepprior.networks import BatchNorm

    cl = torch.channels_last
    gen = torch.Generator().manual_seed(0)
    rows = []
    for skip, deep, side in SHAPES:
        sizes = [c for c in (skip, deep) if c]
        parts = [torch.randn(1, c, side, side, generator=gen).contiguous(memory_format=cl).requires_grad_()
                 for c in sizes]
        grad = torch.randn(1, sum(sizes), side, side, generator=gen).contiguous(memory_format=cl)
        ref, ours = nn.BatchNorm2d(sum(sizes)), BatchNorm(sum(sizes))

        def pytorch():
            ref(torch.cat(parts, 1) if len(parts) > 1 else parts[0]).backward(grad)

        def deepprior():
            ours(parts).backward(grad)

        theirs, ours_ms = _alternated_ms([pytorch, deepprior])
        rows.append({"channels": " + ".join(map(str, sizes)), "side": side, "pytorch_ms": theirs,
                     "deepprior_ms": ours_ms})
    return rows


def step_ms(name: str, side: int, steps: int, warmup: int = 5) -> float:
    from benchmarks.iter_time import step_times

    return statistics.median(step_times(name, side, steps, warmup)) * 1e3


def fit_times(repeats: int) -> list[dict]:
    import deepprior.networks as networks

    route = networks._slow_on_cpu
    rows = []
    for name, side, steps in FITS:
        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(repeats):
            for which in ("old", "new"):  # alternated: this machine's speed drifts
                networks._slow_on_cpu = (lambda x: False) if which == "old" else route
                try:
                    times[which].append(step_ms(name, side, steps))
                finally:
                    networks._slow_on_cpu = route
        rows.append({"preset": name, "side": side, "old_ms": statistics.median(times["old"]),
                     "new_ms": statistics.median(times["new"]), "runs": times})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.batchnorm", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="alternations of the old and new route per fit")
    ap.add_argument("--out", default="batchnorm.md", help="file name under benchmarks/results")
    args = ap.parse_args(argv)

    import warnings

    import torch

    from benchmarks import paper
    from deepprior.runtime import tune_allocator

    tune_allocator()
    warnings.filterwarnings("ignore", message=".*noise level.*")  # random test images
    layers = layer_times()
    for r in layers:
        print(r, flush=True)
    fits = fit_times(args.repeats)
    for r in fits:
        print(r, flush=True)
    lines = [f"Reproduce: `python -m benchmarks.batchnorm --repeats {args.repeats}` (cpu, {torch.get_num_threads()} "
             f"threads, torch {torch.__version__}, commit {paper.git_commit()}; the allocator tuned as the CLI runs).",
             "", "One BatchNorm in training mode, forward + backward, channels-last (median of 15 alternated rounds of "
             "20 calls):", "",
             "| channels | side | PyTorch's kernel (ms) | deepprior's route (ms) | speed-up |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['channels']} | {r['side']} | {r['pytorch_ms']:.3f} | {r['deepprior_ms']:.3f} | "
              f"{r['pytorch_ms'] / r['deepprior_ms']:.2f}x |" for r in layers]
    lines += ["", f"Whole fits, milliseconds per step (median of the steps after 5 warm-up; median of {args.repeats} "
              "runs of each route, alternated):", "",
              "| preset | side | PyTorch's kernel | deepprior's route | speed-up |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['preset']} | {r['side']} | {r['old_ms']:.1f} | {r['new_ms']:.1f} | {r['old_ms'] / r['new_ms']:.2f}x |"
              for r in fits]
    out = RESULTS / args.out
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
