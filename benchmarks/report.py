"""Build BENCHMARKS.md from the CSVs that ``python -m benchmarks.paper`` writes.

    python -m benchmarks.report [--results benchmarks/results] [--output BENCHMARKS.md]

One section per table and tier found (``<table>-<tier>.csv``, with ``<table>-<tier>-curves.json``
for the run's metadata and ``<table>-<tier>.png`` for the plot): what the tier used, per-image
PSNR / SSIM of deepprior and of each baseline beside the paper's figures where the paper has
them, and the averages per dataset.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
from pathlib import Path

from benchmarks import paper_figures
from benchmarks.paper import REPO, RESULTS, TABLE_NAMES, TABLES, all_images

TIER_ORDER = ("full", "quick", "smoke")
CSV_NAME = re.compile(r"^(?P<table>[a-z]+)-(?P<tier>[a-z0-9_]+)\.csv$")


def find_results(results: Path) -> list[tuple[str, str, Path]]:
    """(table, tier, csv path) of every table CSV in ``results``, in report order."""
    found = []
    for path in results.glob("*.csv"):
        m = CSV_NAME.match(path.name)
        if m and m["table"] in TABLE_NAMES:
            found.append((m["table"], m["tier"], path))
    tier_rank = {t: i for i, t in enumerate(TIER_ORDER)}
    return sorted(found, key=lambda f: (TABLE_NAMES.index(f[0]), tier_rank.get(f[1], len(TIER_ORDER)), f[1]))


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_meta(csv_path: Path) -> dict:
    """The ``meta`` of the curves JSON beside a CSV ({} when missing)."""
    path = csv_path.with_name(csv_path.stem + "-curves.json")
    try:
        return json.loads(path.read_text()).get("meta", {})
    except (OSError, ValueError):
        return {}


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def fmt(value, digits: int = 2) -> str:
    return "–" if value is None or value == "" else f"{float(value):.{digits}f}"


def unique(values) -> list:
    return list(dict.fromkeys(values))


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def display(method: str) -> str:
    """The name of a method in column headers ("DIP" for deepprior beside the paper's figures)."""
    return {"deepprior": "DIP", "bm3d": "BM3D"}.get(method, method)


def tier_summary(table: str, tier: str, rows: list[dict]) -> str:
    """The section's subtitle, e.g. "quick tier: 3 images (cbsd68: 3), crops centre-128"."""
    images = unique((r["dataset"], r["image"]) for r in rows)
    per_dataset = ", ".join(f"{d}: {sum(1 for i in images if i[0] == d)}" for d in unique(d for d, _ in images))
    crops = ", ".join(unique(r["crop"] for r in rows))
    where = "HR crops" if table == "sr" else "crops"
    n_all = len(all_images(table))
    if tier == "full":
        scope = "the paper's protocol" if len(images) == n_all else f"subset, {len(images)} of {n_all} images"
        return f"full tier ({scope}): {plural(len(images), 'image')} ({per_dataset}), {where} {crops}"
    return f"{tier} tier: {plural(len(images), 'image')} ({per_dataset}), {where} {crops}"


def used_lines(table: str, tier: str, rows: list[dict], meta: dict, csv_path: Path) -> list[str]:
    """The bullet list of what the run used."""
    dip = [r for r in rows if r["method"] == "deepprior"]
    runs = []
    for deg in unique(r["degradation"] for r in dip):
        rs = [r for r in dip if r["degradation"] == deg]
        steps = sorted({int(r["iters"]) for r in rs})
        steps_text = f"{steps[0]}" if len(steps) == 1 else f"{steps[0]}-{steps[-1]} (see the CSV)"
        runs.append(f"{deg}: preset `{'`, `'.join(unique(r['preset'] for r in rs))}`, {steps_text} steps")
    lines = []
    if meta.get("command"):
        took = f", {meta['seconds'] / 60:.1f} min" if meta.get("seconds") is not None else ""
        est = f" (estimate {meta['estimate_seconds'] / 60:.1f} min)" if meta.get("estimate_seconds") else ""
        partial = "" if meta.get("complete", True) else " — **incomplete run**"
        lines.append(f"- Produced by `{meta['command']}`, finished {meta.get('finished', '?')}{took}{est}{partial}")
    devices = ", ".join(unique(r["device"] for r in dip)) or "?"
    lines.append(f"- Commit {', '.join(unique(r['commit'] for r in rows))}; deepprior on {devices}; "
                 f"torch {', '.join(unique(r['torch'] for r in rows))}"
                 + (f"; {meta['machine']}" if meta.get("machine") else ""))
    lines.append(f"- deepprior: {'; '.join(runs)}; seed per image = column `seed` (also the fit's seed)")
    if meta.get("torch_threads") is not None:
        lines.append(f"- torch CPU threads {meta['torch_threads']}; load average at the start "
                     f"{meta.get('load_average_at_start', '?')} (timings are wall seconds per image)")
    if meta.get("time_cap"):
        lines.append(f"- Each CPU fit capped at {meta['time_cap']:g}x its planned time; "
                     "a row's `iters` is the steps done")
    lines.append(f"- Metric: {TABLES[table].metric}")
    for method in unique(r["method"] for r in rows if r["method"] != "deepprior"):
        notes = unique(r["notes"] for r in rows if r["method"] == method)
        more = " (details differ per row: see the CSV's notes)" if len(notes) > 1 else ""
        lines.append(f"- {method}: {notes[0]}{more}")
    early = [r for r in dip if "STOPPED EARLY" in r["notes"] or "stopped early" in r["notes"]]
    if early:
        lines.append(f"- **{len(early)} deepprior fits stopped early**: "
                     + ", ".join(f"{r['image']} {r['degradation']} ({r['iters']} steps)" for r in early))
    shown = os.path.relpath(csv_path, REPO) if csv_path.is_relative_to(REPO) else csv_path
    lines.append(f"- Data: `{shown}`")
    if tier != "full":
        lines.append(f"- **{tier.capitalize()} tier, indicative only**: centre crops, the reduced `*-small` presets "
                     "(and the fast defaults where the CLI picks them: `denoise-sure-fast` at sigma 25, "
                     "`inpaint-blindspot`, `sr-x4-fast`, `deblock-fast`) "
                     "and fewer steps; the paper's figures (whole images, the paper's networks) are shown "
                     "for orientation, not as a like-for-like comparison.")
    return lines


def method_columns(table: str, rows: list[dict], degradation: str) -> list[tuple[str, bool]]:
    """(method, has a paper column) in row order, deepprior first."""
    methods = unique(r["method"] for r in rows)
    methods.sort(key=lambda m: m != "deepprior")
    out = []
    for m in methods:
        has = (any(r["paper_psnr"] for r in rows if r["method"] == m)
               or (table, degradation, m) in paper_figures.AVERAGES)
        out.append((m, has))
    return out


def results_table(table: str, degradation: str, rows: list[dict]) -> list[str]:
    """The markdown table of one degradation: per-image rows, then averages per dataset."""
    columns = method_columns(table, rows, degradation)
    head = ["dataset", "image"]
    for m, has_paper in columns:
        head.append(f"{m} PSNR / SSIM")
        if has_paper:
            head.append(f"paper {display(m)}")
    head += ["deepprior steps", "deepprior s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_key = {(r["dataset"], r["image"], r["method"]): r for r in rows}
    images = unique((r["dataset"], r["image"]) for r in rows)
    for dataset, image in images:
        cells = [dataset, image]
        for m, has_paper in columns:
            r = by_key.get((dataset, image, m))
            cells.append("–" if r is None else f"{fmt(r['psnr'])} / {fmt(r['ssim'], 4)}")
            if has_paper:
                cells.append(fmt(r["paper_psnr"]) if r else "–")
        dip = by_key.get((dataset, image, "deepprior"))
        cells += [dip["iters"] if dip else "–", fmt(dip["seconds"], 1) if dip else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    groups = unique(d for d, _ in images)
    if len(groups) > 1:
        groups.append(None)  # all datasets together
    for dataset in groups:
        in_group = [(d, i) for d, i in images if dataset is None or d == dataset]
        label = "all" if dataset is None else dataset
        cells = [f"**{label}**", f"**average ({plural(len(in_group), 'image')})**"]
        for m, has_paper in columns:
            rs = [by_key[(d, i, m)] for d, i in in_group if (d, i, m) in by_key]
            p, s = mean([float(r["psnr"]) for r in rs]), mean([float(r["ssim"]) for r in rs])
            cells.append(f"**{fmt(p)} / {fmt(s, 4)}**" if rs else "–")
            if has_paper:
                cells.append(paper_average_cell(table, degradation, m, dataset, rs, len(in_group)))
        dips = [by_key[(d, i, "deepprior")] for d, i in in_group if (d, i, "deepprior") in by_key]
        cells += ["", fmt(mean([float(r["seconds"]) for r in dips]), 1) if dips else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def paper_average_cell(table: str, degradation: str, method: str, dataset: str | None, rows: list[dict],
                       n_images: int) -> str:
    """The paper's average: over its whole dataset, and over these images when it has per-image figures."""
    parts = []
    whole = paper_figures.paper_average(table, degradation, method, dataset) if dataset else None
    if whole is not None:
        n_all = sum(1 for i in all_images(table) if i.startswith(dataset + "/"))
        parts.append(f"{whole:.2f} (all {n_all})")
    figures = [float(r["paper_psnr"]) for r in rows if r["paper_psnr"]]
    if figures and len(figures) == n_images:
        parts.append(f"{mean(figures):.2f} (these {n_images})")
    elif figures:
        parts.append(f"{mean(figures):.2f} (the {len(figures)} of these with a figure)")
    return "; ".join(parts) or "–"


def section(table: str, tier: str, csv_path: Path, output: Path) -> list[str]:
    """The markdown of one table/tier."""
    rows = read_rows(csv_path)
    if not rows:
        return [f"## {TABLES[table].title} — {tier} tier", "", f"`{csv_path.name}` has no rows.", ""]
    meta = read_meta(csv_path)
    lines = [f"## {TABLES[table].title} — {tier_summary(table, tier, rows)}", ""]
    lines += used_lines(table, tier, rows, meta, csv_path) + [""]
    for degradation in unique(r["degradation"] for r in rows):
        lines += [f"### {degradation}", ""]
        lines += results_table(table, degradation, [r for r in rows if r["degradation"] == degradation]) + [""]
    png = csv_path.with_suffix(".png")
    if png.exists():
        rel = Path(os.path.relpath(png, output.parent)).as_posix()
        metric = ("plain RGB PSNR of the HR output (untrimmed, not the table's Y metric)" if table == "sr"
                  else "PSNR against the ground truth")
        lines += [f"deepprior PSNR vs step ({metric}; the returned image: running average where the preset "
                  f"averages outputs): [{png.name}]({rel})", "", f"![{table} {tier} PSNR curves]({rel})", ""]
    return lines


def build(results: Path, output: Path) -> str:
    """The whole BENCHMARKS.md text."""
    found = find_results(results)
    lines = [
        "# Benchmarks: the Deep Image Prior paper's tables",
        "",
        "Generated by `python -m benchmarks.report` from the CSVs of `python -m benchmarks.paper` "
        "(do not edit by hand). Reproduce with:",
        "",
        "```",
        "python -m benchmarks.paper --table all --tier quick   # crops, small presets: ~22 min measured on 2 cores",
        "python -m benchmarks.paper --table all --tier full --device cuda   # the paper's protocol (GPU, hours)",
        "python -m benchmarks.report                           # this file, from benchmarks/results/",
        "```",
        "",
        "PSNR in dB (data range 1), SSIM by `skimage.metrics.structural_similarity` with `data_range=1`. "
        "Paper figures: Ulyanov, Vedaldi & Lempitsky, *Deep Image Prior* (whole images). "
        "`–`: no figure. Protocols: `benchmarks/protocol.py`; the runner: `benchmarks/paper.py`.",
        "",
    ]
    if not found:
        lines += [f"No results yet in `{results}`.", ""]
    for table, tier, path in found:
        lines += section(table, tier, path, output)
    speed = results / "speed.md"  # written by python -m benchmarks.speed --markdown
    if speed.is_file():
        lines += ["", "## Speed", "", "Reproduce: `python -m benchmarks.speed --sizes 256 512 --steps 16 --warmup 3 "
                  "--ttq --out benchmarks/results/speed.json --markdown benchmarks/results/speed.md`", "",
                  *speed.read_text().strip().splitlines(), ""]
    for name, title in (("speed-layout.md", "Speed: NCHW or channels-last for the paper network, the allocator tuned"),
                        ("batchnorm.md", "Speed: BatchNorm's channel counts (CPU, channels-last)"),
                        ("stopping.md", "Automatic stopping"), ("memory.md", "Memory of big photos"),
                        ("precision.md", "bfloat16: speed and quality"), ("tiles.md", "Tiles"),
                        ("fast-denoise.md", "A faster preset at the paper preset's quality: denoising (the default)"),
                        ("fast-denoise-denoise-small.md",
                         "A faster preset at the paper preset's quality: denoising with `denoise-small`"),
                        ("fast-sr.md", "A faster preset at the paper preset's quality: super-resolution x4, "
                         "`sr-x4-fast`"),
                        ("fast-sr-sr-x4-small.md",
                         "A faster preset at the paper preset's quality: super-resolution x4, `sr-x4-small`"),
                        ("fast-inpaint.md", "A faster preset at the paper preset's quality: inpainting (the default)"),
                        *((f"fast-{t}-tuned.md", "A faster preset at the paper preset's quality, the allocator "
                           f"tuned as the CLI runs: {what}") for t, what in (("denoise", "denoising"),
                                                                            ("sr", "super-resolution x4"),
                                                                            ("inpaint", "inpainting"))),
                        ("fast-inpaint-inpaint-small.md",
                         "A faster preset at the paper preset's quality: inpainting, `inpaint-small`"),
                        ("fast-search-inpaint.md", "Searching for faster inpainting presets (tune images)"),
                        ("fast-search-inpaint-rerun.md", "Inpainting: wider lower levels, Self2Self's flips "
                         "(tune images, the allocator tuned)"),
                        ("fast-inpaint-search-blindspot-skip16-tuned.md", "Inpainting: 16 skip channels on the "
                         "held-out crops (`search:blindspot-skip16`, the allocator tuned; `inpaint-blindspot` since)"),
                        ("fast-search-inpaint-final.md", "Inpainting: where the candidates end (2000 steps)"),
                        ("fast-search-inpaint-wide.md", "Inpainting: wider levels with 16 skip channels (tune "
                         "images, the allocator tuned)"),
                        ("fast-inpaint-search-blindspot-s16-48-48-64-64-tuned.md", "Inpainting: the wider "
                         "network on house (`search:blindspot-s16-48-48-64-64`, the allocator tuned)"),
                        ("fast-search-inpaint-arch.md", "Inpainting: the network's other knobs (tune images, "
                         "the allocator tuned)"),
                        ("fast-search-inpaint-dropout.md", "Inpainting: Self2Self's dropout (tune images, the "
                         "allocator tuned; not adopted)"),
                        ("fast-seeds-inpaint-house.md", "Inpainting: several fits averaged on house (not adopted: "
                         "+0.1-0.2 dB, not the 0.5 dB missing)"),
                        ("fast-search-inpaint-keep.md", "Inpainting: fewer known pixels shown as the fit goes on "
                         "(tune images, the allocator tuned)"),
                        ("fast-search-inpaint-keep-final.md", "Inpainting: the falling share on the held-out crops "
                         "(2000 steps; `inpaint-blindspot` since)"),
                        ("fast-search-denoise.md", "Searching for faster denoising presets (tune images)"),
                        ("fast-denoise-search-sure-every2-tuned.md", "Denoising: the divergence's probe every second "
                         "step (`search:sure-every2`, held-out crops, the allocator tuned; not adopted)"),
                        ("fast-search-denoise-final-every2.md", "Denoising: where the probe every second step ends "
                         "(700 steps, held-out crops)"),
                        ("fast-denoise-search-sure-b8-90-cos300-tuned.md", "Denoising: Adam's betas 0.8/0.9 with the "
                         "learning rate decaying over 300 steps (`search:sure-b8-90-cos300`, held-out crops, the "
                         "allocator tuned; not adopted)"),
                        ("fast-search-denoise-final-cos300.md", "Denoising: where `sure-b8-90-cos300` ends (its 300 "
                         "steps, held-out crops)"),
                        ("fast-search-denoise-skip16.md", "Denoising: 16 skip channels for `denoise-sure` (tune "
                         "images, the allocator tuned)"),
                        ("fast-search-sr.md", "Searching for faster super-resolution presets (tune images)"),
                        ("fast-search-sr-rerun.md", "Super-resolution: the jitter's level again (tune images, "
                         "the allocator tuned)"),
                        ("fast-sr-search-fast-b-j30-jw50-tuned.md", "Super-resolution: the jitter at the "
                         "paper's level on the held-out crops (`search:fast-b-j30-jw50`, the allocator tuned)"),
                        ("fast-search-sr-final.md", "Super-resolution: where the candidates end (1500 steps)"),
                        ("fast-search-sr-final-skip16.md", "Super-resolution: where 16 skip channels end "
                         "(1500 steps)"),
                        ("fast-search-sr-lr.md", "Super-resolution: the learning rate again (tune images, "
                         "the allocator tuned)"),
                        ("fast-search-sr-input.md", "Super-resolution: fewer input channels (tune images, the "
                         "allocator tuned; `sr-x4-fast` has 16 since)"),
                        ("fast-search-sr-final-input.md", "Super-resolution: where 16 input channels end (1500 "
                         "steps)"),
                        ("fast-sr-search-fast-b-in16-tuned.md", "Super-resolution: 16 input channels on the "
                         "held-out crops (`search:fast-b-in16`, the allocator tuned; a first run, before it shipped)"),
                        ("fast-search-sr-ramp.md", "Super-resolution: a slower rise of the jitter (tune images, "
                         "the allocator tuned)"),
                        ("fast-search-deblock.md", "Searching for faster JPEG presets (tune images, the allocator "
                         "tuned)"),
                        ("fast-deblock-deblock-fast-tuned.md", "A faster preset at the paper preset's quality: JPEG "
                         "quality 10, `deblock-fast` (the allocator tuned)"),
                        ("fast-deblock-q20-deblock-fast-tuned.md", "A faster preset at the paper preset's quality: "
                         "JPEG quality 20, `deblock-fast` (the allocator tuned)"),
                        ("fast-search-deblock-final.md", "JPEG: where the candidates end (1600 steps, held-out "
                         "crops)"),
                        ("fast-search-deblock-q20-tune.md", "JPEG: quality 20 on the tune crops (1600 steps)"),
                        ("deblock-photo.md", "JPEG: whole photos, whole or in tiles"),
                        ("fast-search-inpaint-text.md", "Inpainting of text: searching for a faster preset (tune "
                         "images, the allocator tuned)"),
                        ("fast-inpaint-text-inpaint-text-fast-tuned.md", "Inpainting of text: `inpaint-text-fast` "
                         "against the paper preset (held-out crops, the allocator tuned)"),
                        ("fast-search-inpaint-text-blindspot.md", "Inpainting of text: the blind-spot fit "
                         "(tune images, the allocator tuned)"),
                        ("fast-inpaint-text-tuned.md", "A faster preset at the paper preset's quality: inpainting "
                         "of text (the default, `inpaint-blindspot`; the allocator tuned)"),
                        ("fast-search-inpaint-text-blindspot-final.md", "Inpainting of text: where the blind-spot "
                         "fits end (2000 steps, held-out crops)"),
                        ("fast-search-inpaint-text-64.md", "Inpainting of 64 px text: the blind-spot fit hiding "
                         "squares (tune images, the allocator tuned)"),
                        ("fast-inpaint-text-64-tuned.md", "A faster preset at the paper preset's quality: inpainting "
                         "of 64 px text (the default, `inpaint-blindspot-blocks`; the allocator tuned)"),
                        ("fast-search-inpaint-text-64-final.md", "Inpainting of 64 px text: where the blind-spot "
                         "fits end (2000 steps, held-out crops)"),
                        ("fast-search-inpaint-strokes.md", "Inpainting of brush strokes: the blind-spot fit hiding "
                         "larger squares (tune images, the allocator tuned)"),
                        ("fast-inpaint-strokes-search-blindspot-block15-tuned.md", "Inpainting of brush strokes: "
                         "15x15 squares against the paper preset (held-out crops, the allocator tuned)"),
                        ("fast-search-inpaint-strokes-final.md", "Inpainting of brush strokes: where the blind-spot "
                         "fits end (2000 steps, held-out crops)"),
                        ("fast-search-inpaint-strokes-baselines.md", "Inpainting of brush strokes: classical fills"),
                        ("fast-search-inpaint-strokes-small.md", "Inpainting of brush strokes: `inpaint-small`, "
                         "the web app's CPU default until 2026-11-28"),
                        ("blindspot-net.md", "Inpainting of scattered pixels: a blind-spot network instead of "
                         "blind-spot masking (a negative result)"),
                        ("context.md", "Inpainting a hole: fitting only the region around it (a negative result)"),
                        ("inpaint-ensembles.md", "Inpainting of scattered pixels: other ensembles than the "
                         "running average, and blends with other methods (a negative result)"),
                        ("fast-seeds-denoise.md", "Several seeds averaged (denoising, tune images)"),
                        ("fast-seeds-inpaint.md", "Several seeds averaged (blind-spot inpainting, tune images)"),
                        ("sure.md", "SURE: a stopping rule, and a loss (DIP-SURE)"),
                        ("sure-whole.md", "SURE: whole photos"),
                        ("sure-recipes.md", "SURE: faster recipes on crops (several seeds)"),
                        ("sure-eps.md", "SURE: the divergence's finite-difference step (held-out crops)"),
                        ("sure-guard.md", "SURE: a guard against the collapse"),
                        ("sure-rise.md", "SURE: the data-term guard (--stop auto's)"),
                        ("sure-rise-heldout.md", "SURE: the data-term guard on other crops"),
                        ("sure-rise-high.md", "SURE: the data-term guard above sigma 30 (outside the SURE presets' domain)"),
                        ("sure-versus.md", "SURE above sigma 30: the presets as the CLI runs them on crops"),
                        ("gpu.md", "GPU (CUDA)"),
                        ("gpu-host-copies.md", "GPU (CUDA): the host's copies per step")):
        part = results / name  # written by benchmarks.stopping / benchmarks.memory / benchmarks.precision
        if part.is_file():
            lines += ["", f"## {title}", "", *part.read_text().strip().splitlines(), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the CSVs (default benchmarks/results)")
    ap.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md",
                    help="default BENCHMARKS.md at the repo root")
    args = ap.parse_args(argv)
    output = args.output.resolve()
    output.write_text(build(args.results.resolve(), output))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
