"""Inpainting of text on whole photos: ``inpaint-text-fast`` in tiles (as the CLI runs it), beside
classical inpainting and, optionally, one fit of the whole photo.

    python -m benchmarks.text_photo [--images paper/kate set14/comic ...] [--whole-images IMG ...]
                                    [--whole-steps N] [--out text-photo.md]

``paper/kate`` is the paper's text-inpainting image with its own mask (``kate_mask.png``, white =
known pixels, as the paper's notebook uses it; the image itself has no text, so it is the ground
truth); any other image gets the full tier's text case of :mod:`benchmarks.paper` (text 48 px high,
placed from the image's seed).  The paper's recipe (``inpaint-text-paper``, 6000 steps of its
network) takes hours per photo on a CPU and is not run here; the 128 px crops of
``python -m benchmarks.fast --task inpaint-text`` compare against it.  CPU, allocator tuned as the
CLI does, one fit at a time; PSNR over RGB of the whole image, data range 1.  Writes
``benchmarks/results/text-photo.md`` (or ``--out``; included in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks import paper
from benchmarks.protocol import psnr

RESULTS = Path(__file__).resolve().parent / "results"
KATE = "paper/kate"


def load_case(image: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, masked input, pixels to fill) of ``image``."""
    if image == KATE:
        from deepprior.io import read_image
        from deepprior.masks import binarize_mask

        truth, _ = read_image(paper.DATA / "paper" / "inpainting" / "kate.png")
        mask, _ = read_image(paper.DATA / "paper" / "inpainting" / "kate_mask.png")
        fill = binarize_mask(mask, keeps=True)
        truth = truth[:, :, :3].astype(np.float32)
    else:
        job = paper.make_jobs("text", "full", images=[image.split("/")[-1]])[0]
        case = paper.TABLES["text"].make_case(job)
        truth, fill = case.truth, case.params["mask"]
    return truth, np.where(fill[..., None], 0.0, truth).astype(np.float32), fill


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", default=[KATE])
    ap.add_argument("--whole-images", nargs="*", default=[], help="the images also fitted whole (one fit)")
    ap.add_argument("--whole-steps", type=int, default=None, help="default: the preset's steps")
    ap.add_argument("--out", default="text-photo.md", help="file name under benchmarks/results")
    args = ap.parse_args(argv)

    import deepprior
    from deepprior.masks import fill_gap
    from deepprior.runtime import tune_allocator

    tune_allocator()
    preset = deepprior.get_preset("inpaint-text-fast")
    steps = args.whole_steps or preset.iters
    lines = [f"Reproduce: `python -m benchmarks.text_photo --images {' '.join(args.images)}"
             + (f" --whole-images {' '.join(args.whole_images)} --whole-steps {steps}" if args.whole_images else "")
             + f" --out {args.out}` (whole photos; {KATE}: the paper's image and mask, else the full tier's text "
             "case; CPU, allocator tuned; PSNR over RGB of the whole image, data range 1).", "",
             "| image | size | to fill | widest gap (px) | biharmonic (dB, s) | Telea (dB) "
             f"| `inpaint-text-fast`, {preset.iters} steps per {preset.tile} px tile (dB) | tiles fitted | time (s) "
             f"| one fit of the whole photo, {steps} steps (dB, s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for image in args.images:
        truth, masked, fill = load_case(image)
        h, w = fill.shape
        case = paper.Case(None, truth, masked, {}, {"mask": fill})
        t0 = time.perf_counter()
        bih = psnr(paper.biharmonic(case)[0], truth)
        bih_s = time.perf_counter() - t0
        try:
            tel = f"{psnr(paper.telea(case)[0], truth):.2f}"
        except ImportError:
            tel = "–"
        t0 = time.perf_counter()
        res = deepprior.run_task("inpaint", masked, mask=fill, rng=0, device="cpu")  # the CLI's default
        tiled_s = time.perf_counter() - t0
        assert res.restoration.preset.name == preset.name, res.restoration.preset.name
        tiled_db = psnr(res.image, truth)
        fitted = len(res.tiles.results) if res.tiles else 1
        boxes = len(res.tiles.boxes) if res.tiles else 1
        print(f"{image}: tiles {tiled_db:.2f} dB in {tiled_s:.0f} s ({fitted} of {boxes} tiles fitted); biharmonic "
              f"{bih:.2f}, Telea {tel}", flush=True)
        whole = "not run"
        if image in args.whole_images:
            t0 = time.perf_counter()
            r = deepprior.run_task("inpaint", masked, mask=fill, preset=preset.replace(tile=None), iters=steps, rng=0,
                                   device="cpu", stop="fixed")
            whole = f"{psnr(r.image, truth):.2f} in {time.perf_counter() - t0:.0f} s"
            print(f"{image}: whole {whole}", flush=True)
        lines.append(f"| {image} | {w}x{h} | {fill.mean():.1%} | {fill_gap(fill):.1f} | {bih:.2f} ({bih_s:.0f} s) | "
                     f"{tel} | **{tiled_db:.2f}** | {fitted} of {boxes} | {tiled_s:.0f} | {whole} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
