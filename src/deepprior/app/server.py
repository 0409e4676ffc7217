"""The web app's server: a standard-library HTTP server, a job queue and one worker thread.

Endpoints (JSON unless said otherwise; errors are ``{"error": "one line for the user"}``)::

    GET  /                               the page (static/index.html); /static/<name>: its JS and CSS
    GET  /api/config                     tasks, presets, default presets, limits, device
    POST /api/jobs                       queue a job (body below) -> 202 and the job's status
    GET  /api/jobs/<id>                  status: state, queue place, step, elapsed, curve, previews
    GET  /api/jobs/<id>/preview/<which>.png   latest preview, which = current | average
    POST /api/jobs/<id>/stop             stop a running job (its result so far is kept), or cancel a queued one
    GET  /api/jobs/<id>/result.png       the restored image (download)
    GET  /api/jobs/<id>/result.json      its sidecar: every setting, seed, versions, curves (download)

The job body is ``{"task": "denoise|deblock|sr|inpaint", "scale": 2|4|8, "preset": name,
"iters": n, "seed": n, "lr": x, "preview_every": k, "sigma": the noise level on the 0..255 scale
(denoising; default: estimated), "filename": str, "image": PNG/JPEG/... as a data URL or base64,
"mask": the same (inpainting)}``; unset or null fields take the preset's values.

One worker thread runs the jobs one at a time on the device (a fit uses the whole device); the
others wait in a queue and their status says how many jobs are ahead.  Uploads are held in memory;
decoding goes through a ``tempfile.TemporaryDirectory`` that is removed at once.  Nothing the
browser sends is used as a path: static files come from a fixed list, and the uploaded file's name
only names the downloads.
"""

from __future__ import annotations

import base64
import binascii
import collections
import io
import json
import math
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["make_server", "serve", "mask_from_editor", "fill_from_array", "JobQueue", "RequestError"]

#: Largest uploaded file (image or mask), in bytes.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Largest input image, in pixels (a fit at 2048 x 2048 already needs a large GPU).
MAX_INPUT_PIXELS = 2048 * 2048
#: Finished jobs kept in memory (with their images) for download.
KEEP_JOBS = 20
TASKS = ("denoise", "deblock", "sr", "inpaint")
SR_SCALES = (2, 4, 8)
OUTPUT_SUFFIX = {"denoise": "denoised", "deblock": "deblocked", "sr": "x{scale}", "inpaint": "inpainted"}
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


class RequestError(Exception):
    """A request the app refuses: an HTTP status and a message for the user."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------------------------
# Decoding uploads
# ----------------------------------------------------------------------------------------------


def decode_upload(value, what: str, max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of a data URL (``data:image/png;base64,...``) or of plain base64."""
    if not isinstance(value, str) or not value:
        raise RequestError(f"no {what} was sent")
    if value.startswith("data:"):
        head, _, value = value.partition(",")
        if not head.endswith(";base64"):
            raise RequestError(f"the {what} must be base64-encoded")
    if len(value) * 3 // 4 > max_bytes + 3:
        raise RequestError(f"the {what} is {_mb(len(value) * 3 // 4)}; the limit is {_mb(max_bytes)}", 413)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"the {what} is not valid base64") from None


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def open_image(data: bytes, what: str = "image", max_pixels: int = MAX_INPUT_PIXELS):
    """Decode an uploaded image file: ``(array (H, W, C) float32 in [0, 1], ImageInfo)``.

    Refuses non-images and images over ``max_pixels`` (checked on the header, before decoding).
    The bytes go through a temporary folder so that :func:`deepprior.io.read_image` (16 bits,
    EXIF orientation, ICC profile) reads them as it reads files; the folder is removed at once.
    """
    from PIL import Image, UnidentifiedImageError

    from ..io import ImageReadError, read_image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError:  # a header claiming more pixels than Pillow will decode
        raise RequestError(f"the {what} is far over the limit of {max_pixels / 1e6:.1f} megapixels: crop or "
                           "downscale it first", 413) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise RequestError(f"the {what} is not an image this app can read (use PNG, JPEG, TIFF, WebP or BMP)") from None
    if w * h > max_pixels:
        raise RequestError(
            f"the {what} is {w}x{h} = {w * h / 1e6:.1f} megapixels; the limit is {max_pixels / 1e6:.1f} "
            "megapixels: crop or downscale it first", 413)
    with tempfile.TemporaryDirectory(prefix="deepprior-app-") as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        try:
            return read_image(path)
        except ImageReadError as e:
            raise RequestError(f"the {what} could not be read: {str(e).split(': ', 1)[-1]}") from None


def fill_from_array(mask: np.ndarray) -> np.ndarray:
    """The pixels to fill, as a boolean (H, W) array, from a decoded mask (H, W, C) in [0, 1].

    Two kinds of mask arrive: the editor's canvas (transparent background, painted strokes
    opaque: any paint, anti-aliased edges included, marks a pixel to fill) and an uploaded
    opaque mask file (white = fill, binarised at half range, as the command line reads masks).
    """
    from ..masks import binarize_mask

    m = np.asarray(mask, dtype=np.float32)
    if m.ndim == 2:
        m = m[:, :, None]
    c = m.shape[2]
    if c in (2, 4) and m[:, :, c - 1].min() < 1.0:
        return m[:, :, c - 1] > 0.0
    return binarize_mask(m[:, :, : c - 1] if c in (2, 4) else m)


def mask_from_editor(data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The boolean fill mask from the mask PNG the page sends; checked against the image ``shape``."""
    arr, _ = open_image(data, "mask")
    fill = fill_from_array(arr)
    if shape is not None:
        if fill.shape != tuple(shape):
            raise RequestError(
                f"the mask is {fill.shape[1]}x{fill.shape[0]} but the image is {shape[1]}x{shape[0]}; "
                "they must be the same size")
        if not fill.any():
            raise RequestError("the mask is empty: paint over what to remove (or upload a mask, white = remove)")
        if fill.all():
            raise RequestError("the mask covers the whole image: leave some pixels unpainted to fit to")
    return fill


# ----------------------------------------------------------------------------------------------
# Jobs
# ----------------------------------------------------------------------------------------------


def _number(body: dict, key: str, kind, lo, hi):
    v = body.get(key)
    if v is None or v == "":
        return None
    try:
        v = kind(v)
    except (TypeError, ValueError):
        raise RequestError(f"{key} must be a number") from None
    if not (lo <= v <= hi) or (kind is float and not math.isfinite(v)):
        raise RequestError(f"{key} must be between {lo} and {hi}")
    return v


def _rule_summary(rule) -> dict | None:
    """The automatic stopping rule's decision (as the CLI's sidecar records it), or None without a rule."""
    if rule is None:
        return None
    return {"stop_step": rule.stop_step, "best_step": rule.best_step, "reason": rule.reason}


def _safe_stem(name) -> str:
    stem = Path(str(name or "image")).stem if isinstance(name, str) else "image"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:60] or "image"


@dataclass
class Job:
    """One restoration request and everything the page polls for."""

    id: str
    task: str
    scale: int | None
    preset: object  # deepprior.presets.Preset, with the overrides applied
    seed: int | None
    preview_every: int
    sigma: float | None  # denoising's noise level on the 0..255 scale (None: estimated)
    image: np.ndarray | None  # dropped once the job ends
    info: object  # deepprior.io.ImageInfo
    mask: np.ndarray | None
    filename: str
    state: str = "queued"  # queued | running | done | failed | cancelled
    tiles: int = 1  # fits in all: a preset with a tile fits a bigger image tile by tile (deepprior.tiles)
    step: int = 0  # steps done, over all the tiles
    elapsed: float = 0.0
    curve: list = field(default_factory=list)  # (step, PSNR of the fit to the input in dB)
    previews: dict = field(default_factory=dict)  # "current" / "average" -> PNG bytes
    preview_version: int = 0
    stop_event: threading.Event = field(default_factory=threading.Event)
    stopped: bool = False
    error: str | None = None
    result_png: bytes | None = None
    result_size: tuple[int, int] | None = None
    sidecar: dict | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def result_name(self) -> str:
        return f"{self.filename}_{OUTPUT_SUFFIX[self.task].format(scale=self.scale)}"

    def status(self, ahead: int | None) -> dict:
        """The JSON the page polls."""
        with self.lock:
            curve = _subsample(self.curve, 300)
            out = {
                "id": self.id,
                "state": self.state,
                "ahead": ahead,
                "task": self.task,
                "scale": self.scale,
                "preset": self.preset.name,
                "step": self.step,
                "iters": self.preset.iters * self.tiles * self.preset.fits,
                "elapsed": round(self.elapsed, 2),
                "psnr": self.curve[-1][1] if self.curve else None,
                "curve": {"step": [s for s, _ in curve], "psnr": [p for _, p in curve]},
                "preview_version": self.preview_version,
                "previews": sorted(self.previews),
                "stop_requested": self.stop_event.is_set(),
                "stopped": self.stopped,
                "error": self.error,
                "result": None,
            }
            if self.result_png is not None:
                base = f"/api/jobs/{self.id}"
                out["result"] = {
                    "image": f"{base}/result.png",
                    "sidecar": f"{base}/result.json",
                    "filename": self.result_name,
                    "width": self.result_size[0],
                    "height": self.result_size[1],
                }
        return out


def _subsample(points: list, n: int) -> list:
    if len(points) <= n:
        return list(points)
    every = -(-len(points) // n)
    return points[every - 1 :: every] + ([points[-1]] if len(points) % every else [])


def _finite(x):
    return round(float(x), 4) if x is not None and math.isfinite(x) else None


def _png(t) -> bytes:
    """PNG bytes of a (1, C, H, W) tensor in [0, 1]."""
    from PIL import Image

    arr = t[0].detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class JobQueue:
    """Jobs by id, a queue of waiting ones, and one worker thread that runs them in order."""

    def __init__(self, device: str = "auto", keep: int = KEEP_JOBS):
        self.device = device
        self.keep = keep
        self.jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self.waiting: collections.deque[Job] = collections.deque()
        self.running: Job | None = None
        self.cond = threading.Condition()
        self.closed = False
        self.worker = threading.Thread(target=self._work, name="deepprior-app-worker", daemon=True)
        self.worker.start()

    # -- the HTTP side ---------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self.cond:
            self.jobs[job.id] = job
            self.waiting.append(job)
            self._forget_old()
            self.cond.notify()

    def get(self, job_id: str) -> Job | None:
        with self.cond:
            return self.jobs.get(job_id)

    def ahead(self, job: Job) -> int | None:
        """How many jobs run before this one (None once it runs)."""
        with self.cond:
            if job not in self.waiting:
                return None
            return self.waiting.index(job) + (1 if self.running is not None else 0)

    def stop(self, job: Job) -> None:
        """Stop a running job after its current step, or take a waiting one out of the queue."""
        with self.cond:
            job.stop_event.set()
            if job in self.waiting:
                self.waiting.remove(job)
                with job.lock:
                    job.state = "cancelled"
                job.image = job.mask = None

    def close(self) -> None:
        with self.cond:
            self.closed = True
            for job in list(self.waiting) + ([self.running] if self.running else []):
                job.stop_event.set()
            self.cond.notify_all()

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.finished]
        for j in finished[: max(0, len(finished) - self.keep)]:
            del self.jobs[j.id]

    # -- the worker ------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self.cond:
                while not self.waiting and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                job = self.running = self.waiting.popleft()
                with job.lock:
                    job.state = "running"
            try:
                run_job(job, self.device)
            except Exception as e:  # noqa: BLE001 - raised outside run_job's own handler: the worker goes on
                with job.lock:
                    job.error, job.state = _error_message(e), "failed"
            finally:
                job.image = job.mask = None  # the result and the sidecar are all that is kept
                with self.cond:
                    self.running = None


def run_job(job: Job, device: str) -> None:
    """Run one job to the end (or to its stop), filling its previews, result and sidecar."""
    from ..api import run_task
    from ..runtime import tune_allocator

    tune_allocator()  # this process is the app's own (deepprior.runtime)
    from ..tiles import StepTotals, canvas, paste, tile_count, tile_for, tile_overlap

    h, w = job.image.shape[:2]
    tile = tile_for(job.preset, h, w)  # as run_task decides
    with job.lock:
        job.tiles = tile_count(h, w, tile, tile_overlap(tile), job.mask) if tile else 1  # inpainting: tiles to fill
    totals = StepTotals()  # progress counts over all the tiles
    canvases = {}  # a tiled fit's previews: the whole image, each tile pasted where it goes

    def whole(which, part, state):
        if state.tile is None:
            return part
        if which not in canvases:
            canvases[which] = canvas(job.image, part.shape[1], job.scale if job.task == "sr" else 1)
        return paste(canvases[which], part, state.tile)

    def on_step(step, state):
        done, elapsed = totals(step, state.elapsed)
        with job.lock:
            job.step, job.elapsed = done, elapsed
            job.curve.append((done, _finite(state.psnr_measurement)))
        if step == 1 or step % job.preview_every == 0:
            previews = {"current": _png(whole("current", state.output, state))}
            if state.average is not None:
                previews["average"] = _png(whole("average", state.average, state))
            with job.lock:
                job.previews, job.preview_version = previews, job.preview_version + 1
        return job.stop_event.is_set()

    try:
        res = run_task(job.task, job.image, mask=job.mask, scale=job.scale, preset=job.preset,
                       rng=job.seed, device=device, callback=on_step,
                       sigma=None if job.sigma is None else job.sigma / 255)
        png_bytes, size = _encode_result(res.image, job.info)
        sidecar = _sidecar(job, res, size)
        with job.lock:
            job.result_png, job.result_size, job.sidecar = png_bytes, size, sidecar
            job.stopped = _stopped(res)
            job.state = "done"
    except Exception as e:  # the message goes to the page; the server goes on
        with job.lock:
            job.error = _error_message(e)
            job.state = "failed"


def _error_message(e: Exception) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if type(e).__name__ == "OutOfMemoryError" or "out of memory" in msg.lower():
        return "out of memory: try a smaller image or a *-small preset"
    return msg


def _encode_result(image: np.ndarray, info) -> tuple[bytes, tuple[int, int]]:
    """PNG bytes of the result (16 bits for a 16-bit input; ICC profile kept) and its (W, H)."""
    from ..io import write_image

    with tempfile.TemporaryDirectory(prefix="deepprior-app-") as tmp:
        path = Path(tmp) / "result.png"
        write_image(path, image, info)
        return path.read_bytes(), (image.shape[1], image.shape[0])


def _stopped(res) -> bool:
    """True when the user stopped the fit (for a tiled fit: in any of its tiles)."""
    return res.restoration.fit.stop_reason == "callback" or bool(res.tiles and res.tiles.interrupted)


def _sidecar(job: Job, res, size) -> dict:
    import platform

    import torch

    from .. import __version__

    r = res.restoration
    stopped = _stopped(res)
    hist = r.fit.history  # a tiled fit: the first tile's (as the CLI's sidecar)
    # a tiled fit (res.tiles): one fit per tile, run_task's restoration being the first tile's
    fits = [t.restoration.fit for t in res.tiles.results] if res.tiles else [r.fit]
    idx = _subsample(list(range(len(hist.get("step", [])))), 500)  # at most 500 points, the last kept
    return {
        "app": True,
        "complete": not stopped,
        "stopped": stopped,
        "task": job.task,
        "scale": job.scale,
        "input": job.filename,
        "input_size": [job.image.shape[1], job.image.shape[0]],
        "output_size": list(size),
        "mask_pixels": None if job.mask is None else int(job.mask.sum()),
        "bits": job.info.bits,
        "preset": dict(r.preset.to_dict(), tile=job.preset.tile),  # the recipe as asked (each tile fitted whole)
        "seed": r.seed,
        "device": r.device,
        "padded_size": list(r.padded_size),  # a tiled fit: its first tile's
        "iterations": sum(f.steps for f in fits),
        "stop_reason": ("interrupted" if res.tiles.interrupted else "tiles") if res.tiles else r.fit.stop_reason,
        "tiles": None if not res.tiles else [{"box": list(b), "steps": f.steps, "stop_reason": f.stop_reason}
                                             for b, f in zip(res.tiles.boxes, fits)],
        "sigma": job.sigma,
        "sure_sigma": None if r.sigma is None else round(r.sigma * 255, 3),  # the noise level SURE used (0-255)
        "stopped_by": _rule_summary(res.restoration.stop_rule),
        "backtracks": sum(f.backtracks for f in fits),
        "seconds": round(sum(f.seconds for f in fits), 3),
        "final": {k: _finite(hist[k][-1]) if hist.get(k) else None for k in ("loss", "psnr_measurement")},
        "curve": {k: [_finite(v[i]) for i in idx] for k, v in hist.items() if v},
        "versions": {"deepprior": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def parse_job(body: dict, *, device_kind: str, max_bytes: int, max_pixels: int) -> Job:
    """Check a job request and decode its files; raise :class:`RequestError` with the reason."""
    from ..pipeline import MAX_PIXELS
    from ..presets import PRESETS

    task = body.get("task")
    if task not in TASKS:
        raise RequestError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    scale = None
    if task == "sr":
        scale = _number(body, "scale", int, 2, 8) or 4
        if scale not in SR_SCALES:
            raise RequestError("the super-resolution factor must be 2, 4 or 8")
    name = body.get("preset") or default_presets(device_kind)[task if task != "sr" else f"sr{scale}"]
    if not isinstance(name, str):
        raise RequestError(f"the preset must be a name, got {name!r}")
    preset = PRESETS.get(name)
    if preset is None or preset.task != task:
        raise RequestError(f"{name!r} is not a preset for {task}")
    changes = {"iters": _number(body, "iters", int, 1, 100_000), "lr": _number(body, "lr", float, 1e-6, 1.0)}
    changes = {k: v for k, v in changes.items() if v is not None}
    seed = _number(body, "seed", int, 0, 2**31 - 1)
    every = _number(body, "preview_every", int, 1, 10_000) or 10
    sigma = _number(body, "sigma", float, 0.1, 254.0) if task == "denoise" else None

    image, info = open_image(decode_upload(body.get("image"), "image", max_bytes), "image", max_pixels)
    h, w = image.shape[:2]
    if scale and h * w * scale * scale > MAX_PIXELS:
        raise RequestError(f"x{scale} of a {w}x{h} image would be {w * scale}x{h * scale}, over the "
                           f"{MAX_PIXELS / 1e6:.0f}-megapixel limit of the output", 413)
    mask = None
    if task == "inpaint":
        if not body.get("mask"):
            raise RequestError("inpainting needs a mask: paint over what to remove")
        mask = mask_from_editor(decode_upload(body["mask"], "mask", max_bytes), (h, w))
    if task in ("denoise", "inpaint") and not body.get("preset"):
        from ..api import choose_preset

        # the CLI's default by the image (denoising: its noise level; inpainting: its mask) where it
        # is a fast recipe; otherwise (noise above 30, painted strokes) this device's fallback
        chosen = choose_preset(task, image, sigma=None if sigma is None else sigma / 255, mask=mask,
                               device=device_kind)
        if chosen.loss in ("sure", "blindspot"):
            preset = chosen
    if preset.loss == "sure" and sigma is None:  # refused now rather than failed once queued
        from ..api import noise_level

        if noise_level(image) is None:
            raise RequestError(f"{preset.name} needs this image's noise level, which it has too little texture "
                               "to estimate: give the noise level, or pick another preset")
    preset = preset.replace(**changes)
    return Job(id=uuid.uuid4().hex[:12], task=task, scale=scale, preset=preset, seed=seed, preview_every=every,
               sigma=sigma, image=image, info=info, mask=mask, filename=_safe_stem(body.get("filename")))


def default_presets(device_kind: str) -> dict:
    """The preset each task starts with: the paper's recipes on a GPU, the small ones on a CPU;
    super-resolution x2/x4 starts with ``sr-x4-fast`` and JPEG with ``deblock-fast`` on both (the
    CLI's defaults).

    Denoising's is the one for noise above 30 (0..255): a request without a preset gets
    ``denoise-sure-fast`` (on a GPU ``denoise-sure-pair``) where the noise is lower (:func:`parse_job`,
    as the CLI).  Inpainting's is the
    one for painted strokes (on a CPU ``inpaint-blindspot-strokes``: minutes where the paper's text
    recipe takes hours, up to ~1.7 dB lower; presets.py): a request without a preset whose mask has
    every pixel to fill near known ones (scattered pixels, text, fine scratches:
    :func:`deepprior.masks.fill_reach`) gets ``inpaint-blindspot`` (within 3 px) or
    ``inpaint-blindspot-blocks`` (within 4 px).
    """
    small = device_kind == "cpu"
    names = {
        "denoise": ("denoise-small", "denoise-paper"),
        "deblock": ("deblock-fast", "deblock-fast"),
        "sr2": ("sr-x4-fast", "sr-x4-fast"),
        "sr4": ("sr-x4-fast", "sr-x4-fast"),
        "sr8": ("sr-x8-small", "sr-x8-paper"),
        "inpaint": ("inpaint-blindspot-strokes", "inpaint-text-paper"),
    }
    return {k: v[0] if small else v[1] for k, v in names.items()}


# ----------------------------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------------------------


class AppServer(ThreadingHTTPServer):
    """The HTTP server, holding the queue and the limits."""

    daemon_threads = True

    def __init__(self, address, *, device="auto", max_bytes=MAX_UPLOAD_BYTES, max_pixels=MAX_INPUT_PIXELS):
        super().__init__(address, Handler)
        self.device = device
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.queue = JobQueue(device)
        self._device_kind = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"

    def device_name(self) -> str:
        """The device the jobs run on ("cpu", "cuda", "mps"); imports torch the first time."""
        if self._device_kind is None:
            from ..pipeline import resolve_device

            self._device_kind = str(resolve_device(self.device))
        return self._device_kind

    def server_close(self):
        self.queue.close()
        super().server_close()


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the page, the static files and the JSON API."""

    server: AppServer
    server_version = "deepprior-app"
    JOB = re.compile(r"^/api/jobs/([0-9a-f]{12})(/stop|/preview/(current|average)\.png|/result\.(png|json))?$")

    def log_message(self, format, *args):  # quiet: the terminal shows the URL only
        pass

    # -- responses -------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, download: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if download:
            self.send_header("Content-Disposition", f'attachment; filename="{download}"')
        if ctype.startswith("text/html"):
            self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    # -- GET -------------------------------------------------------------------------------
    def do_HEAD(self):  # what GET would answer, headers only (_send leaves the body out)
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if path == "/api/config":
            return self._json(200, self._config())
        m = self.JOB.match(path)
        job = self.server.queue.get(m.group(1)) if m else None
        if job is None:
            return self._error(404, "no such page or job (jobs are kept in memory until the app stops)")
        what = m.group(2)
        if what is None:
            return self._json(200, job.status(self.server.queue.ahead(job)))
        if what.startswith("/preview/"):
            with job.lock:
                png_bytes = job.previews.get(m.group(3))
            if png_bytes is None:
                return self._error(404, "no preview yet")
            return self._send(200, png_bytes, "image/png")
        if what.startswith("/result") and job.result_png is not None:
            if m.group(4) == "png":
                return self._send(200, job.result_png, "image/png", download=job.result_name + ".png")
            body = json.dumps(job.sidecar, indent=2).encode() + b"\n"
            return self._send(200, body, "application/json", download=job.result_name + ".json")
        return self._error(404, "no result yet")

    def _static(self, name: str) -> None:
        if name not in STATIC:  # a fixed list: no path from the browser reaches the disk
            return self._error(404, "no such file")
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        self._send(200, body, STATIC[name])

    def _config(self) -> dict:
        from ..presets import PRESETS, SURE_MAX_SIGMA, default_preset

        kind = self.server.device_name().split(":")[0]
        return {
            "device": self.server.device_name(),
            "tasks": list(TASKS),
            "presets": [{"name": p.name, "task": p.task, "iters": p.iters, "lr": p.lr, "description": p.description,
                         "averages": p.ema is not None} for p in PRESETS.values()],
            "defaults": default_presets(kind),
            # a task whose default depends on the image: the page offers it as its first choice
            "auto": {"denoise": f"{default_preset('denoise', sigma=SURE_MAX_SIGMA, device=kind)} up to noise level "
                                f"{SURE_MAX_SIGMA * 255:.0f}, {default_presets(kind)['denoise']} above",
                     "inpaint": f"inpaint-blindspot for scattered pixels, text and fine scratches, "
                                "inpaint-blindspot-blocks for 64 px text, "
                                f"{default_presets(kind)['inpaint']} for holes and thick strokes"},
            "max_upload_bytes": self.server.max_bytes,
            "max_pixels": self.server.max_pixels,
        }

    # -- POST ------------------------------------------------------------------------------
    def do_POST(self):
        path = self.path.split("?", 1)[0]
        try:
            if path == "/api/jobs":
                return self._new_job()
            m = self.JOB.match(path)
            job = self.server.queue.get(m.group(1)) if m and m.group(2) == "/stop" else None
            if job is None:
                return self._error(404, "no such job")
            self._read_body(64 * 1024)  # a stop needs no body; one is read and ignored
            self.server.queue.stop(job)
            return self._json(200, job.status(self.server.queue.ahead(job)))
        except RequestError as e:
            return self._error(e.status, str(e))
        except Exception as e:  # noqa: BLE001 - a bug: an answer (one line) rather than a dropped connection
            self.log_error("internal error: %r", e)
            return self._error(500, f"internal error: {_error_message(e)}")

    def _read_body(self, limit: int) -> bytes:
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise RequestError("bad Content-Length") from None
        if n < 0:
            raise RequestError("bad Content-Length")
        if n > limit:
            self._discard(n)  # so that the browser reads the answer rather than a reset connection
            raise RequestError(f"the upload is {_mb(n)}; the limit is {_mb(limit)}", 413)
        return self.rfile.read(n) if n else b""

    def _discard(self, n: int, most: int = 256 * 1024 * 1024) -> None:
        self.close_connection = True
        while 0 < n <= most:
            chunk = self.rfile.read(min(n, 1 << 16))
            if not chunk:
                return
            n -= len(chunk)

    def _new_job(self) -> None:
        # base64 grows files by a third; two files (image and mask) and the other fields
        raw = self._read_body(2 * (self.server.max_bytes * 4 // 3 + 4) + 64 * 1024)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise RequestError("the request is not JSON") from None
        if not isinstance(body, dict):
            raise RequestError("the request must be a JSON object")
        kind = self.server.device_name().split(":")[0]
        job = parse_job(body, device_kind=kind, max_bytes=self.server.max_bytes, max_pixels=self.server.max_pixels)
        self.server.queue.submit(job)
        self._json(202, job.status(self.server.queue.ahead(job)))


# ----------------------------------------------------------------------------------------------


def make_server(host: str = "127.0.0.1", port: int = 7860, device: str = "auto", **limits) -> AppServer:
    """An :class:`AppServer` bound to ``host:port`` (port 0: a free one); call ``serve_forever()``."""
    return AppServer((host, port), device=device, **limits)


def serve(host: str = "127.0.0.1", port: int = 7860, device: str = "auto", **limits) -> int:
    """Run the app until Ctrl-C; print its URL."""
    import sys

    server = make_server(host, port, device, **limits)
    try:
        device_name = server.device_name()  # imports torch; a bad --device fails here, not in the page
        print(f"deepprior app: open {server.url} in a browser (device {device_name}; Ctrl-C to quit)", flush=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            print("deepprior app: warning: the app has no login; anyone who can reach "
                  f"{host}:{server.server_address[1]} can use it", file=sys.stderr)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
