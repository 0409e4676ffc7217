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
    print(f"{'step':>6} {'fp32 dB':>8} {'bf16 dB':>8}")
    for i in range(99, args.iters, 100):
        print(f"{i + 1:6d} {curves['fp32'][i]:8.2f} {curves['bf16'][i]:8.2f}")
    for p in ("fp32", "bf16"):
        cv = curves[p]
        print(f"{p}: peak {max(cv):.2f} dB at step {cv.index(max(cv)) + 1}, final {cv[-1]:.2f} dB, {secs[p]:.1f} s")
    print(f"bf16 / fp32: peak {max(curves['bf16']) - max(curves['fp32']):+.2f} dB, "
          f"final {curves['bf16'][-1] - curves['fp32'][-1]:+.2f} dB, time x{secs['fp32'] / secs['bf16']:.2f} faster")


if __name__ == "__main__":
    main()
