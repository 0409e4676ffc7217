"""Blind-spot inpainting (the ``inpaint-blindspot`` preset): the mask test that picks it, the fit's
properties, the checks, and a real fit."""

import numpy as np
import pytest
import torch
from torch import nn

import deepprior
from deepprior.fitting import fit
from deepprior.objectives import BlindSpot, blindspot_input, blindspot_keep_at
from deepprior.forward import Identity, Mask
from deepprior.masks import (MaskError, fill_reach, hole_mask, is_scattered, near_known, random_pixels_mask, reach,
                             strokes_mask, text_mask)
from deepprior.pipeline import InputError

from helpers import crop, psnr


class CopyShown(nn.Module):
    """f(x) = the image part of the input (the shown pixels, zero elsewhere), plus a learnt offset."""

    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, : self.channels] + self.b


def test_scattered_masks_are_told_from_strokes_and_holes():
    shape = (96, 128)
    assert is_scattered(random_pixels_mask(shape, 0.5, rng=0))
    assert is_scattered(random_pixels_mask(shape, 0.2, rng=1))
    assert not is_scattered(hole_mask(shape, fraction=0.1, rng=0))
    assert not is_scattered(strokes_mask(shape, width=6, rng=0))
    assert not is_scattered(text_mask((256, 256), rng=0))
    assert not is_scattered(np.zeros(shape, bool))


def test_masks_near_known_pixels_are_scattered_or_thin():
    shape = (96, 128)
    assert near_known(random_pixels_mask(shape, 0.5, rng=0))
    assert near_known(text_mask((256, 256), rng=0))  # 32 px letters: every pixel within 2.8 px of a known one
    assert reach(text_mask((256, 256), rng=0)) <= 3 < reach(strokes_mask(shape, width=6, rng=0))
    assert near_known(strokes_mask(shape, width=3, rng=0)) and not near_known(strokes_mask(shape, width=6, rng=0))
    assert not near_known(hole_mask(shape, fraction=0.1, rng=0))
    assert not near_known(np.zeros(shape, bool)) and reach(np.zeros(shape, bool)) == 0


def test_blindspot_input_stacks_the_shown_pixels_and_their_mask():
    z = torch.rand(1, 3, 5, 7)
    shown = (torch.rand(1, 1, 5, 7) < 0.5).float()
    x = blindspot_input(z, shown)
    assert x.shape == (1, 4, 5, 7)
    torch.testing.assert_close(x[:, :3], z * shown)
    torch.testing.assert_close(x[:, 3:], shown)


def test_the_fit_scores_hidden_known_pixels_only_and_keeps_the_known_pixels():
    """Copying the input scores the hidden pixels' squared value (they are zero in the input): a
    blind-spot fit cannot be won by copying; the image returned keeps every known pixel as given."""
    g = torch.Generator().manual_seed(0)
    y = torch.rand(1, 3, 37, 31, generator=g)
    known = (torch.rand(1, 1, 37, 31, generator=g) < 0.5).float()
    y = y * known
    seen = []
    r = fit(CopyShown(3), y.clone(), Mask(known), y, iters=4, lr=1e-9, jitter=0.0, ema=0.99, backtrack=False,
            objective=BlindSpot(0.8), generator=torch.Generator().manual_seed(1),
            callback=lambda step, s: seen.append((s.loss, s.output.clone())))
    for loss, out in seen:
        # about 0.2 of the known pixels hidden; their mean square under a copy is mean(y^2) ~ 1/3
        assert loss == pytest.approx(float((y[known.expand_as(y) > 0] ** 2).mean()), rel=0.2)
        torch.testing.assert_close(out * known, y * known)
    torch.testing.assert_close(r.image * known, y.clamp(0, 1) * known)


class Ramp(nn.Module):
    """f(x) = a fixed pattern that is not symmetric under any flip (plus a learnt offset)."""

    def __init__(self, shape):
        super().__init__()
        self.register_buffer("pattern", torch.arange(float(np.prod(shape))).reshape(shape) / np.prod(shape))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.pattern + self.b


def test_flips_feed_the_network_flipped_inputs_and_flip_its_output_back():
    """With ``blindspot_flips`` each step's output is the network's flipped back: for a fixed
    pattern, its missing pixels show the pattern in all four orientations over the steps (and only
    those); without flips, only the pattern as it is."""
    from deepprior.objectives import FLIPS

    g = torch.Generator().manual_seed(0)
    y = torch.rand(1, 3, 9, 7, generator=g)
    known = (torch.rand(1, 1, 9, 7, generator=g) < 0.5).float()
    missing = (1 - known).expand_as(y) > 0
    for flips, expected in ((True, set(range(4))), (False, {0})):
        net = Ramp(y.shape)
        seen = set()

        def which(step, s, net=net, seen=seen):
            for k, dims in enumerate(FLIPS):
                flipped = net.pattern.flip(dims) if dims else net.pattern
                if torch.allclose(s.output[missing], flipped[missing], atol=1e-6):
                    seen.add(k)
                    return
            raise AssertionError(f"step {step}: the output is no flip of the network's")

        fit(net, y * known, Mask(known), y * known, iters=40, lr=1e-9, jitter=0.0, ema=None, backtrack=False,
            objective=BlindSpot(0.8, flips=flips), generator=torch.Generator().manual_seed(1), callback=which)
        assert seen == expected


class RecordShown(CopyShown):
    """CopyShown that records the share of the known pixels shown to it (its input's mask channel)."""

    def __init__(self, channels, known):
        super().__init__(channels)
        self.known, self.shares = known, []

    def forward(self, x):
        self.shares.append(float(x[:, self.channels:].sum() / self.known.sum()))
        return super().forward(x)


def test_the_share_shown_falls_from_keep_to_keep_final_then_stays():
    assert blindspot_keep_at(1, 0.8) == blindspot_keep_at(500, 0.8, 0.4, 0) == 0.8  # no schedule
    assert blindspot_keep_at(1000, 0.8, 0.4, 2000) == pytest.approx(0.6)
    assert blindspot_keep_at(2000, 0.8, 0.4, 2000) == blindspot_keep_at(5000, 0.8, 0.4, 2000) == pytest.approx(0.4)
    g = torch.Generator().manual_seed(0)
    known = (torch.rand(1, 1, 64, 64, generator=g) < 0.5).float()  # ~2000 known pixels: the share to ~0.01
    y = torch.rand(1, 3, 64, 64, generator=g) * known
    net = RecordShown(3, known)
    fit(net, y.clone(), Mask(known), y, iters=30, lr=1e-9, jitter=0.0, ema=None, backtrack=False,
        objective=BlindSpot(0.8, 0.4, 20), generator=torch.Generator().manual_seed(1))
    steps = net.shares[:30]  # (then the final pass, without an average: every known pixel shown)
    for step, share in enumerate(steps, start=1):
        assert share == pytest.approx(blindspot_keep_at(step, 0.8, 0.4, 20), abs=0.05)
    assert steps[0] > 0.7 and steps[-1] < 0.5


def test_blindspot_fit_checks_its_arguments():
    y = torch.rand(1, 3, 16, 16)
    known = torch.ones(1, 1, 16, 16)
    with pytest.raises(ValueError, match="Mask forward model"):
        fit(CopyShown(3), y.clone(), Identity(), y, iters=1, objective=BlindSpot(0.8))
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        BlindSpot(1.0)
    with pytest.raises(ValueError, match="shaped like y"):
        fit(CopyShown(3), torch.rand(1, 32, 16, 16), Mask(known), y, iters=1, objective=BlindSpot(0.8))
    with pytest.raises(ValueError, match=r"blindspot_keep_final must be in \(0, 1\)"):
        BlindSpot(0.8, 0.0)


def test_the_preset_is_for_inpainting_with_the_measurement_as_input():
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    with pytest.raises(InputError, match="inpainting only"):
        deepprior.run_task("denoise", img, preset="inpaint-blindspot", iters=1, device="cpu")
    bad = deepprior.get_preset("inpaint-blindspot").replace(input="noise")
    with pytest.raises(InputError, match="input='measurement'"):
        deepprior.run_task("inpaint", img, mask=random_pixels_mask((16, 16), 0.5, rng=0), preset=bad, iters=1,
                           device="cpu")
    flipped = deepprior.get_preset("inpaint-small").replace(blindspot_flips=True)
    with pytest.raises(InputError, match="blindspot_flips needs loss='blindspot'"):
        deepprior.run_task("inpaint", img, mask=random_pixels_mask((16, 16), 0.5, rng=0), preset=flipped, iters=1,
                           device="cpu")
    falling = deepprior.get_preset("inpaint-small").replace(blindspot_keep_final=0.4, blindspot_keep_steps=10)
    with pytest.raises(InputError, match="blindspot_keep_final needs loss='blindspot'"):
        deepprior.run_task("inpaint", img, mask=random_pixels_mask((16, 16), 0.5, rng=0), preset=falling, iters=1,
                           device="cpu")


def test_the_default_follows_the_mask():
    img = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    pick = lambda **kw: deepprior.choose_preset("inpaint", img, **kw).name  # noqa: E731
    scattered = random_pixels_mask((64, 64), 0.5, rng=0)
    assert pick(mask=scattered) == "inpaint-blindspot"
    assert pick(mask=~scattered, mask_keeps=True) == "inpaint-blindspot"  # the same mask, the other convention
    assert pick(mask=hole_mask((64, 64), rng=0)) == "inpaint-text-paper"
    assert pick(mask=text_mask((64, 64), size=16, rng=0)) == "inpaint-blindspot"  # thin text
    band = np.zeros((64, 64), bool)
    band[30:37] = True  # a scratch 7 px wide: every pixel within 4 px of a known one (as 64 px letters)
    assert fill_reach(band) == 4 and pick(mask=band) == "inpaint-blindspot-blocks"
    band[26:41] = True  # 15 px wide
    assert pick(mask=band) == "inpaint-text-paper"
    sparse = random_pixels_mask((64, 64), 0.05, rng=0)
    assert pick(mask=sparse) == "inpaint-blindspot"
    assert pick(mask=sparse, mask_dilate=2) == "inpaint-blindspot-blocks"  # grown into blobs: within 4 px
    assert pick(mask=sparse, mask_dilate=4) == "inpaint-text-paper"  # grown further
    with pytest.raises(MaskError, match="every pixel"):  # 50 % grown by 2 px: nothing known, no choice
        pick(mask=scattered, mask_dilate=2)
    with pytest.raises(MaskError, match="same size"):
        pick(mask=scattered[:32])
    rgba = np.concatenate([img, (~scattered)[..., None].astype(np.float32)], axis=2)  # transparent = fill
    assert pick() == "inpaint-text-paper"  # no mask at all: run_task says so
    assert deepprior.choose_preset("inpaint", rgba).name == "inpaint-blindspot"
    from deepprior.presets import default_choices

    assert set(default_choices("inpaint")) == {"inpaint-blindspot", "inpaint-blindspot-blocks", "inpaint-text-paper"}


def test_auto_stop_runs_the_blindspot_presets_step_count():
    from deepprior.stopping import auto_spec

    assert auto_spec("inpaint", "inpaint-blindspot") is None
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    r = deepprior.run_task("inpaint", img, mask=random_pixels_mask((16, 16), 0.5, rng=0), iters=3, device="cpu")
    assert r.restoration.preset.name == "inpaint-blindspot"  # the default for this mask
    assert r.restoration.stop_rule is None and r.restoration.fit.steps == 3


def test_blindspot_inpainting_beats_a_smooth_fill_on_an_odd_crop(data_dir):
    """50 % missing pixels on a 45x37 crop: better than filling each missing pixel with the mean of
    its known 3x3 neighbours (a simple interpolation), and the known pixels come back as given."""
    from scipy.ndimage import uniform_filter

    clean = crop("set14/pepper.png", (37, 45))
    fill = random_pixels_mask(clean.shape[:2], 0.5, rng=0)
    degraded = np.where(fill[..., None], 0.0, clean).astype(np.float32)
    r = deepprior.run_task("inpaint", degraded, mask=fill, iters=300, rng=0, device="cpu")
    assert r.restoration.preset.name == "inpaint-blindspot"
    k = (~fill).astype(np.float64)[..., None]
    mean = uniform_filter(degraded * k, (3, 3, 1)) / np.maximum(uniform_filter(np.repeat(k, 3, 2), (3, 3, 1)), 1e-9)
    smooth = np.where(fill[..., None], mean, clean)
    gain = psnr(r.image, clean) - psnr(smooth, clean)
    assert gain > 1.0, gain
    np.testing.assert_allclose(r.image[~fill], clean[~fill], atol=1e-6)


def test_the_fill_of_a_blind_spot_input_interpolates_the_shown_pixels():
    import torch

    from deepprior.objectives import blindspot_input

    g = torch.Generator().manual_seed(0)
    z = torch.full((1, 3, 17, 23), 0.25)
    shown = (torch.rand((1, 1, 17, 23), generator=g) < 0.4).float()
    shown[..., :, 15:] = 0  # a band with no shown pixel within the kernel's reach
    plain, filled = blindspot_input(z, shown), blindspot_input(z, shown, fill=True)
    assert plain.shape == filled.shape == (1, 4, 17, 23)
    assert torch.equal(plain[:, 3:], filled[:, 3:])  # the same mask channel
    assert torch.allclose(filled[0, :3, :, :12], torch.full((3, 17, 12), 0.25), atol=1e-5)  # a constant is kept
    assert torch.all(filled[0, :3, :, 19:] == 0)  # nothing shown within reach: zero, as without the fill
    assert torch.all(plain[0, :3][:, shown[0, 0] == 0] == 0)


def test_a_blindspot_fit_can_hide_squares_instead_of_pixels():
    from scipy.ndimage import binary_opening

    y = torch.rand(1, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    objective = BlindSpot(0.6, block=3)
    objective.setup(Mask(torch.ones(1, 1, 96, 96)), y, y.clone(), precision="fp32", cuda_graph=False)
    seen = []
    objective.step(lambda x: seen.append(x[:, 1:]) or x[:, :1], y.clone(), 1, torch.Generator().manual_seed(1))
    hidden = seen[0][0, 0].numpy() < 0.5
    assert hidden.mean() == pytest.approx(0.4, abs=0.05)  # about 1 - keep of the pixels
    inner = (slice(4, -4), slice(4, -4))  # (squares at the border are cut)
    assert np.array_equal(binary_opening(hidden, np.ones((3, 3)))[inner], hidden[inner])  # made of 3x3 squares
    with pytest.raises(ValueError, match="odd"):
        BlindSpot(0.8, block=2)


def test_a_blindspot_fit_can_hide_copies_of_the_masks_holes():
    """shape="mask": the hidden pixels are copies of the mask's own holes (an L here, one layer for
    all three channels), shifted and flipped at random, about 1 - keep of the known pixels."""
    from scipy.ndimage import label

    y = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    known = torch.ones(1, 3, 64, 48)
    ell = np.zeros((9, 7), bool)
    ell[:, :2] = ell[-2:, :] = True  # an L: each of its four flips is another shape
    known[:, :, 5:14, 5:12][:, :, torch.as_tensor(ell)] = 0
    objective = BlindSpot(0.85, shape="mask")
    objective.setup(Mask(known), y, y.clone(), precision="fp32", cuda_graph=False)
    seen = []
    objective.step(lambda x: seen.append(x[:, 3:]) or x[:, :3], y.clone(), 1, torch.Generator().manual_seed(1))
    assert seen[0].shape == (1, 3, 64, 48) and torch.equal(seen[0][:, :1].expand(1, 3, 64, 48), seen[0])  # same copies
    unshown = seen[0][0, 0].numpy() < 0.5
    hidden = unshown & (known[0, 0].numpy() > 0)
    assert hidden.sum() / (known[0, 0] > 0).sum().item() == pytest.approx(0.15, abs=0.05)
    shapes = {np.flip(ell, d).tobytes(): d for d in ((), (0,), (1,), (0, 1))}
    found = []
    parts, n = label(hidden)
    for k in range(1, n + 1):  # the copies apart from the others, the hole and the edges: each an L
        rows, cols = np.nonzero(parts == k)
        box = parts[rows.min():rows.max() + 1, cols.min():cols.max() + 1] == k
        if box.sum() == ell.sum() and 0 < rows.min() and rows.max() < 63 and 0 < cols.min() and cols.max() < 47:
            assert box.shape == ell.shape and box.tobytes() in shapes, box.astype(int)
            found.append(shapes[box.tobytes()])
    assert found and any(d != () for d in found), found  # flipped, not only shifted
    with pytest.raises(ValueError, match="squares"):
        BlindSpot(0.8, block=3, shape="mask")
    with pytest.raises(ValueError, match="blindspot_shape"):
        deepprior.get_preset("inpaint-blindspot").replace(blindspot_shape="strokes")
    with pytest.raises(ValueError, match="set blindspot_block=1"):
        deepprior.get_preset("inpaint-blindspot-blocks").replace(blindspot_shape="mask")
