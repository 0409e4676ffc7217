"""The ``deepprior`` command line.

Only argparse and the standard library are imported at start-up, so ``deepprior --help`` is
instant; torch and friends are imported when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

TASK_HELP = {
    "denoise": "remove noise (Gaussian, sensor grain)",
    "deblock": "remove JPEG compression artifacts",
    "sr": "super-resolve: upscale x2, x4 or x8",
    "inpaint": "fill masked pixels (text, scratches, holes, missing pixels)",
}
OUTPUT_SUFFIX = {"denoise": "denoised", "deblock": "deblocked", "sr": "x{scale}", "inpaint": "inpainted"}


class CLIError(Exception):
    """A one-line error for the user."""


# ----------------------------------------------------------------------------------------------
# Argument parsing
# ----------------------------------------------------------------------------------------------


def _task_parser(sub, task):
    p = sub.add_parser(task, help=TASK_HELP[task], description=TASK_HELP[task])
    p.add_argument("input", help="image file (PNG, JPEG, TIFF, WebP, BMP; 8 or 16 bits)")
    p.add_argument("-o", "--output", help="output file or folder (default: beside the input, "
                   f"named <stem>_{OUTPUT_SUFFIX[task].format(scale='S')}.png)")
    if task == "sr":
        p.add_argument("--scale", type=int, default=4, help="upscaling factor: 2, 4 or 8 (default 4)")
    if task == "inpaint":
        p.add_argument("--mask", help="mask file: white/nonzero = pixels to fill (default: the input's "
                       "transparent pixels)")
        p.add_argument("--mask-keeps", action="store_true", help="the mask marks the known pixels instead "
                       "(the paper's data uses this convention)")
        p.add_argument("--mask-dilate", type=int, default=0, metavar="N", help="grow the mask by N pixels")
    p.add_argument("--preset", help="recipe name (see `deepprior presets`); default: the task's paper preset")
    p.add_argument("--iters", type=int, help="number of steps (overrides the preset)")
    p.add_argument("--lr", type=float, help="Adam learning rate (overrides the preset)")
    p.add_argument("--seed", type=int, help="random seed (default: a fresh one, recorded in the sidecar)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--reference", metavar="GT", help="ground-truth image, to show PSNR against it")
    p.add_argument("--save-every", type=int, metavar="K", help="save a snapshot every K steps")
    p.add_argument("--plot", action="store_true", help="also write <output>_plot.png: curves and input | result")
    p.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop after this long, keep the result so far")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse outputs larger than N pixels (default 4096*4096)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
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
            k.add_argument("--fraction", type=float, default=0.5, help="pixels: share missing; hole: area share")
            k.add_argument("--text", default="deep image prior", help="text for --kind text")
        k.set_defaults(func=cmd_degrade)

    pr = sub.add_parser("presets", help="list the presets, or show one", description="List or show presets.")
    pr.add_argument("name", nargs="?")
    pr.set_defaults(func=cmd_presets)

    dm = sub.add_parser("demo", help="restore a noisy copy of a bundled photo (about a minute on a CPU)")
    dm.add_argument("-o", "--output", default="deepprior-demo", help="output folder (default ./deepprior-demo)")
    dm.add_argument("--device", default="auto")
    dm.add_argument("--iters", type=int, help="steps (default: the demo preset's 800)")
    dm.add_argument("--quiet", action="store_true")
    dm.set_defaults(func=cmd_demo)
    return parser


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _resolve_output(inp: Path, output: str | None, task: str, scale: int | None) -> Path:
    name = f"{inp.stem}_{OUTPUT_SUFFIX[task].format(scale=scale)}.png"
    if output is None:
        return inp.with_name(name)
    out = Path(output)
    if out.is_dir() or output.endswith(("/", os.sep)):
        return out / name
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _check_outputs(inp: Path, paths: list[Path], overwrite: bool) -> None:
    from .io import IMAGE_SUFFIXES

    out = paths[0]
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise CLIError(f"{out}: unsupported output format; use one of {', '.join(IMAGE_SUFFIXES)}")
    for p in paths:
        if _same_file(inp, p):
            raise CLIError(f"{p}: the output would overwrite the input; choose another -o")
    if not overwrite:
        for p in paths:
            if p.exists():
                raise CLIError(f"{p} exists; pass --overwrite to replace it")


def _versions() -> dict:
    import platform

    import torch

    from . import __version__

    return {
        "deepprior": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


def _write_json(path: Path, data: dict) -> None:
    from .io import atomic_write_bytes

    text = json.dumps(data, indent=2, default=str)
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text + "\n"))


def _is_oom(e: BaseException) -> bool:
    msg = str(e).lower()
    return type(e).__name__ == "OutOfMemoryError" or "out of memory" in msg or "can't allocate memory" in msg


class _Progress:
    """Step-end callback: a tqdm bar with loss and PSNRs, refreshed every few steps."""

    def __init__(self, iters: int, enabled: bool, every: int = 5):
        self.bar = None
        self.every = every
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=iters, unit="step", dynamic_ncols=True, file=sys.stderr)

    def __call__(self, step, state):
        if self.bar is None or (step % self.every and step != state.iters):
            return False
        post = {"loss": f"{state.loss:.2e}", "psnr(y)": f"{state.psnr_measurement:.2f}"}
        ref = state.psnr_average_reference if state.average is not None else state.psnr_reference
        if ref is not None:
            post["psnr(gt)"] = f"{ref:.2f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(step - self.bar.n)
        return False

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _Snapshots:
    def __init__(self, folder: Path, every: int, info):
        self.folder, self.every, self.info = folder, every, info

    def __call__(self, step, state):
        if step % self.every == 0:
            from .io import write_image

            img = state.result[0].clamp(0, 1).cpu().numpy().transpose(1, 2, 0)
            write_image(self.folder / f"step_{step:06d}.png", img, bits=8)
        return False


def _curve(history: dict, points: int = 500) -> dict:
    """The fit's curves, subsampled to at most ``points`` steps (always keeping the last)."""
    steps = history.get("step", [])
    if not steps:
        return {}
    every = max(1, -(-len(steps) // points))
    idx = list(range(every - 1, len(steps), every))
    if idx[-1] != len(steps) - 1:
        idx.append(len(steps) - 1)
    return {k: [round(v[i], 5) if v[i] is not None else None for i in idx] for k, v in history.items() if v}



# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------


def cmd_task(args) -> int:
    inp = Path(args.input)
    scale = getattr(args, "scale", None)
    out = _resolve_output(inp, args.output, args.task, scale)
    sidecar = out.with_suffix(".json")
    plot_path = out.with_name(out.stem + "_plot.png")
    planned = [out, sidecar] + ([plot_path] if args.plot else [])
    _check_outputs(inp, planned, args.overwrite)
    if args.save_every is not None and args.save_every <= 0:
        raise CLIError("--save-every must be a positive number of steps")
    if args.iters is not None and args.iters < 0:
        raise CLIError("--iters must be >= 0")

    import numpy as np

    from .api import run_task
    from .io import read_image, write_image
    from .pipeline import MAX_PIXELS
    from .presets import default_preset, get_preset

    image, info = read_image(inp)
    mask = None
    if args.task == "inpaint" and args.mask:
        mask_arr, _ = read_image(args.mask)
        mask = mask_arr
    reference = None
    if args.reference:
        reference, _ = read_image(args.reference)
        c = image.shape[2] - (1 if image.shape[2] in (2, 4) else 0)
        reference = reference[:, :, :3] if reference.shape[2] >= 3 else reference[:, :, :1]
        if c == 3 and reference.shape[2] == 1:
            reference = np.repeat(reference, 3, axis=2)
        elif c == 1 and reference.shape[2] == 3:
            reference = reference.mean(axis=2, keepdims=True)
        s = scale if args.task == "sr" else 1
        want = (image.shape[0] * s, image.shape[1] * s)
        if reference.shape[:2] != want:
            raise CLIError(
                f"the reference is {reference.shape[1]}x{reference.shape[0]} but the result will be "
                f"{want[1]}x{want[0]} (WxH)"
            )
    preset = get_preset(args.preset or default_preset(args.task, scale=scale))
    if args.task == "sr" and scale not in (2, 4, 8):
        raise CLIError(f"--scale must be 2, 4 or 8, got {scale}")
    iters = args.iters if args.iters is not None else preset.iters

    callbacks = []
    progress = _Progress(iters, enabled=not args.quiet)
    callbacks.append(progress)
    if args.save_every:
        callbacks.append(_Snapshots(out.with_name(out.stem + "_steps"), args.save_every, info))
    if not args.quiet:
        print(f"deepprior {args.task}: {inp} -> {out} (preset {preset.name}, {iters} steps)", file=sys.stderr)
    try:
        res = run_task(
            args.task,
            image,
            mask=mask,
            scale=scale,
            preset=preset,
            iters=args.iters,
            lr=args.lr,
            rng=args.seed,
            device=args.device,
            callback=callbacks,
            reference=reference,
            mask_keeps=getattr(args, "mask_keeps", False),
            mask_dilate=getattr(args, "mask_dilate", 0),
            time_budget=args.time_budget,
            max_pixels=args.max_pixels or MAX_PIXELS,
        )
    finally:
        progress.close()
    r = res.restoration
    result = res.image
    write_image(out, result, info)
    hist = r.fit.history
    last = {k: v[-1] for k, v in hist.items() if v and k != "step"}
    final = {"loss": last.get("loss"), "psnr_measurement": last.get("psnr_measurement")}
    if reference is not None:
        from .fitting import psnr
        import torch

        final["psnr_reference"] = psnr(torch.from_numpy(np.asarray(result)[:, :, : reference.shape[2]]),
                                       torch.from_numpy(reference))
    meta = {
        "complete": not r.fit.interrupted,
        "interrupted": r.fit.interrupted,
        "task": args.task,
        "input": str(inp),
        "output": str(out),
        "mask": args.mask if args.task == "inpaint" else None,
        "mask_keeps": getattr(args, "mask_keeps", None),
        "mask_dilate": getattr(args, "mask_dilate", None),
        "scale": scale,
        "input_size": [image.shape[1], image.shape[0]],
        "output_size": [result.shape[1], result.shape[0]],
        "bits": info.bits,
        "preset": r.preset.to_dict(),
        "seed": r.seed,
        "device": r.device,
        "padded_size": list(r.padded_size),
        "iterations": r.fit.steps,
        "stop_reason": r.fit.stop_reason,
        "backtracks": r.fit.backtracks,
        "seconds": round(r.fit.seconds, 3),
        "final": final,
        "curve": _curve(hist),
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_json(sidecar, meta)
    if args.plot:
        try:
            from .plot import plot_fit

            plot_fit(plot_path, hist, image, result, title=f"{args.task} ({r.preset.name})")
        except Exception as e:  # the result is already safe on disk
            print(f"deepprior: warning: could not write the plot: {e}", file=sys.stderr)
    if not args.quiet or r.fit.interrupted:
        msg = f"wrote {out} and {sidecar.name}"
        if "psnr_reference" in final:
            msg += f" (PSNR {final['psnr_reference']:.2f} dB against the reference)"
        print(("interrupted: " if r.fit.interrupted else "") + msg, file=sys.stderr)
    return EXIT_INTERRUPTED if r.fit.interrupted else 0


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
        if args.mask_kind == "pixels":
            fill = masks.random_pixels_mask(shape, args.fraction, rng=args.seed)
            value = 0.0
        elif args.mask_kind == "hole":
            fill = masks.hole_mask(shape, fraction=args.fraction if args.fraction < 0.5 else 0.1, rng=args.seed)
            value = 0.0
        elif args.mask_kind == "strokes":
            fill = masks.strokes_mask(shape, rng=args.seed)
            value = 1.0
        else:
            fill = masks.text_mask(shape, args.text, rng=args.seed)
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
    width = max(len(n) for n in PRESETS)
    for name, p in PRESETS.items():
        print(f"{name:<{width}}  {p.task:<8} {p.iters:>6} steps  {p.description}")
    return 0


def cmd_demo(args) -> int:
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
    progress = _Progress(args.iters or get_preset("denoise-small").iters, enabled=not args.quiet)
    if not args.quiet:
        print("deepprior demo: denoising a 128x128 crop of scikit-image's astronaut with noise sigma=25 "
              "(preset denoise-small)", file=sys.stderr)
    try:
        res = run_task("denoise", noisy, preset="denoise-small", iters=args.iters, rng=0, device=args.device,
                       callback=progress, reference=clean)
    finally:
        progress.close()
    out = res.image
    write_image(folder / "restored.png", out)
    plot_fit(folder / "plot.png", res.restoration.fit.history, noisy, out, title="deepprior demo: denoising")
    p_in = psnr(torch.from_numpy(noisy), torch.from_numpy(clean))
    p_out = psnr(torch.from_numpy(out), torch.from_numpy(clean))
    print(f"PSNR noisy {p_in:.2f} dB -> restored {p_out:.2f} dB in {res.restoration.fit.seconds:.0f} s")
    print(f"results in {folder}/: noisy.png, restored.png, plot.png")
    return 0


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
        if _is_oom(e):
            print("deepprior: error: out of memory; try a smaller image, a smaller preset (e.g. --preset "
                  "denoise-small), or --device cpu if the GPU is the one that ran out", file=sys.stderr)
        elif isinstance(e, (ValueError, TypeError, RuntimeError, OSError)):
            print(f"deepprior: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        else:
            raise
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
