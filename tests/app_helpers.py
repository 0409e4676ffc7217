"""Helpers for the web app tests: a test image, PNG bytes, and an app server on a free port."""

from __future__ import annotations

import base64
import contextlib
import io
import threading

import numpy as np
from PIL import Image

#: The rows of the white scratch across the test image (painted over in the inpainting tests).
SCRATCH = slice(22, 25)


def scratched_image(size: int = 48) -> np.ndarray:
    """A smooth colour gradient (size x size, uint8 RGB) with a white scratch across rows 22-24."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    img = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.8 - 0.5 * xx * yy], axis=-1)
    img[SCRATCH] = 1.0
    return np.round(img * 255).astype(np.uint8)


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


@contextlib.contextmanager
def app_server(**limits):
    """A running app on 127.0.0.1 and a free port (jobs on the CPU); yields the server."""
    from deepprior.app.server import make_server

    server = make_server("127.0.0.1", 0, "cpu", **limits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
