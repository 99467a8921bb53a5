"""STNeuroNet: the 3-D DenseVNet-based network of Soltanian-Zadeh et al. (PNAS 2019).

Layout
------
Inputs are ``(N, 1, T, H, W)`` float tensors: time first (PyTorch-natural for
``Conv3d``), then the frame's rows (``H``) and columns (``W``) as a frame is
stored by h5py/NumPy (row-major image order). The authors' TF tensors were
``(N, x, y, t, C)`` with ``x`` = image column and ``y`` = image row (MATLAB
order of the h5py frame), so TF ``x`` maps to our ``W`` and ``y`` to our ``H``;
:func:`checkpoint_name_map` encodes that (pass ``transpose_xy=True`` if you
feed frames whose ``H`` axis is the TF ``x`` axis instead).

Output of :meth:`STNeuroNet.forward` are the logits ``(N, 2, H, W)`` (channel
1 = neuron). Softmax is left to the caller (the Dice loss takes it), and
:meth:`STNeuroNet.predict_proba` returns the neuron probability map.

Sizes
-----
The architecture halves every axis three times, so the network works on
sizes divisible by 8. Other sizes are padded at the *end* of each axis (the
authors' ``pad.py`` convention; ``'minimum'`` mode = the minimum of each 1-D
line along that axis, as ``np.pad(mode='minimum')``) and cropped back:
padded frames are cut off before the temporal max-pool, padded rows/columns
after the final 2-D convs (so border pixels see the same padded context the
authors' 488x488 ABO windows had).

Faithfulness switch
-------------------
``tf_compat=True`` reproduces TF-1 numerics: asymmetric ``'SAME'`` padding of
the stride-2 ops, count-excluding average pooling, legacy resize coordinates,
zero-debiased moving averages of BN with the biased (population) batch
variance. ``tf_compat=False`` (default) uses native PyTorch ops (symmetric
padding, ``F.interpolate(trilinear, align_corners=False)``, standard BN
running statistics); it is faster and equally valid for training from
scratch, but weights trained in one mode are slightly shifted in the other.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .dropout import Dropout
from .resize import axis_indices, resize
from .tf_compat import avg_pool_same, conv_same

__all__ = [
    "STNeuroNet",
    "TFBatchNorm3d",
    "ConvBNAct",
    "DenseFeatureStack",
    "CheckpointEntry",
    "checkpoint_name_map",
    "CHECKPOINT_NAMES",
    "load_tf_variables",
    "export_tf_variables",
    "pad_to_multiple",
    "trunc_normal_tf_",
    "N_TRAINABLE",
    "N_BN_STATS",
]

logger = logging.getLogger(__name__)

#: Trainable parameter count of the authors' network (checked against the checkpoint).
N_TRAINABLE = 881_254
#: Number of BN moving mean + variance values.
N_BN_STATS = 786

_BN_DECAY = 0.9  # NiftyNet moving-average decay
_BN_EPS = 1e-5


def trunc_normal_tf_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Fill ``tensor`` like ``tf.truncated_normal(stddev=std)``.

    TF re-draws samples beyond two *parameter* standard deviations, so the
    realised SD is about 0.88 ``std``. Sampled by inverting the normal CDF
    on the truncated range (``nn.init.trunc_normal_`` uses slow rejection).
    """
    with torch.no_grad():
        # u in (2 Phi(-2) - 1, 2 Phi(2) - 1) = (-erf(sqrt 2), erf(sqrt 2)); x = sqrt(2) erfinv(u).
        bound = math.erf(math.sqrt(2.0))
        tensor.uniform_(-bound, bound)
        tensor.erfinv_()
        tensor.mul_(std * math.sqrt(2.0))
        return tensor.clamp_(-2.0 * std, 2.0 * std)


class TFBatchNorm3d(nn.BatchNorm3d):
    """``BatchNorm3d`` that can mimic NiftyNet's BN statistics.

    With ``tf_compat=True`` the running statistics are TF's zero-debiased
    exponential moving averages (decay 0.9) of the batch mean and the biased
    (population) batch variance; normalisation itself is unchanged. With
    ``tf_compat=False`` it is plain ``BatchNorm3d`` (momentum 0.1 = decay 0.9,
    unbiased running variance, running stats initialised to 0/1).
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, eps=_BN_EPS, momentum=1.0 - _BN_DECAY)
        self.tf_compat = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not (self.tf_compat and self.training and self.track_running_stats):
            return super().forward(x)
        y = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        with torch.no_grad():
            dims = [0, *range(2, x.dim())]
            var, mean = torch.var_mean(x.detach(), dim=dims, unbiased=False)
            self.num_batches_tracked.add_(1)
            k = int(self.num_batches_tracked.item())
            # Zero-debiased EMA: debiased_k = debiased_{k-1} + m_k (x - debiased_{k-1})
            # with m_k = (1 - d) / (1 - d^k); m_1 = 1, so the initial values do not matter.
            m = (1.0 - _BN_DECAY) / (1.0 - _BN_DECAY**k)
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
            self.running_var.lerp_(var.to(self.running_var.dtype), m)
        return y


class ConvBNAct(nn.Module):
    """NiftyNet ``ConvolutionalLayer``: conv (no bias) -> BN -> [ReLU] -> [dropout].

    Parameters
    ----------
    c_in, c_out : int
        Channels.
    kernel : int
        Cubic kernel size (odd).
    stride : int
        1 or 2.
    relu : bool
        Apply ReLU after BN.
    dropout : float or None
        Element-wise dropout probability after the activation (``None``: none).
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, relu: bool = True, dropout: float | None = None
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=0, bias=False)
        self.bn = TFBatchNorm3d(c_out)
        self.stride = stride
        self.relu = relu
        self.dropout = Dropout(dropout) if dropout else None
        self.tf_compat = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # conv.bias is None except in a copy made by fuse_batchnorm (BN folded in, bn = Identity).
        x = conv_same(x, self.conv.weight, self.conv.bias, self.stride, self.tf_compat)
        dtype = x.dtype
        x = self.bn(x)
        if self.relu:
            # In place outside autograd: saves one full-size temporary per layer.
            x = F.relu(x, inplace=not torch.is_grad_enabled())
        # Autocast runs batch norm in float32; return the convolution's dtype, so that a dense
        # stack concatenates bfloat16 features (a cast of this layer's few channels now instead
        # of the whole concatenation before every later convolution).
        x = x.to(dtype)
        if self.dropout is not None:
            x = self.dropout(x)
        return x


class DenseFeatureStack(nn.Module):
    """Dense stack: layer ``k`` sees concat(input, outputs 1..k-1); returns concat(input, all outputs).

    Dropout follows every layer except the last one (as NiftyNet's DenseVNet).
    """

    def __init__(self, c_in: int, growth: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.c_in = c_in
        self.growth = growth
        self.layers = nn.ModuleList(
            ConvBNAct(c_in + i * growth, growth, 3, 1, relu=True, dropout=dropout if i < n_layers - 1 else None)
            for i in range(n_layers)
        )

    @property
    def c_out(self) -> int:
        """Channels of the stack's output."""
        return self.c_in + self.growth * len(self.layers)

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Stack on ``x``, or on the channel concatenation of the tensors in ``x`` (never built apart)."""
        parts = [x] if isinstance(x, torch.Tensor) else list(x)
        if torch.is_grad_enabled():
            feats = parts
            for layer in self.layers:
                feats.append(layer(torch.cat(feats, dim=1)))
            return torch.cat(feats, dim=1)
        # Inference: write every output into one preallocated buffer, which
        # avoids the quadratic memory of repeated concatenation (large frames).
        # One window at a time: the first channels of one window's buffer are a
        # contiguous block, which the convolution reads without a copy (with
        # several windows the channel slice would be strided and copied per layer).
        x = parts[0]
        buf = x.new_empty((x.shape[0], self.c_out, *x.shape[2:]))
        c = 0
        for part in parts:
            buf[:, c : c + part.shape[1]] = part
            c += part.shape[1]
        for n in range(x.shape[0]):
            one = buf[n : n + 1]
            c = self.c_in
            for layer in self.layers:
                one[:, c : c + self.growth] = layer(one[:, :c])
                c += self.growth
        return buf


def pad_to_multiple(x: torch.Tensor, multiple: int = 8, mode: str = "minimum", dims: tuple[int, ...] = (2, 3, 4)):
    """Pad the given axes at their *end* up to a multiple of ``multiple``.

    Parameters
    ----------
    x : torch.Tensor
        Any tensor.
    multiple : int
        Target divisor.
    mode : {'minimum', 'replicate', 'zeros'}
        ``'minimum'``: fill with the minimum of each 1-D line along the padded
        axis, axes in order (``np.pad(mode='minimum')``, the authors' pad.py);
        ``'replicate'``: repeat the last slice; ``'zeros'``: zeros.

    Returns
    -------
    torch.Tensor
        The padded tensor (``x`` itself when nothing is needed).
    """
    if mode not in ("minimum", "replicate", "zeros"):
        raise ValueError(f"unknown pad mode {mode!r}")
    for dim in dims:
        n = x.shape[dim]
        extra = (-n) % multiple
        if extra == 0:
            continue
        if mode == "minimum":
            fill = x.amin(dim=dim, keepdim=True)
        elif mode == "replicate":
            fill = x.narrow(dim, n - 1, 1)
        else:
            fill = torch.zeros_like(x.narrow(dim, 0, 1))
        reps = [1] * x.dim()
        reps[dim] = extra
        x = torch.cat([x, fill.repeat(reps)], dim=dim)
    return x


class STNeuroNet(nn.Module):
    """STNeuroNet (``DenseVNet2D`` of the authors' code) in PyTorch.

    Parameters
    ----------
    tf_compat : bool
        Reproduce TF-1 numerics (see module docstring). Can be changed later
        through the :attr:`tf_compat` property.
    dropout : float
        Dropout probability (the authors' keep_prob 0.5).
    pad_mode : {'minimum', 'replicate', 'zeros'}
        How inputs whose T, H or W is not a multiple of 8 are padded at the end.
    dense_channels, dense_layers, skip_channels, input_channels
        Architecture hyper-parameters; the defaults are the published ones
        ((4, 8, 16), (5, 10, 10), (12, 24, 24), 24).

    Notes
    -----
    ``forward(x)`` takes ``(N, 1, T, H, W)`` and returns ReLU'd logits
    ``(N, 2, H, W)``; the ReLU on the logits is what the authors' network
    does.
    """

    def __init__(
        self,
        tf_compat: bool = False,
        dropout: float = 0.5,
        pad_mode: str = "minimum",
        dense_channels: tuple[int, int, int] = (4, 8, 16),
        dense_layers: tuple[int, int, int] = (5, 10, 10),
        skip_channels: tuple[int, int, int] = (12, 24, 24),
        input_channels: int = 24,
        n_fused: int = 10,
        n_classes: int = 2,
    ) -> None:
        super().__init__()
        if pad_mode not in ("minimum", "replicate", "zeros"):
            raise ValueError(f"unknown pad_mode {pad_mode!r}")
        self.pad_mode = pad_mode
        # A: average-pool branch followed by BN (no activation).
        self.pool_bn = TFBatchNorm3d(1)
        # B: strided 5^3 conv, BN, no activation, no dropout.
        self.conv_in = ConvBNAct(1, input_channels, kernel=5, stride=2, relu=False, dropout=None)
        c = 1 + input_channels
        stacks, skips, downs = [], [], []
        for level in range(3):
            stack = DenseFeatureStack(c, dense_channels[level], dense_layers[level], dropout)
            stacks.append(stack)
            skips.append(ConvBNAct(stack.c_out, skip_channels[level], 3, 1, relu=True, dropout=dropout))
            if level < 2:
                downs.append(ConvBNAct(stack.c_out, input_channels, 3, 2, relu=True, dropout=dropout))
                c = input_channels
        self.stacks = nn.ModuleList(stacks)
        self.skips = nn.ModuleList(skips)
        self.downs = nn.ModuleList(downs)
        # G: fusion conv with bias, no BN, no activation.
        self.fuse = nn.Conv3d(1 + sum(skip_channels), n_fused, 3, padding=0, bias=True)
        # J, K: 2-D convs after the temporal max-pool, both followed by ReLU.
        self.conv2d_1 = nn.Conv2d(n_fused, n_fused, 3, padding=1, bias=True)
        self.conv2d_2 = nn.Conv2d(n_fused, n_classes, 3, padding=1, bias=True)
        self.reset_parameters()
        self.tf_compat = tf_compat

    # -- configuration -------------------------------------------------------------
    @property
    def tf_compat(self) -> bool:
        """Whether TF-1 numerics are reproduced (propagated to every sub-module)."""
        return self._tf_compat

    @tf_compat.setter
    def tf_compat(self, value: bool) -> None:
        self._tf_compat = bool(value)
        for module in self.modules():
            if module is not self and hasattr(module, "tf_compat"):
                module.tf_compat = self._tf_compat

    def reset_parameters(self) -> None:
        """Initialise as the authors' code did.

        3-D convs: truncated normal, SD ``sqrt(2 / fan_in)`` (NiftyNet default,
        fan_in = k^3 C_in), cut at 2 SD. 2-D convs: TF-1.4
        ``variance_scaling_initializer()`` = truncated normal with SD
        ``sqrt(1 / fan_in)`` cut at 2 SD (TF 1.4 did not yet rescale the SD
        for truncation). Biases 0; BN gamma 1, beta 0.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                fan_in = module.weight[0].numel()
                trunc_normal_tf_(module.weight.data, math.sqrt(2.0 / fan_in))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                trunc_normal_tf_(module.weight.data, math.sqrt(1.0 / fan_in))
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm3d):
                module.reset_parameters()

    # -- forward -------------------------------------------------------------------
    def _resize(self, x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        return resize(x, size, self._tf_compat)

    def _half_resolution(self, x: torch.Tensor) -> torch.Tensor:
        """A..G: ``(N, 1, T, H, W)`` -> fused features ``(N, 10, T/2, H/2, W/2)`` in float32.

        The 3-D part runs in the dtype of the weights (bfloat16 in a copy made
        by :func:`stnn.fuse.inference_copy`); its output is returned as float32.
        """
        if any(s % 8 for s in x.shape[2:]):
            raise ValueError(f"features() needs T, H, W divisible by 8, got {tuple(x.shape[2:])}")
        tf = self._tf_compat
        dtype = self.conv_in.conv.weight.dtype
        if torch.is_autocast_enabled(x.device.type):
            # Mixed-precision training: start the trunk in the autocast dtype, so that the dense
            # stacks concatenate bfloat16 features instead of casting every layer's input again.
            dtype = torch.get_autocast_dtype(x.device.type)
        # The one-channel average-pool branch stays in the input's dtype (no bf16 avg_pool3d on CPU).
        a = self.pool_bn(avg_pool_same(x, 3, 2, tf_compat=tf)).to(dtype)
        b = self.conv_in(x.to(dtype))
        h = (a, b)  # concatenated by the first stack
        skips = []
        for level, stack in enumerate(self.stacks):
            s = stack(h)
            skips.append(self.skips[level](s))
            if level < len(self.downs):
                h = self.downs[level](s)
        size1 = tuple(a.shape[2:])
        fused = torch.cat([a, skips[0]] + [self._resize(s, size1) for s in skips[1:]], dim=1)
        return conv_same(fused, self.fuse.weight, self.fuse.bias, 1, tf).float()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """3-D part of the network (A..H): ``(N, 1, T, H, W)`` -> ``(N, 10, T, H, W)``.

        All three sizes must be multiples of 8 (use :meth:`forward` for others).
        """
        return self._resize(self._half_resolution(x), tuple(x.shape[2:]))

    def _axis_indices(
        self, in_size: int, out_size: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(lo, hi, frac)`` of the linear resize along one axis, in this network's numerics."""
        return axis_indices(in_size, out_size, device, dtype, self._tf_compat)

    def _upsampled_time_max(
        self, g: torch.Tensor, size: tuple[int, int, int], t0: int, return_index: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``features(x)[:, :, :t0].amax(2)`` from the half-resolution ``g``, a few frames at a time.

        The (tri)linear resize is separable, so each output frame is a linear
        blend of two input frames followed by a 2-D resize; computing a few
        output frames at a time and keeping a running maximum never holds the
        full-resolution ``(N, 10, T, H, W)`` volume (1.1 GB for a 120-frame
        488x488 window) and skips the padded frames past ``t0``. With
        ``return_index`` the winning output frame of every pixel (the first
        one on ties) is returned too.
        """
        n, c, t_in = g.shape[:3]
        t_out, h_out, w_out = size
        lo, hi, frac = self._axis_indices(t_in, t_out, g.device, g.dtype)
        frames = g.transpose(1, 2).contiguous()  # (N, T/2, C, h, w): frame blocks are contiguous
        step = max(1, (1 << 24) // max(n * c * h_out * w_out, 1))
        out = index = None
        for j0 in range(0, t0, step):
            j1 = min(j0 + step, t0)
            f = frac[j0:j1].view(1, -1, 1, 1, 1)
            blend = torch.lerp(frames.index_select(1, lo[j0:j1]), frames.index_select(1, hi[j0:j1]), f)
            k = j1 - j0
            # One channel per image: with ten channels of small frames F.interpolate's CPU
            # kernel takes a channels-last path and copies its output back, 3.5x slower.
            up = self._resize(blend.reshape(n * k * c, 1, *blend.shape[3:]), (h_out, w_out))
            up = up.view(n, k, c, h_out, w_out)
            if not return_index:
                m = up.amax(dim=1)
                out = m if out is None else torch.maximum(out, m, out=out)
                continue
            m, arg = up.max(dim=1)
            arg += j0
            if out is None:
                out, index = m, arg
            else:
                better = m > out
                out = torch.where(better, m, out)
                index = torch.where(better, arg, index)
        return (out, index) if return_index else out

    def _time_max_through_winner(self, g: torch.Tensor, size: tuple[int, int, int], t0: int) -> torch.Tensor:
        """Differentiable ``features(x)[:, :, :t0].amax(2)`` that never builds the full-resolution volume.

        The maximum's gradient reaches only the frame that wins it, and that
        frame is a trilinear blend of eight entries of ``g``. So the winner of
        every output pixel is found without autograd (:meth:`_upsampled_time_max`)
        and the maximum is rebuilt from those eight entries with autograd.
        The value equals the plain form's up to rounding and the gradient
        equals it wherever the maximum is unique (``amax`` splits the gradient
        of exact ties, this gives it to the first). Training spent a fifth of
        each step resizing the ``(N, 10, T, H, W)`` volume, taking its
        maximum and back-propagating both.
        """
        n, c, t_in, h_in, w_in = g.shape
        t_out, h_out, w_out = size
        with torch.no_grad():
            _, win = self._upsampled_time_max(g.detach(), size, t0, return_index=True)
        lo_t, hi_t, f_t = self._axis_indices(t_in, t_out, g.device, g.dtype)
        lo_h, hi_h, f_h = self._axis_indices(h_in, h_out, g.device, g.dtype)
        lo_w, hi_w, f_w = self._axis_indices(w_in, w_out, g.device, g.dtype)
        flat = g.reshape(n, c, t_in * h_in * w_in)

        def at(frame: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
            where = (frame * h_in + rows.view(-1, 1)) * w_in + cols.view(1, -1)
            return flat.gather(2, where.reshape(n, c, -1)).view(n, c, h_out, w_out)

        def plane(frame: torch.Tensor) -> torch.Tensor:
            top = torch.lerp(at(frame, lo_h, lo_w), at(frame, lo_h, hi_w), f_w)
            bottom = torch.lerp(at(frame, hi_h, lo_w), at(frame, hi_h, hi_w), f_w)
            return torch.lerp(top, bottom, f_h.view(-1, 1))

        return torch.lerp(plane(lo_t[win]), plane(hi_t[win]), f_t[win])

    def forward(self, x: torch.Tensor, logit_slope: float = 0.0) -> torch.Tensor:
        """Logits of the neuron / background classes.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, 1, T, H, W)`` (pre-processed and whitened video windows).
        logit_slope : float
            Negative slope of the final activation: 0 is the authors' ReLU
            (inference always); training may pass a small leak so that the
            neuron channel cannot die (see :class:`stnn.train.TrainConfig`).

        Returns
        -------
        torch.Tensor
            ``(N, 2, H, W)`` logits after ReLU (channel 1 = neuron), float32.
        """
        if x.dim() != 5 or x.shape[1] != 1:
            raise ValueError(f"STNeuroNet expects (N, 1, T, H, W), got shape {tuple(x.shape)}")
        t0, h0, w0 = x.shape[2:]
        xp = pad_to_multiple(x, 8, self.pad_mode)
        # Padded frames (past t0) never win the temporal max.
        if torch.is_grad_enabled():
            m = self._time_max_through_winner(self._half_resolution(xp), tuple(xp.shape[2:]), t0)
        else:
            m = self._upsampled_time_max(self._half_resolution(xp), tuple(xp.shape[2:]), t0)
        m = F.relu(self.conv2d_1(m.to(self.conv2d_1.weight.dtype)))
        z = self.conv2d_2(m)
        logits = F.leaky_relu(z, logit_slope) if logit_slope else F.relu(z)
        return logits[:, :, :h0, :w0]

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Neuron probability map ``(N, H, W)`` = softmax(logits)[:, 1] (no gradient)."""
        return torch.softmax(self.forward(x), dim=1)[:, 1]


# -- checkpoint mapping ------------------------------------------------------------


class CheckpointEntry(NamedTuple):
    """How one TF checkpoint variable maps onto a PyTorch tensor.

    Attributes
    ----------
    torch_name : str
        Key in ``STNeuroNet().state_dict()``.
    permute : tuple of int or None
        Axis order that turns the TF array into the PyTorch one
        (``torch = tf.transpose(permute)``); None for 1-D tensors.
    trainable : bool
        False for BN moving statistics.
    """

    torch_name: str
    permute: tuple[int, ...] | None
    trainable: bool


def _suffix(i: int) -> str:
    return "" if i == 0 else f"_{i}"


def checkpoint_name_map(
    transpose_xy: bool = False, dense_layers: tuple[int, int, int] = (5, 10, 10), include_moving_stats: bool = True
) -> dict[str, CheckpointEntry]:
    """Map every variable of the authors' checkpoint to a parameter or buffer.

    Parameters
    ----------
    transpose_xy : bool
        False (default): our ``H`` is TF ``y`` (image rows) and ``W`` is TF
        ``x`` (image columns), so a 3-D kernel ``[kx, ky, kt, Cin, Cout]``
        becomes ``[Cout, Cin, kt, ky, kx]`` (permute ``(4, 3, 2, 1, 0)``) and
        a 2-D kernel ``[kh=x, kw=y, Cin, Cout]`` becomes ``[Cout, Cin, y, x]``
        (permute ``(3, 2, 1, 0)``). True: ``H`` is TF ``x``
        (permutes ``(4, 3, 2, 0, 1)`` and ``(3, 2, 0, 1)``).
    dense_layers : tuple of int
        Layers per dense stack (published: 5, 10, 10).
    include_moving_stats : bool
        Also map ``moving_mean`` / ``moving_variance`` to BN running stats.

    Returns
    -------
    dict
        TF variable name -> :class:`CheckpointEntry`. Adam slots,
        ``ApplyGradients/*`` and the zero-debias helpers (``biased``,
        ``local_step``) have no PyTorch counterpart and are not listed.
    """
    p3 = (4, 3, 2, 0, 1) if transpose_xy else (4, 3, 2, 1, 0)
    p2 = (3, 2, 0, 1) if transpose_xy else (3, 2, 1, 0)
    root = "DenseVNet2D"
    out: dict[str, CheckpointEntry] = {}

    def bn(tf_scope: str, torch_prefix: str) -> None:
        out[f"{tf_scope}/gamma"] = CheckpointEntry(f"{torch_prefix}.weight", None, True)
        out[f"{tf_scope}/beta"] = CheckpointEntry(f"{torch_prefix}.bias", None, True)
        if include_moving_stats:
            out[f"{tf_scope}/moving_mean"] = CheckpointEntry(f"{torch_prefix}.running_mean", None, False)
            out[f"{tf_scope}/moving_variance"] = CheckpointEntry(f"{torch_prefix}.running_var", None, False)

    def conv_bn(tf_scope: str, torch_prefix: str) -> None:
        out[f"{tf_scope}/conv_/w"] = CheckpointEntry(f"{torch_prefix}.conv.weight", p3, True)
        bn(f"{tf_scope}/bn_", f"{torch_prefix}.bn")

    bn(f"{root}/batch_norm", "pool_bn")
    conv_bn(f"{root}/conv_bn", "conv_in")
    for level, n_layers in enumerate(dense_layers):
        block = f"{root}/dense_feature_stack_block{_suffix(level)}"
        for j in range(n_layers):
            conv_bn(f"{block}/dense_feature_stack_block/conv_bn_relu{_suffix(j)}", f"stacks.{level}.layers.{j}")
        conv_bn(f"{block}/conv_bn_relu", f"skips.{level}")
        if level < len(dense_layers) - 1:
            conv_bn(f"{block}/conv_bn_relu_1", f"downs.{level}")
    out[f"{root}/conv/conv_/w"] = CheckpointEntry("fuse.weight", p3, True)
    out[f"{root}/conv/conv_/b"] = CheckpointEntry("fuse.bias", None, True)
    out[f"{root}/conv2d/kernel"] = CheckpointEntry("conv2d_1.weight", p2, True)
    out[f"{root}/conv2d/bias"] = CheckpointEntry("conv2d_1.bias", None, True)
    out[f"{root}/conv2d_1/kernel"] = CheckpointEntry("conv2d_2.weight", p2, True)
    out[f"{root}/conv2d_1/bias"] = CheckpointEntry("conv2d_2.bias", None, True)
    return out


#: The published network's mapping (default layout, moving stats included).
CHECKPOINT_NAMES: dict[str, CheckpointEntry] = checkpoint_name_map()

_IGNORED_TF = ("/Adam", "/biased", "/local_step", "ApplyGradients/", "global_step")


def load_tf_variables(
    model: STNeuroNet, variables: Mapping[str, object], transpose_xy: bool = False, strict: bool = True
) -> list[str]:
    """Copy TF checkpoint arrays (e.g. from ``tf.train.load_variable``) into ``model``.

    Parameters
    ----------
    model : STNeuroNet
        Target network (published architecture).
    variables : mapping
        TF variable name -> array-like in TF layout.
    transpose_xy : bool
        See :func:`checkpoint_name_map`.
    strict : bool
        Raise ``KeyError`` if a mapped variable is missing or an unknown
        non-optimiser variable is present.

    Returns
    -------
    list of str
        TF names that were ignored (optimiser slots, debias helpers).
    """
    mapping = checkpoint_name_map(transpose_xy)
    state = model.state_dict()
    ignored, unknown = [], []
    for name in variables:
        if name not in mapping:
            (ignored if any(tag in name for tag in _IGNORED_TF) else unknown).append(name)
    missing = [name for name in mapping if name not in variables]
    if strict and (missing or unknown):
        raise KeyError(
            f"checkpoint mismatch: missing {missing[:5]} ({len(missing)}), unknown {unknown[:5]} ({len(unknown)})"
        )
    with torch.no_grad():
        for name, entry in mapping.items():
            if name not in variables:
                continue
            arr = np.asarray(variables[name], dtype=np.float32)
            if entry.permute is not None:
                arr = arr.transpose(entry.permute)
            target = state[entry.torch_name]
            if tuple(arr.shape) != tuple(target.shape):
                raise ValueError(f"{name}: shape {arr.shape} does not fit {entry.torch_name} {tuple(target.shape)}")
            target.copy_(torch.from_numpy(np.ascontiguousarray(arr)))
    logger.debug("loaded %d TF variables, ignored %d", len(mapping) - len(missing), len(ignored))
    return ignored


def export_tf_variables(model: STNeuroNet, transpose_xy: bool = False) -> dict[str, np.ndarray]:
    """Inverse of :func:`load_tf_variables`: parameters as TF-named arrays in TF layout."""
    state = model.state_dict()
    out = {}
    for name, entry in checkpoint_name_map(transpose_xy).items():
        arr = state[entry.torch_name].detach().cpu().numpy()
        if entry.permute is not None:
            arr = arr.transpose(np.argsort(entry.permute))
        out[name] = np.ascontiguousarray(arr)
    return out
