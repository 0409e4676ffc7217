"""What one step of the fit scores: :func:`deepprior.fitting.fit`'s ``objective``.

The fitting loop (:mod:`deepprior.fitting`) owns the optimiser, the input's jitter, the running
average, backtracking, stopping and callbacks; an objective owns how one step turns the network's
input into a scored output.  Three are built in:

:class:`DataTerm`
    The paper's: ``||A(f(z)) - y||^2``, the forward model's ``data_term`` (for a :class:`Mask`, the
    mean over the known pixels only).
:class:`Sure`
    DIP-SURE (Jo, Chun and Choi, ICCV 2021; SURE as a training loss: Metzler et al. 2018): the
    data term plus ``2 sigma^2`` times the network's divergence, estimated by one Monte-Carlo
    finite difference per step.  Needs the noise level; the network takes the noisy image itself
    as input.
:class:`BlindSpot`
    Blind-spot inpainting (Self2Self, Quan et al. 2020; Noise2Self, Batson and Royer 2019): the
    network sees part of the known pixels and is scored on the others, so it learns to fill a
    pixel from its neighbours and cannot copy its input.

A new objective subclasses :class:`Objective` and implements :meth:`~Objective.step`; the other
methods have defaults that suit a network fed ``z`` as it is.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from .forward import ForwardModel, Mask

__all__ = ["Objective", "DataTerm", "Sure", "BlindSpot", "Scored", "blindspot_keep_at", "blindspot_input",
           "fill_from_shown", "FLIPS", "SURE_TF32_MIN_EPSILON"]

#: The smallest finite-difference step of SURE's divergence at which a fit keeps TF32 on CUDA:
#: ten times TF32's rounding of a value near 0.5 (2^-11).  Below it, ``fitting._NoTF32``.
SURE_TF32_MIN_EPSILON = 5e-3

#: a blind-spot fit's flips (``flips``): none, left-right, upside down, both
FLIPS = ((), (-1,), (-2,), (-2, -1))


class Scored(NamedTuple):
    """One step's outcome."""

    out: torch.Tensor  # the step's output (the image the running average and the callbacks see)
    objective: torch.Tensor  # the scalar the optimiser minimises
    loss: float  # the data term, as a number (its PSNR is the fit's psnr_measurement)
    divergence: float | None = None  # SURE's divergence estimate, on the steps that probe it


class Objective:
    """What each step of a fit scores.

    :meth:`setup` is called once before the first step, :meth:`step` at every step with a function
    that runs the network (in the fit's precision), and :meth:`final` once at the end when the fit
    returns the network's output on ``z`` (no running average, no stopping rule's choice).
    """

    def setup(self, forward: ForwardModel, y: torch.Tensor, z: torch.Tensor, *, precision: str,
              cuda_graph: bool) -> None:
        """Check that the objective suits this fit, and keep what it needs."""
        self.forward, self.y = forward, y

    def step(self, run: Callable[[torch.Tensor], torch.Tensor], net_in: torch.Tensor, step: int,
             generator: torch.Generator | None) -> Scored:
        """Score the network on ``net_in`` (``z`` with this step's jitter); ``step`` counts from 1.
        Random draws come from ``generator`` (the fit's, so that a resumed fit draws the same)."""
        raise NotImplementedError

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        """An input shaped as :meth:`step` gives the network (to capture CUDA graphs on)."""
        return z.clone()

    def final(self, run: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """The fit's last output: one more pass on ``z`` without jitter (the notebooks' final output)."""
        return run(z)

    def needs_full_fp32(self, device: torch.device) -> bool:
        """Whether the fit must turn TF32 off on ``device`` (cuDNN's default on recent GPUs)."""
        return False


class DataTerm(Objective):
    """The paper's objective: the forward model's data term ``||A(f(z)) - y||^2``."""

    def step(self, run, net_in, step, generator):
        out = run(net_in)
        loss_t = self.forward.data_term(out, self.y)
        return Scored(out, loss_t, float(loss_t.item()))


class Sure(Objective):
    """DIP-SURE: Stein's unbiased risk estimate instead of the plain data term (Jo, Chun and Choi,
    "Rethinking Deep Image Prior for Denoising", ICCV 2021), for Gaussian noise with the identity
    forward model and the measurement itself as the network's input (``z`` shaped like ``y``).

    Every step runs the network on ``x`` and ``x + epsilon * b`` (one batch of two; ``b`` standard
    normal, fresh each step) and minimises ``||y - f(x)||^2 / n + 2 sigma^2 div / n`` with the
    Monte-Carlo divergence ``div = b . (f(x + eps b) - f(x)) / eps``: the penalty on the divergence
    keeps the network from copying its noisy input.  ``state.loss`` stays the data term,
    ``state.divergence`` is the estimate.

    Parameters
    ----------
    sigma : float
        The noise's standard deviation (image scale, [0, 1]).
    epsilon : float
        The finite-difference step of the divergence (image scale; Jo et al. use 1e-3).  Below
        :data:`SURE_TF32_MIN_EPSILON` a SURE fit on CUDA runs its convolutions in full fp32,
        without TF32 (``fitting._NoTF32``); from it up, TF32 rounds far below the step and is
        kept.  The default, 5e-3, keeps TF32: on an H100 the 512x512 F16 at sigma 25 reached the bar
        (the paper preset's best minus 0.2 dB) in 7.3 s, against 11.7 s with 1e-3 without TF32
        (``python -m benchmarks.gpu``; BENCHMARKS.md, "GPU").  Larger steps bias the estimate
        more: 1e-2 let some fits collapse late (the network shrinks its estimated divergence, even
        below zero, while drifting from ``y``).
    every : int
        Probe the divergence on every ``every``-th step only (the first step probes), its penalty
        weighted by ``every``; the steps between minimise the data term alone and run the network
        on one image instead of two (``state.divergence`` is None on them).  The penalty is the same
        on average.  Not with ``cuda_graph`` (its graph takes one batch shape).
    """

    def __init__(self, sigma: float, epsilon: float = 5e-3, every: int = 1):
        if not (sigma > 0 and sigma != float("inf")) or not epsilon > 0:
            raise ValueError(f"SURE needs sigma > 0 and epsilon > 0, got {sigma} and {epsilon}")
        if every < 1:
            raise ValueError(f"sure_every must be >= 1, got {every}")
        self.sigma, self.epsilon, self.every = sigma, epsilon, every

    def setup(self, forward, y, z, *, precision, cuda_graph):
        super().setup(forward, y, z, precision=precision, cuda_graph=cuda_graph)
        if self.every > 1 and cuda_graph:
            raise ValueError(f"sure_every must be 1 with cuda_graph, got {self.every}")
        if precision != "fp32":  # bf16's 8-bit mantissa swamps the divergence's finite difference
            raise ValueError("a SURE fit needs precision='fp32'")
        if z.shape != y.shape:
            raise ValueError(f"a SURE fit feeds the measurement to the network: z must be shaped like y "
                             f"{tuple(y.shape)}, got {tuple(z.shape)}")
        self.probe = torch.empty(z.shape, dtype=z.dtype, device=z.device)

    def step(self, run, net_in, step, generator):
        if (step - 1) % self.every:  # a step without the divergence's probe: the network on x alone
            out = run(net_in)
            loss_t = self.forward.data_term(out, self.y)
            return Scored(out, loss_t, float(loss_t.item()))
        self.probe.normal_(0.0, 1.0, generator=generator)
        both = run(torch.cat([net_in, net_in + self.epsilon * self.probe]))
        out = both[:1]
        loss_t = self.forward.data_term(out, self.y)
        div_t = (self.probe * (both[1:] - out)).sum() / (self.epsilon * out.numel())
        objective = loss_t + 2 * self.sigma**2 * self.every * div_t
        loss, divergence = torch.stack([loss_t.detach(), div_t.detach()]).tolist()  # one sync
        return Scored(out, objective, loss, divergence)

    def sample(self, z):
        return torch.cat([z, z])

    def final(self, run, z):
        return run(torch.cat([z, z]))[:1]  # a graphed network takes batches of two

    def needs_full_fp32(self, device):
        return device.type == "cuda" and self.epsilon < SURE_TF32_MIN_EPSILON


def blindspot_keep_at(step: int, keep: float, final: float | None = None, steps: int = 0) -> float:
    """A blind-spot fit's share of known pixels shown at ``step`` (from 1): ``keep`` falling
    linearly to ``final`` at step ``steps``, then ``final`` (``keep`` throughout when ``final`` is
    None or ``steps`` is 0)."""
    if final is None or steps <= 0:
        return keep
    return keep + (final - keep) * min(1.0, step / steps)


def blindspot_input(z: torch.Tensor, shown: torch.Tensor, fill: bool = False) -> torch.Tensor:
    """A blind-spot network's input: the shown pixels of ``z`` and the mask of the shown pixels (1
    or C channels), stacked along the channels.  The other pixels are zero, or with ``fill`` a
    normalised convolution of the shown ones (:func:`fill_from_shown`)."""
    shown = shown.to(z.dtype)
    seen = z * shown
    if fill:
        seen = seen + (1 - shown) * fill_from_shown(seen, shown)
    return torch.cat([seen, shown], dim=1)


def fill_from_shown(seen: torch.Tensor, shown: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Every pixel as the Gaussian-weighted mean of the shown pixels near it (normalised
    convolution, Knutsson and Westin 1993): ``blur(seen) / blur(shown)``, ``seen`` being zero off
    ``shown``; a separable 7-tap kernel of ``sigma`` pixels, zero where no pixel is shown nearby."""
    r = 3
    t = torch.arange(-r, r + 1, dtype=seen.dtype, device=seen.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()

    def blur(x):
        c = x.shape[1]
        x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
        return torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)

    den = blur(shown)
    return blur(seen) / den.clamp(min=1e-3) * (den > 1e-3)


class BlindSpot(Objective):
    """Blind-spot inpainting of scattered missing pixels (after Self2Self, Quan et al., CVPR 2020,
    and Noise2Self, Batson and Royer, ICML 2019): the forward model must be a
    :class:`~deepprior.forward.Mask` and ``z`` the measurement (shaped like ``y``).

    Every step hides each known pixel with probability ``1 - keep`` (one draw per pixel, for all
    channels), feeds the network ``cat(z * shown, shown)`` (``C + mask channels``;
    :func:`blindspot_input`) and scores its output on the hidden known pixels only: the network
    learns to predict a pixel from the known pixels around it, the very thing it must do at the
    missing ones.  Its output on the known pixels is then replaced by ``y`` (in ``state.output``,
    the average and the result: the returned image keeps the known pixels exactly).
    ``state.loss`` is the hidden pixels' mean squared error.

    Parameters
    ----------
    keep : float
        Share of the known pixels shown per step, in (0, 1).
    keep_final, keep_steps : float or None, int
        The share falls linearly from ``keep`` to ``keep_final`` over the first ``keep_steps``
        steps, then stays there (:func:`blindspot_keep_at`; None: ``keep`` throughout).  Early on
        most pixels shown make the first fill quick; later, more pixels hidden score the network on
        more of them per step (inpaint-blindspot: 0.8 to 0.4 over 2000 steps; presets.py).
    flips : bool
        Self2Self's data augmentation: every step feeds the network its input flipped left-right,
        upside down, both or neither (one of :data:`FLIPS` at random) and flips its output back, so
        the average is over the four orientations too.  On the tune images it slowed the fit down
        (BENCHMARKS.md; no preset uses it).
    fill : bool
        The input's hidden and missing pixels are filled from the shown ones
        (:func:`fill_from_shown`) instead of zero.  On the tune images it lowered the peaks (by 1.4
        dB on boat; BENCHMARKS.md; no preset uses it).
    block : int
        Hide ``block`` x ``block`` squares (odd; around seeds drawn so that about ``1 - keep`` of the
        pixels are hidden) instead of single pixels: the network learns to fill holes that wide,
        for masks whose missing pixels come in strokes rather than scattered (1: single pixels).
    shape : {"squares", "mask"}
        What is hidden: pixels or ``block`` squares ("squares"), or copies of the mask's own pixels
        to fill, each shifted by a random offset (wrapping around) and flipped at random, as many as
        hide about ``1 - keep`` of the pixels ("mask"): the network learns to fill holes shaped like
        the ones it must fill -- strokes as wide, text as tall -- without a width to choose.  The
        copies come whole, 1 to 64 of them: holes over more than about ``1 - keep`` of the image
        hide more than that, holes too small for 64 copies to hide it (under 0.35 % of the image
        at keep 0.8) less.  Measured on brush strokes, not used by
        a preset (BENCHMARKS.md).
    """

    def __init__(self, keep: float, keep_final: float | None = None, keep_steps: int = 0, *,
                 flips: bool = False, fill: bool = False, block: int = 1, shape: str = "squares"):
        if not 0 < keep < 1:
            raise ValueError(f"blindspot_keep must be in (0, 1), got {keep}")
        if keep_final is not None and not 0 < keep_final < 1:
            raise ValueError(f"blindspot_keep_final must be in (0, 1), got {keep_final}")
        if keep_steps < 0:
            raise ValueError(f"blindspot_keep_steps must be >= 0, got {keep_steps}")
        if block < 1 or block % 2 == 0:
            raise ValueError(f"blindspot_block must be odd and >= 1, got {block}")
        self.keep, self.keep_final, self.keep_steps, self.flips, self.fill = keep, keep_final, keep_steps, flips, fill
        if shape not in ("squares", "mask"):
            raise ValueError(f"blindspot_shape must be 'squares' or 'mask', got {shape!r}")
        if shape == "mask" and block != 1:
            raise ValueError("blindspot_block is for blindspot_shape='squares'")
        self.block, self.shape = block, shape

    def setup(self, forward, y, z, *, precision, cuda_graph):
        super().setup(forward, y, z, precision=precision, cuda_graph=cuda_graph)
        if not isinstance(forward, Mask):
            raise ValueError("a blind-spot fit needs a Mask forward model (inpainting) and no SURE")
        if z.shape != y.shape:
            raise ValueError(f"a blind-spot fit feeds the measurement to the network: z must be shaped like y "
                             f"{tuple(y.shape)}, got {tuple(z.shape)}")
        self.known = forward.known.to(y.dtype)
        self.known_y = self.known * y  # the output's known part
        # the per-step draw: one number per pixel, shown where below the step's share
        self.draw = torch.empty((1, 1, *z.shape[-2:]), dtype=z.dtype, device=z.device)
        if self.shape == "mask":  # 1 where any channel is to fill: the shape the hidden copies take
            self.holes = (1 - self.known).amax(dim=1, keepdim=True)
            self.hole_share = float(self.holes.mean())

    def _hidden_copies(self, keep, generator):
        """Shifted, flipped copies of the mask's holes, about ``1 - keep`` of the pixels in all."""
        share = min(max(self.hole_share, 1e-4), 0.99)
        copies = max(1, min(64, round(math.log(keep) / math.log(1 - share))))
        h, w = self.holes.shape[-2:]
        draws = torch.randint(0, 4 * h * w, (copies,), generator=generator, device=self.holes.device).tolist()
        hidden = torch.zeros_like(self.holes)
        for d in draws:
            flip, d = FLIPS[d % 4], d // 4
            copy = torch.roll(self.holes, (d // w, d % w), dims=(2, 3))
            hidden = torch.maximum(hidden, copy.flip(flip) if flip else copy)
        return hidden

    def step(self, run, net_in, step, generator):
        self.draw.uniform_(0.0, 1.0, generator=generator)  # (in both shapes: the measured draws)
        keep = blindspot_keep_at(step, self.keep, self.keep_final, self.keep_steps)
        if self.shape == "mask":
            shown = self.known * (1 - self._hidden_copies(keep, generator))
        elif self.block == 1:
            shown = self.known * (self.draw < keep)
        else:  # squares around seeds: a pixel is hidden when a seed lies in the square around it
            seeds = (self.draw >= keep ** (1 / self.block**2)).to(self.draw.dtype)
            hidden = torch.nn.functional.max_pool2d(seeds, self.block, stride=1, padding=self.block // 2)
            shown = self.known * (1 - hidden)
        if self.flips:
            dims = FLIPS[int(torch.randint(4, (1,), generator=generator, device=net_in.device))]
            raw = run(blindspot_input(net_in, shown, self.fill).flip(dims)).flip(dims)
        else:
            raw = run(blindspot_input(net_in, shown, self.fill))
        hidden = self.known - shown  # 1 on the known pixels the network did not see
        count = hidden.sum() * (raw.shape[1] if hidden.shape[1] == 1 else 1)
        loss_t = ((raw - self.y).pow(2) * hidden).sum() / count.clamp(min=1)
        out = self.known_y + (1 - self.known) * raw.detach()  # the known pixels as given
        return Scored(out, loss_t, float(loss_t.item()))

    def sample(self, z):
        return blindspot_input(z, self.known, self.fill)

    def final(self, run, z):  # every known pixel shown
        return self.known_y + (1 - self.known) * run(blindspot_input(z, self.known, self.fill))
