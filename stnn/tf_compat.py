"""TensorFlow-1 compatible versions of the few ops where TF and PyTorch differ.

The authors trained STNeuroNet with TensorFlow 1.4 through NiftyNet 0.2.0.
Three of its ops give different numbers from their natural PyTorch
counterparts, so a faithful port needs them reproduced by hand:

* ``'SAME'`` padding with stride 2 pads *asymmetrically* (more at the end)
  when the total padding is odd, whereas PyTorch's ``padding=k // 2`` is
  symmetric;
* TF average pooling with ``'SAME'`` padding divides by the number of real
  (non-padded) cells of each window;
* ``tf.image.resize_images`` (TF-1, ``align_corners=False``) uses *legacy*
  coordinates ``src = dst * in / out`` without half-pixel centres, clamped at
  the upper border, unlike ``F.interpolate(..., align_corners=False)``.

All functions work on tensors laid out ``(N, C, *spatial)`` on any device and
are differentiable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .polyphase import polyphase_conv

__all__ = [
    "same_padding",
    "pad_same",
    "conv_same",
    "avg_pool_same",
    "legacy_resize_indices",
    "source_neighbours",
    "resize_linear_legacy",
]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Padding that TF-1 ``'SAME'`` applies to one axis.

    Parameters
    ----------
    size : int
        Input length along the axis.
    kernel : int
        Kernel (or pooling window) length.
    stride : int
        Stride.

    Returns
    -------
    (before, after) : tuple of int
        TF puts the odd extra cell at the *end*: e.g. a 3-tap stride-2 window
        on an even size pads (0, 1), a 5-tap one (1, 2).
    """
    if size < 1 or kernel < 1 or stride < 1:
        raise ValueError(f"size, kernel and stride must be >= 1, got {size}, {kernel}, {stride}")
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return before, total - before


def _as_tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"expected {n} values, got {len(value)}")
    return value


def pad_same(
    x: torch.Tensor, kernel: int | Sequence[int], stride: int | Sequence[int], value: float = 0.0
) -> torch.Tensor:
    """Pad the spatial axes of ``x`` (all axes after the first two) like TF ``'SAME'``.

    Parameters
    ----------
    x : torch.Tensor
        Tensor ``(N, C, *spatial)``.
    kernel, stride : int or sequence of int
        Per spatial axis, or one value for all.
    value : float
        Constant fill (TF convolutions pad with zeros).

    Returns
    -------
    torch.Tensor
        The padded tensor (``x`` itself when no padding is needed).
    """
    nd = x.dim() - 2
    kernel = _as_tuple(kernel, nd)
    stride = _as_tuple(stride, nd)
    pads: list[int] = []
    # F.pad takes (last-axis before, last-axis after, previous axis ...).
    for axis in reversed(range(nd)):
        pads.extend(same_padding(x.shape[2 + axis], kernel[axis], stride[axis]))
    if not any(pads):
        return x
    return F.pad(x, pads, mode="constant", value=value)


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def conv_same(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    tf_compat: bool = False,
) -> torch.Tensor:
    """N-d convolution with ``'SAME'`` output size ``ceil(size / stride)``.

    Parameters
    ----------
    x : torch.Tensor
        Input ``(N, C_in, *spatial)``, 1 to 3 spatial axes.
    weight : torch.Tensor
        PyTorch-layout kernel ``(C_out, C_in, *k)`` with odd ``k``.
    bias : torch.Tensor, optional
        ``(C_out,)``.
    stride : int
        Same stride on every spatial axis.
    tf_compat : bool
        If True, pad exactly like TF-1 (asymmetric for stride 2 on even
        sizes); otherwise use PyTorch's symmetric ``k // 2`` padding, which
        gives the same output *size* for odd kernels but shifts stride-2
        sampling by one cell.

    A stride-2 convolution of a one-channel bfloat16 input on the CPU runs
    as the equivalent stride-1 convolution of its polyphase components
    (:func:`stnn.polyphase.polyphase_conv`), which oneDNN runs 3.5x faster.

    Returns
    -------
    torch.Tensor
        ``(N, C_out, *ceil(spatial / stride))``.
    """
    nd = x.dim() - 2
    conv = _CONV[nd]
    ksize = tuple(weight.shape[2:])
    if any(k % 2 == 0 for k in ksize):
        raise ValueError(f"conv_same needs odd kernel sizes, got {ksize}")
    symmetric = tuple(k // 2 for k in ksize)
    if stride == 2 and x.shape[1] == 1 and x.dtype == torch.bfloat16 and x.device.type == "cpu":
        # The network's first convolution: oneDNN's bf16 kernels are slow on one input channel.
        before = [same_padding(n, k, 2)[0] for n, k in zip(x.shape[2:], ksize)] if tf_compat else symmetric
        return polyphase_conv(x, weight, bias, before)
    if stride == 1 or not tf_compat:
        # For stride 1 and odd kernels TF's 'SAME' padding is symmetric anyway.
        return conv(x, weight, bias, stride=stride, padding=symmetric)
    return conv(pad_same(x, ksize, stride), weight, bias, stride=stride, padding=0)


def avg_pool_same(
    x: torch.Tensor, kernel: int | Sequence[int], stride: int | Sequence[int], tf_compat: bool = True
) -> torch.Tensor:
    """Average pooling with ``'SAME'`` padding that excludes padded cells.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, *spatial)`` with 1 to 3 spatial axes.
    kernel, stride : int or sequence of int
        Window and stride per spatial axis.
    tf_compat : bool
        True: TF-1 asymmetric padding; each output is the mean of the real
        cells in its window (TF example: ``[1..6]``, k3 s2 -> ``[2, 4, 5.5]``).
        False: PyTorch's symmetric padding ``k // 2`` with
        ``count_include_pad=False`` (same output size for odd windows).

    Returns
    -------
    torch.Tensor
        ``(N, C, *ceil(spatial / stride))``.
    """
    nd = x.dim() - 2
    pool = _AVG_POOL[nd]
    kernel = _as_tuple(kernel, nd)
    stride = _as_tuple(stride, nd)
    if not tf_compat:
        return pool(x, kernel, stride, padding=tuple(k // 2 for k in kernel), count_include_pad=False)
    padded = pad_same(x, kernel, stride)
    if padded is x:
        return pool(x, kernel, stride)
    # Divide window sums by the number of real cells: pool a padded ones-map
    # the same way (one channel, broadcast over N and C).
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    count = pool(pad_same(ones, kernel, stride), kernel, stride)
    return pool(padded, kernel, stride) / count


def legacy_resize_indices(
    in_size: int, out_size: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights of TF-1 legacy linear resizing along one axis.

    ``src = dst * (in_size / out_size)``; the lower neighbour is ``floor(src)``,
    the upper one ``min(floor(src) + 1, in_size - 1)`` (clamped), the weight of
    the upper one ``src - floor(src)``.

    Parameters
    ----------
    in_size, out_size : int
        Axis lengths before and after resizing.
    device, dtype
        Where and in which float type to build the weights.

    Returns
    -------
    lo, hi : torch.Tensor
        ``int64`` indices ``(out_size,)``.
    frac : torch.Tensor
        Weight of ``hi``, ``(out_size,)``.
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be >= 1, got {in_size} -> {out_size}")
    # TF computes the scale in float32; float64 here gives identical indices
    # for the power-of-two ratios the network uses.
    scale = in_size / out_size
    return source_neighbours(torch.arange(out_size, dtype=torch.float64, device=device) * scale, in_size, dtype)


def source_neighbours(
    src: torch.Tensor, in_size: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(lo, hi, frac)`` of linear interpolation at the (non-negative) source coordinates ``src``.

    ``lo = floor(src)`` and ``hi = lo + 1``, both clamped to the last index;
    ``frac = src - lo`` is the weight of ``hi``, in ``dtype``.
    """
    lo = torch.floor(src).clamp_(max=in_size - 1)
    frac = (src - lo).to(dtype)
    lo = lo.to(torch.int64)
    hi = torch.clamp(lo + 1, max=in_size - 1)
    return lo, hi, frac


def resize_linear_legacy(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Separable (bi/tri)linear resize of the spatial axes with TF-1 legacy coordinates.

    Equivalent to NiftyNet's ``image_resize`` (two ``tf.image.resize_images``
    calls, ``align_corners=False``): linear interpolation is separable, so the
    axes are processed one after another.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, *spatial)``.
    size : sequence of int
        Output spatial size, one entry per spatial axis.

    Returns
    -------
    torch.Tensor
        ``(N, C, *size)``. Example (1-D): ``[0, 1, 2, 3]`` -> 8 gives
        ``[0, .5, 1, 1.5, 2, 2.5, 3, 3]``.
    """
    nd = x.dim() - 2
    size = _as_tuple(size, nd)
    for axis in range(nd):
        dim = 2 + axis
        n_in, n_out = x.shape[dim], size[axis]
        if n_in == n_out:
            continue
        lo, hi, frac = legacy_resize_indices(n_in, n_out, device=x.device, dtype=x.dtype)
        shape = [1] * x.dim()
        shape[dim] = n_out
        frac = frac.view(shape)
        a = x.index_select(dim, lo)
        b = x.index_select(dim, hi)
        x = torch.lerp(a, b, frac)
    return x
