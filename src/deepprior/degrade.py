"""Degradations that make test inputs from clean images (``deepprior degrade``).

All take and return float arrays (H, W, C) in [0, 1] and are reproducible by ``rng`` (a seed or a
``numpy.random.Generator``).
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["add_noise", "jpeg_compress", "downscale", "apply_mask"]


def add_noise(image: np.ndarray, sigma: float, *, rng=None, clip: bool = True) -> np.ndarray:
    """Additive white Gaussian noise of standard deviation ``sigma`` (in [0, 255] units, as papers
    state it: sigma=25 means 25/255), clipped to [0, 1] unless ``clip=False``."""
    gen = np.random.default_rng(rng)
    noisy = image + gen.normal(0.0, sigma / 255.0, size=image.shape).astype(np.float32)
    return np.clip(noisy, 0.0, 1.0) if clip else noisy


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """Compress with Pillow's JPEG encoder at ``quality`` (1-95) and decode again."""
    from PIL import Image

    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    q = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    im = Image.fromarray(q[:, :, 0] if q.shape[2] == 1 else q[:, :, :3])
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    out = np.asarray(Image.open(buf)).astype(np.float32) / 255.0
    return out[:, :, None] if out.ndim == 2 else out


def downscale(image: np.ndarray, factor: int, *, kernel: str = "lanczos2") -> np.ndarray:
    """Downscale with the super-resolution forward model (the paper's Lanczos2 kernel).

    The image is first cropped (bottom/right) to a multiple of ``factor``.
    """
    import torch

    from .forward import Downsampler

    h, w = image.shape[:2]
    image = image[: h - h % factor, : w - w % factor]
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()
    with torch.no_grad():
        y = Downsampler(factor, kernel=kernel)(x)
    return y[0].clamp(0, 1).numpy().transpose(1, 2, 0)


def apply_mask(image: np.ndarray, fill: np.ndarray, value: float = 1.0) -> np.ndarray:
    """Set the pixels to fill to ``value`` (white by default, like text over a photo)."""
    out = image.copy()
    out[fill] = value
    return out
