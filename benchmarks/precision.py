"""Does bfloat16 autocast keep the quality?  The same fits in fp32 and bf16, side by side.

    python -m benchmarks.precision [--preset denoise-small] [--iters 1200] [--crop 128]

Denoises the centre crop of F16 (sigma = 25, seed 0; the speed benchmark's time-to-quality
image) with the preset in ``precision="fp32"`` and ``precision="bf16"`` (everything else equal:
seed, network, input, jitter), one after the other in this process, and prints the PSNR of the
averaged output every 100 steps, the peak and final PSNR of both, and the wall time of each.
bf16 only runs where it is native (:func:`deepprior.pipeline.bf16_native`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="denoise-small")
    ap.add_argument("--iters", type=int, default=1200)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--image", default=str(DATA / "paper" / "denoising" / "F16_GT.png"))
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    import deepprior
    from deepprior.degrade import add_noise
    from deepprior.io import read_image
    from deepprior.pipeline import bf16_native

    if not bf16_native(torch.device("cpu")):
        raise SystemExit("bfloat16 is not native on this CPU: nothing to compare")
    clean, _ = read_image(args.image)
    h, w = clean.shape[:2]
    c = args.crop
    clean = clean[(h - c) // 2 : (h + c) // 2, (w - c) // 2 : (w + c) // 2, :3]
    noisy = add_noise(clean, 25, rng=0)
    print(f"noisy input {10 * np.log10(1 / np.mean((noisy - clean) ** 2)):.2f} dB; {args.preset}, {args.iters} steps, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    curves, secs = {}, {}
    for precision in ("fp32", "bf16"):
        t0 = time.perf_counter()
        res = deepprior.run_task("denoise", noisy, preset=args.preset, iters=args.iters, rng=0, device="cpu",
                                 reference=clean, stop="fixed", precision=precision)
        secs[precision] = time.perf_counter() - t0
        h = res.restoration.fit.history
        curves[precision] = h.get("psnr_average_reference") or h["psnr_reference"]
    lines = [f"Reproduce: `python -m benchmarks.precision --preset {args.preset} --iters {args.iters}` "
             f"({args.crop}x{args.crop} centre crop of F16, sigma 25, seed 0; fp32 then bf16 in one process on this "
             f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads; PSNR of the returned image).", "",
             "| step | fp32 (dB) | bf16 (dB) |", "|---:|---:|---:|"]
    for i in range(199, args.iters, 200):
        lines.append(f"| {i + 1} | {curves['fp32'][i]:.2f} | {curves['bf16'][i]:.2f} |")
    lines.append("")
    for p in ("fp32", "bf16"):
        cv = curves[p]
        lines.append(f"- {p}: peak {max(cv):.2f} dB at step {cv.index(max(cv)) + 1}, final {cv[-1]:.2f} dB, "
                     f"{secs[p]:.1f} s")
    lines.append(f"- bf16 - fp32: peak {max(curves['bf16']) - max(curves['fp32']):+.2f} dB, final "
                 f"{curves['bf16'][-1] - curves['fp32'][-1]:+.2f} dB; bf16 is {secs['fp32'] / secs['bf16']:.2f}x faster")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
