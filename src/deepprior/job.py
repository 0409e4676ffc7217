"""One image file in, one restored image and its JSON sidecar out.

Every way of running a task command goes through the same three steps, so that a single file, a
folder on this machine and a folder on a Ray cluster give the same files:

1. :func:`load` reads the input, its mask and its reference (where the files are);
2. :func:`compute` runs the fit and returns plain data (in this process, or in a Ray worker); it
   saves and resumes checkpoints (``<output stem>.ckpt.pt``, beside the output);
3. :func:`save` writes the image, then the sidecar (each atomically: a temporary file, then a
   rename), then removes the checkpoint of a complete fit.

:func:`is_done` is the resume rule: an image is done when its sidecar says complete and records
the same fingerprint (task, scale, full preset, seed, mask options, input and mask contents) as
this run.  The preset is the one :func:`load` picked for the image (:meth:`Settings.preset_for`:
the command's preset, or the task's default for this image, e.g. by its noise level).  Only the
standard library is imported here at start-up (``deepprior --help`` stays instant); torch comes
with the first fit.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (torch and numpy come with the first fit)
    import numpy as np

    from .io import ImageInfo
    from .presets import Preset

__all__ = ["Settings", "Job", "Loaded", "Computed", "output_path", "fingerprint", "load", "compute",
           "compute_or_error", "save", "is_done", "read_sidecar", "describe_error", "OUTPUT_SUFFIX"]

#: The result's name is ``<input stem>_<suffix>.png``.
OUTPUT_SUFFIX = {"denoise": "denoised", "deblock": "deblocked", "sr": "x{scale}", "inpaint": "inpainted"}

#: Sidecar fields that must equal this run's for an image to count as done (see :func:`is_done`).
FINGERPRINT_KEYS = ("task", "scale", "preset", "stop", "tile", "seed", "mask_keeps", "mask_dilate", "input_sha256",
                    "mask_sha256")


@dataclass(frozen=True)
class Settings:
    """What a task command asks for, the same for every image (picklable, for Ray).

    ``preset`` None takes the task's default for each image (:meth:`preset_for`); ``changes`` are
    preset fields the command line sets (``--iters``, ``--lr``, ``--precision``), applied to either.
    ``seed`` None means a fresh seed per fit (recorded in the sidecar).  ``threads`` None keeps
    torch's default number of CPU threads.
    """

    task: str
    preset: Preset | None = None
    changes: dict = field(default_factory=dict)
    seed: int | None = None
    scale: int | None = None
    mask_keeps: bool | None = None  # None for tasks other than inpaint
    mask_dilate: int | None = None
    device: str = "auto"
    time_budget: float | None = None
    max_pixels: int | None = 4096 * 4096  # deepprior.pipeline.MAX_PIXELS; None: no limit
    save_every: int | None = None
    plot: bool = False
    checkpoint_every: int = 0
    resume: bool = False
    overwrite: bool = False
    threads: int | None = None
    stop: str = "auto"  # stopping rule name (deepprior.stopping.RULES)
    stop_window: int | None = None
    stop_patience: int | None = None
    sigma: float | None = None  # denoising's noise level on the 0..255 scale, for the auto rule's noise gate
    check_memory: bool = True
    tile: int | None = None  # restore overlapping tiles of this side (deepprior.tiles); 0: whole; None: the preset's
    tile_overlap: int = 32
    tune_allocator: bool = True  # deepprior.runtime: glibc's malloc reuses freed blocks (faster CPU steps)

    @property
    def sigma_scaled(self) -> float | None:
        """:attr:`sigma` on the image scale [0, 1] (what the stopping rules take)."""
        return None if self.sigma is None else self.sigma / 255

    def candidates(self) -> list[Preset]:
        """Every recipe this run may use: the preset, or each default an image may get."""
        from .presets import default_choices, get_preset

        if self.preset is not None:
            return [self.preset.replace(**self.changes)]
        return [self._one_fit(get_preset(p).replace(**self.changes))
                for p in default_choices(self.task, scale=self.scale)]

    def _one_fit(self, chosen: Preset) -> Preset:
        """A default that averages several fits, as one fit where this run checkpoints (checkpoints
        are per fit; an explicit preset or --fits is refused instead: pipeline.restore)."""
        return chosen.replace(fits=1) if chosen.fits > 1 and (self.checkpoint_every or self.resume) else chosen

    def preset_for(self, image: np.ndarray, mask: np.ndarray | None = None) -> Preset:
        """The recipe for ``image`` (H, W, C) and its ``mask``: the preset, or the task's default for
        this image (:func:`deepprior.api.choose_preset`: denoising's by its noise level, inpainting's
        by its mask), with :attr:`changes`."""
        if self.preset is not None:
            return self.preset.replace(**self.changes)
        from .api import choose_preset

        return self._one_fit(choose_preset(self.task, image, scale=self.scale, sigma=self.sigma_scaled, mask=mask,
                                           mask_keeps=bool(self.mask_keeps), mask_dilate=self.mask_dilate or 0,
                                           device=self.device).replace(**self.changes))

    def stop_config(self, preset: Preset) -> dict:
        """The stopping rule of a fit with ``preset`` as recorded in the sidecar (part of the resume
        fingerprint); for ``auto`` with the task's rule it stands for."""
        config = {"rule": self.stop, "window": self.stop_window, "patience": self.stop_patience}
        if self.sigma is not None:
            config["sigma"] = self.sigma
        if self.stop == "auto":
            from .stopping import auto_spec

            if preset.loss == "sure":  # its step count, guarded against SURE's collapse (stopping.make_rule)
                config["auto"] = {"rule": "DataTermRise"}
            else:
                spec = auto_spec(self.task, preset)  # None: auto is the preset's step count
                config["auto"] = None if spec is None else {"rule": spec.rule, "window": spec.window,
                                                            "patience": spec.patience, "keep": spec.keep,
                                                            "warmup": spec.warmup, "noise_gate": spec.noise_gate}
        return config


@dataclass(frozen=True)
class Job:
    """The files of one image: its input, mask and reference, and where its results go."""

    input: Path
    output: Path
    mask: Path | None = None
    reference: Path | None = None

    @property
    def sidecar(self) -> Path:
        return self.output.with_suffix(".json")

    @property
    def checkpoint(self) -> Path:
        return self.output.with_name(self.output.stem + ".ckpt.pt")

    @property
    def plot(self) -> Path:
        return self.output.with_name(self.output.stem + "_plot.png")

    @property
    def steps_folder(self) -> Path:
        return self.output.with_name(self.output.stem + "_steps")


@dataclass
class Loaded:
    """What :func:`load` read: the arrays the fit needs and what :func:`save` needs to write back."""

    image: np.ndarray  # (H, W, C) float32
    info: ImageInfo
    mask: np.ndarray | None = None
    reference: np.ndarray | None = None
    preset: Preset | None = None  # the recipe for this image (Settings.preset_for)
    fingerprint: dict = field(default_factory=dict)


@dataclass
class Computed:
    """What :func:`compute` returns: the result and the fit's details, as plain data."""

    image: np.ndarray  # (H', W', C') float32 in [0, 1]
    seed: int
    device: str
    preset: dict
    padded_size: list
    steps: int
    stop_reason: str
    backtracks: int
    seconds: float
    resumed_from: int
    history: dict
    versions: dict
    stopped: dict = field(default_factory=dict)  # where the stopping rule stopped, what it selected, why
    estimate: dict = field(default_factory=dict)  # memory and flops estimated before the fit
    sure_sigma: float | None = None  # a SURE preset's noise level, 0..255 scale (given or estimated)

    @property
    def interrupted(self) -> bool:
        return self.stop_reason == "interrupted"


# ----------------------------------------------------------------------------------------------
# Names, fingerprints, sidecars
# ----------------------------------------------------------------------------------------------


def output_path(inp: Path, output: str | Path | None, task: str, scale: int | None) -> Path:
    """Where the result of ``inp`` goes: beside it, into the folder ``output``, or the file ``output``.

    ``output`` is a folder when it exists as one, ends with a path separator, or has no extension
    and is not a file (``-o results``, as Real-ESRGAN's and IOPaint's CLIs).
    """
    name = f"{inp.stem}_{OUTPUT_SUFFIX[task].format(scale=scale)}.png"
    if output is None:
        return inp.with_name(name)
    out = Path(output)
    if out.is_dir() or str(output).endswith(("/", os.sep)) or (not out.suffix and not out.exists()):
        return out / name
    return out


def _sha256(path: Path | None) -> str | None:
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _as_json(value):
    """``value`` as it reads back from a sidecar (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value, default=str))


def fingerprint(job: Job, settings: Settings, preset: Preset) -> dict:
    """What a result depends on, as recorded in its sidecar: see :data:`FINGERPRINT_KEYS`.
    ``preset``: the recipe for this image (:meth:`Settings.preset_for`).

    Raises ``OSError`` when the input (or the mask) cannot be read.
    """
    return _as_json({
        "task": settings.task,
        "scale": settings.scale,
        "preset": preset.to_dict(),
        "stop": settings.stop_config(preset),
        # the tiles asked for (None: the preset's, see its "tile"; 0: the whole image)
        "tile": settings.tile and {"size": settings.tile, "overlap": settings.tile_overlap},
        "seed": settings.seed,
        "mask_keeps": settings.mask_keeps,
        "mask_dilate": settings.mask_dilate,
        "input_sha256": _sha256(job.input),
        "mask_sha256": _sha256(job.mask) if job.mask is not None and job.mask.is_file() else None,
    })


def read_sidecar(path: Path) -> dict | None:
    """The sidecar at ``path`` as a dict, or None when it is missing or not a deepprior sidecar."""
    try:
        meta = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and {"task", "preset", "output"} <= meta.keys() else None


def is_done(job: Job, settings: Settings) -> bool:
    """True when ``job`` has a complete result made with this run's settings (resume skips it)."""
    meta = read_sidecar(job.sidecar)
    if meta is None or not meta.get("complete") or not job.output.is_file():
        return False
    # the recipe it recorded must be one this run may pick; the choice is then the same (same input
    # contents and settings), so the image need not be read again.  (Denoising's default depends on
    # the device too, one fit or two: a result of either counts as done on the other.)
    preset = {p.name: p for p in settings.candidates()}.get((meta.get("preset") or {}).get("name"))
    if preset is None:
        return False
    try:
        want = fingerprint(job, settings, preset)
    except OSError:
        return False  # an unreadable input: let the run report it
    recorded = dict(meta, preset=_with_defaults(meta.get("preset")))
    return all(recorded.get(k) == want[k] for k in FINGERPRINT_KEYS)


def _with_defaults(recorded):
    """A recorded preset with the fields added to :class:`Preset` (and its network) since it was
    written set to their defaults, which is what it ran with: a new field does not redo old results."""
    import dataclasses

    from .networks import NetworkConfig
    from .presets import Preset

    def fill(d, cls):
        if not isinstance(d, dict):
            return d
        missing = {f.name: f.default for f in dataclasses.fields(cls)
                   if f.name not in d and f.default is not dataclasses.MISSING}
        return {**d, **_as_json(missing)}

    preset = fill(recorded, Preset)
    if isinstance(preset, dict):
        preset["network"] = fill(preset.get("network"), NetworkConfig)
    return preset


def describe_error(e: BaseException) -> str:
    """One line for the user about a failure (an actionable hint for out-of-memory errors)."""
    if is_oom(e):
        return ("out of memory; try a smaller image, a smaller preset (e.g. --preset denoise-small), "
                "or --device cpu if the GPU is the one that ran out")
    first = str(e).splitlines()[0] if str(e) else ""
    if isinstance(e, (ValueError, TypeError, RuntimeError, OSError)):
        return first or type(e).__name__
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def is_oom(e: BaseException) -> bool:
    """True for out-of-memory errors (CUDA, MPS or the CPU allocator)."""
    msg = str(e).lower()
    return (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "out of memory" in msg
            or "can't allocate memory" in msg)


def _versions() -> dict:
    import platform

    import torch

    from . import __version__

    return {
        "deepprior": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "host": platform.node(),
    }


def _write_json(path: Path, data: dict) -> None:
    from .io import atomic_write_bytes

    text = json.dumps(data, indent=2, default=str)
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text + "\n"))


def _curve(history: dict, points: int = 500) -> dict:
    """The fit's curves, subsampled to at most ``points`` steps (always keeping the last)."""
    steps = history.get("step", [])
    if not steps:
        return {}
    every = max(1, -(-len(steps) // points))
    idx = list(range(every - 1, len(steps), every))
    if idx[-1] != len(steps) - 1:
        idx.append(len(steps) - 1)
    return {k: [round(v[i], 5) if v[i] is not None else None for i in idx] for k, v in history.items() if v}


class _Snapshots:
    """Step-end callback: write the current result to ``folder/step_NNNNNN.png`` every ``every`` steps.

    A tiled run (``state.tile`` set): the steps count over all the tiles, and a snapshot is the
    whole picture, the input (``image``, SR: upscaled by ``scale``) with each tile's latest result
    pasted where it goes."""

    def __init__(self, folder: Path, every: int, image=None, scale: int = 1):
        from .tiles import StepTotals

        self.folder, self.every, self.image, self.scale = folder, every, image, scale
        self.totals = StepTotals()  # steps over all the tiles (one fit: its own)
        self.whole = None

    def __call__(self, step, state):
        result = state.result
        total, _ = self.totals(step, state.elapsed)
        if state.tile is not None:
            from .tiles import canvas, paste

            if self.whole is None:
                self.whole = canvas(self.image, result.shape[1], self.scale)
            result = paste(self.whole, result, state.tile)
        if total % self.every == 0:
            from .io import write_image

            img = result[0].clamp(0, 1).cpu().numpy().transpose(1, 2, 0)
            write_image(self.folder / f"step_{total:06d}.png", img, bits=8)
        return False


# ----------------------------------------------------------------------------------------------
# The three steps
# ----------------------------------------------------------------------------------------------


def load(job: Job, settings: Settings) -> Loaded:
    """Read the input, mask and reference of ``job``; check the reference's size.

    Raises
    ------
    deepprior.io.ImageReadError
        A missing or unreadable file.
    deepprior.pipeline.InputError
        A reference whose size does not match the result's.
    """
    import numpy as np

    from .io import read_image
    from .pipeline import InputError

    image, info = read_image(job.input)
    mask = read_image(job.mask)[0] if job.mask is not None else None
    reference = None
    if job.reference is not None:
        reference, _ = read_image(job.reference)
        c = image.shape[2] - (1 if image.shape[2] in (2, 4) else 0)
        reference = reference[:, :, :3] if reference.shape[2] >= 3 else reference[:, :, :1]
        if c == 3 and reference.shape[2] == 1:
            reference = np.repeat(reference, 3, axis=2)
        elif c == 1 and reference.shape[2] == 3:
            reference = reference.mean(axis=2, keepdims=True)
        s = settings.scale if settings.task == "sr" else 1
        want = (image.shape[0] * s, image.shape[1] * s)
        if reference.shape[:2] != want:
            raise InputError(
                f"the reference is {reference.shape[1]}x{reference.shape[0]} but the result will be "
                f"{want[1]}x{want[0]} (WxH)"
            )
    preset = settings.preset_for(image, mask)
    loaded = Loaded(image, info, mask, reference, preset, fingerprint(job, settings, preset))
    fill = pixels_to_fill(loaded, settings)  # inpainting: checked before anything is planned from it (tiles)
    if fill is not None:
        from .masks import check_mask

        check_mask(fill, image.shape[:2])
    return loaded


def _start_state(job: Job, settings: Settings, fp: dict) -> dict | None:
    """The checkpoint to resume from (None: start afresh), after checking it belongs to this run."""
    from .pipeline import InputError

    path = job.checkpoint
    if not path.is_file() or (settings.overwrite and not settings.resume):
        return None
    if not settings.resume:
        raise InputError(f"{path} holds an interrupted fit: pass --resume to continue it or --overwrite to start over")
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True)
    mine = saved.get("fingerprint", {})
    mine = dict(mine, preset=_with_defaults(mine.get("preset")))  # written before a field was added
    differ = [k for k in FINGERPRINT_KEYS if mine.get(k) != fp[k] and not (k == "seed" and fp[k] is None)]
    if differ:
        if settings.overwrite:
            return None
        raise InputError(f"{path} was made with another {', '.join(differ)}; pass --overwrite to start over")
    return saved


def tiling(loaded: Loaded, settings: Settings) -> tuple[int | None, int]:
    """The tiles :func:`compute` fits ``loaded``'s image in: (side, overlap) for ``--tile N`` or the
    preset's tiles (:func:`deepprior.tiles.tile_for`), (None, 0) for one fit of the whole image."""
    from .tiles import tile_for, tile_overlap

    tile = tile_for(loaded.preset, *loaded.image.shape[:2], settings.tile)
    if not tile:
        return None, 0
    return tile, settings.tile_overlap if settings.tile else tile_overlap(tile)


def pixels_to_fill(loaded: Loaded, settings: Settings) -> np.ndarray | None:
    """Inpainting: the pixels ``loaded``'s fit fills, (H, W) bool (the mask with ``--mask-keeps`` and
    ``--mask-dilate`` applied, or the image's transparent pixels); None for other tasks."""
    if settings.task != "inpaint":
        return None
    from .api import pixels_to_fill as fill_of

    return fill_of(loaded.image, loaded.mask, mask_keeps=bool(settings.mask_keeps), mask_dilate=settings.mask_dilate or 0)


def compute(job: Job, loaded: Loaded, settings: Settings, callbacks=(), announce=None) -> Computed:
    """Fit ``job``'s image: checkpoint every ``settings.checkpoint_every`` steps, resume if asked.
    ``announce(estimate)`` is called before the fit with its cost (:mod:`deepprior.cost`).

    Exceptions propagate (see :func:`compute_or_error` for the form that returns them).
    """
    import torch

    from .api import run_task
    from .io import atomic_write_bytes
    from .pipeline import InputError, resolve_seed

    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.tune_allocator:
        from .runtime import tune_allocator

        tune_allocator()
    start = _start_state(job, settings, loaded.fingerprint)
    seed = start["fingerprint"]["seed"] if start is not None else resolve_seed(settings.seed)
    fp = dict(loaded.fingerprint, seed=seed)

    def write_checkpoint(state):
        atomic_write_bytes(job.checkpoint, lambda tmp: torch.save({"fingerprint": fp, "fit": state}, tmp))

    from .stopping import make_rule

    tile, overlap = tiling(loaded, settings)
    if tile:
        if settings.checkpoint_every:  # --tile N refuses it in the CLI; this is the preset's tiling
            raise InputError(f"preset {loaded.preset.name!r} fits images larger than {tile} px in tiles, which "
                             "cannot be checkpointed: add --tile 0 to fit the whole image in one checkpointed fit")
        if settings.save_every:  # snapshots of the whole picture, the tiles pasted in as they go
            callbacks = [*callbacks, _Snapshots(job.steps_folder, settings.save_every, loaded.image,
                                                (settings.scale or 4) if settings.task == "sr" else 1)]
        return _compute_tiled(loaded, settings, seed, callbacks, announce, tile, overlap)
    rule = make_rule(settings.stop, task=settings.task, window=settings.stop_window, patience=settings.stop_patience,
                     sigma=settings.sigma_scaled, preset=loaded.preset)
    callbacks = list(callbacks)
    if settings.save_every:
        callbacks.append(_Snapshots(job.steps_folder, settings.save_every))
    res = run_task(
        settings.task,
        loaded.image,
        mask=loaded.mask,
        scale=settings.scale,
        preset=loaded.preset.replace(tile=None),  # whole: the image is within the preset's tile, or --tile 0
        rng=seed,
        device=settings.device,
        callback=callbacks,
        reference=loaded.reference,
        mask_keeps=bool(settings.mask_keeps),
        mask_dilate=settings.mask_dilate or 0,
        time_budget=settings.time_budget,
        max_pixels=settings.max_pixels,
        checkpoint=write_checkpoint if settings.checkpoint_every else None,
        checkpoint_every=settings.checkpoint_every,
        resume=None if start is None else start["fit"],
        stop=rule,
        sigma=settings.sigma_scaled,
        check_memory=settings.check_memory,
        announce=announce,
    )
    r = res.restoration
    return Computed(
        image=res.image,
        seed=r.seed,
        device=r.device,
        preset=dict(r.preset.to_dict(), tile=loaded.preset.tile),  # the recipe as asked (fitted whole here)
        padded_size=list(r.padded_size),
        steps=r.fit.steps,
        stop_reason=r.fit.stop_reason,
        backtracks=r.fit.backtracks,
        seconds=r.fit.seconds,
        resumed_from=r.fit.resumed_from,
        history=r.fit.history,
        versions=_versions(),
        estimate=r.estimate.summary(),
        sure_sigma=None if r.sigma is None else round(r.sigma * 255, 3),
        stopped={} if rule is None else {"stop_step": rule.stop_step, "best_step": rule.best_step,
                                         "reason": rule.reason},
    )


def _compute_tiled(loaded: Loaded, settings: Settings, seed: int, callbacks, announce, tile: int,
                   overlap: int) -> Computed:
    """:func:`compute` in tiles of side ``tile`` overlapping by ``overlap`` (``--tile``, or the preset's):
    one fit per tile (:mod:`deepprior.tiles`), tile ``i`` with seed ``seed + i``; the curves are those of
    the first tile."""
    from .stopping import make_rule
    from .tiles import run_tiled, tile_count

    first = []

    def announce_once(cost):
        if not first and announce is not None:
            announce(cost)
        first.append(cost)

    fill = pixels_to_fill(loaded, settings)  # without a mask (or alpha) run_tiled says so, before any fit
    count = tile_count(*loaded.image.shape[:2], tile, overlap, fill)
    t0 = time.perf_counter()
    res = run_tiled(
        settings.task, loaded.image, tile=tile, overlap=overlap, mask=fill,
        scale=settings.scale, rng=seed, preset=loaded.preset.replace(tile=None), device=settings.device,
        callback=list(callbacks),
        time_budget=None if settings.time_budget is None else settings.time_budget / count,  # shared by the tiles
        max_pixels=settings.max_pixels, check_memory=settings.check_memory,
        announce=announce_once, sigma=settings.sigma_scaled,
        stop=lambda: make_rule(settings.stop, task=settings.task, window=settings.stop_window,
                               patience=settings.stop_patience, sigma=settings.sigma_scaled, preset=loaded.preset),
    )
    fits = [r.restoration.fit for r in res.results]
    r0 = res.results[0].restoration
    return Computed(
        image=res.image,
        seed=seed,
        device=r0.device,
        preset=dict(r0.preset.to_dict(), tile=loaded.preset.tile),  # each tile was fitted whole
        padded_size=list(r0.padded_size),
        steps=sum(f.steps for f in fits),
        stop_reason="interrupted" if res.interrupted else "tiles",
        backtracks=sum(f.backtracks for f in fits),
        seconds=time.perf_counter() - t0,
        resumed_from=0,
        history=fits[0].history,
        versions=_versions(),
        estimate=dict(r0.estimate.summary(), per="tile"),
        stopped={"tiles": [{"box": list(b), "steps": f.steps, "stop_reason": f.stop_reason}
                           for b, f in zip(res.boxes, fits)]},
    )


def compute_or_error(job: Job, loaded: Loaded, settings: Settings, callbacks=()) -> Computed | str:
    """:func:`compute`, with a failure returned as its one-line message instead of raised.

    This is what runs per image in a folder, locally or as a Ray task: one image's failure (a mask
    of the wrong size, out of memory, a diverging fit) must not stop the others.
    """
    try:
        return compute(job, loaded, settings, callbacks)
    except Exception as e:  # noqa: BLE001 - reported per image, the batch goes on
        if os.environ.get("DEEPPRIOR_DEBUG"):
            raise
        return describe_error(e)


def _rescue(name: str, image, info) -> Path | None:
    """Write a result whose output could not be written to a new temporary folder; its path, or
    None when that fails too."""
    import tempfile

    from .io import write_image

    try:
        path = Path(tempfile.mkdtemp(prefix="deepprior-")) / name
        write_image(path, image, info)
        return path
    except Exception:  # noqa: BLE001 - the caller reports the first failure
        return None


def output_problem(path: Path) -> str | None:
    """Why ``path`` could not be written (checked before a fit, so that its result has a place to
    go), or None: the first of its folders that exists must be a folder, and writable."""
    folder = Path(path).absolute().parent
    while not folder.exists() and folder.parent != folder:  # the missing ones will be made
        folder = folder.parent
    if not folder.is_dir():
        return f"{path}: cannot write there ({folder} is not a folder)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{path}: cannot write there ({folder} is not writable)"
    return None


def save(job: Job, loaded: Loaded, computed: Computed, settings: Settings) -> dict:
    """Write the result image, then its sidecar; remove the checkpoint of a complete fit.

    The old sidecar is removed first, so that a run killed between the two writes leaves an image
    without a sidecar (redone by the next run), never a new image described by an old sidecar.
    Returns the sidecar's content.
    """
    import numpy as np

    from .io import write_image

    job.sidecar.unlink(missing_ok=True)
    result = computed.image
    try:
        write_image(job.output, result, loaded.info)
    except OSError as e:  # a finished fit is never lost: keep it where it can be written
        kept = _rescue(job.output.name, result, loaded.info)
        where = f"; the result was kept in {kept}" if kept else ""
        raise OSError(f"could not write {job.output} ({e.strerror or e}){where}") from e
    hist = computed.history
    last = {k: v[-1] for k, v in hist.items() if v and k != "step"}
    final = {"loss": last.get("loss"), "psnr_measurement": last.get("psnr_measurement")}
    if loaded.reference is not None:
        import torch

        from .fitting import psnr

        ref = loaded.reference
        final["psnr_reference"] = psnr(torch.from_numpy(np.asarray(result)[:, :, : ref.shape[2]]),
                                       torch.from_numpy(ref))
    image = loaded.image
    fp = loaded.fingerprint
    meta = {
        "complete": not computed.interrupted,
        "interrupted": computed.interrupted,
        "task": settings.task,
        "input": str(job.input),
        "output": str(job.output),
        "mask": str(job.mask) if job.mask is not None else None,
        "mask_keeps": settings.mask_keeps,
        "mask_dilate": settings.mask_dilate,
        "scale": settings.scale,
        "input_size": [image.shape[1], image.shape[0]],
        "output_size": [result.shape[1], result.shape[0]],
        "bits": loaded.info.bits,
        "preset": computed.preset,
        "seed": computed.seed,
        "input_sha256": fp.get("input_sha256"),
        "mask_sha256": fp.get("mask_sha256"),
        "device": computed.device,
        "padded_size": computed.padded_size,
        "iterations": computed.steps,
        "resumed_from": computed.resumed_from,
        "stop_reason": computed.stop_reason,
        "stop": settings.stop_config(loaded.preset),
        "tile": fp.get("tile"),
        "stopped": computed.stopped,
        "sure_sigma": computed.sure_sigma,
        "estimate": computed.estimate,
        "backtracks": computed.backtracks,
        "seconds": round(computed.seconds, 3),
        # (with a preset's fits > 1: the loss and psnr_measurement are the first fit's, as the curve, and
        # "stopped" the last's; psnr_reference is the averaged result's)
        "final": final,
        "curve": _curve(hist),
        "versions": computed.versions,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_json(job.sidecar, meta)
    if meta["complete"]:
        job.checkpoint.unlink(missing_ok=True)
    if settings.plot:
        try:
            from .plot import plot_fit

            plot_fit(job.plot, hist, image, result, title=f"{settings.task} ({computed.preset['name']})")
        except Exception as e:  # noqa: BLE001 - the result is already safe on disk
            print(f"deepprior: warning: could not write the plot: {e}", file=sys.stderr)
    return meta
