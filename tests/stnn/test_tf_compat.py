"""TF-1 compatibility ops: the spec's hand-checked TF examples and independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stnn.tf_compat import avg_pool_same, conv_same, legacy_resize_indices, pad_same, resize_linear_legacy, same_padding


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (6, 3, 2, (0, 1)),  # 3^3 s2 on even sizes: 0 before / 1 after
        (144, 3, 2, (0, 1)),
        (144, 5, 2, (1, 2)),  # 5^3 s2 on even sizes: 1 before / 2 after
        (7, 3, 2, (1, 1)),  # odd size: symmetric
        (7, 5, 2, (2, 2)),
        (10, 3, 1, (1, 1)),  # stride 1: symmetric
        (61, 3, 2, (1, 1)),
        (1, 5, 2, (2, 2)),
    ],
)
def test_same_padding_formula(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    before, after = expected
    # Output length is always ceil(size / stride).
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)


def test_avg_pool_spec_example():
    x = torch.arange(1.0, 7.0).view(1, 1, 6)
    out = avg_pool_same(x, 3, 2, tf_compat=True)
    assert out.flatten().tolist() == pytest.approx([2.0, 4.0, 5.5])


def test_avg_pool_3d_excludes_padding_per_axis():
    x = torch.rand(2, 1, 6, 4, 8, dtype=torch.float64)
    out = avg_pool_same(x, 3, 2, tf_compat=True)
    assert out.shape == (2, 1, 3, 2, 4)
    # Independent reference: average of the real cells of each TF window.
    xn = x.numpy()
    ref = np.zeros(out.shape)
    for i in range(3):
        for j in range(2):
            for k in range(4):
                ref[:, :, i, j, k] = xn[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, 2 * k : 2 * k + 3].mean(
                    axis=(2, 3, 4)
                )
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12)


def test_avg_pool_native_mode_is_symmetric():
    x = torch.arange(1.0, 7.0).view(1, 1, 6)
    out = avg_pool_same(x, 3, 2, tf_compat=False)
    assert out.flatten().tolist() == pytest.approx([1.5, 3.0, 5.0])


def test_resize_spec_example():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 4)
    out = resize_linear_legacy(x, (8,))
    assert out.flatten().tolist() == pytest.approx([0, 0.5, 1, 1.5, 2, 2.5, 3, 3])
    # PyTorch's align_corners=False resize differs (half-pixel centres).
    native = F.interpolate(x, size=8, mode="linear", align_corners=False)
    assert not torch.allclose(native, out)


def test_resize_indices_downscale_and_clamp():
    lo, hi, frac = legacy_resize_indices(4, 3)
    # src = dst * 4/3 = 0, 1.333, 2.667
    assert lo.tolist() == [0, 1, 2]
    assert hi.tolist() == [1, 2, 3]
    np.testing.assert_allclose(frac.numpy(), [0, 1 / 3, 2 / 3], atol=1e-6)


def test_resize_trilinear_is_separable_product():
    x = torch.rand(1, 2, 3, 4, 5, dtype=torch.float64)
    out = resize_linear_legacy(x, (6, 8, 10))
    assert out.shape == (1, 2, 6, 8, 10)

    def matrix(n_in, n_out):
        lo, hi, frac = legacy_resize_indices(n_in, n_out, dtype=torch.float64)
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), lo.numpy()] += 1 - frac.numpy()
        m[np.arange(n_out), hi.numpy()] += frac.numpy()
        return m

    ref = np.einsum("at,bh,cw,nkthw->nkabc", matrix(3, 6), matrix(4, 8), matrix(5, 10), x.numpy())
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12)


def test_conv_same_stride2_matches_explicit_asymmetric_pad():
    torch.manual_seed(0)
    x = torch.rand(1, 2, 8, 6, 10, dtype=torch.float64)
    w = torch.rand(3, 2, 5, 5, 5, dtype=torch.float64)
    out = conv_same(x, w, stride=2, tf_compat=True)
    ref = F.conv3d(F.pad(x, (1, 2, 1, 2, 1, 2)), w, stride=2)
    assert out.shape == (1, 3, 4, 3, 5)
    torch.testing.assert_close(out, ref)
    native = conv_same(x, w, stride=2, tf_compat=False)
    assert native.shape == out.shape
    assert not torch.allclose(native, out)
    # Stride 1 is identical in both modes.
    torch.testing.assert_close(conv_same(x, w, stride=1, tf_compat=True), conv_same(x, w, stride=1))


def test_pad_same_noop_when_not_needed():
    x = torch.rand(1, 1, 7)
    assert pad_same(x, 1, 1) is x
