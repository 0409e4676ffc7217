"""Forward models ``A``: what the degradation did to the image.

Each forward model is a small :class:`torch.nn.Module` that maps an image batch ``x`` of shape
``(N, C, H, W)`` to a measurement ``A(x)``.  The fitting loop minimises ``||A(f(z)) - y||^2``
averaged over the measured entries (:meth:`ForwardModel.count`).  Adding a new inverse problem
means writing one forward model.

Functional forms (:func:`downsample`, :func:`lanczos_kernel`) sit beside the modules.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ForwardModel",
    "Identity",
    "Mask",
    "Downsampler",
    "Compose",
    "lanczos_kernel",
    "downsample",
    "SR_FACTORS",
]

#: Super-resolution factors the paper's kernel supports with size preserved (it has phase 0.5).
SR_FACTORS = (2, 4, 8)


def _check_image(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 4-D tensor (N, C, H, W), got {shape}")


class ForwardModel(nn.Module):
    """Base class: ``forward(x) -> y``; linear models also give :meth:`adjoint`."""

    linear = True
    #: Output-size / measurement-size ratio per spatial axis (e.g. 4 for a x4 downsampler).
    scale = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def measurement_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of ``A(x)`` for an ``x`` of ``shape`` (N, C, H, W)."""
        n, c, h, w = shape
        return (n, c, h // self.scale, w // self.scale)

    def count(self, y: torch.Tensor) -> float:
        """Number of measured entries in ``y`` (the data term averages over them)."""
        return float(y.numel())

    def adjoint(self, y: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """``A^T y`` for linear models (by automatic differentiation unless overridden)."""
        if not self.linear:
            raise TypeError(f"{type(self).__name__} is not linear: it has no adjoint")
        n, c, h, w = y.shape
        shape = shape or (n, c, h * self.scale, w * self.scale)
        x0 = torch.zeros(shape, dtype=y.dtype, device=y.device, requires_grad=True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self(x0), x0, grad_outputs=y)
        return g

    def data_term(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean squared error between ``A(x)`` and ``y`` over the measured entries."""
        return (self(x) - y).pow(2).sum() / self.count(y)


class Identity(ForwardModel):
    """``A(x) = x``: denoising and JPEG artifact removal."""

    def forward(self, x):
        _check_image(x)
        return x

    def adjoint(self, y, shape=None):
        return y


class Mask(ForwardModel):
    """``A(x) = m * x`` with ``m`` = 1 on known pixels: inpainting.

    Parameters
    ----------
    known : tensor of shape (H, W), (1, 1, H, W) or (1, C, H, W)
        1 (True) where the pixel is known, 0 where it is to be filled.
    """

    def __init__(self, known: torch.Tensor):
        super().__init__()
        known = torch.as_tensor(known)
        if known.ndim == 2:
            known = known[None, None]
        if known.ndim != 4 or known.shape[0] != 1:
            raise ValueError(f"mask must be (H, W), (1, 1, H, W) or (1, C, H, W), got {tuple(known.shape)}")
        self.register_buffer("known", known.float())

    def forward(self, x):
        _check_image(x)
        if x.shape[-2:] != self.known.shape[-2:]:
            raise ValueError(
                f"image is {x.shape[-2]}x{x.shape[-1]} (HxW) but the mask is "
                f"{self.known.shape[-2]}x{self.known.shape[-1]}"
            )
        return x * self.known

    def data_term(self, x, y):
        """Mean squared error over the known pixels only (``y``'s unknown pixels are ignored)."""
        return (self(x) - self(y)).pow(2).sum() / self.count(y)

    def count(self, y):
        per_channel = y.shape[1] if self.known.shape[1] == 1 else 1
        return float(self.known.sum()) * per_channel * y.shape[0]

    def adjoint(self, y, shape=None):
        return y * self.known


# ----------------------------------------------------------------------------------------------
# Super-resolution: the paper's downsampler
# ----------------------------------------------------------------------------------------------


def lanczos_kernel(factor: int, *, support: int = 2, phase: float = 0.5) -> np.ndarray:
    """The paper's 2-D Lanczos kernel (``models/downsampler.py``, ``get_kernel``), normalised to sum 1.

    Width ``2 * support * factor + 1`` taps; with ``phase=0.5`` it has one tap fewer (even size),
    centred between pixels.
    """
    width = 2 * support * factor + 1
    size = width - 1 if phase == 0.5 else width
    center = (width + 1) / 2.0
    idx = np.arange(1, size + 1, dtype=np.float64)
    d = np.abs(idx + (0.5 if phase == 0.5 else 0.0) - center) / factor
    with np.errstate(divide="ignore", invalid="ignore"):
        v = support * np.sin(np.pi * d) * np.sin(np.pi * d / support) / (np.pi * np.pi * d * d)
    v = np.where(d == 0, 1.0, v)
    kernel = np.outer(v, v)
    return kernel / kernel.sum()


def _bicubic_kernel(factor: int) -> np.ndarray:
    """Antialiased bicubic (a = -0.5) downsampling kernel, as MATLAB's ``imresize``, size ``4 * factor``."""
    size = 4 * factor
    t = (np.arange(size) - (size - 1) / 2.0) / factor
    a = -0.5
    at = np.abs(t)
    v = np.where(
        at <= 1,
        (a + 2) * at**3 - (a + 3) * at**2 + 1,
        np.where(at < 2, a * at**3 - 5 * a * at**2 + 8 * a * at - 4 * a, 0.0),
    )
    kernel = np.outer(v, v)
    return kernel / kernel.sum()


def _kernel(factor: int, kind: str) -> np.ndarray:
    if kind == "lanczos2":
        return lanczos_kernel(factor, support=2)
    if kind == "lanczos3":
        return lanczos_kernel(factor, support=3)
    if kind == "bicubic":
        return _bicubic_kernel(factor)
    raise ValueError(f"unknown SR kernel {kind!r}: use 'lanczos2', 'lanczos3' or 'bicubic'")


def _check_factor(factor: int) -> None:
    if factor not in SR_FACTORS:
        raise ValueError(f"super-resolution factor must be one of {SR_FACTORS}, got {factor}")


def downsample(x: torch.Tensor, factor: int, *, kernel: str = "lanczos2") -> torch.Tensor:
    """Downsample ``x`` (N, C, H, W) by ``factor`` with the paper's kernel (functional form of
    :class:`Downsampler`).  H and W must be multiples of ``factor``."""
    return Downsampler(factor, kernel=kernel).to(x.device, x.dtype)(x)


class Downsampler(ForwardModel):
    """The paper's super-resolution forward model: blur with a Lanczos2 kernel (phase 0.5, sum 1),
    keep every ``factor``-th pixel, with replication padding so that H x W maps to
    (H / factor) x (W / factor).  Applied per channel (a depthwise convolution).

    Parameters
    ----------
    factor : int
        2, 4 or 8.
    kernel : {"lanczos2", "lanczos3", "bicubic"}
        "lanczos2" is the paper's; "bicubic" is MATLAB-style antialiased bicubic.
    """

    def __init__(self, factor: int, *, kernel: str = "lanczos2"):
        super().__init__()
        _check_factor(factor)
        self.scale = factor
        self.kind = kernel
        k = torch.from_numpy(_kernel(factor, kernel)).float()
        self.register_buffer("kernel", k[None, None])
        size = k.shape[0]
        # as the reference: odd kernels pad (size-1)/2, even ones (size-factor)/2
        self.pad = (size - 1) // 2 if size % 2 == 1 else (size - factor) // 2

    def forward(self, x):
        _check_image(x)
        h, w = x.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(f"image size {h}x{w} is not a multiple of the factor {self.scale}")
        c = x.shape[1]
        xp = F.pad(x, (self.pad,) * 4, mode="replicate")
        weight = self.kernel.to(x.dtype).expand(c, 1, -1, -1)
        return F.conv2d(xp, weight, stride=self.scale, groups=c)


class Compose(ForwardModel):
    """Apply forward models in order: ``Compose(A1, A2)(x) = A2(A1(x))``."""

    def __init__(self, *models: ForwardModel):
        super().__init__()
        if not models:
            raise ValueError("Compose needs at least one forward model")
        self.models = nn.ModuleList(models)
        self.linear = all(m.linear for m in models)
        self.scale = math.prod(m.scale for m in models)

    def forward(self, x):
        for m in self.models:
            x = m(x)
        return x

    def count(self, y):
        return self.models[-1].count(y)
