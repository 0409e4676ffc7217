"""The public functions: :func:`denoise`, :func:`deblock`, :func:`super_resolve`, :func:`inpaint`.

Signatures follow scikit-image: the image first, options keyword-only.

Dtype and range rules
---------------------
* numpy in -> numpy out; torch in -> torch out on the same device.
* numpy arrays are (H, W) or (H, W, C) (``channel_axis`` says where C is; default last); torch
  tensors are channel-first, (H, W), (C, H, W) or (1, C, H, W), and come back in the same layout.
* Integer input is scaled to [0, 1] by its type's maximum (uint8 / 255, uint16 / 65535); float
  input is taken as [0, 1] (values a little outside, such as unclipped noise, are fine).  The
  output is float in [0, 1]: float64 for float64 input, float32 otherwise.
* C = 1 (gray), 3 (RGB), or 2 / 4 (with alpha as the last channel).  Denoising, deblocking and
  super-resolution carry alpha through untouched (resized for SR); :func:`inpaint` returns an
  opaque image (alpha dropped), and without a mask fills the transparent pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pipeline import MAX_PIXELS, InputError

__all__ = ["denoise", "deblock", "super_resolve", "inpaint", "run_task", "choose_preset", "TaskResult"]


@dataclass
class _Layout:
    is_torch: bool
    ndim: int
    channel_axis: int | None
    device: object = None
    dtype: object = None


def _to_bchw(image, channel_axis, what="image"):
    import torch

    if isinstance(image, torch.Tensor):
        layout = _Layout(True, image.ndim, None, image.device, image.dtype)
        t = image.detach()
        if t.ndim == 2:
            t = t[None, None]
        elif t.ndim == 3:
            t = t[None]
        elif not (t.ndim == 4 and t.shape[0] == 1):
            raise InputError(f"a torch {what} must be (H, W), (C, H, W) or (1, C, H, W), got {tuple(t.shape)}")
        if t.is_complex():
            raise InputError(f"unsupported {what} dtype {t.dtype}")
        if t.dtype != torch.bool and not t.is_floating_point():
            t = t.float() / float(torch.iinfo(t.dtype).max)  # as numpy's: the integer type's full scale
        if t.shape[1] not in (1, 2, 3, 4):
            raise InputError(f"the {what} has {t.shape[1]} channels; expected 1 to 4 (a torch image is "
                             "channels first: (C, H, W))")
        if 0 in t.shape:
            raise InputError(f"the {what} is empty: {tuple(image.shape)}")
        return t.float(), layout
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr3 = arr[:, :, None]
        axis = None
    elif arr.ndim == 3:
        axis = channel_axis if channel_axis is not None else -1
        if not -3 <= axis < 3:
            raise InputError(f"channel_axis={axis} is out of range for a {what} of 3 dimensions")
        arr3 = np.moveaxis(arr, axis, -1)
    else:
        raise InputError(f"a numpy {what} must be (H, W) or (H, W, C), got shape {arr.shape}")
    if 0 in arr.shape:
        raise InputError(f"the {what} is empty: shape {arr.shape}")
    layout = _Layout(False, arr.ndim, axis, dtype=arr.dtype)
    if arr3.dtype == bool:
        f = arr3.astype(np.float32)
    elif np.issubdtype(arr3.dtype, np.integer):
        f = arr3.astype(np.float32) / float(np.iinfo(arr3.dtype).max)
    elif np.issubdtype(arr3.dtype, np.floating):
        f = arr3.astype(np.float32)
    else:
        raise InputError(f"unsupported {what} dtype {arr3.dtype}")
    if arr3.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"the {what} has {arr3.shape[2]} channels; expected 1 to 4 (is channel_axis right?)")
    return torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1)))[None], layout


def _from_bchw(t, layout: _Layout):
    import torch

    if layout.is_torch:
        out = t.to(layout.device)
        if layout.dtype is not None and layout.dtype.is_floating_point:
            out = out.to(layout.dtype)
        if layout.ndim == 2:
            return out[0, 0] if out.shape[1] == 1 else out[0]
        return out[0] if layout.ndim == 3 else out
    arr = t[0].detach().cpu().numpy().transpose(1, 2, 0)
    arr = arr.astype(np.float64 if layout.dtype == np.float64 else np.float32)
    if layout.ndim == 2 and arr.shape[2] == 1:
        return arr[:, :, 0]
    return np.moveaxis(arr, -1, layout.channel_axis) if layout.channel_axis is not None else arr


@dataclass
class TaskResult:
    """What :func:`run_task` returns: the image (same kind as the input) and the details."""

    image: object
    restoration: object  # deepprior.pipeline.Restoration (of the first tile, where the fit was tiled)
    alpha_dropped: bool = False
    tiles: object = None  # deepprior.tiles.TiledResult where the preset fitted the image in tiles (Preset.tile)


def noise_level(image, *, channel_axis: int | None = -1) -> float | None:
    """The Gaussian noise level of ``image`` on the image scale [0, 1]
    (:func:`deepprior.measures.estimate_noise_level`; alpha ignored); None where the image has too
    little texture to tell (e.g. a flat image)."""
    from .measures import estimate_noise_level

    y, _ = _to_bchw(image, channel_axis)
    if y.shape[1] in (2, 4):
        y = y[:, :-1]  # alpha is not noise
    try:
        return estimate_noise_level(y)
    except ValueError:
        return None


def choose_preset(task: str, image, *, scale: int | None = None, sigma: float | None = None,
                  mask=None, mask_keeps: bool = False, mask_dilate: int = 0, channel_axis: int | None = -1,
                  device=None):
    """The default :class:`~deepprior.presets.Preset` of ``task`` for ``image`` on ``device``
    (None or "auto": the one :func:`run_task` would pick).

    Super-resolution's depends on ``scale``, denoising's on the noise level
    (:func:`deepprior.presets.default_preset`): ``sigma`` on the image scale [0, 1] when given, else
    estimated from the image (:func:`deepprior.measures.estimate_noise_level`; an image too small to
    estimate it from gets the paper recipe).  Inpainting's on the mask (as :func:`run_task` takes it,
    or the image's transparent pixels): ``inpaint-blindspot`` where every missing pixel lies within
    3 px of known ones (scattered pixels, 32 px text, fine scratches), ``inpaint-blindspot-blocks``
    within 4 px (64 px text; :func:`deepprior.masks.fill_reach`), else (holes, thick strokes)
    ``inpaint-text-paper``; a mask of the wrong size, an
    empty or a full one raises :class:`~deepprior.masks.MaskError`.
    """
    from .masks import check_mask, fill_reach
    from .pipeline import check_sigma
    from .presets import default_preset, get_preset

    check_sigma(sigma)
    if task == "denoise" and sigma is None:
        sigma = noise_level(image, channel_axis=channel_axis)
    reach = None
    if task == "inpaint":
        y, _ = _to_bchw(image, channel_axis)
        fill = _fill(mask, y, mask_keeps, mask_dilate)
        if fill is not None:  # a mask of the wrong size, or an empty one, chooses nothing
            check_mask(fill, tuple(y.shape[-2:]))
        reach = None if fill is None else fill_reach(fill)
    kind = None
    if task == "denoise":  # on a GPU two fits averaged (deepprior.presets.default_preset)
        import torch

        from .pipeline import resolve_device

        kind = resolve_device(device).type if device is None or device == "auto" else torch.device(device).type
    return get_preset(default_preset(task, scale=scale, sigma=sigma, reach=reach, device=kind))


def _fill(mask, y, keeps: bool, dilate: int):
    """The pixels to fill, (H, W) bool: from ``mask`` or else ``y``'s alpha (below one half); None
    without either."""
    import torch

    from .masks import binarize_mask, dilate_mask

    if mask is None:
        if y.shape[1] not in (2, 4):
            return None
        fill = (y[0, -1] < 0.5).numpy()
    else:
        m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if isinstance(mask, torch.Tensor) and m.ndim == 3:
            m = np.moveaxis(m, 0, -1)
        fill = binarize_mask(m, keeps=keeps)
    return dilate_mask(fill, dilate)


def pixels_to_fill(image, mask=None, *, mask_keeps: bool = False, mask_dilate: int = 0, channel_axis: int | None = -1):
    """The pixels an inpainting of ``image`` fills, (H, W) bool, from ``mask`` as :func:`run_task`
    takes it (or else the image's transparent pixels); None without either."""
    y, _ = _to_bchw(image, channel_axis)
    return _fill(mask, y, mask_keeps, mask_dilate)


def run_task(
    task: str,
    image,
    *,
    mask=None,
    scale: int | None = None,
    preset=None,
    iters: int | None = None,
    rng=None,
    device=None,
    callback=None,
    reference=None,
    channel_axis: int | None = -1,
    mask_keeps: bool = False,
    mask_dilate: int = 0,
    time_budget: float | None = None,
    max_pixels: int | None = MAX_PIXELS,
    stop="auto",
    sigma: float | None = None,
    checkpoint=None,
    checkpoint_every: int = 0,
    resume: dict | None = None,
    check_memory: bool = True,
    announce=None,
    **overrides,
) -> TaskResult:
    """Run one task ("denoise", "deblock", "sr", "inpaint") and return the image with its details.

    The task functions below are thin wrappers of this one.  ``overrides`` change preset fields
    (e.g. ``lr=0.005``, ``jitter=0``).  ``stop`` says when the fit ends: ``"auto"`` (default: the
    task's rule of :data:`deepprior.stopping.AUTO_STOP`, chosen by the stopping benchmark; the
    preset's ``iters`` is the cap; for tasks without a rule, today JPEG, SR and inpainting, exactly
    the preset's steps), ``"fixed"`` or None (exactly the preset's steps), another rule
    name of :func:`deepprior.stopping.make_rule`, or a rule object of :mod:`deepprior.stopping`
    (it ends the fit and picks the image returned).  The rule is in
    ``result.restoration.stop_rule`` (its ``stop_step``, ``best_step``, ``reason``).
    ``preset``: a name or a :class:`~deepprior.presets.Preset`; None (default) takes the task's
    default for this image (:func:`choose_preset`).  A preset with a ``tile`` (``deblock-fast``,
    ``inpaint-text-fast``: 128) fits an image larger than that in overlapping tiles, one fit each
    (:func:`deepprior.tiles.run_tiled`; ``result.tiles``), unless checkpointing or resuming;
    ``preset.replace(tile=None)`` fits it whole.
    ``sigma``: denoising's noise level on the image scale ([0, 1]: 25/255 for "sigma 25"), for the
    default preset's choice, the noise gate of the automatic rule and the SURE presets
    (``denoise-sure-fast``, ``denoise-sure``); None (default) estimates it from the image.
    ``checkpoint``, ``checkpoint_every`` and ``resume`` save and restore the fit's state (see :func:`deepprior.fitting.fit`); ``check_memory`` and
    ``announce`` are those of :func:`deepprior.pipeline.restore`.
    """
    import torch
    import torch.nn.functional as F

    from .masks import check_mask
    from .presets import get_preset
    from .pipeline import restore
    from .stopping import make_rule
    from .tiles import tile_for

    if preset is None:
        preset = choose_preset(task, image, scale=scale, sigma=sigma, mask=mask, mask_keeps=mask_keeps,
                               mask_dilate=mask_dilate, channel_axis=channel_axis, device=device)
    p = get_preset(preset)
    # None means "keep the preset's value" (e.g. an unset CLI flag)
    p = p.replace(**{k: v for k, v in dict(iters=iters, **overrides).items() if v is not None})
    y, layout = _to_bchw(image, channel_axis)
    tile = tile_for(p, *y.shape[-2:]) if checkpoint is None and resume is None else None
    if tile:  # the preset's steps suit a tile, not the whole photo: one fit per tile (deepprior.tiles)
        return _run_tiles(task, y, layout, tile, mask=mask, scale=scale, preset=p.replace(tile=None), rng=rng,
                          device=device, callback=callback, mask_keeps=mask_keeps, mask_dilate=mask_dilate,
                          time_budget=time_budget, max_pixels=max_pixels, stop=stop, sigma=sigma,
                          check_memory=check_memory, announce=announce)
    c = y.shape[1]
    alpha = None
    if c in (2, 4):
        y, alpha = y[:, : c - 1], y[:, c - 1 :]
    ref = None
    if reference is not None:
        ref, _ = _to_bchw(reference, channel_axis, "reference")
        ref = ref[:, : y.shape[1]]
    known = None
    sr_scale = 1
    if task == "inpaint":
        fill = _fill(mask, y if alpha is None else torch.cat([y, alpha], 1), mask_keeps, mask_dilate)
        if fill is None:
            raise InputError("inpainting needs a mask (or an image with transparent pixels to fill)")
        check_mask(fill, tuple(y.shape[-2:]))
        known = torch.from_numpy(~fill)[None, None].float()
    elif task == "sr":
        sr_scale = scale or 4
    elif task not in ("denoise", "deblock"):
        raise ValueError(f"unknown task {task!r}")
    if stop is None or isinstance(stop, str):
        stop = make_rule(stop or "fixed", task=task, sigma=sigma, preset=p)
    r = restore(
        y,
        p,
        known=known,
        scale=sr_scale,
        rng=rng,
        device=device,
        callback=callback,
        reference=ref,
        time_budget=time_budget,
        stop=stop,
        max_pixels=max_pixels,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        check_memory=check_memory,
        announce=announce,
        sigma=sigma,
    )
    out = r.image.cpu()
    dropped = False
    if alpha is not None:
        if task == "inpaint":
            dropped = True
        else:
            if sr_scale != 1:
                alpha = F.interpolate(alpha, scale_factor=sr_scale, mode="bicubic", align_corners=False).clamp(0, 1)
            out = torch.cat([out, alpha], dim=1)
    return TaskResult(_from_bchw(out, layout), r, dropped)


def _run_tiles(task, y, layout, tile, *, mask, mask_keeps, mask_dilate, time_budget, stop, rng, **kwargs) -> TaskResult:
    """:func:`run_task` for a preset that fits big images in tiles: :func:`deepprior.tiles.run_tiled`
    on ``y`` (BCHW, [0, 1]), the time budget shared by the tiles that are fitted (inpainting: those
    with a pixel to fill), a stopping rule object copied for each, the result in the input's layout.
    ``restoration`` is the first fitted tile's; ``tiles`` has them all.  A reference image is not
    used (no PSNR curves)."""
    import copy

    import torch

    from .masks import check_mask
    from .pipeline import resolve_seed
    from .tiles import run_tiled, tile_count, tile_overlap

    fill = None  # without a mask (or alpha) run_tiled says so, before any fit
    if task == "inpaint":  # the whole image's mask, as one fit's (dilated across the tiles' edges)
        fill = _fill(mask, y, mask_keeps, mask_dilate)
        if fill is not None:
            check_mask(fill, tuple(y.shape[-2:]))
    overlap = tile_overlap(tile)
    count = tile_count(*y.shape[-2:], tile, overlap, fill)
    arr = y[0].permute(1, 2, 0).numpy()
    res = run_tiled(task, arr[:, :, 0] if arr.shape[2] == 1 else arr, tile=tile, overlap=overlap, mask=fill,
                    rng=resolve_seed(rng), time_budget=None if time_budget is None else time_budget / count,
                    stop=stop if stop is None or isinstance(stop, str) else lambda: copy.deepcopy(stop), **kwargs)
    out = torch.from_numpy(res.image)
    out = out[None, None] if out.ndim == 2 else out.permute(2, 0, 1)[None]
    first = res.results[0]
    return TaskResult(_from_bchw(out, layout), first.restoration, first.alpha_dropped, res)


def denoise(image, *, preset=None, iters=None, rng=None, device=None, callback=None, channel_axis=-1, **kwargs):
    """Remove noise from an image with Deep Image Prior.

    Parameters
    ----------
    image : ndarray or torch.Tensor
        The noisy image (see the module docstring for shapes, dtypes and ranges).
    preset : str or Preset, optional
        Default: by the noise level (``sigma=``, or estimated from the image), ``"denoise-sure-fast"`` up
        to 30 (on the 0..255 scale; on a CUDA device ``"denoise-sure-pair"``, two fits averaged) and
        ``"denoise-paper"`` above (:func:`choose_preset`; see
        ``deepprior presets``).
    iters : int, optional
        Number of steps (overrides the preset's).
    rng : int or numpy.random.Generator, optional
        Seed: the same seed gives the same result (same machine, torch version and threads).
    device : {"auto", "cpu", "cuda", "mps"}, optional
    callback : callable, optional
        ``callback(step, state)`` after every step (:class:`deepprior.fitting.FitState`); return True to stop.
    channel_axis : int, optional
        Axis of the channels of a 3-D numpy array (default: last).
    **kwargs
        ``reference=`` (ground truth, for PSNR curves), ``time_budget=``, ``max_pixels=``,
        ``sigma=`` (the noise level on the image scale, e.g. 25/255, for the default preset's choice,
        its SURE loss and the automatic stop; default: estimated from the image; see :func:`run_task`),
        or preset fields such as ``lr=``.

    Returns
    -------
    ndarray or torch.Tensor
        The restored image, float in [0, 1], in the input's layout.
    """
    return run_task("denoise", image, preset=preset, iters=iters, rng=rng, device=device,
                    callback=callback, channel_axis=channel_axis, **kwargs).image


def deblock(image, *, preset=None, iters=None, rng=None, device=None, callback=None, channel_axis=-1, **kwargs):
    """Remove JPEG compression artifacts (blocks, ringing).  Parameters as :func:`denoise`;
    default preset ``"deblock-fast"`` (the paper's JPEG recipe, ``"deblock-paper"``, on a small
    network with averaged outputs and shorter Adam memories, in 128 px tiles for bigger images)."""
    return run_task("deblock", image, preset=preset, iters=iters, rng=rng, device=device,
                    callback=callback, channel_axis=channel_axis, **kwargs).image


def super_resolve(image, scale=4, *, preset=None, iters=None, rng=None, device=None, callback=None,
                  channel_axis=-1, **kwargs):
    """Upscale an image by ``scale`` (2, 4 or 8).  The output is ``scale`` times larger.

    The forward model is the paper's Lanczos2 downsampler.  Default preset ``"sr-x4-fast"`` (the
    paper's x4 recipe, ``"sr-x4-paper"``, on a small network with averaged outputs and shorter Adam
    memories; ``"sr-x8-paper"`` for x8).  Other parameters as :func:`denoise`.
    """
    return run_task("sr", image, scale=scale, preset=preset, iters=iters, rng=rng, device=device,
                    callback=callback, channel_axis=channel_axis, **kwargs).image


def inpaint(image, mask=None, *, preset=None, iters=None, rng=None, device=None, callback=None,
            channel_axis=-1, mask_keeps=False, mask_dilate=0, **kwargs):
    """Fill the masked pixels of an image.

    Parameters
    ----------
    image : ndarray or torch.Tensor
        The image; the values under the mask are ignored.
    mask : array-like (H, W), optional
        Nonzero / True / white = pixels to fill.  Without a mask, an image with alpha has its
        transparent pixels filled.
    mask_keeps : bool
        The mask marks the known pixels instead (the paper's data uses that convention).
    mask_dilate : int
        Grow the mask by this many pixels (anti-aliased text, rough strokes).

    Other parameters as :func:`denoise`.  Default preset: by the mask (:func:`choose_preset`),
    ``"inpaint-blindspot"`` for scattered pixels, text and fine scratches, else (holes, thick strokes)
    ``"inpaint-text-paper"``.  The output
    is opaque (no alpha channel); ``inpaint-blindspot`` returns the known pixels as given.
    """
    return run_task("inpaint", image, mask=mask, preset=preset, iters=iters, rng=rng, device=device,
                    callback=callback, channel_axis=channel_axis, mask_keeps=mask_keeps,
                    mask_dilate=mask_dilate, **kwargs).image
