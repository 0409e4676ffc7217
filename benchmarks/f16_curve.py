"""PSNR curve of a preset on the 128x128 centre crop of the paper's F16 image with sigma=25 noise.

    python -m benchmarks.f16_curve [--preset denoise-paper] [--iters N] [--every 100] [--stop fixed|auto]
                                   [--whole] [--tune-allocator]

``--preset`` also takes ``search:NAME``, a denoising candidate of :mod:`benchmarks.fast_search`;
``--whole`` fits the whole 512x512 image instead of the crop.

Prints a table (step, loss, PSNR of the raw and of the averaged output against the clean crop)
and writes benchmarks/results/f16-curve-<preset>.csv.  The noisy input's PSNR is printed first.
``--stop auto`` fits with the default automatic stopping instead of the fixed count and prints
where it stopped and the PSNR of the returned image (the CSV is then not written).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="denoise-paper")
    ap.add_argument("--iters", type=int)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stop", default="fixed", choices=["fixed", "auto"])
    ap.add_argument("--whole", action="store_true", help="the whole 512x512 image, not the centre crop")
    ap.add_argument("--tune-allocator", action="store_true", help="as the CLI does (deepprior.runtime)")
    args = ap.parse_args(argv)
    if args.tune_allocator:
        from deepprior.runtime import tune_allocator

        tune_allocator()

    import torch

    import deepprior
    from deepprior.degrade import add_noise
    from deepprior.io import read_image

    clean, _ = read_image(DATA / "paper" / "denoising" / "F16_GT.png")
    h, w = clean.shape[:2]
    if not args.whole:
        clean = clean[(h - 128) // 2 : (h + 128) // 2, (w - 128) // 2 : (w + 128) // 2]
    clean = clean[:, :, :3]
    noisy = add_noise(clean, 25, rng=args.seed)
    p_in = 10 * np.log10(1 / np.mean((noisy - clean) ** 2))
    print(f"noisy input PSNR {p_in:.2f} dB; preset {args.preset}; torch threads {torch.get_num_threads()}")
    from benchmarks.fast_search import resolve

    res = deepprior.run_task("denoise", noisy, preset=resolve("denoise", args.preset), iters=args.iters, rng=args.seed,
                             device="cpu", reference=clean, stop=args.stop)
    hist = res.restoration.fit.history
    if args.stop == "auto":
        r, rule = res.restoration, res.restoration.stop_rule
        avg = hist.get("psnr_average_reference") or hist["psnr_reference"]
        out_db = 10 * np.log10(1 / np.mean((np.asarray(res.image) - clean) ** 2))
        print(f"{args.preset} with --stop auto: {r.fit.stop_reason} after {r.fit.steps} steps (variance minimum at "
              f"step {rule.min_step}); returned image {out_db:.2f} dB; best averaged output until then "
              f"{max(avg):.2f} dB at step {avg.index(max(avg)) + 1}; {r.fit.seconds:.0f} s")
        return
    rows = []
    for i, step in enumerate(hist["step"]):
        if step % args.every == 0 or step == hist["step"][-1]:
            avg = hist.get("psnr_average_reference", [None] * len(hist["step"]))[i]
            rows.append((step, hist["loss"][i], hist["psnr_reference"][i], avg))
    print(f"{'step':>6} {'loss':>10} {'raw dB':>8} {'avg dB':>8}")
    for step, loss, raw, avg in rows:
        print(f"{step:>6} {loss:>10.3e} {raw:>8.2f} {avg if avg is None else round(avg, 2):>8}")
    print(f"{res.restoration.fit.seconds / max(1, res.restoration.fit.steps):.3f} s/step, "
          f"{res.restoration.fit.seconds:.0f} s in all")
    name = args.preset.replace(":", "-") + ("-whole" if args.whole else "")
    out = Path(__file__).parent / "results" / f"f16-curve-{name}.csv"
    with open(out, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["step", "loss", "psnr_raw", "psnr_average", "noisy_psnr", "preset", "seed", "torch"])
        for r in rows:
            wr.writerow([*r, round(p_in, 4), args.preset, args.seed, torch.__version__])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
