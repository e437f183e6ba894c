"""Fast and tiled inference (``ipassr.tiling``) equal the plain eval-mode forward."""

from __future__ import annotations

import pytest
import torch

from ipassr.errors import IpassrError
from ipassr.model import IPASSR
from ipassr.tiling import (InferencePlan, plan_inference, receptive_radius, stage_halos,
                           stereo_forward)


def _randomised(network: IPASSR) -> IPASSR:
    """Non-trivial BatchNorm affine parameters so normalisation errors would show."""
    torch.manual_seed(7)
    if network.attention is not None:
        with torch.no_grad():
            network.attention.norm.weight.uniform_(0.5, 1.5)
            network.attention.norm.bias.uniform_(-0.5, 0.5)
    return network.eval()


def _plain(network, left, right):
    with torch.no_grad():
        return network(left, right)


def _assert_close(actual, expected):
    """SR outputs (left, right) equal to float32 rounding."""
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=2e-6)


VARIANTS = [
    (2, {}),
    (4, {}),
    (3, {"use_whitening": False, "use_valid_mask": False}),
    (2, {"use_attention": False}),
]


@pytest.mark.parametrize("scale,options", VARIANTS)
def test_untiled_and_tiled_equal_plain_forward(scale, options):
    network = _randomised(IPASSR(scale, **options))
    torch.manual_seed(11)
    left, right = torch.rand(2, 3, 27, 19), torch.rand(2, 3, 27, 19)
    expected = _plain(network, left, right)
    untiled = stereo_forward(network, left, right, plan=InferencePlan(False, 27, 4, 0))
    tiled = stereo_forward(network, left, right, plan=InferencePlan(True, 8, 3, 0))
    _assert_close(untiled, expected)
    _assert_close(tiled, expected)


def test_tiled_equals_untiled_with_bands_smaller_than_halo():
    network = _randomised(IPASSR(2))
    torch.manual_seed(12)
    left, right = torch.rand(1, 3, 45, 16), torch.rand(1, 3, 45, 16)
    untiled = stereo_forward(network, left, right, plan=InferencePlan(False, 45, 45, 0))
    for band in (8, 13, 44):
        tiled = stereo_forward(network, left, right, plan=InferencePlan(True, band, 2, 0))
        _assert_close(tiled, untiled)


def test_details_match_plain_attention_maps():
    network = _randomised(IPASSR(2))
    torch.manual_seed(13)
    left, right = torch.rand(1, 3, 10, 14), torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        *_, maps = network(left, right, return_attention=True)
    for plan in (InferencePlan(False, 10, 3, 0), InferencePlan(True, 8, 2, 0)):
        *_, details = stereo_forward(network, left, right, plan=plan, return_details=True)
        torch.testing.assert_close(details.valid_left, maps.valid_left, rtol=0, atol=1e-5)
        torch.testing.assert_close(details.valid_right, maps.valid_right, rtol=0, atol=1e-5)
        columns = torch.arange(14.0)
        offset = maps.right_to_left @ columns - columns
        torch.testing.assert_close(details.offset_left[:, 0], offset, rtol=0, atol=1e-4)


def test_halos_follow_the_architecture():
    network = IPASSR(4)
    assert receptive_radius(network.feature_group) == 16
    assert stage_halos(network) == {"extract": 17, "embed": 19, "fusion": 4, "reconstruct": 18}


def test_plan_tiles_only_when_needed():
    network = IPASSR(2)
    small = plan_inference(network, 1, 93, 310, max_memory=2 ** 30)
    assert not small.tiled and small.attention_rows >= 1
    large = plan_inference(network, 1, 1080, 1920, max_memory=4 * 2 ** 30)
    assert large.tiled and 8 <= large.band_rows < 1080
    assert large.estimated_bytes <= 4 * 2 ** 30


def test_plan_refuses_what_cannot_fit_even_tiled():
    network = IPASSR(2)
    with pytest.raises(IpassrError, match=r"1920x1080 pair.*needs at least .*even when tiled.*"
                                          r"memory budget is 1\.00 GiB.*at most about \d+ rows fit"):
        plan_inference(network, 1, 1080, 1920, max_memory=2 ** 30)
    with pytest.raises(IpassrError, match="not even one band"):
        plan_inference(network, 1, 1080, 1920, max_memory=2 ** 20)


def test_training_mode_is_refused():
    network = IPASSR(2)
    with pytest.raises(ValueError, match="eval"):
        stereo_forward(network, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
