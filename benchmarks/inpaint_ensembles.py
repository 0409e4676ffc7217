"""A negative result: ensembles do not lift ``inpaint-blindspot`` to the paper preset's quality.

    python -m benchmarks.inpaint_ensembles [--images inpainting11/boat inpainting11/peppers256]
                                           [--steps 2000] [--passes 64]

On 50 % missing pixels ``inpaint-blindspot`` returns the running average (weight 0.99) of its
outputs over the steps: an ensemble over the weights the fit goes through, each step with other
known pixels hidden.  This script asks whether another ensemble does better, on the 128 px crops
of ``benchmarks.fast``'s inpainting task (its tune images by default):

- Self2Self's test-time ensemble: the *final* network run ``--passes`` times, each pass with a
  fresh random share of the known pixels shown (0.4, the share the fit ends with; 0.6; 0.8), the
  outputs averaged;
- the average with a different method: ``inpaint-small`` (the paper's DIP on a noise input,
  scored on every known pixel, as many steps; its raw output) or scikit-image's biharmonic
  inpainting.  A blend can only help where the two methods' errors differ: the table gives the
  correlation of their errors over the missing pixels, and the best blend ``(1 - w) * blind-spot
  + w * other`` for ``w`` in 0, 0.1, ..., 0.5, chosen with the ground truth (an upper bound).

PSNR of the returned image (RGB, data range 1; known pixels as given in every method).  Writes
``benchmarks/results/inpaint-ensembles.md``.  About 2 minutes per image on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks import paper
from benchmarks.fast import RESULTS, TASKS, make_case
from benchmarks.protocol import psnr

KEEPS = (0.4, 0.6, 0.8)
WEIGHTS = tuple(round(0.1 * i, 1) for i in range(6))


def _blindspot(case, seed: int, steps: int, passes: int) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """The fit's running average, and the final network's test-time ensemble per share shown."""
    import torch

    import deepprior
    from deepprior import objectives

    seen = {}
    step = objectives.BlindSpot.step

    def spy(self, run, net_in, i, generator):  # the objective, the network and its input, as the fit runs them
        seen.update(objective=self, run=run, z=net_in)
        return step(self, run, net_in, i, generator)

    objectives.BlindSpot.step = spy
    try:
        r = deepprior.run_task("inpaint", case.degraded, preset="inpaint-blindspot", iters=steps, rng=seed,
                               device="cpu", stop="fixed", **case.dip_kwargs)
    finally:
        objectives.BlindSpot.step = step
    ob, run, z = seen["objective"], seen["run"], seen["z"]
    if z.shape[-2:] != case.degraded.shape[:2]:
        raise SystemExit("the crops must need no padding (a multiple of the network's size step)")
    gen = torch.Generator().manual_seed(seed)
    ensembles = {}
    with torch.no_grad():
        for keep in KEEPS:
            total = torch.zeros_like(ob.known_y)
            for _ in range(passes):
                shown = ob.known * (torch.rand(ob.draw.shape, generator=gen) < keep).to(ob.known.dtype)
                total += ob.known_y + (1 - ob.known) * run(objectives.blindspot_input(z, shown))
            out = (total / passes).clamp(0, 1)[0].permute(1, 2, 0).numpy()
            ensembles[keep] = out[..., 0] if case.degraded.ndim == 2 else out
    return np.asarray(r.image, dtype=np.float64), ensembles


def _known_as_given(image: np.ndarray, case) -> np.ndarray:
    fill = case.params["mask"]
    fill = fill[..., None] if image.ndim == 3 else fill
    return np.where(fill, image, case.degraded).astype(np.float64)


def row(image: str, steps: int, passes: int) -> str:
    import deepprior

    job, case = make_case(TASKS["inpaint"], image)
    truth = case.truth.astype(np.float64)
    ema, ensembles = _blindspot(case, job.seed, steps, passes)
    small = deepprior.run_task("inpaint", case.degraded, preset="inpaint-small", iters=steps, rng=job.seed,
                               device="cpu", stop="fixed", **case.dip_kwargs)
    others = {"inpaint-small": _known_as_given(np.asarray(small.image), case),
              "biharmonic": _known_as_given(paper.biharmonic(case)[0], case)}
    fill = np.broadcast_to(case.params["mask"][..., None] if truth.ndim == 3 else case.params["mask"], truth.shape)
    cells = [image, f"{psnr(ema, truth):.2f}", *(f"{psnr(ensembles[k], truth):.2f}" for k in KEEPS)]
    for other in others.values():
        rho = np.corrcoef((ema - truth)[fill], (other - truth)[fill])[0, 1]
        blends = {w: psnr((1 - w) * ema + w * other, truth) for w in WEIGHTS}
        best = max(blends, key=blends.get)
        cells += [f"{psnr(other, truth):.2f}", f"{rho:.2f}", f"{blends[best]:.2f} (w {best:g})"]
    return "| " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.inpaint_ensembles", description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", nargs="+", default=["inpainting11/boat", "inpainting11/peppers256"])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--passes", type=int, default=64)
    args = ap.parse_args(argv)
    command = " ".join(["python -m benchmarks.inpaint_ensembles", *(sys.argv[1:] if argv is None else argv)])
    keeps = " | ".join(f"final net, {k:g} shown" for k in KEEPS)
    lines = [f"Reproduce: `{command}` (50 % missing pixels, the 128 px crops and seeds of `benchmarks.fast`'s "
             f"inpainting task; {args.steps} steps of `inpaint-blindspot` and of `inpaint-small`; the final "
             f"network's ensembles over {args.passes} passes; PSNR in dB of the returned image, RGB, data range 1, "
             "known pixels as given; error correlation over the missing pixels; the best blend's weight chosen with "
             "the ground truth).", "",
             f"| image | blind-spot, running average | {keeps} | inpaint-small | error corr. | best blend | "
             "biharmonic | error corr. | best blend |",
             "|---|" + "---:|" * (1 + len(KEEPS) + 6)]
    for image in args.images:
        lines.append(row(image, args.steps, args.passes))
        print(lines[-1], flush=True)
    (RESULTS / "inpaint-ensembles.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
