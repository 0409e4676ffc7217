"""Reading and writing image files.

Images are returned as float32 arrays of shape (H, W, C) in [0, 1] (C = 1 gray, 2 gray + alpha,
3 RGB, 4 RGBA) with an :class:`ImageInfo` that remembers the bit depth, the ICC profile and the
EXIF block, so that a result can be written back in kind: 16-bit in, 16-bit out (PNG, TIFF), the
ICC profile and EXIF kept where the format allows.  EXIF orientation is applied on read.

Writes are atomic (a temporary file in the same folder, then a rename): an interrupted run never
leaves a half-written image.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["read_image", "write_image", "ImageInfo", "ImageReadError", "atomic_write_bytes"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
                ".webp": "WEBP", ".bmp": "BMP"}


class ImageReadError(ValueError):
    """A file that is missing or is not a readable image."""


@dataclass
class ImageInfo:
    bits: int = 8  # 8 or 16 bits per channel
    icc_profile: bytes | None = None
    exif: bytes | None = None
    format: str | None = None


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, C) array."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return 0


def _read_png16(path: Path) -> np.ndarray:
    import png  # pypng: Pillow cannot hold 16-bit RGB

    w, h, rows, info = png.Reader(filename=str(path)).asDirect()
    arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, info["planes"])
    return arr


def read_image(path) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file.

    Returns
    -------
    image : ndarray (H, W, C) float32 in [0, 1]
    info : ImageInfo

    Raises
    ------
    ImageReadError
        When the file is missing or not an image Pillow (or pypng / tifffile for 16 bits) can read.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            fmt = im.format
            icc = im.info.get("icc_profile")
            exif = im.getexif()
            orientation = int(exif.get(0x0112, 1) or 1)
            if 0x0112 in exif:
                del exif[0x0112]
            exif_bytes = exif.tobytes() if len(exif) else None
            info = ImageInfo(bits=8, icc_profile=icc, exif=exif_bytes, format=fmt)
            arr = None
            if fmt == "PNG" and _png_bit_depth(path) == 16:
                arr, info.bits = _read_png16(path), 16
            elif fmt == "TIFF" and (im.mode.startswith("I;16") or im.mode in ("I", "RGB;16", "RGBA;16")):
                import tifffile

                arr, info.bits = tifffile.imread(path), 16
            elif im.mode.startswith("I;16") or im.mode == "I":
                arr, info.bits = np.asarray(im, dtype=np.int64).clip(0, 65535).astype(np.uint16), 16
            else:
                mode = im.mode
                if mode == "1":
                    im = im.convert("L")
                elif mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGB")
                elif mode == "PA":
                    im = im.convert("RGBA")
                elif mode not in ("L", "LA", "RGB", "RGBA"):
                    raise ImageReadError(f"{path}: unsupported image mode {mode}")
                arr = np.asarray(im)
    except Image.DecompressionBombError as e:  # a header claiming more pixels than Pillow will decode
        raise ImageReadError(f"{path}: too large to read ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageReadError):
            raise
        raise ImageReadError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"{path}: unsupported array shape {arr.shape}")
    if arr.dtype == np.uint16 and info.bits == 8:
        info.bits = 16
    scale = 65535.0 if info.bits == 16 else 255.0
    out = _orient(arr, orientation).astype(np.float32) / scale
    return out, info


def atomic_write_bytes(path, writer) -> None:
    """Call ``writer(tmp_path)`` then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # created as open() creates a file (mode 0o666 less the umask), not private as mkstemp's
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_image(path, image: np.ndarray, info: ImageInfo | None = None, *, bits: int | None = None) -> None:
    """Write an (H, W), (H, W, C) float array in [0, 1] atomically.

    The format follows the suffix.  ``bits`` (default: ``info.bits``, else 8) is honoured by PNG
    and TIFF; other formats are 8-bit.  The ICC profile and EXIF of ``info`` are kept where the
    format allows (PNG, JPEG, WebP, 8-bit TIFF).
    """
    from PIL import Image

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _PIL_FORMATS:
        raise ValueError(f"{path}: unsupported output format {suffix or '(none)'}; use one of {', '.join(IMAGE_SUFFIXES)}")
    fmt = _PIL_FORMATS[suffix]
    info = info or ImageInfo()
    bits = bits or info.bits
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr = np.clip(np.nan_to_num(arr), 0.0, 1.0)
    c = arr.shape[2]
    if fmt in ("JPEG", "BMP") and c in (2, 4):  # no alpha: drop it
        arr = arr[:, :, : c - 1]
        c -= 1
    if bits == 16 and fmt in ("PNG", "TIFF"):
        q = np.round(arr * 65535).astype(np.uint16)
        if fmt == "PNG":
            import png

            def _w(tmp):
                writer = png.Writer(q.shape[1], q.shape[0], bitdepth=16, greyscale=c <= 2, alpha=c in (2, 4))
                with open(tmp, "wb") as f:
                    writer.write(f, q.reshape(q.shape[0], -1))
        else:
            import tifffile

            def _w(tmp):
                tifffile.imwrite(tmp, q[:, :, 0] if c == 1 else q, photometric="minisblack" if c <= 2 else "rgb")

        atomic_write_bytes(path, _w)
        return
    q = np.round(arr * 255).astype(np.uint8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
    im = Image.fromarray(q[:, :, 0] if c == 1 else q)
    if im.mode != mode:
        im = im.convert(mode)
    kwargs = {}
    if info.icc_profile and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kwargs["icc_profile"] = info.icc_profile
    if info.exif and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kwargs["exif"] = info.exif
    if fmt == "JPEG":
        kwargs["quality"] = 95
    if fmt == "WEBP":
        kwargs["quality"] = 95
    atomic_write_bytes(path, lambda tmp: im.save(tmp, format=fmt, **kwargs))
