"""The UNet2DS network (Klibisz et al. 2017) in PyTorch.

Reimplemented from the description of ``unet_builder`` in
``deepcalcium/models/neurons/unet_2d_summary.py`` of alexklibisz/deep-calcium
at commit 2b15d1b (13 Jul 2017), the version behind the paper's Neurofinder
submission (F1 0.5611, 0.5689 with 8x test-time augmentation): a 2-D U-Net
with batch normalisation between every convolution and its ReLU. Keras
defaults are kept where they matter: convolutions with bias, He-normal
kernels, batch normalisation with epsilon 1e-3 and momentum 0.99 (0.5 after
the transposed convolutions), dropout only while training.

Layer table (input a 1-channel H x W image, H and W multiples of 16;
``conv`` = 3x3 'same' conv + BN + ReLU, ``up`` = 2x2 stride-2 transposed conv
+ BN + ReLU)::

    stage   layers                                   out ch   size    params (PyTorch)
    enc0    conv 1->32, conv 32->32                   32      H       320+64, 9248+64
    enc1    maxpool 2, conv 32->64, conv 64->64,      64      H/2     18496+128, 36928+128
            dropout 0.25
    enc2    maxpool 2, conv 64->128, conv 128->128,   128     H/4     73856+256, 147584+256
            dropout 0.5
    enc3    maxpool 2, conv 128->256, conv 256->256,  256     H/8     295168+512, 590080+512
            dropout 0.5
    bottom  maxpool 2, conv 256->512, conv 512->512,  512     H/16    1180160+1024, 2359808+1024
            up 512->256, dropout 0.5                  256     H/8     524544+512
    dec3    concat enc3, conv 512->256, conv 256->256 256     H/8     1179904+512, 590080+512
            up 256->128, dropout 0.5                  128     H/4     131200+256
    dec2    concat enc2, conv 256->128, conv 128->128 128     H/4     295040+256, 147584+256
            up 128->64, dropout 0.5                   64      H/2     32832+128
    dec1    concat enc1, conv 128->64, conv 64->64    64      H/2     73792+128, 36928+128
            up 64->32, dropout 0.25                   32      H       8224+64
    dec0    concat enc0, conv 64->32, conv 32->32     32      H       18464+64, 9248+64
    head    1x1 conv 32->2, softmax over the 2        1       H       66
            channels, keep channel 1 (P(neuron))

Parameter count: 7,766,402 trainable (:data:`N_PARAMS`): 7,759,554 in the
convolution kernels and biases plus 6,848 batch-norm scales and offsets over
3,424 normalised channels (:data:`N_BN_CHANNELS`). Keras' summary would add the
moving means and variances as 6,848 non-trainable values (7,773,250 "total
params"); PyTorch keeps those as buffers.

:func:`pad_to_multiple` / :func:`predict_probability` pad any H x W image to
a multiple of 16 (reflection, as deep-calcium pads to its 512 x 512 window)
and crop the probability map back.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "UNet2DS",
    "N_PARAMS",
    "N_BN_CHANNELS",
    "DEPTH",
    "normalize_summary",
    "pad_to_multiple",
    "predict_probability",
]

#: Trainable parameters of the network with base width 32 (derived by hand from deep-calcium's layer list).
N_PARAMS = 7_766_402
#: Batch-normalised channels (each has a moving mean and variance in Keras' count).
N_BN_CHANNELS = 3_424
#: Number of 2x2 poolings: inputs must be multiples of 2**DEPTH.
DEPTH = 4

_BN_EPS = 1e-3  # Keras BatchNormalization default
_BN_MOMENTUM = 0.01  # Keras momentum 0.99 in PyTorch's convention
_BN_MOMENTUM_UP = 0.5  # Keras momentum 0.5 after the transposed convolutions


class _ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=True),
            nn.BatchNorm2d(cout, eps=_BN_EPS, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
        )


class _UpBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=True),
            nn.BatchNorm2d(cout, eps=_BN_EPS, momentum=_BN_MOMENTUM_UP),
            nn.ReLU(inplace=True),
        )


class UNet2DS(nn.Module):
    """U-Net on a 2-D summary image; returns per-pixel logits of the 2 classes.

    Parameters
    ----------
    base : int
        Filters of the first level (32 in deep-calcium), doubled after each pooling.
    dropout : float
        Dropout after the first pooling level and the last up-sampling; twice
        this elsewhere (0.25 / 0.5 in deep-calcium).

    ``forward`` takes (N, H, W) or (N, 1, H, W) with H, W multiples of 16 and
    returns (N, 2, H, W) logits; :meth:`probability` applies the softmax and
    keeps the neuron channel, (N, H, W).
    """

    def __init__(self, base: int = 32, dropout: float = 0.25):
        super().__init__()
        b = base
        self.enc0 = nn.Sequential(_ConvBNReLU(1, b), _ConvBNReLU(b, b))
        self.enc1 = nn.Sequential(_ConvBNReLU(b, 2 * b), _ConvBNReLU(2 * b, 2 * b), nn.Dropout(dropout))
        self.enc2 = nn.Sequential(_ConvBNReLU(2 * b, 4 * b), _ConvBNReLU(4 * b, 4 * b), nn.Dropout(2 * dropout))
        self.enc3 = nn.Sequential(_ConvBNReLU(4 * b, 8 * b), _ConvBNReLU(8 * b, 8 * b), nn.Dropout(2 * dropout))
        self.bottom = nn.Sequential(
            _ConvBNReLU(8 * b, 16 * b),
            _ConvBNReLU(16 * b, 16 * b),
            _UpBNReLU(16 * b, 8 * b),
            nn.Dropout(2 * dropout),
        )
        self.dec3 = nn.Sequential(
            _ConvBNReLU(16 * b, 8 * b), _ConvBNReLU(8 * b, 8 * b), _UpBNReLU(8 * b, 4 * b), nn.Dropout(2 * dropout)
        )
        self.dec2 = nn.Sequential(
            _ConvBNReLU(8 * b, 4 * b), _ConvBNReLU(4 * b, 4 * b), _UpBNReLU(4 * b, 2 * b), nn.Dropout(2 * dropout)
        )
        self.dec1 = nn.Sequential(
            _ConvBNReLU(4 * b, 2 * b), _ConvBNReLU(2 * b, 2 * b), _UpBNReLU(2 * b, b), nn.Dropout(dropout)
        )
        self.dec0 = nn.Sequential(_ConvBNReLU(2 * b, b), _ConvBNReLU(b, b))
        self.head = nn.Conv2d(b, 2, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras initialisation: ``he_normal`` kernels (normal truncated at 2 SD, SD sqrt(2 / fan-in)),
        zero biases; ``glorot_uniform`` for the 1x1 head."""
        for m in self.modules():
            if m is self.head:
                continue
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            elif isinstance(m, nn.ConvTranspose2d):
                # Keras' fan-in of a Conv2DTranspose kernel (kh, kw, out, in) is kh * kw * out.
                fan_in = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            else:
                continue
            std = float(np.sqrt(2.0 / fan_in))
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(1)
        h, w = x.shape[-2:]
        if h % 2**DEPTH or w % 2**DEPTH:
            raise ValueError(f"UNet2DS input must be a multiple of {2**DEPTH} in H and W, got {h}x{w}")
        e0 = self.enc0(x)
        e1 = self.enc1(F.max_pool2d(e0, 2))
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        u = self.bottom(F.max_pool2d(e3, 2))
        u = self.dec3(torch.cat([u, e3], 1))
        u = self.dec2(torch.cat([u, e2], 1))
        u = self.dec1(torch.cat([u, e1], 1))
        u = self.dec0(torch.cat([u, e0], 1))
        return self.head(u)

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """P(neuron) per pixel: softmax over the two output channels, channel 1."""
        return torch.softmax(self.forward(x), dim=1)[:, 1]


def normalize_summary(image: np.ndarray) -> np.ndarray:
    """Standardise a summary image as deep-calcium does: subtract its mean, divide by its SD (float32)."""
    s = np.asarray(image, dtype=np.float64)
    sd = s.std()
    out = (s - s.mean()) / (sd if sd > 0 else 1.0)
    return out.astype(np.float32)


def pad_to_multiple(image: np.ndarray, multiple: int = 2**DEPTH) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad an (H, W) image at the bottom and right to multiples of ``multiple``.

    Returns the padded image and the original (H, W) to crop back to. Images
    smaller than the padding needs are padded symmetrically (numpy's
    'reflect' needs the image to be larger than the pad).
    """
    h, w = image.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image, (h, w)
    mode = "reflect" if (ph < h and pw < w) else "symmetric"
    if mode == "symmetric" and (ph > h or pw > w):
        mode = "edge"
    return np.pad(image, ((0, ph), (0, pw)), mode=mode), (h, w)


@torch.no_grad()
def predict_probability(model: UNet2DS, summary: np.ndarray, device: str = "cpu") -> np.ndarray:
    """P(neuron) map (H, W) of a normalised summary image: pad, forward in eval mode, crop back."""
    padded, (h, w) = pad_to_multiple(np.asarray(summary, np.float32))
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(padded))[None].to(device)
    prob = model.probability(x)[0, :h, :w]
    return prob.float().cpu().numpy()
