"""Fused convolutions (ipassr.inference.fast.fusion) and concatenation-free convolutions equal the plain ops."""

import pytest
import torch
import torch.nn.functional as F

from ipassr.inference.fast import fusion as fused
from ipassr.inference.fast.stages import conv_of_concat

SLOPE = 0.1


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def _inputs(channels_last: bool, groups: int = 1):
    g = torch.Generator().manual_seed(0)
    x = _layout(torch.randn(2, 8, 7, 11, generator=g), channels_last)
    weight = torch.randn(12, 8 // groups, 3, 3, generator=g) * 0.2
    bias = torch.randn(12, generator=g)
    other = _layout(torch.randn(2, 12, 7, 11, generator=g), channels_last)
    return x, weight, bias, other


def test_oneDNN_fusion_is_available_in_the_cpu_build():
    # the fast path must not silently fall back on the build the project ships with
    assert fused.fusion_available()


@pytest.mark.parametrize("channels_last", [True, False])  # oneDNN path, then the fallback
@pytest.mark.parametrize("groups", [1, 2])
def test_fused_convolutions_equal_plain_ops(channels_last, groups):
    x, weight, bias, other = _inputs(channels_last, groups)
    with torch.inference_mode():
        assert fused._fusable(x, other) == channels_last
        plain = F.conv2d(x, weight, bias, 1, 1, 1, groups)
        torch.testing.assert_close(fused.conv(x, weight, bias, 1, groups), plain)
        torch.testing.assert_close(fused.conv(x, weight, bias, 1, groups, slope=SLOPE),
                                   F.leaky_relu(plain, SLOPE))
        torch.testing.assert_close(fused.conv_plus(x, other, weight, bias, 1, groups),
                                   plain + other)
        acc = other.clone()
        result = fused.conv_accumulate_(acc, x, weight, 1, groups)
        assert result.data_ptr() == acc.data_ptr()  # in place
        torch.testing.assert_close(acc, other + F.conv2d(x, weight, None, 1, 1, 1, groups))


def test_fused_convolutions_fall_back_under_autograd_and_half_precision():
    x, weight, bias, other = _inputs(True)
    weight.requires_grad_(True)
    out = fused.conv(x, weight, bias, 1, slope=SLOPE)  # grad mode on: plain ops, differentiable
    out.sum().backward()
    assert weight.grad is not None
    with torch.inference_mode():
        half = fused.conv_plus(x.bfloat16(), other.bfloat16(), weight.detach().bfloat16(),
                               bias.bfloat16(), 1)
        assert half.dtype == torch.bfloat16
        # outputs reach 9.1, where one bf16 step is 0.03; measured error 0.031
        torch.testing.assert_close(half.float(), F.conv2d(x, weight.detach(), bias, 1, 1) + other,
                                   atol=0.045, rtol=0)


@pytest.mark.parametrize("with_plus", [False, True])
def test_conv_of_concat_equals_the_convolution_of_the_concatenation(with_plus):
    g = torch.Generator().manual_seed(1)
    pieces = [torch.randn(2, c, 9, 13, generator=g).contiguous(memory_format=torch.channels_last)
              for c in (16, 8, 8)]
    weight = torch.randn(16, 32, 3, 3, generator=g) * 0.1
    bias = torch.randn(16, generator=g)
    plus = pieces[0] if with_plus else None
    with torch.inference_mode():
        expected = F.conv2d(torch.cat(pieces, dim=1), weight, bias, 1, 1)
        if with_plus:
            expected = expected + plus
        got = conv_of_concat(pieces, weight, bias, 1, plus=plus)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-6)


def test_fusion_disabled_is_restored_after():
    """Whole forwards with fusion on and off agree: tests/test_paths.py."""
    with fused.fusion_disabled():
        assert not fused._FUSED
    assert fused._FUSED
