"""Test helpers: small crops of the test images in ../shared/data, PSNR, tiny presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def bomb_png(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width`` x ``height`` pixels (over Pillow's
    decompression-bomb limit for 20000 x 20000)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def crop(path, size, *, top=None, left=None, gray=False):
    """A float32 crop (H, W, C) in [0, 1] of an image in ../shared/data, centred by default."""
    import pytest

    from deepprior.io import read_image

    if not (DATA / path).is_file():
        pytest.skip(f"test image not found: {DATA / path}")
    img, _ = read_image(DATA / path)
    img = img[:, :, :1] if gray else img[:, :, :3]
    h, w = img.shape[:2]
    sh, sw = (size, size) if isinstance(size, int) else size
    t = (h - sh) // 2 if top is None else top
    l = (w - sw) // 2 if left is None else left
    return np.ascontiguousarray(img[t : t + sh, l : l + sw])


def small_preset(base: str, **changes):
    """A paper preset shrunk for tests: 4 levels of 32 channels."""
    from deepprior.networks import NetworkConfig
    from deepprior.presets import get_preset

    p = get_preset(base)
    n = p.network
    net = NetworkConfig(
        arch=n.arch,
        channels_down=(32,) * 4,
        channels_up=(32,) * 4,
        channels_skip=tuple(min(c, 4) if c else 0 for c in n.channels_skip[:4]),
        upsample=n.upsample,
        padding=n.padding,
    )
    return p.replace(name=p.name + "-test", network=net, **changes)
