"""Network structure, variants and the building blocks of biPAM."""

from __future__ import annotations

import pytest
import torch

from ipassr.models.bipam import relax, valid_mask
from ipassr.models.ipassr import IPASSR, count_parameters


def random_pair(batch=1, height=10, width=17, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, height, width, generator=generator),
            torch.rand(batch, 3, height, width, generator=generator))


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_any_integer_scale_gives_both_views_at_scale(scale):
    torch.manual_seed(0)
    model = IPASSR(scale).eval()
    left, right = random_pair(batch=2)
    with torch.no_grad():
        sr_left, sr_right = model(left, right)
    assert sr_left.shape == sr_right.shape == (2, 3, 10 * scale, 17 * scale)


def test_return_attention_shapes():
    model = IPASSR(2).train()
    left, right = random_pair(batch=2, height=6, width=9)
    _, _, maps = model(left, right, return_attention=True)
    assert maps.right_to_left.shape == maps.left_to_right.shape == (2, 6, 9, 9)
    assert maps.valid_left.shape == maps.valid_right.shape == (2, 1, 6, 9)
    torch.testing.assert_close(maps.right_to_left.sum(-1), torch.ones(2, 6, 9))


def test_siamese_swapping_views_swaps_outputs():
    """One network for both views: swapping inputs swaps the outputs exactly."""
    torch.manual_seed(1)
    model = IPASSR(2).eval()
    left, right = random_pair()
    # Swapping views transposes the score map; the network is symmetric except for its distinct
    # query/key projections, so make them equal to test the Siamese wiring.
    model.attention.key.load_state_dict(model.attention.query.state_dict())
    with torch.no_grad():
        a_left, a_right = model(left, right)
        b_left, b_right = model(right, left)
    torch.testing.assert_close(a_left, b_right, atol=1e-5, rtol=0)
    torch.testing.assert_close(a_right, b_left, atol=1e-5, rtol=0)


def test_inference_batchnorm_uses_each_views_own_statistics():
    torch.manual_seed(2)
    model = IPASSR(2).eval()
    left, right = random_pair(batch=3)
    with torch.no_grad():
        batched = model(left, right)
        singles = [model(left[i:i + 1], right[i:i + 1]) for i in range(3)]
    for view in (0, 1):
        torch.testing.assert_close(batched[view], torch.cat([s[view] for s in singles]),
                                   atol=1e-5, rtol=0)


def test_inference_ignores_running_statistics():
    torch.manual_seed(3)
    model = IPASSR(2).eval()
    left, right = random_pair()
    with torch.no_grad():
        before = model(left, right)[0]
        model.attention.norm.running_mean.fill_(100.0)
        model.attention.norm.running_var.fill_(1e-3)
        after = model(left, right)[0]
    torch.testing.assert_close(before, after)


def reference_relax(m, pixels=2):
    """The reference's M_Relax: zero-padded shifted copies concatenated, then summed."""
    shifted = [m]
    for i in range(pixels):
        shifted.append(torch.nn.functional.pad(m[:, :-1 - i, :], (0, 0, i + 1, 0)))
    for i in range(pixels):
        shifted.append(torch.nn.functional.pad(m[:, i + 1:, :], (0, 0, 0, i + 1)))
    return torch.stack(shifted, 1).sum(1)


def test_relax_matches_reference_formulation():
    m = torch.rand(5, 11, 11)
    torch.testing.assert_close(relax(m), reference_relax(m))


def test_valid_mask_is_high_where_cycle_is_consistent():
    """Identity correspondences are cycle-consistent: V = tanh(5 * 1)."""
    eye = torch.eye(8).expand(1, 4, 8, 8)
    mask = valid_mask(eye, eye)
    torch.testing.assert_close(mask, torch.full((1, 1, 4, 8), torch.tanh(torch.tensor(5.0)).item()))


@pytest.mark.parametrize("variant, params", [
    ({}, 1_427_851),
    ({"use_attention": False}, None),
    ({"use_whitening": False}, 1_427_851),
    ({"use_valid_mask": False}, 1_427_851),
])
def test_ablation_variants_run(variant, params):
    model = IPASSR(4, **variant).train()
    left, right = random_pair(height=6, width=12)
    sr_left, sr_right, maps = model(left, right, return_attention=True)
    assert sr_left.shape == (1, 3, 24, 48)
    if params is not None:
        assert count_parameters(model) == params
    if variant.get("use_attention") is False:
        assert maps is None and count_parameters(model) < 1_427_851
    if variant.get("use_valid_mask") is False:
        assert torch.all(maps.valid_left == 1)


def test_single_view_variant_ignores_the_other_view():
    torch.manual_seed(4)
    model = IPASSR(2, use_attention=False).eval()
    left, right = random_pair()
    with torch.no_grad():
        a = model(left, right)[0]
        b = model(left, torch.zeros_like(right))[0]
    torch.testing.assert_close(a, b)


def test_mismatched_views_are_rejected():
    with pytest.raises(ValueError, match="differ"):
        IPASSR(2)(torch.rand(1, 3, 4, 5), torch.rand(1, 3, 4, 6))


def test_invalid_scale_is_rejected():
    with pytest.raises(ValueError, match="positive integer"):
        IPASSR(0)


def test_asymmetric_loss_supervises_only_the_left_view():
    from ipassr.models.losses import LossConfig, ipassr_loss

    torch.manual_seed(5)
    model = IPASSR(2).train()
    left, right = random_pair(batch=2, height=6, width=12)
    hr_left, hr_right = torch.rand(2, 3, 12, 24), torch.rand(2, 3, 12, 24)
    sr_left, _, maps = model(left, right, return_attention=True)
    terms = ipassr_loss(sr_left, None, hr_left, hr_right, left, right, maps, 2,
                        LossConfig(views="left"))
    assert set(terms) == {"sr", "photo", "smooth", "cycle", "total"}
    torch.testing.assert_close(terms["sr"], torch.nn.functional.l1_loss(sr_left, hr_left))
