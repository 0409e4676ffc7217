"""Photos too big for memory: restore overlapping tiles and blend them.

A fit's memory grows with the pixels (``deepprior.cost``): the paper's network needs ~35 GiB for a
2048x2048 photo.  :func:`run_tiled` cuts the image into ``tile`` x ``tile`` tiles that overlap by
``overlap`` pixels, restores each tile with its own fit (:func:`deepprior.api.run_task`, seed
``rng + i`` for tile ``i``), and blends the results with weights that ramp linearly from the
tile's edge over the overlap, so that no seam shows.  Memory is that of one tile; time is the sum
of the tiles' (more pixels in all, because of the overlaps).  Each tile only sees its own
content: large structures across tiles are restored independently (BENCHMARKS.md, "Tiles",
measures what that costs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

__all__ = ["run_tiled", "tile_for", "tile_overlap", "tile_count", "tile_starts", "StepTotals", "TiledResult",
           "TileInfo", "canvas", "paste", "TILE_OVERLAP"]


@dataclass
class TiledResult:
    """What :func:`run_tiled` returns."""

    image: np.ndarray  # the blended result, float32 in [0, 1]
    boxes: list = field(default_factory=list)  # (top, left, height, width) of every tile, input pixels
    results: list = field(default_factory=list)  # the TaskResult of every tile
    # Ctrl-C, or a callback that stopped a tile's fit (the app's stop button): the tiles after that
    # one are the input (upscaled)
    interrupted: bool = False


class TileInfo(NamedTuple):
    """Where the fit that a tiled run's callback hears from sits: ``state.tile`` (see :func:`run_tiled`)."""

    index: int  # 0-based among the fitted tiles
    count: int  # tiles fitted in all
    top: int  # the tile's top-left corner in output pixels (input pixels times the SR scale)
    left: int


#: pixels shared by neighbouring tiles (the CLI's default; a preset's tiles: see tile_overlap)
TILE_OVERLAP = 32


def tile_overlap(tile: int) -> int:
    """The overlap of a preset's tiles (Preset.tile): :data:`TILE_OVERLAP`, at most a quarter of the tile."""
    return min(TILE_OVERLAP, tile // 4)


def tile_for(preset, height: int, width: int, requested: int | None = None) -> int | None:
    """The side of the tiles to fit a ``height`` x ``width`` image in, or None for one fit of the whole.

    ``requested``: the user's choice (the CLI's ``--tile``; 0: the whole image) or None: the
    preset's (:attr:`deepprior.presets.Preset.tile`), for images larger than it on either side."""
    if requested is not None:
        return requested or None
    tile = getattr(preset, "tile", None)
    return tile if tile and max(height, width) > tile else None


def tile_count(height: int, width: int, tile: int, overlap: int, fill: np.ndarray | None = None) -> int:
    """How many tiles :func:`run_tiled` fits for a ``height`` x ``width`` image (inpainting: only
    those where ``fill``, (H, W) bool, marks a pixel to fill)."""
    return sum(1 for _ in _boxes(height, width, tile, overlap, fill))


def _boxes(height: int, width: int, tile: int, overlap: int, fill: np.ndarray | None = None):
    """The (top, left) of each tile to fit, row by row (with ``fill``: those with a pixel to fill)."""
    th, tw = min(tile, height), min(tile, width)
    for top in tile_starts(height, tile, overlap):
        for left in tile_starts(width, tile, overlap):
            if fill is None or fill[top : top + th, left : left + tw].any():
                yield top, left


class StepTotals:
    """Steps and seconds over all the fits of a tiled run, from each fit's own (which restart at 1
    with each tile): call it with a fit's ``(step, elapsed)`` at every step; ``steps`` and
    ``seconds`` are those of the tiles done."""

    def __init__(self):
        self.steps, self.seconds = 0, 0.0
        self._last = (0, 0.0)

    def __call__(self, step: int, elapsed: float) -> tuple[int, float]:
        if step <= self._last[0]:  # the next tile's fit began
            self.steps += self._last[0]
            self.seconds += self._last[1]
        self._last = (step, elapsed)
        return self.steps + step, self.seconds + elapsed


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``n`` with at least ``overlap`` shared."""
    if tile >= n:
        return [0]
    step = tile - overlap
    starts = list(range(0, n - tile, step)) + [n - tile]
    return sorted(set(starts))


def _ramp(n: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """1-D blending weights of a tile: a linear ramp over ``overlap`` pixels on each inner edge."""
    w = np.ones(n, np.float32)
    r = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
    k = min(overlap, n)
    if not first:
        w[:k] = np.minimum(w[:k], r[:k])
    if not last:
        w[n - k :] = np.minimum(w[n - k :], r[:k][::-1])
    return w


def run_tiled(task: str, image, *, tile: int, overlap: int = 32, mask=None, scale: int | None = None,
              rng: int | None = 0, **kwargs) -> TiledResult:
    """Restore ``image`` (numpy, (H, W) or (H, W, C)) tile by tile and blend the tiles.

    Parameters
    ----------
    task : {"denoise", "deblock", "sr", "inpaint"}
    image : ndarray
        As :func:`deepprior.api.run_task` (integers scaled to [0, 1]).
    tile : int
        Tile side in input pixels (the output tile is ``scale`` times larger for SR).
    overlap : int
        Pixels shared by neighbouring tiles (blended); must be smaller than ``tile``.
    mask : array (H, W), optional
        Inpainting: as :func:`deepprior.api.run_task` takes it (with its ``mask_keeps`` and
        ``mask_dilate``, applied to the whole mask; without a mask, the image's transparent
        pixels), cut into the same tiles.  A tile with nothing to fill is not fitted: the input is
        its result.
    rng : int or None
        Tile ``i`` uses seed ``rng + i`` (None: fresh seeds).
    **kwargs
        Passed to :func:`deepprior.api.run_task` (``preset=``, ``iters=``, ``device=``, ...).
        ``stop`` may be a rule name, or a function returning a fresh rule for each tile (a rule
        object holds the state of one fit).  A ``callback`` hears every tile's fit; its states
        carry ``state.tile``, a :class:`TileInfo` (which tile, and where its output goes).
    """
    from .api import run_task
    from .pipeline import MAX_PIXELS, InputError

    if not 0 <= overlap < tile:
        raise InputError(f"the tile overlap must be >= 0 and smaller than the tile ({tile}), got {overlap}")
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise InputError(f"run_tiled takes a numpy (H, W) or (H, W, C) image, got shape {arr.shape}")
    h, w = arr.shape[:2]
    s = (scale or 4) if task == "sr" else 1  # run_task's default SR scale is 4
    # the whole image's checks (as deepprior.pipeline.restore's), before any tile's fit
    limit = kwargs.get("max_pixels", MAX_PIXELS)
    if limit is not None and h * s * w * s > limit:
        raise InputError(f"the output would be {w * s}x{h * s} = {h * s * w * s:,} pixels, over the limit of "
                         f"{limit:,}; raise it with --max-pixels N (API: max_pixels=N) if your memory allows")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError("the image contains non-finite values (NaN or infinity)")
    fill = None
    if task == "inpaint":  # the whole image's pixels to fill, as run_task reads them (mask_keeps, mask_dilate, alpha)
        from .api import pixels_to_fill

        fill = pixels_to_fill(arr, mask, mask_keeps=kwargs.pop("mask_keeps", False),
                              mask_dilate=kwargs.pop("mask_dilate", 0))
        if fill is None:
            raise InputError("inpainting needs a mask (or an image with transparent pixels to fill)")
        if fill.shape != (h, w):
            raise InputError(f"the mask is {fill.shape[1]}x{fill.shape[0]} but the image is {w}x{h} (WxH)")
        if not fill.any():
            raise InputError("the mask marks no pixel to fill")
    out = acc = None
    boxes, results = [], []
    fitted = {box: k for k, box in enumerate(_boxes(h, w, tile, overlap, fill))}  # (top, left) -> its index
    tops, lefts = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    interrupted = False
    for i, (top, left) in enumerate((t, l) for t in tops for l in lefts):
        th, tw = min(tile, h), min(tile, w)
        part = arr[top : top + th, left : left + tw]
        if interrupted or (top, left) not in fitted:  # the input itself: after a stop, or nothing to fill
            img = _as_float(part)
            img = np.repeat(np.repeat(img, s, axis=0), s, axis=1)
            if task == "inpaint" and img.ndim == 3 and img.shape[2] in (2, 4):
                img = img[:, :, :-1]  # no alpha (inpainting drops it)
        else:
            extra = {} if fill is None else {"mask": fill[top : top + th, left : left + tw]}
            kw = dict(kwargs)
            if callable(kw.get("stop")) and not hasattr(kw["stop"], "best"):
                kw["stop"] = kw["stop"]()  # a factory: a fresh rule for every tile
            if kw.get("callback") is not None:  # the callbacks hear which tile: a first one tags the state
                cbs = [kw["callback"]] if callable(kw["callback"]) else list(kw["callback"])
                kw["callback"] = [_tag(TileInfo(fitted[top, left], len(fitted), top * s, left * s)), *cbs]
            res = run_task(task, part, scale=scale, rng=None if rng is None else rng + i, **extra, **kw)
            results.append(res)
            fit = getattr(getattr(res, "restoration", None), "fit", None)
            interrupted = getattr(fit, "stop_reason", None) in ("interrupted", "callback")
            img = res.image
        img = np.asarray(img, np.float32)
        img = img if img.ndim == 3 else img[:, :, None]
        if out is None:
            out = np.zeros((h * s, w * s, img.shape[2]), np.float32)
            acc = np.zeros((h * s, w * s, 1), np.float32)
        wy = _ramp(th * s, overlap * s, top == 0, top + th >= h)
        wx = _ramp(tw * s, overlap * s, left == 0, left + tw >= w)
        weight = (wy[:, None] * wx[None, :])[:, :, None]
        out[top * s : (top + th) * s, left * s : (left + tw) * s] += img * weight
        acc[top * s : (top + th) * s, left * s : (left + tw) * s] += weight
        boxes.append((top, left, th, tw))
    blended = out / acc
    if arr.ndim == 2 and blended.shape[2] == 1:
        blended = blended[:, :, 0]
    return TiledResult(np.clip(blended, 0, 1), boxes, results, interrupted)


def canvas(image, channels: int, scale: int = 1):
    """The whole picture of a tiled run in progress, to :func:`paste` its tiles' outputs on: the
    input (integers scaled to [0, 1], each pixel repeated ``scale`` times for SR, alpha dropped,
    gray repeated) as a (1, ``channels``, H, W) CPU tensor."""
    import torch

    a = _as_float(np.asarray(image))
    a = a[:, :, None] if a.ndim == 2 else a
    a = a[:, :, :channels] if a.shape[2] >= channels else np.repeat(a[:, :, :1], channels, axis=2)
    a = np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]


def paste(whole, part, info: TileInfo):
    """Put a tile's (1, C, h, w) output ``part`` into ``whole`` (a :func:`canvas`) where ``info``
    says it goes; returns ``whole``."""
    whole[:, :, info.top:info.top + part.shape[2], info.left:info.left + part.shape[3]] = part.detach().cpu()
    return whole


def _tag(info: TileInfo):
    """A callback that sets ``state.tile = info`` (and never stops the fit)."""

    def tag(step, state):
        state.tile = info
        return False

    return tag


def _as_float(a: np.ndarray) -> np.ndarray:
    """An image as float32 in [0, 1] (integers scaled by their type's maximum)."""
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / np.iinfo(a.dtype).max
    return a.astype(np.float32)
