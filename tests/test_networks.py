import pytest
import torch
from torch import nn

from deepprior.networks import (DecoderNet, NetworkConfig, OriginNet, SkipNet, build_network, decoder_config,
                                input_size, min_size, size_multiple)
from deepprior.pipeline import restore
from deepprior.presets import PRESETS


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_paper_skip_network_has_the_papers_parameter_count():
    assert n_params(SkipNet(32, 3)) == 2_217_831


def test_origin_network_has_the_tutorials_parameter_count():
    assert n_params(OriginNet(32, 3)) == 2_884_819


def test_grayscale_gets_a_one_channel_head():
    net = SkipNet(32, 1)
    assert net(torch.rand(1, 32, 64, 64)).shape == (1, 1, 64, 64)


CONFIGS = {
    "paper-skip": NetworkConfig(),
    "origin": PRESETS["origin-tutorial"].network,
    "deblock": PRESETS["deblock-paper"].network,
    "hole": PRESETS["inpaint-hole-paper"].network,
    "text": PRESETS["inpaint-text-paper"].network,
    "avgpool-zero-pad": NetworkConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 0),
                                      downsample="avg", padding="zero", upsample="nearest"),
    "maxpool-no-bn-5x5": NetworkConfig(channels_down=(8, 8, 8), channels_up=(8, 8, 8), channels_skip=(2, 2, 2),
                                       downsample="max", batchnorm=False, filter_down=5, filter_up=5,
                                       conv1x1_up=False, activation="elu"),
    "decoder": decoder_config(16, 3),
    "dropout": NetworkConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(4, 4), dropout=0.3),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_every_network_restores_odd_sizes_to_the_input_size(name):
    from deepprior.presets import Preset

    cfg = CONFIGS[name]
    preset = Preset(name="t", task="denoise", description="", network=cfg, iters=1,
                    input="meshgrid" if name == "hole" else "noise", input_depth=2 if name == "hole" else 32,
                    jitter=0.0 if name == "decoder" else 1 / 30)
    y = torch.rand(1, 3, 37, 31)
    r = restore(y, preset, rng=0, device="cpu")
    assert r.image.shape == (1, 3, 37, 31)
    assert r.padded_size[0] % size_multiple(cfg) == 0 and min(r.padded_size) >= min_size(cfg)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_super_resolution_output_is_scale_times_the_input_on_odd_sizes(scale):
    from deepprior.presets import Preset

    cfg = NetworkConfig(channels_down=(8,) * 5, channels_up=(8,) * 5, channels_skip=(2,) * 5)
    preset = Preset(name="t", task="sr", description="", network=cfg, iters=1, ema=None)
    r = restore(torch.rand(1, 3, 37, 31), preset, scale=scale, rng=0, device="cpu")
    assert r.image.shape == (1, 3, 37 * scale, 31 * scale)


def test_build_network_picks_the_architecture():
    assert isinstance(build_network(NetworkConfig(arch="origin"), 32, 3), OriginNet)
    assert isinstance(build_network(decoder_config(), 64, 3), DecoderNet)
    assert isinstance(build_network(NetworkConfig(), 32, 3), SkipNet)


def test_bad_config_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="upsample"):
        NetworkConfig(upsample="bicubic")
    with pytest.raises(ValueError, match="one \\(equal\\) length"):
        NetworkConfig(channels_down=(8, 8), channels_up=(8,), channels_skip=(4,))
    with pytest.raises(ValueError, match="dropout"):
        NetworkConfig(dropout=1.0)


def test_deep_decoder_upsamples_a_small_input_with_1x1_convolutions():
    cfg = decoder_config(64, 5)
    net = build_network(cfg, 64, 3)
    # Heckel & Hand: k^2 weights per 1x1 layer, 2k BN parameters, k*3 for the output layer
    assert n_params(net) == 64 * 64 * 6 + 2 * 64 * 6 + 64 * 3
    assert all(m.kernel_size == (1, 1) for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    h, w = input_size(cfg, 96, 160)
    assert (h, w) == (3, 5)
    assert net(torch.rand(1, 64, h, w)).shape == (1, 3, 96, 160)
    assert input_size(NetworkConfig(), 96, 160) == (96, 160)


def test_channels_last_on_the_cpu_and_cuda_for_every_network_measured():
    from deepprior.pipeline import prefers_channels_last

    for dev in (torch.device("cpu"), torch.device("cuda")):
        for cfg in (PRESETS["denoise-paper"].network, PRESETS["denoise-small"].network, decoder_config(64, 5)):
            assert prefers_channels_last(cfg, dev)
    assert not prefers_channels_last(PRESETS["denoise-small"].network, torch.device("meta"))


@pytest.mark.parametrize("sizes", [(4, 32), (4,), (16, 20), (3, 5, 64)])
def test_batchnorm_of_parts_is_batchnorm_of_their_concatenation(sizes):
    # the CPU's faster route (parts one by one, a few channels through NCHW) changes no result:
    # outputs, gradients and running statistics as nn.BatchNorm2d's of the concatenation
    from deepprior.networks import BatchNorm

    gen = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    parts = [torch.randn(1, c, 37, 31, generator=gen).mul(2).add(1).contiguous(memory_format=cl) for c in sizes]
    grad = torch.randn(1, sum(sizes), 37, 31, generator=gen).contiguous(memory_format=cl)
    ours, ref = BatchNorm(sum(sizes)), nn.BatchNorm2d(sum(sizes))
    with torch.no_grad():
        for bn in (ours, ref):
            bn.weight.copy_(torch.linspace(0.5, 1.5, sum(sizes)))
            bn.bias.copy_(torch.linspace(-1, 1, sum(sizes)))
    results = []
    for bn, join in ((ours, list), (ref, lambda ps: torch.cat(ps, 1))):
        xs = [p.clone().requires_grad_() for p in parts]
        out = bn(join(xs))
        out.backward(grad)
        results.append((out, [x.grad for x in xs], bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var))
    (o1, g1, w1, b1, m1, v1), (o2, g2, w2, b2, m2, v2) = results
    assert o1.is_contiguous(memory_format=cl)
    torch.testing.assert_close(o1, o2, atol=1e-5, rtol=1e-5)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for a, b in ((w1, w2), (b1, b2), (m1, m2), (v1, v2)):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)
    assert int(ours.num_batches_tracked) == 1
    ours.eval()  # and in eval mode the running statistics, as nn.BatchNorm2d
    torch.testing.assert_close(ours(parts), ref.eval()(torch.cat(parts, 1)))


def test_skip_network_without_batchnorm_still_merges():
    net = build_network(NetworkConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(4, 4),
                                      batchnorm=False), 3, 3)
    assert net(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)
