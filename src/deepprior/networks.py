"""Generator networks: the function ``f_theta`` that maps the fixed input ``z`` to an image.

Three architectures are offered, all built from a :class:`NetworkConfig`:

``skip``
    The encoder-decoder with skip connections of Ulyanov et al. (CVPR 2018), layer for layer as in
    the authors' ``models/skip.py``.  Every per-level option is exposed.  With the defaults (32 input
    channels, five levels of 128 channels, 4-channel 1x1 skips, 3x3 convolutions, bilinear
    upsampling, reflection padding) it has 2,217,831 parameters for 3 output channels.

``origin``
    ``PriorNet`` of the 2017 Chainer tutorial this project started from (``../shared/origin``):
    five down blocks, four 3x3 skip blocks, up blocks that normalise first and upsample last, zero
    padding.  With 32 input channels it has 2,884,819 parameters.

``decoder``
    A Deep Decoder (Heckel & Hand, ICLR 2019): no encoder, no skips, no 3x3 convolutions; its
    input is a small random tensor (``2 ** levels`` times smaller than the image) and each level is
    1x1 conv -> bilinear x2 -> ReLU -> BN.  Under-parameterised (64 channels, 5 levels: 25 k
    parameters), it is cheap per step.  Use :func:`decoder_config`.

A network needs an input whose height and width are a multiple of :func:`size_multiple` (and at
least :func:`min_size`); :mod:`deepprior.pipeline` pads images to that size and crops the result back.

Their BatchNorm layers are :class:`BatchNorm`: ``nn.BatchNorm2d`` with a faster route on a CPU for
the channel counts PyTorch's channels-last kernel runs slowly (the same results).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["NetworkConfig", "SkipNet", "OriginNet", "DecoderNet", "BatchNorm", "build_network", "decoder_config",
           "size_multiple", "min_size", "input_size"]


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of a generator network (one record, readable as data).

    Per-level options are tuples, shallowest level first; their common length is the number of
    levels.  The defaults are the paper's ``skip`` network (``get_net(..., 'skip', skip_n33d=128,
    skip_n33u=128, skip_n11=4, num_scales=5, upsample_mode='bilinear')``).
    """

    arch: str = "skip"  # "skip" (the paper's), "origin" (the Chainer tutorial's), "decoder" (Deep Decoder)
    channels_down: tuple[int, ...] = (128, 128, 128, 128, 128)  # encoder width per level
    channels_up: tuple[int, ...] = (128, 128, 128, 128, 128)  # decoder width per level
    channels_skip: tuple[int, ...] = (4, 4, 4, 4, 4)  # skip branch width per level; 0 = no skip
    filter_down: int = 3  # kernel size of encoder convolutions
    filter_up: int = 3  # kernel size of decoder convolutions
    filter_skip: int = 1  # kernel size of the skip branch convolution
    downsample: str = "stride"  # "stride" (stride-2 conv), "avg" or "max" (conv, then 2x2 pool)
    upsample: str = "bilinear"  # "bilinear" or "nearest", x2 per level
    activation: str = "leaky_relu"  # "leaky_relu" (slope 0.2), "relu", "elu" or "none"
    padding: str = "reflection"  # "reflection" or "zero"
    batchnorm: bool = True  # BatchNorm after every convolution (batch statistics, batch of 1)
    conv1x1_up: bool = True  # an extra 1x1 conv -> BN -> act at the end of each decoder level
    sigmoid: bool = True  # squash the output to (0, 1)
    bias: bool = True  # convolution biases
    # dropout before each decoder convolution (Self2Self, Quan et al. 2020: 0.3), zeroing that share
    # of its input's values at every step; 0: none (the paper's)
    dropout: float = 0.0

    def __post_init__(self):
        n = len(self.channels_down)
        if not (len(self.channels_up) == len(self.channels_skip) == n) or n < 1:
            raise ValueError(
                "channels_down, channels_up and channels_skip must have one (equal) length >= 1, "
                f"got {len(self.channels_down)}, {len(self.channels_up)}, {len(self.channels_skip)}"
            )
        for name, allowed in [
            ("arch", ("skip", "origin", "decoder")),
            ("downsample", ("stride", "avg", "max")),
            ("upsample", ("bilinear", "nearest")),
            ("activation", ("leaky_relu", "relu", "elu", "none")),
            ("padding", ("reflection", "zero")),
        ]:
            if getattr(self, name) not in allowed:
                raise ValueError(f"NetworkConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"NetworkConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def levels(self) -> int:
        return len(self.channels_down)


def size_multiple(config: NetworkConfig) -> int:
    """Height and width of the network's input must be a multiple of this (2 ** levels)."""
    return 2 ** config.levels


def min_size(config: NetworkConfig) -> int:
    """Smallest image side: the deepest level must be at least 2x2 for a 3x3 reflection pad
    (for the decoder: its input at least 2x2)."""
    return 2 ** (config.levels + 1)


def input_size(config: NetworkConfig, height: int, width: int) -> tuple[int, int]:
    """Spatial size of the input ``z`` for an output of ``height`` x ``width`` (sizes that are
    multiples of :func:`size_multiple`): the image's own size, or for the decoder ``2 ** levels``
    times smaller."""
    if config.arch == "decoder":
        return height // 2**config.levels, width // 2**config.levels
    return height, width


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


def _act(kind: str) -> nn.Module:
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "elu":
        return nn.ELU(inplace=True)
    return nn.Identity()


# BatchNorm on a CPU, channels-last: PyTorch's kernel vectorises over the channels and runs up to
# 2-5x slower per channel when their count is not a multiple of the vector width (16 floats): the
# paper's 4-channel skips, and the merges' 4 + 32, 4 + 64 or 4 + 128.  A few channels run faster
# through an NCHW copy; a merge runs as one BatchNorm per part (a BatchNorm is per channel, so the
# same function).  Measured, forward + backward: 4 + 32 channels at 128x128 1.9 -> 0.8 ms, 4 + 128
# at 256x256 17.8 -> 9.3 ms; whole fits 1.05-1.18x faster per step (python -m benchmarks.batchnorm;
# BENCHMARKS.md, "Speed: BatchNorm's channel counts").
_VECTOR = 16


def _slow_on_cpu(x: torch.Tensor) -> bool:
    """True for a CPU tensor in channels-last whose channel count PyTorch's BatchNorm runs slowly."""
    return (x.device.type == "cpu" and x.dim() == 4 and x.shape[1] % _VECTOR != 0
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())


class _CatChannelsLast(torch.autograd.Function):
    """``torch.cat(parts, 1)`` whose backward hands each part a channels-last gradient (a plain
    slice of the channels-last gradient is neither layout and sends BatchNorm's backward to a slow path)."""

    @staticmethod
    def forward(ctx, *parts):
        ctx.sizes = [p.shape[1] for p in parts]
        return torch.cat(parts, 1)

    @staticmethod
    def backward(ctx, grad):
        grads, start = [], 0
        for c in ctx.sizes:
            grads.append(grad[:, start:start + c].contiguous(memory_format=torch.channels_last))
            start += c
        return tuple(grads)


class BatchNorm(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters and state) that also normalises a concatenation given as
    its parts, ``bn([a, b]) == bn(torch.cat([a, b], 1))``, and takes a faster route on a CPU for
    channel counts PyTorch's channels-last kernel runs slowly (see ``_VECTOR``)."""

    def forward(self, x):
        parts = x if isinstance(x, (list, tuple)) else [x]
        # (torch.compile: its own kernels, and it cannot trace the parts' concatenation as written)
        if not self.training or torch.compiler.is_compiling() or not any(_slow_on_cpu(p) for p in parts):
            return super().forward(torch.cat(parts, 1) if len(parts) > 1 else parts[0])
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        outs, start = [], 0
        for p in parts:
            sl = slice(start, start + p.shape[1])
            start = sl.stop
            stats = (self.running_mean[sl], self.running_var[sl]) if self.track_running_stats else (None, None)
            few = p.shape[1] < _VECTOR  # a few channels: through an NCHW copy
            weight, bias = (self.weight[sl], self.bias[sl]) if self.affine else (None, None)
            y = nn.functional.batch_norm(p.contiguous() if few else p, *stats, weight, bias, True, momentum, self.eps)
            outs.append(y.contiguous(memory_format=torch.channels_last) if few else y)
        return _CatChannelsLast.apply(*outs) if len(outs) > 1 else outs[0]


def _norm(channels: int, enabled: bool) -> nn.Module:
    return BatchNorm(channels) if enabled else nn.Identity()


class _Cat(nn.Module):
    """A merge without BatchNorm: the concatenation of the parts."""

    def forward(self, parts):
        return torch.cat(parts, 1)


def _conv(cin: int, cout: int, k: int, *, stride: int = 1, bias: bool, padding: str, downsample: str = "stride"):
    """A convolution with 'same' padding, as the authors' ``conv()`` helper builds it.

    Reflection padding is a separate layer in front of an unpadded convolution.  With
    ``stride=2`` and ``downsample`` "avg" or "max", the convolution runs at stride 1 and a 2x2
    pooling layer follows (as in the reference code).
    """
    pool = None
    if stride == 2 and downsample in ("avg", "max"):
        pool = nn.AvgPool2d(2, 2) if downsample == "avg" else nn.MaxPool2d(2, 2)
        stride = 1
    pad = (k - 1) // 2
    layers: list[nn.Module] = []
    if padding == "reflection" and pad > 0:
        layers.append(nn.ReflectionPad2d(pad))
        pad = 0
    layers.append(nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=bias))
    if pool is not None:
        layers.append(pool)
    return layers


def _cba(cin, cout, k, cfg: NetworkConfig, *, stride=1):
    """conv -> BN -> activation."""
    return nn.Sequential(
        *_conv(cin, cout, k, stride=stride, bias=cfg.bias, padding=cfg.padding, downsample=cfg.downsample),
        _norm(cout, cfg.batchnorm),
        _act(cfg.activation),
    )


def _upsample(mode: str, align_corners: bool | None = None) -> nn.Module:
    if mode == "nearest":
        return nn.Upsample(scale_factor=2, mode="nearest")
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=bool(align_corners))


# ----------------------------------------------------------------------------------------------
# The paper's "skip" network
# ----------------------------------------------------------------------------------------------


class _SkipLevel(nn.Module):
    """One level of the skip network, holding the deeper levels inside it.

    ``skip`` = conv -> BN -> act (absent when the level has 0 skip channels);
    ``deeper`` = stride-2 conv -> BN -> act -> conv -> BN -> act -> (next level) -> x2 upsample;
    then concat(skip, deeper) -> BN -> conv -> BN -> act (-> 1x1 conv -> BN -> act).
    """

    def __init__(self, cfg: NetworkConfig, level: int, cin: int):
        super().__init__()
        cd, cu, cs = cfg.channels_down[level], cfg.channels_up[level], cfg.channels_skip[level]
        last = level == cfg.levels - 1
        self.skip = _cba(cin, cs, cfg.filter_skip, cfg) if cs > 0 else None
        self.down = nn.Sequential(
            _cba(cin, cd, cfg.filter_down, cfg, stride=2),
            _cba(cd, cd, cfg.filter_down, cfg),
        )
        self.inner = None if last else _SkipLevel(cfg, level + 1, cd)
        k = cd if last else cfg.channels_up[level + 1]
        self.up = _upsample(cfg.upsample)
        self.merge_norm = BatchNorm(cs + k) if cfg.batchnorm else _Cat()
        drop = [nn.Dropout(cfg.dropout)] if cfg.dropout else []
        merge = [*drop, _cba(cs + k, cu, cfg.filter_up, cfg)]
        if cfg.conv1x1_up:
            merge += [*drop, _cba(cu, cu, 1, cfg)]
        self.merge = nn.Sequential(*merge)

    def forward(self, x):
        deep = self.down(x)
        if self.inner is not None:
            deep = self.inner(deep)
        deep = self.up(deep)
        # the merge's BatchNorm takes the parts (the same as their concatenation; faster on a CPU)
        return self.merge(self.merge_norm([deep] if self.skip is None else [self.skip(x), deep]))


class SkipNet(nn.Module):
    """The paper's encoder-decoder with skip connections (see :class:`NetworkConfig`)."""

    def __init__(self, in_channels: int, out_channels: int, config: NetworkConfig | None = None):
        super().__init__()
        cfg = config or NetworkConfig()
        self.config = cfg
        self.body = _SkipLevel(cfg, 0, in_channels)
        self.head = nn.Sequential(*_conv(cfg.channels_up[0], out_channels, 1, bias=cfg.bias, padding=cfg.padding))
        self.out = nn.Sigmoid() if cfg.sigmoid else nn.Identity()

    def forward(self, z):
        return self.out(self.head(self.body(z)))


# ----------------------------------------------------------------------------------------------
# The 2017 Chainer tutorial's PriorNet
# ----------------------------------------------------------------------------------------------


class _OriginUp(nn.Module):
    """``UpsampleBlock``: BN -> conv-BN-act -> conv-BN-act (-> bilinear x2)."""

    def __init__(self, cin, cout, cfg, upsample=True):
        super().__init__()
        self.body = nn.Sequential(_norm(cin, cfg.batchnorm), _cba(cin, cout, 3, cfg), _cba(cout, cout, 3, cfg))
        # Chainer's F.resize_images (2017) interpolates with corner pixels aligned.
        self.up = _upsample(cfg.upsample, align_corners=True) if upsample else nn.Identity()

    def forward(self, x):
        return self.up(self.body(x))


class OriginNet(nn.Module):
    """``PriorNet`` from the Chainer tutorial this project began from (``../shared/origin``).

    Levels come from the config: ``channels_down`` gives the width of the down blocks (the
    tutorial's ``latent_dim``), ``channels_skip`` the width of the 3x3 skip blocks on all but the
    deepest level.  Use :func:`origin_config` for the tutorial's exact network.
    """

    def __init__(self, in_channels: int, out_channels: int, config: NetworkConfig | None = None):
        super().__init__()
        cfg = config or origin_config()
        self.config = cfg
        n = cfg.levels
        cd, cs = cfg.channels_down, cfg.channels_skip
        self.down = nn.ModuleList()
        cin = in_channels
        for i in range(n):
            self.down.append(nn.Sequential(_cba(cin, cd[i], 3, cfg, stride=2), _cba(cd[i], cd[i], 3, cfg)))
            cin = cd[i]
        self.skip = nn.ModuleList(_cba(cd[i], cs[i], 3, cfg) for i in range(n - 1))
        self.first_up = _upsample(cfg.upsample, align_corners=True)
        self.up = nn.ModuleList()
        cin = cd[n - 1]
        for i in reversed(range(n - 1)):
            self.up.append(_OriginUp(cin + cs[i], cd[i], cfg))
            cin = cd[i]
        self.last = _OriginUp(cin, cin, cfg, upsample=False)
        self.head = nn.Conv2d(cin, out_channels, 1, bias=cfg.bias)
        self.out = nn.Sigmoid() if cfg.sigmoid else nn.Identity()
        # Chainer's default initialiser for convolutions: LeCun normal weights, zero biases.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(fan_in))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, z):
        feats = []
        h = z
        for block in self.down:
            h = block(h)
            feats.append(h)
        h = self.first_up(feats[-1])
        for j, block in enumerate(self.up):
            i = len(self.skip) - 1 - j
            h = block(torch.cat([h, self.skip[i](feats[i])], dim=1))
        return self.out(self.head(self.last(h)))


# ----------------------------------------------------------------------------------------------
# Deep Decoder
# ----------------------------------------------------------------------------------------------


class DecoderNet(nn.Module):
    """Deep Decoder (Heckel & Hand 2019, ``decodernw`` of github.com/reinhardh/supplement_deep_decoder).

    ``channels_up[i]`` is the width of level ``i`` (input side first).  Level ``i``: 1x1 conv ->
    bilinear x2 -> ReLU -> BN; then one more 1x1 conv -> ReLU -> BN at full size, and a 1x1 conv to
    the output channels -> sigmoid.  Convolutions without bias, as in the reference.  The input has
    ``in_channels`` channels at 1 / 2**levels of the output size (see :func:`input_size`).
    """

    def __init__(self, in_channels: int, out_channels: int, config: NetworkConfig | None = None):
        super().__init__()
        cfg = config or decoder_config()
        self.config = cfg
        layers: list[nn.Module] = []
        cin = in_channels
        for width in cfg.channels_up:
            layers += [nn.Conv2d(cin, width, 1, bias=cfg.bias), _upsample(cfg.upsample), _act(cfg.activation),
                       _norm(width, cfg.batchnorm)]
            cin = width
        layers += [nn.Conv2d(cin, cin, 1, bias=cfg.bias), _act(cfg.activation), _norm(cin, cfg.batchnorm),
                   nn.Conv2d(cin, out_channels, 1, bias=cfg.bias)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Sigmoid() if cfg.sigmoid else nn.Identity()

    def forward(self, z):
        return self.out(self.body(z))


def decoder_config(width: int = 64, levels: int = 5, **changes) -> NetworkConfig:
    """A Deep Decoder of ``levels`` x2 upsamplings, ``width`` channels each (the paper's "k":
    its reference code defaults to 128; 64 is cheaper), ReLU, BN, bilinear, no biases."""
    base = dict(arch="decoder", channels_down=(0,) * levels, channels_up=(width,) * levels,
                channels_skip=(0,) * levels, activation="relu", upsample="bilinear", bias=False,
                filter_up=1, padding="zero")
    base.update(changes)
    return NetworkConfig(**base)


def origin_config(**changes) -> NetworkConfig:
    """The tutorial's PriorNet: 5 levels of 128, 4-channel 3x3 skips, zero padding, bilinear."""
    base = dict(
        arch="origin",
        channels_down=(128,) * 5,
        channels_up=(128,) * 5,
        channels_skip=(4,) * 5,
        padding="zero",  # Chainer's pad=1
        upsample="bilinear",
    )
    base.update(changes)
    return NetworkConfig(**base)


def build_network(config: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
    """Build the network a config describes (an explicit mapping, no registry)."""
    if config.arch == "origin":
        return OriginNet(in_channels, out_channels, config)
    if config.arch == "decoder":
        return DecoderNet(in_channels, out_channels, config)
    return SkipNet(in_channels, out_channels, config)
