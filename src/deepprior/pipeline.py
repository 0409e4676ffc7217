"""The pipeline: a preset + a forward model + a measurement -> a restored image.

:func:`restore` pads the measurement to the network's size multiple (reflection), builds the
network and the input ``z`` from the seed, runs :func:`deepprior.fitting.fit` and crops the result
back (a preset with ``fits`` > 1: that many fits from their own seeds, their results averaged).
It works on tensors of shape (1, C, H, W) in [0, 1]; :mod:`deepprior.api` converts arrays.
"""

from __future__ import annotations

import math
import secrets
import time
import warnings
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from .cost import available_bytes, estimate
from .fitting import FitResult, fit, make_input
from .forward import Downsampler, ForwardModel, Identity, Mask, SR_FACTORS
from .networks import build_network, input_size, min_size, size_multiple
from .objectives import BlindSpot, DataTerm, Sure
from .presets import SURE_MAX_SIGMA, Preset, get_preset

__all__ = ["restore", "Restoration", "resolve_device", "resolve_seed", "pad_reflect", "MAX_PIXELS"]

#: A preset's fits after the first are seeded ``seed + FIT_SEED_STRIDE * k`` (each fit draws from
#: its seed and the next two: z and the weights, the jitter, the fit's dropout).
FIT_SEED_STRIDE = 1000

#: Default limit on output pixels (4096 x 4096).  The paper network needs ~40 GB at that size.
MAX_PIXELS = 4096 * 4096


class InputError(ValueError):
    """Bad input: the message is meant for the user, as one line."""


@dataclass
class Restoration:
    """The result of :func:`restore`."""

    image: torch.Tensor  # (1, C, H, W) in [0, 1]
    fit: FitResult
    preset: Preset
    seed: int
    device: str
    padded_size: tuple[int, int]  # the network's output size before cropping
    stop_rule: object = None  # the stopping rule given (its stop_step, best_step, reason), or None
    estimate: object = None  # deepprior.cost.Estimate: memory and flops of the fit
    sigma: float | None = None  # a SURE fit's noise level (image scale), given or estimated
    # a preset with fits > 1: each fit's own result (``fit`` is their average: _averaged); else empty
    members: tuple = ()


def bf16_native(device: torch.device) -> bool:
    """True where bfloat16 arithmetic is native: CUDA GPUs that support it, CPUs with AVX512-BF16
    or AMX (oneDNN's check).  Elsewhere autocast to bfloat16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        try:
            return bool(check()) if check is not None else False
        except RuntimeError:
            return False
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The arithmetic a preset's ``precision`` stands for on ``device``: "fp32" or "bf16".

    "auto" is bf16 where it is native (:func:`bf16_native`), else fp32; "bf16" asked for where it
    is not native falls back to fp32 too (it would be slower)."""
    if precision not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', got {precision!r}")
    if precision == "fp32":
        return "fp32"
    return "bf16" if bf16_native(device) else "fp32"


def resolve_device(device=None) -> torch.device:
    """``None`` or ``"auto"``: CUDA, then Apple MPS, then the CPU."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available (use --device cpu)")
    return dev


def resolve_seed(rng=None) -> int:
    """An integer seed from ``rng``: an int, a ``numpy.random.Generator``, or None (fresh entropy)."""
    if rng is None:
        return secrets.randbelow(2**31)
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2**31))
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return int(rng)
    raise TypeError(f"rng must be an int, a numpy.random.Generator or None, got {type(rng).__name__}")


def prefers_channels_last(config, device) -> bool:
    """Whether the network runs faster in channels-last (NHWC) memory format on ``device``.

    Measured with ``python -m benchmarks.speed [--preset denoise-small] --sizes ... --variants
    fused_adam channels_last fused_adam_tuned channels_last_tuned`` on a 2-core CPU (2026-11-27):
    the paper network (128 channels) 1.18-1.28x at 256 px and 1.26-1.47x at 512 with the allocator
    as it comes; with it tuned (:mod:`deepprior.runtime`, as the CLI runs) 0.97-1.11x at 256 and
    0.89-1.00x at 512 over four runs (BENCHMARKS.md, "NCHW or channels-last": NCHW up to 12 %
    faster at 512, no consistent winner at 256); the small
    one (32 channels at the full-size level) 1.09-1.13x at 128 and 256 px either way, in two runs
    (an earlier measurement, 0.81x at 256, predates the jitter's plain buffer in
    :func:`deepprior.fitting.fit`); a 64-channel Deep Decoder 1.7x at 128.  So always, on the CPU
    as on CUDA.  ``config`` is kept for networks that may prefer otherwise.
    """
    return device.type in ("cpu", "cuda")


def pad_reflect(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflection padding of any width (repeated reflection when the pad exceeds the image;
    replication for a side of one pixel)."""
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        if h == 1 or w == 1:
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        t, b, l, r = min(top, h - 1), min(bottom, h - 1), min(left, w - 1), min(right, w - 1)
        x = F.pad(x, (l, r, t, b), mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - l, right - r
    return x


def _padded(n: int, multiple: int, minimum: int) -> int:
    return max(math.ceil(n / multiple) * multiple, minimum)


def check_sigma(sigma: float | None) -> None:
    """Refuse a noise level that is not a standard deviation on the image scale, (0, 1): 25 for "sigma
    25" (the 0..255 scale) is the likely slip, and would silently pick the wrong preset and rule."""
    if sigma is None:
        return
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and 0 < sigma < 1):
        hint = f" (on the image scale: {sigma:g}/255 for sigma {sigma:g} on 0..255)" if (
            isinstance(sigma, (int, float)) and 1 <= sigma < 255) else ""
        raise InputError(f"the noise level sigma must be in (0, 1), the image's scale; got {sigma!r}{hint}")


_PRESET_DEFAULTS = {f.name: f.default for f in fields(Preset)}


def _check_loss(preset: Preset, forward: ForwardModel) -> None:
    """Check that the preset's loss and input go together and suit the task (SURE: denoising;
    blind-spot: inpainting)."""
    # (Preset itself refuses an unknown loss.)  The blind-spot settings changed from their defaults
    # mean nothing to another loss: refused rather than ignored
    if preset.loss != "blindspot":
        for name in ("blindspot_flips", "blindspot_keep_final", "blindspot_fill", "blindspot_block",
                     "blindspot_shape"):
            if getattr(preset, name) != _PRESET_DEFAULTS[name]:
                raise InputError(f"preset {preset.name!r}: {name} needs loss='blindspot'")
    if preset.loss == "blindspot":
        if preset.input != "measurement":
            raise InputError(f"preset {preset.name!r}: a blind-spot fit needs input='measurement'")
        if not isinstance(forward, Mask):
            raise InputError(f"preset {preset.name!r} fills missing pixels from the known ones around them: "
                             "for inpainting only")
        return
    if preset.input != "measurement" and preset.loss != "sure":
        return
    if preset.input != "measurement" or preset.loss != "sure":
        raise InputError(f"preset {preset.name!r}: a SURE fit needs input='measurement' and loss='sure' together")
    if not isinstance(forward, Identity):
        raise InputError(f"preset {preset.name!r} feeds the degraded image to the network: for denoising only "
                         "(not super-resolution or inpainting)")


def _sure_sigma(preset: Preset, y: torch.Tensor, sigma: float | None) -> float | None:
    """The noise level of a SURE fit (``sigma``, else estimated from ``y``); None for the other presets."""
    if preset.loss != "sure":
        return None
    if sigma is None:
        from .measures import estimate_noise_level

        try:
            sigma = estimate_noise_level(y)
        except ValueError as e:
            raise InputError(f"could not estimate the noise level for preset {preset.name!r} ({e}); "
                             "give it with --sigma (API: sigma=)") from None
    if not (math.isfinite(sigma) and sigma > 0):
        raise InputError(f"the noise level must be positive, got {sigma}")
    if sigma > SURE_MAX_SIGMA:
        warnings.warn(f"preset {preset.name!r} was measured good at noise levels up to {SURE_MAX_SIGMA * 255:.0f} "
                      f"(0..255); on whole photos at 40 and 50 it lost to the noise-input fit; this image's level is "
                      f"{sigma * 255:.0f}: denoise-paper (the default at this level) is safer",
                      stacklevel=3)
    return float(sigma)


def restore(
    y: torch.Tensor,
    preset: "Preset | str",
    *,
    forward: ForwardModel | None = None,
    known: torch.Tensor | None = None,
    scale: int = 1,
    rng=None,
    device=None,
    callback=None,
    reference: torch.Tensor | None = None,
    time_budget: float | None = None,
    stop=None,
    max_pixels: int | None = MAX_PIXELS,
    checkpoint=None,
    checkpoint_every: int = 0,
    resume: dict | None = None,
    check_memory: bool = True,
    announce=None,
    sigma: float | None = None,
    objective=None,
) -> Restoration:
    """Restore one image from its measurement.

    Parameters
    ----------
    y : tensor (1, C, h, w)
        The degraded image in [0, 1] (values slightly outside, e.g. unclipped noise, are fine).
    preset : Preset or str
        The recipe (see ``deepprior presets``).
    forward : ForwardModel, optional
        The degradation, if not given by ``known`` / ``scale`` (not together with them): it must
        accept any image size (it is applied to the padded image).  Its ``scale`` attribute (1 by
        default) says how many times smaller than the result ``y`` is.  Default: the identity.
    known : tensor (1, 1 or C, h, w), optional
        Inpainting: 1 where pixels are known.  Padded with ``y`` and made into a :class:`Mask`.
    scale : int
        Super-resolution factor (the output is ``scale`` times larger); 1 otherwise.
    rng : int, numpy.random.Generator or None
        Seed for ``z``, the jitter and the initial weights (None: a fresh one, reported back).
    device : str or torch.device, optional
        "auto" (default), "cpu", "cuda", "mps".
    callback : callable or list, optional
        ``callback(step, state)``; see :func:`deepprior.fitting.fit`.
    reference : tensor (1, C, h * scale, w * scale), optional
        Ground truth, for PSNR curves only.
    time_budget : float, optional
        Seconds after which the fit stops and returns what it has.
    stop : stopping rule, optional
        E.g. ``deepprior.stopping.WindowedVariance()``: ends the fit and picks the iterate it
        returns (see :func:`deepprior.fitting.fit`).
    max_pixels : int or None
        Refuse outputs larger than this many pixels (None: no limit).
    checkpoint, checkpoint_every, resume
        Save the fit's state every ``checkpoint_every`` steps / continue from a saved state; see
        :func:`deepprior.fitting.fit`.  A resumed fit must use the same measurement, preset and
        seed as the one that saved the state (the network and ``z`` are rebuilt from the seed).
    check_memory : bool
        Estimate the fit's memory first (:func:`deepprior.cost.estimate`) and refuse, with an
        :class:`InputError`, a fit that would need more than the device has free (default True).
    announce : callable, optional
        ``announce(estimate)`` with the :class:`deepprior.cost.Estimate` before the fit starts
        (the CLI prints it).
    sigma : float, optional
        The Gaussian noise's standard deviation on the image scale ([0, 1]), for a preset with
        ``loss="sure"``; None estimates it from ``y``
        (:func:`deepprior.measures.estimate_noise_level`).  Other presets ignore it.
    objective : deepprior.objectives.Objective, optional
        What each step scores instead of the forward model's data term (a preset with
        ``loss="mse"`` only); see :func:`deepprior.fitting.fit`.
    """
    preset = get_preset(preset)
    check_sigma(sigma)
    if y.ndim != 4 or y.shape[0] != 1:
        raise InputError(f"the measurement must be a (1, C, H, W) tensor, got {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise InputError("the image contains non-finite values (NaN or infinity)")
    _, c, h, w = y.shape
    if scale != 1 and scale not in SR_FACTORS:
        raise InputError(f"super-resolution scale must be one of {', '.join(map(str, SR_FACTORS))}, got {scale}")
    if forward is not None:
        if known is not None or scale != 1:
            raise InputError("give either a forward model or known= / scale= (which build one), not both")
        scale = getattr(forward, "scale", 1)  # a forward model that shrinks the image: the result is larger
        if not (isinstance(scale, int) and scale >= 1):
            raise InputError(f"the forward model's scale must be a positive integer, got {scale!r}")
    big_h, big_w = h * scale, w * scale
    if reference is not None and tuple(reference.shape[-2:]) != (big_h, big_w):
        raise InputError(f"the reference is {reference.shape[-1]}x{reference.shape[-2]} but the result will be "
                         f"{big_w}x{big_h} (WxH)")
    if max_pixels is not None and big_h * big_w > max_pixels:
        raise InputError(
            f"the output would be {big_w}x{big_h} = {big_h * big_w:,} pixels, over the limit of {max_pixels:,}; "
            "raise it with --max-pixels N (API: max_pixels=N) if your memory allows"
        )
    cfg = preset.network
    mult = math.lcm(size_multiple(cfg), scale)
    hp, wp = _padded(big_h, mult, min_size(cfg)), _padded(big_w, mult, min_size(cfg))
    top, left = ((hp - big_h) // 2) // scale, ((wp - big_w) // 2) // scale
    bottom, right = hp // scale - h - top, wp // scale - w - left

    dev = resolve_device(device)
    seed = resolve_seed(rng)
    y_p = pad_reflect(y.float(), top, bottom, left, right).to(dev)
    if known is not None:
        if known.shape[-2:] != y.shape[-2:]:
            raise InputError(
                f"the mask is {known.shape[-1]}x{known.shape[-2]} but the image is {w}x{h} (WxH)"
            )
        forward = Mask(pad_reflect(known.float(), top, bottom, left, right)).to(dev)
    elif scale != 1:
        forward = Downsampler(scale, kernel=preset.sr_kernel).to(dev)
    elif forward is None:
        forward = Identity()
    forward = forward.to(dev)

    if objective is not None and preset.loss != "mse":
        raise InputError(f"preset {preset.name!r} fits with its own objective (loss={preset.loss!r}): "
                         "give objective= with a preset whose loss is 'mse'")
    _check_loss(preset, forward)
    sure_sigma = _sure_sigma(preset, y, sigma)
    if sure_sigma is not None and preset.precision == "bf16":
        raise InputError(f"{preset.name!r} fits with SURE, which needs fp32 (bf16's rounding swamps its divergence "
                         "estimate): drop --precision bf16")
    if preset.fits > 1 and (checkpoint_every or resume is not None):
        raise InputError(f"preset {preset.name!r} averages {preset.fits} fits, which cannot be checkpointed or "
                         "resumed: choose a preset with one fit (deepprior presets) or --fits 1")
    blindspot = preset.loss == "blindspot"
    depth = c if preset.input == "measurement" else 2 if preset.input == "meshgrid" else preset.input_depth
    # a blind-spot network also sees which pixels it is shown (the mask's channels)
    net_depth = depth + forward.known.shape[1] if blindspot else depth
    zh, zw = input_size(cfg, hp, wp)
    if preset.input == "measurement" and (zh, zw) != (hp, wp):
        raise InputError(f"preset {preset.name!r}: its network's input must be the image's size to take the image")

    def build(fit_seed: int, probe: bool):
        """The input ``z`` and the network of the fit seeded ``fit_seed`` (and, if ``probe``, the cost)."""
        if preset.input == "measurement":
            z = y_p.clone()
        else:
            z = make_input(preset.input, depth, zh, zw, scale=preset.input_scale,
                           generator=torch.Generator().manual_seed(fit_seed)).to(dev)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(fit_seed)
            net = build_network(cfg, net_depth, c)
            # (its probe runs the network: a dropout's draws stay inside this fork too)
            cost = estimate(net, net_depth, c, hp, wp, multiple=size_multiple(cfg), window=getattr(stop, "window", 0),
                            input_divisor=hp // zh, batch=2 if sure_sigma else 1) if probe else None
        return z, net, cost

    z, net, cost = build(seed, probe=True)
    if dev.type == "cpu":
        from .runtime import memory_factor

        cost = cost.scaled(memory_factor())  # the allocator tuned keeps freed blocks (deepprior.runtime)
    if announce is not None:
        announce(cost)
    free = available_bytes(dev) if check_memory else None
    if free is not None and cost.bytes > free:
        raise InputError(
            f"this fit needs ~{cost.gib:.1f} GiB of memory ({hp}x{wp} pixels through the network of preset "
            f"{preset.name!r}) but only {free / 2**30:.1f} GiB is free: use a smaller image, a smaller preset "
            "(deepprior presets), or --no-memory-check to try anyway"
        )
    ref = None if reference is None else reference.to(dev)
    precision = resolve_precision(preset.precision, dev)
    if sure_sigma is not None:  # "auto" too: fp32 (on CUDA TF32 only for a large enough step: fitting._NoTF32)
        precision = "fp32"
    own_objective = objective is None  # the preset's: a fresh one for each fit
    members: list[FitResult] = []
    between = False  # Ctrl-C came between two fits
    started = time.perf_counter()
    for k in range(preset.fits):
        try:
            fit_seed = seed + FIT_SEED_STRIDE * k
            if k:
                z, net, _ = build(fit_seed, probe=False)
            net = net.to(dev)
            if dev.type in ("cpu", "cuda") and prefers_channels_last(cfg, dev):
                net = net.to(memory_format=torch.channels_last)
                z = z.contiguous(memory_format=torch.channels_last)
            jitter_gen = torch.Generator(device=dev).manual_seed(fit_seed + 1)
            if own_objective:  # what each step scores: the preset's loss
                if sure_sigma is not None:
                    objective = Sure(sure_sigma, preset.sure_epsilon, preset.sure_every)
                elif blindspot:
                    objective = BlindSpot(preset.blindspot_keep, preset.blindspot_keep_final,
                                          preset.blindspot_keep_steps,
                                          flips=preset.blindspot_flips, fill=preset.blindspot_fill,
                                          block=preset.blindspot_block, shape=preset.blindspot_shape)
                else:
                    objective = DataTerm()
            # the time left, shared among the fits still to run
            budget = None if time_budget is None else \
                max(0.0, time_budget - (time.perf_counter() - started)) / (preset.fits - k)
            # what the fit draws from torch's global generator (a network's dropout) comes from the seed too,
            # and the caller's generator is left as it was
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                torch.manual_seed(fit_seed + 2)
                members.append(fit(
                    net,
                    z,
                    forward,
                    y_p,
                    iters=preset.iters,
                    lr=preset.lr,
                    lr_final=preset.lr_final,
                    lr_decay_steps=preset.lr_decay_steps,
                    betas=preset.betas,
                    jitter=preset.jitter,
                    jitter_kind=preset.jitter_kind,
                    jitter_warmup=preset.jitter_warmup,
                    ema=preset.ema,
                    ema_warmup=preset.ema_warmup,
                    backtrack=preset.backtrack,
                    backtrack_db=preset.backtrack_db,
                    crop=(top * scale, left * scale, big_h, big_w),
                    reference=ref,
                    callback=callback,
                    generator=jitter_gen,
                    time_budget=budget,
                    stop=stop,
                    checkpoint=checkpoint,
                    checkpoint_every=checkpoint_every,
                    resume=resume,
                    precision=precision,
                    # deepprior's networks have no host syncs or data-dependent branches: safe to capture
                    cuda_graph=dev.type == "cuda" and precision == "fp32" and preset.sure_every == 1,
                    objective=objective,
                ))
        except KeyboardInterrupt:  # Ctrl-C while the next fit is built (or its CUDA graphs captured)
            if not members:
                raise
            between = True
            break
        if members[-1].stop_reason in ("interrupted", "callback"):  # Ctrl-C, or a callback's stop (the app's
            break  # cancel), ends them all: the average of those that ran to their end (_averaged)
    if len(members) > 1:
        members = [replace(m, network=None) for m in members]
    result = _averaged(members)
    if between:
        result = replace(result, stop_reason="interrupted")
    return Restoration(
        image=result.image, fit=result, preset=preset, seed=seed, device=str(dev), padded_size=(hp, wp),
        stop_rule=stop, estimate=cost, sigma=sure_sigma, members=tuple(members) if len(members) > 1 else (),
    )


def _averaged(members: list[FitResult]) -> FitResult:
    """One fit's result from ``members`` (a preset's ``fits``): the mean image of the fits that ran
    to their end (a fit cut short by Ctrl-C or a callback's stop after the first would spoil it; the
    first one alone is returned as it is), their steps, seconds and backtracks summed, the last one's
    stop reason, the first one's history (the members have dropped their networks: restore)."""
    if len(members) == 1:
        return members[0]
    whole = [m for m in members if m.stop_reason not in ("interrupted", "callback")] or members[:1]
    image = torch.stack([m.image for m in whole]).mean(0)
    return replace(members[-1], image=image, steps=sum(m.steps for m in members),
                   seconds=sum(m.seconds for m in members), backtracks=sum(m.backtracks for m in members),
                   history=members[0].history)
