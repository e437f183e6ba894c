"""Network structure, variants and the building blocks of biPAM."""

from __future__ import annotations

import pytest
import torch

from ipassr.models.bipam import relax, valid_mask
from ipassr.models.configs import LossConfig
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


@pytest.mark.parametrize("size, pixels", [(3, 2), (2, 2), (11, 1)])
def test_relax_of_narrow_maps_and_other_reaches(size, pixels):
    """A shift of 2 still fits a 3-row map; relax passes its reach on."""
    m = torch.rand(2, size, size)
    torch.testing.assert_close(relax(m, pixels), reference_relax(m, pixels))


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
        assert maps.valid_left.shape == maps.valid_right.shape == (1, 1, 6, 12)
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


def test_ipassr_loss_switches_each_term_off_and_to_its_plain_form():
    """Each stereo term off alone leaves the others as they were; the plain forms use the LR
    images (photo, cycle) and down(SR) (cons); no maps leave L_SR alone, over both views."""
    from torch.nn.functional import l1_loss

    from ipassr.models.losses import (bicubic, consistency_loss, cycle_loss, ipassr_loss,
                                      photometric_loss, sr_loss)

    torch.manual_seed(6)
    left, right = random_pair(height=6, width=12)
    hr = torch.rand(1, 3, 12, 24), torch.rand(1, 3, 12, 24)
    with torch.no_grad():
        sr_left, sr_right, maps = IPASSR(2).train()(left, right, return_attention=True)

    def terms(**config):
        return ipassr_loss(sr_left, sr_right, *hr, left, right, maps, 2, LossConfig(**config))

    full = terms()
    for off in ("photo", "smooth", "cycle", "cons"):
        ablated = terms(**{off: False})
        assert set(ablated) == set(full) - {off}
        for kept in set(ablated) - {"total"}:
            torch.testing.assert_close(ablated[kept], full[kept])
    plain = terms(residual_photo=False, residual_cycle=False, residual_cons=False)
    for name, expected in (("photo", photometric_loss(left, right, maps)),
                           ("cycle", cycle_loss(left, right, maps)),
                           ("cons", consistency_loss(bicubic(sr_left, 0.5), bicubic(sr_right, 0.5),
                                                     maps))):
        torch.testing.assert_close(plain[name], expected)
        assert abs(float(plain[name]) - float(full[name])) > 1e-3, name
    no_maps = ipassr_loss(sr_left, sr_right, *hr, left, right, None, 2)
    assert set(no_maps) == {"sr", "total"}
    both_views = l1_loss(sr_left, hr[0]) + l1_loss(sr_right, hr[1])
    torch.testing.assert_close(no_maps["total"], both_views)
    torch.testing.assert_close(sr_loss(sr_left, sr_right, *hr), both_views)


def test_ipassr_loss_sums_in_the_reference_order(monkeypatch):
    """SR + w*cons + w*(photo + smooth + cycle), bit for bit, as the reference sums: with these
    term values any other order rounds differently in float32 (1.0200001 against 1.0199999)."""
    from ipassr.models import losses

    values = {"sr_loss": 0.6, "consistency_loss": 0.1, "photometric_loss": 0.3,
              "smoothness_loss": 0.9, "cycle_loss": 2.9}
    for name, value in values.items():
        monkeypatch.setattr(losses, name, lambda *args, value=value: torch.tensor(value))
    for name in ("lr_residuals", "_consistency_inputs"):
        monkeypatch.setattr(losses, name, lambda *args: (None, None))
    sr, cons, photo, smooth, cycle = (torch.tensor(value) for value in values.values())
    lr, hr, maps = torch.zeros(1, 3, 2, 4), torch.zeros(1, 3, 4, 8), object()

    def total(sr_right=hr, **config):
        terms = losses.ipassr_loss(hr, sr_right, hr, hr, lr, lr, maps, 2, LossConfig(**config))
        return terms["total"]

    assert torch.equal(total(), sr + 0.1 * cons + 0.1 * (photo + smooth + cycle))
    assert torch.equal(total(None, views="left"), sr + 0.1 * (photo + smooth + cycle))
    assert torch.equal(total(sr=False), 0.1 * cons + 0.1 * (photo + smooth + cycle))


def test_bipam_module_defaults_are_the_papers_and_groups_reach_the_transition():
    from ipassr.models.bipam import BiPAM

    bipam = BiPAM()
    assert bipam.use_whitening and bipam.use_valid_mask
    query = bipam.query
    assert (query.in_channels, query.out_channels, query.groups) == (256, 64, 4)
    assert BiPAM(16, 32, groups=2).transition.conv1.groups == 2


def test_attention_maps_under_autocast_are_computed_in_float32():
    """bf16 would round the large unscaled scores by whole units: autocast is off inside."""
    from ipassr.models.bipam import parallax_attention

    generator = torch.Generator().manual_seed(7)
    query, key = (20 * torch.randn(1, 8, 3, 10, generator=generator).bfloat16() for _ in range(2))
    exact = parallax_attention(query.float(), key.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps = parallax_attention(query, key)
    for ours, reference in zip(maps, exact):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, reference)
