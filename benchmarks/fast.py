"""The speed issue's quality bar: does a faster preset reach the paper preset's best image sooner?

    python -m benchmarks.fast [--candidate denoise-small] [--reference denoise-paper]
                              [--images NAME ...] [--sigma 25] [--reference-steps 1600]

For each 128 px crop of the quick tier's denoising images (sigma = 25, the quick tier's seeds):
the reference preset runs ``--reference-steps`` steps (fixed count) and gives its best-iterate
PSNR (of the image it returns, the running average; found with the ground truth) and the wall
time until that step; the candidate preset then runs until its returned image reaches that PSNR
minus 0.2 dB (or its ``--candidate-steps`` cap).  The ratio of the two times is the speed-up at
equal quality.  One image at a time, back to back, on this machine.  Writes
``benchmarks/results/fast.md`` (included in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import paper

RESULTS = Path(__file__).resolve().parent / "results"
MARGIN_DB = 0.2


def curve(case, preset: str, steps: int, target: float | None = None) -> dict:
    """Fit and record (elapsed seconds, PSNR of the returned image) per step; stop at ``target``."""
    import deepprior

    times, values = [], []

    def record(step, state):
        db = state.psnr_average_reference if state.average is not None else state.psnr_reference
        times.append(state.elapsed)
        values.append(db)
        return target is not None and db >= target

    deepprior.run_task("denoise", case.degraded, preset=preset, iters=steps, rng=case.job.seed, device="cpu",
                       reference=case.truth, callback=record, stop="fixed")
    return {"times": times, "values": values}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidate", default="denoise-small")
    ap.add_argument("--reference", default="denoise-paper")
    ap.add_argument("--images", nargs="+", default=list(paper.tier_specs("quick")["denoise"].images))
    ap.add_argument("--sigma", type=float, default=25)
    ap.add_argument("--reference-steps", type=int, default=1600)
    ap.add_argument("--candidate-steps", type=int, default=3000)
    args = ap.parse_args(argv)

    rows = []
    for name in args.images:
        job = paper.make_jobs("denoise", "quick", images=[name], levels=[25])[0]
        from dataclasses import replace

        job = replace(job, level=args.sigma, degradation=paper.degradation_label("denoise", args.sigma))
        case = paper.denoise_case(job)
        ref = curve(case, args.reference, args.reference_steps)
        best = max(ref["values"])
        k = ref["values"].index(best)
        cand = curve(case, args.candidate, args.candidate_steps, target=best - MARGIN_DB)
        reached = cand["values"][-1] >= best - MARGIN_DB
        row = {"image": name, "ref_best": best, "ref_step": k + 1, "ref_seconds": ref["times"][k],
               "cand_steps": len(cand["values"]), "cand_seconds": cand["times"][-1], "cand_db": cand["values"][-1],
               "reached": reached}
        row["ratio"] = row["ref_seconds"] / row["cand_seconds"] if reached else None
        rows.append(row)
        print(row, flush=True)
    lines = [f"Reproduce: `python -m benchmarks.fast` (denoising sigma {args.sigma:g}, 128 px crops of the quick tier's "
             f"images and seeds; `{args.reference}` run for {args.reference_steps} steps gives its best-iterate PSNR "
             f"(running average, found with the ground truth) and the time to it; `{args.candidate}` runs until it is "
             f"within {MARGIN_DB} dB of that; CPU, back to back).", "",
             f"| image | {args.reference} best (dB @ step) | time to it (s) | {args.candidate} (dB @ step) | time (s) "
             "| speed-up |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['ratio']:.1f}x" if r["reached"] else "not reached"
        lines.append(f"| {r['image']} | {r['ref_best']:.2f} @ {r['ref_step']} | {r['ref_seconds']:.0f} | "
                     f"{r['cand_db']:.2f} @ {r['cand_steps']} | {r['cand_seconds']:.0f} | {ratio} |")
    ratios = [r["ratio"] for r in rows if r["reached"]]
    if ratios:
        lines += ["", f"Mean speed-up {sum(ratios) / len(ratios):.1f}x, worst {min(ratios):.1f}x "
                  f"({len(ratios)} of {len(rows)} images reached the bar; the issue's target is 20x)."]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fast.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
