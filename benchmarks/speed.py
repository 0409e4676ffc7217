"""Speed of the paper's denoising network, against the machine's own matmul peak, in one run.

    python -m benchmarks.speed [--sizes 256 512] [--steps 12] [--warmup 3] [--device cpu|cuda]
                               [--threads N] [--variants eager channels_last] [--ttq]
                               [--out benchmarks/results/speed.json] [--markdown benchmarks/results/speed.md]
    python -m benchmarks.speed --profile channels_last --sizes 256     # where a step's time goes

What each number means
----------------------
sgemm peak (GFLOP/s)
    One ``torch.mm`` of two 4096x4096 fp32 matrices, 2 * n^3 flops, median of ``--sgemm-repeats``
    runs after one warm-up run.  It is the "what this machine can do" yardstick: the network's
    convolutions are matmuls underneath, so ``achieved / peak`` says how far from the hardware the
    fit is.
GFLOP/iter
    Flops of one full training step of the ``denoise-paper`` network (forward on ``z + jitter``, the
    data term, backward), counted by ``torch.utils.flop_counter.FlopCounterMode`` on a separate
    step (not a timed one).  It counts convolutions and matmuls only (BatchNorm, activations,
    padding, upsampling and the Adam update are not counted), so it is a lower bound on the work
    and the same for every variant.
s/iter
    Wall seconds per step of real fitting (``deepprior.fitting.fit`` with the preset's settings,
    Adam, jitter, averaging, backtracking), median over ``--steps`` steps after ``--warmup`` steps,
    timed from the fit's step-end callback (as ``benchmarks/iter_time.py``; on CUDA the callback
    synchronises first).
achieved GFLOP/s, % of peak
    ``GFLOP/iter / s/iter`` and its ratio to the sgemm peak.
peak memory (MiB)
    CPU: the peak resident set size (``ru_maxrss``) of the child process that ran that size and
    variant alone (it includes Python and torch themselves, ~300 MiB; ``rss_before`` is the
    process's size just before the network was built).  CUDA: ``torch.cuda.max_memory_allocated``.
max |diff|
    Largest absolute difference between the variant's output and the eager network's on one
    forward pass with the same weights and input (train-mode BatchNorm, as in the fit); a variant
    passes when it is within ``--tolerance`` (default 1e-4; outputs are in (0, 1)).
time to quality (``--ttq``)
    Wall seconds and steps until the *averaged* output reaches ``--target-db`` PSNR against the
    clean image, on a ``--ttq-crop`` centre crop of F16 (``shared/data/paper/denoising/F16_GT.png``)
    with sigma=25 noise (``deepprior.degrade.add_noise(img, 25, rng=0)``), for each of
    ``--ttq-presets``, stopped at ``--ttq-cap`` steps ("not reached" then).

Variants
--------
:data:`VARIANTS` maps a name to a :class:`Variant`: a function that takes the eager network and the
input/measurement tensors and returns what the fit should run on.  ``eager`` is
:class:`deepprior.networks.SkipNet` as built today (the authors' layer-by-layer eager network, the
baseline every later optimisation is compared to); ``channels_last`` converts the network and the
tensors to NHWC.  Add a variant (``torch.compile``, bf16, ...) by adding an entry.

Every (size, variant) runs in a fresh child process, one after another, so that peak memory is its
own and one variant's caches do not help another.  CPU timings assume an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
F16 = DATA / "paper" / "denoising" / "F16_GT.png"
RESULTS = REPO / "benchmarks" / "results"
PRESET = "denoise-paper"
WORKER = "_worker"  # hidden first argument: run one (size, variant) measurement and print JSON


# --- variants -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A way to run the same network: ``setup(net, z, y) -> (net, z, y)`` (may change them in place)."""

    name: str
    description: str
    setup: Callable
    precision: str = "fp32"  # deepprior.fitting.fit(precision=...)
    adam: str = "fused"  # "loop": torch's per-tensor Adam (as the original code); "fused": deepprior's
    tolerance: float | None = None  # max |diff| vs eager it must stay within (None: --tolerance)
    default: bool = True  # run when --variants is not given
    cuda_graph: bool = False  # deepprior.fitting.fit(cuda_graph=...): CUDA only
    tuned_allocator: bool = False  # deepprior.runtime.tune_allocator() in the child process (as the CLI)


def _eager(net, z, y):
    return net, z, y


def _channels_last(net, z, y):
    import torch

    cl = torch.channels_last
    return net.to(memory_format=cl), z.contiguous(memory_format=cl), y.contiguous(memory_format=cl)


def _compiled(net, z, y):
    """channels_last + ``torch.compile`` of the network (inductor: fuses BN, LeakyReLU, padding)."""
    import torch

    net, z, y = _channels_last(net, z, y)
    return torch.compile(net), z, y


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("eager", "plain eager: deepprior.networks.SkipNet, NCHW fp32, torch's per-tensor Adam loop",
                _eager, adam="loop"),
        Variant("fused_adam", "eager + Adam's fused kernel (deepprior.fitting.make_adam)", _eager),
        Variant("channels_last", "fused Adam + the network and tensors in channels_last (NHWC) memory format",
                _channels_last),
        # what the CLI runs: glibc's malloc reusing freed blocks instead of mapping each step's
        # tensors anew (deepprior.runtime); eager_tuned shows what the allocator alone gives
        Variant("channels_last_tuned", "channels_last + the allocator tuned (deepprior.runtime.tune_allocator; "
                "what the CLI runs)", _channels_last, tuned_allocator=True),
        Variant("fused_adam_tuned", "fused Adam (NCHW) + the allocator tuned", _eager, tuned_allocator=True),
        Variant("eager_tuned", "plain eager with the allocator tuned", _eager, adam="loop", tuned_allocator=True),
        # not run by default: measured at 256 (8 steps, back to back on a 2-core CPU) 1.065 s/step
        # against channels_last's 1.046, and ~90 s of compilation; the convolutions are ~2/3 of
        # the step and inductor leaves them to oneDNN
        Variant("compiled", "channels_last + fused Adam + torch.compile(network) (inductor, default mode)",
                _compiled, default=False),
        # bfloat16 autocast: 8 bits of mantissa, so one forward differs from fp32 by up to a few
        # 1e-2 at initialisation; what counts is the fit's PSNR (benchmarks.precision checks it)
        Variant("bf16", "channels_last + fused Adam + the network under torch.autocast(bfloat16) (weights, Adam, loss, "
                "average in fp32); only where bf16 is native (AVX512-BF16/AMX CPUs, CUDA)", _channels_last,
                precision="bf16", tolerance=0.1),
        # CUDA only: the network's forward and backward replayed as two CUDA graphs, so that a step
        # is not bound by Python's launch of hundreds of small kernels (what deepprior.pipeline does on CUDA)
        Variant("cuda_graph", "channels_last + fused Adam + forward and backward as CUDA graphs "
                "(torch.cuda.make_graphed_callables; CUDA only)", _channels_last, default=False, cuda_graph=True),
    ]
}
BASELINE = "eager"


# --- measurements -------------------------------------------------------------------------------


def sgemm_peak(device: str, n: int = 4096, repeats: int = 5, dtype=None) -> dict:
    """GFLOP/s of an n x n ``torch.mm`` (fp32 unless ``dtype``; median of ``repeats`` after one warm-up)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=gen).to(device, dtype or torch.float32)
    b = torch.rand(n, n, generator=gen).to(device, dtype or torch.float32)
    times = []
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i:  # the first run is the warm-up
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"n": n, "repeats": repeats, "seconds_median": med, "seconds_min": min(times),
            "gflops": 2 * n**3 / med / 1e9, "gflops_best": 2 * n**3 / min(times) / 1e9}


def gemm_peak_bf16(device: str, n: int = 4096, repeats: int = 5) -> dict:
    """GFLOP/s of an n x n bfloat16 ``torch.mm`` (the yardstick of the bf16 variant)."""
    import torch

    return sgemm_peak(device, n, repeats, dtype=torch.bfloat16)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def build_problem(size: int, device: str, seed: int = 0, preset: str = PRESET):
    """The preset's (default: the paper's) network, its input ``z`` and a random measurement ``y`` at ``size`` x ``size``,
    built from ``seed`` as :func:`deepprior.pipeline.restore` builds them."""
    import torch

    from deepprior.fitting import make_input
    from deepprior.networks import build_network, min_size, size_multiple
    from deepprior.presets import get_preset

    preset = get_preset(preset)
    cfg = preset.network
    if size % size_multiple(cfg) or size < min_size(cfg):
        raise SystemExit(f"--sizes: {size} must be a multiple of {size_multiple(cfg)} and >= {min_size(cfg)}")
    gen = torch.Generator().manual_seed(seed)
    z = make_input(preset.input, preset.input_depth, size, size, scale=preset.input_scale, generator=gen)
    y = torch.rand(1, 3, size, size, generator=gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_network(cfg, preset.input_depth, 3)
    return preset, net.to(device), z.to(device), y.to(device)


def count_step_flops(net, z, y, jitter: float) -> int:
    """Flops of one training step (forward on z + jitter, the data term, backward), on a copy."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from deepprior.forward import Identity

    net = copy.deepcopy(net).train()
    with FlopCounterMode(display=False) as counter:
        out = net(z + torch.randn_like(z) * jitter)
        Identity().data_term(out, y).backward()
    return int(counter.get_total_flops())


def time_steps(preset, net, z, y, steps: int, warmup: int, device: str, precision: str = "fp32",
               cuda_graph: bool = False) -> dict:
    """Seconds per step of ``fit`` with the preset's settings (median after ``warmup`` steps)."""
    import torch

    from deepprior.fitting import fit
    from deepprior.forward import Identity

    stamps = []

    def stamp(step, state):
        _sync(device)
        stamps.append(time.perf_counter())

    _sync(device)
    t0 = time.perf_counter()
    result = fit(net, z, Identity(), y, iters=warmup + steps, lr=preset.lr, jitter=preset.jitter,
                 jitter_kind=preset.jitter_kind, ema=preset.ema, backtrack=preset.backtrack,
                 backtrack_db=preset.backtrack_db, callback=stamp, record_history=False,
                 generator=torch.Generator(device=device).manual_seed(1), precision=precision, cuda_graph=cuda_graph)
    stamps.insert(0, t0)
    per_step = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:])]
    return {"seconds_per_step": statistics.median(per_step), "seconds_min": min(per_step),
            "seconds_max": max(per_step), "timed_steps": len(per_step), "warmup_steps": warmup,
            "backtracks": result.backtracks}


def max_output_diff(variant: Variant, size: int, device: str, preset: str = PRESET) -> float:
    """Max |variant(z) - eager(z)| on one train-mode forward pass with the same weights.

    On CUDA the check runs without TF32 (cuDNN's default, which the timed steps keep): TF32 rounds
    each product to 10 bits of mantissa, and two memory formats then pick convolution algorithms
    that differ by ~2e-3, which says nothing about whether the variant computes the same function.
    """
    import torch

    torch.backends.cudnn.allow_tf32 = False  # this worker process only
    torch.backends.cuda.matmul.allow_tf32 = False

    _, net, z, y = build_problem(size, device, preset=preset)
    ref_net = copy.deepcopy(net)
    v_net, v_z, _ = variant.setup(net, z.clone(), y)
    with torch.no_grad():
        ref = ref_net.train()(z)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=variant.precision == "bf16"):
            out = v_net.train()(v_z)
    return float((out.float() - ref.float()).abs().max())


def max_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def worker(spec: dict) -> dict:
    """One (size, variant) measurement, meant to run in a fresh process (see :func:`run_worker`)."""
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device, size, variant = spec["device"], spec["size"], VARIANTS[spec["variant"]]
    if variant.tuned_allocator:
        from deepprior.runtime import tune_allocator

        tune_allocator()
    if variant.adam == "loop":  # this fresh process only: the plain optimiser of the original code
        import deepprior.fitting

        deepprior.fitting.make_adam = lambda params, lr, betas=(0.9, 0.999): torch.optim.Adam(
            params, lr=lr, betas=betas, foreach=False, fused=False)
    preset, net, z, y = build_problem(size, device, preset=spec.get("preset", PRESET))
    row = {"size": size, "variant": variant.name, "device": device, "threads": torch.get_num_threads(),
           "rss_before_mib": round(max_rss_mib(), 1)}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    net, z, y = variant.setup(net, z, y)
    row.update(time_steps(preset, net, z, y, spec["steps"], spec["warmup"], device, variant.precision,
                          variant.cuda_graph))
    row["precision"] = variant.precision
    if device.startswith("cuda"):
        row["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        row["peak_memory_kind"] = "torch.cuda.max_memory_allocated"
    else:
        row["peak_memory_mib"] = round(max_rss_mib(), 1)
        row["peak_memory_kind"] = "ru_maxrss of the child process"
    del net, z, y
    if spec.get("count_flops"):
        _, net, z, y = build_problem(size, device, preset=spec.get("preset", PRESET))
        row["flops_per_step"] = count_step_flops(net, z, y, preset.jitter)
    if variant.name != BASELINE:
        row["max_abs_diff_vs_eager"] = max_output_diff(variant, size, device, spec.get("preset", PRESET))
    return row


def run_worker(spec: dict) -> dict:
    """Run :func:`worker` in a fresh ``python -m benchmarks.speed _worker`` process."""
    cmd = [sys.executable, "-m", "benchmarks.speed", WORKER, json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        return {"size": spec["size"], "variant": spec["variant"], "error": " | ".join(tail) or f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_to_quality(preset_name: str, crop: int, target_db: float, cap: int, device: str) -> dict:
    """Steps and seconds until the averaged output of ``preset_name`` reaches ``target_db`` on F16."""
    import numpy as np
    import torch

    from benchmarks.protocol import centre_crop
    from deepprior.degrade import add_noise
    from deepprior.io import read_image
    from deepprior.pipeline import restore
    from deepprior.presets import get_preset

    clean, _ = read_image(F16)
    clean = np.ascontiguousarray(centre_crop(clean[:, :, :3], crop))
    noisy = add_noise(clean, 25, rng=0)

    def tensor(a):
        return torch.from_numpy(np.asarray(a, dtype=np.float32)).permute(2, 0, 1)[None].contiguous()

    hit = {}

    def reached(step, state):
        db = state.psnr_average_reference
        if db is None:  # a preset without averaging: the raw output
            db = state.psnr_reference
        hit["last_db"] = db
        if db is not None and db >= target_db:
            _sync(device)
            hit.update(step=step, seconds=state.elapsed, db=db)
            return True
        return False

    name, _, precision = preset_name.partition("@")  # "denoise-small@bf16": the preset in bf16
    preset = get_preset(name).replace(**({"precision": precision} if precision else {}))
    t0 = time.perf_counter()
    res = restore(tensor(noisy), preset.replace(iters=cap), rng=0, device=device, reference=tensor(clean),
                  callback=reached, stop=None)
    wall = time.perf_counter() - t0
    row = {"preset": preset_name, "crop": crop, "sigma": 25, "target_db": target_db, "cap_steps": cap,
           "reached": "step" in hit, "steps": hit.get("step"), "seconds": hit.get("seconds"),
           "psnr_db_at_stop": hit.get("db", hit.get("last_db")), "steps_run": res.fit.steps,
           "wall_seconds_with_setup": wall}
    if not row["reached"]:
        row["seconds_run"] = res.fit.seconds
    return row


def profile(size: int, variant_name: str, device: str, preset: str = PRESET, steps: int = 3) -> str:
    """Where one step's time goes: torch.profiler over ``steps`` fitting steps of a variant.

    Returns the operator table (self time, top 15) and one line: the convolutions' share of the
    step and their GFLOP/s (all of the step's counted flops are convolutions).
    """
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile

    from deepprior.fitting import fit
    from deepprior.forward import Identity

    variant = VARIANTS[variant_name]
    prs, net, z, y = build_problem(size, device, preset=preset)
    flops = count_step_flops(net, z, y, prs.jitter)
    net, z, y = variant.setup(net, z, y)

    def run(n):
        fit(net, z, Identity(), y, iters=n, lr=prs.lr, jitter=prs.jitter, jitter_kind=prs.jitter_kind, ema=prs.ema,
            backtrack=prs.backtrack, record_history=False, precision=variant.precision)

    run(2)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with torch_profile(activities=activities) as prof:
        run(steps)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    conv = sum(e.self_cpu_time_total for e in events
               if e.key in ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::cudnn_convolution")) / 1e6
    table = events.table(sort_by="self_cpu_time_total", row_limit=15)
    return (f"{table}\n{size}x{size} {variant_name}: {total / steps:.3f} s of self CPU time per step, of which "
            f"convolutions {conv / steps:.3f} s ({100 * conv / total:.0f} %), "
            f"{flops * steps / conv / 1e9:.0f} GFLOP/s in them\n")


# --- report -------------------------------------------------------------------------------------


def add_derived(runs: list[dict], peak_gflops: float) -> None:
    """Fill in flops for every variant from the baseline's count, GFLOP/s, % of peak, speed-up."""
    flops = {r["size"]: r["flops_per_step"] for r in runs if "flops_per_step" in r}
    base = {r["size"]: r["seconds_per_step"] for r in runs if r.get("variant") == BASELINE and "error" not in r}
    for r in runs:
        if "error" in r:
            continue
        r.setdefault("flops_per_step", flops.get(r["size"]))
        if r["flops_per_step"]:
            r["achieved_gflops"] = r["flops_per_step"] / r["seconds_per_step"] / 1e9
            r["fraction_of_sgemm_peak"] = r["achieved_gflops"] / peak_gflops
        if r["size"] in base:
            r["speedup_vs_eager"] = base[r["size"]] / r["seconds_per_step"]


def markdown(result: dict, tolerance: float) -> str:
    """A compact markdown section: the machine, the sgemm peak, one row per (size, variant), ttq."""
    m, s = result["meta"], result["sgemm"]
    lines = [
        f"### Speed: `{m.get('preset', PRESET)}` network ({m['device']}, {m['torch_threads']} threads, torch {m['torch']}, "
        f"commit {m['commit']})",
        "",
        f"Machine: {m['machine']}.  sgemm peak ({s['n']}x{s['n']} fp32 `torch.mm`, median of {s['repeats']}): "
        f"**{s['gflops']:.0f} GFLOP/s**.  Steps timed: {m['steps']} after {m['warmup']} warm-up; "
        f"flops are convolutions/matmuls of forward + backward (FlopCounterMode).",
        "",
    ]
    if s.get("bf16"):
        lines[-1:] = [f"bf16 gemm peak (same matmul in bfloat16): **{s['bf16']['gflops']:.0f} GFLOP/s**; every row's "
                      "% of peak is of the fp32 sgemm peak.", ""]
    if result["runs"]:
        lines += ["| size | variant | GFLOP/iter | s/iter | GFLOP/s | % of peak | speed-up | peak mem (MiB) | max abs diff |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["runs"]:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['variant']} | error: {r['error'][:80]} | | | | | | |")
            continue
        fl = r.get("flops_per_step")
        diff = r.get("max_abs_diff_vs_eager")
        tol = VARIANTS[r["variant"]].tolerance if r["variant"] in VARIANTS else None
        tol = tolerance if tol is None else tol
        if diff is None:  # the baseline itself, or no baseline in this run
            diff_s = "(reference)" if r["variant"] == BASELINE else "–"
        else:
            diff_s = f"{diff:.1e} {'ok' if diff <= tol else 'FAIL'} (tol {tol:g})"
        speedup = f"{r['speedup_vs_eager']:.2f}x" if "speedup_vs_eager" in r else "–"  # no baseline in this run
        lines.append(
            f"| {r['size']} | {r['variant']} | {fl / 1e9:.1f} | {r['seconds_per_step']:.3f} | "
            f"{r.get('achieved_gflops', float('nan')):.1f} | {100 * r.get('fraction_of_sgemm_peak', float('nan')):.1f} | "
            f"{speedup} | {r['peak_memory_mib']:.0f} | {diff_s} |"
            if fl else
            f"| {r['size']} | {r['variant']} | ? | {r['seconds_per_step']:.3f} | | | | {r['peak_memory_mib']:.0f} | {diff_s} |"
        )
    if result.get("ttq"):
        t0 = result["ttq"][0]
        lines += ["", f"Time to quality: F16 centre crop {t0['crop']}x{t0['crop']}, sigma 25, target "
                  f"{t0['target_db']:g} dB (averaged output), cap {t0['cap_steps']} steps"
                  + (", the allocator tuned as the CLI runs (`deepprior.runtime`)"
                     if result["meta"].get("ttq_allocator_tuned") else "")
                  + (f"; measured at commit {result['meta']['ttq_commit']} (`python -m benchmarks.speed --ttq-only`)"
                     if result["meta"].get("ttq_commit") else "") + ".", "",
                  "| preset | steps | seconds | PSNR at stop (dB) |", "|---|---:|---:|---:|"]
        for t in result["ttq"]:
            if t["reached"]:
                lines.append(f"| {t['preset']} | {t['steps']} | {t['seconds']:.1f} | {t['psnr_db_at_stop']:.2f} |")
            else:
                lines.append(f"| {t['preset']} | not reached within {t['cap_steps']} | ({t['seconds_run']:.1f}) | "
                             f"{t['psnr_db_at_stop']:.2f} |")
    return "\n".join(lines) + "\n"


# --- command line -------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[256, 512],
                    help="image sides (multiples of 32); `--sizes` alone skips the per-size runs")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per size and variant")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--preset", default=PRESET, help="whose network and loop settings to time")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--variants", nargs="+", default=[n for n, v in VARIANTS.items() if v.default],
                    choices=list(VARIANTS))
    ap.add_argument("--tolerance", type=float, default=1e-4, help="max |variant - eager| on one forward")
    ap.add_argument("--sgemm-n", type=int, default=4096)
    ap.add_argument("--sgemm-repeats", type=int, default=5)
    ap.add_argument("--ttq", action="store_true", help="also measure time to quality (slower)")
    ap.add_argument("--ttq-only", action="store_true",
                    help="measure time to quality only and replace it in --out (and --markdown), keeping that "
                         "file's earlier per-iteration measurements")
    ap.add_argument("--ttq-presets", nargs="+", default=["denoise-paper", "denoise-small", "denoise-small@bf16",
                                                         "denoise-sure", "denoise-sure-fast"],
                    help="preset names; NAME@bf16 runs the preset with precision='bf16'")
    ap.add_argument("--ttq-crop", type=int, default=128)
    ap.add_argument("--target-db", type=float, default=29.0)
    ap.add_argument("--ttq-cap", type=int, default=3000, help="most steps per preset")
    ap.add_argument("--profile", metavar="VARIANT", choices=list(VARIANTS),
                    help="only print where a step of VARIANT spends its time, per --sizes (torch.profiler)")
    ap.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the markdown section here")
    return ap.parse_args(argv)


def machine_meta(args, device: str) -> dict:
    import torch

    from benchmarks.paper import git_commit

    meta = {"command": "python -m benchmarks.speed " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "device": device, "torch": torch.__version__, "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.system()}",
            "torch_threads": torch.get_num_threads(), "commit": git_commit(),
            "load_average_at_start": round(os.getloadavg()[0], 2), "steps": args.steps, "warmup": args.warmup,
            "preset": args.preset}
    if device == "cuda":
        meta["gpu"] = torch.cuda.get_device_name()
        # convolutions may use TF32 (cuDNN's default) while the sgemm yardstick is plain fp32
        meta["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        meta["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    return meta


def measure_ttq(args) -> tuple[bool, list[dict]]:
    """Time to quality of each of ``args.ttq_presets``, the allocator tuned as the CLI runs them:
    (whether the allocator was tuned, one dict per preset)."""
    from deepprior.runtime import tune_allocator

    tuned = tune_allocator()
    ttq = []
    for name in args.ttq_presets:
        t = time_to_quality(name, args.ttq_crop, args.target_db, args.ttq_cap, args.device)
        ttq.append(t)
        print(f"  ttq {name}: " + (f"{t['target_db']:g} dB at step {t['steps']} in {t['seconds']:.1f} s" if t["reached"]
              else f"not reached within {t['cap_steps']} steps ({t['psnr_db_at_stop']:.2f} dB)"), flush=True)
    return tuned, ttq


def ttq_only(args) -> int:
    """``--ttq-only``: remeasure time to quality into an earlier run's ``--out`` file."""
    if not args.out.is_file():
        raise SystemExit(f"--ttq-only needs an earlier run's results in {args.out}")
    from benchmarks.paper import git_commit

    result = json.loads(args.out.read_text())
    result["meta"]["ttq_allocator_tuned"], result["ttq"] = measure_ttq(args)
    result["meta"]["ttq_commit"] = git_commit()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result, result.get("tolerance", args.tolerance))
    print("\n" + md)
    if args.markdown:
        args.markdown.write_text(md)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [WORKER]:
        print(json.dumps(worker(json.loads(argv[1]))))
        return 0
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU available")
    if args.warmup < 1 or args.steps < 1:
        raise SystemExit("--steps and --warmup must be >= 1")
    if args.profile:
        for size in args.sizes:
            print(profile(size, args.profile, args.device, args.preset))
        return 0
    if args.ttq_only:
        return ttq_only(args)
    meta = machine_meta(args, args.device)
    if meta["load_average_at_start"] > 0.5 * (os.cpu_count() or 1):
        print(f"WARNING: the machine is busy (load average {meta['load_average_at_start']}): timings will be off; "
              "two multi-threaded torch processes on few cores can run many times slower (try --threads 1)")
    print(f"{meta['machine']}; {args.device}; torch {meta['torch']}, {meta['torch_threads']} threads; commit {meta['commit']}")

    sgemm = sgemm_peak(args.device, args.sgemm_n, args.sgemm_repeats)
    print(f"sgemm peak: {sgemm['gflops']:.1f} GFLOP/s ({args.sgemm_n}^3 torch.mm, median {sgemm['seconds_median']:.3f} s)")
    if any(VARIANTS[n].precision == "bf16" for n in args.variants):
        sgemm["bf16"] = gemm_peak_bf16(args.device, args.sgemm_n, args.sgemm_repeats)
        print(f"bf16 gemm peak: {sgemm['bf16']['gflops']:.1f} GFLOP/s")
    runs = []
    for size in args.sizes:
        for i, name in enumerate(args.variants):
            spec = {"size": size, "variant": name, "device": args.device, "threads": meta["torch_threads"],
                    "steps": args.steps, "warmup": args.warmup, "count_flops": i == 0, "preset": args.preset}
            row = run_worker(spec)
            runs.append(row)
            msg = row.get("error") or f"{row['seconds_per_step']:.3f} s/step, peak {row['peak_memory_mib']:.0f} MiB"
            print(f"  {size}x{size} {name}: {msg}", flush=True)
    add_derived(runs, sgemm["gflops"])

    ttq = []
    if args.ttq:
        meta["ttq_allocator_tuned"], ttq = measure_ttq(args)

    result = {"meta": meta, "variants": {n: VARIANTS[n].description for n in args.variants},
              "tolerance": args.tolerance, "sgemm": sgemm, "runs": runs, "ttq": ttq}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result, args.tolerance)
    print("\n" + md)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(md)
    print(f"wrote {args.out}" + (f" and {args.markdown}" if args.markdown else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
