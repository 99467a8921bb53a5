"""Inference copies (batch norm folded, bfloat16 trunk), the precision choice and ``perf --train`` options."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from datasets.errors import InputError
from stnn import precision as prec
from stnn.cli import build_parser, main
from stnn.fuse import fuse_batchnorm, inference_copy
from stnn.model import ConvBNAct, STNeuroNet
from stnn.train import TrainConfig


def _model_with_trained_bn(tf_compat: bool = False) -> STNeuroNet:
    """A random network whose BN statistics and affine parameters are far from the identity."""
    torch.manual_seed(0)
    m = STNeuroNet(tf_compat=tf_compat)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm3d)):
            n = bn.num_features
            bn.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
            bn.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
            bn.bias.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
    return m.eval()


@pytest.mark.parametrize("tf_compat", [False, True])
def test_fused_fp32_equals_unfused(tf_compat):
    m = _model_with_trained_bn(tf_compat)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randn(2, 1, 20, 24, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = torch.softmax(m(x), dim=1)[:, 1]
        fused = fuse_batchnorm(m)
        out = torch.softmax(fused(x), dim=1)[:, 1]
    assert float((out - ref).abs().max()) < 1e-5
    # The copy has no BN left in its conv blocks; the original is untouched.
    assert all(isinstance(mod.bn, torch.nn.Identity) for mod in fused.modules() if isinstance(mod, ConvBNAct))
    assert all(isinstance(mod.bn, torch.nn.BatchNorm3d) for mod in m.modules() if isinstance(mod, ConvBNAct))
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_inference_path_equals_training_form_on_padded_input():
    # The no-grad forward upsamples and maxes a few frames at a time; it must equal the plain form.
    m = _model_with_trained_bn()
    x = torch.randn(1, 1, 13, 21, 11)
    with torch.no_grad():
        fast = m(x)
    slow = m(x).detach()
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


def test_bf16_decisions_match_fp32():
    m = _model_with_trained_bn()
    x = torch.randn(1, 1, 24, 40, 40, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        p32 = torch.softmax(m(x), dim=1)[:, 1]
        p16 = torch.softmax(inference_copy(m, torch.bfloat16)(x), dim=1)[:, 1]
    assert p16.dtype == torch.float32
    # Decisions at the median probability, so that both classes are well populated.
    cut = float(p32.median())
    assert float(((p16 > cut) == (p32 > cut)).float().mean()) >= 0.99
    assert float((p16 - p32).abs().max()) < 0.05


def test_precision_choice(monkeypatch, caplog):
    assert prec.resolve_precision("fp32", "cpu") == torch.float32
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: True)
    assert prec.resolve_precision("auto", "cpu") == torch.bfloat16
    assert prec.resolve_precision("bf16", "cpu") == torch.bfloat16
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: False)
    assert prec.resolve_precision("auto", "cpu") == torch.float32
    prec._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="stnn.precision"):
        assert prec.resolve_precision("bf16", "cpu") == torch.float32
    assert "no native bfloat16" in caplog.text
    with pytest.raises(InputError, match="precision must be one of"):
        prec.resolve_precision("fp16", "cpu")
    assert prec.precision_name(torch.bfloat16) == "bf16"


def test_native_bf16_detection_follows_cpu_flags(monkeypatch):
    prec.cpu_has_native_bf16.cache_clear()
    try:
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": False, "amx_bf16": False})
        assert prec.cpu_has_native_bf16() is False
        prec.cpu_has_native_bf16.cache_clear()
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": False, "amx_bf16": True})
        assert prec.cpu_has_native_bf16() is True
    finally:
        prec.cpu_has_native_bf16.cache_clear()


def test_segment_records_precision_and_falls_back(monkeypatch):
    from stnn.infer import segment

    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: False)
    movie = np.random.default_rng(0).poisson(100, size=(16, 8, 8)).astype(np.uint16)
    res = segment(movie, STNeuroNet(), fps=6.0, um_per_px=1.0, device="cpu", batch_frames=16, precision="bf16")
    assert res.timings.precision == "fp32"
    assert res.timings.as_dict()["precision"] == "fp32"
    with pytest.raises(InputError, match="precision"):
        segment(movie, STNeuroNet(), fps=6.0, um_per_px=1.0, device="cpu", precision="half")


def test_train_config_precision():
    assert TrainConfig().precision == "auto"
    with pytest.raises(InputError, match="precision"):
        TrainConfig(precision="fp64")


def test_perf_train_options():
    args = build_parser().parse_args(
        ["perf", "--train", "--crop", "32,48", "--frames", "16", "--batch", "2", "--precision", "fp32"]
    )
    assert args.train and tuple(args.crop) == (32, 48) and args.frames == 16 and args.batch == 2
    assert args.precision == "fp32"
    defaults = build_parser().parse_args(["perf", "--train"])
    assert tuple(defaults.crop) == (64, 64) and defaults.frames is None and defaults.batch == 3
    assert defaults.precision == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["perf", "--precision", "fp16"])
    assert (
        build_parser()
        .parse_args(["segment", "m.h5", "--out", "o.npz", "--fps", "30", "--um-per-px", "1", "--precision", "bf16"])
        .precision
        == "bf16"
    )


def test_perf_train_runs_and_reports(capsys):
    code = main(
        [
            "perf",
            "--train",
            "--crop",
            "16",
            "--frames",
            "8",
            "--batch",
            "1",
            "--iterations",
            "1",
            "--rounds",
            "1",
            "--device",
            "cpu",
            "--json",
        ]
    )
    assert code == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["crop"] == [16, 16] and out["frames"] == 8 and out["batch"] == 1
    assert "fp32" in out["s_per_iteration"] and out["s_per_iteration"]["fp32"] > 0


def test_perf_train_bad_options(capsys):
    assert main(["perf", "--train", "--crop", "4", "--device", "cpu"]) == 2
    assert "crop" in capsys.readouterr().err
