"""The training step's fast forms equal the plain ones they replace.

Dropout's fair-coin mask, the polyphase first convolution, resizing by
matrix products and the temporal maximum rebuilt through its winning frame
(:mod:`stnn.dropout`, :mod:`stnn.polyphase`, :mod:`stnn.resize`,
:meth:`stnn.model.STNeuroNet._time_max_through_winner`).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stnn.dropout import Dropout, fair_coin_mask
from stnn.model import ConvBNAct, STNeuroNet, pad_to_multiple
from stnn.polyphase import polyphase_conv
from stnn.resize import interpolation_matrix, linear_indices, resize, resize_by_matmul
from stnn.tf_compat import conv_same, resize_linear_legacy, same_padding

_MODES = {3: "linear", 4: "bilinear", 5: "trilinear"}


# -- dropout -------------------------------------------------------------------------


def test_fair_coin_mask_is_fair_in_every_bit_and_reproducible():
    torch.manual_seed(3)
    m = fair_coin_mask((64, 50_000))
    assert m.dtype == torch.uint8 and m.shape == (64, 50_000)
    assert set(torch.unique(m).tolist()) == {0, 1}
    # Row r holds bit r % 64 of successive words: every bit position is a fair coin.
    per_bit = m.float().mean(dim=1)
    assert float(per_bit.min()) > 0.49 and float(per_bit.max()) < 0.51
    torch.manual_seed(3)
    assert torch.equal(fair_coin_mask((64, 50_000)), m)
    # Odd sizes are cut from the last word.
    assert fair_coin_mask((3, 5, 7)).shape == (3, 5, 7)


def test_dropout_keeps_half_scales_by_two_and_back_propagates_through_the_mask():
    drop = Dropout(0.5).train()
    x = torch.rand(4, 3, 20, 30) + 1.0
    x.requires_grad_(True)
    y = drop(x)
    kept = y != 0
    assert 0.45 < float(kept.float().mean()) < 0.55
    torch.testing.assert_close(y[kept], 2 * x.detach()[kept])
    y.sum().backward()
    torch.testing.assert_close(x.grad, 2 * kept.float())
    # Evaluation mode is the identity; other rates are nn.Dropout's.
    assert torch.equal(drop.eval()(x), x)
    other = Dropout(0.25).train()
    z = other(torch.ones(10_000))
    assert set(torch.unique(z).tolist()) <= {0.0, float(torch.tensor(4 / 3))}
    assert 0.7 < float((z != 0).float().mean()) < 0.8


# -- polyphase first convolution -----------------------------------------------------


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("tf_compat", [False, True])
def test_polyphase_conv_equals_the_strided_convolution(nd, k, tf_compat):
    g = torch.Generator().manual_seed(nd * 10 + k)
    for spatial in [(16, 16, 16), (13, 17, 9)]:
        shape = (2, 1, *spatial[:nd])
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        w = torch.randn((4, 1) + (k,) * nd, generator=g, dtype=torch.float64)
        b = torch.randn(4, generator=g, dtype=torch.float64)
        before = [same_padding(n, k, 2)[0] if tf_compat else k // 2 for n in shape[2:]]
        ref = conv_same(x, w, b, 2, tf_compat)
        out = polyphase_conv(x, w, b, before)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_polyphase_conv_gradients_equal_the_strided_convolution():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 12, 10, 14, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 5, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(2, 3, 6, 5, 7, generator=g, dtype=torch.float64)
    gx_ref, gw_ref = torch.autograd.grad((conv_same(x, w, None, 2) * up).sum(), (x, w))
    gx, gw = torch.autograd.grad((polyphase_conv(x, w, None, (2, 2, 2)) * up).sum(), (x, w))
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gw, gw_ref)


def test_polyphase_conv_refuses_several_input_channels():
    with pytest.raises(ValueError, match="one input channel"):
        polyphase_conv(torch.zeros(1, 2, 8, 8), torch.zeros(3, 2, 5, 5), None, (2, 2))


def test_first_layer_in_bfloat16_takes_the_polyphase_form_and_matches_float32():
    torch.manual_seed(0)
    layer = ConvBNAct(1, 24, kernel=5, stride=2, relu=False).eval()
    x = torch.randn(2, 1, 24, 32, 40)
    with torch.no_grad():
        ref = layer(x)
        out = layer.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    assert out.shape == ref.shape
    # bfloat16 keeps 8 bits: the difference is rounding, not a shifted sampling grid.
    assert float((out - ref).abs().max()) < 0.05 * float(ref.abs().max())


# -- resizing by matrix products -----------------------------------------------------


@pytest.mark.parametrize(
    "shape,size",
    [((2, 3, 7), (15,)), ((2, 3, 6, 5), (12, 9)), ((1, 2, 5, 6, 7), (10, 12, 14)), ((1, 2, 8, 8, 8), (4, 8, 16))],
)
def test_resize_equals_interpolate_and_the_tf_legacy_rule(shape, size):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = F.interpolate(x, size=size, mode=_MODES[x.dim()], align_corners=False)
    torch.testing.assert_close(resize(x, size), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(resize(x, size, tf_compat=True), resize_linear_legacy(x, size), rtol=1e-12, atol=1e-12)


def test_resize_gradient_equals_interpolate():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 15, 8, 8, dtype=torch.float64, generator=g, requires_grad=True)
    up = torch.randn(2, 3, 60, 32, 32, dtype=torch.float64, generator=g)
    (ref,) = torch.autograd.grad((F.interpolate(x, size=(60, 32, 32), mode="trilinear") * up).sum(), x)
    (out,) = torch.autograd.grad((resize_by_matmul(x, (60, 32, 32)) * up).sum(), x)
    torch.testing.assert_close(out, ref)


def test_resize_keeps_float32_under_bfloat16_autocast_and_long_axes_use_the_index_form():
    x = torch.randn(1, 2, 6, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = resize(x, (12, 20))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.interpolate(x, size=(12, 20), mode="bilinear"))
    long = torch.randn(1, 1, 200, 3)
    torch.testing.assert_close(resize(long, (400, 6)), F.interpolate(long, size=(400, 6), mode="bilinear"))


def test_interpolation_matrix_rows_are_two_point_blends():
    m = interpolation_matrix(linear_indices(5, 10, None, torch.float64), 5)
    torch.testing.assert_close(m.sum(dim=1), torch.ones(10, dtype=torch.float64))
    assert int((m > 0).sum(dim=1).max()) <= 2


# -- the temporal maximum through its winner -----------------------------------------


@pytest.mark.parametrize("tf_compat", [False, True])
@pytest.mark.parametrize("shape", [(2, 1, 24, 32, 40), (1, 1, 21, 27, 35)])
def test_time_max_through_winner_equals_the_plain_max_and_its_gradient(tf_compat, shape):
    torch.manual_seed(0)
    net = STNeuroNet(tf_compat=tf_compat, dropout=0.0).double().train()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    t0 = shape[2]
    xp = pad_to_multiple(x, 8, net.pad_mode)
    g = net._half_resolution(xp)
    plain = net._resize(g, tuple(xp.shape[2:]))[:, :, :t0].amax(dim=2)
    fast = net._time_max_through_winner(g, tuple(xp.shape[2:]), t0)
    torch.testing.assert_close(fast, plain, rtol=1e-6, atol=1e-6)
    w = torch.randn_like(plain)
    (g_plain,) = torch.autograd.grad((plain * w).sum(), x, retain_graph=True)
    (g_fast,) = torch.autograd.grad((fast * w).sum(), x)
    torch.testing.assert_close(g_fast, g_plain, rtol=1e-5, atol=1e-6)


def test_winner_index_matches_the_running_maximum():
    torch.manual_seed(1)
    net = STNeuroNet().eval()
    g = torch.randn(2, 10, 6, 5, 4)
    with torch.no_grad():
        m, win = net._upsampled_time_max(g, (12, 10, 8), 11, return_index=True)
        full = net._resize(g, (12, 10, 8))[:, :, :11]
        ref_m, ref_win = full.max(dim=2)
    torch.testing.assert_close(m, ref_m)
    assert torch.equal(win, ref_win)
    assert torch.equal(net._upsampled_time_max(g, (12, 10, 8), 11), m)
