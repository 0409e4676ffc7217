"""Does averaging independent fits (seeds) close a gap to the paper preset on a quick-benchmark crop?

    python -m benchmarks.fast_seeds [--task inpaint] [--image inpainting11/house] [--fits 4]
                                    [--steps 500 1000 2000] [--preset default]

The crop and degradation of :mod:`benchmarks.fast` (its task, the quick tier's seed) are restored
``--fits`` times by ``--preset`` (``default``: the CLI's choice for the crop), the k-th fit seeded
``seed + 1000 k`` as a preset's ``fits`` are (:data:`deepprior.pipeline.FIT_SEED_STRIDE`).  At each
of ``--steps`` the running average of every fit is kept; the report gives, per step, the PSNR of
each fit, of the mean of pairs (0+1, 2+3, ...) and of all of them, beside the bar (the paper
preset's cached best less 0.2 dB, from ``fast-reference.json``).  Writes
``benchmarks/results/fast-seeds-<task>-<image>.md``.  On a 2-core CPU: about a minute per fit of
2000 steps on a 128 px crop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks import paper
from benchmarks.fast import MARGIN_DB, REFERENCE_CACHE, RESULTS, TASKS, make_case
from benchmarks.protocol import psnr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fast_seeds", description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="inpaint", choices=sorted(TASKS))
    ap.add_argument("--image", default="inpainting11/house")
    ap.add_argument("--fits", type=int, default=4)
    ap.add_argument("--steps", type=int, nargs="+", default=[500, 1000, 1300, 1500, 2000])
    ap.add_argument("--preset", default="default")
    args = ap.parse_args(argv)
    import numpy as np

    import deepprior
    from deepprior.pipeline import FIT_SEED_STRIDE

    task = TASKS[args.task]
    job, case = make_case(task, args.image)
    kind = paper.TABLES[task.table].task
    preset = args.preset
    if preset == "default":  # as the CLI picks it, from the degraded image alone
        preset = deepprior.choose_preset(kind, case.degraded, device="cpu", **case.dip_kwargs).name
    truth = case.truth
    snaps = {s: [] for s in args.steps}
    seconds = []
    for k in range(args.fits):
        def keep(step, state):
            if step in snaps:
                a = state.average[0].permute(1, 2, 0).cpu().numpy().copy()
                snaps[step].append(a[..., 0] if truth.ndim == 2 else a)

        t = time.perf_counter()
        deepprior.run_task(kind, case.degraded, preset=preset, iters=max(args.steps),
                           rng=job.seed + FIT_SEED_STRIDE * k, device="cpu", callback=keep, stop="fixed",
                           **case.dip_kwargs)
        seconds.append(time.perf_counter() - t)
        print(f"fit {k}: {seconds[-1]:.1f} s", flush=True)
    cache = json.loads(REFERENCE_CACHE.read_text()) if REFERENCE_CACHE.exists() else {}
    key = f"{task.reference}|{task.reference_steps}|{args.image}|{task.level:g}" \
        + (f"|strokes{task.strokes}" if task.strokes else "")  # benchmarks.fast.reference's
    ref = cache.get(key)
    bar = None if ref is None else ref["best_db"] - MARGIN_DB
    command = " ".join(["python -m benchmarks.fast_seeds", *(sys.argv[1:] if argv is None else argv)])
    lines = [f"Reproduce: `{command}` ({args.task}: {job.degradation}, the crop of `benchmarks.fast`; `{preset}` "
             f"from {args.fits} seeds, {np.mean(seconds):.0f} s per fit of {max(args.steps)} steps on this CPU; "
             f"PSNR of each fit's running average, of the mean of pairs and of all; commit {paper.git_commit()})."
             + (f" The bar: `{task.reference}`'s best {ref['best_db']:.2f} dB (@ step {ref['best_step']}) less "
                f"{MARGIN_DB} dB = **{bar:.2f} dB**." if ref else ""), "",
             "| step | each fit (dB) | mean of pairs (dB) | mean of all (dB) |", "|---:|---|---|---:|"]
    for s in args.steps:
        one = [psnr(x, truth) for x in snaps[s]]
        pairs = [psnr((snaps[s][i] + snaps[s][i + 1]) / 2, truth) for i in range(0, args.fits - 1, 2)]
        lines.append(f"| {s} | " + ", ".join(f"{v:.2f}" for v in one) + " | " + ", ".join(f"{v:.2f}" for v in pairs)
                     + f" | {psnr(np.mean(snaps[s], 0), truth):.2f} |")
    name = f"fast-seeds-{args.task}-{Path(args.image).name}.md"
    (RESULTS / name).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {RESULTS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
