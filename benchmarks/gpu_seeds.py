"""How much averaging independent fits (seeds) of the default denoising recipe gains on the GPU target.

    python -m benchmarks.gpu_seeds [--image F16_GT.png] [--preset denoise-sure-fast] [--seeds 8] [--out DIR]

The GPU target's image (top-left 512 px of F16, sigma 25, noise seed 0) is denoised by ``--preset``
through :func:`deepprior.run_task` with ``rng=0, 1, ..., seeds-1`` (the noise level estimated, as
the CLI does); the PSNR of each result, of the mean of pairs (0, 1), (2, 3), ..., of quads and of
all of them.  Writes ``DIR/ens.json``.  Measured on an H200 (``2026-11-28-seeds``): it chose
``denoise-sure-pair`` (two fits averaged) as the GPU's default.  ``--device cpu --size 48`` tries it
out on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.gpu import F16
from benchmarks.protocol import psnr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_seeds", description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", type=Path, default=F16)
    ap.add_argument("--preset", default="denoise-sure-fast")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    import numpy as np

    import deepprior
    from deepprior.degrade import add_noise
    from deepprior.io import read_image

    clean, _ = read_image(args.image)
    clean = np.ascontiguousarray(clean[:args.size, :args.size, :3], dtype=np.float32)
    noisy = np.asarray(add_noise(clean, 25, rng=0), dtype=np.float32)
    outs, rows = [], []
    for seed in range(args.seeds):
        t = time.perf_counter()
        r = deepprior.run_task("denoise", noisy, preset=args.preset, rng=seed, device=args.device)
        outs.append(np.asarray(r.image, dtype=np.float32))
        rows.append({"seed": seed, "db": round(psnr(outs[-1], clean), 3), "seconds": round(time.perf_counter() - t, 2)})
        print(rows[-1], flush=True)

    def mean_db(group):
        return {"seeds": list(group), "db": round(psnr(np.mean([outs[i] for i in group], 0), clean), 3)}

    res = {"preset": args.preset, "image": args.image.name, "size": args.size, "device": args.device, "single": rows,
           "pairs": [mean_db(range(i, i + 2)) for i in range(0, args.seeds - 1, 2)],
           "quads": [mean_db(range(i, i + 4)) for i in range(0, args.seeds - 3, 4)],
           f"all{args.seeds}": round(psnr(np.mean(outs, 0), clean), 3),
           "command": "python -m benchmarks.gpu_seeds " + " ".join(sys.argv[1:] if argv is None else argv)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ens.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "single"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
