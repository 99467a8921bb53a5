"""Inference copies of STNeuroNet: batch norm folded into the convolutions, trunk in a lower precision.

At inference a batch norm is a fixed per-channel affine map, so it folds into
the preceding convolution: ``w' = w * g / sqrt(v + eps)`` and
``b' = beta - m * g / sqrt(v + eps)``. That removes a pass over every
activation volume (4 % of a float32 forward). The copies are made per call
(the network has 0.9 M parameters: milliseconds), so the caller's model is
never modified.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .model import ConvBNAct, STNeuroNet

__all__ = ["fuse_batchnorm", "inference_copy", "channels_last_weights"]


def fuse_batchnorm(model: STNeuroNet) -> STNeuroNet:
    """An eval-mode copy of ``model`` with each convolution's batch norm folded into it.

    Parameters
    ----------
    model : STNeuroNet
        Left untouched (mode, parameters and device).

    Returns
    -------
    STNeuroNet
        Eval-mode copy without gradients; its convolutions carry a bias and its
        ``ConvBNAct.bn`` are identities. Only the average-pool branch keeps its
        (one-channel) batch norm. Float32 results equal the original's up to
        rounding.
    """
    fused = copy.deepcopy(model).eval()
    with torch.no_grad():
        for module in fused.modules():
            if not (isinstance(module, ConvBNAct) and isinstance(module.bn, nn.BatchNorm3d)):
                continue
            bn, conv = module.bn, module.conv
            # float64 so that folding adds no rounding beyond the final cast.
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            weight = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
            bias = bn.bias.double() - bn.running_mean.double() * scale
            if conv.bias is not None:
                bias = bias + conv.bias.double() * scale
            conv.weight = nn.Parameter(weight.to(conv.weight.dtype))
            conv.bias = nn.Parameter(bias.to(conv.weight.dtype))
            module.bn = nn.Identity()
    fused.requires_grad_(False)
    return fused


def inference_copy(
    model: STNeuroNet,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    channels_last: bool | None = None,
) -> STNeuroNet:
    """A BN-fused eval copy whose 3-D trunk computes in ``dtype``.

    Parameters
    ----------
    model : STNeuroNet
        Left untouched.
    dtype : torch.dtype
        float32, bfloat16 or float16 for the 3-D convolutions (the bulk of the
        cost). The final up-sampling, temporal max and the two 2-D
        convolutions stay float32 (they are cheap and set the decisions), and
        so does the one-channel average-pool branch.
    device : torch.device or str, optional
        Where the copy lives (default: where ``model`` is).
    channels_last : bool, optional
        Channels-last 3-D convolution weights, so that oneDNN picks its
        channels-last kernels. Default: for bfloat16 on a CPU, where it was
        measured to pay (10 % at 488x488 on a Xeon with AMX).

    Returns
    -------
    STNeuroNet
    """
    fused = fuse_batchnorm(model)
    if device is not None:
        fused = fused.to(device)
    if dtype != torch.float32:
        for part in (fused.conv_in, fused.stacks, fused.skips, fused.downs, fused.fuse):
            part.to(dtype)
    if channels_last is None:
        channels_last = dtype == torch.bfloat16 and fused.conv_in.conv.weight.device.type == "cpu"
    if channels_last:
        channels_last_weights(fused)
    return fused


def channels_last_weights(model: nn.Module) -> nn.Module:
    """Store every ``Conv3d`` weight of ``model`` channels-last, in place; returns ``model``.

    oneDNN then chooses channels-last kernels and produces channels-last
    activations (the values are unchanged).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
    return model
