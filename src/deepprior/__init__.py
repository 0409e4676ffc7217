"""deepprior: Deep Image Prior restoration (Ulyanov, Vedaldi & Lempitsky, CVPR 2018).

Fit a randomly initialised convolutional network to one degraded image; its structure is the
prior.  No training data, no pretrained weights.

Task functions (numpy in -> numpy out, torch in -> torch out)::

    import deepprior
    clean = deepprior.denoise(noisy)                 # also deblock, super_resolve, inpaint

Building blocks for new inverse problems: :mod:`deepprior.networks` (generators),
:mod:`deepprior.forward` (forward models), :mod:`deepprior.fitting` (the fitting loop),
:mod:`deepprior.presets` (recipes), :mod:`deepprior.pipeline` (padding + wiring).

Attributes are imported on first use, so that ``import deepprior`` (and the CLI's ``--help``)
does not import torch.
"""

__version__ = "0.1.0"

# name -> module that defines it (an explicit table, looked up on first access)
_LAZY = {
    "denoise": "api",
    "deblock": "api",
    "super_resolve": "api",
    "inpaint": "api",
    "run_task": "api",
    "choose_preset": "api",
    "restore": "pipeline",
    "fit": "fitting",
    "FitState": "fitting",
    "FitResult": "fitting",
    "Preset": "presets",
    "PRESETS": "presets",
    "get_preset": "presets",
    "NetworkConfig": "networks",
    "SkipNet": "networks",
    "OriginNet": "networks",
    "build_network": "networks",
    "Identity": "forward",
    "Mask": "forward",
    "Downsampler": "forward",
    "Compose": "forward",
    "WindowedVariance": "stopping",
    "ExponentialVariance": "stopping",
    "BlockArtifacts": "stopping",
    "MaxIterations": "stopping",
    "DivergenceDrop": "stopping",
    "first_of": "stopping",
    "read_image": "io",
    "write_image": "io",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'deepprior' has no attribute {name!r}")


def __dir__():
    return __all__
