"""Inpainting a hole: would fitting only the region around it do?  (No: a negative result.)

    python -m benchmarks.context [--images set14/lenna set14/flowers cbsd68/295087] [--size 320]
                                 [--hole 48] [--preset inpaint-text-small] [--steps 2000]

A fit's cost grows with its pixels, and IOPaint's "crop" strategy fits only the part of a big
photo around the mask.  For Deep Image Prior the known pixels around a hole are what shapes the
network that fills it, so this script measures what a smaller context costs: on ``--size`` px
centre crops with a square hole of ``--hole`` px (its place drawn from the image's seed, at least
64 px from the edges), it fits the whole image, then only the hole's bounding box grown by 64 px
(``--hole`` + 128 px square) and by 32 px on every side, the image as given elsewhere, and reports
the PSNR inside the hole (RGB, data range 1) and the wall time of each fit.  One seed per image;
one fit at a time (this machine has two cores).  Writes ``benchmarks/results/context.md``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks import paper
from benchmarks.fast import RESULTS
from benchmarks.protocol import centre_crop, image_seed, psnr

MARGINS = (None, 64, 32)  # None: the whole image


def case(name: str, size: int, hole: int):
    from deepprior.io import read_image

    image, _ = read_image(paper.DATA / f"{name}.png")
    truth = centre_crop(image[..., :3], size)
    rng = np.random.default_rng(image_seed(name))
    top, left = (int(rng.integers(64, size - 64 - hole + 1)) for _ in range(2))
    fill = np.zeros(truth.shape[:2], bool)
    fill[top:top + hole, left:left + hole] = True
    return truth, fill, image_seed(name)


def main(argv=None) -> int:
    import deepprior
    from deepprior.runtime import tune_allocator

    ap = argparse.ArgumentParser(prog="python -m benchmarks.context", description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", nargs="+", default=["set14/lenna", "set14/flowers", "cbsd68/295087"])
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--hole", type=int, default=48)
    ap.add_argument("--preset", default="inpaint-text-small")
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args(argv)
    tune_allocator()  # as the CLI runs
    command = " ".join(["python -m benchmarks.context", *(sys.argv[1:] if argv is None else argv)])
    lines = [f"Reproduce: `{command}` ({args.size} px centre crops, a {args.hole} px square hole each, "
             f"`{args.preset}` for {args.steps} steps from the image's seed; PSNR inside the hole, RGB, data "
             "range 1; wall seconds of `deepprior.run_task`; CPU, the allocator tuned).", "",
             "| image | fitted | pixels | PSNR in the hole (dB) | time (s) | speed-up |",
             "|---|---|---|---:|---:|---:|"]
    for name in args.images:
        truth, fill, seed = case(name, args.size, args.hole)
        degraded = np.where(fill[..., None], 0.0, truth).astype(np.float32)
        whole_time = None
        rows, cols = np.flatnonzero(fill.any(axis=1)), np.flatnonzero(fill.any(axis=0))
        for margin in MARGINS:
            h, w = truth.shape[:2]
            top, left = (0, 0) if margin is None else (max(0, rows[0] - margin), max(0, cols[0] - margin))
            bottom, right = (h, w) if margin is None else (min(h, rows[-1] + 1 + margin), min(w, cols[-1] + 1 + margin))
            t0 = time.perf_counter()
            r = deepprior.run_task("inpaint", degraded[top:bottom, left:right], mask=fill[top:bottom, left:right],
                                   preset=args.preset, iters=args.steps, rng=seed, device="cpu", stop="fixed")
            seconds = time.perf_counter() - t0
            result = degraded.copy()
            result[top:bottom, left:right] = np.asarray(r.image).reshape(result[top:bottom, left:right].shape)
            whole_time = whole_time or seconds
            label = "whole image" if margin is None else f"hole + {margin} px"
            lines.append(f"| {name} | {label} | {right - left}x{bottom - top} | {psnr(result[fill], truth[fill]):.2f} "
                         f"| {seconds:.0f} | {whole_time / seconds:.1f}x |")
            print(lines[-1], flush=True)
    (RESULTS / "context.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
