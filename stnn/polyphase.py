"""A stride-2 convolution of a one-channel input, computed on its polyphase components.

STNeuroNet's first convolution (5x5x5, stride 2, one input channel) is the
worst case for oneDNN in bfloat16: with a single input channel its kernels
cannot use the matrix units, and forward plus backward of a training batch
took 52 ms, against 15 ms for the equivalent form below. Splitting every
axis of the padded input into its even and odd samples gives ``2**d``
channels at half the size; the stride-2 convolution is then a stride-1
convolution of those channels with the kernel's taps regrouped the same way
(``ceil(k / 2)`` taps per phase, the missing tap of the odd phase zero). The
result is the same convolution, only the summation order differs. In
float32 the direct kernel is faster, so :func:`stnn.tf_compat.conv_same` uses
this for bfloat16 on the CPU only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["polyphase_conv"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def polyphase_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, before: Sequence[int]
) -> torch.Tensor:
    """Stride-2 convolution of a one-channel ``x`` with zero padding ``before`` each axis.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, 1, *spatial)``, 1 to 3 spatial axes.
    weight : torch.Tensor
        ``(C_out, 1, *k)`` with odd ``k``.
    bias : torch.Tensor, optional
        ``(C_out,)``.
    before : sequence of int
        Zero padding at the start of each spatial axis (``k // 2`` for
        PyTorch's symmetric padding; TF's ``'SAME'`` start padding otherwise).
        The end is padded as far as the output needs.

    Returns
    -------
    torch.Tensor
        ``(N, C_out, *ceil(spatial / 2))``: what ``conv(pad(x), weight,
        stride=2)`` gives with that padding.
    """
    nd = x.dim() - 2
    if x.shape[1] != 1 or weight.shape[1] != 1:
        raise ValueError(f"polyphase_conv needs one input channel, got {x.shape[1]}")
    ksize = tuple(weight.shape[2:])
    if any(k % 2 == 0 for k in ksize) or len(before) != nd:
        raise ValueError(f"polyphase_conv needs odd kernels and one padding per axis, got {ksize}, {before}")
    taps = [(k + 1) // 2 for k in ksize]
    halves = [(n + 1) // 2 + t - 1 for n, t in zip(x.shape[2:], taps)]  # phase length per axis
    pads: list[int] = []
    for axis in reversed(range(nd)):
        pads += [before[axis], 2 * halves[axis] - x.shape[2 + axis] - before[axis]]
    xp = F.pad(x, pads)
    n = x.shape[0]
    # (N, 1, 2a, 2b, ...) -> (N, 2, 2, ..., a, b, ...) -> (N, 2**d, a, b, ...): channel = phase.
    split = [n] + [v for h in halves for v in (h, 2)]
    order = [0] + [2 + 2 * i for i in range(nd)] + [1 + 2 * i for i in range(nd)]
    phases = xp.reshape(split).permute(order).reshape(n, 2**nd, *halves)
    # Kernel (C, 1, k...) -> zero-pad to even k+1 -> (C, 2**d, taps...), grouped like the input.
    c_out = weight.shape[0]
    wp = F.pad(weight, [0, 1] * nd)
    wsplit = [c_out] + [v for t in taps for v in (t, 2)]
    w_phases = wp.reshape(wsplit).permute(order).reshape(c_out, 2**nd, *taps)
    return _CONV[nd](phases, w_phases, bias)
