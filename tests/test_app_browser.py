"""The web app end to end in a real browser: headless Chromium (Debian's ``chromium`` package)
driven by Playwright for Python, against an app started on a free local port.

Without Chromium or Playwright these tests skip with a message saying how to enable them; with
``CI=true`` they fail instead, so that CI always runs them.  ``DEEPPRIOR_CHROMIUM`` names another
Chromium binary.  ``DEEPPRIOR_APP_SCREENSHOT=docs/images/app.png`` also saves the screenshot of
the app mid-run that the README shows.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app_helpers import SCRATCH, app_server, scratched_image

CHROMIUM = os.environ.get("DEEPPRIOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOW_TO_ENABLE = ("install Chromium (Debian/Ubuntu: apt-get install chromium) and Playwright "
                 "(pip install playwright; `pip install -e '.[test]'` includes it), or set DEEPPRIOR_CHROMIUM")
SCREENSHOT_LIMIT = 300 * 1024


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM}"
    return None


@pytest.fixture(scope="module")
def browser():
    missing = _missing()
    if missing:
        message = f"browser tests: {missing}; to run them, {HOW_TO_ENABLE}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + " (CI is set: these tests must run there)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    with app_server() as server:
        context = browser.new_context(viewport={"width": 1200, "height": 800}, accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(120_000)
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server.url)
        pg.wait_for_selector("#preset option", state="attached")  # the config has arrived
        yield pg
        context.close()
        assert not errors, f"JavaScript errors: {errors}"


# ---- what a user does ---------------------------------------------------------------------------


def upload(page, path: Path) -> None:
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#editor", state="visible")


def set_advanced(page, iters: int, every: int, seed: int = 0) -> None:
    page.click("#advanced summary")
    page.fill("#iters", str(iters))
    page.fill("#every", str(every))
    page.fill("#seed", str(seed))


def paint_row(page, row: float, rows: int, brush: int) -> None:
    """Drag the brush (``brush`` screen pixels wide) across the mask canvas at image row ``row``."""
    page.locator("#brush").fill(str(brush))
    box = page.locator("#mask").bounding_box()
    y = box["y"] + (row + 0.5) * box["height"] / rows
    page.mouse.move(box["x"] + 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, y, steps=12)
    page.mouse.up()


def painted(page) -> np.ndarray:
    """The painted pixels of the mask canvas (what the page sends as pixels to fill)."""
    alpha = page.evaluate("""() => {
        const c = document.getElementById('mask');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return {w: c.width, h: c.height, a: Array.from(px.filter((_, i) => i % 4 === 3))};
    }""")
    return np.array(alpha["a"]).reshape(alpha["h"], alpha["w"]) > 0


def preview_updates(page) -> int:
    return int(page.get_attribute("#live", "data-updates"))


def download(page, selector: str) -> bytes:
    with page.expect_download() as d:
        page.click(selector)
    return Path(d.value.path()).read_bytes()


def save_screenshot(png: bytes, dest: Path) -> None:
    """Save a screenshot, as a 256-colour PNG when the full-colour one is too large for the README."""
    im = Image.open(io.BytesIO(png)).convert("RGB")
    dest.parent.mkdir(parents=True, exist_ok=True)
    im.save(dest, optimize=True)
    if dest.stat().st_size > SCREENSHOT_LIMIT:
        im.quantize(256, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)


# ---- the tests ----------------------------------------------------------------------------------


def test_paint_a_scratch_away_and_download_the_result(page, tmp_path, monkeypatch):
    """Tolerances (images in [0, 1]): on the painted pixels the result differs from the upload by
    more than 0.05 on average and the white scratch is gone (mean < 0.9); on the unpainted pixels
    it stays within 0.03 on average (about 8 grey levels of 255; 60 steps give about 0.01)."""
    import deepprior.app.server as server_module

    def slow_png(t, png=server_module._png):  # 12 previews take >= 1.8 s: the page, polling every 0.3 s,
        time.sleep(0.15)                       # sees several of them however fast the machine is
        return png(t)

    monkeypatch.setattr(server_module, "_png", slow_png)
    upload_arr = scratched_image(48)
    src = tmp_path / "scratched.png"
    Image.fromarray(upload_arr).save(src)
    upload(page, src)
    # inpainting starts on "auto": the server picks the preset by the mask (scattered pixels or strokes)
    assert page.input_value("#task") == "inpaint" and page.input_value("#preset") == ""
    assert "inpaint-blindspot for scattered" in page.text_content("#preset-info")
    set_advanced(page, iters=60, every=5)
    paint_row(page, row=(SCRATCH.start + SCRATCH.stop - 1) / 2, rows=48, brush=56)  # 7 image pixels wide
    fill = painted(page)
    assert fill[SCRATCH, 4:44].all() and not fill[:15].any() and not fill[33:].any()

    page.click("#start")
    page.wait_for_function("() => Number(document.getElementById('live').dataset.updates) >= 2")
    page.wait_for_selector("#result", state="visible")
    assert preview_updates(page) >= 2
    assert page.text_content("#status").startswith("Done: 60 steps")

    result = np.asarray(Image.open(io.BytesIO(download(page, "#download-image"))).convert("RGB")) / 255.0
    sidecar = json.loads(download(page, "#download-sidecar"))
    before = upload_arr / 255.0
    assert result.shape == before.shape  # 48 x 48, as the upload
    diff = np.abs(result - before).mean(axis=2)
    assert diff[fill].mean() > 0.05
    assert result[SCRATCH, 4:44].mean() < 0.9
    assert diff[~fill].mean() < 0.03
    assert sidecar["task"] == "inpaint" and sidecar["iterations"] == 60 and sidecar["mask_pixels"] == int(fill.sum())
    # a painted scratch a few pixels wide: a blind-spot preset (masks.fill_reach)
    assert sidecar["preset"]["name"] in ("inpaint-blindspot", "inpaint-blindspot-blocks")
    assert sidecar["input"] == "scratched" and sidecar["output_size"] == [48, 48]


def test_stop_midway_returns_the_result_so_far(page, tmp_path):
    from skimage import data
    from skimage.transform import resize

    face = resize(data.astronaut()[30:230, 140:340], (128, 128), anti_aliasing=True)
    im = Image.fromarray(np.round(face * 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    draw.text((10, 92), "(c) deepprior", fill=(255, 255, 255), font_size=16)  # a caption to remove
    top, bottom = draw.textbbox((10, 92), "(c) deepprior", font_size=16)[1::2]
    src = tmp_path / "astronaut.png"
    im.save(src)
    upload(page, src)
    set_advanced(page, iters=5000, every=5)
    paint_row(page, row=(top + bottom) / 2, rows=128, brush=round((bottom - top + 4) * 480 / 128))
    page.click("#start")
    # a longer run when the screenshot is for the README, so that the preview shows a face
    for_readme = bool(os.environ.get("DEEPPRIOR_APP_SCREENSHOT"))
    steps = 250 if for_readme else 40
    page.wait_for_function("""(steps) => {
        const m = document.getElementById('status').textContent.match(/step (\\d+)/);
        return m && Number(m[1]) >= steps && Number(document.getElementById('live').dataset.updates) >= 3;
    }""", arg=steps, timeout=900_000 if for_readme else None)
    shot = page.screenshot()
    save_screenshot(shot, tmp_path / "app.png")
    assert (tmp_path / "app.png").stat().st_size < SCREENSHOT_LIMIT
    if for_readme:
        save_screenshot(shot, Path(os.environ["DEEPPRIOR_APP_SCREENSHOT"]))

    page.click("#stop")
    page.wait_for_selector("#result", state="visible")
    assert page.text_content("#status").startswith("Stopped: ")
    assert "stopped early" in page.text_content("#result-caption")
    result = Image.open(io.BytesIO(download(page, "#download-image")))
    assert result.size == (128, 128)
    sidecar = json.loads(download(page, "#download-sidecar"))
    assert sidecar["stopped"] and 40 <= sidecar["iterations"] < 5000


def test_mask_tools_and_refusals(page, tmp_path):
    """Upload a mask file, erase, clear; an empty mask and a non-image get a message (no fit runs)."""
    src = tmp_path / "scratched.png"
    Image.fromarray(scratched_image(48)).save(src)
    upload(page, src)
    mask = np.zeros((48, 48), np.uint8)
    mask[10:20, 5:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    page.set_input_files("#mask-file", str(tmp_path / "mask.png"))
    page.wait_for_function("() => document.getElementById('mask').getContext('2d')"
                           ".getImageData(6, 11, 1, 1).data[3] > 0")
    assert np.array_equal(painted(page), mask > 0)  # white = remove, now paint that can be edited

    page.click("#erase")
    paint_row(page, row=15, rows=48, brush=24)
    left = painted(page)
    assert left.sum() < (mask > 0).sum() and not left[15, 8:28].any() and left[10:13, 5:30].all()
    page.click("#clear")
    assert not painted(page).any()
    page.click("#start")
    assert page.text_content("#message") == "Paint over what to remove first."

    notes = tmp_path / "notes.png"  # named like an image, but text
    notes.write_text("not an image")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#editor", state="hidden")
    page.select_option("#task", "denoise")
    # denoising starts on "auto": the server picks the preset by the image's noise level
    assert page.input_value("#preset") == "" and "denoise-sure-fast up to" in page.text_content("#preset-info")
    page.click("#start")
    page.wait_for_function("() => document.getElementById('message').textContent.includes('not an image')")
