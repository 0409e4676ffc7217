"""The ``deepprior`` command line.

Only argparse and the standard library are imported at start-up, so ``deepprior --help`` is
instant; torch and friends are imported when a command runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from .job import OUTPUT_SUFFIX, describe_error, is_oom  # standard library only: --help stays instant

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

TASK_HELP = {
    "denoise": "remove noise (Gaussian, sensor grain)",
    "deblock": "remove JPEG compression artifacts",
    "sr": "super-resolve: upscale x2, x4 or x8",
    "inpaint": "fill masked pixels (text, scratches, holes, missing pixels)",
}


class CLIError(Exception):
    """A one-line error for the user."""


# ----------------------------------------------------------------------------------------------
# Argument parsing
# ----------------------------------------------------------------------------------------------


def _task_parser(sub, task):
    p = sub.add_parser(task, help=TASK_HELP[task], description=TASK_HELP[task])
    p.add_argument("input", help="image file (PNG, JPEG, TIFF, WebP, BMP; 8 or 16 bits), folder of images, "
                   "or quoted glob ('photos/*.jpg')")
    p.add_argument("-o", "--output", help="output file, or folder (a name without an extension; for several "
                   "inputs, always) where each result is named <stem>_"
                   f"{OUTPUT_SUFFIX[task].format(scale='S')}.png (default: beside each input)")
    if task == "sr":
        p.add_argument("--scale", type=int, default=4, help="upscaling factor: 2, 4 or 8 (default 4)")
    if task == "denoise":
        p.add_argument("--sigma", type=float, metavar="S", help="the noise's standard deviation on the 0..255 scale, "
                       "if known (e.g. 25): it picks the default preset (denoise-sure-fast up to 30, denoise-paper above), "
                       "the SURE presets fit with it, and the automatic stop waits until the fit reaches it "
                       "(default: estimated from the image)")
    if task == "inpaint":
        p.add_argument("--mask", help="mask file (white/nonzero = pixels to fill), or a folder of masks named "
                       "like the inputs (default: <stem>_mask.* beside each input, else its transparent pixels)")
        p.add_argument("--mask-keeps", action="store_true", help="the mask marks the known pixels instead "
                       "(the paper's data uses this convention)")
        p.add_argument("--mask-dilate", type=int, default=0, metavar="N", help="grow the mask by N pixels")
    p.add_argument("--preset", help="recipe name (see `deepprior presets`); default: " + {
        "denoise": "denoise-sure-fast where the noise level is up to 30, denoise-paper above",
        "inpaint": "inpaint-blindspot for scattered pixels, text and fine scratches (every pixel to fill within "
                   "3 px of a known one), inpaint-blindspot-blocks within 4 px (64 px text), inpaint-text-paper "
                   "for holes and thick strokes",
        "sr": "sr-x4-fast for x2 and x4, sr-x8-paper for x8",
        "deblock": "deblock-fast (photos larger than 128 px in 128 px tiles)",
    }.get(task, "the task's paper preset"))
    p.add_argument("--iters", type=int, help="number of steps (overrides the preset)")
    p.add_argument("--lr", type=float, help="Adam learning rate (overrides the preset)")
    p.add_argument("--fits", type=int, metavar="N", help="average N independent fits (seeds) of the preset: steadier "
                   "and a little better, N times the time (overrides the preset; denoise-sure-pair has 2)")
    p.add_argument("--seed", type=int, help="random seed (default: a fresh one, recorded in the sidecar; "
                   "0 for every image of a folder, so that reruns can resume)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--reference", metavar="GT", help="ground-truth image, to show PSNR against it (several "
                   "inputs: a folder of ground truths named like them)")
    p.add_argument("--save-every", type=int, metavar="K", help="save a snapshot every K steps")
    p.add_argument("--plot", action="store_true", help="also write <output stem>_plot.png: curves and input | result")
    p.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop after this long, keep the result so far")
    p.add_argument("--stop", default="auto", choices=["auto", "fixed", "wmv", "emv"],
                   help="when to stop: auto = the task's rule measured in BENCHMARKS.md (default); fixed = the "
                   "preset's steps; wmv / emv = when the windowed / exponential variance of the outputs stops "
                   "falling.  With a rule, --iters is the cap")
    p.add_argument("--stop-window", type=int, metavar="W", help="auto/wmv/emv: window in steps (wmv default 100; emv: "
                   "its weight is 2/W, default 0.1, i.e. W = 20)")
    p.add_argument("--stop-patience", type=int, metavar="P",
                   help="auto/wmv/emv: steps without a new minimum (wmv/emv default 100)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"],
                   help="network arithmetic (default: the preset's): bf16 = bfloat16 autocast, about 1.5-2x faster "
                   "where the hardware has it (CUDA, AVX512-BF16/AMX CPUs); auto = bf16 there, else fp32")
    p.add_argument("--tile", type=int, metavar="N", help="restore overlapping NxN tiles (input pixels) one by one "
                   "and blend them (photos too big for memory); 0: the whole photo in one fit (default: the preset's, "
                   "deblock-fast's and inpaint-text-fast's 128 for bigger photos, else whole)")
    p.add_argument("--tile-overlap", type=int, default=32, metavar="N", help="pixels shared by neighbouring tiles "
                   "(default 32)")
    p.add_argument("--no-memory-check", action="store_true",
                   help="start even when the estimated memory exceeds what is free")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse outputs larger than N pixels (default 4096*4096)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (a folder: redo every image, "
                   "not only those without a complete result made with the same settings)")
    p.add_argument("--checkpoint-every", type=int, metavar="K", help="save the fit's state every K steps to "
                   "<output stem>.ckpt.pt (removed once the result is complete)")
    p.add_argument("--resume", action="store_true", help="continue interrupted fits from their checkpoints "
                   "(same result as an uninterrupted run of the seed)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads per fit (default: torch's default; "
                   "with --ray: --ray-cpus)")
    r = p.add_argument_group("Ray cluster (pip install 'deepprior[ray]')")
    r.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="one Ray task per image, on the cluster "
                   "at ADDRESS (default: the one started on this machine, or a new local one); put it after INPUT")
    r.add_argument("--ray-cpus", type=int, default=1, metavar="N", help="CPUs (and threads) per task when the "
                   "cluster has no GPU (default 1); with GPUs each task gets one GPU")
    p.set_defaults(func=cmd_task, task=task)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepprior",
        description="Deep Image Prior: restore one image by fitting a randomly initialised network to it. "
        "No training data, no pretrained weights.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for task in TASK_HELP:
        _task_parser(sub, task)

    d = sub.add_parser("degrade", help="make a degraded test input from a clean image",
                       description="Degrade a clean image, reproducibly (--seed).")
    dsub = d.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, helptext in [
        ("noise", "add Gaussian noise"),
        ("jpeg", "compress with JPEG"),
        ("downscale", "downscale with the super-resolution kernel (Lanczos2)"),
        ("mask", "write a mask and the image with the masked pixels blanked"),
    ]:
        k = dsub.add_parser(kind, help=helptext, description=helptext)
        k.add_argument("input")
        k.add_argument("-o", "--output", required=True, help="output image (PNG recommended)")
        k.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        k.add_argument("--overwrite", action="store_true")
        if kind == "noise":
            k.add_argument("--sigma", type=float, default=25.0, help="noise std in 0..255 units (default 25)")
        elif kind == "jpeg":
            k.add_argument("--quality", type=int, default=10, help="JPEG quality 1..95 (default 10)")
        elif kind == "downscale":
            k.add_argument("--scale", type=int, default=4, help="factor 2, 4 or 8 (default 4)")
        else:
            k.add_argument("--kind", dest="mask_kind", default="text", choices=["text", "pixels", "hole", "strokes"])
            k.add_argument("--fraction", type=float, default=None,
                           help="pixels: share missing (default 0.5); hole: its share of the area, up to 0.78 "
                           "(default 0.1)")
            k.add_argument("--text", default="deep image prior", help="text for --kind text")
            k.add_argument("--text-size", type=int, default=None, metavar="PX",
                           help="--kind text: letter height in pixels (default: an eighth of the smaller side)")
        k.set_defaults(func=cmd_degrade)

    pr = sub.add_parser("presets", help="list the presets, or show one", description="List or show presets.")
    pr.add_argument("name", nargs="?")
    pr.set_defaults(func=cmd_presets)

    dm = sub.add_parser("demo", help="restore a noisy copy of a bundled photo (about ten seconds on a 2-core CPU)")
    dm.add_argument("-o", "--output", default="deepprior-demo", help="output folder (default ./deepprior-demo)")
    dm.add_argument("--device", default="auto")
    dm.add_argument("--iters", type=int, help="steps (default: the demo preset's, denoise-sure-fast's 200)")
    dm.add_argument("--quiet", action="store_true")
    dm.set_defaults(func=cmd_demo)

    ap = sub.add_parser("app", help="start the web app: upload a photo, paint what to remove, watch it restore",
                        description="A local web app; open the printed URL in a browser.")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 = any free port)")
    ap.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    ap.set_defaults(func=cmd_app)
    return parser


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _check_outputs(inp: Path, paths: list[Path], overwrite: bool, others: dict[str, Path | None] | None = None) -> None:
    """Before any work: the outputs ``paths`` have a format and a folder they can be written to,
    and overwrite neither the input ``inp`` nor the ``others`` read (e.g. ``{"mask": path}``), nor
    (without ``overwrite``) any file."""
    from .io import IMAGE_SUFFIXES
    from .job import output_problem

    out = paths[0]
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise CLIError(f"{out}: unsupported output format; use one of {', '.join(IMAGE_SUFFIXES)}")
    for p in paths:
        if _same_file(inp, p):
            raise CLIError(f"{p}: the output would overwrite the input; choose another -o")
        for kind, other in (others or {}).items():
            if other is not None and _same_file(other, p):
                raise CLIError(f"{p}: the output would overwrite the {kind}; choose another -o")
        problem = output_problem(p)
        if problem:
            raise CLIError(problem)
    if not overwrite:
        for p in paths:
            if p.exists():
                raise CLIError(f"{p} exists; pass --overwrite to replace it")


#: for a long fit's hint: a preset that takes minutes where this one takes hours (at some cost in
#: quality, measured in BENCHMARKS.md)
QUICKER = {"inpaint-text-paper": ("inpaint-blindspot-strokes", "strokes")}


class _Progress:
    """Step-end callback: a tqdm bar with loss and PSNRs, refreshed every few steps; over all the fits
    of a tiled run or of a preset with several ``fits`` (``tiles``: how many fits in all, ``what``
    they are; a fit's steps restart at 1 for each)."""

    #: a fit expected to run longer than this (seconds) without --time-budget gets a hint about it
    LONG_FIT = 1800

    def __init__(self, iters: int, enabled: bool, every: int = 5, rule: bool = True, tiles: int = 1,
                 hint: bool = False, quicker: tuple[str, str] | None = None, what: str = "tiles"):
        self.bar = None
        self.hint = hint  # a long fit says that --time-budget exists (a command that has it, without it given)
        self.quicker = quicker  # ... and names a quicker preset (name, what for), if there is one
        self.iters = iters
        self.enabled = enabled
        self.every = every
        self.rule = rule  # a stopping rule may end the fit before iters
        self.tiles = tiles
        self.what = what
        from .tiles import StepTotals

        self.totals = StepTotals()

    def __call__(self, step, state):
        done, _ = self.totals(step, state.elapsed)
        if self.enabled and self.bar is None:  # at the first step: after the header and the estimate
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.iters * self.tiles, unit="step", dynamic_ncols=True, file=sys.stderr)
        if self.bar is not None and step == 3 and state.iters > 20 and self.totals.steps == 0:
            per = state.elapsed / step
            total = per * state.iters * self.tiles
            when = f"{total / 60:.1f} min" if total < 5400 else f"{total / 3600:.1f} h"
            steps = f"{state.iters} steps" + (f" in each of {self.tiles} {self.what}" if self.tiles > 1 else "")
            self.bar.write(f"time: ~{per:.2f} s/step at the pace of the first steps: "
                           + (f"at most ~{when} for {steps} (automatic stopping usually ends sooner)"
                              if self.rule else f"~{when} for {steps}"), file=sys.stderr)
            if total > self.LONG_FIT and self.hint:
                self.bar.write("hint: --time-budget SECONDS stops in time and keeps the result so far; "
                               "Ctrl-C stops now and writes the result so far"
                               + (f"; --preset {self.quicker[0]} is a quicker look at {self.quicker[1]}"
                                  if self.quicker else ""),
                               file=sys.stderr)
        if self.bar is None or (step % self.every and step != state.iters):
            return False
        post = {"loss": f"{state.loss:.2e}", "psnr(y)": f"{state.psnr_measurement:.2f}"}
        ref = state.psnr_average_reference if state.average is not None else state.psnr_reference
        if ref is not None:
            post["psnr(gt)"] = f"{ref:.2f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(done - self.bar.n)
        return False

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------


def _task_settings(args, *, several: bool):
    """The :class:`deepprior.job.Settings` of a task command (checks the numbers first)."""
    scale = getattr(args, "scale", None)
    if args.task == "sr" and scale not in (2, 4, 8):
        raise CLIError(f"--scale must be 2, 4 or 8, got {scale}")
    for flag, value, least in [("--save-every", args.save_every, 1), ("--iters", args.iters, 1),
                               ("--fits", args.fits, 1), ("--max-pixels", args.max_pixels, 1),
                               ("--checkpoint-every", args.checkpoint_every, 1), ("--threads", args.threads, 1),
                               ("--ray-cpus", args.ray_cpus, 1), ("--stop-window", args.stop_window, 2),
                               ("--stop-patience", args.stop_patience, 1), ("--tile", args.tile, 0),
                               ("--tile-overlap", args.tile_overlap, 0)]:
        if value is not None and value < least:
            raise CLIError(f"{flag} must be {'a positive number' if least else '>= 0'}, got {value}")

    for flag, value in [("--lr", args.lr), ("--time-budget", args.time_budget)]:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise CLIError(f"{flag} must be a positive number, got {value}")
    sigma = getattr(args, "sigma", None)
    if sigma is not None and not (math.isfinite(sigma) and 0 < sigma < 255):
        raise CLIError(f"--sigma must be a noise level between 0 and 255 (e.g. 25), got {sigma}")
    if args.tile and args.tile_overlap >= args.tile:
        raise CLIError(f"--tile-overlap ({args.tile_overlap}) must be smaller than --tile ({args.tile})")
    if args.tile and (args.checkpoint_every or args.resume):
        raise CLIError("--tile cannot be combined with --checkpoint-every or --resume (checkpoints are per fit)")

    from .job import Settings
    from .pipeline import MAX_PIXELS
    from .presets import get_preset

    fits = args.fits or (get_preset(args.preset).fits if args.preset else 1)
    if fits > 1 and (args.checkpoint_every or args.resume):
        raise CLIError(f"{'--fits' if args.fits else 'preset ' + args.preset} averages {fits} fits, which cannot be "
                       "checkpointed or resumed: drop --checkpoint-every/--resume, or add --fits 1")

    inpaint = args.task == "inpaint"
    return Settings(
        task=args.task,
        # None: the task's default, chosen per image (denoising's by its noise level)
        preset=get_preset(args.preset) if args.preset else None,
        # None means "keep the preset's value"
        changes={k: v for k, v in {"iters": args.iters, "lr": args.lr, "precision": args.precision,
                                   "fits": args.fits}.items() if v is not None},
        # several images: one fixed seed, so that a rerun recognises its finished images
        seed=args.seed if args.seed is not None or not several else 0,
        scale=scale,
        mask_keeps=args.mask_keeps if inpaint else None,
        mask_dilate=args.mask_dilate if inpaint else None,
        device=args.device,
        time_budget=args.time_budget,
        max_pixels=args.max_pixels or MAX_PIXELS,
        save_every=args.save_every,
        plot=args.plot,
        checkpoint_every=args.checkpoint_every or 0,
        resume=args.resume,
        overwrite=args.overwrite,
        threads=args.threads,
        stop=args.stop,
        stop_window=args.stop_window,
        stop_patience=args.stop_patience,
        sigma=sigma,
        check_memory=not args.no_memory_check,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
    )


def cmd_task(args) -> int:
    from .batch import collect

    if collect(args.input) is None and args.ray is None:
        return _run_one_file(args)
    return _run_many(args)


def _run_one_file(args) -> int:
    """One image: errors are raised (one line, by main()), the fit has its own progress bar."""
    from .batch import make_job
    from .job import read_sidecar

    job = make_job(Path(args.input), task=args.task, scale=getattr(args, "scale", None), output=args.output,
                   mask=getattr(args, "mask", None), reference=args.reference)
    # --resume may replace the partial result of an interrupted run: one its sidecar marks
    # incomplete, or (killed between the image and its sidecar) one with a checkpoint beside it
    meta = read_sidecar(job.sidecar)
    partial = args.resume and (not meta.get("complete") if meta is not None else job.checkpoint.is_file())
    _check_outputs(job.input, [job.output, job.sidecar] + ([job.plot] if args.plot else []),
                   args.overwrite or partial, {"mask": job.mask, "reference": job.reference})
    settings = _task_settings(args, several=False)

    from .job import compute, load, pixels_to_fill, save, tiling

    loaded = load(job, settings)
    preset = loaded.preset
    stop = settings.stop_config(preset)
    rule = stop["rule"] != "fixed" and not (stop["rule"] == "auto" and stop["auto"] is None)
    from .tiles import tile_count

    tile, overlap = tiling(loaded, settings)
    tiles = tile_count(*loaded.image.shape[:2], tile, overlap, pixels_to_fill(loaded, settings)) if tile else 1
    progress = _Progress(preset.iters, enabled=not args.quiet, rule=rule, tiles=tiles * preset.fits,
                         hint=args.time_budget is None, quicker=QUICKER.get(preset.name),
                         what="tiles" if preset.fits == 1 else "fits" if tiles == 1 else "tile fits")
    if not args.quiet:
        why = ""
        if args.task == "denoise" and settings.preset is None:  # picked by the noise level: say which
            from .api import noise_level

            level = settings.sigma if settings.sigma is not None else noise_level(loaded.image)
            level = "unknown" if level is None else f"{level:.0f} (given)" if settings.sigma else f"~{level * 255:.0f}"
            why = f" for noise level {level}"
        elif args.task == "inpaint" and settings.preset is None:  # picked by the mask
            why = {"inpaint-blindspot": " for scattered pixels or thin text",
                   "inpaint-blindspot-blocks": " for text or strokes within 4 px of known pixels"}.get(
                preset.name, " for holes or thick strokes")
        print(f"deepprior {args.task}: {job.input} -> {job.output} (preset {preset.name}{why}, "
              f"{preset.iters} steps" + (f" in each of {tiles} tiles of {tile} px" if tiles > 1 else "")
              + (f", {preset.fits} fits averaged" if preset.fits > 1 else "")
              + (f", mask {job.mask}" if job.mask else "") + ")", file=sys.stderr)
    def announce(cost):
        if not args.quiet:
            print(f"estimate: {cost.describe(preset.iters)}" + (f", for each of the {tiles} tiles" if tiles > 1 else "")
                  + (f", for each of the {preset.fits} fits" if preset.fits > 1 else ""), file=sys.stderr)

    try:
        computed = compute(job, loaded, settings, callbacks=[progress], announce=announce)
    finally:
        progress.close()
    meta = save(job, loaded, computed, settings)
    if not args.quiet or computed.interrupted:
        msg = f"wrote {job.output} and {job.sidecar.name}"
        if "psnr_reference" in meta["final"]:
            msg += f" (PSNR {meta['final']['psnr_reference']:.2f} dB against the reference)"
        if meta["resumed_from"]:
            msg += f", resumed from step {meta['resumed_from']}"
        print(("interrupted: " if computed.interrupted else "") + msg, file=sys.stderr)
    return EXIT_INTERRUPTED if computed.interrupted else 0


def _run_many(args) -> int:
    """A folder or a glob (or anything with --ray): one failure does not stop the others."""
    from .batch import plan, run

    jobs = plan(args.input, task=args.task, scale=getattr(args, "scale", None), output=args.output,
                mask=getattr(args, "mask", None), reference=args.reference)
    settings = _task_settings(args, several=True)
    executor = None
    if args.ray is not None:
        try:
            from functools import partial

            from .distributed import compute_on_ray
        except ModuleNotFoundError as e:
            if e.name != "ray":
                raise
            raise CLIError("--ray needs Ray: pip install 'deepprior[ray]'") from None
        executor = partial(compute_on_ray, address=args.ray or None, cpus_per_task=args.ray_cpus)
    return run(jobs, settings, executor, quiet=args.quiet).exit_code


def cmd_degrade(args) -> int:
    from .io import read_image, write_image

    inp, out = Path(args.input), Path(args.output)
    extra = [out.with_name(out.stem + "_mask.png")] if args.kind == "mask" else []
    _check_outputs(inp, [out] + extra, args.overwrite)
    image, info = read_image(inp)
    if args.kind == "noise":
        from .degrade import add_noise

        result = add_noise(image, args.sigma, rng=args.seed)
    elif args.kind == "jpeg":
        from .degrade import jpeg_compress

        result = jpeg_compress(image, args.quality)
    elif args.kind == "downscale":
        from .degrade import downscale

        if args.scale not in (2, 4, 8):
            raise CLIError(f"--scale must be 2, 4 or 8, got {args.scale}")
        h, w = image.shape[:2]
        if h % args.scale or w % args.scale:
            print(f"deepprior: note: cropped {w}x{h} to {w - w % args.scale}x{h - h % args.scale} "
                  f"(a multiple of {args.scale})", file=sys.stderr)
        result = downscale(image, args.scale)
    else:
        from . import masks
        from .degrade import apply_mask

        shape = image.shape[:2]
        fraction = args.fraction if args.fraction is not None else 0.1 if args.mask_kind == "hole" else 0.5
        most = math.pi / 4 if args.mask_kind == "hole" else 1.0  # an ellipse fills at most pi/4 of its box
        if args.mask_kind in ("pixels", "hole") and not 0 < fraction < most:
            raise CLIError(f"--fraction must be between 0 and {most:.2f} for --kind {args.mask_kind}, got {fraction}")
        if args.mask_kind == "pixels":
            fill = masks.random_pixels_mask(shape, fraction, rng=args.seed)
            value = 0.0
        elif args.mask_kind == "hole":
            fill = masks.hole_mask(shape, fraction=fraction, rng=args.seed)
            value = 0.0
        elif args.mask_kind == "strokes":
            fill = masks.strokes_mask(shape, rng=args.seed)
            value = 1.0
        else:
            fill = masks.text_mask(shape, args.text, size=args.text_size, rng=args.seed)
            value = 1.0
        write_image(extra[0], fill.astype("float32"), bits=8)
        result = apply_mask(image, fill, value)
    write_image(out, result, info)
    print(f"wrote {out}" + (f" and {extra[0]}" if extra else ""), file=sys.stderr)
    return 0


def cmd_presets(args) -> int:
    from .presets import PRESETS, get_preset

    if args.name:
        p = get_preset(args.name)
        print(json.dumps(p.to_dict(), indent=2))
        return 0
    from .presets import SURE_MAX_SIGMA, default_preset

    width = max(len(n) for n in PRESETS)
    for name, p in PRESETS.items():
        steps = f"{p.iters} steps" + (f" x{p.fits}" if p.fits > 1 else "")
        print(f"{name:<{width}}  {p.task:<8} {steps:>12}  {p.description}")
    print(f"\ndefaults: denoise: {default_preset('denoise', sigma=SURE_MAX_SIGMA)} "
          f"({default_preset('denoise', sigma=SURE_MAX_SIGMA, device='cuda')} on a CUDA GPU) up to noise level "
          f"{SURE_MAX_SIGMA * 255:.0f} (given with --sigma or estimated), {default_preset('denoise')} above; "
          f"deblock: {default_preset('deblock')}; sr: {default_preset('sr', scale=4)} (x2, x4), "
          f"{default_preset('sr', scale=8)} (x8); inpaint: {default_preset('inpaint', reach=1)} for "
          f"scattered pixels, text and fine scratches, {default_preset('inpaint', reach=4)} for 64 px text, "
          f"{default_preset('inpaint')} for holes and thick strokes")
    return 0


#: what `deepprior demo` runs: denoising's default at the demo's noise level (sigma 25)
DEMO_PRESET = "denoise-sure-fast"


def cmd_demo(args) -> int:
    if args.iters is not None and args.iters < 1:
        raise CLIError(f"--iters must be a positive number, got {args.iters}")
    import numpy as np
    from skimage import data
    from skimage.transform import resize

    from .api import run_task
    from .degrade import add_noise
    from .fitting import psnr
    from .io import write_image
    from .plot import plot_fit
    from .presets import get_preset

    import torch

    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    clean = data.astronaut()[30:230, 140:340].astype(np.float32) / 255.0  # the face, 200x200
    clean = resize(clean, (128, 128), anti_aliasing=True).astype(np.float32)
    noisy = add_noise(clean, 25, rng=0)
    write_image(folder / "clean.png", clean)
    write_image(folder / "noisy.png", noisy)
    # DIP-SURE: Gaussian noise of a moderate level is its domain (the noise level is estimated, as
    # for a user's photo); on this crop 29.79 dB in 200 steps (8 s with make demo on a 2-core CPU),
    # against denoise-sure's 29.72 in 700 (28 s) and denoise-small's 28.5 in 800
    progress = _Progress(args.iters or get_preset(DEMO_PRESET).iters, enabled=not args.quiet, rule=False)
    if not args.quiet:
        print("deepprior demo: denoising a 128x128 crop of scikit-image's astronaut with noise sigma=25 "
              f"(preset {DEMO_PRESET})", file=sys.stderr)
    try:
        res = run_task("denoise", noisy, preset=DEMO_PRESET, iters=args.iters, rng=0, device=args.device,
                       callback=progress, reference=clean)
    finally:
        progress.close()
    out = res.image
    write_image(folder / "restored.png", out)
    plot_fit(folder / "plot.png", res.restoration.fit.history, noisy, out, title="deepprior demo: denoising")
    p_in = psnr(torch.from_numpy(noisy), torch.from_numpy(clean))
    p_out = psnr(torch.from_numpy(out), torch.from_numpy(clean))
    print(f"PSNR noisy {p_in:.2f} dB -> restored {p_out:.2f} dB in {res.restoration.fit.seconds:.0f} s "
          f"(noise level estimated as {res.restoration.sigma * 255:.1f})")
    print(f"results in {folder}/: clean.png, noisy.png, restored.png, plot.png")
    return 0


def cmd_app(args) -> int:
    from .app.server import serve

    try:
        return serve(args.host, args.port, args.device)
    except OSError as e:  # e.g. the port is taken
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None


# ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"deepprior {__version__}")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("deepprior: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CLIError as e:
        print(f"deepprior: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # one line for the user; the details for developers with DEEPPRIOR_DEBUG=1
        if os.environ.get("DEEPPRIOR_DEBUG"):
            raise
        if is_oom(e) or isinstance(e, (ValueError, TypeError, RuntimeError, OSError)):
            print(f"deepprior: error: {describe_error(e)}", file=sys.stderr)
        else:  # a bug: still one line, and how to see more
            print(f"deepprior: internal error: {describe_error(e)} (DEEPPRIOR_DEBUG=1 shows the traceback; "
                  "please report it)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
