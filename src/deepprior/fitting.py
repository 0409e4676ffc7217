"""The fitting loop: Adam on ``||A(f(z + jitter)) - y||^2``, with output averaging, backtracking
and a step-end callback.

This module knows nothing about tasks, files or presets: give it a network, an input ``z``, a
forward model ``A`` and a measurement ``y``.  :mod:`deepprior.pipeline` wires presets to it.  What
each step scores (the data term, DIP-SURE, a blind spot) is an :mod:`deepprior.objectives` object.

The callback is called after every step as ``callback(step, state)`` (``step`` counts from 1) with
a :class:`FitState`; it may return ``True`` (or set ``state.stop = True``) to end the fit.  That is
also the place for stopping rules: a rule is a callable with the same signature.

Checkpoints: ``fit(..., checkpoint=save, checkpoint_every=K)`` calls ``save(state)`` every K steps
with everything the loop carries from one step to the next (see :func:`fit`); a later
``fit(..., resume=state)`` on a network and input built the same way continues from there and ends
with the same result, bit for bit on a CPU, as a fit that was never interrupted.  Writing the
state to disk is the caller's business (:mod:`deepprior.job` does it atomically).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn

from .forward import ForwardModel
# (the blind-spot helpers and SURE's TF32 threshold lived here before deepprior.objectives)
from .objectives import (FLIPS, SURE_TF32_MIN_EPSILON, BlindSpot, DataTerm, Objective, Sure,  # noqa: F401
                         blindspot_input, blindspot_keep_at, fill_from_shown)

__all__ = ["fit", "make_input", "FitState", "FitResult", "DivergenceError", "psnr", "CHECKPOINT_FORMAT"]

# How many non-finite losses in a row backtracking may absorb before the fit is declared diverged.
MAX_NONFINITE_IN_A_ROW = 5

#: Version of the state dict given to ``checkpoint`` (bumped when its keys change; 2: the
#: optimiser's state is :class:`FusedAdam`'s).
CHECKPOINT_FORMAT = 2


class DivergenceError(RuntimeError):
    """The loss became non-finite and backtracking could not recover."""


def ema_weight(ema: float, step: int, warmup: bool = False) -> float:
    """Weight of the old average at ``step``: ``ema`` (the paper), or with ``warmup``
    ``min(ema, (1 + step) / (10 + step))`` (TensorFlow's ExponentialMovingAverage with
    ``num_updates``): the first outputs, far from any image, fade within tens of steps instead of
    weighing ``ema ** step`` (0.99: still 37 % at step 100, 5 % at step 300)."""
    return min(ema, (1 + step) / (10 + step)) if warmup else ema


class FusedAdam:
    """Adam as ``torch.optim.Adam(fused=True)`` computes it (the same kernel, ``torch._fused_adam_``,
    with the same arguments), without ``torch.optim``, whose methods import ``torch._dynamo`` on
    first use: about 1 s per process, a third of a one-step CLI run on a 2-core CPU (2.85 s), and
    1.3 s on an H100 machine.  It has what the fitting loop uses: ``param_groups`` (one group,
    whose ``lr`` may change between steps), ``zero_grad``, ``step``, ``state_dict`` and
    ``load_state_dict``.  Build it with :func:`make_adam`, which checks that the kernel runs here.
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        params = list(params)
        self.param_groups = [{"params": params, "lr": lr, "betas": tuple(betas), "eps": eps}]
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        # one step count per tensor, float32 on its device (what the fused kernel takes)
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            p.grad = None

    def step(self) -> None:
        group = self.param_groups[0]
        live = [i for i, p in enumerate(group["params"]) if p.grad is not None]
        if not live:
            return
        params = [group["params"][i] for i in live]
        steps = [self.steps[i] for i in live]
        with torch.no_grad():
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, [p.grad for p in params], [self.exp_avg[i] for i in live],
                               [self.exp_avg_sq[i] for i in live], [], steps, amsgrad=False, lr=float(group["lr"]),
                               beta1=group["betas"][0], beta2=group["betas"][1], weight_decay=0.0,
                               eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)

    def state_dict(self) -> dict:
        group = self.param_groups[0]
        return {"lr": group["lr"], "betas": group["betas"], "eps": group["eps"],
                "steps": [float(t) for t in self.steps],
                "exp_avg": [t.clone() for t in self.exp_avg], "exp_avg_sq": [t.clone() for t in self.exp_avg_sq]}

    def load_state_dict(self, state: dict) -> None:
        group = self.param_groups[0]
        if len(state["exp_avg"]) != len(group["params"]):
            raise ValueError(f"the optimiser state has {len(state['exp_avg'])} tensors, this network "
                             f"{len(group['params'])}")
        group.update(lr=state["lr"], betas=tuple(state["betas"]), eps=state["eps"])
        with torch.no_grad():
            for mine, saved in zip(self.exp_avg + self.exp_avg_sq, state["exp_avg"] + state["exp_avg_sq"]):
                mine.copy_(saved)
            for mine, saved in zip(self.steps, state["steps"]):
                mine.fill_(saved)


def _fused_adam_runs(params: list) -> bool:
    """Whether ``torch._fused_adam_`` updates ``params`` here: one device (CPU or CUDA) and one
    floating dtype, and the kernel present (CPU: torch >= 2.4); tried on a one-element copy."""
    if not params or not hasattr(torch, "_fused_adam_"):
        return False
    p0 = params[0]
    if p0.device.type not in ("cpu", "cuda") or not p0.is_floating_point():
        return False
    if any(p.device != p0.device or p.dtype != p0.dtype for p in params):
        return False
    probe = torch.zeros(1, dtype=p0.dtype, device=p0.device)
    probe.grad = torch.ones_like(probe)
    try:
        FusedAdam([probe], 0.01).step()
    except (RuntimeError, NotImplementedError, TypeError):
        return False
    return True


def make_adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999)):
    """Adam with the fused kernel (one call updates every tensor): :class:`FusedAdam` where the
    kernel runs, else ``torch.optim.Adam`` (multi-tensor).

    ``betas`` are Adam's decay rates of its running mean of gradients and of their squares
    (PyTorch's and the paper's default: 0.9 and 0.999).

    The plain per-tensor loop launches ~10 small ops per parameter tensor and step.  Measured
    (``python -m benchmarks.speed``, rows ``eager`` / ``fused_adam``): no gain beyond this machine's
    noise for the paper network (0.94-1.07x at 256 and 512 px over two runs).  The fused and
    multi-tensor ("foreach") versions compute the loop's update to float rounding
    (``tests/test_fitting.py::test_fused_adam_matches_the_loop``); :class:`FusedAdam` computes
    ``torch.optim.Adam(fused=True)``'s exactly.
    """
    params = list(params)
    if _fused_adam_runs(params):
        return FusedAdam(params, lr, betas)
    return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB between two tensors with values in [0, data_range]."""
    mse = torch.mean((x.float() - ref.float()) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def make_input(
    kind: str, depth: int, height: int, width: int, *, scale: float = 0.1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The fixed network input ``z`` of shape (1, depth, height, width).

    ``"noise"``: uniform [0, 1) times ``scale`` (the paper's ``get_noise(..., var=1/10)``).
    ``"meshgrid"``: two channels of x and y ramps from 0 to 1 (``depth`` must be 2).
    """
    if kind == "noise":
        return torch.rand((1, depth, height, width), generator=generator) * scale
    if kind == "meshgrid":
        if depth != 2:
            raise ValueError(f"a meshgrid input has 2 channels, got input_depth={depth}")
        ys = torch.arange(height, dtype=torch.float32) / max(height - 1, 1)
        xs = torch.arange(width, dtype=torch.float32) / max(width - 1, 1)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([gx, gy])[None]
    raise ValueError(f"unknown input kind {kind!r}: use 'noise' or 'meshgrid'")


class FitState:
    """What the callback sees after a step.  Metrics against a reference are computed on access.

    Attributes
    ----------
    step, iters : int
        Steps done (from 1) and the planned number of steps.
    output : tensor (1, C, H, W)
        This step's raw network output, cropped to the image.
    average : tensor or None
        The exponential moving average of outputs (None when the recipe does not average).
    loss : float
        The data term ``||A(f(z)) - y||^2 / n`` of this step.
    psnr_measurement : float
        PSNR of ``A(f(z))`` against ``y`` in dB (from the loss; free).
    elapsed : float
        Seconds since the fit started.
    backtracked : bool
        True when this step was rejected and the last good weights restored.
    stop : bool
        Set to True to end the fit after this step.
    measurement : tensor or None
        The measurement ``y`` the fit matches (e.g. for a rule that estimates its noise level).
    divergence : float or None
        A SURE fit's Monte-Carlo estimate of the output's divergence with respect to the input,
        per element (``b . (f(x + eps b) - f(x)) / (eps n)``); None in other fits.
    """

    def __init__(self, step, iters, output, average, loss, elapsed, backtracked, reference, measurement=None,
                 divergence=None):
        self.step = step
        self.iters = iters
        self.output = output
        self.average = average
        self.loss = loss
        self.psnr_measurement = -10.0 * math.log10(loss) if loss > 0 else float("inf")
        self.elapsed = elapsed
        self.backtracked = backtracked
        self.reference = reference
        self.measurement = measurement
        self.divergence = divergence
        self.tile = None  # a tiled run's deepprior.tiles.TileInfo (set by run_tiled for its callback)
        self.stop = False
        self._cache: dict[str, float | None] = {}

    @property
    def result(self) -> torch.Tensor:
        """The image the fit would return if it ended now (the average when there is one)."""
        return self.average if self.average is not None else self.output

    @property
    def psnr_reference(self) -> float | None:
        """PSNR of the raw output against the reference image (None without one)."""
        if "raw" not in self._cache:
            self._cache["raw"] = None if self.reference is None else psnr(self.output.clamp(0, 1), self.reference)
        return self._cache["raw"]

    @property
    def psnr_average_reference(self) -> float | None:
        """PSNR of the averaged output against the reference (None without one or without averaging)."""
        if "avg" not in self._cache:
            ok = self.reference is not None and self.average is not None
            self._cache["avg"] = psnr(self.average.clamp(0, 1), self.reference) if ok else None
        return self._cache["avg"]


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    image: torch.Tensor  # (1, C, H, W), the restored image, cropped, clipped to [0, 1]
    steps: int  # steps run
    stop_reason: str  # "iters", "rule", "callback", "time_budget" or "interrupted"
    seconds: float
    backtracks: int = 0
    history: dict[str, list] = field(default_factory=dict)  # per-step curves (see fit())
    network: nn.Module | None = None
    resumed_from: int = 0  # the step of the checkpoint this fit continued from (0: a fresh fit)

    @property
    def interrupted(self) -> bool:
        return self.stop_reason == "interrupted"


def _callbacks(callback) -> list[Callable]:
    if callback is None:
        return []
    if callable(callback):
        return [callback]
    return list(callback)


def _jitter_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """The generator the jitter is drawn from: the one given, else torch's default for ``device``."""
    if generator is not None:
        return generator
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return None  # other devices: no generator state to save (resume is then not bit-identical)


def learning_rate(step: int, lr: float, lr_final: float | None, decay_steps: int) -> float:
    """The learning rate of ``step`` (1-based): ``lr``, or a cosine from ``lr`` at step 1 to
    ``lr_final`` at step ``decay_steps`` and ``lr_final`` after it."""
    if lr_final is None:
        return lr
    if step >= decay_steps:
        return lr_final
    return lr_final + (lr - lr_final) * 0.5 * (1 + math.cos(math.pi * (step - 1) / max(decay_steps - 1, 1)))


def jitter_level(step: int, jitter: float, warmup: int) -> float:
    """The jitter's size at ``step`` (1-based): rising linearly from ``jitter / warmup`` at step 1
    to ``jitter`` at step ``warmup``, then ``jitter`` (``warmup`` 0: ``jitter`` throughout)."""
    return jitter * min(step / warmup, 1.0) if warmup > 0 else jitter


class _NoTF32:
    """Within: cuDNN's fp32 convolutions in full fp32, not TF32 (their 10-bit mantissa; cuDNN's
    default on Ampere and later GPUs).  A SURE fit whose finite-difference step is below
    :data:`SURE_TF32_MIN_EPSILON` needs it: its divergence is the difference of two outputs
    ``epsilon`` apart, which TF32's rounding (~5e-4 of a value near 0.5) swamps at 1e-3.  On an
    H100, the 512x512 F16 at sigma 25 with a step of 1e-3 (python -m benchmarks.gpu --parts target
    --candidates denoise-sure@tf32 denoise-sure --run-through --no-cli; measured before this switch,
    as denoise-sure and denoise-sure@notf32): with TF32 the fit stalled near 32.0 dB and ended at
    30.88 dB at its 700 steps; without, it rose to 32.59 dB, at 1.7x the time per step."""

    def __init__(self, active: bool):
        self.active = active
        self.before = None

    def __enter__(self):
        if self.active:
            self.before = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = False
        return self

    def __exit__(self, *exc):
        if self.active and self.before is not None:
            torch.backends.cudnn.allow_tf32, self.before = self.before, None
        return False


def _sure_needs_full_fp32(device: torch.device, sure_epsilon: float) -> bool:
    """Whether a SURE fit with this finite-difference step turns TF32 off on ``device``."""
    return Sure(1.0, sure_epsilon).needs_full_fp32(device)


@contextlib.contextmanager
def _graphed(network: nn.Module, sample: torch.Tensor):
    """Within: ``network``'s forward and backward replay CUDA graphs captured on ``sample`` (the
    shape of its input at every step).  The capture's warm-up passes change only BatchNorm's
    running statistics, which a network in train mode never reads.  On the way out the class's
    ``forward`` is put back (``make_graphed_callables`` sets one on the instance)."""
    with warnings.catch_warnings():
        # torch >= 2.10 warns that the parameters' gradient accumulators, made while capturing on a
        # side stream, now receive gradients on the main one; autograd synchronises the two
        warnings.filterwarnings("ignore", message="The AccumulateGrad node's stream does not match")
        try:
            torch.cuda.make_graphed_callables(network, (sample,))
            yield
        finally:
            network.__dict__.pop("forward", None)  # the graphs go with it


def _copier(dst: list[torch.Tensor], src: list[torch.Tensor]):
    """A function that does ``d.copy_(s)`` for each pair, in one ``_foreach_copy_`` per dtype (the
    pairs grouped once, not at every step).  On CUDA a list with an integer tensor in it
    (BatchNorm's step counters among the float weights) takes a slow path, one copy per tensor:
    before this split, the snapshot of denoise-sure-fast's 162 tensors took about 6 ms of the
    host's time per 11 ms step on an H100, and leaving the integers out made a graphed step 1.32x
    faster there (python -m benchmarks.gpu --parts profile; BENCHMARKS.md, "the host's copies per
    step")."""
    groups: dict = {}
    for d, s in zip(dst, src, strict=True):
        pair = groups.setdefault((d.dtype, s.dtype, d.device, s.device), ([], []))
        pair[0].append(d)
        pair[1].append(s)
    groups = list(groups.values())

    def copy() -> None:
        with torch.no_grad():
            for ds, ss in groups:
                torch._foreach_copy_(ds, ss)

    return copy


def fit(
    network: nn.Module,
    z: torch.Tensor,
    forward: ForwardModel,
    y: torch.Tensor,
    *,
    iters: int,
    lr: float = 0.01,
    lr_final: float | None = None,
    lr_decay_steps: int = 0,
    betas: tuple[float, float] = (0.9, 0.999),
    jitter: float = 1.0 / 30,
    jitter_kind: str = "gaussian",
    jitter_warmup: int = 0,
    ema: float | None = 0.99,
    ema_warmup: bool = False,
    backtrack: bool = True,
    backtrack_db: float = 5.0,
    crop: tuple[int, int, int, int] | None = None,
    reference: torch.Tensor | None = None,
    callback: Callable | Iterable[Callable] | None = None,
    generator: torch.Generator | None = None,
    time_budget: float | None = None,
    stop: Callable | None = None,
    record_history: bool = True,
    checkpoint: Callable[[dict], None] | None = None,
    checkpoint_every: int = 0,
    resume: dict | None = None,
    precision: str = "fp32",
    cuda_graph: bool = False,
    objective: Objective | None = None,
) -> FitResult:
    """Fit ``network`` so that ``forward(network(z))`` matches ``y``; return the restored image.

    Parameters
    ----------
    network : nn.Module
        Maps ``z`` to an image; trained in place (train mode throughout, as the paper).
    z : tensor (1, D, H, W)
        The fixed input, on the device to fit on.
    forward : ForwardModel
        The degradation ``A``.
    y : tensor
        The measurement, shaped like ``forward(network(z))``.
    iters : int
        Maximum number of Adam steps.
    lr, lr_final, lr_decay_steps, betas
        Adam's settings: see :class:`deepprior.presets.Preset` (:func:`learning_rate` gives the decay).
    jitter, jitter_kind, jitter_warmup, ema, ema_warmup, backtrack, backtrack_db
        See :class:`deepprior.presets.Preset` (:func:`jitter_level` gives the jitter's rise).
    crop : (top, left, height, width), optional
        The region of the output that is the image (the rest is padding).
    reference : tensor (1, C, height, width), optional
        Ground truth, for PSNR curves only; it never enters the fit.
    callback : callable or list of callables, optional
        ``callback(step, state)`` after every step; return True to stop.
    generator : torch.Generator, optional
        Source of the per-step jitter (on z's device).
    time_budget : float, optional
        Stop after this many seconds and return the result so far (seconds of all the fit's
        sessions, when it was resumed).
    stop : stopping rule, optional
        A rule of :mod:`deepprior.stopping` (any callable ``rule(step, state) -> bool`` with a
        ``best`` attribute): called after the callbacks; when it fires, the fit ends and returns
        the rule's ``best`` iterate (``stop_reason`` "rule").
    record_history : bool
        Keep the per-step curves (default True).
    checkpoint : callable, optional
        ``checkpoint(state)`` every ``checkpoint_every`` steps (not after the last one), with a
        dict of the loop's full state: ``step``, the network's ``state_dict`` (weights and
        BatchNorm buffers), the optimiser's, the backtracking ``snapshot`` and its PSNR, the
        ``average``, the jitter ``generator`` state, the counters, the ``history``, the
        ``elapsed`` seconds and the stopping rule's state (``stop``, from its ``state_dict()``).
        The tensors are the live ones: serialise them (``torch.save``) or copy them before
        returning.
    checkpoint_every : int
        Steps between checkpoints (0: none).
    resume : dict, optional
        A state given earlier to ``checkpoint`` (e.g. read back with ``torch.load``).  The
        network, ``z``, ``y`` and the settings must be those of the fit that saved it: the fit
        then continues from its step and returns what the uninterrupted fit would have.
    precision : {"fp32", "bf16"}
        ``"bf16"`` runs the network's forward (and so its backward) under
        ``torch.autocast(dtype=torch.bfloat16)``; the weights, the optimiser, the data term and
        the average stay in float32.  Only where the hardware has bfloat16 arithmetic (CUDA; CPUs
        with AVX512-BF16 or AMX): elsewhere it is emulated and slower (see
        :func:`deepprior.pipeline.resolve_precision`).
    cuda_graph : bool
        Replay the network's forward and backward as CUDA graphs
        (``torch.cuda.make_graphed_callables``): one launch each instead of hundreds, so a step
        costs the GPU's time rather than Python's.  The arithmetic is the eager network's; the
        loop around it (jitter, data term, backtracking, Adam, average, callbacks) is unchanged.
        CUDA and ``precision="fp32"`` only, and only for a network whose forward never waits for
        the GPU (no ``.item()``, no branch on a tensor's value), as deepprior's networks;
        :func:`deepprior.pipeline.restore` turns it on for them.  The network's own ``forward``
        is put back when the fit ends.
    objective : Objective, optional
        What each step scores (:mod:`deepprior.objectives`): the forward model's data term
        (:class:`~deepprior.objectives.DataTerm`, the default, as the paper),
        :class:`~deepprior.objectives.Sure` (DIP-SURE), :class:`~deepprior.objectives.BlindSpot`
        (blind-spot inpainting), or one of your own.

    Returns
    -------
    FitResult
        ``history`` has lists ``step``, ``loss``, ``psnr_measurement`` and, with a reference,
        ``psnr_reference`` (raw output) and ``psnr_average_reference``.
    """
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
    if jitter_warmup < 0:
        raise ValueError(f"jitter_warmup must be >= 0, got {jitter_warmup}")
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
    if jitter_kind not in ("gaussian", "uniform"):
        raise ValueError(f"jitter_kind must be 'gaussian' or 'uniform', got {jitter_kind!r}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    device = z.device
    if cuda_graph and (device.type != "cuda" or precision != "fp32"):
        raise ValueError("cuda_graph needs a CUDA device and precision='fp32'")
    if objective is None:
        objective = DataTerm()
    objective.setup(forward, y, z, precision=precision, cuda_graph=cuda_graph)

    def run_network(x):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            o = network(x)
        # a graph's output is a static buffer that the next replay overwrites
        return o.clone() if cuda_graph else o.float()

    callbacks = _callbacks(callback)
    def cropped(t):
        if crop is None:  # the whole output (whose size may differ from z's: a decoder upsamples)
            return t
        top, left, h, w = crop
        return t[..., top : top + h, left : left + w]

    if reference is not None:
        reference = reference.to(device=device, dtype=torch.float32)
    params = [p for p in network.parameters()]
    optimizer = make_adam(params, lr, tuple(betas))
    # the last good weights (and BatchNorm buffers), for backtracking and non-finite losses
    live = list(network.state_dict(keep_vars=True).values())
    snapshot = [t.detach().clone() for t in live]
    # what each step saves and a rejected step restores: the floating-point tensors.  BatchNorm's
    # integer step counters are left out: they count steps, and only a BatchNorm with momentum=None
    # reads them, for running statistics that a network in train mode never uses; an integer in
    # the list would send every copy down torch's slow path (_copier)
    live_f = [t for t in live if t.is_floating_point()]
    snapshot_f = [t for t in snapshot if t.is_floating_point()]
    save_snapshot, restore_snapshot = _copier(snapshot_f, live_f), _copier(live_f, snapshot_f)
    last_good_psnr = -math.inf
    average = None
    history: dict[str, list] = {"step": [], "loss": [], "psnr_measurement": []}
    if reference is not None:
        history["psnr_reference"] = []
        if ema is not None:
            history["psnr_average_reference"] = []
    # The jitter is drawn into a contiguous (NCHW) buffer even when z is channels-last: torch's
    # normal_ on a channels-last tensor takes a slow path (56 vs 9 ms for 32x256x256 on a 2-core
    # CPU, ~5 % of a paper-network step), and z + buffer keeps z's memory format.  It also draws
    # the same jitter whatever the memory format.
    jitter_buf = torch.empty(z.shape, dtype=z.dtype, device=z.device)
    jitter_gen = _jitter_generator(generator, device)
    backtracks = nonfinite_run = 0
    start_step = 0
    elapsed_before = 0.0  # seconds spent by the sessions this fit resumes
    if resume is None and hasattr(stop, "reset"):
        stop.reset()  # a rule used before (another fit, another tile) starts afresh
    if resume is not None:
        if resume.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unsupported checkpoint format {resume.get('format')!r} (expected {CHECKPOINT_FORMAT})")
        if resume["device"] != device.type:
            raise ValueError(f"the checkpoint was made on {resume['device']}, this fit runs on {device.type}")
        if resume["step"] > iters:
            raise ValueError(f"the checkpoint is at step {resume['step']}, past the {iters} steps of this fit")
        network.load_state_dict(resume["network"])  # copies into the live tensors
        optimizer.load_state_dict(resume["optimizer"])
        with torch.no_grad():
            for s, saved in zip(snapshot, resume["snapshot"], strict=True):
                s.copy_(saved)
        last_good_psnr = resume["last_good_psnr"]
        if resume["average"] is not None:
            average = resume["average"].to(device).clone()
        if jitter_gen is not None and resume["generator"] is not None:
            jitter_gen.set_state(resume["generator"])
        backtracks, nonfinite_run = resume["backtracks"], resume["nonfinite_run"]
        history = {k: list(v) for k, v in resume["history"].items()}
        start_step, elapsed_before = resume["step"], resume["elapsed"]
        if resume.get("stop") is not None and hasattr(stop, "load_state_dict"):
            from .stopping import StoppingRule  # ours move their tensors to the fit's device

            if isinstance(stop, StoppingRule):
                stop.load_state_dict(resume["stop"], device=device)
            else:
                stop.load_state_dict(resume["stop"])

    def full_state() -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "device": device.type,
            "network": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "snapshot": snapshot,
            "last_good_psnr": last_good_psnr,
            "average": average,
            "generator": None if jitter_gen is None else jitter_gen.get_state(),
            "backtracks": backtracks,
            "nonfinite_run": nonfinite_run,
            "history": history,
            "elapsed": time.perf_counter() - start,
            "stop": stop.state_dict() if hasattr(stop, "state_dict") else None,
        }

    stop_reason = "iters"
    step = start_step
    out = None
    start = time.perf_counter() - elapsed_before
    network.train()
    with contextlib.ExitStack() as scope:  # undone however the fit ends, after its final pass
        scope.enter_context(_NoTF32(objective.needs_full_fp32(device)))
        if cuda_graph:
            scope.enter_context(_graphed(network, objective.sample(z)))
        try:
            for step in range(start_step + 1, iters + 1):
                if jitter > 0:
                    level = jitter_level(step, jitter, jitter_warmup)
                    if jitter_kind == "uniform":
                        jitter_buf.uniform_(0.0, level, generator=jitter_gen)
                    else:
                        jitter_buf.normal_(0.0, level, generator=jitter_gen)
                    net_in = z + jitter_buf
                else:
                    net_in = z
                if lr_final is not None:
                    for group in optimizer.param_groups:
                        group["lr"] = learning_rate(step, lr, lr_final, lr_decay_steps)
                optimizer.zero_grad(set_to_none=True)
                out, objective_t, loss, divergence = objective.step(run_network, net_in, step, jitter_gen)
                finite = math.isfinite(loss)
                meas_psnr = -10.0 * math.log10(loss) if finite and loss > 0 else (math.inf if finite else math.nan)
                rejected = not finite or (backtrack and meas_psnr < last_good_psnr - backtrack_db)
                if rejected:
                    # restore the last good weights and skip this step's update
                    restore_snapshot()
                    backtracks += 1
                    nonfinite_run = nonfinite_run + 1 if not finite else 0
                    if nonfinite_run >= MAX_NONFINITE_IN_A_ROW:
                        raise DivergenceError(
                            f"the loss became non-finite at step {step} and backtracking did not recover; "
                            f"lower the learning rate (now {lr:g})"
                        )
                else:
                    nonfinite_run = 0
                    save_snapshot()
                    last_good_psnr = meas_psnr
                    objective_t.backward()
                    optimizer.step()
                    if ema is not None:
                        o = out.detach()
                        w = ema_weight(ema, step, ema_warmup)
                        average = o.clone() if average is None else average.mul_(w).add_(o, alpha=1 - w)
                state = FitState(
                    step,
                    iters,
                    cropped(out.detach()),
                    None if average is None else cropped(average),
                    loss,
                    time.perf_counter() - start,
                    rejected,
                    reference,
                    y,
                    divergence,
                )
                if record_history:
                    history["step"].append(step)
                    history["loss"].append(loss)
                    history["psnr_measurement"].append(state.psnr_measurement)
                    if reference is not None:
                        history["psnr_reference"].append(state.psnr_reference)
                        if ema is not None:
                            history["psnr_average_reference"].append(state.psnr_average_reference)
                for cb in callbacks:
                    if cb(step, state):
                        state.stop = True
                if stop is not None and stop(step, state):
                    stop_reason = "rule"
                    break
                if state.stop:
                    stop_reason = "callback"
                    break
                if time_budget is not None and state.elapsed >= time_budget:
                    stop_reason = "time_budget"
                    break
                if checkpoint is not None and checkpoint_every and step % checkpoint_every == 0 and step < iters:
                    checkpoint(full_state())
        except KeyboardInterrupt:
            stop_reason = "interrupted"
        with torch.no_grad():
            if stop_reason == "rule" and getattr(stop, "best", None) is not None:
                final = None  # the rule's choice, already cropped to the image
            elif average is not None:
                final = average
            elif stop_reason == "interrupted" and out is not None:
                final = out.detach()
            else:
                final = objective.final(run_network, z)  # one more pass (train-mode BN)
    image = (stop.best if final is None else cropped(final)).clamp(0, 1)
    return FitResult(
        image=image,
        steps=step if iters else 0,
        stop_reason=stop_reason,
        seconds=time.perf_counter() - start,
        backtracks=backtracks,
        history=history,
        network=network,
        resumed_from=start_step,
    )
