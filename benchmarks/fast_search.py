"""Search for fast presets on *tune* images (never the images the speed targets are measured on).

    python -m benchmarks.fast_search run --task denoise --candidates paper small small-lr02 ...
    python -m benchmarks.fast_search report --task denoise
    python -m benchmarks.fast_search final --task sr --candidates A B --images IMG ... [--steps 1500]

Each candidate is a preset plus changes (below, as data).  ``run`` fits it on each tune image of
the task (128 px crops, the quick tier's degradation and seed) for a fixed number of steps and
records, per step, the wall time and the PSNR of the image the preset returns (the running
average where the preset averages, else the raw output; found with the ground truth).  The
curves are cached in ``benchmarks/results/runs/fast-search.json`` (not committed).  ``report``
compares every candidate with the paper preset on the same image: the best PSNR of the paper
preset, and the time each candidate needs to come within 0.2 dB of it (speed-up = the paper's
time to its best / the candidate's time).  One fit at a time; this machine has two cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks import paper
from benchmarks.fast import MARGIN_DB, TASKS, curve, make_case
from benchmarks.protocol import psnr

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = RESULTS / "runs" / "fast-search.json"

# The tune images of each task (disjoint from the quick tier's images, which the targets use).
TUNE = {
    "denoise": ("cbsd68/130026", "set14/pepper"),
    "sr": ("set5/bird", "set14/monarch"),
    "inpaint": ("inpainting11/boat", "inpainting11/peppers256"),
    "deblock": ("cbsd68/148089", "cbsd68/220075"),  # benchmarks.stopping's JPEG tune images
    "deblock-q20": ("cbsd68/148089", "cbsd68/220075"),
    "inpaint-text": ("set14/foreman", "cbsd68/196073"),  # benchmarks.paper's TEXT has the others
    "inpaint-text-64": ("set14/foreman", "cbsd68/196073"),
    "inpaint-strokes": ("set14/foreman", "cbsd68/196073"),
}


# The small preset of each task, the starting point of the candidates.
SMALL = {"denoise": "denoise-small", "sr": "sr-x4-small", "inpaint": "inpaint-small", "deblock": "deblock-small",
         "deblock-q20": "deblock-small", "inpaint-text": "inpaint-text-small", "inpaint-text-64": "inpaint-text-small",
         "inpaint-strokes": "inpaint-text-small"}


def _net(**kw):
    from deepprior.networks import NetworkConfig

    return NetworkConfig(**kw)


# Adam's betas of sr-x4-fast and inpaint-blindspot as shipped; the candidates added after those presets
# took them say so explicitly (see the end of candidates(): the others keep PyTorch's, as measured)
SHIPPED_BETAS = {"betas": (0.8, 0.9)}

TINY = dict(channels_down=(16, 32, 32, 64), channels_up=(16, 32, 32, 64), channels_skip=(4, 4, 4, 4))


def candidates(task: str) -> dict[str, tuple[str, dict, int, str]]:
    """name -> (base preset, changes, steps, description)."""
    small = SMALL[task]
    ref, ref_steps = TASKS[task].reference, TASKS[task].reference_steps
    c = {
        "paper": (ref, {}, ref_steps, f"`{ref}` (the reference)"),
        "small": (small, {}, 1600, f"`{small}`: skip 32/32/64/64, 0.29 M parameters"),
        "small-warm": (small, {"ema_warmup": True}, 1600, "the same with the average's warm-up (`ema_warmup`)"),
        "small-lr02-warm": (small, {"lr": 0.02, "ema_warmup": True}, 1200, "the same, learning rate 0.02"),
        "tiny-lr02": (small, {"lr": 0.02, "network": _net(**TINY)}, 1200,
                      "skip 16/32/32/64 (0.10 M parameters), learning rate 0.02"),
        # learning-rate schedules: a high rate early, then a low one (cosine, then constant)
        "small-cos01": (small, {"lr_final": 0.001, "lr_decay_steps": 1600}, 1600,
                        f"`{small}`, learning rate 0.01 decaying to 0.001 by step 1600 (cosine)"),
        "small-cos02": (small, {"lr": 0.02, "lr_final": 0.002, "lr_decay_steps": 1600}, 1600,
                        f"`{small}`, learning rate 0.02 decaying to 0.002 by step 1600 (cosine)"),
        "small-cos03": (small, {"lr": 0.03, "lr_final": 0.002, "lr_decay_steps": 1000}, 1600,
                        f"`{small}`, learning rate 0.03 decaying to 0.002 by step 1000 (cosine)"),
    }
    if task == "sr":  # the SR recipes return the last output; the average of outputs, as denoising's
        c["small-ema"] = (small, {"ema": 0.99, "ema_warmup": True}, 1600,
                          f"`{small}` with the running average of outputs (0.99, warm-up)")
        c["small-ema-lr02"] = (small, {"ema": 0.99, "ema_warmup": True, "lr": 0.02}, 1600,
                               "the same, learning rate 0.02")
        # the jitter rising from 0 (fits the coarse image sooner) to the paper's 1/30 (goes further);
        # these were measured before sr-x4-fast took a rise and 1/20, so they set the jitter to 1/30
        for ramp in (100, 200):
            c[f"fast-jw{ramp}"] = ("sr-x4-fast", {"jitter": 1 / 30, "jitter_warmup": ramp}, 1600,
                                   f"`sr-x4-fast` with the paper's jitter (1/30) rising from 0 over the first "
                                   f"{ramp} steps")
        c["fast-lr005"] = ("sr-x4-fast", {"jitter": 1 / 30, "lr": 0.005}, 1600, "fast-jw100, learning rate 0.005")
        c["fast-z8"] = ("sr-x4-fast", {"jitter": 1 / 30, "input_depth": 8}, 1600,
                        "fast-jw100 with 8 input channels (paper: 32)")
        c["fast-j20"] = ("sr-x4-fast", {"jitter": 1 / 20, "jitter_warmup": 100}, 1600,
                         "fast-jw100 with the jitter rising to 1/20 (paper: 1/30): `sr-x4-fast` before its betas")
        c["fast-j15"] = ("sr-x4-fast", {"jitter": 1 / 15}, 1600, "`sr-x4-fast` with the jitter rising to 1/15")
        # bfloat16 autocast where the CPU has it natively (AVX512-BF16 here): 1.6x per step at 128 px in
        # benchmarks.speed, 1.2x within a fit
        c["fast-bf16"] = ("sr-x4-fast", {"precision": "auto"}, 1600,
                          "`sr-x4-fast` in bfloat16 autocast (`precision=\"auto\"`: bf16 on this CPU)")
        # a narrower full-size level: its decoder convolution is half of the network's arithmetic
        for widths in ((16, 32, 64, 64), (8, 32, 64, 64), (16, 16, 64, 64), (16, 32, 64, 128), (16, 32, 64, 64, 64)):
            name = "fast-jw100-" + "-".join(map(str, widths))
            c[name] = ("sr-x4-fast", {"jitter": 1 / 30, "jitter_warmup": 100, "network": _net(
                channels_down=widths, channels_up=widths, channels_skip=(4,) * len(widths))}, 1600,
                f"fast-jw100 on skip {'/'.join(map(str, widths))}")
        # Adam's memories (PyTorch's default betas 0.9 / 0.999, as the paper): shorter ones
        for b1, b2 in ((0.9, 0.99), (0.8, 0.95), (0.8, 0.9), (0.8, 0.8), (0.7, 0.9)):
            c[f"fast-b{b1 * 10:.0f}-{b2 * 100:.0f}"] = ("sr-x4-fast", {"betas": (b1, b2)}, 1600,
                                                         f"`sr-x4-fast` with Adam's betas {b1:g}, {b2:g}")
        # the jitter again, with Adam's betas 0.8 / 0.9 (sr-x4-fast since fast-b8-90)
        c["fast-b-j30"] = ("sr-x4-fast", {"jitter": 1 / 30, "betas": (0.8, 0.9)}, 1000,
                           "`sr-x4-fast` (betas 0.8, 0.9) with the jitter rising to the paper's 1/30")
        c["fast-b-jw50"] = ("sr-x4-fast", {"jitter_warmup": 50, "betas": (0.8, 0.9)}, 1000,
                            "`sr-x4-fast` (betas 0.8, 0.9) with the jitter rising over 50 steps")
        # both, and a level between (rerun with the allocator tuned, after the small network moved to
        # channels-last: fast-search-sr-rerun.md)
        c["fast-b-j30-jw50"] = ("sr-x4-fast", {"jitter": 1 / 30, "jitter_warmup": 50, **SHIPPED_BETAS}, 1000,
                                "`sr-x4-fast` with the jitter rising to the paper's 1/30 over 50 steps")
        c["fast-b-j25"] = ("sr-x4-fast", {"jitter": 1 / 25, **SHIPPED_BETAS}, 1000,
                           "`sr-x4-fast` with the jitter rising to 1/25")
        # a slower rise to 1/20: little jitter while the fit climbs (as the lower levels, which climb
        # sooner), sr-x4-fast's full level for the rest (which ends higher)
        for warm in (200, 300):
            c[f"fast-b-jw{warm}"] = ("sr-x4-fast", {"jitter_warmup": warm, **SHIPPED_BETAS}, 1000,
                                     f"`sr-x4-fast` with the jitter rising to 1/20 over {warm} steps")
        # the learning rate again, with the betas 0.8 / 0.9 (lr 0.02 was slower with PyTorch's betas)
        for rate in (0.007, 0.015):
            c[f"fast-b-lr{rate * 1000:03.0f}"] = ("sr-x4-fast", {"lr": rate, **SHIPPED_BETAS}, 1000,
                                                  f"`sr-x4-fast` with the learning rate {rate:g} (0.01)")
        # a shallower input: the first convolutions and the per-step jitter (drawn for every input
        # channel: ~5 % of a step at 32) cost less
        for depth in (8, 16):
            c[f"fast-b-in{depth}"] = ("sr-x4-fast", {"input_depth": depth, **SHIPPED_BETAS}, 1000,
                                      f"`sr-x4-fast` with {depth} input channels (the paper's 32)")
        # a shorter average lags less behind a rising fit (0.99 with warm-up: ~(10 + step) / 9 steps early on)
        c["fast-ema98"] = ("sr-x4-fast", {"ema": 0.98, **SHIPPED_BETAS}, 1000,
                           "`sr-x4-fast` with the average's weight 0.98 "
                           "(warm-up as before)")
        # channel counts that suit the CPU kernels: channels-last BatchNorm runs 2-3x slower per channel
        # when the count is not a multiple of 16 (the merges' 4 + 32 and 4 + 64); 16 skip channels: 48, 80
        c["fast-skip16"] = ("sr-x4-fast", {"network": _net(channels_down=(32, 32, 64, 64), channels_up=(
            32, 32, 64, 64), channels_skip=(16,) * 4), **SHIPPED_BETAS}, 1000,
            "`sr-x4-fast` with 16 skip channels (paper: 4)")
        # the narrower full-size level again, with sr-x4-fast's jitter (rising to 1/20)
        c["fast-16-32-64-64"] = ("sr-x4-fast", {"network": _net(channels_down=(16, 32, 64, 64), channels_up=(
            16, 32, 64, 64), channels_skip=(4, 4, 4, 4))}, 1600, "`sr-x4-fast` on skip 16/32/64/64")
    if task == "inpaint":  # blind-spot fits (presets.py, inpaint-blindspot): share of known pixels shown
        bs = "inpaint-blindspot"
        c["blindspot"] = (bs, {}, 2000, f"`{bs}`: blind-spot fit, 0.8 of the known pixels shown per step "
                          "(PyTorch's betas, as the preset was then)")
        for keep in (0.7, 0.5):
            c[f"blindspot-k{keep * 10:02.0f}"] = (bs, {"blindspot_keep": keep}, 2000, f"the same, {keep:g} shown")
        c["blindspot-cos01"] = (bs, {"lr_final": 0.001, "lr_decay_steps": 2000}, 2000,
                                "the same (0.8 shown), learning rate 0.01 decaying to 0.001 by step 2000 (cosine)")
        c["blindspot-16-32-64-64"] = (bs, {"network": _net(channels_down=(16, 32, 64, 64), channels_up=(16, 32, 64, 64),
                                                            channels_skip=(4, 4, 4, 4))}, 2000,
                                      "the same (0.8 shown) on skip 16/32/64/64 (a narrower full-size level)")
        c["blindspot-lr02"] = (bs, {"lr": 0.02}, 2000, "the same (0.8 shown), learning rate 0.02")
        # a longer average: the outputs of steps with other hidden pixels are an ensemble
        c["blindspot-ema998"] = (bs, {"ema": 0.998}, 2000, "the same (0.8 shown), average weight 0.998 "
                                 "(with warm-up: 1 - 9 / (10 + step) up to step 4490)")
        # with Adam's betas 0.8 / 0.9 (inpaint-blindspot since blindspot-b8-90): more pixels shown, a wider network
        c["blindspot-b-k09"] = (bs, {"blindspot_keep": 0.9, "betas": (0.8, 0.9)}, 2000,
                                "`inpaint-blindspot` (betas 0.8, 0.9), 0.9 shown")
        wide = _net(channels_down=(48, 48, 96, 96), channels_up=(48, 48, 96, 96), channels_skip=(4, 4, 4, 4))
        c["blindspot-b-48"] = (bs, {"betas": (0.8, 0.9), "network": wide}, 2000,
                               "`inpaint-blindspot` (betas 0.8, 0.9) on skip 48/48/96/96")
        for b1, b2 in ((0.9, 0.99), (0.8, 0.9)):  # Adam's memories, as sr-x4-fast's (fast-b8-90)
            c[f"blindspot-b{b1 * 10:.0f}-{b2 * 100:.0f}"] = (bs, {"betas": (b1, b2)}, 2000,
                                                              f"the same (0.8 shown), Adam's betas {b1:g}, {b2:g}")
        # more channels where they are cheap (the levels below full size)
        for widths in ((32, 64, 128, 128), (32, 32, 64, 64, 128)):
            c["blindspot-" + "-".join(map(str, widths))] = (bs, {"network": _net(
                channels_down=widths, channels_up=widths, channels_skip=(4,) * len(widths)), **SHIPPED_BETAS}, 2000,
                f"`inpaint-blindspot` on skip {'/'.join(map(str, widths))}")
        # the unshown pixels filled from the shown ones (normalised convolution) instead of zero
        c["blindspot-fill"] = (bs, {"blindspot_fill": True}, 2000,
                               "`inpaint-blindspot`, its input's unshown pixels filled from the shown ones")
        c["blindspot-skip16"] = (bs, {"network": _net(channels_down=(32, 32, 64, 64), channels_up=(32, 32, 64, 64),
                                                       channels_skip=(16,) * 4), **SHIPPED_BETAS}, 2000,
                                 "`inpaint-blindspot` with 16 skip channels (paper: 4; multiples of 16 suit the CPU "
                                 "kernels)")
        # wider levels with 16 skip channels (every BatchNorm's channel count then a multiple of 16, unlike
        # blindspot-b-48's 52 and 100): a higher ceiling for the crops the small network stops short on
        for widths in ((48, 48, 96, 96), (48, 48, 64, 64)):
            c["blindspot-s16-" + "-".join(map(str, widths))] = (bs, {"network": _net(
                channels_down=widths, channels_up=widths, channels_skip=(16,) * 4), **SHIPPED_BETAS}, 2000,
                f"`inpaint-blindspot` (16 skip channels) on skip {'/'.join(map(str, widths))}")
        # nearest-neighbour upsampling (the paper's text and hole networks'; inpaint-small keeps
        # restoration.ipynb's bilinear), which lifted the text task's fits (fast-search-inpaint-text.md)
        c["blindspot-nearest"] = (bs, {"network": _net(
            channels_down=(32, 32, 64, 64), channels_up=(32, 32, 64, 64), channels_skip=(16,) * 4,
            upsample="nearest")}, 2000,
            "`inpaint-blindspot` with nearest-neighbour upsampling (restoration.ipynb: bilinear)")
        # Self2Self's data augmentation (objectives.BlindSpot's flips)
        c["blindspot-flips"] = (bs, {"blindspot_flips": True, **SHIPPED_BETAS}, 2000,
                                "`inpaint-blindspot` (betas 0.8, 0.9) with "
                                "Self2Self's flips (input flipped at random each step, output flipped back)")
        # the architecture's other knobs (networks.NetworkConfig), on inpaint-blindspot as shipped: a
        # 3x3 skip branch (a full-size path that sees each pixel's neighbours; paper: 1x1), 5x5
        # decoder convolutions, ELU (smooth) instead of LeakyReLU, 2x2 average pooling after a
        # stride-1 conv instead of a stride-2 conv
        for key, change, what in (("skipk3", {"filter_skip": 3}, "a 3x3 skip branch (paper: 1x1)"),
                                  ("up5", {"filter_up": 5}, "5x5 decoder convolutions (paper: 3x3)"),
                                  ("elu", {"activation": "elu"}, "ELU instead of LeakyReLU"),
                                  ("avgdown", {"downsample": "avg"}, "conv then 2x2 average pooling (paper: "
                                                                     "stride-2 conv)")):
            c[f"blindspot-{key}"] = (bs, {"network": _net(
                channels_down=(32, 32, 64, 64), channels_up=(32, 32, 64, 64), channels_skip=(16,) * 4, **change),
                **SHIPPED_BETAS}, 2000, f"`inpaint-blindspot` with {what}")
        # fewer known pixels shown as the fit goes on (fitting.blindspot_keep_at): the first fill
        # from most of them, then more hidden ones scored per step
        for final, ramp in ((0.6, 2000), (0.4, 2000), (0.4, 1000), (0.2, 2000)):
            c[f"blindspot-keep{final * 10:02.0f}-r{ramp}"] = (bs, {
                "network": _net(channels_down=(32, 32, 64, 64), channels_up=(32, 32, 64, 64), channels_skip=(16,) * 4),
                "blindspot_keep_final": final, "blindspot_keep_steps": ramp, **SHIPPED_BETAS}, 2000,
                f"`inpaint-blindspot` (as blindspot-skip16), the share shown falling from 0.8 to {final:g} over "
                f"{ramp} steps")
        # Self2Self's dropout before each decoder convolution (NetworkConfig.dropout): each step also
        # fits a thinned network, and the running average is over those too
        for p in (0.1, 0.3):
            c[f"blindspot-drop{p * 10:02.0f}"] = (bs, {
                "network": _net(channels_down=(32, 32, 64, 64), channels_up=(32, 32, 64, 64), channels_skip=(16,) * 4,
                                dropout=p),
                "blindspot_keep_final": 0.4, "blindspot_keep_steps": 2000, **SHIPPED_BETAS}, 2000,
                f"`inpaint-blindspot` with dropout {p:g} before each decoder convolution (Self2Self: 0.3)")
    if task == "denoise":  # DIP-SURE (presets.py, denoise-sure), the default up to sigma 30
        c["sure"] = ("denoise-sure", {}, 1000, "`denoise-sure`: SURE loss, the noisy image as input")
        for b1, b2 in ((0.9, 0.99), (0.8, 0.9)):
            c[f"sure-b{b1 * 10:.0f}-{b2 * 100:.0f}"] = ("denoise-sure", {"betas": (b1, b2)}, 1000,
                                                         f"`denoise-sure` with Adam's betas {b1:g}, {b2:g}")
        # 16 skip channels (inpaint-blindspot's since blindspot-skip16): a bigger path for the noisy input
        c["sure-skip16"] = ("denoise-sure", {"network": _net(channels_down=(32, 32, 64, 64), channels_up=(
            32, 32, 64, 64), channels_skip=(16,) * 4)}, 1000, "`denoise-sure` with 16 skip channels (paper: 4)")
        # the divergence's finite-difference step (Jo et al.'s 1e-3; the default 5e-3 since these runs,
        # so `sure` was 1e-3 in them): from 5e-3 up it stands above TF32's rounding on a GPU (which
        # swamps 1e-3, fitting._NoTF32); here, in exact fp32, its bias
        for eps in (1e-3, 3e-3, 5e-3, 1e-2):
            c[f"sure-eps{eps * 1000:g}e-3"] = ("denoise-sure", {"sure_epsilon": eps}, 1000,
                                               f"`denoise-sure`, divergence step {eps:g} (Jo et al.: 1e-3)")
        # sr-x4-fast's Adam memories (0.8, 0.9) reach the peak ~3x sooner on a whole photo but then
        # collapse (sure-whole-F16_GT-sure-b8-90.json): the learning rate decayed by a cosine over
        # the steps, to freeze the fit near its peak
        for n in (200, 300):
            c[f"sure-b8-90-cos{n}"] = ("denoise-sure", {"betas": (0.8, 0.9), "lr_final": 0.0005, "lr_decay_steps": n,
                                                        "iters": n}, n,
                                       f"`denoise-sure` with Adam's betas 0.8, 0.9, the learning rate 0.01 decaying "
                                       f"to 0.0005 by step {n} (cosine)")
        for b1, b2 in ((0.9, 0.99), (0.85, 0.95)):  # gentler memories, the same decay
            c[f"sure-b{b1 * 100:.0f}-{b2 * 100:.0f}-cos300"] = ("denoise-sure", {
                "betas": (b1, b2), "lr_final": 0.0005, "lr_decay_steps": 300, "iters": 300}, 300,
                f"`denoise-sure` with Adam's betas {b1:g}, {b2:g}, the learning rate 0.01 decaying to 0.0005 by "
                "step 300 (cosine)")
        # a wider network (every channel count a multiple of 16): fewer steps on a whole photo, where
        # the small network needs ~500 to the GPU target's bar (benchmarks.sure whole --candidate)?
        c["sure-48-96"] = ("denoise-sure", {"network": _net(channels_down=(48, 48, 96, 96), channels_up=(
            48, 48, 96, 96), channels_skip=(16,) * 4)}, 1000, "`denoise-sure` on skip 48/48/96/96, 16 skip channels")
        # the divergence's probe every second step (weighted 2x), the data term alone between: a
        # step then costs one network pass in two instead of two (a batch of two)
        for k, nth in ((2, "2nd"), (3, "3rd"), (4, "4th")):
            c[f"sure-every{k}"] = ("denoise-sure", {"sure_every": k}, 1000,
                                   f"`denoise-sure`, the divergence every {nth} step (weighted {k}x)")
    if task.startswith(("inpaint-text", "inpaint-strokes")):  # sr-x4-fast's fitting (as deblock-fast's), the paper's jitter
        fast = {"betas": (0.8, 0.9), "ema_warmup": True, "backtrack": False}
        c["small-b"] = (small, fast, 1600, f"`{small}` with Adam's betas 0.8, 0.9")
        fast_ema = dict(fast, input_depth=16, ema=0.99, jitter_warmup=100)
        c["fast"] = (small, fast_ema, 1600,
                     f"`{small}` with `sr-x4-fast`'s fitting: 16 input channels, averaged outputs (0.99, warm-up), "
                     "betas 0.8, 0.9, the jitter (the paper's 0.03) rising over 100 steps")

        def text_net(skip: int, upsample: str = "nearest"):
            return _net(channels_down=(32, 32, 64, 64), channels_up=(32, 32, 64, 64), channels_skip=(skip,) * 4,
                        upsample=upsample)

        for skip in (16, 32, 64):
            c[f"fast-skip{skip}"] = (small, dict(fast_ema, network=text_net(skip)), 1600, f"fast with {skip} skip "
                                     "channels" + (" (the paper's text network: 128)" if skip == 16 else ""))
        c["fast-skip16-last"] = (small, dict(fast_ema, ema=None, network=text_net(16)), 1600,
                                 "fast-skip16 returning the last output (no running average; the paper's text recipe)")
        c["fast-bilinear"] = (small, dict(fast_ema, network=text_net(4, "bilinear")), 1600,
                              "fast with bilinear upsampling (the paper's text network: nearest)")
        # the blind-spot fit of inpaint-blindspot (its network, betas and falling share), hiding
        # squares instead of single pixels (objectives.BlindSpot's block): the network learns to fill
        # holes about as wide as text's strokes
        shipped = {"network": _net(channels_down=(32, 32, 64, 64), channels_up=(32, 32, 64, 64),
                                   channels_skip=(16,) * 4),
                   "blindspot_keep_final": 0.4, "blindspot_keep_steps": 2000, **SHIPPED_BETAS}  # inpaint-blindspot's
        for block in (1, 3, 5, 7) + ((9, 11, 15, 19, 25) if task == "inpaint-strokes" else ()):
            what = f"`inpaint-blindspot` hiding {block}x{block} squares"
            c[f"blindspot-block{block}"] = ("inpaint-blindspot", dict(shipped, blindspot_block=block), 2000,
                                            what + (" (single pixels: as shipped)" if block == 1 else ""))
        # ... hiding copies of the mask's own holes, shifted and flipped at random (BlindSpot's shape)
        c["blindspot-maskshape"] = ("inpaint-blindspot", dict(shipped, blindspot_shape="mask"), 2000,
                                    "`inpaint-blindspot` hiding shifted, flipped copies of the mask's holes")
        if task == "inpaint-strokes":  # steadier ends: a falling learning rate, a longer average
            for name in ("blindspot-block7", "blindspot-block15", "blindspot-maskshape"):
                base, changes, steps, what = c[name]
                c[f"{name}-cos"] = (base, dict(changes, lr_final=0.001, lr_decay_steps=2000), steps,
                                    what + ", learning rate 0.01 decaying to 0.001 by step 2000 (cosine)")
                c[f"{name}-ema998"] = (base, dict(changes, ema=0.998), steps, what + ", average weight 0.998")
            # a fifth level (128 channels): twice the reach of the network's context
            five = _net(channels_down=(32, 32, 64, 64, 128), channels_up=(32, 32, 64, 64, 128), channels_skip=(16,) * 5)
            for name in ("blindspot-block7-cos", "blindspot-block15-cos"):
                base, changes, steps, what = c[name]
                c[f"{name}-l5"] = (base, dict(changes, network=five), steps, what + ", a fifth level of 128 channels")
    if task.startswith("deblock"):  # sr-x4-fast's fitting recipe (presets.py) on deblock-small, and pieces of it
        fast = {"betas": (0.8, 0.9), "ema_warmup": True, "backtrack": False}
        c["small-b"] = (small, fast, 1600, f"`{small}` with Adam's betas 0.8, 0.9 and the average's warm-up")
        c["fast"] = (small, dict(fast, input_depth=16, jitter=1 / 20, jitter_warmup=100), 1600,
                     "the same, 16 input channels, the jitter rising to 1/20 over 100 steps (`sr-x4-fast`'s recipe)")
        c["fast-j30"] = (small, dict(fast, input_depth=16, jitter=1 / 30, jitter_warmup=100), 1600,
                         "the same, the jitter rising to the paper's 1/30")
        c["paper-b"] = (ref, fast, 2400, f"`{ref}` with Adam's betas 0.8, 0.9 and the average's warm-up")
    # the candidates on sr-x4-fast and inpaint-blindspot were measured before those presets took Adam's
    # betas 0.8 / 0.9; those that do not set the betas keep PyTorch's (0.9 / 0.999), as then (the
    # later ones set the presets' betas explicitly: SHIPPED_BETAS)
    for name, (base, changes, steps, what) in list(c.items()):
        if base in ("sr-x4-fast", "inpaint-blindspot") and "betas" not in changes:
            c[name] = (base, {"betas": (0.9, 0.999), **changes}, steps, what)
    # and inpaint-blindspot had four skip channels until blindspot-skip16 (16): those that do not set a
    # network keep the four, as measured
    for name, (base, changes, steps, what) in list(c.items()):
        if base == "inpaint-blindspot" and "network" not in changes:
            c[name] = (base, {"network": _net(channels_down=(32, 32, 64, 64), channels_up=(32, 32, 64, 64),
                                              channels_skip=(4,) * 4), **changes}, steps, what)
    # and inpaint-blindspot showed a constant 0.8 of the known pixels until blindspot-keep04-r2000
    # (0.8 falling to 0.4): those that do not set the schedule keep the constant share, as measured
    for name, (base, changes, steps, what) in list(c.items()):
        if base == "inpaint-blindspot" and "blindspot_keep_final" not in changes:
            c[name] = (base, {"blindspot_keep_final": None, **changes}, steps, what)
    # and sr-x4-fast had the paper's 32 input channels until fast-b-in16 (16): those that do not set
    # them keep the 32, as measured
    for name, (base, changes, steps, what) in list(c.items()):
        if base == "sr-x4-fast" and "input_depth" not in changes:
            c[name] = (base, {"input_depth": 32, **changes}, steps, what)
    # Deep Decoder (Heckel & Hand 2019): 1x1 convolutions, bilinear upsampling, no jitter
    for width, levels in ((64, 5), (64, 4), (128, 4)):
        dd = {"network": _dd(width, levels), "input_depth": width, "jitter": 0.0, "backtrack": False}
        what = f"Deep Decoder, {width} channels, {levels} upsamplings"
        if (width, levels) == (64, 4):
            c[f"dd{width}-l{levels}"] = (small, dict(dd, ema=None), 2000, what + ", last output")
        c[f"dd{width}-l{levels}-ema"] = (small, dict(dd, ema_warmup=True), 2000,
                                          what + ", running average (with warm-up)")
    return c


def _dd(width, levels):
    from deepprior.networks import decoder_config

    return decoder_config(width, levels)


def preset_of(task: str, name: str):
    """The :class:`~deepprior.presets.Preset` of candidate ``name`` of ``task`` (or of the preset
    ``name``, for a shipped recipe next to the candidates)."""
    import deepprior

    found = candidates(task)
    if name not in found and name in deepprior.PRESETS:
        return deepprior.get_preset(name)
    base, changes, _, _ = found[name]
    return deepprior.get_preset(base).replace(**changes)


def resolve(task: str, spec):
    """``search:NAME`` -> that candidate's preset (:func:`preset_of`); anything else as given (a
    preset's name, "default", a Preset).  For the benchmarks that confirm a candidate elsewhere."""
    if isinstance(spec, str) and spec.startswith("search:"):
        return preset_of(task, spec.removeprefix("search:"))
    return spec


def record(task: str, name: str, image: str) -> dict:
    """Fit one candidate on one tune image (as benchmarks.fast fits its crops)."""
    steps = candidates(task)[name][2]
    c = curve(TASKS[task], image, preset_of(task, name), steps)
    return {"task": task, "candidate": name, "image": image, "times": [round(t, 3) for t in c["times"]],
            "values": [round(float(v), 4) for v in c["values"]]}


def load() -> dict:
    return json.loads(CACHE.read_text()) if CACHE.exists() else {}


def cmd_run(args) -> None:
    cache = load()
    names = args.candidates or list(candidates(args.task))
    for name in names:
        for image in TUNE[args.task]:
            key = f"{args.task}|{name}|{image}"
            if key in cache and not args.force:
                continue
            t0 = time.perf_counter()
            cache[key] = record(args.task, name, image) | {"tuned": args.tune_allocator}
            CACHE.parent.mkdir(parents=True, exist_ok=True)
            CACHE.write_text(json.dumps(cache))
            v = cache[key]["values"]
            print(f"{key}: best {max(v):.2f} dB @ {v.index(max(v)) + 1}, {time.perf_counter() - t0:.0f} s",
                  flush=True)


def time_to(rec: dict, target: float) -> tuple[float, int] | None:
    for i, v in enumerate(rec["values"]):
        if v >= target:
            return rec["times"][i], i + 1
    return None


def cmd_report(args) -> None:
    cache = load()
    images = TUNE[args.task]
    only = f" --candidates {' '.join(args.candidates)}" if args.candidates else ""
    tuned = " --tune-allocator" if args.tune_allocator else ""
    out = RESULTS / (args.out or f"fast-search-{args.task}.md")
    lines = [f"Reproduce: `python -m benchmarks.fast_search run --task {args.task}{only}{tuned} && python -m "
             f"benchmarks.fast_search report --task {args.task}{only}{' --out ' + out.name if args.out else ''}` "
             f"(tune images {', '.join(images)}, 128 px crops, the quick tier's degradation "
             f"and seeds; per cell: the time and step at which the candidate's returned image comes within "
             f"{MARGIN_DB} dB of the paper preset's best on that image, and the speed-up over the paper preset's time "
             "to its best; or, when it never does, its peak; then its milliseconds per step; where the paper preset "
             "was not run on the tune images (inpainting: 11000 steps, ~40 min each), the PSNR at steps 250, 500 and "
             "1000 and the peak).", "",
             "| candidate | " + " | ".join(images) + " |", "|---|" + "---|" * len(images)]
    for name, (_, _, _, what) in candidates(args.task).items():
        if args.candidates and name not in args.candidates:
            continue
        if not any(f"{args.task}|{name}|{image}" in cache for image in images):
            continue  # not run for this task
        cells = []
        for image in images:
            ref = cache.get(f"{args.task}|paper|{image}")
            rec = cache.get(f"{args.task}|{name}|{image}")
            if rec is None:
                cells.append("not run")
                continue
            if ref is None:  # no paper run on this image (inpainting's is 11000 steps): how fast it rises
                v = rec["values"]
                k = v.index(max(v))
                early = ", ".join(f"{v[n - 1]:.2f} @ {n}" for n in (250, 500, 1000) if n < len(v))
                cells.append(f"{early}; peak {v[k]:.2f} dB @ {k + 1} in {rec['times'][k]:.0f} s; "
                             f"{1000 * rec['times'][-1] / len(v):.0f} ms/step")
                continue
            best = max(ref["values"])
            k = ref["values"].index(best)
            per = 1000 * rec["times"][-1] / len(rec["times"])
            if name == "paper":
                cells.append(f"best {best:.2f} dB @ {k + 1} in {ref['times'][k]:.0f} s; {per:.0f} ms/step")
                continue
            hit = time_to(rec, best - MARGIN_DB)
            if hit is None:
                cells.append(f"never (peak {max(rec['values']):.2f} dB); {per:.0f} ms/step")
            else:
                cells.append(f"{hit[0]:.0f} s @ {hit[1]}: **{ref['times'][k] / hit[0]:.1f}x**; {per:.0f} ms/step")
        lines.append(f"| {name}: {what} | " + " | ".join(cells) + " |")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cmd_seeds(args) -> None:
    """Several seeds averaged: steps until the mean of N independent fits' images reaches the bar.

    On a CPU N fits cost N times one; on a GPU a batch of N small fits costs about one (a step is
    launch-bound there, ``benchmarks/results/gpu.md``), so fewer *steps* to the bar would be a
    speed-up there.  Each fit is the candidate preset with its own seed on the same degraded crop;
    the returned image of every fit is kept every ``--every`` steps.
    """
    import numpy as np

    import deepprior

    task = TASKS[args.task]
    cache = load()
    preset = deepprior.get_preset(args.preset or SMALL[args.task])
    # the paper preset's best on the tune images gives the bar where it was run (not for inpainting:
    # 11000 steps each); else each cell gives the mean's PSNR at a few steps and its peak
    refs = {image: cache.get(f"{args.task}|paper|{image}") for image in TUNE[args.task]}
    with_bar = all(refs.values())
    marks = [m for m in (250, 500, 1000, 1500, 2000, 3000) if m <= args.steps and m % args.every == 0]
    what = (f"Steps until the mean reaches the bar (the paper preset's best minus {MARGIN_DB} dB)" if with_bar else
            "The mean's PSNR at steps " + ", ".join(map(str, marks)) + " and its peak")
    lines = [f"Reproduce: `python -m benchmarks.fast_search seeds --task {args.task} --seeds {args.seeds} "
             f"--steps {args.steps}" + (f" --preset {args.preset}" if args.preset else "")
             + (" --tune-allocator" if args.tune_allocator else "") + f"` (tune images, 128 px crops, the quick "
             f"tier's degradation; `{preset.name}` fitted with {args.seeds} seeds on the same degraded crop; the "
             f"mean of the first N fits' returned images, every {args.every} steps). {what} (a GPU runs the N fits "
             "as one batch; a CPU pays N times).", "",
             "| image | " + ("bar (dB) | " if with_bar else "")
             + " | ".join(f"{n} seed{'s' * (n > 1)}: " + ("steps (peak dB)" if with_bar else "dB")
                          for n in range(1, args.seeds + 1))
             + " |", "|---|" + ("---:|" if with_bar else "") + "---:|" * args.seeds]
    for image in TUNE[args.task]:
        job, case = make_case(task, image)
        truth = np.asarray(case.truth, dtype=np.float64)
        runs = []
        for k in range(args.seeds):
            kept = []

            def keep(step, state, kept=kept):
                if step % args.every == 0:
                    x = state.average if state.average is not None else state.output
                    x = x[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float64)
                    kept.append(x.reshape(truth.shape))  # (H, W) for a grey image

            deepprior.run_task(paper.TABLES[task.table].task, case.degraded, preset=preset, iters=args.steps,
                               rng=job.seed + 1000 * k, device="cpu", callback=keep, stop="fixed",
                               **case.dip_kwargs)
            runs.append(kept)
        cells = []
        for n in range(1, args.seeds + 1):
            dbs = [psnr(np.mean([r[i] for r in runs[:n]], axis=0), truth) for i in range(len(runs[0]))]
            if with_bar:
                bar = max(refs[image]["values"]) - MARGIN_DB
                hit = next((i for i, d in enumerate(dbs) if d >= bar), None)
                cells.append(f"{'never' if hit is None else (hit + 1) * args.every} ({max(dbs):.2f})")
            else:
                at = "".join(f"{dbs[m // args.every - 1]:.2f} @ {m}, " for m in marks)
                cells.append(f"{at}peak {max(dbs):.2f}")
        bar_cell = f"{max(refs[image]['values']) - MARGIN_DB:.2f} | " if with_bar else ""
        lines.append(f"| {image} | {bar_cell}" + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    out = RESULTS / (args.out or f"fast-seeds-{args.task}.md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cmd_final(args) -> None:
    """Where candidates end: PSNR of the returned image at a few steps and at ``--steps``, on the
    given images (e.g. held-out crops, once a candidate has been chosen on the tune images: a
    preset that reaches the paper's quality sooner may still end lower, which is what a user gets
    from the preset's full run)."""
    marks = [n for n in (300, 500, 700, 1000) if n < args.steps] + [args.steps]
    cmd = (f"python -m benchmarks.fast_search final --task {args.task} --candidates {' '.join(args.candidates)} "
           f"--images {' '.join(args.images)} --steps {args.steps}" + (" --tune-allocator" if args.tune_allocator
                                                                       else ""))
    lines = [f"Reproduce: `{cmd}` (128 px crops, the quick tier's degradation and seeds; PSNR of the returned "
             "image, RGB, data range 1, untrimmed, at the steps given; the peak and its step; the degraded "
             "input's PSNR where it is the output's size).", "",
             "| image | candidate | input | " + " | ".join(f"step {n}" for n in marks) + " | peak |",
             "|---|---|" + "---:|" * (len(marks) + 2)]
    for image in args.images:
        _, case = make_case(TASKS[args.task], image)
        same = case.degraded.shape == case.truth.shape
        given = f"{psnr(case.degraded, case.truth):.2f}" if same else "–"
        for name in args.candidates:
            v = curve(TASKS[args.task], image, preset_of(args.task, name), args.steps)["values"]
            k = v.index(max(v))
            lines.append(f"| {image} | {name} | {given} | " + " | ".join(f"{v[n - 1]:.2f}" for n in marks)
                         + f" | {v[k]:.2f} @ {k + 1} |")
            print(lines[-1], flush=True)
    out = RESULTS / (args.out or f"fast-search-{args.task}-final.md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cmd_baselines(args) -> None:
    """The task's classical baselines (benchmarks.paper's, e.g. biharmonic inpainting) on the given
    images, for the final tables to be read against (seconds: no fit)."""
    task = TASKS[args.task]
    names = paper.TABLES[task.table].baselines
    cmd = f"python -m benchmarks.fast_search baselines --task {args.task} --images {' '.join(args.images)}"
    lines = [f"Reproduce: `{cmd}` (the crops of `final`; PSNR, RGB, data range 1, untrimmed).", "",
             "| image | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for image in args.images:
        _, case = make_case(task, image)
        cells = []
        for name in names:
            try:
                cells.append(f"{psnr(paper.BASELINES[name](case)[0], case.truth):.2f}")
            except ImportError as e:  # e.g. OpenCV's Telea without OpenCV installed
                cells.append(f"– (no {e.name or 'module'})")
        lines.append(f"| {image} | " + " | ".join(cells) + " |")
    out = RESULTS / (args.out or f"fast-search-{args.task}-baselines.md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--task", default="denoise", choices=list(TUNE))
    r.add_argument("--candidates", nargs="*")
    r.add_argument("--force", action="store_true")
    r.add_argument("--tune-allocator", action="store_true", help="tune the C allocator first, as the CLI does")
    p = sub.add_parser("report")
    p.add_argument("--task", default="denoise", choices=list(TUNE))
    p.add_argument("--candidates", nargs="*", help="only these (default: every candidate run)")
    p.add_argument("--tune-allocator", action="store_true", help="say in the command line that the run was tuned")
    p.add_argument("--out", help="file name under benchmarks/results (default: fast-search-TASK.md)")
    q = sub.add_parser("seeds", help="several seeds averaged (see cmd_seeds)")
    q.add_argument("--task", default="denoise", choices=list(TUNE))
    q.add_argument("--seeds", type=int, default=3)
    q.add_argument("--steps", type=int, default=1600)
    q.add_argument("--every", type=int, default=10)
    q.add_argument("--preset", help="the preset fitted (default: the task's small preset)")
    q.add_argument("--tune-allocator", action="store_true", help="tune the C allocator first, as the CLI does")
    q.add_argument("--out", help="file name under benchmarks/results (default: fast-seeds-TASK.md)")
    f = sub.add_parser("final", help="where candidates end, on any images (see cmd_final)")
    f.add_argument("--task", default="sr", choices=list(TUNE))
    f.add_argument("--candidates", nargs="+", required=True)
    f.add_argument("--images", nargs="+", required=True)
    f.add_argument("--steps", type=int, default=1500)
    f.add_argument("--tune-allocator", action="store_true")
    f.add_argument("--out", help="file name under benchmarks/results (default: fast-search-TASK-final.md)")
    b = sub.add_parser("baselines", help="the task's classical baselines on any images (see cmd_baselines)")
    b.add_argument("--task", default="inpaint-strokes", choices=list(TUNE))
    b.add_argument("--images", nargs="+", required=True)
    b.add_argument("--out", help="file name under benchmarks/results (default: fast-search-TASK-baselines.md)")
    args = ap.parse_args(argv)
    # as the CLI runs (deepprior.runtime); report only says so, baselines fit nothing
    if args.cmd != "report" and getattr(args, "tune_allocator", False):
        from deepprior.runtime import tune_allocator

        tune_allocator()
    {"run": cmd_run, "report": cmd_report, "seeds": cmd_seeds, "final": cmd_final,
     "baselines": cmd_baselines}[args.cmd](args)


if __name__ == "__main__":
    main()
