"""Dropout whose keep-mask at p = 1/2 costs one random bit per element.

``nn.Dropout`` on a CPU draws one Bernoulli variate per element
(``bernoulli_``, about 26 ms for a 3 x 12 x 60 x 32 x 32 tensor on two
cores), which made it a tenth of STNeuroNet's training step. At the
published rate (keep probability 0.5) every bit of a uniform random word is
an independent fair coin, so one 64-bit draw decides 64 elements: the same
distribution, 25x cheaper. Other rates, evaluation mode and non-CPU devices
(where the fused kernel is already fast) use ``nn.Dropout`` unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Dropout", "fair_coin_mask"]


def fair_coin_mask(shape: torch.Size | tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """A ``uint8`` tensor of independent fair 0/1 coins, drawn from torch's global generator.

    Parameters
    ----------
    shape : tuple of int
        Shape of the mask.
    device : torch.device or str
        Where to draw it.

    Returns
    -------
    torch.Tensor
        ``uint8`` zeros and ones of ``shape``; reproducible under ``torch.manual_seed``.
    """
    n = 1
    for s in shape:
        n *= int(s)
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 63) // 64,), dtype=torch.int64, device=device)
    shifts = torch.arange(8, dtype=torch.uint8, device=device)
    bits = words.view(torch.uint8).unsqueeze(-1).bitwise_right_shift(shifts).bitwise_and_(1)
    return bits.view(-1)[:n].view(shape)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the fair-coin mask at ``p = 0.5`` on the CPU (same distribution and scaling)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self.training or self.p != 0.5 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        # Kept elements are scaled by 1 / (1 - p) = 2, as nn.Dropout does.
        keep = fair_coin_mask(x.shape, x.device).to(x.dtype).mul_(2)
        return x * keep
