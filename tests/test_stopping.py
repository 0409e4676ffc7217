"""Stopping rules (deepprior.stopping): synthetic sequences with a known variance minimum, and a
tiny real fit."""

import math

import pytest
import torch

from deepprior.fitting import FitState
from deepprior.measures import estimate_noise_level
from deepprior.stopping import ExponentialVariance, MaxIterations, WindowedVariance, first_of

T_MIN = 300  # the step where the synthetic outputs are least noisy
T_END = 1000


def _scale(t):
    """Noise level: large early, minimal at T_MIN, growing again (a sharp V)."""
    return 0.01 + 0.5 * abs(t - T_MIN) / T_MIN


def _sequence(n=T_END, seed=0, shape=(1, 3, 16, 16)):
    """FitStates whose outputs are ``clean + s(t) * noise_t``; yields (step, state)."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(shape, generator=g)
    for t in range(1, n + 1):
        out = clean + _scale(t) * torch.randn(shape, generator=g)
        yield t, FitState(t, n, out, None, 0.01, 0.0, False, None)


def _run(rule, **kw):
    for t, state in _sequence(**kw):
        if rule(t, state):
            return t
    return None


@pytest.mark.parametrize("window,patience", [(50, 50), (100, 100), (20, 150)])
def test_windowed_variance_stops_after_minimum_and_selects_it(window, patience):
    rule = WindowedVariance(window=window, patience=patience)
    stop = _run(rule)
    assert stop == rule.stop_step
    # the window of minimal variance is centred on T_MIN: it ends W/2 later
    assert abs(rule.min_step - (T_MIN + window // 2)) <= 10
    # it stops exactly `patience` steps after that (the variance only grows afterwards)
    assert stop == rule.min_step + patience
    assert T_MIN <= stop <= T_MIN + window + patience + 10
    # select="end": the selected iterate is the last output of the min-variance window
    assert rule.best_step == rule.min_step
    assert rule.best.shape == (1, 3, 16, 16)
    assert "windowed variance" in rule.reason


def test_windowed_variance_centre_selects_the_minimum():
    rule = WindowedVariance(window=100, patience=100, select="centre")
    _run(rule)
    assert rule.best_step == rule.min_step - 50
    assert abs(rule.best_step - T_MIN) <= 10
    # best is the output at best_step: replay the sequence to check
    for t, state in _sequence():
        if t == rule.best_step:
            torch.testing.assert_close(rule.best, state.output)
            break


def test_windowed_variance_incremental_matches_exact():
    window = 20
    rule = WindowedVariance(window=window, patience=10_000)
    outputs = []
    g = torch.Generator().manual_seed(1)
    for t in range(1, 131):
        x = torch.rand(1, 3, 8, 8, generator=g) * (1 + t / 10) + 5.0  # an offset: cancellation
        outputs.append(x)
        rule(t, FitState(t, 130, x, None, 0.01, 0.0, False, None))
    assert len(rule.variances) == 130 - window + 1
    for step, v in rule.variances:
        w = torch.stack(outputs[step - window : step]).double()
        exact = ((w - w.mean(0)) ** 2).sum(dim=tuple(range(1, w.ndim))).mean().item() / w[0].numel()
        assert math.isclose(v, exact, rel_tol=1e-6), (step, v, exact)


def test_windowed_variance_skips_backtracked_steps():
    clean = torch.zeros(1, 1, 4, 4)
    rule = WindowedVariance(window=5, patience=1000)
    for t in range(1, 21):
        bad = t == 12
        out = clean + (100.0 if bad else 0.0)
        rule(t, FitState(t, 20, out, None, 0.01, 0.0, bad, None))
    assert max(v for _, v in rule.variances) == 0.0


def test_watch_result_uses_the_average():
    rule = WindowedVariance(window=3, patience=2, watch="result")
    avg = torch.ones(1, 1, 2, 2)
    for t in range(1, 6):
        out = torch.randn(1, 1, 2, 2)
        rule(t, FitState(t, 5, out, avg, 0.01, 0.0, False, None))
    assert rule.min_variance == 0.0
    torch.testing.assert_close(rule.best, avg)


def test_exponential_variance_stops_after_minimum_and_selects_it():
    rule = ExponentialVariance(alpha=0.1, patience=100)
    stop = _run(rule)
    assert stop == rule.stop_step == rule.min_step + 100
    assert T_MIN <= stop <= T_MIN + 100 + 40
    assert rule.best_step == rule.min_step
    assert abs(rule.best_step - T_MIN) <= 25
    assert rule.best.shape == (1, 3, 16, 16)
    assert "exponential variance" in rule.reason


def test_reset_allows_reuse():
    rule = WindowedVariance(window=50, patience=50)
    first = _run(rule)
    rule.reset()
    assert rule.stop_step is None and rule.best is None and rule.best_step is None
    assert _run(rule) == first


def test_max_iterations_stops_exactly():
    rule = MaxIterations(37)
    stop = _run(rule)
    assert stop == rule.stop_step == rule.best_step == 37
    for t, state in _sequence():
        if t == 37:
            torch.testing.assert_close(rule.best, state.output)
            break
    assert rule.reason == "reached 37 steps"


def test_first_of_reports_the_rule_that_stopped():
    wmv = WindowedVariance(window=50, patience=50)
    cap = MaxIterations(200)
    both = first_of(wmv, cap)
    assert _run(both) == 200
    assert both.best_step == 200 and "200" in both.reason
    both.reset()
    both = first_of(WindowedVariance(window=50, patience=50), MaxIterations(900))
    stop = _run(both)
    assert stop < 900 and both.best_step == both.rules[0].min_step


def test_invalid_arguments():
    with pytest.raises(ValueError):
        WindowedVariance(window=1)
    with pytest.raises(ValueError):
        WindowedVariance(select="middle")
    with pytest.raises(ValueError):
        WindowedVariance(watch="average")
    with pytest.raises(ValueError):
        ExponentialVariance(alpha=1.5)
    with pytest.raises(ValueError):
        MaxIterations(0)


def _tiny_preset(iters):
    from deepprior.networks import NetworkConfig
    from deepprior.presets import Preset

    net = NetworkConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))
    return Preset(name="t", task="denoise", description="", network=net, iters=iters)


def _clean():
    ramp = torch.linspace(0, 1, 24)
    return torch.stack([ramp[None, :].expand(24, 24), ramp[:, None].expand(24, 24), 0.5 * torch.ones(24, 24)])[None]


def _noisy(seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = _clean()
    return (clean + 0.1 * torch.randn(clean.shape, generator=g)).float()


def test_real_fit_stops_early():
    from deepprior.pipeline import restore

    y = _noisy()
    rule = WindowedVariance(window=20, patience=20)
    r = restore(y, _tiny_preset(400), rng=0, device="cpu", callback=rule)
    assert rule.stop_step is not None and rule.stop_step < 400
    assert r.fit.stop_reason == "callback" and r.fit.steps == rule.stop_step
    assert rule.best is not None and rule.best.shape == y.shape
    assert rule.best_step <= rule.stop_step - 20


def test_real_fit_max_iterations():
    from deepprior.pipeline import restore

    y = _noisy()
    rule = MaxIterations(15)
    r = restore(y, _tiny_preset(400), rng=0, device="cpu", callback=rule)
    assert r.fit.steps == 15 and rule.stop_step == 15
    assert rule.best.shape == y.shape


def test_exported_lazily():
    import deepprior

    assert deepprior.WindowedVariance is WindowedVariance
    assert deepprior.first_of is first_of
    assert {"WindowedVariance", "ExponentialVariance", "MaxIterations", "first_of"} <= set(deepprior.__all__)


def test_a_rule_given_as_stop_ends_the_fit_and_its_choice_is_returned():
    import torch

    from deepprior.networks import NetworkConfig
    from deepprior.pipeline import restore
    from deepprior.presets import Preset
    from deepprior.stopping import WindowedVariance

    preset = Preset(name="t", task="denoise", description="", iters=400, ema=None, backtrack=False,
                    network=NetworkConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2)))
    y = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    rule = WindowedVariance(window=20, patience=20)
    r = restore(y, preset, rng=0, device="cpu", stop=rule)
    assert r.fit.stop_reason == "rule" and r.fit.steps == rule.stop_step < 400
    assert torch.equal(r.image, rule.best.clamp(0, 1))


def _with_average(rule, n=T_END):
    """Feed the synthetic sequence with a distinct 'average' tensor (the step number, constant)."""
    for t, state in _sequence(n=n):
        state.average = torch.full_like(state.output, float(t))
        if rule(t, state):
            return t
    return None


@pytest.mark.parametrize("cls", [WindowedVariance, ExponentialVariance])
def test_keep_chooses_which_tensor_is_returned(cls):
    """keep="result": the average at the variance minimum; "final": the average at the stop;
    "output": the raw output at the minimum (even when the variance watches the average)."""
    result = cls(patience=100, keep="result")
    stop = _with_average(result)
    assert stop == result.min_step + 100 and torch.all(result.best == result.min_step)
    final = cls(patience=100, keep="final")
    stop = _with_average(final)
    assert torch.all(final.best == stop) and final.best_step == stop
    output = cls(patience=100, keep="output")
    _with_average(output)
    assert not torch.all(output.best == output.min_step)  # the noisy output, not the constant
    with pytest.raises(ValueError):
        cls(keep="average")


@pytest.mark.parametrize("rule", [WindowedVariance(50, 100), ExponentialVariance(0.1, 100),
                                  first_of(WindowedVariance(50, 100), MaxIterations(900))])
def test_state_dict_round_trip_continues_the_same(rule):
    """Stop half way, save, load into a fresh rule: it stops where the uninterrupted one does."""
    import copy
    import io

    reference = copy.deepcopy(rule)
    expected = _run(reference)
    seq = list(_sequence())
    for t, state in seq[:400]:
        rule(t, state)
    buf = io.BytesIO()
    torch.save(rule.state_dict(), buf)
    fresh = copy.deepcopy(rule)
    fresh.reset()
    fresh.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    stop = next(t for t, state in seq[400:] if fresh(t, state))
    assert stop == expected and fresh.best_step == reference.best_step
    torch.testing.assert_close(fresh.best, reference.best)


def test_make_rule_auto_builds_each_tasks_rule():
    from deepprior.presets import TASKS
    from deepprior.stopping import AUTO_STOP, make_rule

    assert set(AUTO_STOP) == set(TASKS)
    for task, spec in AUTO_STOP.items():
        rule = make_rule("auto", task=task)
        if spec is None:  # no rule for this task: the preset's step count, nothing to adjust
            assert rule is None
            with pytest.raises(ValueError, match="--stop emv"):
                make_rule("auto", task=task, patience=7)
            continue
        assert rule.patience == spec.patience and rule.keep == spec.keep
        assert make_rule("auto", task=task, patience=7).patience == 7
    assert make_rule("fixed", task="sr") is None
    with pytest.raises(ValueError):
        make_rule("auto")


def test_api_default_is_auto_with_the_preset_steps_as_cap():
    """run_task stops with the task's auto rule by default, capped by iters; "fixed" runs them all."""
    import numpy as np

    import deepprior
    from deepprior.stopping import AUTO_STOP

    y = _noisy()[0].permute(1, 2, 0).numpy()
    res = deepprior.run_task("denoise", y, preset="denoise-small", iters=5, rng=0, device="cpu")
    rule = res.restoration.stop_rule
    assert rule.patience == AUTO_STOP["denoise"].patience and res.restoration.fit.steps == 5
    fixed = deepprior.run_task("denoise", y, preset="denoise-small", iters=5, rng=0, device="cpu", stop="fixed")
    assert fixed.restoration.stop_rule is None
    np.testing.assert_array_equal(res.image, fixed.image)  # the cap ended both: the same result
    short = deepprior.run_task("denoise", y, preset="denoise-small", iters=400, rng=0, device="cpu",
                               stop=WindowedVariance(10, 10, keep="result"))
    assert short.restoration.fit.stop_reason == "rule" and short.restoration.fit.steps < 400


@pytest.mark.parametrize("rule", [WindowedVariance(20, 50, warmup=400), ExponentialVariance(0.1, 50, warmup=400)])
def test_warmup_ignores_early_minima(rule):
    """With a warm-up past the synthetic minimum (step 300), no variance before step 400 counts:
    the rule then sees only a rising variance and stops `patience` steps after the warm-up."""
    stop = _run(rule)
    assert rule.variances[0][0] == 400 and rule.min_step == 400 and stop == 450


def _gated_sequence(residual_from, n=T_END, sigma=0.1, seed=0):
    """The V-shaped variance of :func:`_sequence`, with a data term above ``sigma**2`` (twice it)
    until step ``residual_from`` and below it (half) after: a fit that reaches the noise level late."""
    for t, state in _sequence(n=n, seed=seed):
        state.loss = (2.0 if t < residual_from else 0.5) * sigma**2
        yield t, state


@pytest.mark.parametrize("cls", [WindowedVariance, ExponentialVariance])
def test_the_noise_gate_delays_the_stop_until_the_data_term_reaches_the_noise_level(cls):
    """Ungated, the rule stops about `patience` after the variance minimum (step 300); gated, not
    before the smoothed data term has fallen to sigma^2 (a few tens of steps after step 700)."""
    free = cls(patience=100)
    free_stop = next(t for t, s in _gated_sequence(700) if free(t, s))
    gated = cls(patience=100, noise_gate=1.0, sigma=0.1)
    stop = next(t for t, s in _gated_sequence(700) if gated(t, s))
    assert free_stop < 500 and 700 < stop < 800
    assert gated.min_step == free.min_step  # the gate delays the stop, not the choice
    assert "sigma 0.1000" in gated.reason
    # a data term that never reaches the noise level: the gate never opens
    never = cls(patience=100, noise_gate=1.0, sigma=0.1)
    assert not any(never(t, s) for t, s in _gated_sequence(10**9))


def test_the_noise_level_is_estimated_from_the_measurement():
    g = torch.Generator().manual_seed(0)
    y = (0.5 + 0.1 * torch.randn(1, 3, 64, 64, generator=g)).clamp(0, 1)
    assert estimate_noise_level(y) == pytest.approx(0.1, rel=0.1)
    rule = WindowedVariance(20, 20, noise_gate=1.0)
    rule(1, FitState(1, 10, y, None, 0.5, 0.0, False, None, y))
    assert rule.sigma_used == pytest.approx(0.1, rel=0.1)
    no_measurement = WindowedVariance(20, 20, noise_gate=1.0)
    no_measurement(1, FitState(1, 10, y, None, 0.5, 0.0, False, None))
    assert "needs sigma" in no_measurement.gate_note  # the gate is dropped, the fit goes on
    with pytest.raises(ValueError, match="noise level"):
        estimate_noise_level(torch.full((1, 3, 32, 32), 0.5))


def test_a_flat_image_drops_the_gate_instead_of_failing_the_fit():
    flat = torch.full((1, 3, 16, 16), 0.5)
    rule = ExponentialVariance(0.1, 20, noise_gate=1.0)
    stop = next(t for t in range(1, 1000) if rule(t, FitState(t, 1000, flat, None, 1.0, 0.0, False, None, flat)))
    assert stop < 100 and "no noise gate" in rule.reason
    with pytest.raises(ValueError, match="sigma"):
        WindowedVariance(20, 20, noise_gate=1.0, sigma=-1.0)


@pytest.mark.parametrize("level", [5, 15, 50])
@pytest.mark.parametrize("size", [(128, 128), (37, 31)])
def test_the_noise_level_of_a_photo_is_estimated_within_ten_percent(level, size):
    """On crops of scikit-image's astronaut (face, hair, suit), against the noise actually added
    (after clipping to [0, 1]); small images take smaller patches."""
    import numpy as np
    from skimage import data

    img = data.astronaut()[100:100 + size[0], 150:150 + size[1]].astype(np.float32) / 255
    noisy = np.clip(img + level / 255 * np.random.default_rng(0).standard_normal(img.shape), 0, 1)
    actual = float(np.sqrt(((noisy - img) ** 2).mean()))
    got = estimate_noise_level(torch.from_numpy(noisy.astype(np.float32)).permute(2, 0, 1)[None])
    assert got == pytest.approx(actual, rel=0.1)


def test_make_rule_passes_the_noise_level_to_a_gated_auto_rule():
    from deepprior.stopping import AUTO_STOP, make_rule

    for task, spec in AUTO_STOP.items():
        if spec is not None and spec.noise_gate is not None:
            rule = make_rule("auto", task=task, sigma=25 / 255)
            assert rule.noise_gate == spec.noise_gate and rule.sigma == pytest.approx(25 / 255)


def test_the_automatic_denoising_rule_with_its_noise_gate_stops_a_real_fit():
    """The shipped rule (noise gate included, sigma estimated) on a tiny real fit: it stops before
    the cap, once the smoothed data term is within sigma^2, and returns an image closer to the
    clean one than the noisy input."""
    from deepprior.pipeline import restore
    from deepprior.stopping import make_rule

    clean, y = _clean(), _noisy()
    rule = make_rule("auto", task="denoise")
    r = restore(y, _tiny_preset(3000), rng=0, device="cpu", stop=rule)
    assert r.fit.stop_reason == "rule" and rule.stop_step < 3000
    assert rule.sigma_used == pytest.approx(0.1, rel=0.15) and "sigma" in rule.reason
    assert rule._loss_mean / rule._loss_weight <= rule.noise_gate * rule.sigma_used**2
    assert float(((r.image - clean) ** 2).mean()) < float(((y - clean) ** 2).mean()) / 2


def _blocky_pair(size=40, seed=0):
    """A smooth image and a 'JPEG' of it: a constant offset per 8x8 block (grid phase (3, 5))."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.2, 0.8, size)
    clean = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                         0.5 * torch.ones(size, size)])[None]
    blocks = 0.05 * torch.randn(1, 3, size // 8 + 2, size // 8 + 2, generator=g)
    offsets = blocks.repeat_interleave(8, 2).repeat_interleave(8, 3)[..., 5:5 + size, 3:3 + size]
    return clean, clean + offsets


def test_blockiness_finds_the_grid_and_is_about_one_for_a_smooth_image():
    from deepprior.measures import block_grid_phase, blockiness

    clean, y = _blocky_pair()
    phase = block_grid_phase(y)
    assert phase == (3, 5)
    assert blockiness(y, phase=phase) > 3 and blockiness(clean, phase=phase) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("fraction", [0.1, 0.3])
def test_block_artifacts_stop_when_the_output_takes_on_the_blocks(fraction):
    """Outputs move linearly from the smooth image to the blocky input over 1000 steps; the rule
    stops on the way, earlier for a smaller fraction, and returns the result at its stop."""
    from deepprior.measures import blockiness
    from deepprior.stopping import BlockArtifacts

    clean, y = _blocky_pair()
    rule = BlockArtifacts(fraction, warmup=10)
    for t in range(1, 1001):
        out = clean + (t / 1000) * (y - clean)
        if rule(t, FitState(t, 1000, out, out, 0.01, 0.0, False, None, y)):
            break
    assert rule.stop_step is not None and 10 <= rule.stop_step < 1000
    limit = 1 + fraction * (rule.input_blockiness - 1)
    assert rule.values[-1][1] >= limit > rule.values[-2][1]  # the first step over the limit
    assert torch.equal(rule.best, clean + (rule.stop_step / 1000) * (y - clean)) and "block" in rule.reason
    # a smooth input has no blocks to watch: the rule never stops
    flat = BlockArtifacts(fraction, warmup=10)
    assert not any(flat(t, FitState(t, 100, clean, clean, 0.01, 0.0, False, None, clean)) for t in range(1, 100))


def _divergence_states(divergences, shape=(1, 3, 8, 8)):
    """FitStates of a SURE fit whose divergence follows ``divergences``; the average is step-stamped."""
    n = len(divergences)
    for t, d in enumerate(divergences, 1):
        out = torch.full(shape, 0.5)
        yield t, FitState(t, n, out, torch.full(shape, float(t)), 0.01, 0.0, False, None, None, d)


def test_divergence_drop_stops_when_the_smoothed_divergence_falls_and_returns_the_average_there():
    from deepprior.stopping import DivergenceDrop

    # rises to 0.15 by step 200, flat to 400, then falls to -0.05 at 600 (the collapse seen on baboon)
    divs = [0.15 * min(t, 200) / 200 for t in range(1, 401)] + [0.15 - 0.2 * t / 200 for t in range(1, 201)]
    rule = DivergenceDrop(fraction=0.7, alpha=0.05, warmup=200)
    stop = next(t for t, s in _divergence_states(divs) if rule(t, s))
    assert 400 < stop < 500 and rule.stop_step == stop and rule.best_step == stop
    assert float(rule.best.mean()) == stop  # the running average of the stop step
    assert "collapse" in rule.reason and rule.smoothed < 0.7 * rule.peak


def test_divergence_drop_lets_a_healthy_fit_run_and_needs_a_sure_fit():
    from deepprior.stopping import DivergenceDrop

    rising = [0.15 * (1 - math.exp(-t / 150)) for t in range(1, 701)]  # rises, then levels off
    rule = DivergenceDrop()
    assert not any(rule(t, s) for t, s in _divergence_states(rising)) and rule.stop_step is None
    with pytest.raises(ValueError, match="SURE"):
        DivergenceDrop()(1, FitState(1, 10, torch.zeros(1, 3, 4, 4), None, 0.01, 0.0, False, None))
    for bad in ({"fraction": 1.0}, {"alpha": 0.0}, {"warmup": 0}):
        with pytest.raises(ValueError):
            DivergenceDrop(**bad)


def test_divergence_drop_as_the_stop_of_a_real_sure_fit():
    import deepprior
    from deepprior.stopping import DivergenceDrop, auto_spec

    assert auto_spec("denoise", "denoise-sure") is None  # not a default: it stops whole photos early
    y = _noisy()[0].permute(1, 2, 0).numpy()
    rule = DivergenceDrop(warmup=2)
    res = deepprior.run_task("denoise", y, preset="denoise-sure", iters=5, rng=0, device="cpu", stop=rule)
    assert res.restoration.stop_rule is rule and res.restoration.fit.steps <= 5
    assert rule.peak is not None and rule.smoothed is not None


def test_a_rule_used_in_one_fit_starts_afresh_in_the_next():
    from deepprior.fitting import fit
    from deepprior.forward import Identity

    torch.manual_seed(0)
    rule = MaxIterations(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Sigmoid())
    first = fit(net, torch.rand(1, 3, 16, 16), Identity(), torch.zeros(1, 3, 16, 16), iters=10, stop=rule, ema=None)
    second = fit(net, torch.rand(1, 3, 8, 8), Identity(), torch.ones(1, 3, 8, 8), iters=10, stop=rule, ema=None)
    assert first.steps == second.steps == 3
    assert second.image.shape == (1, 3, 8, 8) and second.image.mean() > first.image.mean()


@pytest.mark.parametrize("rule", [WindowedVariance(50, 100), ExponentialVariance(0.1, 100),
                                  first_of(WindowedVariance(50, 100), MaxIterations(900))])
def test_a_loaded_state_goes_to_the_fits_device(rule):
    """A checkpoint is loaded on the CPU; the rule's tensors must follow the fit (here: to 'meta')."""
    for t, state in list(_sequence())[:120]:
        rule(t, state)
    rule.load_state_dict(rule.state_dict(), device="meta")
    rules = rule.rules if hasattr(rule, "rules") else [rule]
    tensors = [v for r in rules for v in vars(r).values() if isinstance(v, torch.Tensor)]
    tensors += [t for r in rules for v in vars(r).values() if isinstance(v, list) for t in v
                if isinstance(t, torch.Tensor)]
    assert tensors and all(t.device.type == "meta" for t in tensors)
