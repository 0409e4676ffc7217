"""DIP-SURE (the ``denoise-sure`` preset): the divergence estimate, the checks, and a real fit."""

import numpy as np
import pytest
import torch
from torch import nn

import deepprior
from deepprior.degrade import add_noise
from deepprior.fitting import fit
from deepprior.forward import Identity
from deepprior.objectives import Sure
from deepprior.pipeline import InputError

from helpers import crop, psnr


class Scale(nn.Module):
    """f(x) = w x: its divergence per element is w."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(w)))

    def forward(self, x):
        return self.w * x


class Constant(nn.Module):
    """f(x) = c (a learnt image): its divergence is 0."""

    def __init__(self, shape):
        super().__init__()
        self.c = nn.Parameter(torch.rand(shape))

    def forward(self, x):
        return self.c.expand_as(x)


@pytest.mark.parametrize("w", [1.0, 0.5, 0.0])
def test_monte_carlo_divergence_of_a_linear_map(w):
    torch.manual_seed(0)  # the probe's draw (unseeded, 0.94 came out once in a while: 2.6 sd)
    y = torch.rand(1, 3, 37, 31)
    seen = []
    fit(Scale(w), y.clone(), Identity(), y, iters=1, lr=1e-9, jitter=0.0, ema=None, backtrack=False,
        objective=Sure(0.1), callback=lambda step, s: seen.append(s.divergence))
    # b . (w eps b) / (eps n) = w |b|^2 / n: w up to the spread of |b|^2 / n (sd 2.4 % for n = 3487)
    assert seen[0] == pytest.approx(w, abs=0.06)


def test_divergence_of_a_constant_is_zero_and_absent_without_sure():
    y = torch.rand(1, 3, 20, 17)
    seen = []
    fit(Constant(y.shape), y.clone(), Identity(), y, iters=2, jitter=0.0, ema=None, objective=Sure(0.1),
        callback=lambda step, s: seen.append(s.divergence))
    assert seen == [pytest.approx(0.0, abs=1e-6)] * 2
    seen.clear()
    fit(Constant(y.shape), y.clone(), Identity(), y, iters=1, jitter=0.0, callback=lambda step, s: seen.append(s.divergence))
    assert seen == [None]


def test_sure_finds_the_mse_optimal_shrinkage_where_the_data_term_copies_the_input():
    """f(y) = w y.  The data term alone learns to copy the noisy input (w -> 1).  SURE(w) =
    (1 - w)^2 mean(y^2) - sigma^2 + 2 sigma^2 w is least at w = 1 - sigma^2 / mean(y^2), the
    shrinkage with the least expected error against the clean image (here 0.25 / 0.29)."""
    torch.manual_seed(0)
    clean = torch.full((1, 3, 32, 32), 0.5)
    y = clean + 0.2 * torch.randn(clean.shape)
    plain, sure = Scale(0.5), Scale(0.5)
    common = dict(iters=300, lr=0.01, jitter=0.0, ema=None, backtrack=False)
    fit(plain, y.clone(), Identity(), y, **common)
    fit(sure, y.clone(), Identity(), y, objective=Sure(0.2), **common)
    assert plain.w.item() > 0.95
    assert sure.w.item() == pytest.approx(1 - 0.2**2 / float((y**2).mean()), abs=0.02)
    assert sure.w.item() == pytest.approx(float((clean * y).mean() / (y**2).mean()), abs=0.02)


def test_sure_needs_the_measurement_as_input():
    y = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="shaped like y"):
        fit(Scale(1), torch.rand(1, 32, 16, 16), Identity(), y, iters=1, objective=Sure(0.1))
    with pytest.raises(ValueError, match="sigma > 0"):
        fit(Scale(1), y.clone(), Identity(), y, iters=1, objective=Sure(0.0))


def test_sure_needs_full_fp32():
    # bf16 (and on CUDA TF32, which fit turns off for SURE: results/gpu/2026-11-27-run4) round the
    # two outputs 1e-3 apart whose difference is the divergence
    y = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="fp32"):
        fit(Scale(1), y.clone(), Identity(), y, iters=1, objective=Sure(0.1), precision="bf16")
    img = y[0].permute(1, 2, 0).numpy()
    with pytest.raises(InputError, match="needs fp32"):
        deepprior.run_task("denoise", img, preset=deepprior.get_preset("denoise-sure").replace(precision="bf16"),
                           iters=1, device="cpu", sigma=0.1)
    # "auto" (bf16 where native) runs a SURE fit in fp32
    r = deepprior.run_task("denoise", img, preset=deepprior.get_preset("denoise-sure").replace(precision="auto"),
                           iters=1, device="cpu", sigma=0.1, stop="fixed")
    assert r.image.shape == img.shape


def test_no_tf32_switch_restores_cudnns_setting():
    from deepprior.fitting import _NoTF32

    before = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        with _NoTF32(True):
            assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is True
        with _NoTF32(False):
            assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("preset, iters", [("denoise-sure", 150), ("denoise-sure-fast", None)])
def test_denoise_sure_beats_the_noisy_input_on_an_odd_crop(data_dir, preset, iters):
    clean = crop("set14/pepper.png", (37, 45))
    noisy = add_noise(clean, 25, rng=0)
    # denoise-sure-fast: its own 200 steps, over which its learning rate decays
    r = deepprior.run_task("denoise", noisy, preset=preset, iters=iters, rng=0, device="cpu", stop="fixed")
    assert r.image.shape == clean.shape
    gain = psnr(r.image, clean) - psnr(noisy, clean)
    assert gain > 3.0, gain
    # the noise level was estimated from the image (no sigma given)
    assert r.restoration.sigma * 255 == pytest.approx(25, rel=0.25)


def test_denoise_sure_uses_a_given_sigma():
    noisy = np.random.default_rng(0).random((24, 20, 3)).astype(np.float32)
    r = deepprior.run_task("denoise", noisy, preset="denoise-sure", iters=2, rng=0, device="cpu", stop="fixed",
                           sigma=10 / 255)
    assert r.restoration.sigma == pytest.approx(10 / 255)


@pytest.mark.parametrize("task, kw", [("sr", {"scale": 2}), ("inpaint", {"mask": np.eye(16, dtype=bool)})])
def test_denoise_sure_refuses_other_tasks(task, kw):
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    with pytest.raises(InputError, match="denoising only"):
        deepprior.run_task(task, img, preset="denoise-sure", iters=1, device="cpu", sigma=0.1, **kw)


def test_measurement_input_and_sure_loss_go_together():
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    p = deepprior.get_preset("denoise-sure")
    for bad in (p.replace(loss="mse"), deepprior.get_preset("denoise-small").replace(loss="sure")):
        with pytest.raises(InputError, match="together"):
            deepprior.run_task("denoise", img, preset=bad, iters=1, device="cpu", sigma=0.1)


def test_denoise_sure_warns_above_the_noise_levels_it_was_measured_at():
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match="denoise-paper .the default at this level. is safer"):
        deepprior.run_task("denoise", img, preset="denoise-sure", iters=1, device="cpu", sigma=60 / 255)


def test_auto_stop_runs_the_sure_presets_step_count():
    from deepprior.stopping import AUTO_STOP, auto_spec

    from deepprior.stopping import DataTermRise, make_rule

    assert auto_spec("denoise", "denoise-sure") is None
    assert auto_spec("denoise", "denoise-small") is AUTO_STOP["denoise"] is not None
    assert isinstance(make_rule("auto", task="denoise", preset="denoise-sure-fast"), DataTermRise)
    with pytest.raises(ValueError, match="no window or patience"):
        make_rule("auto", task="denoise", preset="denoise-sure-fast", window=50)
    assert make_rule("fixed", task="denoise", preset="denoise-sure-fast") is None
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    r = deepprior.run_task("denoise", img, preset="denoise-sure", iters=3, device="cpu", sigma=0.1)  # stop="auto"
    # the guard watches but a healthy (here: short) fit runs its steps and returns its running average
    assert isinstance(r.restoration.stop_rule, DataTermRise) and r.restoration.fit.steps == 3
    assert not r.restoration.stop_rule.stopped


def _replay(rule, losses):
    """Feed a data-term curve to ``rule``; each step's result is a tensor holding its step number."""
    from types import SimpleNamespace

    for step, loss in enumerate(losses, 1):
        if rule(step, SimpleNamespace(loss=loss, backtracked=False, result=torch.tensor([float(step)]))):
            return step
    return None


def test_data_term_rise_returns_the_average_from_before_the_collapse():
    from deepprior.stopping import DataTermRise

    falling = [1.0 / (1 + 0.05 * k) for k in range(300)]
    rule = DataTermRise(rise=0.03, alpha=0.1, warmup=20)
    assert _replay(rule, falling) is None and not rule.stopped  # a healthy fit: no stop
    # falls to a minimum at step 150, then rises (the collapse): stops, keeps the result from near the minimum
    collapse = falling[:150] + [falling[149] * (1 + 0.01 * k) for k in range(1, 150)]
    rule = DataTermRise(rise=0.03, alpha=0.1, warmup=20)
    stop = _replay(rule, collapse)
    assert stop is not None and 150 < stop < 170 and "rose" in rule.reason
    assert 145 <= rule.best_step <= 155 and float(rule.best) == rule.best_step
    # non-finite losses and backtracked steps are ignored; bad settings are refused
    assert _replay(DataTermRise(warmup=2), [1.0, float("nan"), 0.9, 0.8]) is None
    for bad in [dict(rise=0), dict(alpha=0), dict(alpha=1.5), dict(warmup=0)]:
        with pytest.raises(ValueError):
            DataTermRise(**bad)


def test_denoisings_default_preset_follows_the_noise_level(data_dir):
    from deepprior.presets import SURE_MAX_SIGMA, default_choices, default_preset

    assert default_preset("denoise", sigma=25 / 255) == "denoise-sure-fast"
    # on a CUDA GPU, where a fit takes seconds, two fits averaged; above the level the paper recipe still
    assert default_preset("denoise", sigma=25 / 255, device="cuda") == "denoise-sure-pair"
    assert default_preset("denoise", sigma=SURE_MAX_SIGMA * 1.01, device="cuda") == "denoise-paper"
    assert default_preset("denoise", sigma=SURE_MAX_SIGMA * 1.01) == "denoise-paper"
    assert default_preset("denoise") == "denoise-paper"  # unknown level: the paper recipe
    assert deepprior.choose_preset("denoise", np.full((40, 40, 3), 0.5)).name == "denoise-paper"  # nothing to read
    assert set(default_choices("denoise")) == {"denoise-sure-fast", "denoise-sure-pair", "denoise-paper"}
    clean = crop("set14/pepper.png", (37, 45))
    for level, want in [(15, "denoise-sure-fast"), (25, "denoise-sure-fast"), (50, "denoise-paper")]:
        noisy = add_noise(clean, level, rng=0)
        assert deepprior.choose_preset("denoise", noisy, device="cpu").name == want, level  # estimated from the image
        # alpha is not noise; torch input and a given sigma work as well
        rgba = np.concatenate([noisy, np.ones_like(noisy[:, :, :1])], axis=2)
        assert deepprior.choose_preset("denoise", rgba, device="cpu").name == want
        assert deepprior.choose_preset("denoise", torch.from_numpy(noisy).permute(2, 0, 1), device="cpu").name == want
    assert deepprior.choose_preset("denoise", add_noise(clean, 50, rng=0), sigma=20 / 255,
                                   device="cpu").name == "denoise-sure-fast"
    assert deepprior.choose_preset("sr", clean, scale=8).name == "sr-x8-paper"
    # the task functions use it when no preset is given
    r = deepprior.run_task("denoise", add_noise(clean, 15, rng=0), iters=2, rng=0, device="cpu")
    assert r.restoration.preset.name == "denoise-sure-fast" and r.restoration.fit.steps == 2


def test_a_probe_every_other_step_finds_the_same_shrinkage_and_reports_the_divergence_on_its_steps():
    """``sure_every=2``: the divergence's penalty on every other step, weighted 2x, is the same on
    average: the fit still finds the MSE-optimal shrinkage (see the test above)."""
    torch.manual_seed(0)
    clean = torch.full((1, 3, 32, 32), 0.5)
    y = clean + 0.2 * torch.randn(clean.shape)
    sure, seen = Scale(0.5), []
    fit(sure, y.clone(), Identity(), y, iters=300, lr=0.01, jitter=0.0, ema=None, backtrack=False,
        objective=Sure(0.2, every=2), callback=lambda step, s: seen.append(s.divergence))
    assert sure.w.item() == pytest.approx(1 - 0.2**2 / float((y**2).mean()), abs=0.02)
    assert all(d is not None for d in seen[::2]) and all(d is None for d in seen[1::2])
    with pytest.raises(ValueError, match="sure_every"):
        fit(Scale(1), y.clone(), Identity(), y, iters=1, objective=Sure(0.1, every=0))


def test_the_divergence_guard_skips_the_steps_without_a_probe():
    from deepprior.stopping import DivergenceDrop

    y = torch.rand(1, 3, 20, 17)
    rule = DivergenceDrop(warmup=2)
    r = fit(Scale(1.0), y.clone(), Identity(), y, iters=6, lr=1e-9, jitter=0.0, ema=None,
            objective=Sure(0.1, every=2), stop=rule)
    assert r.steps == 6 and rule.smoothed == pytest.approx(1.0, abs=0.1)


def test_a_fit_stopped_by_data_term_rise_returns_the_kept_average():
    from deepprior.stopping import DataTermRise

    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    rule = DataTermRise(rise=1e-6, alpha=1.0, warmup=1)  # stops at the first step whose data term goes up
    r = deepprior.run_task("denoise", img, preset="denoise-sure-fast", iters=60, rng=0, device="cpu", sigma=0.1,
                           stop=rule)
    assert r.restoration.fit.stop_reason == "rule" and rule.stop_step == r.restoration.fit.steps
    assert rule.best_step < rule.stop_step
    np.testing.assert_allclose(r.image, rule.best.clamp(0, 1)[0].permute(1, 2, 0).numpy(), atol=1e-6)
