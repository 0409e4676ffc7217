"""The GPU checks, in one command sized for a short loan of a GPU machine.

    python -m benchmarks.gpu [--image F16_GT.png] [--out DIR] [--parts smoke speed startup target profile]
                             [--ref-steps 3000] [--ref-seconds 150] [--ref-from gpu-target.json] [--candidates ...]
    python -m benchmarks.gpu --report [--out DIR] [--before OLD_DIR]   # DIR's results as markdown

The results of each part go to ``DIR/gpu-<part>.json`` (default ``benchmarks/results/gpu``) as soon
as it ends, so a run cut short keeps what it finished; ``--report`` writes
``benchmarks/results/gpu.md`` from them (included in BENCHMARKS.md).  Parts:

smoke
    Every task through the Python API on ``cuda`` on a 37x31 image (SR: 19x16 input, x2), a few
    steps, fixed and automatic stopping: the output is finite, in [0, 1], on the GPU when a tensor
    went in, and of the right size.  Then the CLI on a PNG with ``--device cuda``, and the
    CUDA-graph fit against the eager one (:func:`graph_matches_eager`).
speed
    ``python -m benchmarks.speed --device cuda`` at 256 and 512, for the paper's network (eager,
    fused Adam, channels-last, CUDA graphs) and the small one (eager, channels-last, CUDA graphs).
startup
    A one-step CLI run on a 512 px image, timed from process start, beside the bare cost of
    Python, torch, the CUDA context and deepprior's imports; where the rest goes (cProfile).
target
    The speed issue's GPU target: a 512x512 denoise (the image, sigma 25, seed 0) at the paper
    preset's quality in under 10 s including start-up.  ``denoise-paper`` runs ``--ref-steps`` steps
    (or ``--ref-seconds``) and gives its best-iterate PSNR of the returned (averaged) image, found
    with the ground truth; each candidate preset then runs in this process until its returned
    image is within 0.2 dB of that (seconds and steps to it, start-up excluded); finally the CLI
    runs as a user would (``python -m deepprior denoise noisy.png --device cuda --preset P``: the
    default preset with the automatic stop; each candidate with the automatic stop, and fixed at
    the step count the in-process run needed), timed from process start to the written file, and
    the PSNR of the written PNG is measured.
profile
    Not run by default: ``torch.profiler`` over 20 steps of ``denoise-sure-fast`` (one fit of the
    default on CUDA, ``denoise-sure-pair``) on the target's noisy image, with CUDA graphs (as the CLI
    fits) and without; the kernels' table of each.

Scratch images go to a temporary folder.  ``--device cpu`` with a small ``--size`` tries the script
out on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.protocol import psnr

REPO = Path(__file__).resolve().parents[1]
F16 = REPO.parent / "shared" / "data" / "paper" / "denoising" / "F16_GT.png"
MARGIN_DB = 0.2


def _write(out: Path, part: str, payload) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"gpu-{part}.json").write_text(json.dumps(payload, indent=2) + "\n")


def smoke(out: Path, device: str) -> dict:
    import numpy as np
    import torch

    import deepprior
    from deepprior.io import write_image

    rng = np.random.default_rng(0)
    img = rng.random((31, 37, 3)).astype(np.float32)
    rows = []
    small = {"denoise": "denoise-small", "deblock": "deblock-small", "sr": "sr-x4-small", "inpaint": "inpaint-small",
             "denoise-sure": "denoise-sure"}
    for task, kw in [("denoise", {}), ("deblock", {}), ("sr", {"scale": 2}),
                     ("inpaint", {"mask": rng.random((31, 37)) < 0.5}), ("denoise-sure", {"sigma": 0.1})]:
        src = img[:16, :19] if task == "sr" else img
        for stop in ("fixed", "auto"):
            for as_tensor in (False, True):
                x = torch.from_numpy(src).permute(2, 0, 1).contiguous() if as_tensor else src
                if as_tensor:
                    x = x.to(device)
                t0 = time.perf_counter()
                try:
                    r = deepprior.run_task(task.split("-")[0], x, preset=small[task],
                                           iters=30, rng=0, device=device, stop=stop, **kw).image
                    a = r.detach().cpu().numpy() if isinstance(r, torch.Tensor) else np.asarray(r)
                    where = str(r.device) if isinstance(r, torch.Tensor) else "numpy"
                    ok = bool(np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
                              and where.startswith(device if as_tensor else "numpy"))
                    rows.append({"task": task, "stop": stop, "tensor": as_tensor, "ok": ok, "shape": list(a.shape),
                                 "where": where, "seconds": round(time.perf_counter() - t0, 2)})
                except Exception as e:  # record and go on: the point is to see every failure at once
                    rows.append({"task": task, "stop": stop, "tensor": as_tensor, "ok": False,
                                 "error": f"{type(e).__name__}: {e}"})
    # each task's default preset (what a user gets), a CUDA tensor in, a few steps
    for task, kw in [("denoise", {}), ("deblock", {}), ("sr", {"scale": 2}), ("sr", {"scale": 4}),
                     ("inpaint", {"mask": rng.random((31, 37)) < 0.5})]:
        src = img[:16, :19] if task == "sr" else img
        x = torch.from_numpy(src).permute(2, 0, 1).contiguous().to(device)
        row = {"task": task, "preset": "default", **({"scale": kw["scale"]} if "scale" in kw else {})}
        try:
            res = deepprior.run_task(task, x, iters=20, rng=0, device=device, stop="fixed", **kw)
            a = res.image.detach().cpu().numpy()
            row.update(ok=bool(np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
                               and str(res.image.device).startswith(device)),
                       preset_run=res.restoration.preset.name, shape=list(a.shape))
        except Exception as e:
            row.update(ok=False, error=f"{type(e).__name__}: {e}")
        rows.append(row)
    tmp = Path(tempfile.mkdtemp(prefix="deepprior-gpu-smoke-"))
    write_image(tmp / "in.png", img)
    cmd = [sys.executable, "-m", "deepprior", "denoise", str(tmp / "in.png"), "-o", str(tmp / "cli.png"),
           "--device", device, "--preset", "denoise-small", "--iters", "40", "--quiet", "--seed", "0", "--overwrite"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    rows.append({"task": "cli denoise", "ok": p.returncode == 0 and (tmp / "cli.png").exists(),
                 "error": p.stderr.strip().splitlines()[-1:] if p.returncode else None})
    if device == "cuda":
        rows.append(graph_matches_eager())
    return {"rows": rows, "all_ok": all(r["ok"] for r in rows)}


def graph_matches_eager(size: int = 64) -> dict:
    """``fit(cuda_graph=True)`` against the eager loop, same seed and settings.

    ``ok`` as ``tests/test_fitting.py``'s check: the first step's loss (the forward alone) within
    1e-5 relative, the 3 steps' losses within 3e-3, the images within RMSE 0.1 (two eager fits
    differ by up to 2e-3 and 0.05 here: ``python -m benchmarks.gpu_graphs``).  Over 60 steps the
    two drift apart as two eager fits do (cuDNN's non-deterministic backward, amplified by Adam):
    that difference is reported, with the one between two eager fits beside it, not judged.
    """
    import torch

    from deepprior.fitting import fit, make_input
    from deepprior.forward import Identity
    from deepprior.networks import build_network
    from deepprior.presets import get_preset

    p = get_preset("denoise-small")

    def run(graph: bool, steps: int, ema):
        gen = torch.Generator().manual_seed(0)
        z = make_input("noise", p.input_depth, size, size, scale=0.1, generator=gen).cuda()
        y = torch.rand(1, 3, size, size, generator=gen).cuda()
        torch.manual_seed(0)
        net = build_network(p.network, p.input_depth, 3).cuda()
        r = fit(net, z, Identity(), y, iters=steps, ema=ema, generator=torch.Generator("cuda").manual_seed(1),
                cuda_graph=graph)
        return r, "forward" not in net.__dict__

    (e3, _), (g3, restored) = run(False, 3, None), run(True, 3, None)
    rels = [abs(a - b) / a for a, b in zip(e3.history["loss"], g3.history["loss"])]
    loss_rel = max(rels)
    image3 = float((e3.image - g3.image).abs().max())
    rmse3 = float((e3.image - g3.image).pow(2).mean().sqrt())
    long = [run(g, 60, 0.99)[0].image for g in (False, False, True)]
    return {"task": "fit cuda_graph vs eager", "ok": rels[0] <= 1e-5 and loss_rel < 3e-3 and rmse3 < 0.1 and restored,
            "three_steps_loss_rel_diff": loss_rel, "three_steps_image_max_diff": image3,
            "three_steps_image_rmse": rmse3,
            "sixty_steps_max_diff_graph_vs_eager": float((long[0] - long[2]).abs().max()),
            "sixty_steps_max_diff_eager_vs_eager": float((long[0] - long[1]).abs().max()),
            "forward_restored": restored}


def _resolve(candidate: str):
    """``NAME`` (a preset), ``NAME@bf16`` (in bf16), ``NAME@notf32`` (fp32 convolutions without
    TF32, cuDNN's default on Ampere and later; in process only), ``NAME@tf32`` (a SURE fit with TF32
    kept, as before fitting._NoTF32; in process only), ``NAME@cudnnbench`` (cuDNN's autotuner on:
    ``torch.backends.cudnn.benchmark``, which deepprior leaves off; in process only) or
    ``search:NAME`` (a denoising candidate of :mod:`benchmarks.fast_search`, e.g.
    ``search:sure-b8-90``; in process only)."""
    from deepprior.presets import get_preset

    candidate = candidate.removesuffix("@notf32").removesuffix("@tf32").removesuffix("@cudnnbench")
    if candidate.startswith("search:"):
        from benchmarks.fast_search import resolve

        return resolve("denoise", candidate)
    name, _, precision = candidate.partition("@")
    return get_preset(name).replace(**({"precision": precision} if precision else {}))


def _sure_keeps_tf32():
    """Within: a SURE fit keeps cuDNN's TF32, as deepprior did before ``fitting._NoTF32`` (this
    benchmark's ``@tf32`` candidates, to measure what that switch changes)."""
    from deepprior import fitting

    @contextlib.contextmanager
    def keep():
        original = fitting._NoTF32.__init__
        fitting._NoTF32.__init__ = lambda self, active: original(self, False)
        try:
            yield
        finally:
            fitting._NoTF32.__init__ = original

    return keep()


def _fit_curve(preset: str, noisy, clean, steps: int, seconds: float, device: str, target: float | None = None,
               stop_at_target: bool = True) -> dict:
    """Run ``preset`` (see :func:`_resolve`) on the GPU; PSNR of the returned image per step.
    ``steps`` None: the preset's own.  A preset with several ``fits`` has a curve per fit (one
    after the other): its result, and whether it reached ``target``, is its returned average's."""
    import torch

    from deepprior.pipeline import restore

    p = _resolve(preset)
    p = p.replace(iters=steps) if steps else p
    strict = torch.backends.cudnn.flags(enabled=True, allow_tf32=False) if preset.endswith("@notf32") \
        else _sure_keeps_tf32() if preset.endswith("@tf32") \
        else torch.backends.cudnn.flags(enabled=True, benchmark=True) if preset.endswith("@cudnnbench") \
        else contextlib.nullcontext()
    curve: list[tuple[int, float, float]] = []

    def record(step, state):
        db = state.psnr_average_reference if state.average is not None else state.psnr_reference
        curve.append((step, round(state.elapsed, 3), round(db, 3)))
        return (stop_at_target and target is not None and db >= target) or state.elapsed > seconds

    def tensor(a):
        return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()

    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with strict:
        r = restore(tensor(noisy), p, rng=0, device=device, reference=tensor(clean), callback=record, stop=None)
    wall = time.perf_counter() - t0
    returned = round(psnr(r.image[0].permute(1, 2, 0).cpu().numpy(), clean), 3)
    if p.fits > 1:  # the average exists only at the end
        reached = target is not None and returned >= target
        return {"preset": preset, "fits": p.fits, "steps_run": len(curve), "wall_seconds": round(wall, 2),
                "best_db": returned, "best_step": len(curve), "best_seconds": round(wall, 3), "final_db": returned,
                "returned_db": returned, "fit_final_db": [c[2] for c in curve if c[0] == p.iters],
                "target_db": target, "reached": reached, "step_at_target": len(curve) if reached else None,
                "seconds_at_target": round(wall, 3) if reached else None, "curve_every_10": curve[::10]}
    best = max(curve, key=lambda c: c[2])
    hit = next((c for c in curve if target is not None and c[2] >= target), None)
    return {"preset": preset, "steps_run": len(curve), "wall_seconds": round(wall, 2),
            "best_db": best[2], "best_step": best[0], "best_seconds": best[1], "final_db": curve[-1][2],
            "returned_db": returned, "target_db": target, "reached": hit is not None,
            "step_at_target": hit[0] if hit else None, "seconds_at_target": hit[1] if hit else None,
            "curve_every_10": curve[::10]}


def _cli(noisy_png: Path, clean, out_png: Path, preset: str, extra: list[str], device: str,
         sigma: bool = True) -> dict:
    """``deepprior denoise`` as a user runs it, timed from process start; ``sigma``: pass
    ``--sigma 25``, else the CLI estimates the noise level."""
    from deepprior.io import read_image

    name, _, precision = preset.partition("@")
    cmd = [sys.executable, "-m", "deepprior", "denoise", str(noisy_png), "-o", str(out_png), "--device", device,
           "--seed", "0", "--quiet", "--overwrite", *(["--sigma", "25"] if sigma else []), *extra]
    if name != "default":  # "default": no --preset, as a user runs it (at sigma 25: denoise-sure)
        cmd += ["--preset", name]
    if precision:
        cmd += ["--precision", precision]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    row = {"preset": preset, "args": extra, "sigma_given": sigma, "wall_seconds_from_process_start": round(wall, 2),
           "rc": p.returncode}
    if p.returncode == 0:
        got, _ = read_image(out_png)
        row["psnr_db"] = round(psnr(got[:, :, :3], clean), 3)
        side = out_png.with_suffix(".json")
        if side.exists():
            meta = json.loads(side.read_text())
            row["sidecar_fit"] = {k: meta.get(k) for k in ("iterations", "stop", "stopped", "seconds") if k in meta}
            row["preset_run"] = meta["preset"]["name"]  # "default": the one the CLI picked
    else:
        row["error"] = p.stderr.strip().splitlines()[-3:]
    return row


def target(out: Path, image: Path, ref_steps: int, ref_seconds: float, candidates: list[str], device: str,
           size: int = 512, cli_paper: bool = True, run_through: bool = False, cli: bool = True,
           ref_from: Path | None = None) -> dict:
    import numpy as np

    from deepprior import fitting
    from deepprior.degrade import add_noise
    from deepprior.io import read_image, write_image
    from deepprior.presets import PRESETS, default_preset

    clean, _ = read_image(image)
    clean = np.ascontiguousarray(clean[:size, :size, :3], dtype=np.float32)
    noisy = np.asarray(add_noise(clean, 25, rng=0), dtype=np.float32)
    tmp = Path(tempfile.mkdtemp(prefix="deepprior-gpu-target-"))
    noisy_png = tmp / "noisy.png"
    write_image(noisy_png, noisy)
    result = {"image": image.name, "size": list(clean.shape), "sigma": 25, "noisy_db": round(psnr(noisy, clean), 3),
              "run_through": run_through, "sure_without_tf32": True,  # fitting._NoTF32, since 2026-11-27
              "sure_tf32_min_epsilon": fitting.SURE_TF32_MIN_EPSILON,
              "denoise_sure_epsilon": PRESETS["denoise-sure"].sure_epsilon}
    if ref_from is not None:  # an earlier run's reference (the same image, size and seed): ~1 min saved
        earlier = json.loads(ref_from.read_text())
        if (earlier["image"], earlier["size"]) != (result["image"], result["size"]):
            raise SystemExit(f"--ref-from {ref_from}: its reference is of {earlier['image']} {earlier['size']}")
        ref = dict(earlier["reference"], reused_from=str(ref_from))
    else:
        ref = _fit_curve("denoise-paper", noisy, clean, ref_steps, ref_seconds, device)
    result["reference"] = ref
    bar = ref["best_db"] - MARGIN_DB
    result["bar_db"] = bar
    print(f"reference denoise-paper: best {ref['best_db']:.2f} dB at step {ref['best_step']} "
          f"({ref['best_seconds']:.1f} s); bar {bar:.2f} dB", flush=True)
    _write(out, "target", result)
    result["candidates"] = []
    for c in candidates:
        if run_through or _resolve(c).fits > 1:  # the preset's own steps, past the bar: what a user gets
            # (several fits: the average exists only at the end)
            r = _fit_curve(c, noisy, clean, None, 60.0, device, target=bar, stop_at_target=False)
        else:
            r = _fit_curve(c, noisy, clean, 5000, 30.0, device, target=bar)
        result["candidates"].append(r)
        print(f"  {c}: " + (f"bar at step {r['step_at_target']} in {r['seconds_at_target']:.2f} s" if r["reached"]
                            else f"not reached (best {r['best_db']:.2f})")
              + f"; {r['final_db']:.2f} dB at step {r['steps_run']}, {r['wall_seconds']:.1f} s", flush=True)
        _write(out, "target", result)
    result["cli"] = []
    # what a user gets by default (denoise-sure-fast at sigma 25), and the paper preset with the automatic stop
    # (the in-process fits above estimate the noise level, as the CLI does without --sigma)
    plan = [("default", ["--time-budget", "60"], False), ("default", ["--time-budget", "60"], True)]
    if cli_paper:
        plan.append(("denoise-paper", ["--stop", "auto", "--time-budget", "60"], True))
    for c in candidates:
        if c.startswith("search:") or c.endswith(("@notf32", "@tf32", "@cudnnbench")):
            continue
        fit = next(r for r in result["candidates"] if r["preset"] == c)
        if _resolve(c).loss != "sure":  # SURE's fits stop at a fixed count ("auto" runs to --iters)
            plan.append((c, ["--stop", "auto", "--iters", "5000", "--time-budget", "30"], True))
        elif c != default_preset("denoise", sigma=25 / 255, device=device):  # another SURE recipe as a user
            # runs it: its own steps (the default's are above)
            plan.append((c, ["--time-budget", "60"], True))
        if fit["reached"] and _resolve(c).fits == 1:  # (several fits: --iters is each one's)
            plan.append((c, ["--stop", "fixed", "--iters", str(fit["step_at_target"])], False))
    for c, extra, sigma in plan if cli else []:
        row = _cli(noisy_png, clean, tmp / f"{c.replace('@', '_')}.png", c, extra, device, sigma)
        result["cli"].append(row)
        print(f"  CLI {c} {' '.join(extra)}{' --sigma 25' if sigma else ''}: {row.get('psnr_db')} dB, "
              f"{row['wall_seconds_from_process_start']} s from process start", flush=True)
        _write(out, "target", result)
    result["bytecode"] = _bytecode()  # the CLI runs' start-up depends on it
    return result


def speed(out: Path) -> dict:
    rcs = []
    for preset, variants in [("denoise-paper", ["eager", "fused_adam", "channels_last", "cuda_graph"]),
                             ("denoise-small", ["eager", "channels_last", "cuda_graph"])]:
        cmd = [sys.executable, "-m", "benchmarks.speed", "--device", "cuda", "--sizes", "256", "512",
               "--preset", preset,
               "--steps", "30", "--warmup", "5", "--variants", *variants,
               "--out", str(out / f"speed-cuda-{preset}.json"), "--markdown", str(out / f"speed-cuda-{preset}.md")]
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        print(p.stdout[-2500:], p.stderr[-1500:], flush=True)
        rcs.append(p.returncode)
    return {"rc": rcs}


def startup(out: Path, device: str) -> dict:
    """Where a one-step CLI run's time goes (cProfile, cumulative), on a 512 px image."""
    import numpy as np

    from deepprior.io import write_image

    tmp = Path(tempfile.mkdtemp(prefix="deepprior-gpu-startup-"))
    write_image(tmp / "in.png", np.random.default_rng(0).random((512, 512, 3)).astype(np.float32))
    base = ["-m", "deepprior", "denoise", str(tmp / "in.png"), "-o", str(tmp / "o.png"), "--device", device,
            "--preset", "denoise-small", "--iters", "1", "--quiet", "--overwrite", "--sigma", "25"]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *base], check=True)
    wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch; torch.zeros(1, device='cuda' if " + repr(device) +
                    " == 'cuda' else 'cpu'); import deepprior.pipeline"], check=True)
    bare = time.perf_counter() - t0
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(tmp / "p.prof"), *base], check=True)
    import io
    import pstats

    buf = io.StringIO()
    pstats.Stats(str(tmp / "p.prof"), stream=buf).sort_stats("cumulative").print_stats(40)
    text = "\n".join(line[:150] for line in buf.getvalue().replace(f"{REPO}/", "").splitlines()
                     if "/" in line or "{" in line)
    print(f"CLI one step: {wall:.2f} s from process start; python + torch + CUDA context + imports: {bare:.2f} s")
    print(text[:6000], flush=True)
    return {"cli_one_step_seconds": round(wall, 2), "bare_import_and_context_seconds": round(bare, 2),
            "bytecode": _bytecode(), "profile_top": text}


def _bytecode() -> dict:
    """Whether Python could cache bytecode: without it every process compiles torch's sources anew
    (about 3.5 s of a CLI run on an H100 machine whose environment sets PYTHONDONTWRITEBYTECODE)."""
    import os

    return {"dont_write_bytecode": sys.flags.dont_write_bytecode, "pycache_prefix": sys.pycache_prefix,
            "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE")}


def _bytecode_cached(run: Path) -> bool | None:
    """Whether a run's processes could cache bytecode (from its target's or start-up's JSON), or None."""
    for name in ("gpu-target.json", "gpu-startup.json"):
        f = run / name
        b = json.loads(f.read_text()).get("bytecode") if f.exists() else None
        if b:
            return bool(b.get("pycache_prefix") or not b["dont_write_bytecode"])
    return None


def profile(out: Path, image: Path, device: str, size: int, preset: str = "denoise-sure-fast", warmup: int = 30,
            steps: int = 20) -> dict:
    """Where a step of ``preset``'s fit goes on the device: ``torch.profiler`` over ``steps`` steps
    after ``warmup``, the fit as the CLI runs it (CUDA graphs on) and eager (graphs off, every
    kernel launched from Python), on the target's noisy image (sigma 25 given).  The tables go to
    ``DIR/gpu-profile-<mode>.txt``; the part's JSON has each mode's milliseconds per step and its
    top kernels."""
    import statistics

    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity

    import deepprior
    from deepprior import pipeline
    from deepprior.degrade import add_noise
    from deepprior.io import read_image

    clean, _ = read_image(image)
    clean = np.ascontiguousarray(clean[:size, :size, :3], dtype=np.float32)
    noisy = np.asarray(add_noise(clean, 25, rng=0), dtype=np.float32)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    sort = "cuda_time_total" if device.startswith("cuda") else "cpu_time_total"
    modes = {}
    for mode in ("graph", "eager"):
        prof = torch.profiler.profile(activities=activities)
        times = []

        def watch(step, state, prof=prof, times=times):
            times.append(state.elapsed)
            if step == warmup:
                prof.__enter__()
            elif step == warmup + steps:
                prof.__exit__(None, None, None)

        original = pipeline.fit
        if mode == "eager":  # the pipeline's fit with CUDA graphs off
            pipeline.fit = lambda *a, **kw: original(*a, **{**kw, "cuda_graph": False})
        try:
            deepprior.run_task("denoise", noisy, preset=preset, iters=warmup + steps, rng=0, device=device,
                               sigma=25 / 255, stop="fixed", callback=watch)
        finally:
            pipeline.fit = original
        table = prof.key_averages().table(sort_by=sort, row_limit=30)
        (out / f"gpu-profile-{mode}.txt").write_text(table + "\n")
        per_step = [b - a for a, b in zip(times[warmup:], times[warmup + 1:])]
        events = sorted(prof.key_averages(), key=lambda e: getattr(e, "device_time_total", 0) or e.cpu_time_total,
                        reverse=True)[:15]
        modes[mode] = {"ms_per_step_median": round(1000 * statistics.median(per_step), 3),
                       "top": [{"name": e.key[:120], "calls": e.count,
                                "device_ms": round(getattr(e, "device_time_total", 0) / 1000, 3),
                                "cpu_ms": round(e.cpu_time_total / 1000, 3)} for e in events]}
        print(f"profile {mode}: {modes[mode]['ms_per_step_median']} ms/step (median of {len(per_step)})", flush=True)
    return {"preset": preset, "size": size, "warmup": warmup, "steps": steps, "device": device, "modes": modes}


def report(out: Path, before: list[Path] = ()) -> str:
    """The markdown section of the results in ``out`` (``before``: earlier runs, for their target rows)."""
    from benchmarks import speed as speed_bench

    def load(d: Path, name: str):
        f = d / name
        return json.loads(f.read_text()) if f.exists() else None

    lines = ["Reproduce on a CUDA machine: `python -m benchmarks.gpu` (smoke, speed, start-up, the 512 px target; "
             "about 7 minutes on an H100; writes `benchmarks/results/gpu/`), then "
             "`python -m benchmarks.gpu --report"
             + "".join(f" --before {b.resolve().relative_to(REPO)}" if b.resolve().is_relative_to(REPO) else ""
                       for b in before[:1])
             + "".join(f" {b.resolve().relative_to(REPO)}" if b.resolve().is_relative_to(REPO) else ""
                       for b in before[1:])
             + "` for this section.", ""]
    ran = sorted({r["command"] for r in (load(out, f"gpu-{p}.json") for p in ("smoke", "target", "startup", "speed"))
                  if r and "command" in r})
    if ran:
        lines += ["This run: " + "; ".join(f"`{c}`" for c in ran) + ".", ""]
    smoke_res = load(out, "gpu-smoke.json")
    if smoke_res:
        bad = [r for r in smoke_res["rows"] if not r["ok"]]
        lines += [f"**Smoke** ({len(smoke_res['rows'])} runs: every task through the API, numpy and CUDA tensors, "
                  f"fixed and automatic stop, and the CLI with `--device cuda`): "
                  + ("all ok." if not bad else f"{len(bad)} failed: " + "; ".join(
                      f"{r['task']}: {r.get('error') or {k: v for k, v in r.items() if k not in ('task', 'ok')}}"
                      for r in bad)), ""]
    graph_row = next((r for r in (smoke_res or {}).get("rows", []) if r["task"] == "fit cuda_graph vs eager"), None)
    if graph_row and not graph_row["ok"] and graph_row.get("three_steps_image_rmse", 1) < 0.1:
        lines += ["(That run judged the graph check with an earlier bound, image RMSE 0.01 after 3 steps. Two eager "
                  "fits of one seed differ by as much on a GPU (`python -m benchmarks.gpu_graphs`, below); the "
                  f"check's bound is now RMSE 0.1, with the losses within 3e-3; this run's were "
                  f"{graph_row['three_steps_image_rmse']:.3f} and {graph_row['three_steps_loss_rel_diff']:.1e}.)", ""]
    graphs = load(out, "graphs.json")
    if graphs:
        three = {n: max(v[n]["rmse"] for k, v in graphs["cases"].items() if "iters=3" in k)
                 for n in ("graph_vs_eager", "eager_vs_eager")}
        first = max(v[n]["loss_rel"][0] for v in graphs["cases"].values() for n in v)
        lines += [f"**CUDA graph against eager** (`python -m benchmarks.gpu_graphs`, {graphs['device']}): over the "
                  f"first step (the forward alone) every case's loss agrees to {first:.1e} relative; after 3 steps "
                  f"the graphed fit's image is within RMSE {three['graph_vs_eager']:.3f} of an eager fit's, and a "
                  f"second eager fit within {three['eager_vs_eager']:.3f} (cuDNN's and the atomic backward kernels' "
                  "rounding, amplified by Adam's first steps).", ""]
    lines += ["Convolutions run in TF32 (cuDNN's default) while the sgemm yardstick is plain fp32, so % of peak "
              "is against the slower yardstick.", ""]
    for f in sorted(out.glob("speed-cuda*.json")):
        res = json.loads(f.read_text())
        lines += [speed_bench.markdown(res, res["tolerance"]).replace("### Speed:", "#### Speed:"), ""]
    start = load(out, "gpu-startup.json")
    if start:
        lines += [f"**Start-up**: `deepprior denoise` of a 512x512 PNG with `--iters 1` takes "
                  f"{start['cli_one_step_seconds']:.1f} s from process start to the written file; Python, torch, "
                  "the CUDA context and deepprior's imports alone take "
                  f"{start['bare_import_and_context_seconds']:.1f} s"
                  + (" (bytecode cached, as after `pip install`)." if start.get("bytecode", {}).get("pycache_prefix")
                     or not start.get("bytecode", {"dont_write_bytecode": 1})["dont_write_bytecode"]
                     else " (no bytecode cache: every process compiled torch's Python sources)."), ""]
    lines += _target_summary(out, before)
    profs = [(label, d, p) for label, d in (("this run", out), *((b.name, b) for b in before))
             for p in [load(d, "gpu-profile.json")] if p]
    if profs:
        prof = profs[0][2]
        lines += [f"**Profile** (`--parts profile`: `torch.profiler` over {prof['steps']} steps of "
                  f"`{prof['preset']}` at {prof['size']} px after {prof['warmup']}; tables in `gpu-profile-*.txt`), "
                  "milliseconds per step with CUDA graphs (as the CLI fits) and eager: "
                  + "; ".join(f"{label} ({_device_of(d) or 'card not recorded'}) "
                              f"{p['modes']['graph']['ms_per_step_median']:.1f} and "
                              f"{p['modes']['eager']['ms_per_step_median']:.1f}" for label, d, p in profs) + ".", ""]
    seeds = next((e for e in (load(d, "ens.json") for d in (out, *before)) if e), None)
    if seeds:
        singles = [r["db"] for r in seeds["single"]]
        lines += [f"**Fits averaged** (`{seeds['command']}`, {seeds.get('device', '')}): `{seeds['preset']}` "
                  f"from seeds 0-{len(singles) - 1} on the target's image ends at {min(singles):.2f}-"
                  f"{max(singles):.2f} dB (mean {sum(singles) / len(singles):.2f}); the mean of two fits "
                  + ", ".join(f"{p['db']:.2f}" for p in seeds["pairs"]) + " dB (seeds "
                  + ", ".join("+".join(map(str, p["seeds"])) for p in seeds["pairs"]) + "); of four "
                  + ", ".join(f"{q['db']:.2f}" for q in seeds["quads"]) + " dB; of all "
                  + f"{len(singles)} {seeds[f'all{len(singles)}']:.2f} dB. Two averaged is `denoise-sure-pair`, "
                  "the default on a CUDA GPU.", ""]
    for label, d in (("this run", out), *((f"run {b.name}", b) for b in before)):
        t = load(d, "gpu-target.json")
        if not t:
            continue
        if "command" in t and d != out:
            label += f", `{t['command']}`"
        card = _device_of(d)
        if card:
            label += f", {card}"
        ref = t["reference"]
        lines += [f"**512x512 target, {label}** ({t['image']}, sigma {t['sigma']}, seed 0, noisy "
                  f"{t['noisy_db']:.2f} dB): `denoise-paper` peaks at **{ref['best_db']:.2f} dB at step "
                  f"{ref['best_step']}, {ref['best_seconds']:.1f} s** into the fit ({ref['steps_run']} steps run); "
                  f"the bar is {t['bar_db']:.2f} dB.", "",
                  "| run | preset | result (dB) | steps | seconds |", "|---|---|---:|---:|---:|"]
        for c in t.get("candidates", []):
            if t.get("run_through"):
                reached = (f"bar at step {c['step_at_target']}, {c['seconds_at_target']:.1f} s" if c["reached"]
                           else f"bar not reached, best {c['best_db']:.2f} @ {c['best_step']}")
                if c.get("fits", 1) > 1:
                    reached = ("above the bar" if c["reached"] else "below the bar") \
                        + f"; {c['fits']} fits averaged, which ended at " \
                        + " and ".join(f"{x:.2f}" for x in c["fit_final_db"])
                lines.append(f"| in process, the preset's steps | {c['preset']} | {c['final_db']:.2f} ({reached}) | "
                             f"{c['steps_run']} | {c['wall_seconds']:.1f} |")
                continue
            lines.append(f"| in process, until the bar | {c['preset']} | "
                         + (f"{t['bar_db']:.2f} | {c['step_at_target']} | {c['seconds_at_target']:.1f} |"
                            if c["reached"]
                            else f"not reached: best {c['best_db']:.2f} @ {c['best_step']} | {c['steps_run']} | "
                                 f"{c['wall_seconds']:.1f} |"))
        for c in t.get("cli", []):
            fit = c.get("sidecar_fit", {})
            name = c["preset"] + (f" ({c['preset_run']})" if c.get("preset_run", c["preset"]) != c["preset"] else "")
            args = " ".join(c["args"] + (["--sigma", "25"] if c.get("sigma_given", True) else []))
            lines.append(f"| CLI `{args}`, from process start | {name} | "
                         f"{c.get('psnr_db', float('nan')):.2f} | {fit.get('iterations', '')} | "
                         f"{c['wall_seconds_from_process_start']:.1f} "
                         f"(fit {fit.get('seconds', float('nan')):.1f}) |")
        lines.append("")
        if "sure_without_tf32" not in t and any(c["preset"].startswith("denoise-sure") or c["preset"] == "default"
                                                for c in t.get("candidates", []) + t.get("cli", [])):
            lines += ["(This run's SURE fits used TF32 convolutions, cuDNN's default, except those marked `@notf32`. "
                      "From run 2026-11-27-run4 on, deepprior ran SURE fits on CUDA without TF32 when their "
                      "divergence step is below `fitting.SURE_TF32_MIN_EPSILON`.)", ""]
        elif "sure_tf32_min_epsilon" in t:
            # runs 5 and 6 predate the field; denoise-sure's step was Jo et al.'s 1e-3 until then
            eps = t.get("denoise_sure_epsilon", 1e-3)
            lines += [f"(SURE fits whose divergence step was at least {t['sure_tf32_min_epsilon']:g} kept TF32, "
                      f"the others ran in full fp32 (or as marked `@tf32`/`@notf32`); `denoise-sure`'s step was "
                      f"{eps:g}, `search:sure-epsNe-3`'s N/1000.)", ""]
        guarded = [c for c in t.get("cli", [])
                   if ((c.get("sidecar_fit", {}).get("stop") or {}).get("auto") or {}).get("rule") == "divergence"]
        if guarded:
            steps = " and ".join(str(c["sidecar_fit"].get("iterations")) for c in guarded)
            lines += [f"(In this run `--stop auto` guarded SURE fits with `stopping.DivergenceDrop`, the default "
                      f"for one commit: it stopped the CLI fits at steps {steps}. No longer a default: on a whole "
                      "photo it stops healthy fits early.)", ""]
    return "\n".join(lines)


def _device_of(d: Path) -> str:
    """The GPU's name, from the first line of a run's ``log.txt`` (``NAME; torch VERSION``), or ''."""
    log = d / "log.txt"
    first = log.read_text().splitlines()[:1] if log.exists() else []
    return first[0].split(";")[0].strip() if first and ";" in first[0] else ""


def _target_summary(out: Path, before: list[Path]) -> list[str]:
    """The GPU target's verdict: every CLI run of the default (as a user runs it, timed from process
    start) in the runs given, against that run's bar."""
    rows = []
    for d in (out, *before):
        f = d / "gpu-target.json"
        if not f.exists():
            continue
        t = json.loads(f.read_text())
        for c in t.get("cli", []):
            if c["preset"] == "default" and "psnr_db" in c:
                rows.append((d.name if d != out else "this run", _device_of(d), c.get("preset_run", "?"),
                             c.get("sigma_given", True), c["psnr_db"], t["bar_db"],
                             c["wall_seconds_from_process_start"],
                             "reused" if "reused_from" in t["reference"] else "this run", _bytecode_cached(d)))
    if not rows:
        return []
    lines = ["**The GPU target, every run**: `deepprior denoise noisy.png --device cuda` with the default preset, "
             "timed from process start to the written PNG, whose PSNR is measured; the bar is the paper preset's best "
             "less 0.2 dB (its reference fitted in the same run, or where marked reused with `--ref-from` from an "
             "earlier run: 2026-11-27-run7 (an H100) for the H200 runs 2026-11-28-run1 to -run7, 2026-11-28-h100-run1 "
             "for the later ones). Bytecode cached: whether Python could write and reuse its "
             "compiled modules, as after `pip install` (no: the machine's environment set PYTHONDONTWRITEBYTECODE, "
             "and every process compiled torch anew; blank: not recorded).", "",
             "| run | GPU | preset the CLI picked | --sigma 25 | PSNR (dB) | bar (dB) | above the bar | seconds | "
             "reference | bytecode cached |", "|---|---|---|---|---:|---:|---|---:|---|---|"]
    for run, dev, preset, sigma, db, bar, sec, ref, cached in rows:
        lines.append(f"| {run} | {dev} | {preset} | {'yes' if sigma else 'no'} | {db:.2f} | {bar:.2f} | "
                     f"{'yes' if db >= bar else 'no'} ({db - bar:+.3f}) | {sec:.1f} | {ref} | "
                     f"{'' if cached is None else 'yes' if cached else 'no'} |")
    return lines + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", type=Path, default=F16)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu")
    ap.add_argument("--parts", nargs="+", default=["smoke", "target", "speed", "startup"],
                    choices=["smoke", "target", "speed", "startup", "profile"])
    ap.add_argument("--ref-steps", type=int, default=3000)
    ap.add_argument("--ref-seconds", type=float, default=150.0)
    ap.add_argument("--ref-from", type=Path, help="target: reuse the reference (denoise-paper's best) of an earlier "
                    "run's gpu-target.json instead of fitting it again")
    ap.add_argument("--device", default="cuda", help="cpu only to try the script out")
    ap.add_argument("--size", type=int, default=512, help="target: the top-left crop's side")
    ap.add_argument("--report", action="store_true", help="only write --markdown from the results in --out")
    ap.add_argument("--before", type=Path, nargs="*", default=[], help="--report: earlier runs' folders, for comparison")
    ap.add_argument("--markdown", type=Path, default=REPO / "benchmarks" / "results" / "gpu.md")
    # the default on CUDA, denoise-sure-pair (denoise-sure-fast twice, averaged), and one fit of
    # denoise-sure-fast (Adam's betas 0.8/0.9, the learning rate's cosine decay over 200 steps; the CPU's
    # default), whose single fits ended either side of the bar (runs 2026-11-28-run1 to -run4)
    ap.add_argument("--candidates", nargs="+", default=["denoise-sure-pair", "denoise-sure-fast"],
                    help="presets, NAME@bf16, or search:NAME (a benchmarks.fast_search denoising candidate)")
    ap.add_argument("--cli-paper", action=argparse.BooleanOptionalAction, default=True,
                    help="target: also run the paper preset through the CLI (about a minute)")
    ap.add_argument("--run-through", action="store_true",
                    help="target: run each candidate for its preset's steps (not only until the bar)")
    ap.add_argument("--cli", action=argparse.BooleanOptionalAction, default=True,
                    help="target: the CLI runs (--no-cli: the in-process fits only)")
    args = ap.parse_args(argv)
    if args.report:
        args.markdown.write_text(report(args.out, args.before) + "\n")
        print(f"wrote {args.markdown}")
        return 0
    import torch

    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("benchmarks.gpu: no CUDA GPU available")
        print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}", flush=True)
    for part in args.parts:
        t0 = time.perf_counter()
        if part == "smoke":
            res = smoke(args.out, args.device)
            for r in res["rows"]:
                if not r["ok"]:
                    print("  SMOKE FAIL", r, flush=True)
            print(f"smoke: {'all ok' if res['all_ok'] else 'FAILURES'} ({len(res['rows'])} runs)", flush=True)
        elif part == "target":
            res = target(args.out, args.image, args.ref_steps, args.ref_seconds, args.candidates, args.device,
                         args.size, args.cli_paper, args.run_through, args.cli, args.ref_from)
        elif part == "startup":
            res = startup(args.out, args.device)
        elif part == "profile":
            args.out.mkdir(parents=True, exist_ok=True)
            res = profile(args.out, args.image, args.device, args.size)
        else:
            res = speed(args.out)
        res["part_seconds"] = round(time.perf_counter() - t0, 1)
        res["command"] = "python -m benchmarks.gpu " + " ".join(sys.argv[1:] if argv is None else argv)
        _write(args.out, part, res)
        print(f"[{part} done in {res['part_seconds']} s]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
