"""The published figures the benchmarks are compared with (PSNR, dB).

Ulyanov, Vedaldi & Lempitsky, "Deep Image Prior", CVPR 2018 / IJCV 2020: super-resolution
(Set5 / Set14 averages), inpainting of 50 % missing pixels (the 11-image set of Heide et al.) and
colour denoising at sigma = 25 (with CBM3D on the same images).  The paper's figures are for whole
images with the paper's networks and iteration counts; the JPEG table is qualitative in the paper.

Keys: ``PER_IMAGE[(table, degradation, method)][image]`` and
``AVERAGES[(table, degradation, method)][dataset]``; images by file stem, methods as in the CSVs.
"""

from __future__ import annotations

PER_IMAGE: dict[tuple[str, str, str], dict[str, float]] = {
    ("inpaint", "p=0.5", "deepprior"): {
        "barbara": 32.22, "boat": 33.06, "house": 39.16, "Lena512": 36.16, "peppers256": 33.05,
        "Cameraman256": 29.8, "couple": 32.52, "fingerprint": 32.84, "hill": 32.77, "man": 32.20,
        "montage": 34.54,
    },
    ("denoise", "sigma=25", "deepprior"): {"F16_GT": 33.69, "baboon": 24.51, "lenna": 32.56, "pepper": 31.15},
    ("denoise", "sigma=25", "bm3d"): {"F16_GT": 32.67, "baboon": 26.01, "lenna": 32.06, "pepper": 30.75},
}

AVERAGES: dict[tuple[str, str, str], dict[str, float]] = {
    ("sr", "x4", "deepprior"): {"set5": 29.90, "set14": 27.00},
    ("sr", "x8", "deepprior"): {"set5": 25.89, "set14": 24.15},
    ("sr", "x4", "bicubic"): {"set5": 28.43, "set14": 26.05},
    ("inpaint", "p=0.5", "deepprior"): {"inpainting11": 33.48},
}


def paper_psnr(table: str, degradation: str, method: str, image: str) -> float | None:
    """The paper's per-image PSNR for this row, or None."""
    return PER_IMAGE.get((table, degradation, method), {}).get(image)


def paper_average(table: str, degradation: str, method: str, dataset: str) -> float | None:
    """The paper's dataset-average PSNR, or None."""
    return AVERAGES.get((table, degradation, method), {}).get(dataset)
