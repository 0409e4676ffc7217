"""The ``--plot`` figure: loss and PSNR curves, and the input beside the result."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_fit"]


def _show(ax, img, title):
    img = np.clip(np.asarray(img), 0, 1)
    if img.ndim == 3 and img.shape[2] in (2, 4):
        img = img[:, :, :-1]
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")


def plot_fit(path, history: dict, before, after, *, title: str = "") -> None:
    """Write a PNG with the fit's curves (top) and ``before`` | ``after`` (bottom)."""
    # a Figure of its own, not pyplot's: no backend switched for the whole process (a notebook's
    # plots), nothing left open if writing fails
    from matplotlib.figure import Figure

    from .io import atomic_write_bytes

    fig = Figure(figsize=(10, 8), constrained_layout=True)
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.4])
    ax_loss = fig.add_subplot(grid[0, 0])
    ax_psnr = fig.add_subplot(grid[0, 1])
    steps = history.get("step", [])
    if steps:
        ax_loss.semilogy(steps, history["loss"], lw=0.8)
    ax_loss.set_xlabel("step")
    ax_loss.set_title("loss ||A(f(z)) - y||^2")
    for key, label in [
        ("psnr_measurement", "PSNR vs measurement"),
        ("psnr_reference", "PSNR vs reference (raw)"),
        ("psnr_average_reference", "PSNR vs reference (averaged)"),
    ]:
        if history.get(key):
            ax_psnr.plot(steps, history[key], lw=0.8, label=label)
    ax_psnr.set_xlabel("step")
    ax_psnr.set_ylabel("dB")
    ax_psnr.set_title("PSNR")
    if ax_psnr.lines:
        ax_psnr.legend(fontsize=8)
    _show(fig.add_subplot(grid[1, 0]), before, "input")
    _show(fig.add_subplot(grid[1, 1]), after, "result")
    if title:
        fig.suptitle(title)
    atomic_write_bytes(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
