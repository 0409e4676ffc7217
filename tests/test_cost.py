"""Cost estimates (deepprior.cost), the memory check before a fit, and bfloat16 precision."""

import numpy as np
import pytest
import torch

from deepprior.cost import estimate
from deepprior.networks import NetworkConfig, build_network, size_multiple
from deepprior.pipeline import InputError, bf16_native, resolve_precision, restore
from deepprior.presets import get_preset

SMALL = NetworkConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))


def _step_flops_and_saved(net, size):
    """The flops and saved-tensor bytes of one real training step at ``size``."""
    from torch.utils.flop_counter import FlopCounterMode

    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    z = torch.rand(1, 32, size, size)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), FlopCounterMode(display=False) as c:
        net(z).square().mean().backward()
    return c.get_total_flops(), sum(storages.values())


@pytest.mark.parametrize("preset", ["denoise-small", "denoise-paper"])
def test_estimate_scales_the_probe_exactly(preset):
    """Flops and saved activations are linear in the pixels: the 64x64 probe, scaled, equals a
    direct count of a real step at 192x192 (saved bytes within 2 %: the padding border is only
    nearly linear)."""
    cfg = get_preset(preset).network
    net = build_network(cfg, 32, 3)
    e = estimate(net, 32, 3, 192, 192, multiple=size_multiple(cfg))
    flops, saved = _step_flops_and_saved(build_network(cfg, 32, 3), 192)
    assert e.gflop_per_step * 1e9 == pytest.approx(flops, rel=1e-6)
    from deepprior.cost import TRANSIENT

    assert e.activation_bytes / TRANSIENT == pytest.approx(saved, rel=0.02)
    assert e.parameters == sum(p.numel() for p in net.parameters())
    assert e.bytes > e.activation_bytes > 0


def test_estimate_matches_the_known_paper_figure():
    """The paper network's step at 256x256: 115.0 GFLOP (FlopCounterMode on a full step)."""
    cfg = get_preset("denoise-paper").network
    e = estimate(build_network(cfg, 32, 3), 32, 3, 256, 256, multiple=size_multiple(cfg))
    assert e.gflop_per_step == pytest.approx(115.0, abs=0.1)


def test_a_fit_that_does_not_fit_in_memory_is_refused_before_it_starts(monkeypatch):
    import deepprior.pipeline as pipeline

    monkeypatch.setattr(pipeline, "available_bytes", lambda dev: 1000)
    y = torch.rand(1, 3, 31, 37)
    seen = []
    with pytest.raises(InputError, match="GiB of memory.*free"):
        restore(y, get_preset("denoise-small").replace(iters=2), rng=0, device="cpu", announce=seen.append)
    assert seen and seen[0].pixels >= 31 * 37  # announced before refusing
    r = restore(y, get_preset("denoise-small").replace(iters=2), rng=0, device="cpu", check_memory=False)
    assert r.estimate is not None and r.fit.steps == 2


def test_resolve_precision():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) == ("bf16" if bf16_native(cpu) else "fp32")
    assert resolve_precision("bf16", torch.device("meta")) == "fp32"  # not native there: fp32
    with pytest.raises(ValueError):
        resolve_precision("fp16", cpu)


@pytest.mark.skipif(not bf16_native(torch.device("cpu")), reason="bfloat16 is not native on this CPU")
def test_bf16_fit_denoises_about_as_well_as_fp32():
    """On a small real crop the bf16 fit's PSNR is within 0.5 dB of fp32's, and both beat the input."""
    from helpers import crop, psnr

    import deepprior

    clean = crop("paper/denoising/F16_GT.png", 48)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
    out = {p: deepprior.denoise(noisy, preset="denoise-small", iters=300, rng=0, device="cpu", stop="fixed",
                                precision=p) for p in ("fp32", "bf16")}
    assert psnr(out["bf16"], clean) > psnr(noisy, clean) + 2
    assert abs(psnr(out["bf16"], clean) - psnr(out["fp32"], clean)) < 0.5
