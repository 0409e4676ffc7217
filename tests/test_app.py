"""The web app without a browser: mask extraction from the editor, upload checks, the job queue
and the JSON API (a server started in-process on a free port, tiny inpainting jobs)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from app_helpers import SCRATCH, app_server, data_url, png_bytes, scratched_image
from helpers import bomb_png
from deepprior.app.server import RequestError, decode_upload, fill_from_array, mask_from_editor, open_image

# ---- mask extraction -----------------------------------------------------------------------------


def test_editor_canvas_strokes_are_the_pixels_to_fill():
    """The page sends its canvas: transparent, with opaque red strokes and anti-aliased edges."""
    canvas = np.zeros((20, 30, 4), np.uint8)
    canvas[5:8, 2:25] = (255, 0, 0, 255)  # a stroke
    canvas[8, 2:25] = (255, 0, 0, 40)  # its soft edge: still paint
    canvas[15, 3] = (255, 255, 255, 0)  # white but transparent: not paint
    fill = mask_from_editor(png_bytes(canvas), (20, 30))
    want = np.zeros((20, 30), bool)
    want[5:9, 2:25] = True
    assert fill.dtype == bool and np.array_equal(fill, want)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_an_opaque_mask_file_is_white_for_fill(mode):
    """An uploaded mask file: white = fill, as on the command line (an opaque alpha is ignored)."""
    gray = np.zeros((10, 12), np.uint8)
    gray[2:5, 3:9] = 255
    gray[6, 6] = 100  # dark gray: below half range, kept
    im = Image.fromarray(gray).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    fill = mask_from_editor(buf.getvalue(), (10, 12))
    assert np.array_equal(fill, gray >= 128)


def test_fill_from_array_shapes():
    assert fill_from_array(np.array([[0.0, 1.0]])).tolist() == [[False, True]]
    gray_alpha = np.array([[[1.0, 0.0], [0.0, 0.5]]], np.float32)  # (1, 2, 2): gray + alpha, not opaque
    assert fill_from_array(gray_alpha).tolist() == [[False, True]]


@pytest.mark.parametrize("case, words", [
    ("size", "must be the same size"),
    ("empty", "the mask is empty"),
    ("full", "covers the whole image"),
])
def test_unusable_masks_are_refused_with_a_reason(case, words):
    canvas = np.zeros((10, 10, 4), np.uint8)
    if case == "full":
        canvas[:] = 255
    shape = (10, 11) if case == "size" else (10, 10)
    if case == "size":
        canvas[2, 2] = 255
    with pytest.raises(RequestError, match=words):
        mask_from_editor(png_bytes(canvas), shape)


# ---- uploads -------------------------------------------------------------------------------------


def test_uploads_are_data_urls_or_base64_with_a_size_limit():
    raw = b"\x89PNG some bytes"
    assert decode_upload(data_url(raw), "image") == raw
    assert decode_upload(base64.b64encode(raw).decode(), "image") == raw
    with pytest.raises(RequestError, match="not valid base64"):
        decode_upload("data:image/png;base64,@@@", "image")
    with pytest.raises(RequestError, match="limit is") as e:
        decode_upload(base64.b64encode(b"x" * 5000).decode(), "image", max_bytes=1000)
    assert e.value.status == 413


def test_non_images_and_huge_images_are_refused():
    with pytest.raises(RequestError, match="not an image"):
        open_image(b"%PDF-1.4 not an image")
    big = png_bytes(np.zeros((100, 120, 3), np.uint8))
    with pytest.raises(RequestError, match="120x100 .* crop or downscale") as e:
        open_image(big, max_pixels=100 * 100)
    assert e.value.status == 413
    arr, info = open_image(big)
    assert arr.shape == (100, 120, 3) and arr.dtype == np.float32 and info.bits == 8
    with pytest.raises(RequestError, match="far over the limit") as e:  # Pillow refuses to open it at all
        open_image(bomb_png(20000, 20000))
    assert e.value.status == 413


# ---- the HTTP API --------------------------------------------------------------------------------


def request(server, path, body=None, method=None):
    """(status, parsed JSON or raw bytes, headers) of a request to the app."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(server.url.rstrip("/") + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw, headers = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, raw, headers = e.code, e.read(), e.headers
    if headers.get("Content-Type", "").startswith("application/json"):
        return status, json.loads(raw), headers
    return status, raw, headers


def inpaint_body(**extra):
    img = scratched_image()
    mask = np.zeros(img.shape[:2], bool)
    mask[SCRATCH.start - 2 : SCRATCH.stop + 2] = True
    body = {"task": "inpaint", "preset": "inpaint-small", "seed": 0, "filename": "photo 1.png",
            "image": data_url(png_bytes(img)), "mask": data_url(png_bytes(mask.astype(np.uint8) * 255))}
    body.update(extra)
    return body


def wait_for(server, job_id, test, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, job, _ = request(server, f"/api/jobs/{job_id}")
        assert status == 200
        if test(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"timed out; last status {job}")


def test_the_page_and_its_files_are_served_and_nothing_else():
    with app_server() as server:
        status, page, headers = request(server, "/")
        assert status == 200 and b"deepprior" in page and headers["Content-Type"].startswith("text/html")
        status, empty, head = request(server, "/", method="HEAD")
        assert status == 200 and empty == b"" and head["Content-Length"] == str(len(page))
        for name in ("app.js", "style.css"):
            assert request(server, f"/static/{name}")[0] == 200
        for path in ("/static/../server.py", "/static/server.py", "/static/%2e%2e/server.py", "/etc/passwd"):
            assert request(server, path)[0] == 404
        status, config, _ = request(server, "/api/config")
        assert status == 200 and config["device"] == "cpu"
        assert config["defaults"]["denoise"] == "denoise-small"  # small presets on a CPU
        assert config["defaults"]["inpaint"] == "inpaint-blindspot-strokes"  # painted strokes: minutes, not hours
        assert {"inpaint-small", "denoise-paper"} <= {p["name"] for p in config["presets"]}
        assert "denoise-sure-fast up to" in config["auto"]["denoise"]  # the page's "auto" choice says what it does
        assert "inpaint-blindspot" in config["auto"]["inpaint"]


def test_a_job_runs_with_previews_and_its_result_downloads():
    with app_server() as server:
        status, job, _ = request(server, "/api/jobs", inpaint_body(iters=20, preview_every=5))
        assert status == 202 and job["state"] in ("queued", "running") and job["iters"] == 20
        job = wait_for(server, job["id"], lambda j: j["state"] == "done")
        assert job["step"] == 20 and not job["stopped"] and job["preview_version"] == 5  # steps 1, 5, 10, 15, 20
        assert job["curve"]["step"][-1] == 20 and len(job["curve"]["psnr"]) == 20
        status, preview, _ = request(server, f"/api/jobs/{job['id']}/preview/current.png")
        assert status == 200 and Image.open(io.BytesIO(preview)).size == (48, 48)
        assert request(server, f"/api/jobs/{job['id']}/preview/average.png")[0] == 404  # this preset does not average

        status, png, headers = request(server, job["result"]["image"])
        assert status == 200 and Image.open(io.BytesIO(png)).size == (48, 48)
        assert headers["Content-Disposition"] == 'attachment; filename="photo_1_inpainted.png"'
        status, sidecar, headers = request(server, job["result"]["sidecar"])
        assert headers["Content-Disposition"] == 'attachment; filename="photo_1_inpainted.json"'
        assert sidecar["task"] == "inpaint" and sidecar["seed"] == 0 and sidecar["iterations"] == 20
        assert sidecar["preset"]["name"] == "inpaint-small" and sidecar["preset"]["iters"] == 20
        assert sidecar["mask_pixels"] == 7 * 48 and sidecar["output_size"] == [48, 48]
        assert sidecar["stop_reason"] == "iters" and len(sidecar["curve"]["loss"]) == 20
        assert sidecar["sigma"] is None and sidecar["stopped_by"] is None  # inpainting: no automatic rule


def test_a_denoising_job_takes_a_known_noise_level():
    with app_server() as server:
        body = inpaint_body(task="denoise", preset="denoise-small", iters=5, mask=None, sigma=25)
        status, job, _ = request(server, "/api/jobs", body)
        assert status == 202
        job = wait_for(server, job["id"], lambda j: j["state"] == "done")
        _, sidecar, _ = request(server, job["result"]["sidecar"])
        assert sidecar["sigma"] == 25 and sidecar["stopped_by"]["stop_step"] is None  # 5 steps: the cap ended it


def test_a_job_that_fails_outside_the_fit_fails_alone(monkeypatch):
    """Whatever a job raises, it is marked failed with one line and the queue goes on to the next."""
    import deepprior.app.server as srv

    real = srv.run_job

    def first_fails(job, device):
        if job.filename == "bad":
            raise KeyError("no tile plan")
        return real(job, device)

    monkeypatch.setattr(srv, "run_job", first_fails)
    with app_server() as server:
        _, bad, _ = request(server, "/api/jobs", dict(inpaint_body(filename="bad"), iters=2))
        _, good, _ = request(server, "/api/jobs", dict(inpaint_body(), iters=2))
        bad = wait_for(server, bad["id"], lambda j: j["state"] in ("failed", "done"))
        assert bad["state"] == "failed" and "no tile plan" in bad["error"]
        assert wait_for(server, good["id"], lambda j: j["state"] in ("failed", "done"))["state"] == "done"


def test_one_job_at_a_time_others_queue_and_stop_keeps_the_result_so_far():
    with app_server() as server:
        _, first, _ = request(server, "/api/jobs", inpaint_body(iters=100_000, preview_every=2, lr=0.005))
        _, second, _ = request(server, "/api/jobs", inpaint_body(iters=5))
        _, third, _ = request(server, "/api/jobs", inpaint_body(iters=5))
        first = wait_for(server, first["id"], lambda j: j["step"] >= 3)
        assert first["state"] == "running" and first["ahead"] is None
        assert request(server, f"/api/jobs/{second['id']}")[1]["ahead"] == 1
        assert request(server, f"/api/jobs/{third['id']}")[1]["ahead"] == 2

        status, cancelled, _ = request(server, f"/api/jobs/{second['id']}/stop", b"", "POST")
        assert status == 200 and cancelled["state"] == "cancelled"
        assert request(server, f"/api/jobs/{third['id']}")[1]["ahead"] == 1

        request(server, f"/api/jobs/{first['id']}/stop", b"", "POST")
        first = wait_for(server, first["id"], lambda j: j["state"] == "done")
        assert first["stopped"] and 3 <= first["step"] < 100_000
        _, sidecar, _ = request(server, first["result"]["sidecar"])
        assert sidecar["stopped"] and sidecar["stop_reason"] == "callback" and sidecar["preset"]["lr"] == 0.005
        assert Image.open(io.BytesIO(request(server, first["result"]["image"])[1])).size == (48, 48)
        third = wait_for(server, third["id"], lambda j: j["state"] == "done")  # the queue moves on
        assert third["step"] == 5


def test_a_tiled_preset_counts_the_steps_of_all_its_tiles_and_stops_keeping_its_size():
    wide = (np.random.default_rng(0).random((40, 140, 3)) * 255).astype(np.uint8)  # two 128 px tiles
    body = inpaint_body(task="deblock", preset="deblock-fast", mask=None, image=data_url(png_bytes(wide)))
    with app_server() as server:
        _, job, _ = request(server, "/api/jobs", dict(body, iters=3))
        job = wait_for(server, job["id"], lambda j: j["state"] == "done")
        assert job["iters"] == 6 and job["step"] == 6 and not job["stopped"]
        sidecar = request(server, job["result"]["sidecar"])[1]
        sidecar = json.loads(sidecar) if isinstance(sidecar, bytes) else sidecar
        assert sidecar["iterations"] == 6 and sidecar["stop_reason"] == "tiles" and sidecar["complete"]
        assert sidecar["preset"]["tile"] == 128 and [t["steps"] for t in sidecar["tiles"]] == [3, 3]
        for which in ("current", "average"):  # the previews show the whole image, not one tile
            status, png, _ = request(server, f"/api/jobs/{job['id']}/preview/{which}.png")
            assert status == 200 and Image.open(io.BytesIO(png)).size == (140, 40)
        _, long, _ = request(server, "/api/jobs", dict(body, iters=100_000))
        wait_for(server, long["id"], lambda j: j["step"] >= 3)
        request(server, f"/api/jobs/{long['id']}/stop", b"", "POST")
        long = wait_for(server, long["id"], lambda j: j["state"] == "done")
        assert long["stopped"] and long["step"] < 100_000  # the second tile is the input, not fitted
        assert Image.open(io.BytesIO(request(server, long["result"]["image"])[1])).size == (140, 40)
        sidecar = request(server, long["result"]["sidecar"])[1]
        sidecar = json.loads(sidecar) if isinstance(sidecar, bytes) else sidecar
        assert sidecar["stopped"] and not sidecar["complete"]


def test_a_tiled_inpainting_counts_only_the_tiles_with_something_to_fill():
    wide = (np.random.default_rng(0).random((40, 140, 3)) * 255).astype(np.uint8)  # two 128 px tiles
    mask = np.zeros((40, 140), bool)
    mask[10:14, 130:136] = True  # in the second tile only
    body = inpaint_body(preset="inpaint-text-fast", image=data_url(png_bytes(wide)),
                        mask=data_url(png_bytes(mask.astype(np.uint8) * 255)), iters=3)
    with app_server() as server:
        _, job, _ = request(server, "/api/jobs", body)
        job = wait_for(server, job["id"], lambda j: j["state"] == "done")
        assert job["iters"] == 3 and job["step"] == 3 and not job["stopped"]


@pytest.mark.parametrize("device_kind, low, high", [("cpu", "denoise-sure-fast", "denoise-small"),
                                                    ("cuda", "denoise-sure-pair", "denoise-paper")])
def test_a_denoising_job_without_a_preset_gets_one_by_its_noise_level(device_kind, low, high):
    from deepprior.app.server import parse_job

    ramp = np.linspace(0.2, 0.8, 40)[None, :, None] * np.ones((36, 40, 3))
    rng = np.random.default_rng(0)
    for sigma, given, want in [(10, None, low), (60, None, high), (60, 20, low)]:
        noisy = (np.clip(ramp + rng.normal(0, sigma / 255, ramp.shape), 0, 1) * 255).round().astype(np.uint8)
        body = {"task": "denoise", "image": data_url(png_bytes(noisy)), "sigma": given, "iters": 7}
        job = parse_job(body, device_kind=device_kind, max_bytes=1 << 20, max_pixels=1 << 20)
        assert (job.preset.name, job.preset.iters) == (want, 7), sigma
    job = parse_job(dict(body, preset="denoise-paper"), device_kind=device_kind, max_bytes=1 << 20, max_pixels=1 << 20)
    assert job.preset.name == "denoise-paper"  # a chosen preset is kept


@pytest.mark.parametrize("device_kind, strokes", [("cpu", "inpaint-blindspot-strokes"), ("cuda", "inpaint-text-paper")])
def test_an_inpainting_job_without_a_preset_gets_one_by_its_mask(device_kind, strokes):
    from deepprior.app.server import parse_job
    from deepprior.masks import random_pixels_mask

    dots = random_pixels_mask((48, 48), 0.5, rng=0)
    band = np.zeros((48, 48), bool)
    band[14:34] = True  # a thick stroke: 10 px from any known pixel
    scratch = inpaint_body()["mask"]  # 7 px wide: within 4 px of known pixels
    for mask, want in [(dots, "inpaint-blindspot"), (scratch, "inpaint-blindspot-blocks"), (band, strokes)]:
        body = inpaint_body(preset=None, iters=7)
        if isinstance(mask, np.ndarray):
            body["mask"] = data_url(png_bytes(mask.astype(np.uint8) * 255))
        job = parse_job(body, device_kind=device_kind, max_bytes=1 << 20, max_pixels=1 << 20)
        assert (job.preset.name, job.preset.iters) == (want, 7)


@pytest.mark.parametrize("change, status, words", [
    ({"image": data_url(b"GIF? no, a text file", "text/plain")}, 400, "not an image"),
    ({"image": data_url(png_bytes(np.zeros((60, 60, 3), np.uint8)))}, 413, "megapixels"),
    ({"mask": data_url(png_bytes(np.zeros((48, 48), np.uint8)))}, 400, "mask is empty"),
    ({"mask": None}, 400, "needs a mask"),
    ({"task": "colorize"}, 400, "unknown task"),
    ({"preset": "denoise-small"}, 400, "not a preset for inpaint"),
    ({"preset": ["inpaint-small"]}, 400, "must be a name"),
    ({"task": "denoise", "preset": "denoise-sure-fast", "image": data_url(png_bytes(np.full((32, 32, 3), 128, np.uint8)))},
     400, "give the noise level"),
    ({"iters": "many"}, 400, "iters must be a number"),
    ({"lr": 5}, 400, "lr must be between"),
    ({"task": "sr", "scale": 3, "preset": None}, 400, "must be 2, 4 or 8"),
    ({"task": "denoise", "preset": "denoise-small", "sigma": 300}, 400, "sigma must be between"),
])
def test_bad_requests_get_a_message(change, status, words):
    with app_server(max_pixels=50 * 50) as server:
        code, reply, _ = request(server, "/api/jobs", inpaint_body(**change))
        assert code == status and words in reply["error"]


def test_oversized_bodies_and_unknown_jobs():
    with app_server(max_bytes=1000) as server:
        code, reply, _ = request(server, "/api/jobs", b"{" + b" " * 200_000 + b"}")
        assert code == 413 and "limit is" in reply["error"]
    with app_server() as server:
        assert request(server, "/api/jobs", b"not json")[1]["error"] == "the request is not JSON"
        assert request(server, "/api/jobs/0123456789ab")[0] == 404
        assert request(server, "/api/jobs/0123456789ab/stop", b"", "POST")[0] == 404
        _, job, _ = request(server, "/api/jobs", dict(inpaint_body(), iters=100_000))
        code, reply, _ = request(server, f"/api/jobs/{job['id']}/stop", {}, "POST")  # a body is ignored
        assert code == 200 and reply["id"] == job["id"]


def test_the_app_command_prints_its_url_and_serves_the_page():
    code = "import sys; import deepprior.app.server; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # the server module imports torch only when it needs it
    proc = subprocess.Popen([sys.executable, "-m", "deepprior", "app", "--port", "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("deepprior app: open http://127.0.0.1:") and "device cpu" in line
        url = line.split()[3]
        with urllib.request.urlopen(url, timeout=10) as r:
            assert b"<canvas id=\"mask\">" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
