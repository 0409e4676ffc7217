"""Memory of big photos: measured peak against the estimate printed before a fit.

    python -m benchmarks.memory [--presets denoise-small denoise-paper] [--sizes 512 1024 2048]
                                [--limit-gib 20] [--budget-gib 16]

For every (preset, size) the estimate of :func:`deepprior.cost.estimate` is computed; where it
is under ``--limit-gib`` (what this machine can hold), a fresh process runs 2 steps of the real
denoising fit at that size (``deepprior.pipeline.restore`` on a random image, the memory check
off, the allocator tuned as the CLI runs it: ``deepprior.runtime``) and reports its peak resident
set size (``ru_maxrss``: the fit plus Python and torch themselves, ~0.3-0.5 GiB).  For each preset it also gives the largest square photo whose
estimate (plus 0.5 GiB for the framework) fits in ``--budget-gib`` (16 GiB: a common laptop).
Writes ``benchmarks/results/memory.json`` and ``memory.md`` (included in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FRAMEWORK_GIB = 0.5  # Python + torch themselves, added to the estimate for the budget
WORKER = "_worker"


def estimate_for(preset_name: str, size: int):
    from deepprior.cost import estimate
    from deepprior.networks import build_network, size_multiple
    from deepprior.presets import get_preset
    from deepprior.runtime import TUNED_MEMORY_FACTOR

    p = get_preset(preset_name)
    e = estimate(build_network(p.network, p.input_depth, 3), p.input_depth, 3, size, size,
                 multiple=size_multiple(p.network))
    return e.scaled(TUNED_MEMORY_FACTOR)  # what the CLI's memory check counts (deepprior.runtime)


def worker(preset_name: str, size: int) -> dict:
    import torch

    from deepprior.pipeline import restore
    from deepprior.presets import get_preset
    from deepprior.runtime import tune_allocator

    tuned = tune_allocator()  # as the CLI runs a fit
    y = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    r = restore(y, get_preset(preset_name).replace(iters=2), rng=0, device="cpu", check_memory=False,
                max_pixels=None)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"peak_rss_gib": round(rss, 3), "seconds_2_steps": round(time.perf_counter() - t0, 1),
            "precision": r.preset.precision, "allocator_tuned": tuned}


def largest_side(preset_name: str, budget_gib: float) -> int:
    """Largest square side (multiple of 64) whose estimate + framework fits the budget."""
    lo, hi = 64, 64
    while estimate_for(preset_name, hi * 2).gib + FRAMEWORK_GIB <= budget_gib:
        hi *= 2
    lo, hi = hi, hi * 2
    while hi - lo > 64:
        mid = (lo + hi) // 2 // 64 * 64
        if estimate_for(preset_name, mid).gib + FRAMEWORK_GIB <= budget_gib:
            lo = mid
        else:
            hi = mid
    return lo


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [WORKER]:
        print(json.dumps(worker(argv[1], int(argv[2]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["denoise-small", "denoise-paper"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[512, 1024, 2048])
    ap.add_argument("--limit-gib", type=float, default=20.0, help="measure only estimates under this")
    ap.add_argument("--budget-gib", type=float, default=16.0)
    args = ap.parse_args(argv)
    rows = []
    for name in args.presets:
        for size in args.sizes:
            e = estimate_for(name, size)
            row = {"preset": name, "size": size, "estimate_gib": round(e.gib, 3),
                   "gflop_per_step": round(e.gflop_per_step, 1)}
            if e.gib + FRAMEWORK_GIB <= args.limit_gib:
                proc = subprocess.run([sys.executable, "-m", "benchmarks.memory", WORKER, name, str(size)],
                                      cwd=REPO, capture_output=True, text=True)
                if proc.returncode == 0:
                    row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
                else:
                    row["error"] = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            else:
                row["note"] = f"not run: the estimate exceeds this machine's {args.limit_gib:g} GiB limit"
            rows.append(row)
            print(row, flush=True)
    largest = {name: largest_side(name, args.budget_gib) for name in args.presets}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps({"rows": rows, "largest_side": largest,
                                                     "budget_gib": args.budget_gib}, indent=2) + "\n")
    lines = ["Reproduce: `python -m benchmarks.memory` (CPU, fp32; each measured row is 2 steps of the real "
             "denoising fit in a fresh process, the allocator tuned as the CLI runs it; peak RSS includes Python "
             "and torch, ~0.3-0.5 GiB). The estimate is what the CLI prints and checks: the network's activations "
             "and state (`deepprior.cost`) times 1.4, for the freed blocks the tuned allocator keeps "
             "(`deepprior.runtime.TUNED_MEMORY_FACTOR`).", "",
             "| preset | size | estimate (GiB) | measured peak RSS (GiB) | GFLOP/step |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        meas = f"{r['peak_rss_gib']:.2f}" if "peak_rss_gib" in r else r.get("error") or r.get("note", "")
        lines.append(f"| {r['preset']} | {r['size']}x{r['size']} | {r['estimate_gib']:.2f} | {meas} | "
                     f"{r['gflop_per_step']:.0f} |")
    lines += ["", f"Largest square photo whose estimate (+{FRAMEWORK_GIB} GiB for the framework) fits in "
              f"{args.budget_gib:g} GiB: " + "; ".join(f"`{n}` {s}x{s}" for n, s in largest.items()) + "."]
    (RESULTS / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
