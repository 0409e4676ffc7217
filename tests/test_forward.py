import numpy as np
import pytest
import torch

from deepprior.forward import Compose, Downsampler, Identity, Mask, downsample, lanczos_kernel


def _known(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, 1, h, w, generator=g) > 0.5).float()


# every linear operator, with the shape of its input
OPERATORS = {
    "identity": (lambda: Identity(), (1, 3, 24, 16)),
    "mask": (lambda: Mask(_known(24, 16)), (1, 3, 24, 16)),
    "down-x2": (lambda: Downsampler(2), (1, 3, 24, 16)),
    "down-x4": (lambda: Downsampler(4), (1, 3, 32, 24)),
    "down-x8": (lambda: Downsampler(8), (1, 1, 64, 48)),
    "bicubic-x4": (lambda: Downsampler(4, kernel="bicubic"), (1, 3, 32, 24)),
    "lanczos3-x2": (lambda: Downsampler(2, kernel="lanczos3"), (1, 3, 24, 16)),
    "down-then-mask": (lambda: Compose(Downsampler(2), Mask(_known(12, 8))), (1, 3, 24, 16)),
}


@pytest.mark.parametrize("name", OPERATORS)
def test_shapes(name):
    make, shape = OPERATORS[name]
    A = make()
    y = A(torch.rand(shape))
    assert y.shape == A.measurement_shape(shape)


@pytest.mark.parametrize("name", OPERATORS)
def test_adjointness(name):
    make, shape = OPERATORS[name]
    A = make().double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = torch.rand(A.measurement_shape(shape), generator=g, dtype=torch.float64)
    lhs = (A(x) * y).sum()
    rhs = (x * A.adjoint(y, shape)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-10), (lhs.item(), rhs.item())


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("kernel", ["lanczos2", "lanczos3", "bicubic"])
def test_downsampler_maps_a_constant_image_to_the_same_constant(factor, kernel):
    x = torch.full((1, 3, 8 * factor, 5 * factor), 0.37)
    y = downsample(x, factor, kernel=kernel)
    assert y.shape == (1, 3, 8, 5)
    assert torch.allclose(y, torch.full_like(y, 0.37), atol=1e-6)


def test_lanczos_kernel_matches_the_reference_definition():
    k = lanczos_kernel(4)
    assert k.shape == (16, 16)  # 4 * factor + 1 taps, one fewer for phase 0.5
    assert np.isclose(k.sum(), 1.0)
    assert np.allclose(k, k.T) and np.allclose(k, k[::-1, ::-1])
    # the reference's 1-D taps: center = (17 + 1) / 2, d = |i + 0.5 - center| / 4 for i = 1..16
    d = np.abs(np.arange(1, 17) + 0.5 - 9.0) / 4
    v = 2 * np.sin(np.pi * d) * np.sin(np.pi * d / 2) / (np.pi**2 * d**2)
    assert np.allclose(k, np.outer(v, v) / np.outer(v, v).sum())


def test_odd_factors_are_refused():
    with pytest.raises(ValueError, match="factor"):
        Downsampler(3)


def test_mask_data_term_ignores_unknown_pixels():
    known = _known(16, 16)
    A = Mask(known)
    y = torch.rand(1, 3, 16, 16)
    x = torch.rand(1, 3, 16, 16)
    x2 = x + (1 - known) * 5.0  # change only the unknown pixels of the output ...
    y2 = y + (1 - known) * 7.0  # ... or of the measurement
    assert torch.allclose(A.data_term(x, y), A.data_term(x2, y2))
    y = y * known
    # and it is the mean over the known entries
    expected = ((x - y) ** 2 * known).sum() / (known.sum() * 3)
    assert torch.allclose(A.data_term(x, y), expected)


def test_mask_refuses_a_wrong_size():
    with pytest.raises(ValueError, match="mask"):
        Mask(_known(8, 8))(torch.rand(1, 3, 9, 8))


def test_shape_checks_name_the_expected_layout():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        Identity()(torch.rand(3, 8, 8))


def test_restore_takes_the_result_size_from_a_given_forward_model():
    from deepprior.pipeline import InputError, restore
    from deepprior.presets import get_preset

    p = get_preset("sr-x4-small").replace(iters=1)
    y = torch.rand(1, 3, 19, 23)
    r = restore(y, p, forward=Downsampler(2), rng=0, device="cpu")
    assert r.image.shape == (1, 3, 38, 46)
    with pytest.raises(InputError, match="not both"):
        restore(y, p, forward=Downsampler(2), scale=2, rng=0, device="cpu")
    with pytest.raises(InputError, match="not both"):
        restore(y, p, forward=Identity(), known=torch.ones(1, 1, 19, 23), rng=0, device="cpu")
