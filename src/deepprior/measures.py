"""Measures of an image that the stopping rules use: its noise level and its JPEG blockiness.

Both look only at the degraded image (or the fit's output), never at a ground truth:

* :func:`estimate_noise_level`: the standard deviation of Gaussian noise (patch PCA), for the
  noise gate of denoising's automatic rule (:mod:`deepprior.stopping`);
* :func:`blockiness` and :func:`block_grid_phase`: how much an image shows JPEG's 8x8 block grid,
  for :class:`deepprior.stopping.BlockArtifacts`.
"""

from __future__ import annotations

import math

import torch

__all__ = ["estimate_noise_level", "blockiness", "block_grid_phase"]


def estimate_noise_level(measurement: torch.Tensor, *, patch: int | None = None, max_patches: int = 200_000) -> float:
    """The standard deviation of Gaussian noise in an image, for the noise gate.

    The patch-PCA estimate of Chen, Zhu and Heng ("An Efficient Statistical Method for Image Noise
    Level Estimation", ICCV 2015): the eigenvalues of the covariance of all ``patch`` x ``patch``
    patches (every channel) are sorted, and the noise variance is the mean of the smallest ones,
    taking the largest set whose mean equals its median (the eigenvalues the image's structure
    leaves to the noise alone).  ``measurement``: (1, C, H, W) (or (C, H, W)), on the image's scale
    ([0, 1]).  Patches are taken at every pixel, or on a grid of about ``max_patches`` for big images.
    ``patch`` (default: 8, smaller where the image has fewer than 40 patches per dimension of one,
    down to 3): with too few patches the smallest eigenvalues spread below the noise's and the
    estimate reads low (8 px patches: 0.84x the noise on a 37x31 crop, 1.0x with 3 px).

    On the 128 px crops of the stopping benchmark's tune images it reads within 6 % of the noise
    actually in the image (sigma 15-50, clipped to [0, 1]); scikit-image's wavelet estimate
    (``estimate_sigma``) read up to 16 % high there, on fine texture at low noise.
    """
    if measurement is None:
        raise ValueError("the noise gate needs sigma or the fit's measurement to estimate it from")
    import numpy as np

    y = measurement.detach().float().cpu().numpy()
    y = y[0] if y.ndim == 4 else y  # (C, H, W)
    c, h, w = y.shape
    if patch is None:
        patch = next((p for p in range(8, 3, -1) if (h - p + 1) * (w - p + 1) >= 40 * c * p * p), 3)
    if h < patch or w < patch:
        raise ValueError(f"the image ({h}x{w}) is too small to estimate its noise level; give sigma")
    windows = np.lib.stride_tricks.sliding_window_view(y, (patch, patch), axis=(1, 2))  # C, h', w', p, p
    step = max(1, math.ceil(math.sqrt(windows.shape[1] * windows.shape[2] / max_patches)))
    windows = windows[:, ::step, ::step]
    dims = c * patch * patch
    total = np.zeros(dims)
    cross = np.zeros((dims, dims))
    count = 0
    for rows in range(0, windows.shape[1], 64):  # bounded memory: 64 rows of patches at a time
        x = np.ascontiguousarray(windows[:, rows:rows + 64].transpose(1, 2, 0, 3, 4)).reshape(-1, dims)
        x = x.astype(np.float64)
        total += x.sum(0)
        cross += x.T @ x
        count += len(x)
    mean = total / count
    eig = np.sort(np.linalg.eigvalsh(cross / count - np.outer(mean, mean)))
    sigma = math.sqrt(max(float(eig[0]), 0.0))
    for k in range(dims, 0, -1):
        tail = eig[:k]
        tau = float(tail.mean())
        if np.sum(tail > tau) == np.sum(tail < tau):
            sigma = math.sqrt(max(tau, 0.0))
            break
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"could not estimate the noise level of the image (got {sigma}); give sigma")
    return sigma


def blockiness(x: torch.Tensor, *, period: int = 8, phase: tuple[int, int] | None = None) -> float:
    """How blocky an image is: the mean absolute step across the lines of a ``period``-pixel grid
    (JPEG's 8x8 blocks) over the mean step between other neighbouring pixels.

    About 1 for a natural image, above 1 where JPEG's blocks show.  ``x``: (1, C, H, W) (or
    (C, H, W)); ``phase``: (row, column) offset of the grid: its lines lie between pixels ``p - 1``
    and ``p`` for ``p = phase + k * period`` (default (0, 0): between pixels 7 and 8, 15 and 16, ...);
    :func:`block_grid_phase` finds it from a JPEG image.
    """
    x = x.detach().float()
    x = x[0] if x.dim() == 4 else x
    r0, c0 = phase or (0, 0)
    dv = (x[:, 1:, :] - x[:, :-1, :]).abs().mean(dim=(0, 2))  # step between rows i and i + 1
    dh = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(0, 1))  # step between columns j and j + 1
    on_v = (torch.arange(dv.numel(), device=dv.device) + 1 - r0) % period == 0
    on_h = (torch.arange(dh.numel(), device=dh.device) + 1 - c0) % period == 0
    on = torch.cat([dv[on_v], dh[on_h]])
    off = torch.cat([dv[~on_v], dh[~on_h]])
    if on.numel() == 0 or off.numel() == 0:
        return 1.0
    return float(on.mean() / off.mean().clamp_min(1e-12))


def block_grid_phase(y: torch.Tensor, *, period: int = 8) -> tuple[int, int]:
    """The (row, column) phase of the JPEG block grid of ``y``: the one with the largest blockiness."""
    best = max(((r, c) for r in range(period) for c in range(period)),
               key=lambda rc: blockiness(y, period=period, phase=rc))
    return best
