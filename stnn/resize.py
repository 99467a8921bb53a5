"""Separable linear resizing of ``(N, C, *spatial)`` tensors, by index rule or by matrix products.

Every linear resize the network does (PyTorch's ``align_corners=False`` rule
or TF-1's legacy rule, :mod:`stnn.tf_compat`) is separable: each axis is a
blend of two neighbouring input cells, described by ``(lo, hi, frac)``. For
small axes the blend is fastest as a product with the dense ``(out, in)``
interpolation matrix: on two CPU cores, forward plus backward of a training
batch's skip features (3 x 24 x 30 x 16 x 16 to 60 x 32 x 32) took 4-7 ms as
three matrix products against 28-34 ms in ``F.interpolate``, whose CPU
backward scatters element by element. A dense matrix costs ``in`` products
per output cell instead of two, so long axes keep the index form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .tf_compat import legacy_resize_indices, resize_linear_legacy, source_neighbours

__all__ = ["MATMUL_MAX_AXIS", "linear_indices", "axis_indices", "interpolation_matrix", "resize", "resize_by_matmul"]

#: Longest input axis resized by matrix products (beyond it, the index form is faster).
MATMUL_MAX_AXIS = 128

Indices = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def linear_indices(in_size: int, out_size: int, device: torch.device | str | None, dtype: torch.dtype) -> Indices:
    """Source indices and upper weight of ``F.interpolate(linear, align_corners=False)`` along one axis.

    PyTorch's rule: ``src = max((dst + 0.5) * in / out - 0.5, 0)``, lower
    neighbour ``floor(src)``, upper one clamped to the last index. Returns
    ``(lo, hi, frac)`` laid out as :func:`~stnn.tf_compat.legacy_resize_indices` does.
    """
    src = (torch.arange(out_size, dtype=torch.float64, device=device) + 0.5) * (in_size / out_size) - 0.5
    return source_neighbours(src.clamp_(min=0.0), in_size, dtype)


def axis_indices(
    in_size: int, out_size: int, device: torch.device | str | None, dtype: torch.dtype, tf_compat: bool = False
) -> Indices:
    """``(lo, hi, frac)`` along one axis: TF-1's legacy rule if ``tf_compat``, else PyTorch's."""
    if tf_compat:
        return legacy_resize_indices(in_size, out_size, device=device, dtype=dtype)
    return linear_indices(in_size, out_size, device, dtype)


def interpolation_matrix(indices: Indices, in_size: int) -> torch.Tensor:
    """Dense ``(out, in)`` matrix ``M`` with ``M @ v`` = the linear resize of ``v`` by ``indices``."""
    lo, hi, frac = indices
    rows = torch.arange(lo.numel(), device=lo.device)
    m = torch.zeros((lo.numel(), in_size), dtype=frac.dtype, device=frac.device)
    m.index_put_((rows, lo), 1 - frac, accumulate=True)
    m.index_put_((rows, hi), frac, accumulate=True)
    return m


def resize_by_matmul(x: torch.Tensor, size: Sequence[int], tf_compat: bool = False) -> torch.Tensor:
    """Linear resize of the spatial axes of ``x`` as one matrix product per axis (differentiable).

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, *spatial)``.
    size : sequence of int
        Output spatial size.
    tf_compat : bool
        TF-1's legacy coordinates instead of PyTorch's (:func:`axis_indices`).

    Returns
    -------
    torch.Tensor
        ``(N, C, *size)`` in ``x``'s dtype (autocast does not apply: a float32
        input is resized in float32).
    """
    nd = x.dim() - 2
    with torch.autocast(x.device.type, enabled=False):
        for axis in range(nd):
            dim = 2 + axis
            n_in, n_out = x.shape[dim], int(size[axis])
            if n_in == n_out:
                continue
            indices = axis_indices(n_in, n_out, x.device, torch.float64, tf_compat)
            m = interpolation_matrix(indices, n_in).to(x.dtype)
            shape = list(x.shape)
            if dim == x.dim() - 1:
                x = (x.reshape(-1, n_in) @ m.T).view(*shape[:-1], n_out)
            else:
                x = torch.matmul(m, x.reshape(math.prod(shape[:dim]), n_in, math.prod(shape[dim + 1 :])))
                shape[dim] = n_out
                x = x.view(shape)
    return x


def resize(x: torch.Tensor, size: Sequence[int], tf_compat: bool = False) -> torch.Tensor:
    """Linear resize of the spatial axes of ``x``: matrix products for short axes, index form otherwise.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, *spatial)``, 1 to 3 spatial axes.
    size : sequence of int
        Output spatial size.
    tf_compat : bool
        TF-1 legacy coordinates (:func:`~stnn.tf_compat.resize_linear_legacy`)
        instead of ``F.interpolate(..., align_corners=False)``.

    Returns
    -------
    torch.Tensor
        ``(N, C, *size)``; ``x`` itself when the size is unchanged.
    """
    size = tuple(int(s) for s in size)
    if tuple(x.shape[2:]) == size:
        return x
    if max(x.shape[2:]) <= MATMUL_MAX_AXIS:
        return resize_by_matmul(x, size, tf_compat)
    if tf_compat:
        return resize_linear_legacy(x, size)
    mode = {3: "linear", 4: "bilinear", 5: "trilinear"}[x.dim()]
    return F.interpolate(x, size=size, mode=mode, align_corners=False)
