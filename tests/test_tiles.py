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
    mask = np.zeros((31, 37), bool) if task == "inpaint" else None
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
