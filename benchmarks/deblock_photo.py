"""JPEG artifact removal on whole photos: one fit of the whole photo, or one per 128 px tile.

    python -m benchmarks.deblock_photo [--images cbsd68/101085 ...] [--quality 10] [--whole-steps 1500]
                                       [--whole-images IMG ...] [--tile 128] [--overlap 32]
                                       [--tile-steps N] [--out deblock-photo.md]

The fast presets are chosen on 128 px crops (``benchmarks.fast_search``), where ``deblock-fast``
peaks within steps 500-1200 (it runs 1000).  A whole photo (CBSD68: 481x321) fits far more slowly
per step, so this compares, on the full tier's JPEG case (Pillow, the quality given, the tier's
seed): the JPEG input; ``deblock-fast`` on the whole photo (PSNR at its step count and at
``--whole-steps``); ``deblock-fast`` in overlapping tiles (:func:`deepprior.tiles.run_tiled`,
``--tile-steps`` steps per tile, default the preset's: what the CLI runs); and ``deblock-paper``'s
whole-photo result where the full tier's table has it (``benchmarks/results/jpeg-full.csv``, with
its commit).  CPU, allocator tuned as the CLI does, one fit at a time.  Writes
``benchmarks/results/deblock-photo.md`` (or ``--out``; included in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import replace
from pathlib import Path

from benchmarks import paper
from benchmarks.protocol import psnr

RESULTS = Path(__file__).resolve().parent / "results"


def paper_row(image: str, quality: int) -> dict | None:
    """deblock-paper's row of the full tier's JPEG table for this image and quality, if any."""
    path = RESULTS / "jpeg-full.csv"
    if not path.exists():
        return None
    for row in csv.DictReader(path.open()):
        if (row["preset"] == "deblock-paper" and f"{row['dataset']}/{row['image']}" == image
                and row["degradation"] == f"q={quality}"):
            return row
    return None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", default=["cbsd68/101085"])
    ap.add_argument("--quality", type=int, default=10)
    ap.add_argument("--whole-steps", type=int, default=1500)
    ap.add_argument("--whole-images", nargs="*", default=None,
                    help="the images also fitted whole (default: the first; none given: tiles only)")
    ap.add_argument("--out", default="deblock-photo.md", help="file name under benchmarks/results")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--tile-steps", type=int, default=None, help="default: deblock-fast's steps")
    args = ap.parse_args(argv)

    import deepprior
    from deepprior.runtime import tune_allocator
    from deepprior.tiles import run_tiled

    tune_allocator()
    args.tile_steps = args.tile_steps or deepprior.get_preset("deblock-fast").iters
    whole_images = args.images[:1] if args.whole_images is None else args.whole_images
    lines = [f"Reproduce: `python -m benchmarks.deblock_photo --images {' '.join(args.images)} "
             f"--quality {args.quality} --whole-images {' '.join(whole_images)} --out {args.out} "
             f"--whole-steps {args.whole_steps} --tile {args.tile} --overlap {args.overlap} "
             f"--tile-steps {args.tile_steps}` (whole photos, Pillow JPEG, the full tier's seed; CPU, allocator "
             "tuned; PSNR over RGB, data range 1; `deblock-paper`: the full tier's run, from "
             "`benchmarks/results/jpeg-full.csv`).", "",
             "| image | size | JPEG input (dB) | `deblock-paper` whole, 2400 steps (dB, s) "
             f"| `deblock-fast` whole, {args.tile_steps} / {args.whole_steps} steps (dB) | time (s) "
             f"| `deblock-fast` in {args.tile} px tiles, {args.tile_steps} steps each (dB) | tiles | time (s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for image in args.images:
        name = image.split("/")[-1]
        job = paper.make_jobs("jpeg", "full", images=[name])[0]
        job = replace(job, level=args.quality, degradation=paper.degradation_label("jpeg", args.quality))
        case = paper.TABLES["jpeg"].make_case(job)
        h, w = case.degraded.shape[:2]
        values = []

        def record(step, state):
            values.append(state.psnr_average_reference)

        t0 = time.perf_counter()
        fit_whole = image in whole_images
        if fit_whole:
            whole_preset = deepprior.get_preset("deblock-fast").replace(tile=None)  # the whole photo in one fit
            deepprior.run_task("deblock", case.degraded, preset=whole_preset, iters=args.whole_steps, rng=job.seed,
                               device="cpu", reference=case.truth, callback=record, stop="fixed")
            whole = f"{values[min(args.tile_steps, len(values)) - 1]:.2f} / {values[-1]:.2f}"
            print(f"{image} whole: {whole} dB in {time.perf_counter() - t0:.0f} s", flush=True)
        whole_s = f"{time.perf_counter() - t0:.0f}" if fit_whole else "–"
        t0 = time.perf_counter()
        tiled = run_tiled("deblock", case.degraded, tile=args.tile, overlap=args.overlap, preset="deblock-fast",
                          iters=args.tile_steps, rng=job.seed, device="cpu", stop="fixed")
        tiled_s = time.perf_counter() - t0
        tiled_db = psnr(tiled.image, case.truth)
        print(f"{image} tiled: {tiled_db:.2f} dB in {tiled_s:.0f} s ({len(tiled.boxes)} tiles)", flush=True)
        row = paper_row(image, args.quality)
        ref = "–" if row is None else f"{float(row['psnr']):.2f} in {float(row['seconds']):.0f} s ({row['commit']})"
        lines.append(f"| {image} | {w}x{h} | {psnr(case.degraded, case.truth):.2f} | {ref} | "
                     f"{whole if fit_whole else 'not run'} | {whole_s} | "
                     f"**{tiled_db:.2f}** | {len(tiled.boxes)} | {tiled_s:.0f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
