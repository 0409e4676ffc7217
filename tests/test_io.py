import numpy as np
import pytest
from PIL import Image

from deepprior.io import ImageReadError, read_image, write_image


def test_16bit_rgb_png_round_trips_at_16_bits(tmp_path):
    import png

    arr = (np.random.default_rng(0).random((7, 5, 3)) * 65535).astype(np.uint16)
    path = tmp_path / "in16.png"
    with open(path, "wb") as f:
        png.Writer(5, 7, bitdepth=16, greyscale=False).write(f, arr.reshape(7, -1))
    img, info = read_image(path)
    assert info.bits == 16 and img.shape == (7, 5, 3)
    assert np.array_equal(np.round(img * 65535).astype(np.uint16), arr)
    write_image(tmp_path / "out16.png", img, info)
    back, info2 = read_image(tmp_path / "out16.png")
    assert info2.bits == 16 and np.array_equal(back, img)


def test_16bit_gray_png_and_tiff(tmp_path):
    arr = (np.random.default_rng(1).random((6, 9)) * 65535).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    img, info = read_image(tmp_path / "g16.png")
    assert info.bits == 16 and img.shape == (6, 9, 1)
    write_image(tmp_path / "g16.tif", img, info)
    back, info2 = read_image(tmp_path / "g16.tif")
    assert info2.bits == 16 and np.allclose(back, img)


def test_8bit_formats_round_trip(tmp_path):
    arr = (np.random.default_rng(2).random((8, 6, 3)) * 255).astype(np.uint8)
    for suffix in (".png", ".tif", ".bmp", ".webp"):
        p = tmp_path / f"a{suffix}"
        write_image(p, arr / 255.0)
        img, info = read_image(p)
        assert img.shape == (8, 6, 3) and info.bits == 8
        if suffix != ".webp":
            assert np.array_equal(np.round(img * 255).astype(np.uint8), arr)


def test_exif_orientation_is_applied_and_icc_is_kept(tmp_path):
    arr = np.zeros((4, 6, 3), np.uint8)
    arr[0, 0] = 255  # top-left marker
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    icc = b"fake-icc-profile"
    im.save(tmp_path / "o.jpg", exif=exif.tobytes(), icc_profile=icc, quality=100)
    img, info = read_image(tmp_path / "o.jpg")
    assert img.shape == (6, 4, 3)  # rotated
    assert img[0, -1].mean() > 0.5  # the marker went to the top-right corner
    assert info.icc_profile == icc
    write_image(tmp_path / "o.png", img, info)
    with Image.open(tmp_path / "o.png") as back:
        assert back.info.get("icc_profile") == icc
        assert back.getexif().get(0x0112) is None  # orientation already applied, not applied twice


def test_rgba_and_gray_alpha(tmp_path):
    arr = (np.random.default_rng(3).random((5, 5, 4)) * 255).astype(np.uint8)
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    img, _ = read_image(tmp_path / "a.png")
    assert img.shape == (5, 5, 4)


def test_unreadable_and_missing_files_raise_a_clear_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("this is not an image")
    with pytest.raises(ImageReadError, match="not a readable image"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_writes_are_atomic(tmp_path, monkeypatch):
    p = tmp_path / "x.png"
    write_image(p, np.zeros((4, 4)))
    before = p.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(RuntimeError):
        write_image(p, np.ones((4, 4)))
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["x.png"]  # no temporary file left behind


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    from deepprior.io import write_image

    old = os.umask(0o022)
    try:
        write_image(tmp_path / "out.png", np.zeros((4, 5), np.float32))
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.png").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
