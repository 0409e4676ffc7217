"""Tiles (deepprior.tiles): coverage, blending and a real tiled fit."""

import numpy as np
import pytest

from deepprior import tiles
from deepprior.tiles import run_tiled, tile_starts


@pytest.mark.parametrize("n,tile,overlap", [(37, 16, 4), (31, 31, 8), (20, 32, 8), (100, 40, 10)])
def test_tiles_cover_everything_with_the_overlap(n, tile, overlap):
    starts = tile_starts(n, tile, overlap)
    covered = np.zeros(n, bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all() and starts[0] == 0 and starts[-1] == max(n - tile, 0)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


class _Echo:
    """Stands in for run_task: returns its input (upscaled by nearest for SR), so that blending
    must give back exactly the image."""

    def __init__(self):
        self.calls = []

    def __call__(self, task, image, *, scale=None, rng=None, mask=None, **kw):
        self.calls.append((image.shape, rng, None if mask is None else mask.shape))
        s = (scale or 4) if task == "sr" else 1
        out = np.repeat(np.repeat(image, s, axis=0), s, axis=1).astype(np.float32)
        return type("R", (), {"image": out})()


@pytest.mark.parametrize("task,scale", [("denoise", None), ("sr", 2), ("inpaint", None)])
def test_blending_an_identity_gives_back_the_image(monkeypatch, task, scale):
    import deepprior.api

    echo = _Echo()
    monkeypatch.setattr(deepprior.api, "run_task", echo)
    img = np.random.default_rng(0).random((31, 37, 3)).astype(np.float32)
    mask = None
    if task == "inpaint":  # a pixel to fill in every tile
        mask = np.zeros((31, 37), bool)
        mask[::4, ::4] = True
    r = run_tiled(task, img, tile=16, overlap=6, scale=scale, mask=mask, rng=3)
    s = scale or 1
    expected = np.repeat(np.repeat(img, s, axis=0), s, axis=1)
    np.testing.assert_allclose(r.image, expected, atol=1e-6)
    n = len(tile_starts(31, 16, 6)) * len(tile_starts(37, 16, 6))
    assert len(r.boxes) == len(echo.calls) == n and [c[1] for c in echo.calls] == list(range(3, 3 + n))
    if mask is not None:
        assert all(c[2] == c[0][:2] for c in echo.calls)


def test_a_real_tiled_denoise_has_the_image_size_and_improves_it():
    from helpers import crop, psnr

    clean = crop("paper/denoising/F16_GT.png", (40, 52))
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
    r = run_tiled("denoise", noisy, tile=32, overlap=12, preset="denoise-small", iters=120, device="cpu",
                  stop="fixed")
    assert r.image.shape == clean.shape and len(r.results) == 4
    assert psnr(r.image, clean) > psnr(noisy, clean) + 1


def test_bad_overlap():
    from deepprior.pipeline import InputError

    with pytest.raises(InputError):
        tiles.run_tiled("denoise", np.zeros((8, 8)), tile=8, overlap=8)


def test_tile_for_follows_the_request_then_the_preset():
    from deepprior.presets import get_preset
    from deepprior.tiles import tile_for

    fast = get_preset("deblock-fast")  # tile 128
    assert tile_for(fast, 129, 40) == 128 and tile_for(fast, 40, 200) == 128
    assert tile_for(fast, 128, 128) is None  # within one tile: the whole image
    assert tile_for(fast, 300, 300, requested=0) is None  # --tile 0: whole
    assert tile_for(fast, 30, 30, requested=16) == 16  # --tile N: always
    assert tile_for(get_preset("deblock-paper"), 500, 500) is None  # the paper's recipes fit whole


@pytest.mark.parametrize("as_torch", [False, True])
def test_run_task_fits_a_tiled_preset_in_tiles_in_the_inputs_layout(as_torch):
    import torch

    import deepprior

    preset = deepprior.get_preset("deblock-fast").replace(tile=32, network=deepprior.get_preset(
        "deblock-fast").network.__class__(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(4, 4)))
    img = np.random.default_rng(1).random((3, 37, 61)).astype(np.float32)  # channels first, odd sizes
    arg = torch.from_numpy(img) if as_torch else img
    r = deepprior.run_task("deblock", arg, preset=preset, iters=2, rng=5, device="cpu", channel_axis=0)
    overlap = tiles.tile_overlap(32)  # 8: a quarter of a small tile
    n = len(tile_starts(37, 32, overlap)) * len(tile_starts(61, 32, overlap))
    assert r.tiles is not None and len(r.tiles.boxes) == n == 6
    assert isinstance(r.image, torch.Tensor) == as_torch and tuple(r.image.shape) == img.shape
    whole = deepprior.run_task("deblock", arg, preset=preset.replace(tile=None), iters=2, rng=5, device="cpu",
                               channel_axis=0)
    assert whole.tiles is None and tuple(whole.image.shape) == img.shape


def test_a_tiled_fit_checks_the_whole_image_first():
    from deepprior.pipeline import InputError

    bad = np.zeros((40, 40), np.float32)
    bad[35, 35] = np.nan  # in the last tile
    with pytest.raises(InputError, match="non-finite"):
        run_tiled("denoise", bad, tile=16, overlap=4, preset="denoise-small", iters=1)
    with pytest.raises(InputError, match="over the limit"):
        run_tiled("denoise", np.zeros((40, 40), np.float32), tile=16, overlap=4, max_pixels=1000)


def test_inpainting_tiles_with_nothing_to_fill_are_not_fitted(monkeypatch):
    import deepprior.api

    echo = _Echo()
    monkeypatch.setattr(deepprior.api, "run_task", echo)
    img = np.random.default_rng(2).random((40, 140, 3)).astype(np.float32)
    fill = np.zeros((40, 140), bool)
    fill[3:6, 130:137] = True  # in the last column of tiles only
    r = run_tiled("inpaint", img, tile=32, overlap=8, mask=fill, rng=0)
    fitted = tiles.tile_count(40, 140, 32, 8, fill)
    assert fitted == len(echo.calls) == 1 < tiles.tile_count(40, 140, 32, 8) == len(r.boxes)
    np.testing.assert_allclose(r.image, img, atol=1e-6)
    from deepprior.pipeline import InputError

    with pytest.raises(InputError, match="no pixel to fill"):
        run_tiled("inpaint", img, tile=32, overlap=8, mask=np.zeros((40, 140), bool))
    with pytest.raises(InputError, match="the mask is 139x40"):
        run_tiled("inpaint", img, tile=32, overlap=8, mask=fill[:, :139])


def test_a_text_mask_is_inpainted_in_tiles_where_there_is_text():
    import deepprior
    from deepprior.masks import text_mask

    img = np.random.default_rng(3).random((37, 150, 4)).astype(np.float32)
    img[:, :, 3] = 1  # opaque RGBA: inpainting returns RGB
    fill = np.zeros((37, 150), bool)
    fill[:, :70] = text_mask((37, 70), size=32, rng=0)  # bold text on the left only
    preset = deepprior.get_preset("inpaint-text-fast").replace(tile=48)
    r = deepprior.run_task("inpaint", img, mask=fill, preset=preset, iters=2, rng=0, device="cpu")
    assert r.image.shape == (37, 150, 3) and np.isfinite(r.image).all()
    assert len(r.tiles.results) == tiles.tile_count(37, 150, 48, tiles.tile_overlap(48), fill) < len(r.tiles.boxes)
    assert np.array_equal(r.image[:, 120:], img[:, 120:, :3])  # no text there: the input itself


def test_a_tiled_runs_callback_hears_which_tile_each_state_is_from():
    img = np.random.default_rng(3).random((30, 45, 3)).astype(np.float32)
    heard = []

    def callback(step, state):
        heard.append((state.tile, tuple(state.output.shape[-2:])))

    run_tiled("sr", img, tile=24, overlap=8, scale=2, rng=0, preset="sr-x4-small", iters=2, device="cpu",
              callback=callback)
    infos = sorted({t for t, _ in heard})
    n = tiles.tile_count(30, 45, 24, 8)
    assert [t.index for t in infos] == list(range(n)) and {t.count for t in infos} == {n}
    for info, (h, w) in heard:  # output pixels: the tile's corner times the scale, inside the image
        assert info.top % 2 == 0 and info.left % 2 == 0
        assert info.top + h <= 60 and info.left + w <= 90
    assert max(t.left for t in infos) + 48 == 90  # the last column of tiles ends at the right edge
    heard.clear()  # a list of callbacks (as the CLI passes) hears the tiles too
    run_tiled("denoise", img, tile=24, overlap=8, rng=0, preset="denoise-small", iters=1, device="cpu",
              callback=[callback, lambda step, state: False])
    assert len({t for t, _ in heard}) == n
