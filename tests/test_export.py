"""``ipassr export``: ONNX and TorchScript files that reproduce PyTorch at other sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ipassr.models.checkpoint import load_network
from ipassr.cli import main
from ipassr.errors import IpassrError
from ipassr.inference.export import export_model, run_onnx, run_torchscript
from ipassr.models.ipassr import IPASSR, ExportForward


def test_export_forward_equals_the_network_in_eval_mode(conformance_dir):
    network = load_network(conformance_dir / "x2.pth.tar").eval()
    torch.manual_seed(0)
    left, right = torch.rand(2, 3, 9, 14), torch.rand(2, 3, 9, 14)
    with torch.no_grad():
        expected = network(left, right)
        actual = ExportForward(network)(left, right)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


def test_onnx_export_runs_in_onnx_runtime_at_any_size(tmp_path, conformance_dir):
    out = tmp_path / "x4.onnx"
    assert main(["export", "--weights", str(conformance_dir / "x4.pth.tar"), "--format", "onnx",
                 "--output", str(out)]) == 0
    network = load_network(conformance_dir / "x4.pth.tar").eval()
    torch.manual_seed(1)
    left, right = torch.rand(3, 3, 7, 19), torch.rand(3, 3, 7, 19)
    sr_left, sr_right = run_onnx(out, left.numpy(), right.numpy())
    with torch.no_grad():
        expected = network(left, right)
    assert sr_left.shape == (3, 3, 28, 76)
    np.testing.assert_allclose(sr_left, expected[0].numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(sr_right, expected[1].numpy(), rtol=0, atol=1e-4)


def test_torchscript_export_of_an_ablation_variant(tmp_path):
    """export_model already ran the file at another batch/height/width; load it once more."""
    network = IPASSR(2, use_valid_mask=False, use_whitening=False).eval()
    error = export_model(network, tmp_path / "m.pt", "torchscript")
    assert error is not None and error <= 1e-5
    torch.manual_seed(2)
    left, right = torch.rand(1, 3, 5, 8), torch.rand(1, 3, 5, 8)
    actual = run_torchscript(tmp_path / "m.pt", left, right)
    with torch.no_grad():
        expected = network(left, right)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


class _SizeBakingIPASSR(IPASSR):
    """A variant whose forward turns a size into a Python number: tracing freezes it."""

    def reconstruct(self, views, own, converted):
        width = int(views.shape[-1])  # a Python int: the trace records the example's width
        return super().reconstruct(views, own, converted)[..., :width * self.scale]


def test_a_variant_that_bakes_a_size_is_refused_and_nothing_written(tmp_path):
    out = tmp_path / "bad.pt"
    with pytest.raises(IpassrError, match=r"cannot be exported to torchscript with a dynamic "
                                          r"size.*differs from PyTorch"):
        export_model(_SizeBakingIPASSR(2).eval(), out, "torchscript")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_format_and_missing_weights(tmp_path, capsys):
    with pytest.raises(IpassrError, match="unknown export format"):
        export_model(IPASSR(2), tmp_path / "m", "tflite")
    assert main(["export", "--weights", str(tmp_path / "none.pth"), "--output",
                 str(tmp_path / "m.onnx")]) == 2
    assert "none.pth" in capsys.readouterr().err
