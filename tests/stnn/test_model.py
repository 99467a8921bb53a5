"""STNeuroNet architecture against the authors' checkpoint variable list (spec sections 1-2)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from stnn.model import (
    CHECKPOINT_NAMES,
    N_BN_STATS,
    N_TRAINABLE,
    STNeuroNet,
    checkpoint_name_map,
    export_tf_variables,
    load_tf_variables,
    pad_to_multiple,
)

TSV = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "stneuronet-checkpoint-variables.tsv"
_OPTIMISER_TAGS = ("/Adam", "moving_mean", "moving_variance", "/biased", "/local_step", "ApplyGradients")


def _read_tsv() -> dict[str, tuple[int, ...]]:
    if not TSV.exists():
        pytest.skip(f"checkpoint variable list not found at {TSV}")
    out = {}
    for line in TSV.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, shape, _dtype = line.split("\t")
        out[name] = tuple(ast.literal_eval(shape))
    return out


@pytest.fixture(scope="module")
def model() -> STNeuroNet:
    torch.manual_seed(0)
    return STNeuroNet()


def test_trainable_variables_match_checkpoint_layer_by_layer(model):
    variables = _read_tsv()
    assert len(variables) == 497
    trainable = {k: v for k, v in variables.items() if not any(tag in k for tag in _OPTIMISER_TAGS)}
    assert len(trainable) == 101
    mapping = checkpoint_name_map(include_moving_stats=False)
    assert set(mapping) == set(trainable)
    params = dict(model.named_parameters())
    assert {e.torch_name for e in mapping.values()} == set(params)
    for name, tf_shape in trainable.items():
        entry = mapping[name]
        expected = tf_shape if entry.permute is None else tuple(tf_shape[i] for i in entry.permute)
        assert tuple(params[entry.torch_name].shape) == expected, name
    assert sum(int(np.prod(s)) for s in trainable.values()) == N_TRAINABLE


def test_moving_statistics_match_checkpoint(model):
    variables = _read_tsv()
    stats = {
        k: v for k, v in variables.items() if k.endswith(("/moving_mean", "/moving_variance")) and "/Adam" not in k
    }
    assert len(stats) == 64
    buffers = dict(model.named_buffers())
    for name, shape in stats.items():
        assert tuple(buffers[CHECKPOINT_NAMES[name].torch_name].shape) == shape, name
    assert sum(int(np.prod(s)) for s in stats.values()) == N_BN_STATS


def test_parameter_counts(model):
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 881_254
    running = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert running == 786


def test_spec_block_breakdown(model):
    def count(prefix):
        return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))

    assert count("pool_bn") == 2
    assert count("conv_in") == 3_048
    assert count("stacks.0") + count("skips.0") + count("downs.0") == 61_672
    assert count("stacks.1") + count("skips.1") + count("downs.1") == 264_640
    assert count("stacks.2") + count("skips.2") == 534_320
    assert count("fuse") == 16_480
    assert count("conv2d_1") == 910
    assert count("conv2d_2") == 182


def test_dropout_placement(model):
    # Dropout after dense layers 1..n-1, after skip and down convs; none on B.
    for stack in model.stacks:
        flags = [layer.dropout is not None for layer in stack.layers]
        assert flags == [True] * (len(flags) - 1) + [False]
    assert all(m.dropout is not None for m in list(model.skips) + list(model.downs))
    assert model.conv_in.dropout is None and not model.conv_in.relu


def test_initialisation_scale():
    torch.manual_seed(1)
    m = STNeuroNet()
    w = m.stacks[2].layers[9].conv.weight  # fan_in 27 * 168
    std = (2.0 / w[0].numel()) ** 0.5
    assert w.abs().max() <= 2 * std + 1e-7
    # Truncated at 2 SD: realised SD is about 0.88 of the parameter.
    assert 0.8 * std < w.std().item() < 0.95 * std
    assert torch.all(m.fuse.bias == 0) and torch.all(m.conv2d_1.bias == 0)


@pytest.mark.parametrize("tf_compat", [False, True])
def test_forward_shape_and_eval_determinism(tf_compat):
    torch.manual_seed(0)
    m = STNeuroNet(tf_compat=tf_compat).eval()
    x = torch.randn(1, 1, 16, 24, 24)
    with torch.no_grad():
        y1 = m(x)
        y2 = m(x)
    assert y1.shape == (1, 2, 24, 24)
    assert torch.equal(y1, y2)
    assert torch.all(y1 >= 0)  # ReLU on the logits, as the authors did
    p = m.predict_proba(x)
    assert p.shape == (1, 24, 24)
    assert torch.all((p >= 0) & (p <= 1))


def test_training_leak_keeps_negative_logits_and_defaults_to_relu():
    torch.manual_seed(0)
    m = STNeuroNet().eval()
    x = torch.randn(1, 1, 16, 24, 24)
    with torch.no_grad():
        z = m.conv2d_2(torch.relu(m.conv2d_1(m.features(x)[:, :, :16].amax(dim=2))))
        relu, leak = m(x), m(x, logit_slope=0.01)
        assert torch.equal(relu, m(x, logit_slope=0.0))
    assert torch.allclose(leak, torch.where(z >= 0, z, 0.01 * z), atol=1e-6)
    assert torch.allclose(relu, z.clamp_min(0), atol=1e-6)


def test_tf_compat_changes_numerics_and_propagates():
    torch.manual_seed(0)
    m = STNeuroNet().eval()
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.no_grad():
        a = m.features(x)
        m.tf_compat = True
        assert all(layer.tf_compat for layer in m.stacks[0].layers)
        assert m.pool_bn.tf_compat
        b = m.features(x)
    assert a.shape == b.shape == (1, 10, 8, 16, 16)
    assert not torch.allclose(a, b)


def test_odd_sizes_are_padded_and_cropped():
    torch.manual_seed(0)
    m = STNeuroNet().eval()
    x = torch.randn(2, 1, 11, 21, 18)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (2, 2, 21, 18)
    # Cropping back is consistent with running on the explicitly padded input.
    xp = pad_to_multiple(x, 8, "minimum", dims=(3, 4))
    with torch.no_grad():
        yp = m(xp)
    torch.testing.assert_close(y, yp[:, :, :21, :18])
    with pytest.raises(ValueError):
        m(torch.randn(1, 16, 16, 16))


def test_pad_to_multiple_minimum_matches_numpy():
    x = torch.rand(1, 1, 5, 7, 6)
    out = pad_to_multiple(x, 8, "minimum")
    ref = np.pad(x.numpy(), [(0, 0), (0, 0), (0, 3), (0, 1), (0, 2)], mode="minimum")
    np.testing.assert_array_equal(out.numpy(), ref)


def test_batch_grad_and_memory_efficient_paths_agree():
    torch.manual_seed(0)
    m = STNeuroNet().eval()
    x = torch.randn(2, 1, 8, 16, 16)
    with torch.no_grad():
        fast = m(x)
    slow = m(x)  # grad enabled: concatenation path
    torch.testing.assert_close(fast, slow.detach())


def test_training_step_and_tf_batchnorm_statistics():
    torch.manual_seed(0)
    m = STNeuroNet(tf_compat=True).train()
    x = torch.randn(2, 1, 8, 16, 16)
    logits = m(x)
    logits.sum().backward()
    assert m.conv_in.conv.weight.grad is not None
    # Zero-debiased EMA: after the first step the moving stats equal the batch
    # statistics (population variance) of the pooled input branch.
    from stnn.tf_compat import avg_pool_same

    pooled = avg_pool_same(x, 3, 2, tf_compat=True)
    torch.testing.assert_close(m.pool_bn.running_mean, pooled.mean().view(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m.pool_bn.running_var, pooled.var(unbiased=False).view(1), rtol=1e-5, atol=1e-6)


def test_tf_variable_roundtrip():
    torch.manual_seed(0)
    src = STNeuroNet().eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        for n, b in src.named_buffers():
            if n.endswith("running_mean"):
                b.normal_()
    tf_vars = export_tf_variables(src)
    assert tf_vars["DenseVNet2D/conv_bn/conv_/w"].shape == (5, 5, 5, 1, 24)
    assert tf_vars["DenseVNet2D/conv2d_1/kernel"].shape == (3, 3, 10, 2)
    tf_vars["DenseVNet2D/conv_bn/conv_/w/Adam"] = np.zeros((5, 5, 5, 1, 24), np.float32)
    dst = STNeuroNet().eval()
    ignored = load_tf_variables(dst, tf_vars)
    assert ignored == ["DenseVNet2D/conv_bn/conv_/w/Adam"]
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))
    del tf_vars["DenseVNet2D/conv/conv_/b"]
    with pytest.raises(KeyError):
        load_tf_variables(dst, tf_vars)


def test_kernel_orientation_x_is_width():
    # A TF kernel that is non-zero only at kx=2 (x = last offset) must act along W.
    m = STNeuroNet()
    tf_vars = export_tf_variables(m)
    w = np.zeros((3, 3, 10, 10), np.float32)
    w[2, 1, 0, 0] = 1.0
    tf_vars["DenseVNet2D/conv2d/kernel"] = w
    load_tf_variables(m, tf_vars)
    k = m.conv2d_1.weight.detach()
    assert k[0, 0, 1, 2] == 1.0 and k.abs().sum() == 1.0


@pytest.mark.slow
def test_spec_shape_table_on_training_window():
    """Intermediate shapes of spec section 1 for a 144x144x120 window (~10 s on CPU)."""
    m = STNeuroNet(tf_compat=True).eval()
    shapes = {}

    def hook(name):
        def record(_module, _inputs, output):
            shapes[name] = tuple(output.shape[1:])

        return record

    m.conv_in.register_forward_hook(hook("B"))
    for i in range(3):
        m.stacks[i].register_forward_hook(hook(f"S{i + 1}"))
        m.skips[i].register_forward_hook(hook(f"skip{i + 1}"))
    for i in range(2):
        m.downs[i].register_forward_hook(hook(f"down{i + 1}"))
    with torch.no_grad():
        y = m(torch.randn(1, 1, 120, 144, 144))
    assert y.shape == (1, 2, 144, 144)
    # (C, T, H, W): TF's x*y*t*C with t first.
    assert shapes["B"] == (24, 60, 72, 72)
    assert shapes["S1"] == (45, 60, 72, 72)
    assert shapes["skip1"] == (12, 60, 72, 72)
    assert shapes["down1"] == (24, 30, 36, 36)
    assert shapes["S2"] == (104, 30, 36, 36)
    assert shapes["down2"] == (24, 15, 18, 18)
    assert shapes["S3"] == (184, 15, 18, 18)
    assert shapes["skip3"] == (24, 15, 18, 18)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("tf_compat", [False, True])
def test_cuda_matches_cpu(tf_compat):
    torch.manual_seed(0)
    m = STNeuroNet(tf_compat=tf_compat).eval()
    x = torch.randn(1, 1, 16, 24, 24)
    with torch.no_grad():
        ref = m(x)
        out = m.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-4)
