"""The speed issue's quality bar: does a faster preset reach the paper preset's best image sooner?

    python -m benchmarks.fast [--task denoise|sr|inpaint] [--candidate NAME] [--images NAME ...]
                              [--rerun-reference]

For each 128 px crop of the quick tier's images of the task (denoising sigma 25, SR x4, 50 %
missing pixels; the quick tier's seeds; none of them used to choose the candidate, see
``benchmarks/fast_search.py``): the paper preset runs its recipe and gives its best-iterate PSNR (of
the image it returns, found with the ground truth) and the wall time until that step; the
candidate then runs until its returned image reaches that PSNR minus 0.2 dB (or its cap).  The
ratio of the two times is the speed-up at equal quality.  One image at a time, on this machine.

The paper preset's runs are long (denoising: 1600 steps of the 2.2 M-parameter network; SR: 2000),
so their outcome is cached in ``benchmarks/results/fast-reference.json`` with the commit, date and
machine that produced them (``--rerun-reference`` redoes them).  This machine's speed drifts between
runs, so after each candidate ``--retime-steps`` steps of the paper preset run back to back with it,
and the report gives the speed-up also with the cached run's steps at that speed.  Writes
``benchmarks/results/fast-<task>.md`` (included in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks import paper

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE_CACHE = RESULTS / "fast-reference.json"
MARGIN_DB = 0.2


@dataclass(frozen=True)
class FastTask:
    table: str  # benchmarks.paper table
    level: float  # sigma / scale / missing fraction
    reference: str  # the paper preset
    reference_steps: int  # its step count (denoising: past the averaged output's peak; see below)
    candidate: str  # the preset under test (default); "default": the task's default for the crop
    cap: int  # the candidate's most steps
    strokes: int = 0  # text table only: this many brush strokes `level` px wide instead of text (masks.strokes_mask)


TASKS = {
    # denoise-paper's recipe is 3000 steps; its averaged output peaks well before 1600 on these
    # crops (the report flags a best at the last step), so 1600 steps find the best iterate.
    # the CLI's default: by the noise level it estimates on the crop (denoise-sure-fast at sigma 25)
    "denoise": FastTask("denoise", 25, "denoise-paper", 1600, "default", 3000),
    "sr": FastTask("sr", 4, "sr-x4-paper", 2000, "sr-x4-fast", 3000),
    # the CLI's default: by the mask (inpaint-blindspot for these scattered missing pixels)
    "inpaint": FastTask("inpaint", 0.5, "inpaint-pixels-paper", 11000, "default", 4000),
    # JPEG quality 10 (the quick tier's harder level); deblock-paper's recipe is 2400 steps
    "deblock": FastTask("jpeg", 10, "deblock-paper", 2400, "default", 3000),
    "deblock-q20": FastTask("jpeg", 20, "deblock-paper", 2400, "default", 3000),  # the quick tier's other level
    # text 32 px high: the CLI's default by the mask (inpaint-blindspot: every pixel to fill within 3 px of
    # a known one; until 2026-11-28 inpaint-text-paper, the reference, and inpaint-text-fast stood in here)
    "inpaint-text": FastTask("text", 32, "inpaint-text-paper", 6000, "default", 3000),
    # text 64 px high (deepprior degrade mask's default on a 512 px photo): every pixel to fill within 4 px
    # of a known one, past masks.near_known's 3 px: the CLI's default is inpaint-text-paper
    "inpaint-text-64": FastTask("text", 64, "inpaint-text-paper", 6000, "default", 3000),
    # two brush strokes 12 px wide over the text crops (masks.strokes_mask; the image's seed): 6-13 % of a
    # crop, 8-14 px from known pixels (masks.reach), past inpaint-blindspot-blocks' 4 px: the CLI's
    # default is inpaint-text-paper.  `deepprior degrade mask --kind strokes` draws 17 px on a 512 px photo.
    "inpaint-strokes": FastTask("text", 12, "inpaint-text-paper", 6000, "default", 3000, strokes=2),
}


def make_case(task: FastTask, image: str):
    job = paper.make_jobs(task.table, "quick", images=[image])[0]
    job = replace(job, level=task.level, degradation=paper.degradation_label(task.table, task.level))
    if task.strokes:  # the text case's layout, with strokes for its mask
        from deepprior.masks import strokes_mask

        job = replace(job, degradation=f"{task.strokes} strokes {task.level:g}px")
        gt = paper.read_truth(job, colour=True)
        mask = strokes_mask(gt.shape[:2], strokes=task.strokes, width=int(task.level), rng=job.seed)
        return job, paper.painted_case(job, gt, mask)
    return job, paper.TABLES[task.table].make_case(job)


def curve(task: FastTask, image: str, preset, steps: int, target: float | None = None) -> dict:
    """Fit and record (elapsed seconds, PSNR of the returned image) per step; stop at ``target``."""
    import deepprior

    job, case = make_case(task, image)
    kind = paper.TABLES[task.table].task
    if preset == "default":  # as the CLI picks it, from the degraded image alone
        preset = deepprior.choose_preset(kind, case.degraded, device="cpu", **case.dip_kwargs)  # scale= or mask=
    times, values = [], []

    def record(step, state):
        db = state.psnr_average_reference if state.average is not None else state.psnr_reference
        times.append(state.elapsed)
        values.append(db)
        return target is not None and db >= target

    r = deepprior.run_task(kind, case.degraded, preset=preset, iters=steps, rng=job.seed,
                       device="cpu", reference=case.truth, callback=record, stop="fixed", **case.dip_kwargs)
    return {"times": times, "values": values, "preset": r.restoration.preset.name}


def reference(name: str, task: FastTask, image: str, rerun: bool) -> dict:
    """The paper preset's best iterate on ``image`` (cached with its provenance)."""
    cache = json.loads(REFERENCE_CACHE.read_text()) if REFERENCE_CACHE.exists() else {}
    key = f"{task.reference}|{task.reference_steps}|{image}|{task.level:g}"
    if task.strokes:  # (the text table's crops with strokes instead of letters)
        key += f"|strokes{task.strokes}"
    if key in cache and not rerun:
        return cache[key]
    c = curve(task, image, task.reference, task.reference_steps)
    best = max(c["values"])
    k = c["values"].index(best)
    cache[key] = {"task": name, "image": image, "preset": task.reference, "steps": task.reference_steps,
                  "best_db": round(best, 3), "best_step": k + 1, "seconds_to_best": round(c["times"][k], 1),
                  "seconds_per_step": round(c["times"][-1] / len(c["times"]), 4),
                  "commit": paper.git_commit(), "date": time.strftime("%Y-%m-%d"),
                  "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
    REFERENCE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE_CACHE.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    return cache[key]


def step_seconds(task: FastTask, image: str, preset, steps: int) -> float:
    """Mean seconds per step of ``preset`` on ``image`` now, over ``steps`` steps after 5 warm-up steps
    (its steps' times vary by ~10 % within a run on this machine: a longer sample, a steadier mean)."""
    times = curve(task, image, preset, steps + 5)["times"]
    return (times[-1] - times[4]) / steps


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="denoise", choices=list(TASKS))
    ap.add_argument("--candidate", default=None, help="preset under test, or search:NAME (a benchmarks.fast_search "
                    "candidate; default: the default preset for each crop "
                    "for denoising and inpainting, sr-x4-fast for SR)")
    ap.add_argument("--images", nargs="+", default=None)
    ap.add_argument("--rerun-reference", action="store_true")
    ap.add_argument("--reference-only", action="store_true", help="only run (or show) the cached references")
    ap.add_argument("--retime-steps", type=int, default=100,
                    help="after each candidate, time this many steps of the reference preset back to back, and give "
                    "the speed-up also with the cached reference's steps at today's speed (0: skip)")
    ap.add_argument("--tune-allocator", action="store_true",
                    help="tune the allocator as the CLI does (deepprior.runtime) for the candidate and the "
                    "back-to-back timing alike (the cached reference ran without); writes fast-<task>-tuned.md")
    args = ap.parse_args(argv)
    from benchmarks import fast_search  # it imports this module

    if args.tune_allocator:
        from deepprior.runtime import tune_allocator

        tune_allocator()
    task = TASKS[args.task]
    candidate = args.candidate or task.candidate
    images = args.images or list(paper.tier_specs("quick")[task.table].images)[:3]

    rows = []
    for image in images:
        ref = reference(args.task, task, image, args.rerun_reference)
        print(f"reference {image}: {ref['best_db']:.2f} dB @ {ref['best_step']} in {ref['seconds_to_best']:.0f} s",
              flush=True)
        if args.reference_only:
            continue
        target = ref["best_db"] - MARGIN_DB
        # search:NAME: a candidate of benchmarks.fast_search (found on the tune images), confirmed here
        cand = curve(task, image, fast_search.resolve(args.task, candidate), task.cap, target=target)
        reached = cand["values"][-1] >= target
        row = {"image": image, "ref": ref, "cand_steps": len(cand["values"]), "cand_seconds": cand["times"][-1],
               "cand_db": cand["values"][-1], "cand_peak": max(cand["values"]), "reached": reached,
               "cand_preset": cand["preset"]}
        row["ratio"] = ref["seconds_to_best"] / row["cand_seconds"] if reached else None
        if args.retime_steps > 0:  # this machine's speed drifts between days: the reference's step, timed now
            row["ref_step_now"] = step_seconds(task, image, task.reference, args.retime_steps)
            row["ratio_now"] = ref["best_step"] * row["ref_step_now"] / row["cand_seconds"] if reached else None
        rows.append(row)
        print(f"  {cand['preset']}: {row['cand_db']:.2f} dB @ {row['cand_steps']} in {row['cand_seconds']:.1f} s"
              + (f" ({row['ratio']:.1f}x)" if reached else " (not reached)"), flush=True)
        if "ref_step_now" in row:
            print(f"  {task.reference} now {row['ref_step_now'] * 1000:.0f} ms/step (cached run "
                  f"{ref['seconds_per_step'] * 1000:.0f})", flush=True)
    if args.reference_only:
        return
    level = {"denoise": f"sigma {task.level:g}", "sr": f"x{task.level:g}", "inpaint": f"{task.level:.0%} missing",
             "jpeg": f"JPEG quality {task.level:g}", "text": f"text {task.level:g} px high"}
    command = (f"python -m benchmarks.fast --task {args.task}" + (f" --candidate {candidate}" if args.candidate else "")
               + (f" --images {' '.join(images)}" if args.images else "")
               + (" --tune-allocator" if args.tune_allocator else ""))
    who = ("the default preset (picked for each crop from its degraded image and mask, as the CLI does)"
           if candidate == "default" else f"`{candidate}`")
    what = f"{task.strokes} brush strokes {task.level:g} px wide" if task.strokes else level[task.table]
    lines = [f"Reproduce: `{command}` ({what}, 128 px crops of the quick "
             f"tier's images and seeds, none used for tuning; `{task.reference}` run for {task.reference_steps} steps "
             f"gives its best-iterate PSNR (found with the ground truth) and the time to it (cached in "
             f"`benchmarks/results/fast-reference.json` with its commit); {who} runs until it is within "
             f"{MARGIN_DB} dB of that (cap {task.cap} steps); CPU; PSNR of the returned image, RGB, "
             "data range 1, untrimmed).", ""]
    retimed = all("ref_step_now" in r for r in rows)
    if args.tune_allocator:
        lines += ["This run tuned the allocator as the CLI does (`deepprior.runtime`), for the candidate and the "
                  "back-to-back timing of the reference alike; the cached reference may have run without it, so the "
                  "speed-up to compare is the last column's (today's speed, both tuned).", ""]
    if retimed:
        lines += [f"Timing drifts between runs on this machine, so after each candidate {args.retime_steps} steps of "
                  f"`{task.reference}` ran back to back with it: the last two columns give its milliseconds per step "
                  "then (and in the cached run) and the speed-up with the cached run's steps at that speed.", ""]
    extra = " | ref. ms/step now (cached) | speed-up at today's speed" if retimed else ""
    lines += [f"| image | {task.reference} best (dB @ step) | time to it (s) | {candidate} (dB @ step) | time (s) "
              f"| speed-up{extra} |", "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if retimed else "")]
    for r in rows:
        ref = r["ref"]
        last = " (last step)" if ref["best_step"] == ref["steps"] else ""
        ratio = f"**{r['ratio']:.1f}x**" if r["reached"] else f"not reached (peak {r['cand_peak']:.2f})"
        picked = f" ({r['cand_preset']})" if candidate == "default" else ""
        lines.append(f"| {r['image']} | {ref['best_db']:.2f} @ {ref['best_step']}{last} | {ref['seconds_to_best']:.0f} | "
                     f"{r['cand_db']:.2f} @ {r['cand_steps']}{picked} | {r['cand_seconds']:.1f} | {ratio} |"
                     + (f" {r['ref_step_now'] * 1000:.0f} ({ref['seconds_per_step'] * 1000:.0f}) | "
                        + (f"{r['ratio_now']:.1f}x |" if r["reached"] else "– |") if retimed else ""))
    ratios = [r["ratio"] for r in rows if r["reached"]]
    if ratios:
        lines += ["", f"Mean speed-up {sum(ratios) / len(ratios):.1f}x, worst {min(ratios):.1f}x "
                  f"({len(ratios)} of {len(rows)} images reached the bar; the issue's target is 20x on every image)."]
        if retimed:
            now = [r["ratio_now"] for r in rows if r["reached"]]
            lines[-1] += f" At today's speed of the reference: mean {sum(now) / len(now):.1f}x, worst {min(now):.1f}x."
    RESULTS.mkdir(parents=True, exist_ok=True)
    # the task's own candidate writes fast-<task>.md; another one fast-<task>-<candidate>.md
    name = (f"fast-{args.task}" + (f"-{candidate.replace(':', '-')}" if args.candidate and candidate != task.candidate
                                    else "")
            + ("-tuned" if args.tune_allocator else ""))
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
