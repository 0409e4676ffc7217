"""Each task, end to end through the public API, beats a named baseline on a real image crop.

Small networks (4 levels of 32 channels) and a few hundred steps keep these to seconds each.
"""

import numpy as np
import pytest
import torch

import deepprior
from deepprior.degrade import add_noise, jpeg_compress
from deepprior.forward import Downsampler
from deepprior.masks import random_pixels_mask

from helpers import crop, psnr, small_preset


def test_denoise_beats_the_noisy_input(data_dir):
    clean = crop("set14/pepper.png", 48)
    noisy = add_noise(clean, 25, rng=0)
    out = deepprior.denoise(noisy, preset=small_preset("denoise-paper"), iters=200, rng=0, device="cpu")
    assert out.shape == clean.shape and out.dtype == np.float32
    gain = psnr(out, clean) - psnr(noisy, clean)
    assert gain > 2.0, gain


def test_deblock_beats_the_jpeg_input(data_dir):
    clean = crop("set14/lenna.png", 48)
    jpeg = jpeg_compress(clean, 10)
    out = deepprior.deblock(jpeg, preset=small_preset("deblock-paper", input_depth=32), iters=300, rng=0,
                            device="cpu")
    gain = psnr(out, clean) - psnr(jpeg, clean)
    assert gain > 0.3, gain


def _x4_gain_over_nearest(hr, **kwargs):
    """PSNR of ``super_resolve`` x4 on the Lanczos-downscaled ``hr`` minus that of nearest-neighbour upscaling."""
    x = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))[None]
    lr = Downsampler(4)(x)[0].numpy().transpose(1, 2, 0)
    out = deepprior.super_resolve(lr, 4, iters=200, rng=0, device="cpu", **kwargs)
    assert out.shape == hr.shape
    nearest = lr.repeat(4, axis=0).repeat(4, axis=1)
    return psnr(out, hr) - psnr(nearest, hr)


def test_super_resolution_beats_nearest_neighbour_upscaling(data_dir):
    gain = _x4_gain_over_nearest(crop("set5/baby.png", 64), preset=small_preset("sr-x4-paper"))
    assert gain > 1.0, gain


def test_the_default_super_resolution_preset_beats_nearest_neighbour_upscaling(data_dir):
    # x4's default is sr-x4-fast (small network, averaged outputs, Adam betas 0.8 / 0.9), on an odd size
    gain = _x4_gain_over_nearest(crop("set5/butterfly.png", 68)[:, :60])
    assert gain > 3.0, gain  # measured: 5.2 dB (seeds 0 and 1)


def test_inpainting_beats_mean_filled_holes(data_dir):
    clean = crop("inpainting11/house.png", 48, gray=True)[:, :, 0]
    fill = random_pixels_mask(clean.shape, 0.5, rng=0)
    damaged = np.where(fill, 0.0, clean)
    out = deepprior.inpaint(damaged, fill, preset=small_preset("inpaint-pixels-paper", lr=0.01), iters=200,
                            rng=0, device="cpu")
    assert out.shape == clean.shape
    mean_filled = np.where(fill, clean[~fill].mean(), clean)
    gain = psnr(out, clean) - psnr(mean_filled, clean)
    assert gain > 5.0, gain


def test_torch_in_torch_out_same_layout():
    x = torch.rand(3, 20, 17)
    out = deepprior.denoise(x, preset=small_preset("denoise-paper"), iters=2, rng=0, device="cpu")
    assert isinstance(out, torch.Tensor) and out.shape == x.shape and out.device == x.device
    x4 = torch.rand(1, 1, 20, 17, dtype=torch.float64)
    out4 = deepprior.denoise(x4, preset=small_preset("denoise-paper"), iters=2, rng=0, device="cpu")
    assert out4.shape == x4.shape and out4.dtype == torch.float64


def test_integer_input_is_scaled_and_channel_axis_is_honoured():
    img = (np.random.default_rng(0).random((3, 20, 17)) * 255).astype(np.uint8)
    out = deepprior.denoise(img, preset=small_preset("denoise-paper"), iters=2, rng=0, device="cpu", channel_axis=0)
    assert out.shape == img.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


def test_rgba_alpha_is_carried_through_and_resized_for_sr():
    rgba = np.random.default_rng(0).random((16, 12, 4)).astype(np.float32)
    out = deepprior.denoise(rgba, preset=small_preset("denoise-paper"), iters=2, rng=0, device="cpu")
    assert out.shape == rgba.shape and np.array_equal(out[:, :, 3], rgba[:, :, 3])
    up = deepprior.super_resolve(rgba, 2, preset=small_preset("sr-x4-paper"), iters=2, rng=0, device="cpu")
    assert up.shape == (32, 24, 4)


def test_rgba_inpaint_without_mask_fills_the_transparent_pixels():
    rgba = np.random.default_rng(0).random((16, 12, 4)).astype(np.float32)
    rgba[:, :, 3] = 1.0
    rgba[4:8, 4:8, 3] = 0.0
    out = deepprior.inpaint(rgba, preset=small_preset("inpaint-text-paper"), iters=2, rng=0, device="cpu")
    assert out.shape == (16, 12, 3)


def test_non_finite_input_is_refused():
    img = np.zeros((16, 16), np.float32)
    img[3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        deepprior.denoise(img, iters=1, device="cpu")


@pytest.mark.parametrize("image, words", [
    (torch.rand(16, 16, 3), "channels first"),  # a channels-last tensor: 16 "channels"
    (torch.rand(3, 16, 16, dtype=torch.complex64), "dtype"),
    (np.zeros((0, 0), np.float32), "empty"),
    (np.zeros((0, 16, 3), np.float32), "empty"),
    (torch.zeros(3, 0, 16), "empty"),
])
def test_unusable_arrays_are_refused_with_a_reason(image, words):
    from deepprior.pipeline import InputError

    with pytest.raises(InputError, match=words):
        deepprior.denoise(image, iters=1, device="cpu")
    with pytest.raises(InputError, match="out of range"):
        deepprior.denoise(np.zeros((8, 8, 3), np.float32), iters=1, device="cpu", channel_axis=5)
    with pytest.raises(InputError, match="the reference is 9x8"):
        deepprior.run_task("denoise", np.zeros((8, 8), np.float32), reference=np.zeros((8, 9), np.float32),
                           preset="denoise-small", iters=1, device="cpu")


def test_integer_tensors_are_scaled_as_integer_arrays_are():
    """By the integer type's full scale (int16: 32767), whether the data come as numpy or torch."""
    from deepprior.api import _to_bchw

    a = (np.random.default_rng(0).random((5, 6)) * 30000).astype(np.int16)
    t, _ = _to_bchw(torch.from_numpy(a), -1)
    n, _ = _to_bchw(a, -1)
    torch.testing.assert_close(t, n)


def test_absurd_size_is_refused_before_any_work():
    with pytest.raises(ValueError, match="max-pixels"):
        deepprior.super_resolve(np.zeros((3000, 3000), np.float32), 8, device="cpu")


@pytest.mark.parametrize("name", sorted(deepprior.PRESETS))
def test_every_preset_runs_its_task_on_an_odd_image(name):
    """Two steps of every preset on a 37x31 image: the output has the task's size and is finite in [0, 1]."""
    p = deepprior.get_preset(name)
    img = np.random.default_rng(0).random((31, 37, 3)).astype(np.float32)
    kw = {"sr": {"scale": 8 if "x8" in name else 2}, "denoise": {"sigma": 0.1},
          "inpaint": {"mask": random_pixels_mask((31, 37), 0.5, rng=0)}}.get(p.task, {})
    r = deepprior.run_task(p.task, img, preset=p, iters=2, rng=0, device="cpu", stop="fixed", **kw)
    s = kw.get("scale", 1)
    assert r.image.shape == (31 * s, 37 * s, 3)
    assert np.isfinite(r.image).all() and r.image.min() >= 0 and r.image.max() <= 1


def test_a_network_with_dropout_gives_the_same_result_for_the_same_seed():
    import dataclasses

    preset = small_preset("denoise-paper")
    preset = preset.replace(network=dataclasses.replace(preset.network, dropout=0.2))
    x = np.random.default_rng(0).random((19, 23)).astype(np.float32)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = deepprior.denoise(x, preset=preset, iters=3, rng=5, device="cpu")
    assert torch.equal(torch.rand(1), before)  # the caller's global generator is left as it was
    b = deepprior.denoise(x, preset=preset, iters=3, rng=5, device="cpu")
    c = deepprior.denoise(x, preset=preset, iters=3, rng=6, device="cpu")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_a_noise_level_on_the_0_255_scale_is_refused_with_the_conversion():
    from deepprior.pipeline import InputError
    from deepprior.stopping import make_rule

    img = np.random.default_rng(0).random((20, 20)).astype(np.float32)
    for call in (lambda: deepprior.choose_preset("denoise", img, sigma=25),
                 lambda: deepprior.denoise(img, sigma=25, iters=1, device="cpu"),
                 lambda: make_rule("auto", task="denoise", sigma=25)):
        with pytest.raises(InputError, match="25/255"):
            call()


def test_a_misspelt_preset_choice_is_refused_when_the_preset_is_made():
    from deepprior.presets import get_preset

    for field, value in (("jitter_kind", "uniformm"), ("loss", "sures"), ("precision", "fp16"), ("task", "nonsense")):
        with pytest.raises(ValueError, match=field):
            get_preset("denoise-paper").replace(**{field: value})
