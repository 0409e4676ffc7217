"""The benchmark protocol (benchmarks/protocol.py), the quick tier's plan and the report.

Fast and without fitting: no network is run here.
"""

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import protocol  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


# --- super-resolution metric -----------------------------------------------------------------


def test_rgb_to_y_endpoints():
    assert protocol.rgb_to_y(np.zeros((1, 1, 3)))[0, 0] == pytest.approx(16 / 255)
    assert protocol.rgb_to_y(np.ones((1, 1, 3)))[0, 0] == pytest.approx(235 / 255, abs=1e-6)


def test_trim_keeps_the_centre():
    img = np.arange(12 * 12).reshape(12, 12)
    t = protocol.trim(img)
    assert t.shape == (3, 3)  # 12 - 4 - 5
    assert t[0, 0] == img[4, 4] and t[-1, -1] == img[6, 6]


def test_trimmed_y_psnr_by_hand():
    truth = np.full((12, 12, 3), 0.5)
    out = truth.copy()
    dr, dg, db = 0.10, 0.05, -0.02
    out[..., 0] += dr
    out[..., 1] += dg
    out[..., 2] += db
    # the trimmed-away border (4 px top/left, 5 px bottom/right) is wrong by a lot: it must not count
    border = np.ones((12, 12), bool)
    border[4:7, 4:7] = False
    out[border] = 0.0
    dy = (65.481 * dr + 128.553 * dg + 24.966 * db) / 255  # the 16/255 offsets cancel
    expected = 10 * math.log10(1 / dy**2)
    assert protocol.trimmed_y_psnr(out, truth) == pytest.approx(expected, abs=1e-9)
    # without the trim the border errors would dominate
    assert protocol.psnr(protocol.rgb_to_y(out), protocol.rgb_to_y(truth)) < expected - 10


def test_psnr_and_ssim_of_identical_images():
    img = np.random.default_rng(0).random((16, 16, 3))
    assert protocol.psnr(img, img) == math.inf
    assert protocol.ssim(img, img) == pytest.approx(1.0)
    assert protocol.trimmed_y_ssim(img, img) == pytest.approx(1.0)


# --- degradations -------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.5, 0.2])
def test_bernoulli_mask_fraction_and_seed(fraction):
    m = protocol.bernoulli_mask((256, 256), fraction, seed=7)
    assert m.dtype == bool and m.shape == (256, 256)
    assert abs(m.mean() - fraction) < 0.01
    assert np.array_equal(m, protocol.bernoulli_mask((256, 256), fraction, seed=7))
    assert not np.array_equal(m, protocol.bernoulli_mask((256, 256), fraction, seed=8))


def test_noise_is_reproducible_by_seed():
    img = np.full((64, 64, 3), 0.5, np.float32)
    a = protocol.add_noise(img, 25, seed=3)
    assert a.dtype == np.float32
    assert np.array_equal(a, protocol.add_noise(img, 25, seed=3))
    assert not np.array_equal(a, protocol.add_noise(img, 25, seed=4))
    assert a.min() >= 0 and a.max() <= 1
    assert np.std(a - img) == pytest.approx(25 / 255, rel=0.05)


def test_image_seed_is_stable_and_distinct():
    assert protocol.image_seed("set5/baby") == protocol.image_seed("set5/baby")
    assert protocol.image_seed("set5/baby") != protocol.image_seed("set5/bird")
    assert protocol.image_seed("set5/baby", 1) != protocol.image_seed("set5/baby")
    assert 0 <= protocol.image_seed("set5/baby") < 2**31


def test_jpeg_keeps_the_layout():
    img = np.random.default_rng(1).random((32, 24, 3)).astype(np.float32)
    out = protocol.jpeg(img, 10)
    assert out.shape == img.shape and out.dtype == np.float32
    assert 0 < protocol.psnr(out, img) < 40


# --- crops and resizes --------------------------------------------------------------------------


def test_centre_crop_to_a_multiple_of_32_is_centred():
    img = np.arange(100 * 75).reshape(100, 75)
    c = protocol.centre_crop(img, multiple=32)
    assert c.shape == (96, 64)
    top, left = (100 - 96) // 2, (75 - 64) // 2
    assert np.array_equal(c, img[top : top + 96, left : left + 64])


def test_centre_crop_of_a_size():
    img = np.arange(300 * 200 * 3).reshape(300, 200, 3)
    c = protocol.centre_crop(img, 128, multiple=32)
    assert c.shape == (128, 128, 3)
    assert np.array_equal(c, img[86:214, 36:164])
    with pytest.raises(ValueError):
        protocol.centre_crop(img, 100, multiple=32)


def test_lanczos_and_bicubic_sizes():
    hr = np.random.default_rng(2).random((64, 96, 3)).astype(np.float32)
    lr = protocol.lanczos_downscale(hr, 4)
    assert lr.shape == (16, 24, 3)
    assert protocol.bicubic_upscale(lr, 4).shape == hr.shape
    gray = protocol.lanczos_downscale(hr[:, :, 0], 8)
    assert gray.shape == (8, 12)


def test_as_rgb_repeats_gray():
    g = np.random.default_rng(3).random((5, 6, 1))
    rgb = protocol.as_rgb(g)
    assert rgb.shape == (5, 6, 3) and np.array_equal(rgb[..., 2], g[..., 0])


# --- the plan and the report --------------------------------------------------------------------


@pytest.mark.skipif(not DATA.is_dir(), reason="shared/data not present")
def test_quick_tier_is_planned_under_30_minutes_on_the_cpu():
    from benchmarks import paper

    total = 0.0
    for table in paper.TABLE_NAMES[:4]:  # the paper's tables; the text table (not the paper's) on its own below
        jobs = paper.make_jobs(table, "quick")
        fast = ("denoise-sure-fast", "inpaint-blindspot", "sr-x4-fast", "deblock-fast", "inpaint-text-fast")  # small too
        assert jobs and all(j.crop_label == "centre-128" and (j.preset.endswith("-small") or j.preset in fast)
                            for j in jobs)
        total += sum(paper.job_seconds(j, "cpu") for j in jobs)
    assert total * paper.TIME_CAP < 30 * 60  # even if every fit runs to its time cap
    assert paper.TABLE_NAMES[4] == "text"
    assert sum(paper.job_seconds(j, "cpu") for j in paper.make_jobs("text", "quick")) * paper.TIME_CAP < 8 * 60


def test_report_from_a_tiny_csv(tmp_path):
    from benchmarks import paper, report

    rows = []
    for method, p in (("deepprior", 31.0), ("biharmonic", 29.0), ("telea", 27.5)):
        rows.append(dict.fromkeys(paper.COLUMNS, "") | {
            "table": "inpaint", "dataset": "inpainting11", "image": "house", "method": method, "tier": "quick",
            "degradation": "p=0.5", "preset": "inpaint-small" if method == "deepprior" else "", "crop": "centre-128",
            "seed": 1, "psnr": p, "ssim": 0.9, "iters": 1000 if method == "deepprior" else "", "seconds": 1.0,
            "device": "cpu", "torch": "2", "commit": "abc",
            "paper_psnr": 39.16 if method == "deepprior" else "", "notes": "n",
        })
    with open(tmp_path / "inpaint-quick.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=paper.COLUMNS)
        w.writeheader()
        w.writerows(rows)
    text = report.build(tmp_path, tmp_path / "B.md")
    assert "quick tier: 1 image (inpainting11: 1), crops centre-128" in text
    assert "| paper DIP |" in text
    assert "| inpainting11 | house | 31.00 / 0.9000 | 39.16 | 29.00 / 0.9000 | 27.50 / 0.9000 |" in text
    assert "33.48 (all 11)" in text


@pytest.mark.skipif(not (DATA / "set14").is_dir(), reason="needs ../shared/data")
def test_the_strokes_crops_are_strokes_past_the_blind_spot_presets_reach():
    """benchmarks.fast's inpaint-strokes task: brush strokes (not the text table's letters) over the
    text crops, farther from known pixels than inpaint-blindspot-blocks takes: the default is the paper's."""
    import deepprior
    from benchmarks import fast
    from deepprior.masks import BLOCKS_MAX_REACH, reach

    task = fast.TASKS["inpaint-strokes"]
    job, case = fast.make_case(task, "set14/comic")
    mask = case.dip_kwargs["mask"]
    assert case.degraded.shape == case.truth.shape == (128, 128, 3) and mask.shape == (128, 128)
    assert 0.03 < mask.mean() < 0.2 and reach(mask) > BLOCKS_MAX_REACH
    assert np.all(case.degraded[mask] == 0) and np.array_equal(case.degraded[~mask], case.truth[~mask])
    _, text = fast.make_case(fast.TASKS["inpaint-text"], "set14/comic")
    assert not np.array_equal(text.dip_kwargs["mask"], mask)
    assert deepprior.choose_preset("inpaint", case.degraded, mask=mask).name == "inpaint-text-paper"


def test_the_blind_spot_network_of_the_negative_result_is_blind():
    # benchmarks.blindspot_net's network: the output at a pixel depends on the input around it, never
    # on that pixel (else its data term would say nothing about the missing pixels)
    import torch

    from benchmarks.blindspot_net import build

    torch.manual_seed(0)
    net = build(2, 1)
    for i, j in [(0, 0), (13, 17), (16, 16), (31, 30)]:
        x = torch.rand(1, 2, 32, 32, requires_grad=True)
        net(x)[0, 0, i, j].backward()
        g = x.grad[0].abs().sum(0)
        assert g[i, j] == 0
        assert g[max(i - 1, 0), j] + g[min(i + 1, 31), j] > 0 and g.sum() > 0
