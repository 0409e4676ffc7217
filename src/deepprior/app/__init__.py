"""``deepprior app``: a local web app to restore one photo in the browser.

Upload an image, pick a task (denoise, JPEG artifacts, super-resolution x2/x4/x8, inpainting),
paint what to remove, and watch the fit live; stop it when the result looks right; download the
image and its JSON sidecar.

It is a page of our own (``static/``: one HTML file, plain JavaScript, CSS) served by the standard
library's HTTP server with a one-worker job queue (:mod:`deepprior.app.server`).  It needs nothing
beyond the package's own dependencies.  Importing this package does not import torch.
"""

from .server import make_server, serve

__all__ = ["make_server", "serve"]
