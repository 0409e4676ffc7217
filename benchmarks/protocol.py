"""The evaluation protocol of the paper benchmarks, as small pure functions.

Everything here is deterministic and depends only on numpy, Pillow and scikit-image (no torch,
no deepprior), so that the protocol can be unit-tested quickly (``tests/test_benchmarks.py``)
and read on its own:

* images are float arrays in [0, 1], (H, W) for grayscale or (H, W, 3) for colour;
* :func:`centre_crop` crops as the authors' ``crop_image`` does (centred, floor offsets);
* :func:`lanczos_downscale` / :func:`bicubic_upscale` are Pillow resizes of 8-bit images, as in
  the authors' super-resolution notebook (``Image.LANCZOS`` = the old ``Image.ANTIALIAS``);
* :func:`rgb_to_y` and :func:`trimmed_y_psnr` are the super-resolution metric: luminance Y
  (ITU-R BT.601, studio range), 4 pixels trimmed at the top/left and 5 at the bottom/right;
* :func:`bernoulli_mask`, :func:`add_noise` and :func:`jpeg` make the degraded inputs from a
  seed (:func:`image_seed` gives each image its own fixed seed).
"""

from __future__ import annotations

import io
import zlib

import numpy as np

#: BT.601 luminance weights (for RGB in [0, 1], giving Y in [16/255, 235/255])
Y_WEIGHTS = (65.481, 128.553, 24.966)
#: pixels trimmed from the top/left and from the bottom/right before the SR metrics
TRIM_TOP_LEFT = 4
TRIM_BOTTOM_RIGHT = 5


# --- images -------------------------------------------------------------------------------------


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Return an (H, W, 3) copy of an image: grayscale (H, W) or (H, W, 1) is repeated three times,
    an alpha channel is dropped."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] in (1, 2):
        return np.repeat(img[:, :, :1], 3, axis=2)
    return img[:, :, :3].copy()


def as_gray(image: np.ndarray) -> np.ndarray:
    """Return a grayscale (H, W) image: the first channel of an (H, W, C) image (for files stored
    as mode L, which have one channel)."""
    img = np.asarray(image)
    return img if img.ndim == 2 else img[:, :, 0].copy()


def centre_crop(image: np.ndarray, size: int | None = None, *, multiple: int = 1) -> np.ndarray:
    """Crop the centre of an image.

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, C)
    size : int, optional
        Side of a square crop.  Default: the largest size that is a multiple of ``multiple`` in
        each direction (the authors' ``crop_image(img, d=32)``).
    multiple : int
        Both sides of the result are multiples of this (``size`` must be one too).

    Returns
    -------
    ndarray
        A view of the centre; offsets are floored, ``(H - h) // 2`` and ``(W - w) // 2``.
    """
    h, w = image.shape[:2]
    if size is None:
        ch, cw = h - h % multiple, w - w % multiple
    else:
        if size % multiple:
            raise ValueError(f"crop size {size} is not a multiple of {multiple}")
        if size > min(h, w):
            raise ValueError(f"crop size {size} is larger than the image ({h}x{w})")
        ch = cw = size
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[top : top + ch, left : left + cw]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round a [0, 1] float image to uint8 (values outside [0, 1] are clipped)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _pil_resize(image: np.ndarray, size: tuple[int, int], method) -> np.ndarray:
    from PIL import Image

    q = to_uint8(image)
    gray = q.ndim == 2
    out = np.asarray(Image.fromarray(q).resize(size, method)).astype(np.float32) / 255.0
    return out if gray else out.reshape(size[1], size[0], -1)


def lanczos_downscale(image: np.ndarray, scale: int) -> np.ndarray:
    """The low-resolution input: Pillow ``Image.LANCZOS`` resize of the 8-bit image to
    ``(W // scale, H // scale)`` (the authors' SR notebook).  Returns float32 in [0, 1]."""
    from PIL import Image

    h, w = image.shape[:2]
    return _pil_resize(image, (w // scale, h // scale), Image.LANCZOS)


def bicubic_upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: Pillow ``Image.BICUBIC`` resize of the 8-bit low-resolution image to
    ``scale`` times its size.  Returns float32 in [0, 1]."""
    from PIL import Image

    h, w = image.shape[:2]
    return _pil_resize(image, (w * scale, h * scale), Image.BICUBIC)


# --- degradations -------------------------------------------------------------------------------


def image_seed(name: str, base: int = 0) -> int:
    """A fixed seed for one image: CRC-32 of its name plus ``base`` (stable across runs and
    Python processes, unlike ``hash``)."""
    return (zlib.crc32(name.encode("utf-8")) + base) % 2**31


def bernoulli_mask(shape: tuple[int, int], fraction: float, seed: int) -> np.ndarray:
    """Bernoulli mask: each pixel is missing with probability ``fraction``.

    Returns a bool array, True = missing (to fill), drawn from ``numpy.random.default_rng(seed)``
    (the same draw as ``deepprior.masks.random_pixels_mask``).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    return np.random.default_rng(seed).random(shape) < fraction


def add_noise(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Additive white Gaussian noise of standard deviation ``sigma``/255 from
    ``numpy.random.default_rng(seed)``, clipped to [0, 1] (as ``deepprior.degrade.add_noise``).
    Returns float32."""
    gen = np.random.default_rng(seed)
    noise = gen.normal(0.0, sigma / 255.0, size=image.shape).astype(np.float32)
    return np.clip(image.astype(np.float32) + noise, 0.0, 1.0)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode the 8-bit image with Pillow's JPEG encoder at ``quality`` and decode it again.
    Returns float32 in [0, 1] with the input's layout."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        out = np.asarray(im).astype(np.float32) / 255.0
    return out.reshape(image.shape)


# --- metrics ------------------------------------------------------------------------------------


def psnr(output: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB over all pixels and channels, in float64: ``10 log10(range^2 / MSE)``.
    The output is clipped to [0, data_range] first."""
    out = np.clip(np.asarray(output, dtype=np.float64), 0.0, data_range)
    mse = np.mean((out - np.asarray(truth, dtype=np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def ssim(output: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    """SSIM (scikit-image defaults, 7x7 window) with an explicit ``data_range``; over the
    channels of an (H, W, C) image (``channel_axis=-1``), plain for (H, W)."""
    from skimage.metrics import structural_similarity

    out = np.clip(np.asarray(output, dtype=np.float64), 0.0, data_range)
    ref = np.asarray(truth, dtype=np.float64)
    kw = {"channel_axis": -1} if ref.ndim == 3 else {}
    return float(structural_similarity(out, ref, data_range=data_range, **kw))


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Luminance Y = 16/255 + (65.481 R + 128.553 G + 24.966 B)/255 of RGB in [0, 1] (float64)."""
    rgb = np.asarray(image, dtype=np.float64)
    return 16.0 / 255.0 + (Y_WEIGHTS[0] * rgb[..., 0] + Y_WEIGHTS[1] * rgb[..., 1] + Y_WEIGHTS[2] * rgb[..., 2]) / 255.0


def trim(image: np.ndarray, top_left: int = TRIM_TOP_LEFT, bottom_right: int = TRIM_BOTTOM_RIGHT) -> np.ndarray:
    """Drop ``top_left`` rows/columns at the top and left and ``bottom_right`` at the bottom and right."""
    h, w = image.shape[:2]
    return image[top_left : h - bottom_right, top_left : w - bottom_right]


def trimmed_y_psnr(output: np.ndarray, truth: np.ndarray) -> float:
    """The super-resolution PSNR: on Y of the RGB images (output clipped to [0, 1]), data range 1,
    trimmed (:func:`trim`)."""
    out_y = rgb_to_y(np.clip(output, 0.0, 1.0))
    return psnr(trim(out_y), trim(rgb_to_y(truth)))


def trimmed_y_ssim(output: np.ndarray, truth: np.ndarray) -> float:
    """The super-resolution SSIM: as :func:`trimmed_y_psnr`, with :func:`ssim` on Y."""
    return ssim(trim(rgb_to_y(np.clip(output, 0.0, 1.0))), trim(rgb_to_y(truth)))
