"""The fit's objective is pluggable (deepprior.objectives): a custom one is honoured."""

import pytest
import torch

from deepprior.fitting import fit, make_input
from deepprior.forward import Identity
from deepprior.networks import NetworkConfig, SkipNet
from deepprior.objectives import DataTerm, Objective, Scored

TINY = NetworkConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))


def _fit(objective=None, steps=25, **kw):
    torch.manual_seed(0)
    net = SkipNet(4, 1, TINY)
    z = make_input("noise", 4, 20, 28, generator=torch.Generator().manual_seed(1))
    y = torch.rand(1, 1, 20, 28, generator=torch.Generator().manual_seed(2))
    return fit(net, z, Identity(), y, iters=steps, objective=objective, ema=None,
               generator=torch.Generator().manual_seed(3), **kw).image


class MyDataTerm(Objective):
    """The data term, written as a user would."""

    def step(self, run, net_in, step, generator):
        out = run(net_in)
        loss = (out - self.y).pow(2).mean()
        return Scored(out, loss, float(loss.item()))


class Smooth(DataTerm):
    """The data term plus a heavy total-variation penalty."""

    def step(self, run, net_in, step, generator):
        scored = super().step(run, net_in, step, generator)
        o = scored.out
        tv = (o[..., 1:, :] - o[..., :-1, :]).abs().mean() + (o[..., :, 1:] - o[..., :, :-1]).abs().mean()
        return scored._replace(objective=scored.objective + 1.0 * tv)


def _tv(x):
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())


def test_a_custom_objective_equal_to_the_data_term_gives_the_same_bytes():
    assert torch.equal(_fit(), _fit(MyDataTerm()))


def test_a_custom_objective_is_what_the_fit_minimises():
    # fitting noise: the plain data term makes a rough image, a heavy TV penalty a smooth one
    assert _tv(_fit(Smooth(), steps=60)) < 0.5 * _tv(_fit(steps=60))


def test_restore_takes_an_objective_with_an_mse_preset_only():
    from deepprior.pipeline import InputError
    from deepprior.pipeline import restore
    from deepprior.presets import Preset

    y = torch.rand(1, 1, 21, 27, generator=torch.Generator().manual_seed(0))
    tiny = Preset(name="tiny", task="denoise", description="", network=TINY, iters=80, ema=None)
    smooth = restore(y, tiny, rng=0, device="cpu", objective=Smooth()).image
    plain = restore(y, tiny, rng=0, device="cpu").image
    assert smooth.shape == plain.shape == y.shape and _tv(smooth) < 0.5 * _tv(plain)
    with pytest.raises(InputError, match="its own objective"):
        restore(y, "denoise-sure-fast", rng=0, device="cpu", objective=Smooth(), sigma=0.1)
