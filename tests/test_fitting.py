import math

import numpy as np
import pytest
import torch
from torch import nn

from deepprior.fitting import DivergenceError, fit, make_input
from deepprior.forward import ForwardModel, Identity
from deepprior.objectives import BlindSpot, Sure
from deepprior.networks import NetworkConfig, SkipNet
from deepprior.pipeline import restore
from deepprior.presets import Preset

TINY = NetworkConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))


def tiny_preset(**kw):
    base = dict(name="tiny", task="denoise", description="", network=TINY, iters=6)
    base.update(kw)
    return Preset(**base)


def test_same_seed_same_bytes_other_seed_differs():
    y = torch.rand(1, 3, 19, 23)
    a = restore(y, tiny_preset(), rng=5, device="cpu").image
    b = restore(y, tiny_preset(), rng=5, device="cpu").image
    c = restore(y, tiny_preset(), rng=6, device="cpu").image
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_seeding_leaves_the_global_torch_rng_alone():
    y = torch.rand(1, 1, 16, 16)
    before = torch.random.get_rng_state()
    restore(y, tiny_preset(iters=2), rng=0, device="cpu")
    assert torch.equal(torch.random.get_rng_state(), before)


def test_numpy_generator_is_accepted_as_rng():
    from deepprior.pipeline import resolve_seed

    assert resolve_seed(np.random.default_rng(0)) == resolve_seed(np.random.default_rng(0))
    with pytest.raises(TypeError):
        resolve_seed("seven")


def test_callback_sees_the_state_and_can_stop():
    seen = []

    def cb(step, state):
        seen.append((step, state.loss, state.psnr_measurement, state.output.shape, state.average is not None))
        return step == 3

    r = restore(torch.rand(1, 3, 20, 20), tiny_preset(iters=10), rng=0, device="cpu", callback=cb)
    assert r.fit.steps == 3 and r.fit.stop_reason == "callback"
    assert [s[0] for s in seen] == [1, 2, 3]
    step, loss, p, shape, has_avg = seen[-1]
    assert shape == (1, 3, 20, 20) and has_avg
    assert math.isclose(p, -10 * math.log10(loss))


def test_reference_psnr_is_computed_for_the_state():
    ref = torch.rand(1, 3, 20, 20)
    vals = []
    restore(ref.clone(), tiny_preset(iters=2), rng=0, device="cpu", reference=ref,
            callback=lambda s, st: vals.append((st.psnr_reference, st.psnr_average_reference)))
    assert all(isinstance(a, float) and isinstance(b, float) for a, b in vals)


def test_time_budget_stops_early():
    r = restore(torch.rand(1, 3, 16, 16), tiny_preset(iters=1000), rng=0, device="cpu", time_budget=0.0)
    assert r.fit.steps == 1 and r.fit.stop_reason == "time_budget"


def test_keyboard_interrupt_returns_the_result_so_far():
    def cb(step, state):
        if step == 2:
            raise KeyboardInterrupt

    r = restore(torch.rand(1, 3, 16, 16), tiny_preset(iters=50), rng=0, device="cpu", callback=cb)
    assert r.fit.interrupted and r.image.shape == (1, 3, 16, 16)
    assert torch.isfinite(r.image).all()


def test_a_preset_with_several_fits_returns_the_mean_of_the_fits_from_their_own_seeds():
    from deepprior.pipeline import FIT_SEED_STRIDE, InputError

    y = torch.rand(1, 3, 19, 23)
    r = restore(y, tiny_preset(fits=2), rng=5, device="cpu")
    one = [restore(y, tiny_preset(), rng=5 + FIT_SEED_STRIDE * k, device="cpu") for k in range(2)]
    assert torch.equal(r.members[0].image, one[0].image) and torch.equal(r.members[1].image, one[1].image)
    assert torch.allclose(r.image, (one[0].image + one[1].image) / 2)
    assert not torch.equal(one[0].image, one[1].image)  # two fits, not one twice
    assert r.fit.steps == 12 and r.seed == 5 and restore(y, tiny_preset(), rng=5, device="cpu").members == ()
    # steps counted per fit (as tiles: the CLI's progress), a time budget shared: each fit runs
    seen = []
    r = restore(y, tiny_preset(fits=2, iters=1000), rng=0, device="cpu", time_budget=0.0,
                callback=lambda step, state: seen.append(step))
    assert len(r.members) == 2 and seen == [1, 1] and r.fit.stop_reason == "time_budget"
    # a callback's stop (the app's cancel) ends them all
    calls = []
    r = restore(y, tiny_preset(fits=3, iters=5), rng=0, device="cpu",
                callback=lambda step, state: calls.append(step) or len(calls) == 7)  # the second fit's step 2
    assert len(r.members) == 2 and r.fit.steps == 7 and r.fit.stop_reason == "callback"
    assert torch.equal(r.image, r.members[0].image)  # the fit cut short is left out of the average

    def ctrl_c(step, state):
        calls.append(step)
        if len(calls) == 3:  # Ctrl-C in the third fit: the average of the two that ran to their end
            raise KeyboardInterrupt

    calls = []
    r = restore(y, tiny_preset(fits=3, iters=1), rng=0, device="cpu", callback=ctrl_c)
    assert len(r.members) == 3 and r.fit.stop_reason == "interrupted"
    assert torch.allclose(r.image, (r.members[0].image + r.members[1].image) / 2)
    with pytest.raises(InputError, match="cannot be checkpointed"):
        restore(y, tiny_preset(fits=2), rng=0, device="cpu", checkpoint=lambda state: None, checkpoint_every=2)
    with pytest.raises(ValueError, match="fits must be a positive integer"):
        tiny_preset(fits=0)


class _Spike(ForwardModel):
    """Identity, except that the output is ruined at the steps listed (to trigger backtracking)."""

    def __init__(self, bad_calls):
        super().__init__()
        self.calls = 0
        self.bad = set(bad_calls)

    def forward(self, x):
        self.calls += 1
        return x + 10.0 if self.calls in self.bad else x


def test_backtracking_restores_the_last_good_weights():
    torch.manual_seed(0)
    net = SkipNet(4, 3, TINY)
    z = make_input("noise", 4, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.rand(1, 3, 16, 16)
    A = _Spike({5})
    weights = {}

    def cb(step, state):
        weights[step] = [p.detach().clone() for p in net.parameters()]

    r = fit(net, z, A, y, iters=6, callback=cb, generator=torch.Generator().manual_seed(1))
    assert r.backtracks == 1

    def same(a, b):
        return all(torch.equal(u, v) for u, v in zip(weights[a], weights[b]))

    # step 5 was rejected: the weights went back to those that produced step 4's output (the
    # paper's snapshot is taken before the update), and step 5 made no update
    assert same(5, 3) and not same(4, 3) and not same(6, 5)


def test_a_loss_that_stays_non_finite_raises_an_error_naming_the_learning_rate():
    class NaNNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, z):
            return z[:, :3] * self.w * float("nan")

    z = torch.rand(1, 3, 8, 8)
    with pytest.raises(DivergenceError, match="learning rate"):
        fit(NaNNet(), z, Identity(), torch.rand(1, 3, 8, 8), iters=50, lr=0.01)


def test_meshgrid_input():
    z = make_input("meshgrid", 2, 5, 9)
    assert z.shape == (1, 2, 5, 9)
    assert z[0, 0, 0, 0] == 0 and z[0, 0, 0, -1] == 1 and z[0, 1, -1, 0] == 1
    with pytest.raises(ValueError):
        make_input("meshgrid", 3, 5, 9)


def test_a_new_inverse_problem_is_one_forward_model():
    """The README's example: deblurring by writing only a forward model."""

    class Blur(ForwardModel):
        def __init__(self, kernel):
            super().__init__()
            self.register_buffer("k", kernel[None, None])

        def forward(self, x):
            c = x.shape[1]
            return torch.nn.functional.conv2d(x, self.k.expand(c, 1, -1, -1), padding="same", groups=c)

    k = torch.ones(3, 3) / 9
    y = torch.rand(1, 3, 21, 18)
    r = restore(y, tiny_preset(iters=3), forward=Blur(k), rng=0, device="cpu")
    assert r.image.shape == y.shape and r.fit.steps == 3


def test_fused_adam_matches_the_loop():
    # the fitting loop uses Adam's fused kernel; it must compute the per-tensor loop's update.
    # Gradients are given (through a real network, rounding-level differences in near-zero
    # gradients, e.g. of a bias followed by BatchNorm, flip Adam's early sign-like steps).
    from deepprior.fitting import make_adam

    gen = torch.Generator().manual_seed(0)
    shapes = [(8, 4, 3, 3), (8,), (3, 8, 1, 1), (17,)]
    params = [[torch.randn(s, generator=gen) for s in shapes]]
    params.append([p.clone() for p in params[0]])
    optims = [make_adam(params[0], 0.01), torch.optim.Adam(params[1], lr=0.01, foreach=False, fused=False)]
    for _ in range(5):
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for ps, opt in zip(params, optims):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(*params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_copier_copies_a_mixed_dtype_state():
    from deepprior.fitting import _copier

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    live = list(net.state_dict(keep_vars=True).values())
    snapshot = [t.detach().clone() for t in live]
    assert {t.dtype for t in live} == {torch.float32, torch.int64}
    with torch.no_grad():
        for t in live:
            t.add_(1)
    _copier(live, snapshot)()
    for a, b in zip(live, snapshot):
        assert torch.equal(a, b)


def test_fused_adam_is_torchs_fused_adam_without_torch_optim():
    # deepprior.fitting.FusedAdam calls torch.optim.Adam(fused=True)'s kernel itself (torch.optim's
    # methods import torch._dynamo, ~1 s per process): the same numbers, a learning-rate change
    # between steps and a state_dict round trip included
    import subprocess
    import sys

    from deepprior.fitting import FusedAdam, make_adam

    gen = torch.Generator().manual_seed(0)
    shapes = [(8, 4, 3, 3), (8,), (3, 8, 1, 1), (17,)]
    params = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(3)]
    for ps in params[1:]:
        for p, q in zip(ps, params[0]):
            p.copy_(q)
    ours, theirs = make_adam(params[0], 0.01, (0.8, 0.9)), torch.optim.Adam(params[1], 0.01, (0.8, 0.9), fused=True)
    assert isinstance(ours, FusedAdam)
    for step in range(6):
        if step == 3:  # the cosine schedule's way; and a fresh optimiser resumed from the state
            for opt in (ours, theirs):
                opt.param_groups[0]["lr"] = 0.005
            resumed = make_adam(params[2], 0.01)
            for p, q in zip(params[2], params[0]):
                p.copy_(q)
            resumed.load_state_dict(ours.state_dict())
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for ps, opt in zip(params, [ours, theirs] + ([resumed] if step >= 3 else [])):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            opt.step()
            opt.zero_grad()
    assert all(p.grad is None for p in params[0])
    for a, b, c in zip(*params):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=0)
    # and a fit does not import torch._dynamo (what makes the CLI's start 1.3 s shorter)
    code = ("import sys, numpy as np, deepprior; deepprior.run_task('denoise', np.random.rand(16, 16, 3), "
            "preset='denoise-small', iters=2, device='cpu', stop='fixed'); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_a_presets_adam_betas_reach_the_optimiser(monkeypatch):
    # the fast presets shorten Adam's memories; the fit must build its optimiser with the preset's betas
    import deepprior.fitting

    built = []
    make_adam = deepprior.fitting.make_adam
    monkeypatch.setattr(deepprior.fitting, "make_adam", lambda *a: built.append(make_adam(*a)) or built[-1])
    y = torch.rand(1, 3, 17, 19)
    restore(y, tiny_preset(iters=2), rng=0, device="cpu")
    restore(y, tiny_preset(iters=2, betas=(0.8, 0.95)), rng=0, device="cpu")
    assert [opt.param_groups[0]["betas"] for opt in built] == [(0.9, 0.999), (0.8, 0.95)]
    with pytest.raises(ValueError, match="betas"):
        restore(y, tiny_preset(iters=1, betas=(0.9, 1.0)), rng=0, device="cpu")


def test_ema_warmup_fades_the_first_outputs_and_then_is_the_papers_average():
    from deepprior.fitting import ema_weight

    assert ema_weight(0.99, 1) == ema_weight(0.99, 5000) == 0.99  # the paper: constant
    w = [ema_weight(0.99, t, warmup=True) for t in range(1, 2000)]
    assert w[0] < 0.2 and all(a <= b for a, b in zip(w, w[1:])) and w[-1] == 0.99
    # weight left on the first output after 100 steps: the paper's 0.99**99 = 37 %, warm-up < 1 %
    left = 1.0
    for t in range(2, 101):
        left *= ema_weight(0.99, t, warmup=True)
    assert left < 0.01 < 0.99**99


def test_the_jitter_does_not_depend_on_the_memory_format():
    # the jitter is drawn into an NCHW buffer (torch's normal_ is 5x slower on a channels-last
    # one); a channels-last z must get the same jitter, and keep its memory format
    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))
            self.seen = []

        def forward(self, x):
            self.seen.append(x.detach().clone())
            return x[:, :3] * self.w

    z = torch.rand(1, 8, 9, 11)
    seen = []
    for zz in (z, z.contiguous(memory_format=torch.channels_last)):
        net = Recorder()
        fit(net, zz, Identity(), torch.rand(1, 3, 9, 11), iters=3, ema=None, backtrack=False,
            generator=torch.Generator().manual_seed(3))
        seen.append(net.seen)
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x in seen[1])
    for a, b in zip(*seen, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cuda_graph_needs_cuda_and_fp32():
    net = SkipNet(4, 3, TINY)
    z = make_input("noise", 4, 16, 16)
    with pytest.raises(ValueError, match="cuda_graph"):
        fit(net, z, Identity(), torch.rand(1, 3, 16, 16), iters=1, cuda_graph=True)
    assert "forward" not in net.__dict__


def _assert_graph_matches_eager(eager, graphed):
    """The first step (the same weights: the forward alone) agrees to float rounding; later steps as
    closely as two eager fits on a GPU agree.  Those are not bit-identical: cuDNN and the backward of
    reflection padding and bilinear upsampling accumulate in a varying order, and Adam's first steps
    (about lr per weight whatever the gradient's size) amplify the rounding.  Measured on an H100
    (python -m benchmarks.gpu_graphs; results/gpu/graphs.json), over 3 steps of these fits two eager
    runs differed by up to 5.6e-4 in loss and 0.034 in image RMSE, graph and eager by as much."""
    le, lg = eager.history["loss"], graphed.history["loss"]
    assert abs(le[0] - lg[0]) <= 1e-5 * le[0], (le[0], lg[0])
    torch.testing.assert_close(le, lg, rtol=3e-3, atol=0)
    rmse = float((eager.image - graphed.image).pow(2).mean().sqrt())
    assert rmse < 0.1, f"graphed and eager images differ by RMSE {rmse:.3g}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backtrack_at", [None, 2])
def test_cuda_graph_fit_matches_the_eager_fit_and_gives_the_network_back(backtrack_at):
    # The graphed network runs the eager network's kernels (tolerances: _assert_graph_matches_eager).
    # A rejected step (backtracking) is covered too; the network gets its own forward back.
    runs = []
    for graph in (False, True):
        torch.manual_seed(0)
        net = SkipNet(4, 3, TINY).cuda()
        z = make_input("noise", 4, 48, 32, generator=torch.Generator().manual_seed(0)).cuda()
        y = torch.rand(1, 3, 48, 32, generator=torch.Generator().manual_seed(2)).cuda()
        A = Identity() if backtrack_at is None else _Spike({backtrack_at})
        r = fit(net, z, A, y, iters=3, ema=None, generator=torch.Generator("cuda").manual_seed(1), cuda_graph=graph)
        runs.append(r)
        assert "forward" not in net.__dict__
        assert r.backtracks == (0 if backtrack_at is None else 1)
    _assert_graph_matches_eager(*runs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["sure", "blindspot"])
def test_cuda_graph_sure_and_blindspot_fits_match_the_eager_fit(kind):
    # a SURE fit runs the network on a batch of two (the input and its perturbation), also graphed;
    # no averaging, so the image is the final pass, also a batch of two.  A blind-spot fit feeds the
    # network the shown pixels and their mask (C + 1 channels).
    from deepprior.forward import Mask

    runs = []
    for graph in (False, True):
        torch.manual_seed(0)
        y = torch.rand(1, 3, 48, 32, generator=torch.Generator().manual_seed(2)).cuda()
        if kind == "sure":
            net, A, kw = SkipNet(3, 3, TINY).cuda(), Identity(), dict(ema=None, objective=Sure(0.1))
        else:
            known = (torch.rand(1, 1, 48, 32, generator=torch.Generator().manual_seed(3)) < 0.5).float().cuda()
            net, A, kw = SkipNet(4, 3, TINY).cuda(), Mask(known), dict(backtrack=False, objective=BlindSpot(0.8))
        r = fit(net, y.clone(), A, y, iters=3, jitter=0.0, generator=torch.Generator("cuda").manual_seed(1),
                cuda_graph=graph, **kw)
        runs.append(r)
        assert "forward" not in net.__dict__
    _assert_graph_matches_eager(*runs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_sure_fit_on_cuda_runs_without_tf32_below_its_step_and_puts_the_setting_back():
    y = torch.rand(1, 3, 48, 32, generator=torch.Generator().manual_seed(2)).cuda()
    before = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        for eps, tf32 in ((1e-3, False), (1e-2, True)):
            seen = []
            fit(SkipNet(3, 3, TINY).cuda(), y.clone(), Identity(), y, iters=2, jitter=0.0, ema=None,
                objective=Sure(0.1, eps), cuda_graph=True,
                callback=lambda step, state: seen.append(torch.backends.cudnn.allow_tf32))
            assert seen == [tf32, tf32] and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = before


def test_sure_keeps_tf32_only_from_its_minimum_step_and_only_on_cuda():
    from deepprior.fitting import SURE_TF32_MIN_EPSILON, _sure_needs_full_fp32

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert _sure_needs_full_fp32(cuda, 1e-3) and not _sure_needs_full_fp32(cuda, SURE_TF32_MIN_EPSILON)
    assert not _sure_needs_full_fp32(cpu, 1e-3)


def test_learning_rate_decays_by_a_cosine_and_then_stays():
    from deepprior.fitting import learning_rate

    assert learning_rate(1, 0.02, 0.001, 100) == pytest.approx(0.02)
    assert learning_rate(100, 0.02, 0.001, 100) == pytest.approx(0.001)
    assert learning_rate(5000, 0.02, 0.001, 100) == 0.001
    mid = learning_rate(50, 0.02, 0.001, 99)  # halfway: the mean of the two
    assert mid == pytest.approx(0.0105)
    rates = [learning_rate(s, 0.02, 0.001, 100) for s in range(1, 101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert learning_rate(7, 0.01, None, 0) == 0.01  # no decay: the paper's constant rate


def test_fit_applies_the_learning_rate_decay():
    seen = []
    net = SkipNet(4, 3, TINY)
    z = make_input("noise", 4, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.rand(1, 3, 16, 16)
    # the optimiser is internal: read its rate back through Adam's effect, a step of ~lr per weight
    before = [p.detach().clone() for p in net.parameters()]

    def cb(step, state):
        seen.append(max(float((p.detach() - b).abs().max()) for p, b in zip(net.parameters(), before)))
        before[:] = [p.detach().clone() for p in net.parameters()]

    fit(net, z, Identity(), y, iters=6, lr=0.02, lr_final=0.002, lr_decay_steps=4, callback=cb, backtrack=False,
        generator=torch.Generator().manual_seed(1))
    # Adam's first steps move each weight by about lr (its update is ~sign(gradient) at first)
    assert seen[0] == pytest.approx(0.02, rel=0.05)
    assert seen[-1] == pytest.approx(0.002, rel=0.3)


def test_jitter_level_rises_linearly_then_holds():
    from deepprior.fitting import jitter_level

    assert jitter_level(1, 0.04, 4) == pytest.approx(0.01)
    assert jitter_level(2, 0.04, 4) == pytest.approx(0.02)
    assert jitter_level(4, 0.04, 4) == pytest.approx(0.04)
    assert jitter_level(9, 0.04, 4) == pytest.approx(0.04)
    assert jitter_level(1, 0.04, 0) == 0.04  # no warm-up: the paper's constant jitter


@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_fit_draws_the_jitter_at_its_warm_up_level(kind):
    class Spy(nn.Module):  # records the jitter it is fed, and fits y through a 1x1 convolution
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 1)
            self.seen = []

        def forward(self, x):
            self.seen.append(float((x - z).std()))
            return self.conv(x)

    net = Spy()
    z = torch.zeros(1, 2, 64, 64)
    y = torch.rand(1, 3, 64, 64)
    fit(net, z, Identity(), y, iters=8, jitter=0.1, jitter_kind=kind, jitter_warmup=4, backtrack=False, ema=None,
        generator=torch.Generator().manual_seed(0))
    seen = net.seen[:8]  # the steps' passes (a last pass without jitter may follow)
    # the spread of 8192 draws is proportional to the level (std = level, or level / sqrt(12) for uniform)
    assert [s / seen[-1] for s in seen] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 1, 1], rel=0.05)
    with pytest.raises(ValueError, match="jitter_warmup"):
        fit(net, z, Identity(), y, iters=1, jitter_warmup=-1)
