"""Task presets: every hyperparameter of a restoration recipe, as readable data.

A :class:`Preset` is a frozen record.  The ``*-paper`` presets reproduce the official notebooks of
Ulyanov, Vedaldi and Lempitsky (github.com/DmitryUlyanov/deep-image-prior); each field says where
its value comes from.  Change a field with :meth:`Preset.replace` (the CLI's flags do exactly
that).  The presets are listed explicitly in :data:`PRESETS` (no registry, no import magic).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType

from .networks import NetworkConfig

__all__ = ["Preset", "PRESETS", "get_preset", "default_preset", "default_choices", "TASKS", "SURE_MAX_SIGMA"]

#: The tasks, as the CLI names them.
TASKS = ("denoise", "deblock", "sr", "inpaint")

PAPER_SKIP = NetworkConfig()  # 5 levels x 128, 4-channel 1x1 skips, bilinear, reflection


@dataclass(frozen=True)
class Preset:
    """One restoration recipe."""

    name: str
    task: str  # one of TASKS
    description: str
    network: NetworkConfig = field(default_factory=NetworkConfig)
    # --- the input z -------------------------------------------------------------------------
    # "noise": uniform [0, 1) x input_scale; "meshgrid": 2-channel x/y ramps; "measurement": the
    # degraded image itself (DIP-SURE, blind-spot inpainting; input_depth is then its channels)
    input: str = "noise"
    input_depth: int = 32  # channels of z (paper: 32; meshgrid forces 2)
    input_scale: float = 0.1  # paper's get_noise(var=1/10)
    jitter: float = 1.0 / 30  # std of the fresh noise added to z every step (reg_noise_std)
    jitter_kind: str = "gaussian"  # "gaussian" (paper) or "uniform" [0, jitter) (Chainer tutorial)
    # the jitter rises linearly from 0 to `jitter` over the first jitter_warmup steps (0: full from
    # the start, as the paper); a fast-preset experiment: without jitter the first steps fit the
    # coarse image sooner, with it the fit goes further (benchmarks/fast_search.py)
    jitter_warmup: int = 0
    # --- optimisation ----------------------------------------------------------------------
    lr: float = 0.01  # Adam learning rate (paper: LR = 0.01)
    # Adam's decay rates of its running averages of the gradient and of its square (paper: PyTorch's
    # defaults, 0.9 and 0.999); shorter memories let the fast presets' steps follow the fit sooner
    betas: tuple[float, float] = (0.9, 0.999)
    # "mse": the data term ||A(f(z)) - y||^2 (the paper); "sure": Stein's unbiased risk estimate for
    # Gaussian noise (objectives.Sure; needs input="measurement", sigma given or estimated);
    # "blindspot": inpainting, the network sees part of the known pixels and is scored on the others
    # (objectives.BlindSpot; needs input="measurement")
    loss: str = "mse"
    # finite-difference step of SURE's Monte-Carlo divergence (Jo et al.: 1e-3).  5e-3 is the smallest
    # that keeps TF32 on a GPU (fitting.SURE_TF32_MIN_EPSILON): on an H100, the 512x512 F16 at sigma
    # 25 came within 0.2 dB of the paper preset's best at step 646 in 7.3 s, against step 573 in
    # 11.7 s with 1e-3 in full fp32 (python -m benchmarks.gpu, run 2026-11-27-run6).  On a CPU, where
    # the step costs the same, 5e-3 did as well as 1e-3 on the tune crops (fast-search-denoise.md).
    # 1e-2 collapsed late in some fits (baboon on a CPU, F16 on the GPU): BENCHMARKS.md, "SURE".
    sure_epsilon: float = 5e-3
    # SURE's divergence probe every this many steps (weighted by it), the data term alone between
    # (objectives.Sure's every): a step without the probe runs the network on one image, not two
    sure_every: int = 1
    blindspot_keep: float = 0.8  # share of the known pixels a blind-spot fit shows the network per step
    # ... falling linearly to blindspot_keep_final over the first blindspot_keep_steps steps (None:
    # constant; fitting.blindspot_keep_at)
    blindspot_keep_final: float | None = None
    blindspot_keep_steps: int = 0
    blindspot_flips: bool = False  # a blind-spot fit sees its input flipped at random (fitting.fit)
    blindspot_fill: bool = False  # a blind-spot fit's unshown pixels filled from the shown ones, not 0
    blindspot_block: int = 1  # a blind-spot fit hides squares of this side, not single pixels (odd)
    # ... or ("mask") shifted, flipped copies of the mask's own holes (objectives.BlindSpot's shape)
    blindspot_shape: str = "squares"
    # cosine decay of the learning rate from lr to lr_final over the first lr_decay_steps steps,
    # then lr_final (None: constant, as the paper); a fast-preset experiment (benchmarks/fast_search.py)
    lr_final: float | None = None
    lr_decay_steps: int = 0
    iters: int = 3000  # number of steps; with automatic stopping (the default) the cap
    # independent fits (each its own seed: weights, z, jitter) whose returned images are averaged:
    # their errors are partly independent, so the mean is better than either (on the GPU target's
    # 512 px F16 two denoise-sure-fast fits averaged beat the better one by 0.06-0.21 dB: BENCHMARKS.md, GPU)
    fits: int = 1
    ema: float | None = 0.99  # exponential average of outputs (exp_weight); None = return last output
    # the paper starts the average at the first output and decays it by ema: the early outputs
    # (far from any image) weigh for hundreds of steps; True fades them fast (fitting.ema_weight)
    ema_warmup: bool = False
    backtrack: bool = True  # restore the last good weights when PSNR(y) falls by > backtrack_db
    backtrack_db: float = 5.0  # paper's threshold
    # network arithmetic: "fp32" (the paper); "bf16" autocasts the network to bfloat16; "auto" =
    # bf16 where the hardware has it (CUDA, CPUs with AVX512-BF16/AMX), else fp32
    precision: str = "fp32"
    # --- task specifics --------------------------------------------------------------------
    sr_kernel: str = "lanczos2"  # super-resolution forward model kernel (paper: KERNEL_TYPE='lanczos2')
    # images larger than this (either side) are fitted in overlapping tiles of this side, one fit of
    # `iters` steps per tile (deepprior.tiles; run_task, the CLI and the app; the CLI's --tile 0 fits
    # them whole): for a recipe whose step count was chosen on crops of this size and that fits a
    # whole photo far more slowly per step (deblock-fast).  None: the whole image (the paper's way)
    tile: int | None = None

    def __post_init__(self):  # a misspelt choice fails here, not deep inside a fit (or silently)
        for name, allowed in [("task", TASKS), ("input", ("noise", "meshgrid", "measurement")),
                              ("jitter_kind", ("gaussian", "uniform")), ("loss", ("mse", "sure", "blindspot")),
                              ("precision", ("fp32", "bf16", "auto")), ("blindspot_shape", ("squares", "mask")),
                              ("sr_kernel", ("lanczos2", "lanczos3", "bicubic"))]:
            if getattr(self, name) not in allowed:
                raise ValueError(f"preset {self.name!r}: {name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if not (isinstance(self.fits, int) and self.fits >= 1):
            raise ValueError(f"preset {self.name!r}: fits must be a positive integer, got {self.fits!r}")
        if self.blindspot_shape == "mask" and self.blindspot_block != 1:
            raise ValueError(f"preset {self.name!r}: blindspot_block is for blindspot_shape='squares'; "
                             "set blindspot_block=1 with blindspot_shape='mask'")

    def replace(self, **changes) -> "Preset":
        """A copy with some fields changed."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown preset field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _paper(name, task, description, **kw) -> Preset:
    return Preset(name=name, task=task, description=description, **kw)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        # denoising.ipynb: get_net(32, 'skip', skip_n33d=128, skip_n33u=128, skip_n11=4,
        # num_scales=5, upsample_mode='bilinear'); reg_noise_std=1/30; LR=0.01; exp_weight=0.99;
        # num_iter=3000; backtracking when PSNR(noisy) drops by 5 dB.
        _paper(
            "denoise-paper",
            "denoise",
            "Gaussian denoising, the paper's sigma=25 recipe (denoising.ipynb)",
            network=PAPER_SKIP,
            jitter=1.0 / 30,
            iters=3000,
        ),
        # denoising.ipynb, the JPEG (snail) branch: input_depth=3; skip with channels
        # 8/16/32/64/128 and skips 0/0/0/4/4; num_iter=2400; otherwise as denoising.
        _paper(
            "deblock-paper",
            "deblock",
            "JPEG artifact removal, the paper's snail recipe (denoising.ipynb)",
            network=NetworkConfig(
                channels_down=(8, 16, 32, 64, 128),
                channels_up=(8, 16, 32, 64, 128),
                channels_skip=(0, 0, 0, 4, 4),
            ),
            input_depth=3,
            iters=2400,
        ),
        # super-resolution.ipynb, factor 4: skip 5x128, skips 4, bilinear; reg_noise_std=0.03;
        # num_iter=2000; lanczos2 downsampler; no averaging: the output is net(z) after the loop.
        _paper(
            "sr-x4-paper",
            "sr",
            "Super-resolution x4 (also used for x2), the paper's recipe (super-resolution.ipynb)",
            network=PAPER_SKIP,
            jitter=0.03,
            iters=2000,
            ema=None,
            backtrack=False,
        ),
        # super-resolution.ipynb, factor 8: num_iter=4000; reg_noise_std=0.05.
        _paper(
            "sr-x8-paper",
            "sr",
            "Super-resolution x8, the paper's recipe (super-resolution.ipynb)",
            network=PAPER_SKIP,
            jitter=0.05,
            iters=4000,
            ema=None,
            backtrack=False,
        ),
        # inpainting.ipynb, kate (text): noise depth 32; skip 5x128 with 128-channel skips,
        # nearest upsampling; reg_noise_std=0.03; num_iter=6001 (6000 steps); LR=0.01.
        _paper(
            "inpaint-text-paper",
            "inpaint",
            "Inpainting of text, scratches and thin strokes (inpainting.ipynb, kate)",
            network=NetworkConfig(channels_skip=(128,) * 5, upsample="nearest"),
            jitter=0.03,
            iters=6000,
            ema=None,
            backtrack=False,
        ),
        # inpainting.ipynb, vase (large hole): INPUT='meshgrid' (depth 2); skip 5x128 with no skip
        # connections, nearest upsampling; reg_noise_std=0.03; num_iter=5001 (5000 steps).
        _paper(
            "inpaint-hole-paper",
            "inpaint",
            "Inpainting of large holes (inpainting.ipynb, vase)",
            network=NetworkConfig(channels_skip=(0,) * 5, upsample="nearest"),
            input="meshgrid",
            input_depth=2,
            jitter=0.03,
            iters=5000,
            ema=None,
            backtrack=False,
        ),
        # restoration.ipynb (barbara, 50% missing pixels): skip 5x128, skips 4, bilinear;
        # reg_noise_std=0.03; LR=0.001; num_iter=11000.
        _paper(
            "inpaint-pixels-paper",
            "inpaint",
            "Restoration of randomly missing pixels, e.g. 50% (restoration.ipynb)",
            network=PAPER_SKIP,
            jitter=0.03,
            lr=0.001,
            iters=11000,
            ema=None,
            backtrack=False,
        ),
        # The 2017 Chainer tutorial (../shared/origin): PriorNet, uniform jitter [0, 1/30),
        # ~1000 Adam steps, MSE loss.  Offered for its users; not a default.
        _paper(
            "origin-tutorial",
            "denoise",
            "The 2017 Chainer tutorial's PriorNet and loop (zero padding, uniform jitter)",
            network=NetworkConfig(
                arch="origin", channels_skip=(4,) * 5, padding="zero", upsample="bilinear"
            ),
            jitter=1.0 / 30,
            jitter_kind="uniform",
            iters=1000,
            ema=None,
            backtrack=False,
        ),
    ]
}

# ------------------------------------------------------------------------------------------------
# Small recipes: the paper's recipe of each task on a smaller network (4 levels of 32/32/64/64
# channels, 0.29 M parameters instead of 2.2 M) with fewer steps.  Not the paper's and not the
# defaults (on average about 5x sooner than the paper's recipes to their quality for denoising and
# SR x4, short of the speed issue's 20x: BENCHMARKS.md); they make quick looks affordable on a CPU.
# Measured on a 2-core CPU on the demo image (128x128, sigma 25):
# denoise-small, 800 steps in 40 s, PSNR 20.72 -> 28.51 dB; denoise-sure, which `make demo` ran before denoise-sure-fast,
# 29.80 dB in 700 steps (59 s; 29.78 dB in 32 s with the allocator tuned, deepprior.runtime; 29.71
# dB in 28 s with deepprior.networks.BatchNorm, whose float rounding differs).
SMALL_NET = NetworkConfig(
    channels_down=(32, 32, 64, 64), channels_up=(32, 32, 64, 64), channels_skip=(4, 4, 4, 4)
)


def _small(paper: str, name: str, iters: int, **changes) -> Preset:
    p = PRESETS[paper]
    net = dataclasses.replace(SMALL_NET, upsample=p.network.upsample)
    return p.replace(name=name, network=net, iters=iters, description=f"{p.description.split(',')[0]}, "
                     f"small network, {iters} steps (quick looks)", **changes)


for _p in [
    _small("denoise-paper", "denoise-small", 800),
    _small("deblock-paper", "deblock-small", 800, input_depth=32),
    _small("sr-x4-paper", "sr-x4-small", 800),
    _small("sr-x8-paper", "sr-x8-small", 1200),
    # 50 % missing pixels: the paper's lr 0.001 needs 11000 steps; 0.01 converges in ~1000 here
    _small("inpaint-pixels-paper", "inpaint-small", 1000, lr=0.01),
    _small("inpaint-text-paper", "inpaint-text-small", 2000),
]:
    PRESETS[_p.name] = _p

# Super-resolution x4 on the small network with the running average of outputs (the paper's SR
# notebook returns the last output; its denoising one averages with 0.99).  On the tune images (bird,
# monarch; python -m benchmarks.fast_search run --task sr, BENCHMARKS.md) it came within 0.2 dB of
# sr-x4-paper's best 7.8x and 9.5x sooner and peaked above it (sr-x4-small: never, 4.8x); lr 0.02
# was slower (6.4x).  The jitter rising from 0 over the first 100 steps made it 12.2x and 10.6x
# (over 200: 14.6x and 8.4x); rising to 1/20 instead of the paper's 1/30, 10.8x and 14.1x, with
# peaks 0.2 and 0.1 dB higher (fast-j20; 1/15: 8.7x and 8.3x).  Adam's betas 0.8 and 0.9 instead
# of PyTorch's 0.9 and 0.999 (shorter memories of the gradient and its square): 20.2x and 25.2x,
# peaks 0.16 and 0.01 dB higher (fast-b8-90; 0.9/0.99: 14.3x and 18.7x; 0.8/0.95: 17.2x and 19.2x;
# 0.8/0.8: 22.2x and 21.8x).  1500 steps: past both tune images' bar, the average still rising.
# Held-out crops (python -m benchmarks.fast --task sr): baby 20.9x, butterfly 25.0x, bridge 18.8x;
# a second run 19.7x, 22.2x, 18.9x (with the paper's betas: 9.9x, 11.9x, 13.8x); against the paper
# preset timed back to back with each fit (this machine's speed drifts), 22.1-27.0x.  So it is
# SR's default for x2 and x4 (default_preset); on a x2 bird crop (a one-off check) it rises to its
# 1500th step (37.68 dB; sr-x4-paper's best in 2000 steps: 35.30 dB; with 16 input channels
# 37.53), no collapse.  The paper's jitter level 1/30, reached over 50 steps, gets to the paper
# preset's quality sooner (tune images: 305 and 275 steps against 337 and 312; held-out: 365, 279
# and 331 against 361, 335 and 461) but ends 0.3-0.6 dB lower at step 1500 on three of the four
# quick-tier crops (BENCHMARKS.md, "the jitter's level again" and "where the candidates end"): a
# user gets the end, so not kept.
# 16 input channels instead of the paper's 32 (fast-b-in16): the jitter is drawn for every input
# channel and the first convolutions read them all, so a step costs ~1.2x less (20 against 24 ms on
# the tune images, with 397 and 354 steps to the bar against 374 and 350; 8 channels: 427 and 383);
# at step 1500 +0.20, +0.18, +0.13 and -0.13 dB on the quick tier's baby, butterfly, bridge and
# zebra (python -m benchmarks.fast_search final --task sr --candidates fast-b8-90 fast-b-in16 ...);
# on the held-out crops 26.8x, 28.0x and 23.5x sooner than sr-x4-paper timed back to back (with 32:
# 25.2x, 25.2x, 18.5x; python -m benchmarks.fast --task sr --tune-allocator; BENCHMARKS.md).
PRESETS["sr-x4-fast"] = PRESETS["sr-x4-small"].replace(
    name="sr-x4-fast",
    description="Super-resolution x4 (also x2), small network, 16 input channels, averaged outputs, "
                "Adam betas 0.8/0.9; the default for x2 and x4",
    input_depth=16,
    ema=0.99,
    ema_warmup=True,
    jitter=1 / 20,
    jitter_warmup=100,
    betas=(0.8, 0.9),
    iters=1500,
)

# JPEG artifact removal with sr-x4-fast's fitting recipe on the small network, the jitter rising to the
# paper's 1/30 over 100 steps (fast-j30); the default.  On the tune crops (cbsd68 148089 and 220075,
# quality 10; python -m benchmarks.fast_search run --task deblock, BENCHMARKS.md) it came within 0.2
# dB of deblock-paper's best (at its last step, 2400: that recipe is still rising) 5.7x sooner and
# peaked 0.33 and 0.24 dB above it (23.99 and 25.09 dB @ 727 and 567; the JPEG inputs: 23.31 and
# 24.12 dB); Adam's betas and the warm-up alone (small-b) 4.9x, deblock-small 2.0-2.2x, sr-x4-fast's
# jitter 1/20 3.2-3.4x.  1000 steps: at quality 20 the same crops peak later (26.18 and 27.50 dB @
# 1128 and 982; python -m benchmarks.fast_search final --task deblock-q20 ...), and past the peak
# the fit declines slowly (quality 10: 0.07 and 0.22 dB below the peaks at step 1000; 700 steps
# would leave quality 20 0.23 and 0.09 dB short).  On the held-out crops it reaches deblock-paper's
# best 3.7-6.0x sooner (python -m benchmarks.fast --task deblock --candidate deblock-fast
# --tune-allocator) and is 0.23-0.61 dB above it at step 1000 (python -m benchmarks.fast_search final
# --task deblock ...).  A whole photo fits far more slowly per step than a 128 px crop
# (cbsd68/101085, 481x321, quality 10: 23.03 dB after 1500 steps, below the JPEG input's 23.24;
# deblock-paper's 2400: 22.29), so bigger images are fitted in 128 px tiles (tile; python -m
# benchmarks.deblock_photo; BENCHMARKS.md, "JPEG: whole photos").
PRESETS["deblock-fast"] = PRESETS["deblock-small"].replace(
    name="deblock-fast",
    description="JPEG artifact removal, small network, 16 input channels, averaged outputs, Adam betas 0.8/0.9, "
                "128 px tiles; the default",
    # sr-x4-fast's fitting: 16 input channels, the average with its warm-up, the jitter's rise, the betas
    **{k: getattr(PRESETS["sr-x4-fast"], k) for k in ("input_depth", "ema", "ema_warmup", "jitter_warmup", "betas",
                                                      "backtrack")},
    jitter=1 / 30,  # the paper's level (sr-x4-fast: 1/20)
    iters=1000,
    tile=128,
)

# DIP-SURE (Jo, Chun and Choi, "Rethinking Deep Image Prior for Denoising", ICCV 2021): the noisy
# image is the network's input and the loss is Stein's unbiased risk estimate for Gaussian noise
# (sigma given or estimated), whose divergence penalty keeps the network from copying its input.
# Small network, no input jitter (their dip_sure), the paper's lr and average (warm-up on: the raw
# output is good within ~100 steps).  700 steps (--stop auto: guarded by DataTermRise): chosen on the tune images
# at sigma 15 and 25 (python -m benchmarks.sure; BENCHMARKS.md, "SURE").  On the quick tier's test
# crops there it beat denoise-small with the automatic stop by 1.31 dB on average (worst +0.69) in
# 2.2x less time.  Gaussian noise up to sigma ~25-30 only: at sigma 50 its fits peak within 100-300
# steps and then collapse (1.8 dB below denoise-small on average), so restore() warns above 30.  It
# was denoising's default up to SURE_MAX_SIGMA until denoise-sure-fast (below).  It keeps PyTorch's Adam
# betas: with sr-x4-fast's 0.8/0.9 it peaked 2x sooner on the tune images but then collapsed (cbsd68
# 130026: 27.99 dB at step 404, 24.14 at 700; python -m benchmarks.fast_search run --task denoise
# --candidates sure-b8-90).
PRESETS["denoise-sure"] = PRESETS["denoise-small"].replace(
    name="denoise-sure",
    description="Gaussian denoising with SURE (Jo et al. 2021): noisy image as input, small network, "
                "700 steps at a constant learning rate",
    input="measurement",
    loss="sure",
    jitter=0.0,
    ema_warmup=True,
    iters=700,
)

# DIP-SURE in 200 steps, denoising's default up to SURE_MAX_SIGMA: denoise-sure with Adam's shorter
# memories (betas 0.8, 0.9, as sr-x4-fast) and the learning rate decaying by a cosine from 0.01 to
# 0.0005 over the fit, which freezes it near its peak (the shorter memories alone peak ~3x sooner and
# then collapse: on the whole 512 px F16 32.70 dB at step 230, 29.36 at 700; python -m benchmarks.sure
# whole --candidate sure-b8-90).  On six whole photos at sigma 25 (the top-left 512 px; python -m
# benchmarks.sure whole --steps 200 --tune-allocator --candidate sure-b8-90-cos200 --image IMAGE,
# against --steps 700 without the candidate; BENCHMARKS.md, "SURE: whole photos") it ends 0.24 dB
# below denoise-sure's 700 steps at worst (F16) and above it on four, in 3.5x less time.  On 36 crop
# fits at sigma 15, 25 and 30 (python -m benchmarks.sure recipes --seeds 0 1 2 3): mean -0.11, +0.09
# and +0.57 dB against denoise-sure, collapsing (ending more than 0.4 dB below its own peak, all on
# baboon) less often: 1 and 3 of 12 fits at sigma 25 and 30, denoise-sure 3 and 8.  The same decay
# over 300 steps collapsed on baboon (sigma 25) and set14/man.
PRESETS["denoise-sure-fast"] = PRESETS["denoise-sure"].replace(
    name="denoise-sure-fast",
    description="Gaussian denoising with SURE in 200 steps: denoise-sure with Adam betas 0.8/0.9 and the "
                "learning rate decaying to 0.0005; the default up to sigma 30",
    betas=(0.8, 0.9),
    lr_final=0.0005,
    lr_decay_steps=200,
    iters=200,
)

# denoise-sure-fast twice, from two seeds, and the two images averaged: the default on a CUDA GPU,
# where a 512 px fit takes about 2.3 s.  On the GPU target (F16 512 px, sigma 25; python -m
# benchmarks.gpu --parts target) single fits ended 0.2 dB either side of the paper's best less
# 0.2 dB, and two averaged were 0.06-0.21 dB above the better of the two (BENCHMARKS.md, GPU).
PRESETS["denoise-sure-pair"] = PRESETS["denoise-sure-fast"].replace(
    name="denoise-sure-pair",
    description="denoise-sure-fast twice (two seeds), the images averaged: steadier and about 0.2 dB "
                "better for twice the time; the default on a CUDA GPU up to sigma 30",
    fits=2,
)

# Inpainting of text, scratches and thin strokes, a quick look (not a default): the paper's text task
# on the small network with sr-x4-fast's fitting (as deblock-fast: 16 input channels, the running
# average with its warm-up, Adam's betas 0.8 and 0.9, the jitter -- the paper's 0.03 -- rising over
# 100 steps) and 16 skip channels (the paper's text network has 128; the small one 4), in 128 px
# tiles.  Chosen on two tune crops with 32 px text (set14/foreman, cbsd68/196073; python -m
# benchmarks.fast_search run --task inpaint-text): 16, 32 or 64 skip channels within 0.7 dB of each
# other, 4 channels and bilinear upsampling lower.  On the three held-out crops (python -m
# benchmarks.fast --task inpaint-text --candidate inpaint-text-fast --tune-allocator) it peaks 1.2,
# 2.0 and 1.5 dB below inpaint-text-paper's best (28.17 vs 29.32, 34.49 vs 36.53, 29.82 vs 31.27 dB)
# within 3000 steps, and below scikit-image's biharmonic inpainting (28.77, 36.69, 30.84 dB).  The
# default for such text is inpaint-blindspot (below).
PRESETS["inpaint-text-fast"] = PRESETS["inpaint-text-small"].replace(
    name="inpaint-text-fast",
    description="Inpainting of text, scratches and thin strokes: small network with 16 skip channels, "
                "averaged outputs, Adam betas 0.8/0.9, 128 px tiles; a quick look, below inpaint-text-paper",
    network=dataclasses.replace(PRESETS["inpaint-text-small"].network, channels_skip=(16,) * 4),
    **{k: getattr(PRESETS["sr-x4-fast"], k) for k in ("input_depth", "ema", "ema_warmup", "jitter_warmup", "betas",
                                                      "backtrack")},
    iters=1600,
    tile=128,
)

# Blind-spot inpainting of scattered missing pixels (after Self2Self, Quan et al. 2020, and
# Noise2Self, Batson and Royer 2019): the masked image (and its mask) is the network's input; every
# step hides some of the known pixels from it (a fifth at first, three fifths from step 2000; see
# below) and scores it on those only, so it learns to fill a
# pixel from the known ones around it -- what it must do at the missing ones -- and cannot copy its
# input.  The running average over the steps (each with other hidden pixels) is the ensemble
# Self2Self averages at test time.  The small network, lr 0.01, no jitter, no backtracking (the
# score is on other pixels every step).  Chosen on the tune images (boat, peppers256) at 50 %
# missing (python -m benchmarks.fast_search run --task inpaint; BENCHMARKS.md): showing 0.8 of the
# known pixels rises fastest (31.15 and 31.82 dB at step 1000; 0.7 and 0.5: 0.02-1.04 dB lower) and
# peaks at 32.06 and 32.07 dB by step 2000 (inpaint-small: 29.07 and 30.61); a cosine decay of the
# learning rate lost 0.2-0.5 dB.  Adam's betas 0.8 and 0.9 (as sr-x4-fast's; PyTorch's: 0.9 and
# 0.999) reach at step 500 what the default betas reach at step 1000 (31.38 and 31.84 dB), peaks
# 32.37 and 32.17 dB (blindspot-b8-90; held-out, python -m benchmarks.fast --task inpaint:
# Cameraman256 30.1x, was 12.2x; house still short of the bar).  Sixteen skip channels instead of
# the paper's four (blindspot-skip16; every channel count then a multiple of 16, which channels-last
# BatchNorm runs 2-3x faster per channel on a CPU) rise faster on both tune images (31.55 and 32.07
# dB at step 500, against 31.45 and 31.79) and peak within 0.08 dB; on the held-out crops they get
# within 0.2 dB of the paper preset's best sooner (python -m benchmarks.fast --task inpaint
# --tune-allocator --candidate search:blindspot-skip16: barbara at step 115, was 129; Cameraman256
# 1897, was 2396) and end higher at step 2000 (python -m benchmarks.fast_search final --task
# inpaint: +0.13, +0.03 and +0.11 dB on barbara, house, Cameraman256), at about the same time per
# step.  The share shown then falls linearly from 0.8 to 0.4 over the 2000 steps
# (blindspot-keep04-r2000; fitting.blindspot_keep_at): the first fill comes from most of the known
# pixels, and later steps score the network on more hidden ones.  On the tune images it peaks at
# 32.65 and 32.39 dB (constant 0.8: 32.38 and 32.25; to 0.6: 32.61 and 32.35; to 0.2: 32.46 and
# 32.04; to 0.4 within 1000 steps: 32.47 and 32.40; python -m benchmarks.fast_search run --task
# inpaint --candidates blindspot-keep04-r2000 ..., fast-search-inpaint-keep.md).  Needs known
# pixels near every missing one: the inpainting default for such masks only (masks.near_known:
# scattered, or every pixel to fill within 3 px of a known one), not for holes or thick strokes.
# Text 32 px high is such a mask: on the two text tune crops it peaked 2.0-2.1 dB above the small
# text recipe (fast-search-inpaint-text-blindspot.md), and on the three held-out crops it reaches
# inpaint-text-paper's best less 0.2 dB 61-370x sooner and ends its 2000 steps above that best
# (python -m benchmarks.fast --task inpaint-text --tune-allocator; BENCHMARKS.md).
PRESETS["inpaint-blindspot"] = PRESETS["inpaint-small"].replace(
    name="inpaint-blindspot",
    description="Scattered missing pixels (e.g. 50 %), text and fine scratches: blind-spot fit on the masked "
                "image, small network; the default for such masks",
    network=dataclasses.replace(PRESETS["inpaint-small"].network, channels_skip=(16,) * 4),
    input="measurement",
    loss="blindspot",
    blindspot_keep=0.8,
    blindspot_keep_final=0.4,
    blindspot_keep_steps=2000,
    jitter=0.0,
    ema=0.99,  # denoising.ipynb's weight (restoration.ipynb, whose recipe inpaint-small follows, has none)
    ema_warmup=True,
    backtrack=False,
    betas=(0.8, 0.9),
    iters=2000,
)

# Blind-spot inpainting for masks a little thicker than inpaint-blindspot's: every pixel to fill within
# 4 px of a known one (masks.BLOCKS_MAX_REACH; text 64 px high, what `deepprior degrade mask --kind text`
# writes on a 512 px photo).  inpaint-blindspot hiding 3x3 squares instead of single pixels
# (objectives.BlindSpot's block), so that it learns to fill holes that wide.  On two tune crops with
# 64 px text it peaked at 46.57 and 32.19 dB (single pixels: 44.07 and 30.96; 5x5 squares 45.26 and
# 32.52; the small text recipe 45.39 and 30.14; python -m benchmarks.fast_search run --task
# inpaint-text-64, fast-search-inpaint-text-64.md).  On three held-out crops it reaches
# inpaint-text-paper's best less 0.2 dB 84.0x, 893.8x and 19.2x sooner timed back to back (python -m
# benchmarks.fast --task inpaint-text-64 --tune-allocator) and ends its 2000 steps 1.64 and 1.27 dB
# above that best on two and 0.14 dB below it on the third; single pixels end 1.29 dB below it there.
PRESETS["inpaint-blindspot-blocks"] = PRESETS["inpaint-blindspot"].replace(
    name="inpaint-blindspot-blocks",
    description="Text 48-64 px high and strokes a few pixels wide: inpaint-blindspot hiding 3x3 squares; the "
                "default for such masks",
    blindspot_block=3,
)

# Blind-spot inpainting for brush strokes, a quick look: inpaint-blindspot hiding 15x15 squares, the
# learning rate decaying (cosine) to 0.001 over its 2000 steps.  Not a default of the CLI or the API:
# on three held-out crops with brush strokes 10-14 px from known pixels it ends 1.70, 0.32 dB under
# inpaint-text-paper's best and 0.08 dB above it (24.59, 36.12, 26.74 dB against 26.29, 36.44, 26.66;
# python -m benchmarks.fast_search final --task inpaint-strokes ..., fast-search-inpaint-strokes-final.md),
# where that recipe runs 6000 steps of the paper network (~19 min on a 128 px crop here, hours on a
# photo).  The web app's CPU default for painted masks beyond inpaint-blindspot-blocks' reach: there
# inpaint-small, which it replaced, ends its 1000 steps 1.76-7.21 dB lower on the same crops (22.83,
# 28.91, 23.34 dB; fast-search-inpaint-strokes-small.md).  Chosen on the tune crops (foreman, 196073;
# strokes 8-9 px from known pixels) as the candidate ending highest at step 2000 (38.30 and 34.81 dB;
# 7x7 squares 35.55 and 34.49; python -m benchmarks.fast_search run --task inpaint-strokes,
# fast-search-inpaint-strokes.md).
PRESETS["inpaint-blindspot-strokes"] = PRESETS["inpaint-blindspot"].replace(
    name="inpaint-blindspot-strokes",
    description="Brush strokes, a quick look: inpaint-blindspot hiding 15x15 squares, the learning rate falling "
                "to 0.001; up to ~1.7 dB under inpaint-text-paper in minutes instead of hours; the web app's CPU "
                "default for painted strokes",
    blindspot_block=15,
    lr_final=0.001,
    lr_decay_steps=2000,
)

# read-only from here on: a recipe of your own is a Preset passed as it is (or made with .replace),
# not an entry added to this table
PRESETS = MappingProxyType(PRESETS)

_DEFAULTS = {
    "deblock": "deblock-fast",
    "inpaint": "inpaint-text-paper",
}

#: Denoising's default depends on the noise level (on the image scale [0, 1]; given, or estimated
#: from the image by :func:`deepprior.api.choose_preset`): ``denoise-sure-fast`` up to this level, where
#: it was measured (sigma 15, 25 and 30: at sigma 25 the paper recipe's best image less 0.2 dB 52-109x
#: sooner on the held-out crops), ``denoise-paper`` above it, where SURE's fits collapse (sigma 50; BENCHMARKS.md, "SURE").
#: On whole 512 px photos the noise-input fit (denoise-small, automatic stop) beat the guarded
#: denoise-sure-fast at sigma 40 and 50 (F16 -1.40 and -2.48 dB, set14/man -0.06 and -0.16) and
#: lost to it or tied at sigma 30 (F16 +0.15, baboon +2.42, lenna -0.11): python -m benchmarks.sure
#: whole --preset denoise-small --stop auto (BENCHMARKS.md, "SURE: whole photos").
SURE_MAX_SIGMA = 30 / 255


def default_preset(task: str, *, scale: int | None = None, sigma: float | None = None,
                   reach: float | None = None, device: str | None = None) -> str:
    """Name of the default preset of a task.

    ``sr``: by ``scale``: ``sr-x4-fast`` for x2 and x4 (the paper's x4 quality about 25x sooner on
    held-out crops: BENCHMARKS.md), ``sr-x8-paper`` for x8.  ``denoise``: by the noise level
    ``sigma`` (image scale [0, 1]): ``denoise-sure-fast`` up to :data:`SURE_MAX_SIGMA` (on a CUDA
    ``device``, where a fit takes seconds, ``denoise-sure-pair``: two fits averaged), ``denoise-paper``
    above it or when ``sigma`` is None (unknown; e.g. a flat image, with no texture to estimate it from) or not positive.
    ``inpaint``: by how far the pixels to fill lie from known ones (``reach``, pixels:
    :func:`deepprior.masks.fill_reach`; None: unknown): ``inpaint-blindspot`` up to
    :data:`~deepprior.masks.NEAR_MAX_REACH` (scattered pixels, 32 px text, fine scratches),
    ``inpaint-blindspot-blocks`` up to :data:`~deepprior.masks.BLOCKS_MAX_REACH` (64 px text), else
    (holes, thick strokes) ``inpaint-text-paper``.  ``deblock``:
    ``deblock-fast`` (above the paper recipe's best on held-out crops, 3.7-6x sooner; photos in tiles).
    """
    if task == "sr":
        return "sr-x8-paper" if scale == 8 else "sr-x4-fast"
    if task == "denoise":
        if sigma is None or not 0 < sigma <= SURE_MAX_SIGMA:
            return "denoise-paper"
        return "denoise-sure-pair" if device == "cuda" else "denoise-sure-fast"
    if task == "inpaint" and reach is not None:
        from .masks import BLOCKS_MAX_REACH, NEAR_MAX_REACH

        if reach <= NEAR_MAX_REACH:
            return "inpaint-blindspot"
        if reach <= BLOCKS_MAX_REACH:
            return "inpaint-blindspot-blocks"
    if task not in _DEFAULTS:
        raise ValueError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")
    return _DEFAULTS[task]


def default_choices(task: str, *, scale: int | None = None) -> tuple[str, ...]:
    """Every preset :func:`default_preset` may return for ``task`` (and ``scale``)."""
    if task == "denoise":
        return ("denoise-sure-fast", "denoise-sure-pair", "denoise-paper")
    if task == "inpaint":
        return ("inpaint-blindspot", "inpaint-blindspot-blocks", "inpaint-text-paper")
    return (default_preset(task, scale=scale),)


def get_preset(preset: "str | Preset") -> Preset:
    """Look a preset up by name (a :class:`Preset` is returned as is)."""
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; run `deepprior presets` to list them") from None
