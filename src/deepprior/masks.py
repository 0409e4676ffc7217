"""Inpainting masks: reading, checking, growing, and making them.

Convention: a mask marks the pixels **to fill** (white / nonzero / True), as OpenCV, scikit-image
and LaMa do.  Masks that mark the *known* pixels instead (the paper's data) are read with
``keeps=True`` (CLI: ``--mask-keeps``).  Internally the fitting loop uses the complement, the known
pixels (:class:`deepprior.forward.Mask`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "binarize_mask",
    "check_mask",
    "dilate_mask",
    "is_scattered",
    "reach",
    "near_known",
    "fill_reach",
    "random_pixels_mask",
    "text_mask",
    "hole_mask",
    "strokes_mask",
    "MaskError",
]


class MaskError(ValueError):
    """A mask that cannot be used (size, empty, full)."""


def binarize_mask(mask: np.ndarray, *, keeps: bool = False) -> np.ndarray:
    """A boolean (H, W) array of pixels to fill from a mask array.

    ``mask`` may be boolean, integer (binarised at half its type's range), or float in [0, 1]
    (binarised at 0.5); of shape (H, W) or (H, W, C).  With C = 2 or 4 the last channel is alpha
    and multiplies the gray value (transparent = not marked).  ``keeps=True`` inverts the result.
    """
    m = np.asarray(mask)
    if m.dtype == bool:
        v = m.astype(np.float32)
    elif np.issubdtype(m.dtype, np.integer):
        v = m.astype(np.float32) / float(np.iinfo(m.dtype).max)
    else:
        v = m.astype(np.float32)
    if v.ndim == 3:
        c = v.shape[2]
        if c in (2, 4):
            v = v[:, :, : c - 1].mean(axis=2) * v[:, :, c - 1]
        else:
            v = v.mean(axis=2)
    if v.ndim != 2:
        raise MaskError(f"a mask must be (H, W) or (H, W, C), got shape {m.shape}")
    fill = v >= 0.5
    return ~fill if keeps else fill


def dilate_mask(fill: np.ndarray, radius: int) -> np.ndarray:
    """Grow the pixels to fill by ``radius`` pixels (a disk), e.g. to cover anti-aliased strokes."""
    if radius <= 0:
        return fill
    from scipy.ndimage import binary_dilation

    yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return binary_dilation(fill, structure=(xx * xx + yy * yy) <= radius * radius)


def check_mask(fill: np.ndarray, image_shape: tuple[int, int]) -> None:
    """Raise :class:`MaskError` for a mask of the wrong size, an empty mask, or a full one."""
    if fill.shape != tuple(image_shape):
        raise MaskError(
            f"the mask is {fill.shape[1]}x{fill.shape[0]} but the image is "
            f"{image_shape[1]}x{image_shape[0]} (WxH); they must be the same size"
        )
    if not fill.any():
        raise MaskError("the mask marks no pixel to fill (white = fill; use --mask-keeps if white marks known pixels)")
    if fill.all():
        raise MaskError("the mask covers every pixel: nothing is known to fit (use --mask-keeps if white marks known pixels)")


#: :func:`is_scattered`'s bar: the share of the pixels to fill that have a known pixel among their 8
#: neighbours.  50 % random missing pixels: 99.6 %; 75 %: about 90 %; text or strokes a few pixels wide and
#: holes: far less.
SCATTERED_MIN = 0.9


def is_scattered(fill: np.ndarray) -> bool:
    """True when the pixels to fill are scattered (e.g. randomly missing pixels): at least
    :data:`SCATTERED_MIN` of them touch a known pixel (8-neighbourhood).  Such masks get the
    blind-spot preset (``inpaint-blindspot``), which fills a pixel from the known ones around it."""
    fill = np.asarray(fill, dtype=bool)
    if not fill.any():
        return False
    known = np.pad(~fill, 1, constant_values=False)
    h, w = fill.shape
    near = np.zeros_like(fill)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy != 1 or dx != 1:
                near |= known[dy : dy + h, dx : dx + w]
    return float(near[fill].mean()) >= SCATTERED_MIN


#: :func:`near_known`'s bar for masks that are not scattered: how far the pixels to fill may lie
#: from known ones (:func:`reach`, pixels, Euclidean).  Text 32 px high reaches 2.2-3.0 px (where the blind-spot
#: preset was measured above the paper's text recipe; BENCHMARKS.md), 48-64 px text 4 px, brush
#: strokes 7 px, a hole tens of pixels.
NEAR_MAX_REACH = 3.0
#: The farthest for ``inpaint-blindspot-blocks`` (hiding 3x3 squares): text 64 px high reaches 4 px.
BLOCKS_MAX_REACH = 4.0


#: :func:`reach`'s share of the pixels to fill: the few farthest (where strokes of text cross) do not count
REACH_QUANTILE = 0.999


def reach(fill: np.ndarray) -> float:
    """How far the pixels to fill lie from known pixels: the distance (pixels, Euclidean) within
    which :data:`REACH_QUANTILE` of them lie (0 for an empty mask, infinity for a full one).  Text
    64 px high on a 512 px photo reaches 4 px, though where its strokes cross 0.03 % of its pixels
    lie up to 5.7 px away."""
    from scipy.ndimage import distance_transform_edt

    fill = np.asarray(fill, dtype=bool)
    if not fill.any():
        return 0.0
    if fill.all():
        return float("inf")
    return float(np.quantile(distance_transform_edt(fill)[fill], REACH_QUANTILE, method="higher"))


def fill_reach(fill: np.ndarray) -> float:
    """How far a network must reach to fill the mask: 1 for a scattered one (:func:`is_scattered`:
    nearly every pixel to fill touches a known one), else :func:`reach`."""
    fill = np.asarray(fill, dtype=bool)
    return 1.0 if is_scattered(fill) else reach(fill)


def near_known(fill: np.ndarray) -> bool:
    """True when the pixels to fill have known pixels near them: the mask is scattered
    (:func:`is_scattered`, e.g. randomly missing pixels) or thin (:func:`reach` up to
    :data:`NEAR_MAX_REACH`: text, fine scratches).  Such masks get the blind-spot preset
    (``inpaint-blindspot``), which fills a pixel from the known ones around it; holes and thick
    strokes get the paper's text recipe."""
    fill = np.asarray(fill, dtype=bool)
    return bool(fill.any()) and fill_reach(fill) <= NEAR_MAX_REACH


# ----------------------------------------------------------------------------------------------
# Making masks (for `deepprior degrade mask`, tests and benchmarks)
# ----------------------------------------------------------------------------------------------


def random_pixels_mask(shape: tuple[int, int], fraction: float, *, rng=None) -> np.ndarray:
    """Bernoulli mask: each pixel is to be filled with probability ``fraction``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    return np.random.default_rng(rng).random(shape) < fraction


def text_mask(shape: tuple[int, int], text: str = "deep image prior", *, size: int | None = None, rng=None) -> np.ndarray:
    """Lines of ``text`` written over the image (pixels to fill = the glyphs)."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = shape
    size = size or max(8, min(h, w) // 8)
    font = ImageFont.load_default(size=size)
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    gen = np.random.default_rng(rng)
    y = int(gen.integers(0, max(1, size // 2)))
    while y < h:
        x = -int(gen.integers(0, max(1, size * 2)))
        draw.text((x, y), (text + "  ") * (w // max(1, size) + 2), fill=255, font=font)
        y += int(size * 1.8)
    return np.asarray(im) >= 128


def hole_mask(shape: tuple[int, int], *, fraction: float = 0.1, rng=None) -> np.ndarray:
    """One filled ellipse covering about ``fraction`` of the image, at a random place."""
    h, w = shape
    gen = np.random.default_rng(rng)
    ry, rx = np.sqrt(fraction / np.pi) * h, np.sqrt(fraction / np.pi) * w
    cy = gen.uniform(ry, max(ry + 1, h - ry))
    cx = gen.uniform(rx, max(rx + 1, w - rx))
    yy, xx = np.ogrid[:h, :w]
    return ((yy - cy) / max(ry, 1)) ** 2 + ((xx - cx) / max(rx, 1)) ** 2 <= 1.0


def strokes_mask(shape: tuple[int, int], *, strokes: int = 4, width: int | None = None, rng=None) -> np.ndarray:
    """Random brush strokes (polylines), like scratches painted by hand."""
    from PIL import Image, ImageDraw

    h, w = shape
    gen = np.random.default_rng(rng)
    width = width or max(2, min(h, w) // 30)
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    for _ in range(strokes):
        pts = [(float(gen.uniform(0, w)), float(gen.uniform(0, h)))]
        for _ in range(int(gen.integers(2, 6))):
            x, y = pts[-1]
            pts.append((float(np.clip(x + gen.normal(0, w / 5), 0, w - 1)), float(np.clip(y + gen.normal(0, h / 5), 0, h - 1))))
        draw.line(pts, fill=255, width=width, joint="curve")
    return np.asarray(im) >= 128
