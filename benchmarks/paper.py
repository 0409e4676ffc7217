"""Reproduce the Deep Image Prior paper's tables beside classical baselines.

    python -m benchmarks.paper --table sr|inpaint|denoise|jpeg|text|all --tier quick|full
                               [--device cpu|cuda|auto] [--images NAME ...] [--out benchmarks/results]
                               [--seed 0] [--plan]
    python -m benchmarks.report          # rebuilds BENCHMARKS.md from benchmarks/results/*.csv

For every (image, degradation) of a table the ground truth is degraded with a fixed seed
(:func:`benchmarks.protocol.image_seed`), deepprior restores it through its public API
(``deepprior.run_task``) and every baseline gets the same degraded input.  Each result is one
row of ``<out>/<table>-<tier>.csv``; the deepprior PSNR-vs-step curves (against the ground truth)
go to ``<out>/<table>-<tier>-curves.json`` with the run's metadata, and are plotted in
``<out>/<table>-<tier>.png``.  ``--table all`` runs the five tables, then the report.

Tables (protocols in :mod:`benchmarks.protocol`, the paper's figures in
:mod:`benchmarks.paper_figures`):

* ``sr``: Set5 + Set14, x4 and x8.  HR centre-cropped to a multiple of 32, LR = Pillow Lanczos
  resize; PSNR/SSIM on luminance Y, trimmed 4 px top/left and 5 px bottom/right.  Grayscale images
  are treated as RGB copies.  Baseline: Pillow bicubic upscaling.
* ``inpaint``: the 11 grayscale images of the paper's Table 1, 50 % of pixels missing (Bernoulli
  mask, seed per image); PSNR on the full image.  Baselines: scikit-image biharmonic, OpenCV Telea.
* ``denoise``: CBSD68 (10 images) + F16, baboon, lenna, pepper; Gaussian noise sigma = 25 and 50,
  clipped to [0, 1]; PSNR over RGB.  Baselines: BM3D (sigma known), OpenCV NL-means (best h of a
  small grid, chosen with the ground truth: an oracle, favourable to NL-means).
* ``jpeg``: CBSD68, Pillow JPEG quality 10 and 20; PSNR over RGB.  Baseline: the JPEG input.
* ``text`` (not one of the paper's tables; its kate figure has no ground truth with text): colour
  photos with lines of text written over them (:func:`deepprior.masks.text_mask`, placed from the
  image's seed; 32 px high on the quick tier's crops, bold enough not to count as scattered pixels);
  PSNR over RGB of the whole image.  Baselines: scikit-image biharmonic, OpenCV Telea.

Tiers:

* ``full``: the paper's protocol exactly (whole images, the paper presets at their iteration
  counts: sr-x4-paper, sr-x8-paper, inpaint-pixels-paper, denoise-paper, deblock-paper).  Meant
  for a GPU; hours on a CPU.
* ``quick``: a few images per table, 128 px centre crops (for SR: of the HR image, so the LR is
  32 px at x4 and 16 px at x8) and the reduced ``*-small`` presets with fewer steps, or the fast
  defaults where the CLI picks one (``denoise-sure-fast`` at sigma 25, ``inpaint-blindspot``, ``sr-x4-fast``,
  ``deblock-fast``; ``inpaint-text-fast`` for text, standing in for ``inpaint-text-paper``); the paper's four
  tables together are planned to finish in well under 30 minutes on a 2-core CPU, the text table in
  about 5 more.  Each fit on the
  CPU is also capped at ``--time-cap`` times its planned time (the row records the steps done).
  Quick results are indicative only: they are not the paper's tables.

The plan (images, crops, presets, steps) and a time estimate are printed at the start; ``--plan``
prints them and exits.  CPU timings assume an otherwise idle machine: two multi-threaded torch
processes sharing 2 cores can each run many times slower (``--threads 1`` helps when sharing).
Rows never mix tiers; every row says which crop, preset and steps it used.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from benchmarks import paper_figures, protocol

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"

COLUMNS = [
    "table", "dataset", "image", "method", "tier", "degradation", "preset", "crop", "seed",
    "psnr", "ssim", "iters", "seconds", "device", "torch", "commit", "paper_psnr", "notes",
]
TABLE_NAMES = ("sr", "inpaint", "denoise", "jpeg", "text")

# --- the images ---------------------------------------------------------------------------------

SET5 = tuple(f"set5/{n}" for n in ("baby", "bird", "butterfly", "head", "woman"))
SET14 = tuple(
    f"set14/{n}"
    for n in ("baboon", "barbara", "bridge", "coastguard", "comic", "face", "flowers", "foreman",
              "lenna", "man", "monarch", "pepper", "ppt3", "zebra")
)
INPAINTING11 = tuple(  # the paper's Table 1 order
    f"inpainting11/{n}"
    for n in ("barbara", "boat", "house", "Lena512", "peppers256", "Cameraman256", "couple",
              "fingerprint", "hill", "man", "montage")
)
CBSD68 = tuple(
    f"cbsd68/{n}"
    for n in ("101085", "108070", "130026", "148089", "167083", "196073", "220075", "241048", "295087", "304074")
)
DENOISE_PAPER = ("paper/denoising/F16_GT", "set14/baboon", "set14/lenna", "set14/pepper")
# text over colour photos (the paper's kate task; its one image has no ground truth without the text)
TEXT = ("set14/comic", "set5/head", "cbsd68/304074", "set14/lenna", "cbsd68/108070", "set14/foreman", "cbsd68/196073")


@dataclass(frozen=True)
class TierSpec:
    """What one tier runs for one table.

    ``levels`` are the degradation parameters (SR scale, missing fraction, noise sigma, JPEG
    quality); ``presets`` and ``iters`` go with them (``None`` iters: the preset's own count).
    ``crop``: side of the centre crop (of the ground truth; for SR of the HR image), or None for
    whole images (SR: cropped to a multiple of 32 anyway).
    """

    images: tuple[str, ...]
    crop: int | None
    levels: tuple
    presets: tuple[str, ...]
    iters: tuple[int | None, ...]


def tier_specs(tier: str) -> dict[str, TierSpec]:
    """The plan of a tier: ``{table: TierSpec}`` (``tier`` is "quick", "full" or "smoke")."""
    if tier == "full":
        return {
            "sr": TierSpec(SET5 + SET14, None, (4, 8), ("sr-x4-paper", "sr-x8-paper"), (None, None)),
            "inpaint": TierSpec(INPAINTING11, None, (0.5,), ("inpaint-pixels-paper",), (None,)),
            "denoise": TierSpec(CBSD68 + DENOISE_PAPER, None, (25, 50), ("denoise-paper",) * 2, (None, None)),
            "jpeg": TierSpec(CBSD68, None, (10, 20), ("deblock-paper",) * 2, (None, None)),
            "text": TierSpec(TEXT, None, (48,), ("inpaint-text-paper",), (None,)),
        }
    quick = {
        # x4: the CLI's default, sr-x4-fast, 700 of its 1500 steps (past the paper preset's best - 0.2 dB by
        # step 336-426 on the fast benchmark's crops; the plan's 30 minutes); x8: sr-x8-small for sr-x8-paper
        "sr": TierSpec(("set5/baby", "set5/butterfly", "set14/bridge", "set14/zebra"), 128, (4, 8),
                       ("sr-x4-fast", "sr-x8-small"), (700, 600)),
        "inpaint": TierSpec(("inpainting11/barbara", "inpainting11/house", "inpainting11/Cameraman256"), 128,
                            # the default for these masks, 1600 of its 2000 steps (the plan's 30 minutes)
                            (0.5,), ("inpaint-blindspot",), (1600,)),
        # sigma 25: the preset `deepprior denoise` picks there (denoise-sure-fast, its own 200 steps);
        # sigma 50: denoise-small standing in for denoise-paper, the default there
        "denoise": TierSpec(("paper/denoising/F16_GT", "set14/baboon", "cbsd68/108070"), 128, (25, 50),
                            ("denoise-sure-fast", "denoise-small"), (None, 1200)),
        # the CLI's default, deblock-fast, its own 1000 steps (a 128 px crop is one of its tiles)
        "jpeg": TierSpec(("cbsd68/101085", "cbsd68/167083", "cbsd68/241048"), 128, (10, 20),
                         ("deblock-fast",) * 2, (None, None)),
        # text 32 px high: the CLI's default for it, inpaint-blindspot (every pixel to fill within 3 px of a
        # known one: masks.near_known), 1600 of its 2000 steps as for the missing pixels
        "text": TierSpec(TEXT[:3], 128, (32,), ("inpaint-blindspot",), (1600,)),
    }
    if tier == "quick":
        return quick
    if tier == "smoke":  # a debugging aid: one image, 64 px crops, 5 steps
        return {t: replace(s, images=s.images[:1], crop=64, iters=(5,) * len(s.levels)) for t, s in quick.items()}
    raise ValueError(f"unknown tier {tier!r}")


def all_images(table: str) -> tuple[str, ...]:
    """Every image a table can use (its full-tier list)."""
    return tier_specs("full")[table].images


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One (image, degradation) of a table: what to load, how to degrade it, how to restore it."""

    table: str
    tier: str
    dataset: str
    image: str  # file stem
    path: Path
    level: float
    degradation: str  # "x4", "p=0.5", "sigma=25", "q=10"
    preset: str
    iters: int
    crop: int | None
    crop_label: str
    seed: int
    out_shape: tuple[int, int]  # (H, W) of the ground truth after cropping


def degradation_label(table: str, level) -> str:
    """The ``degradation`` column: ``x4``, ``p=0.5``, ``sigma=25``, ``q=10``."""
    return {"sr": "x{}", "inpaint": "p={}", "denoise": "sigma={}", "jpeg": "q={}", "text": "text {}px"}[table].format(
        level)


def find_image(name: str, data: Path = DATA) -> Path:
    """The file of an image named ``dataset/stem`` (any extension)."""
    hits = sorted((data / name).parent.glob(Path(name).name + ".*"))
    if not hits:
        raise FileNotFoundError(f"no image {name!r} under {data}")
    return hits[0]


def select_images(table: str, spec: TierSpec, names: list[str] | None) -> tuple[str, ...]:
    """The tier's images, or those of the table's full list matching ``names`` (by stem or
    ``dataset/stem``, case-insensitive)."""
    if not names:
        return spec.images
    wanted = {n.lower() for n in names}
    return tuple(i for i in all_images(table) if i.lower() in wanted or Path(i).name.lower() in wanted)


def cropped_shape(table: str, size: tuple[int, int], crop: int | None) -> tuple[tuple[int, int], str]:
    """(H, W) of the ground truth after the tier's crop, and the ``crop`` column."""
    w, h = size
    if crop is not None:
        return (crop, crop), f"centre-{crop}"
    if table == "sr":
        return (h - h % 32, w - w % 32), f"mult32-h{h - h % 32}w{w - w % 32}"
    return (h, w), "full"


def preset_iters(name: str) -> int:
    """A preset's own step count (imports deepprior, hence torch)."""
    from deepprior.presets import get_preset

    return get_preset(name).iters


def make_jobs(table: str, tier: str, *, images: list[str] | None = None, seed: int = 0,
              data: Path = DATA, levels: list[float] | None = None) -> list[Job]:
    """The jobs of one table in one tier, in order (image-major); ``levels`` keeps only those
    degradation levels (e.g. [10] for JPEG quality 10)."""
    from PIL import Image

    spec = tier_specs(tier)[table]
    jobs = []
    for name in select_images(table, spec, images):
        path = find_image(name, data)
        with Image.open(path) as im:
            size = im.size
        shape, crop_label = cropped_shape(table, size, spec.crop)
        for level, preset, iters in zip(spec.levels, spec.presets, spec.iters):
            if levels and not any(math.isclose(float(level), float(v)) for v in levels):
                continue
            jobs.append(Job(table, tier, name.split("/")[0], Path(name).name, path, level,
                            degradation_label(table, level), preset, iters or preset_iters(preset),
                            spec.crop, crop_label, protocol.image_seed(name, seed), shape))
    return jobs


# cost model for the estimate, measured on a 2-core CPU (see the module docstring)
# steps/s at 128x128 output (small: 18-23 measured in the quick tier; sure: denoise-sure, a batch of two through
# the small network, 700 steps in 59 s on the demo's 128 px image; blindspot: inpaint-blindspot, 18-23 steps/s
# in the quick tier and the fast benchmark; sr-x4-fast runs the small network)
CPU_STEPS_PER_S_128 = {"small": 18.0, "sure": 12.0, "blindspot": 20.0, "paper": 2.0}
BASELINE_SECONDS_128 = {"bm3d": 2.0, "nlmeans": 0.5, "biharmonic": 1.0, "telea": 0.05}
RUN_OVERHEAD_S = 2.0
TIME_CAP = 1.3  # quick tier on a CPU: a fit stops at this multiple of its planned time


def fit_seconds(job: Job, device: str) -> float | None:
    """Planned seconds of the deepprior fit of a job (None: no cost figures for this device)."""
    if device != "cpu":
        return None
    kind = {"denoise-sure": "sure", "denoise-sure-fast": "sure", "inpaint-blindspot": "blindspot", "sr-x4-fast": "small",
            "deblock-fast": "small", "inpaint-text-fast": "small"}.get(job.preset)
    kind = kind or ("small" if job.preset.endswith("-small") else "paper")
    rate = CPU_STEPS_PER_S_128[kind]
    pixels = max(job.out_shape[0] * job.out_shape[1], 64 * 64)
    return job.iters / rate * pixels / 128**2


def job_seconds(job: Job, device: str) -> float | None:
    """Planned seconds of a job: the fit, its overhead and the baselines (all on the CPU)."""
    fit = fit_seconds(job, device)
    if fit is None:
        return None
    scale = job.out_shape[0] * job.out_shape[1] / 128**2
    baselines = sum(BASELINE_SECONDS_128.get(b, 0.0) for b in TABLES[job.table].baselines) * scale
    return fit + RUN_OVERHEAD_S + baselines


def duration(seconds: float) -> str:
    """``12.3 min`` or, from two hours, ``5.1 h``."""
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def describe_plan(table: str, jobs: list[Job], device: str) -> tuple[str, float | None]:
    """One paragraph saying what a table will run, and its estimated seconds (None if unknown)."""
    if not jobs:
        return f"{table}: no images selected", 0.0
    names = list(dict.fromkeys(f"{j.dataset}/{j.image}" for j in jobs))
    crops = sorted({j.crop_label for j in jobs})
    if len(crops) > 3:
        crops = [f"{crops[0].split('-')[0]} (per image)"]
    runs = "; ".join(sorted({f"{j.degradation}: {j.preset} {j.iters} steps" for j in jobs}))
    secs = [job_seconds(j, device) for j in jobs]
    total = None if any(s is None for s in secs) else sum(secs)
    where = "HR " if table == "sr" else ""
    est = "no estimate for this device" if total is None else f"~{duration(total)}"
    images = f"{len(names)} image{'s' * (len(names) != 1)} ({', '.join(names)})"
    text = f"{table:8s} {images}, {where}crop {', '.join(crops)}; {runs}; {len(jobs)} fits; {est}"
    return text, total


# --- running ------------------------------------------------------------------------------------


@dataclass
class Case:
    """A loaded job: the ground truth, the degraded input every method gets, and how to score."""

    job: Job
    truth: np.ndarray
    degraded: np.ndarray
    dip_kwargs: dict = field(default_factory=dict)  # mask= or scale= for deepprior.run_task
    params: dict = field(default_factory=dict)  # what the baselines need (sigma, scale, mask)


@dataclass(frozen=True)
class Context:
    """Settings shared by all rows of a run."""

    tier: str
    device: str
    torch: str
    commit: str
    time_cap: float | None  # cap each CPU fit at this many times its planned seconds


def read_truth(job: Job, colour: bool) -> np.ndarray:
    """The ground truth of a job: RGB (grayscale files repeated) or gray, centre-cropped."""
    from deepprior.io import read_image

    img, _ = read_image(job.path)
    img = protocol.as_rgb(img) if colour else protocol.as_gray(img)
    if job.crop is not None:
        return protocol.centre_crop(img, job.crop).copy()
    return protocol.centre_crop(img, multiple=32 if job.table == "sr" else 1).copy()


def sr_case(job: Job) -> Case:
    """SR: LR = Pillow Lanczos resize of the HR crop by ``1/scale``."""
    hr = read_truth(job, colour=True)
    scale = int(job.level)
    return Case(job, hr, protocol.lanczos_downscale(hr, scale), {"scale": scale}, {"scale": scale})


def inpaint_case(job: Job) -> Case:
    """Inpainting: a Bernoulli mask (True = missing) from the image's seed; missing pixels are 0."""
    gt = read_truth(job, colour=False)
    mask = protocol.bernoulli_mask(gt.shape, float(job.level), job.seed)
    return Case(job, gt, np.where(mask, 0.0, gt).astype(np.float32), {"mask": mask}, {"mask": mask})


def text_case(job: Job) -> Case:
    """Text inpainting: lines of text ``level`` px high (:func:`deepprior.masks.text_mask`, placed
    from the image's seed) over the colour image; the covered pixels (True = missing) are 0."""
    from deepprior.masks import text_mask

    gt = read_truth(job, colour=True)
    return painted_case(job, gt, text_mask(gt.shape[:2], size=int(job.level), rng=job.seed))


def painted_case(job: Job, gt: np.ndarray, mask: np.ndarray) -> Case:
    """``gt`` (H, W, C) with the pixels of ``mask`` (H, W; True = missing) painted 0."""
    return Case(job, gt, np.where(mask[..., None], 0.0, gt).astype(np.float32), {"mask": mask}, {"mask": mask})


def denoise_case(job: Job) -> Case:
    """Denoising: Gaussian noise of sigma/255 from the image's seed, clipped to [0, 1]."""
    gt = read_truth(job, colour=True)
    sigma = float(job.level)
    return Case(job, gt, protocol.add_noise(gt, sigma, job.seed), {}, {"sigma": sigma})


def jpeg_case(job: Job) -> Case:
    """JPEG artifacts: Pillow JPEG at the quality level."""
    gt = read_truth(job, colour=True)
    return Case(job, gt, protocol.jpeg(gt, int(job.level)), {}, {"quality": int(job.level)})


def bicubic(case: Case):
    return protocol.bicubic_upscale(case.degraded, case.params["scale"]), "Pillow BICUBIC"


def biharmonic(case: Case):
    from skimage.restoration import inpaint_biharmonic

    colour = {"channel_axis": -1} if case.degraded.ndim == 3 else {}
    return (inpaint_biharmonic(case.degraded.astype(np.float64), case.params["mask"], **colour),
            "skimage inpaint_biharmonic")


def telea(case: Case):
    import cv2

    radius = 3
    out = cv2.inpaint(protocol.to_uint8(case.degraded), case.params["mask"].astype(np.uint8) * 255,
                      radius, cv2.INPAINT_TELEA)
    return out.astype(np.float32) / 255.0, f"cv2.inpaint INPAINT_TELEA radius {radius} on 8-bit input"


def bm3d_rgb(case: Case):
    import bm3d

    sigma = case.params["sigma"]
    out = bm3d.bm3d_rgb(case.degraded, sigma_psd=sigma / 255.0)
    return out, "bm3d.bm3d_rgb(noisy, sigma_psd=sigma/255), sigma known"


NLMEANS_H_FACTORS = (0.4, 0.6, 0.8, 1.0, 1.2)  # h = hColor = factor * sigma (8-bit units)


def nlmeans(case: Case):
    """OpenCV NL-means with the best h of a small grid, chosen with the ground truth (an oracle).
    The returned time (by the caller) covers the whole grid; the notes say which h won."""
    import cv2

    noisy = protocol.to_uint8(case.degraded)
    best = None
    for factor in NLMEANS_H_FACTORS:
        h = factor * case.params["sigma"]
        out = cv2.fastNlMeansDenoisingColored(noisy, None, h, h, 7, 21).astype(np.float32) / 255.0
        score = protocol.psnr(out, case.truth)
        if best is None or score > best[0]:
            best = (score, h, out)
    grid = ", ".join(f"{f:g}" for f in NLMEANS_H_FACTORS)
    return best[2], (f"cv2.fastNlMeansDenoisingColored h=hColor={best[1]:g} (8-bit input), best of h = "
                     f"sigma x ({grid}) chosen WITH the ground truth (oracle); seconds cover the grid")


def degraded_input(case: Case):
    return case.degraded, "the degraded input itself"


@dataclass(frozen=True)
class TableDef:
    """How a table builds its cases, scores them, and which baselines it runs."""

    title: str
    task: str  # deepprior task
    make_case: Callable[[Job], Case]
    baselines: tuple[str, ...]
    score_psnr: Callable
    score_ssim: Callable
    metric: str


# a baseline: ``run(case) -> (image, notes)``; raises ImportError when its package is missing
BASELINES = {
    "bicubic": bicubic, "biharmonic": biharmonic, "telea": telea, "bm3d": bm3d_rgb, "nlmeans": nlmeans,
    "noisy-input": degraded_input, "jpeg-input": degraded_input,
}

TABLES = {
    "sr": TableDef("Super-resolution (x4, x8)", "sr", sr_case, ("bicubic",),
                   protocol.trimmed_y_psnr, protocol.trimmed_y_ssim,
                   "PSNR/SSIM on luminance Y (BT.601), data range 1, trimmed 4 px top/left and 5 px bottom/right; "
                   "LR = Pillow LANCZOS resize of the HR crop"),
    "inpaint": TableDef("Inpainting, 50 % missing pixels", "inpaint", inpaint_case, ("biharmonic", "telea"),
                        protocol.psnr, protocol.ssim,
                        "PSNR/SSIM on the whole (grayscale) image, data range 1; Bernoulli mask seeded per image"),
    "denoise": TableDef("Colour denoising (sigma = 25, 50)", "denoise", denoise_case,
                        ("noisy-input", "bm3d", "nlmeans"), protocol.psnr, protocol.ssim,
                        "PSNR over RGB, SSIM over RGB (channel_axis=-1), data range 1; Gaussian noise seeded "
                        "per image, clipped to [0, 1]"),
    "jpeg": TableDef("JPEG artifact removal (quality 10, 20)", "deblock", jpeg_case, ("jpeg-input",),
                     protocol.psnr, protocol.ssim,
                     "PSNR over RGB, SSIM over RGB (channel_axis=-1), data range 1; Pillow JPEG"),
    "text": TableDef("Inpainting of text", "inpaint", text_case, ("biharmonic", "telea"), protocol.psnr,
                     protocol.ssim, "PSNR over RGB, SSIM over RGB (channel_axis=-1), data range 1, whole image; "
                     "text mask (Pillow's default font) placed from the image's seed"),
}


def base_row(job: Job, ctx: Context, method: str) -> dict:
    """The columns every row of a job shares."""
    return {"table": job.table, "dataset": job.dataset, "image": job.image, "method": method,
            "tier": job.tier, "degradation": job.degradation, "crop": job.crop_label, "seed": job.seed,
            "torch": ctx.torch, "commit": ctx.commit}


def scored(row: dict, case: Case, image: np.ndarray, seconds: float) -> dict:
    """Fill in PSNR, SSIM, seconds and the paper's figure for this row."""
    table = TABLES[case.job.table]
    if image.shape != case.truth.shape:
        raise RuntimeError(f"{row['method']} returned shape {image.shape}, expected {case.truth.shape}")
    row.update(psnr=round(table.score_psnr(image, case.truth), 4), ssim=round(table.score_ssim(image, case.truth), 4),
               seconds=round(seconds, 2))
    figure = paper_figures.paper_psnr(case.job.table, case.job.degradation, row["method"], case.job.image)
    row["paper_psnr"] = "" if figure is None else figure
    return row


def run_deepprior(case: Case, ctx: Context) -> tuple[dict, dict]:
    """Restore a case with ``deepprior.run_task``; returns its row and its PSNR curve."""
    import deepprior

    job = case.job
    planned = fit_seconds(job, ctx.device)
    budget = None if ctx.time_cap is None or planned is None else ctx.time_cap * planned
    t0 = time.perf_counter()
    res = deepprior.run_task(TABLES[job.table].task, case.degraded, preset=job.preset, iters=job.iters,
                             rng=job.seed, device=ctx.device, reference=case.truth, time_budget=budget,
                             stop="fixed", **case.dip_kwargs)
    seconds = time.perf_counter() - t0
    fit = res.restoration.fit
    notes = [f"deepprior.run_task({TABLES[job.table].task!r}, preset={job.preset!r}, iters={job.iters}, stop='fixed')"]
    if fit.stop_reason != "iters":
        notes.append(f"STOPPED EARLY ({fit.stop_reason}, cap {budget:.0f} s) after {fit.steps} of {job.iters} steps"
                     if budget else f"stopped early ({fit.stop_reason}) after {fit.steps} of {job.iters} steps")
    if getattr(fit, "backtracks", 0):
        notes.append(f"{fit.backtracks} backtracks")
    row = base_row(job, ctx, "deepprior")
    row.update(preset=job.preset, iters=fit.steps, device=str(res.restoration.device), notes="; ".join(notes))
    return scored(row, case, np.asarray(res.image), seconds), curve_of(fit.history, job)


def curve_of(history: dict, job: Job, max_points: int = 500) -> dict:
    """The PSNR-vs-step curve of a fit against the ground truth, thinned to ``max_points``.

    ``psnr`` is the curve of the image the fit returns (the running average when the preset
    averages outputs, else the raw output); ``psnr_raw`` is always the raw output's.  For SR this
    is plain RGB PSNR of the HR output (not the trimmed-Y metric of the table).
    """
    steps = history.get("step", [])
    raw = history.get("psnr_reference", [])
    avg = history.get("psnr_average_reference") or None
    stride = max(1, math.ceil(len(steps) / max_points))
    keep = sorted(set(range(0, len(steps), stride)) | {len(steps) - 1}) if steps else []

    def pick(values):
        return [None if not math.isfinite(values[i]) else round(float(values[i]), 4) for i in keep]

    return {"image": job.image, "dataset": job.dataset, "degradation": job.degradation, "preset": job.preset,
            "step": [steps[i] for i in keep], "psnr": pick(avg or raw), "psnr_raw": pick(raw),
            "kind": "running average" if avg else "raw output",
            "metric": "RGB PSNR of the output vs the ground truth (SR: HR, untrimmed, not Y)"
            if job.table == "sr" else "PSNR vs the ground truth (same as the table)"}


def run_baseline(name: str, case: Case, ctx: Context) -> dict | None:
    """One baseline row, or None (with a printed note) when its package is missing."""
    t0 = time.perf_counter()
    try:
        image, notes = BASELINES[name](case)
    except ImportError as e:
        print(f"  note: baseline {name} skipped ({e}); install the bench extra: pip install -e '.[bench]'")
        return None
    seconds = time.perf_counter() - t0
    row = base_row(case.job, ctx, name)
    row.update(preset="", iters="", device="cpu", notes=notes)
    image = np.asarray(image, dtype=np.float32).reshape(case.truth.shape)
    return scored(row, case, image, seconds)


def run_job(job: Job, ctx: Context) -> Iterator[tuple[dict, dict | None]]:
    """All rows of one job: deepprior first (with its curve), then the baselines."""
    case = TABLES[job.table].make_case(job)
    yield run_deepprior(case, ctx)
    for name in TABLES[job.table].baselines:
        row = run_baseline(name, case, ctx)
        if row is not None:
            yield row, None


# --- outputs ------------------------------------------------------------------------------------


def git_commit(repo: Path = REPO) -> str:
    """``git rev-parse --short HEAD``, with ``-dirty`` when the tree (outside the results) has changes."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        status = git("status", "--porcelain", "--", ".", ":(exclude)benchmarks/results", ":(exclude)BENCHMARKS.md")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if status else "")


def format_row(row: dict) -> str:
    """One line of progress for a row."""
    extra = f", {row['iters']} steps" if row.get("iters") != "" else ""
    return (f"  {row['image']:>14s} {row['degradation']:>9s} {row['method']:>12s}: {row['psnr']:7.2f} dB, "
            f"SSIM {row['ssim']:.4f} ({row['seconds']:.1f} s{extra})")


def write_curves(path: Path, meta: dict, curves: dict) -> None:
    """The curves JSON: ``{"meta": ..., "curves": {"<image> <degradation>": curve}}``, one curve a line."""
    lines = [f" {json.dumps(key)}: {json.dumps(curve)}" for key, curve in curves.items()]
    path.write_text('{"meta": ' + json.dumps(meta, indent=1) + ',\n"curves": {\n' + ",\n".join(lines) + "\n}}\n")


def plot_curves(path: Path, curves: dict, title: str) -> None:
    """One PNG per table/tier: PSNR vs step, one panel per degradation, one line per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(dict.fromkeys(c["degradation"] for c in curves.values()))
    if not levels:
        return
    fig, axes = plt.subplots(1, len(levels), figsize=(5.5 * len(levels), 4), squeeze=False)
    for ax, level in zip(axes[0], levels):
        for c in curves.values():
            if c["degradation"] == level:
                ax.plot(c["step"], [np.nan if v is None else v for v in c["psnr"]],
                        label=f"{c['dataset']}/{c['image']}", lw=1.2)
        ax.set_title(f"{level} ({next(c['kind'] for c in curves.values() if c['degradation'] == level)})")
        ax.set_xlabel("step")
        ax.set_ylabel("PSNR vs ground truth (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_table(table: str, jobs: list[Job], ctx: Context, out: Path, meta: dict) -> list[dict]:
    """Run the jobs of one table, (re)writing ``<table>-<tier>.csv`` row by row, then the curves
    JSON and the plot (also after an interruption).  Returns the rows."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{table}-{ctx.tier}"
    rows, curves = [], {}
    meta = dict(meta, table=table, title=TABLES[table].title, metric=TABLES[table].metric,
                started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    t0 = time.perf_counter()
    print(f"\n== {table} ({TABLES[table].title}), tier {ctx.tier}: {len(jobs)} fits -> {stem}.csv")
    try:
        with open(f"{stem}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            for job in jobs:
                for row, curve in run_job(job, ctx):
                    writer.writerow(row)
                    f.flush()
                    rows.append(row)
                    print(format_row(row), flush=True)
                    if curve is not None:
                        curves[f"{job.image} {job.degradation}"] = curve
    finally:
        meta.update(finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    seconds=round(time.perf_counter() - t0, 1), complete=len(curves) == len(jobs))
        write_curves(Path(f"{stem}-curves.json"), meta, curves)
        plot_curves(Path(f"{stem}.png"), curves, f"{TABLES[table].title}: deepprior PSNR vs step, {ctx.tier} tier")
    print(f"   {table} done in {meta['seconds'] / 60:.1f} min")
    return rows


# --- command line -------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.paper", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", required=True, choices=[*TABLE_NAMES, "all"])
    ap.add_argument("--tier", default="quick", choices=["quick", "full"])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--images", nargs="+", metavar="NAME",
                    help="only these images (stem or dataset/stem, from the table's full list)")
    ap.add_argument("--levels", nargs="+", type=float, metavar="L",
                    help="only these degradation levels (SR scale, missing fraction, sigma, JPEG quality)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    ap.add_argument("--seed", type=int, default=0, help="base of the per-image seeds (default 0)")
    ap.add_argument("--time-cap", type=float, default=TIME_CAP,
                    help="quick tier on the CPU: stop a fit after this many times its planned seconds "
                         f"(0: no cap; default {TIME_CAP})")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    ap.add_argument("--plan", action="store_true", help="print the plan and the estimate, and exit")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # 1 image, 64 px, 5 steps
    return ap.parse_args(argv)


def resolve_device(device: str, threads: int | None = None) -> tuple[str, str]:
    """("cpu" or "cuda", torch version); sets torch's CPU threads when ``threads`` is given."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device, torch.__version__


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv=None) -> int:
    args = parse_args(argv)
    tier = "smoke" if args.smoke else args.tier
    out = args.out.resolve()
    if args.smoke and out == RESULTS.resolve():
        out = Path(tempfile.mkdtemp(prefix="deepprior-smoke-"))
    tables = list(TABLE_NAMES) if args.table == "all" else [args.table]
    device, torch_version = resolve_device(args.device, args.threads)
    commit = git_commit()
    plan = {t: make_jobs(t, tier, images=args.images, seed=args.seed, levels=args.levels) for t in tables}
    threads, load = torch_threads(), os.getloadavg()[0]
    for name in args.images or []:
        if not any(select_images(t, tier_specs(tier)[t], [name]) for t in tables):
            print(f"note: --images {name}: no such image in table(s) {', '.join(tables)}")

    print(f"plan: tier {tier}, device {device}, torch {torch_version} ({threads} CPU threads), "
          f"{os.cpu_count()} CPUs, commit {commit}")
    total = 0.0
    for t in tables:
        text, secs = describe_plan(t, plan[t], device)
        print("  " + text)
        total = None if total is None or secs is None else total + secs
    if total is not None:
        print(f"  estimated total ~{duration(total)} (cost model: *-small presets {CPU_STEPS_PER_S_128['small']:g} "
              f"steps/s, denoise-sure {CPU_STEPS_PER_S_128['sure']:g}, inpaint-blindspot "
              f"{CPU_STEPS_PER_S_128['blindspot']:g}, paper presets {CPU_STEPS_PER_S_128['paper']:g} "
              "steps/s at 128x128 on a 2-core CPU)")
    if tier == "full" and device == "cpu":
        print("  note: the full tier is meant for a GPU; on a CPU it takes many hours")
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"  WARNING: the machine is busy (load average {load:.1f}): CPU timings will be off, and two "
              "multi-threaded torch processes on few cores can run many times slower (fits may hit --time-cap)")
    if args.plan:
        return 0

    ctx = Context(tier, device, torch_version, commit,
                  args.time_cap if tier == "quick" and device == "cpu" and args.time_cap > 0 else None)
    meta = {"command": "python -m benchmarks.paper " + " ".join(sys.argv[1:] if argv is None else argv),
            "tier": tier, "device": device, "torch": torch_version, "commit": commit,
            "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "torch_threads": threads, "load_average_at_start": round(load, 2),
            "time_cap": ctx.time_cap}
    for t in tables:
        if not plan[t]:
            print(f"\n== {t}: no images selected, skipped")
            continue
        _, secs = describe_plan(t, plan[t], device)
        run_table(t, plan[t], ctx, out, dict(meta, estimate_seconds=None if secs is None else round(secs)))
    if args.table == "all":
        from benchmarks import report

        target = REPO / "BENCHMARKS.md" if out == RESULTS.resolve() else out / "BENCHMARKS.md"
        report.main(["--results", str(out), "--output", str(target)])
    print(f"\nresults in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
