"""Stopping rules for the fitting loop: decide when to end a fit and which iterate to keep.

Deep Image Prior overfits: given enough steps the network reproduces the noise of the
measurement too, so the best image lies somewhere along the way.  A *stopping rule* is a small
object used as the fit's callback (``rule(step, state) -> bool``, see :mod:`deepprior.fitting`)::

    rule = WindowedVariance(window=100, patience=100)
    result = deepprior.restore(y, "denoise-paper", stop=rule)
    result.image                        # the iterate the rule selected, clipped to [0, 1]
    rule.stop_step, rule.best_step, rule.reason

The task functions and the CLI stop automatically by default (``stop="auto"``, ``--stop auto``):
:data:`AUTO_STOP` holds each task's rule, chosen by the stopping benchmark
(``python -m benchmarks.stopping``; BENCHMARKS.md, "Automatic stopping"), and the preset's step
count is the cap.  Denoising's rule is the exponential variance with a noise gate (below), the noise
level given (``sigma=``, ``--sigma``) or estimated; for tasks whose measurements gave no rule
``auto`` runs the preset's steps: super-resolution, inpainting and JPEG at quality 20, whose PSNR
still rises at the preset's count, and JPEG at quality 10, whose averaged output peaks before the
count (near half of it on four of five crops) but where the one rule that stopped early on the tune
crops stopped test crops far too early (:class:`BlockArtifacts`).  ``stop="fixed"`` runs exactly the preset's steps.
A SURE preset (``denoise-sure-fast``, ``denoise-sure``) runs its step count under ``auto`` too
(:func:`auto_spec`), guarded by :class:`DataTermRise`, which stops a fit that collapses and returns
its running average from before the collapse (:func:`make_rule`).

No SURE-based *rule* is offered: measured (``python -m benchmarks.sure``), it does not earn its
cost.  SURE needs the output to depend on the noisy image, so the network must take the noisy
image as input; fitted with the plain data term, such a network copies its input within 12-160
steps, and its image at SURE's minimum was 0.4-5.0 dB below the usual fit's automatic stop
on every case at sigma 15, 25 and 50.  SURE works as the *loss* instead (DIP-SURE, the
``denoise-sure-fast`` and ``denoise-sure`` presets, sigma up to about 30).

After (or during) the fit every rule exposes

``stop_step``
    The step at which the rule asked the fit to stop (None while it has not).
``best_step``
    The step of the iterate the rule selects (None before it has selected one).
``best``
    That iterate: a detached clone of the watched tensor (raw network output by default, cropped
    to the image, *not* clipped to [0, 1]), or None.  Given as ``fit(..., stop=rule)`` (or
    ``restore``/``run_task(..., stop=rule)``), a rule that fires makes the fit return its
    ``best``; used as a plain ``callback`` it only ends the fit, and the fit returns what it
    would anyway (the running average, or a last pass of the network).
``reason``
    A short string saying why the rule stopped (or that it did not).
``reset()``
    Forget everything, to use the rule for another fit.

Rules
-----
:class:`WindowedVariance` (ES-WMV; Wang et al., "Early Stopping for Deep Image Prior",
2023)
    Keeps the last ``window`` outputs ``x_{t-W+1} .. x_t`` and computes their windowed moving
    variance ``VAR_t = 1/W sum_i ||x_i - mean||^2 / n`` (``n``: the number of elements of one
    output, channels included).  The variance is low where the outputs stop changing, which is
    empirically close to the PSNR peak; later the network starts fitting the noise and the
    outputs move again.  The rule tracks the minimum of ``VAR_t`` and stops when it has not
    improved for ``patience`` steps.  The selected iterate is, by default
    (``select="end"``), the **last output of the minimal-variance window**, i.e. ``x_{t*}``
    with ``t* = argmin_t VAR_t`` (as in ES-WMV); ``select="centre"`` selects the output in the
    middle of that window instead, ``x_{t* - W//2}`` (centred on the flattest stretch; useful
    with large windows).  The variance is computed incrementally from running sums of ``x`` and
    ``||x||^2`` (in float64 where the device has it, and recomputed exactly from the buffer
    every ``window`` steps to bound the rounding drift), so a step costs O(n), not O(W n); the
    ring buffer holds ``W`` tensors of the image's size.
:class:`ExponentialVariance` (ES-EMV, same paper)
    The memory-light variant: an exponential moving mean ``m_t = (1-a) m_{t-1} + a x_t`` and
    variance ``v_t = (1-a) v_{t-1} + a (1-a) ||x_t - m_{t-1}||^2 / n`` (weight ``a = alpha``,
    bias-corrected for the zero start); same stop logic (minimum not improved for ``patience``
    steps) after ``warmup`` steps; the selected iterate is the output at the step of minimal
    ``v_t``.  It holds two tensors, but its estimate is noisier than the window's (an effective
    window of about ``2/alpha`` steps).
:class:`MaxIterations`
    A plain cap: stops at step ``n``; selects the last output.
:func:`first_of`
    Combines rules: every rule sees every step, the fit stops as soon as one of them says so, and
    the combination reports (``best``, ``best_step``, ``reason``) that rule's choice.

Parameters common to the variance rules
---------------------------------------
``patience``
    Steps without a new variance minimum before stopping.  Larger is more robust to noisy
    plateaus (the variance can flatten, then dip again) but costs wall time: every fit runs at
    least ``patience`` steps past the selected iterate, and those steps are thrown away.
``watch``
    ``"output"`` (default): the raw output ``state.output``, as in the paper.  ``"result"``:
    ``state.result`` (the running average when the recipe averages), which is much smoother, so
    its variance is smaller and its minimum later and flatter.
``keep``
    Which tensor of the selected step the rule returns: ``"watched"`` (default: the tensor whose
    variance is taken, as ES-WMV), ``"output"`` (the raw output), ``"result"`` (``state.result``:
    the running average when the recipe averages) or ``"final"`` (``state.result`` at the step
    the rule stops, i.e. what the fit would return at that step anyway).
``skip_backtracked``
    Steps the loop rejected (``state.backtracked``) carry the diverged output; by default they
    are left out of the statistics (they still count towards ``patience``).
``noise_gate``, ``sigma``
    For Gaussian denoising: with ``noise_gate=k`` the rule also waits until the data term has
    fallen to the noise level, i.e. until a moving average of ``state.loss`` (``||y - f(z)||^2 / n``,
    weight 0.02) is at most ``k * sigma**2`` (Morozov's discrepancy principle; ``k = 1`` its usual
    factor).  The variance of the outputs also rises when the network starts to fit fine texture,
    long before it fits the noise (set14/baboon at sigma 15: the ungated rule stopped 1.24 dB below
    the fixed count); a fit whose residual is still above the noise level has not reached the
    noise yet.  ``sigma`` is the noise's standard deviation on the image scale ([0, 1]; 25/255 for
    "sigma 25"); None estimates it from the measurement (:func:`deepprior.measures.estimate_noise_level`; where that
    fails, e.g. on a flat noise-free image, the rule drops the gate and its ``reason`` says so).
    The gate only delays a stop; it never stops a fit by itself.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from .measures import block_grid_phase, blockiness, estimate_noise_level

__all__ = ["StoppingRule", "WindowedVariance", "ExponentialVariance", "BlockArtifacts", "MaxIterations", "FirstOf",
           "first_of", "StopSpec", "AUTO_STOP", "auto_spec", "make_rule", "RULES", "DivergenceDrop",
           "DataTermRise"]

#: Rule names for the command line: "auto" is the task's rule of :data:`AUTO_STOP`; "fixed" runs
#: the preset's step count (no rule).
RULES = ("auto", "fixed", "wmv", "emv")

_WATCH = ("output", "result")
_KEEP = ("watched", "output", "result", "final")


#: Weight of the newest step in the smoothed data term of the noise gate (an effective window of
#: about 100 steps: one step's loss carries the input jitter's noise).
_GATE_ALPHA = 0.02


def _acc_dtype(device: torch.device) -> torch.dtype:
    """float64 for the running sums where the device supports it (not on Apple MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


class StoppingRule:
    """Base class: the attributes every rule exposes, and the callback protocol.

    Subclasses implement :meth:`_update` (return True to stop) and extend :meth:`reset`.

    Attributes
    ----------
    stop_step : int or None
        The step at which the rule asked to stop.
    best_step : int or None
        The step of the selected iterate.
    best : tensor or None
        The selected iterate (detached clone, cropped, not clipped).
    reason : str
        Why the rule stopped ("not stopped" while it has not).
    """

    def __init__(self, watch: str = "output", skip_backtracked: bool = True, keep: str = "watched"):
        if watch not in _WATCH:
            raise ValueError(f"watch must be one of {_WATCH}, got {watch!r}")
        if keep not in _KEEP:
            raise ValueError(f"keep must be one of {_KEEP}, got {keep!r}")
        self.watch = watch
        self.keep = keep
        self.skip_backtracked = skip_backtracked
        self.reset()

    def state_dict(self) -> dict:
        """The rule's whole state (tensors copied), to save in a checkpoint with the fit."""
        return copy.deepcopy(self.__dict__)

    def load_state_dict(self, state: dict, device: torch.device | str | None = None) -> None:
        """Continue from a state given by :meth:`state_dict` (the same rule and settings), its
        tensors moved to ``device`` when given (the fit's: a checkpoint is loaded on the CPU)."""
        self.__dict__.update(copy.deepcopy(state))
        if device is not None:
            _move_state(self, torch.device(device))

    def reset(self) -> None:
        """Forget all state, to use the rule for another fit."""
        self.stop_step: int | None = None
        self.best_step: int | None = None
        self.best: torch.Tensor | None = None
        self.reason = "not stopped"

    @property
    def stopped(self) -> bool:
        """True once the rule has asked to stop."""
        return self.stop_step is not None

    def _watched(self, state) -> torch.Tensor:
        x = state.output if self.watch == "output" else state.result
        return x.detach()

    def _kept(self, state, x: torch.Tensor) -> torch.Tensor:
        """What to keep when the watched tensor ``x`` of this step is selected (see ``keep``)."""
        if self.keep == "output":
            return state.output.detach()
        if self.keep in ("result", "final"):
            return state.result.detach()
        return x

    def _keep(self, step: int, x: torch.Tensor) -> None:
        """Select ``x`` (from ``step``) as the best iterate, copying it."""
        if self.best is not None and self.best.shape == x.shape and self.best.device == x.device:
            self.best.copy_(x)
        else:
            self.best = x.detach().clone()
        self.best_step = step

    def __call__(self, step: int, state) -> bool:
        """The fit callback: update with this step's state; True to stop."""
        if self.stop_step is not None:
            return True
        if self._update(step, state):
            self.stop_step = step
            if self.keep == "final":
                self._keep(step, state.result.detach())
            return True
        return False

    def _update(self, step: int, state) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


def _move_state(value, device: torch.device):
    """``value`` with every tensor in it moved to ``device`` (a rule's state: rules, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, StoppingRule):  # in place: a FirstOf's winner is one of its rules
        for k, v in list(vars(value).items()):
            setattr(value, k, _move_state(v, device))
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_move_state(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _move_state(v, device) for k, v in value.items()}
    return value


class _VarianceRule(StoppingRule):
    """Shared minimum tracking and patience logic of the variance rules."""

    def __init__(self, patience: int, watch: str, skip_backtracked: bool, keep: str = "watched",
                 noise_gate: float | None = None, sigma: float | None = None):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if noise_gate is not None and not noise_gate > 0:
            raise ValueError(f"noise_gate must be > 0, got {noise_gate}")
        if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive noise level (image scale [0, 1]), got {sigma}")
        self.patience = patience
        self.noise_gate = noise_gate
        self.sigma = sigma
        super().__init__(watch=watch, skip_backtracked=skip_backtracked, keep=keep)

    def reset(self) -> None:
        super().reset()
        self.min_variance = math.inf
        self.min_step: int | None = None  # step t* at which the variance was minimal
        self.variances: list[tuple[int, float]] = []  # (step, variance) for every defined step
        self.sigma_used: float | None = self.sigma  # the noise level of the gate (given or estimated)
        self.gate_note = ""  # why the gate was dropped (the noise level could not be estimated)
        self._loss_mean = 0.0  # exponential moving average of the data term (zero start, bias-corrected)
        self._loss_weight = 0.0

    def _track_loss(self, state) -> None:
        """Update the smoothed data term the noise gate compares with ``noise_gate * sigma**2``."""
        skipped = self.skip_backtracked and getattr(state, "backtracked", False)
        if self.noise_gate is None or self.gate_note or skipped:
            return
        if self.sigma_used is None:
            try:
                self.sigma_used = estimate_noise_level(state.measurement)
            except ValueError as e:  # e.g. a flat, noise-free image: no gate rather than a failed fit
                self.gate_note = f"no noise gate: {e}"
                return
        a = _GATE_ALPHA
        self._loss_mean = (1 - a) * self._loss_mean + a * float(state.loss)
        self._loss_weight = (1 - a) * self._loss_weight + a

    def _gate_open(self) -> bool:
        if self.noise_gate is None or self.gate_note:
            return True
        return self._loss_weight > 0 and self._loss_mean / self._loss_weight <= self.noise_gate * self.sigma_used**2

    def _record(self, step: int, variance: float) -> bool:
        """Record this step's variance; True when it is a new minimum."""
        self.variances.append((step, variance))
        if variance < self.min_variance:
            self.min_variance = variance
            self.min_step = step
            return True
        return False

    def _patience_over(self, step: int) -> bool:
        if self.min_step is None or step - self.min_step < self.patience or not self._gate_open():
            return False
        self.reason = (
            f"{self._name}: no new variance minimum for {self.patience} steps "
            f"(minimum {self.min_variance:.3g} at step {self.min_step})"
        )
        if self.gate_note:
            self.reason += f" ({self.gate_note})"
        elif self.noise_gate is not None:
            self.reason += (f", and the smoothed data term {self._loss_mean / self._loss_weight:.3g} is within "
                            f"{self.noise_gate:g} sigma^2 (sigma {self.sigma_used:.4f})")
        return True


class WindowedVariance(_VarianceRule):
    """ES-WMV: stop when the windowed moving variance of the outputs stops decreasing.

    Parameters
    ----------
    window : int
        W, the number of consecutive outputs whose variance is taken (default 100).
    patience : int
        Steps without a new minimum of the variance before stopping (default 100).  Every fit
        runs this many steps past the variance minimum: larger is more robust, and slower.
    warmup : int, optional
        Watched outputs before the variance counts (default, and at least, ``window``): early
        dips of the variance, before the image has formed, are not taken for the minimum.
    select : {"end", "centre"}
        The iterate kept: ``"end"`` (default, as ES-WMV) the last output of the window of minimal
        variance, i.e. the output at step ``t* = argmin VAR_t``; ``"centre"`` the output in the
        middle of that window, at step ``t* - window // 2``.
    watch : {"output", "result"}
        Watch the raw output (default) or ``state.result`` (the running average, if any).
    skip_backtracked : bool
        Leave the outputs of rejected (backtracked) steps out (default True).
    noise_gate, sigma : float, optional
        Also wait until the smoothed data term is at most ``noise_gate * sigma**2`` (denoising;
        ``sigma`` None: estimated from the measurement); see the module docstring.

    Attributes
    ----------
    min_variance : float
        The smallest windowed variance seen.
    min_step : int or None
        ``t*``, the last step of the window of minimal variance.
    variances : list of (int, float)
        ``(t, VAR_t)`` for every step with a full window (for plots).

    Notes
    -----
    ``VAR_t = 1/W sum_i ||x_i - mean||^2 / n = (Q / W - ||S / W||^2) / n`` with ``S = sum x_i``
    and ``Q = sum ||x_i||^2`` over the window, both updated in O(n) per step (add the new
    output, subtract the one leaving the ring buffer) and recomputed exactly from the buffer
    every ``window`` steps.  The variance is defined from the ``window``-th watched output on.
    """

    _name = "windowed variance"

    def __init__(
        self,
        window: int = 100,
        patience: int = 100,
        *,
        select: str = "end",
        warmup: int | None = None,
        watch: str = "output",
        keep: str = "watched",
        skip_backtracked: bool = True,
        noise_gate: float | None = None,
        sigma: float | None = None,
    ):
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if select not in ("end", "centre", "center"):
            raise ValueError(f"select must be 'end' or 'centre', got {select!r}")
        self.window = window
        self.select = "centre" if select == "center" else select
        self.warmup = window if warmup is None else max(int(warmup), window)
        if keep != "watched" and self.select == "centre":
            raise ValueError("select='centre' keeps a buffered watched output: use keep='watched'")
        super().__init__(patience, watch, skip_backtracked, keep, noise_gate, sigma)

    def reset(self) -> None:
        super().reset()
        self._buffer: list[torch.Tensor] = []  # ring buffer of W float32 copies
        self._steps: list[int] = []  # the step of each buffer slot
        self._head = 0  # the slot the next output goes to (once the buffer is full)
        self._count = 0  # outputs seen
        self._sum: torch.Tensor | None = None  # S, in the accumulation dtype
        self._sumsq = 0.0  # Q, a Python float (double)

    def _recompute(self) -> None:
        """Exact S and Q from the buffer (bounds the drift of the running sums)."""
        acc = self._sum
        acc.zero_()
        q = 0.0
        for b in self._buffer:
            b64 = b.to(acc.dtype)
            acc.add_(b64)
            q += float(torch.sum(b64 * b64))
        self._sumsq = q

    def _update(self, step: int, state) -> bool:
        self._track_loss(state)
        if not (self.skip_backtracked and getattr(state, "backtracked", False)):
            x = self._watched(state).float()
            if self._sum is None:
                self._sum = torch.zeros_like(x, dtype=_acc_dtype(x.device))
            x_acc = x.to(self._sum.dtype)
            if len(self._buffer) < self.window:
                self._buffer.append(x.clone())
                self._steps.append(step)
            else:
                old = self._buffer[self._head]
                old_acc = old.to(self._sum.dtype)
                self._sum.sub_(old_acc)
                self._sumsq -= float(torch.sum(old_acc * old_acc))
                old.copy_(x)
                self._steps[self._head] = step
                self._head = (self._head + 1) % self.window
            self._sum.add_(x_acc)
            self._sumsq += float(torch.sum(x_acc * x_acc))
            self._count += 1
            if self._count > self.window and self._count % self.window == 0:
                self._recompute()
            if len(self._buffer) == self.window and self._count >= self.warmup:
                n = x.numel()
                w = self.window
                mean_sq = float(torch.sum(self._sum * self._sum)) / (w * w)
                variance = max(self._sumsq / w - mean_sq, 0.0) / n
                if self._record(step, variance):
                    if self.select == "end":
                        self._keep(step, self._kept(state, x))
                    else:
                        # the buffer is in ring order: the oldest slot is at _head
                        slot = (self._head + self.window - 1 - self.window // 2) % self.window
                        self._keep(self._steps[slot], self._buffer[slot])
        return self._patience_over(step)


class ExponentialVariance(_VarianceRule):
    """ES-EMV: stop when the exponential moving variance of the outputs stops decreasing.

    Parameters
    ----------
    alpha : float
        Weight of the newest output in the moving mean and variance (default 0.1); the effective
        window is about ``2 / alpha`` steps.
    patience : int
        Steps without a new minimum before stopping (default 100); costs that much wall time.
    warmup : int, optional
        Steps (of watched outputs) before the variance counts (default ``ceil(2 / alpha)``):
        the first estimates rest on a handful of outputs.
    watch : {"output", "result"}
        Watch the raw output (default) or ``state.result``.
    skip_backtracked : bool
        Leave the outputs of rejected (backtracked) steps out (default True).
    noise_gate, sigma : float, optional
        Also wait until the smoothed data term is at most ``noise_gate * sigma**2`` (denoising;
        ``sigma`` None: estimated from the measurement); see the module docstring.

    Notes
    -----
    ``m_t = (1 - a) m_{t-1} + a x_t`` and ``v_t = (1 - a) v_{t-1} + a (1 - a) ||x_t - m_{t-1}||^2
    / n``, from ``m_1 = x_1`` and ``v_1 = 0``; the variance used is ``v_t / (1 - (1 - a)^(k))``
    after ``k`` updates (the zero start's bias removed).  The selected iterate is the output at
    the step of minimal variance.
    """

    _name = "exponential variance"

    def __init__(
        self,
        alpha: float = 0.1,
        patience: int = 100,
        *,
        warmup: int | None = None,
        watch: str = "output",
        keep: str = "watched",
        skip_backtracked: bool = True,
        noise_gate: float | None = None,
        sigma: float | None = None,
    ):
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha = alpha
        self.warmup = math.ceil(2.0 / alpha) if warmup is None else int(warmup)
        super().__init__(patience, watch, skip_backtracked, keep, noise_gate, sigma)

    def reset(self) -> None:
        super().reset()
        self._mean: torch.Tensor | None = None
        self._var = 0.0
        self._count = 0

    def _update(self, step: int, state) -> bool:
        self._track_loss(state)
        if not (self.skip_backtracked and getattr(state, "backtracked", False)):
            x = self._watched(state).float()
            a = self.alpha
            self._count += 1
            if self._mean is None:
                self._mean = x.clone()
            else:
                d2 = float(torch.sum((x - self._mean) ** 2)) / x.numel()
                self._var = (1 - a) * self._var + a * (1 - a) * d2
                self._mean.mul_(1 - a).add_(x, alpha=a)
                updates = self._count - 1
                variance = self._var / (1.0 - (1.0 - a) ** updates)
                if self._count >= self.warmup and self._record(step, variance):
                    self._keep(step, self._kept(state, x))
        return self._patience_over(step)


class MaxIterations(StoppingRule):
    """Stop at step ``n``; the selected iterate is the last output seen.

    Parameters
    ----------
    n : int
        The step to stop at (>= 1).
    watch : {"output", "result"}
        Keep the raw output (default) or ``state.result``.
    """

    def __init__(self, n: int, *, watch: str = "output"):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = n
        super().__init__(watch=watch, skip_backtracked=False)

    def _update(self, step: int, state) -> bool:
        self._keep(step, self._watched(state))
        if step >= self.n:
            self.reason = f"reached {self.n} steps"
            return True
        return False


class BlockArtifacts(StoppingRule):
    """JPEG artifact removal: stop once the fit starts to reproduce the JPEG's 8x8 blocks.

    The network fits the image's content before the compression's block edges.  The rule measures
    the :func:`~deepprior.measures.blockiness` of the watched image at every step (on the input's block grid, found by
    :func:`~deepprior.measures.block_grid_phase`) and stops when it exceeds ``1 + fraction * (B(y) - 1)``: ``fraction``
    of the way from a natural image's (about 1) to the JPEG input's ``B(y)``.  An input without
    visible blocks (``B(y) < 1.05``) gives the rule nothing to watch: it never stops the fit.

    Measured, and **not** JPEG's automatic rule: chosen on the stopping benchmark's tune crops
    (``fraction=0.2``: 23 % fewer steps there, never more than 0.01 dB below the fixed count), it
    stopped test crops at steps 217-423 of 2400, 1.6-4.9 dB below the fixed count: some images'
    early outputs are already blocky on the 8 px grid (BENCHMARKS.md, "Automatic stopping").

    Parameters
    ----------
    fraction : float
        In (0, 1).
    warmup : int
        Steps before the rule may stop (default 100): the first outputs are far from any image.
    watch : {"result", "output"}
        Measure ``state.result`` (default: the running average, what the fit returns) or the raw
        output.
    keep : {"final", "watched", "output", "result"}
        What the rule returns (default ``"final"``: ``state.result`` at the stop).
    """

    _name = "block artifacts"

    def __init__(self, fraction: float, *, warmup: int = 100, watch: str = "result", keep: str = "final"):
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        self.fraction = fraction
        self.warmup = int(warmup)
        super().__init__(watch=watch, skip_backtracked=True, keep=keep)

    def reset(self) -> None:
        super().reset()
        self.phase: tuple[int, int] | None = None
        self.input_blockiness: float | None = None
        self.values: list[tuple[int, float]] = []  # (step, blockiness of the watched image)

    def _update(self, step: int, state) -> bool:
        if self.phase is None:
            if state.measurement is None:
                raise ValueError("the block-artifact rule needs the fit's measurement (the JPEG image)")
            self.phase = block_grid_phase(state.measurement)
            self.input_blockiness = blockiness(state.measurement, phase=self.phase)
        if self.skip_backtracked and getattr(state, "backtracked", False):
            return False
        x = self._watched(state)
        value = blockiness(x, phase=self.phase)
        self.values.append((step, value))
        self._keep(step, self._kept(state, x))
        limit = 1.0 + self.fraction * (self.input_blockiness - 1.0)
        if step < self.warmup or self.input_blockiness < 1.05 or value < limit:
            return False
        self.reason = (f"{self._name}: blockiness {value:.3f} reached {self.fraction:g} of the way from 1 to the "
                       f"input's {self.input_blockiness:.3f}")
        return True


class DivergenceDrop(StoppingRule):
    """A guard for SURE fits (``loss="sure"``, ``denoise-sure``): stop when the network starts to game
    the Monte-Carlo divergence.

    Some DIP-SURE fits on 128 px crops drift late: the estimated divergence (``state.divergence``,
    per pixel) falls, even below zero, while the output moves away from the noisy image and its
    PSNR drops by up to 2 dB, so the running average the fit returns goes down with it.  The rule
    smooths the divergence exponentially (weight ``alpha``) and stops when it falls below
    ``fraction`` times its maximum since step ``warmup``; the fit returns ``state.result`` there
    (the running average).

    **Not a default.**  On crops a healthy fit's divergence rises and levels off, and with the
    defaults below (chosen on the tune crops, ``python -m benchmarks.sure guard run && python -m
    benchmarks.sure guard report``) the rule never returned less than the fixed 700 steps on 24
    held-out fits, +0.12 dB on average (baboon at sigma 25: +0.41 to +1.16 dB).  But on a whole
    512x512 photo (F16, sigma 25) the divergence of a healthy fit falls after step 200 while the
    PSNR still rises: the rule stopped it at step 559 on a CPU (32.60 dB against 32.76 at 700;
    ``python -m benchmarks.sure whole --steps 700``) and at 372 on an H100 (32.25 dB, below the
    paper preset's best minus 0.2 dB).  BENCHMARKS.md, "SURE: a guard against the collapse".

    Parameters
    ----------
    fraction : float
        Stop when the smoothed divergence is below this share of its maximum (0 < fraction < 1).
    alpha : float
        Weight of a new step in the smoothing (0 < alpha <= 1).
    warmup : int
        The step from which the maximum is tracked.

    The defaults are the ones chosen on the tune crops.
    """

    def __init__(self, fraction: float = 0.7, alpha: float = 0.1, warmup: int = 100):
        if not 0 < fraction < 1 or not 0 < alpha <= 1 or warmup < 1:
            raise ValueError(f"need 0 < fraction < 1, 0 < alpha <= 1 and warmup >= 1, got {fraction}, {alpha}, {warmup}")
        self.fraction, self.alpha, self.warmup = fraction, alpha, warmup
        super().__init__(keep="final", skip_backtracked=True)

    def reset(self) -> None:
        super().reset()
        self.smoothed: float | None = None
        self.peak: float | None = None

    def _update(self, step: int, state) -> bool:
        d = getattr(state, "divergence", None)
        if d is None and self.smoothed is not None:  # a step without the probe (objectives.Sure's every)
            return False
        if d is None:
            raise ValueError("DivergenceDrop watches a SURE fit's divergence: use it with loss='sure' "
                             "(e.g. the denoise-sure preset)")
        if getattr(state, "backtracked", False) and self.skip_backtracked:
            return False
        self.smoothed = d if self.smoothed is None else (1 - self.alpha) * self.smoothed + self.alpha * d
        if step < self.warmup:
            return False
        self.peak = self.smoothed if self.peak is None else max(self.peak, self.smoothed)
        if self.smoothed < self.fraction * self.peak:
            self.reason = (f"the divergence fell to {self.smoothed:.3g}, below {self.fraction:g} x its "
                           f"maximum {self.peak:.3g} (SURE's collapse)")
            return True
        return False


class DataTermRise(StoppingRule):
    """A guard for SURE fits (``loss="sure"``): stop when the data term turns back up, and return the
    running average from where it was lowest.

    A healthy DIP-SURE fit lowers its data term ``||y - f(y)||^2 / n`` (``state.loss``) and levels
    off.  When a fit collapses, the network shrinks its Monte-Carlo divergence instead and its output
    drifts back *away* from the noisy image: the data term rises while the PSNR falls, by up to
    4 dB on textured crops at sigma 30.  The rule smooths the data term exponentially (weight
    ``alpha``), keeps the running average (``state.result``) from the step where the smoothed term
    was lowest (from step ``warmup`` on), and stops when the smoothed term rises more than ``rise``
    (a share) above that lowest value.  A fit that never turns back up runs its steps and returns
    its running average as usual.

    The default of ``--stop auto`` (and ``stop="auto"``) for the SURE presets (:func:`make_rule`).
    Measured by replaying it on recorded fits (``python -m benchmarks.sure rise``; BENCHMARKS.md,
    "SURE: the data-term guard"): on 72 fits of 128 px crops (F16, baboon, 108070 at sigma 15, 25
    and 30, four seeds, ``denoise-sure-fast`` and ``denoise-sure``) it never returned less than the
    fit's last step and rescued 12 of the 15 collapsed fits (ending more than 0.4 dB below their
    peak) to within 0.4 dB of it, up to +3.7 dB; it stopped none of ten fits of whole
    512 px photos (six photos, sigma 15-30).  The
    threshold was chosen on these fits: 10 % stopped a healthy whole photo (set14/bridge at sigma 15,
    whose data term rose 11.3 % while its PSNR still rose) and 20 % missed collapses.  The margin is
    thinnest at low noise: a healthy ``denoise-sure`` crop fit at sigma 15 rose 13.3 %.  Another
    guard, :class:`DivergenceDrop`, watches the divergence instead.

    Parameters
    ----------
    rise : float
        Stop when the smoothed data term is more than ``1 + rise`` times its minimum (rise > 0).
    alpha : float
        Weight of a new step in the smoothing (0 < alpha <= 1).
    warmup : int
        The step from which the minimum is tracked.
    """

    def __init__(self, rise: float = 0.15, alpha: float = 0.1, warmup: int = 50):
        if not rise > 0 or not 0 < alpha <= 1 or warmup < 1:
            raise ValueError(f"need rise > 0, 0 < alpha <= 1 and warmup >= 1, got {rise}, {alpha}, {warmup}")
        self.rise, self.alpha, self.warmup = rise, alpha, warmup
        super().__init__(keep="result", skip_backtracked=True)

    def reset(self) -> None:
        super().reset()
        self.smoothed: float | None = None
        self.lowest: float | None = None

    def _update(self, step: int, state) -> bool:
        if getattr(state, "backtracked", False) and self.skip_backtracked:
            return False
        loss = float(state.loss)
        if not math.isfinite(loss):
            return False
        self.smoothed = loss if self.smoothed is None else self.smoothed + self.alpha * (loss - self.smoothed)
        if step < self.warmup:
            return False
        if self.lowest is None or self.smoothed < self.lowest:
            self.lowest = self.smoothed
            self._keep(step, state.result.detach())
            return False
        if self.smoothed > (1 + self.rise) * self.lowest:
            self.reason = (f"the data term rose {self.smoothed / self.lowest - 1:.1%} above its minimum at step "
                           f"{self.best_step} (SURE's collapse); returning the running average from there")
            return True
        return False


class FirstOf(StoppingRule):
    """Several rules at once: stop when the first of them stops; report its choice.

    Every rule sees every step (until the combination stops).  ``best``, ``best_step`` and
    ``reason`` are those of the rule that stopped (the first in order, when several stop at the
    same step); before that, those of the first rule.

    Parameters
    ----------
    *rules : StoppingRule
        The rules, e.g. ``FirstOf(WindowedVariance(), MaxIterations(2000))``.
    """

    def __init__(self, *rules):
        if not rules:
            raise ValueError("FirstOf needs at least one rule")
        self.rules = list(rules)
        self._winner = None
        super().__init__()

    def reset(self) -> None:
        self._winner = None
        self.stop_step = None
        for r in self.rules:
            r.reset()

    def _chosen(self):
        return self._winner if self._winner is not None else self.rules[0]

    @property
    def best(self):
        return self._chosen().best

    @best.setter
    def best(self, value):  # set by the base reset(); the rules hold the state
        pass

    @property
    def best_step(self):
        return self._chosen().best_step

    @best_step.setter
    def best_step(self, value):
        pass

    @property
    def reason(self):
        return self._chosen().reason

    @reason.setter
    def reason(self, value):
        pass

    def state_dict(self) -> dict:
        winner = None if self._winner is None else self.rules.index(self._winner)
        return {"rules": [r.state_dict() for r in self.rules], "winner": winner, "stop_step": self.stop_step}

    def load_state_dict(self, state: dict, device: torch.device | str | None = None) -> None:
        for r, s in zip(self.rules, state["rules"], strict=True):
            r.load_state_dict(s, device)
        self._winner = None if state["winner"] is None else self.rules[state["winner"]]
        self.stop_step = state["stop_step"]

    def _update(self, step: int, state) -> bool:
        fired = [r for r in self.rules if r(step, state)]
        if fired:
            self._winner = fired[0]
            return True
        return False


def first_of(*rules) -> FirstOf:
    """Combine stopping rules: stop when the first one stops (see :class:`FirstOf`)."""
    return FirstOf(*rules)


@dataclass(frozen=True)
class StopSpec:
    """A stopping rule as data: what ``--stop auto`` builds for a task (see :data:`AUTO_STOP`)."""

    rule: str  # "wmv" (WindowedVariance) or "emv" (ExponentialVariance, alpha = 2 / window)
    window: int  # W in steps
    patience: int  # steps without a new variance minimum before stopping
    keep: str  # which iterate is returned (see the class docstrings)
    warmup: int | None = None  # steps before the variance counts (None: the class default)
    noise_gate: float | None = None  # wait until the data term is within noise_gate * sigma^2 (denoising)
    source: str = ""  # where the values come from

    def build(self, *, window: int | None = None, patience: int | None = None,
              sigma: float | None = None) -> StoppingRule:
        """The rule, with ``window`` / ``patience`` overridden where given; ``sigma``: the noise
        level of the gate (None: estimated from the measurement), unused without a gate."""
        w = self.window if window is None else window
        p = self.patience if patience is None else patience
        gate = {"noise_gate": self.noise_gate, "sigma": sigma if self.noise_gate is not None else None}
        if self.rule == "wmv":
            return WindowedVariance(w, p, warmup=self.warmup, keep=self.keep, **gate)
        return ExponentialVariance(2.0 / w, p, warmup=self.warmup, keep=self.keep, **gate)


_BENCH = "python -m benchmarks.stopping run && python -m benchmarks.stopping report"

#: The automatic stopping rule of each task (``--stop auto``, the default of the CLI and API),
#: chosen by the stopping benchmark on its *tune* images (disjoint from the images it reports on;
#: BENCHMARKS.md, "Automatic stopping") against the default preset's step count: a patience of at
#: least 300 steps, quality first (never more than 0.1 dB below the default count on a tune
#: image), then the fewest steps, then the least memory (ES-EMV holds two images, ES-WMV a window
#: of them).  The preset's step count stays the cap.  None: no rule saved a step on the tune images
#: without losing quality, and ``auto`` runs the preset's step count.
AUTO_STOP: dict[str, StopSpec | None] = {
    # denoising (sigma 15, 25, 50 together): ES-EMV (alpha 0.1; two images of memory) with the
    # noise gate at sigma^2 (sigma estimated unless given); on 9 tune cases +2.35 dB over the default
    # 3000 steps on average (the default count overfits at sigma 25 and 50), 43 % fewer steps;
    # returns the running average at the stop.  Offered with and without the gate, the choice took
    # the gate; without it (the previous rule, WMV 50) set14/baboon at sigma 15, a test crop, stopped
    # 1.24 dB below the fixed count (0.23 dB with the gate)
    "denoise": StopSpec("emv", 20, 300, "final", noise_gate=1.0, source=_BENCH),
    # JPEG, SR x4, inpainting: the PSNR still rose at the default count (2400, 2000, 6000 steps) on
    # the tune crops; no rule with patience >= 300 saved a step there without losing quality (on
    # the test crops the patience-600 rule stopped inpainting at ~3000 of 6000 steps, 1.8 dB low)
    "deblock": None,
    "sr": None,
    "inpaint": None,
}


def auto_spec(task: str, preset=None) -> StopSpec | None:
    """What ``--stop auto`` builds for ``task`` with ``preset`` (a name or :class:`Preset`, optional):
    :data:`AUTO_STOP`'s rule, except for a SURE preset (``loss="sure"``, ``denoise-sure-fast``), whose step
    count was chosen as a fixed count (``python -m benchmarks.sure``: the denoising rule lowered its
    worst tune case from +0.17 to -0.05 dB against the usual fit; :class:`DivergenceDrop`, a guard
    against its collapse, helped on 128 px crops but stopped a whole photo too early), and a
    blind-spot one (``inpaint-blindspot``; inpainting has no rule); None: the preset's step count."""
    if task not in AUTO_STOP:
        raise ValueError(f"--stop auto needs a task ({', '.join(AUTO_STOP)}), got {task!r}")
    if preset is not None:
        from .presets import get_preset

        if get_preset(preset).loss in ("sure", "blindspot"):
            return None
    return AUTO_STOP[task]


def _is_sure(preset) -> bool:
    from .presets import get_preset

    return get_preset(preset).loss == "sure"


def make_rule(name: str, *, task: str | None = None, window: int | None = None,
              patience: int | None = None, sigma: float | None = None, preset=None) -> StoppingRule | None:
    """The rule a command-line name stands for.

    ``"auto"``: the task's :data:`AUTO_STOP` rule (``task`` required); ``"fixed"``: None (no rule:
    the preset's step count); ``"wmv"``: :class:`WindowedVariance`; ``"emv"``:
    :class:`ExponentialVariance` with ``alpha = 2 / window``.  ``window`` and ``patience``
    override the defaults (the auto rule's, or the classes').  ``sigma``: the noise level (image
    scale [0, 1]) for an auto rule with a noise gate (denoising); None estimates it from the image.
    ``preset``: the preset of the fit, for ``"auto"`` (see :func:`auto_spec`); a SURE preset
    (``loss="sure"``) gets :class:`DataTermRise`, a guard against its collapse that lets a healthy
    fit run its step count.
    """
    from .pipeline import check_sigma

    check_sigma(sigma)
    if name == "fixed":
        return None
    if name == "auto":
        if preset is not None and _is_sure(preset):  # SURE's fits run their step count, guarded
            if window is not None or patience is not None:
                raise ValueError("--stop auto guards a SURE fit with DataTermRise, which has no window or patience; "
                                 "use --stop emv or --stop wmv with --stop-window / --stop-patience")
            return DataTermRise()
        spec = auto_spec(task, preset)
        if spec is None:  # no rule earned its keep for this task: the preset's step count
            if window is not None or patience is not None:
                raise ValueError(f"--stop auto has no rule to adjust for {task} (it runs the preset's step count); "
                                 "use --stop emv or --stop wmv with --stop-window / --stop-patience")
            return None
        return spec.build(window=window, patience=patience, sigma=sigma)
    kw = {} if patience is None else {"patience": patience}
    if name == "wmv":
        return WindowedVariance(**({} if window is None else {"window": window}), **kw)
    if name == "emv":
        return ExponentialVariance(**({} if window is None else {"alpha": 2.0 / window}), **kw)
    raise ValueError(f"unknown stopping rule {name!r}; use one of {', '.join(RULES)}")
