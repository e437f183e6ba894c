"""The memory-bounded biPAM (``ipassr.inference.fast.attention``) equals the plain biPAM to float32 rounding."""

from __future__ import annotations

import pytest
import torch

from ipassr.models.bipam import (BiPAM, parallax_attention, relax, relax_along, row_transfer,
                              valid_mask)
from ipassr.inference.fast.attention import (attention_row_bytes, chunked_parallax_fusion, expected_offset,
                                   rows_per_chunk, subnormals_are_flushed, subnormals_flushed,
                                   valid_masks_from_softmaxes)
from ipassr.errors import IpassrError


def _plain_fusion(query, key, left, right, use_valid_mask=True):
    """The reference-style computation: full maps, relaxed map, masks, eq. 5."""
    m_rl, m_lr = parallax_attention(query, key)
    if use_valid_mask:
        v_l, v_r = valid_mask(m_rl, m_lr), valid_mask(m_lr, m_rl)
    else:
        v_l = v_r = torch.ones_like(left[:, :1])
    out_l = left * (1 - v_l) + row_transfer(m_rl, right) * v_l
    out_r = right * (1 - v_r) + row_transfer(m_lr, left) * v_r
    return out_l, out_r, (m_rl, m_lr, v_l, v_r)


@pytest.mark.parametrize("shape", [(1, 7, 13, 17), (2, 5, 9, 11), (3, 4, 1, 3), (1, 3, 6, 1)])
@pytest.mark.parametrize("rows", [1, 2, 100])
def test_chunked_fusion_equals_plain_on_odd_sizes(shape, rows):
    torch.manual_seed(sum(shape) + rows)
    batch, channels, height, width = shape
    query, key = 3 * torch.randn(batch, channels, height, width), 3 * torch.randn(batch, channels, height, width)
    left, right = torch.randn(batch, 6, height, width), torch.randn(batch, 6, height, width)
    expected_l, expected_r, (m_rl, m_lr, v_l, v_r) = _plain_fusion(query, key, left, right)
    out_l, out_r, details = chunked_parallax_fusion(query, key, left, right, rows=rows,
                                                    with_details=True)
    torch.testing.assert_close(out_l, expected_l, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_r, expected_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(details.valid_left, v_l, rtol=0, atol=1e-5)
    torch.testing.assert_close(details.valid_right, v_r, rtol=0, atol=1e-5)
    torch.testing.assert_close(details.offset_left[:, 0], expected_offset(m_rl), rtol=0, atol=1e-4)
    torch.testing.assert_close(details.offset_right[:, 0], expected_offset(m_lr), rtol=0, atol=1e-4)


def test_chunked_fusion_without_valid_mask_uses_converted_features():
    torch.manual_seed(1)
    query, key = torch.randn(2, 4, 5, 9), torch.randn(2, 4, 5, 9)
    left, right = torch.randn(2, 3, 5, 9), torch.randn(2, 3, 5, 9)
    expected_l, expected_r, _ = _plain_fusion(query, key, left, right, use_valid_mask=False)
    out_l, out_r, _ = chunked_parallax_fusion(query, key, left, right, use_valid_mask=False, rows=2)
    torch.testing.assert_close(out_l, expected_l, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_r, expected_r, rtol=1e-5, atol=1e-6)


def test_masks_from_softmaxes_match_relaxed_product_for_peaked_maps():
    """Near one-hot maps (a real disparity) give masks near 1, as with the 5-fold relaxed map."""
    torch.manual_seed(2)
    score = 50 * torch.randn(1, 3, 12, 12)
    row_softmax, col_softmax = torch.softmax(score, -1), torch.softmax(score, -2)
    v_l, v_r = valid_masks_from_softmaxes(row_softmax, col_softmax)
    m_lr = col_softmax.transpose(-1, -2)
    torch.testing.assert_close(v_l, valid_mask(row_softmax, m_lr)[:, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(v_r, valid_mask(m_lr, row_softmax)[:, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_relax_along_the_last_axis_is_relax_of_the_transposed_map(size):
    """The fast path relaxes M_L->R^T along its last axis, into a reused buffer."""
    maps = torch.rand(2, size, size)
    out = torch.empty_like(maps)
    relaxed = relax_along(maps, dim=-1, out=out)
    assert relaxed.data_ptr() == out.data_ptr()
    torch.testing.assert_close(relaxed, relax(maps.transpose(-1, -2)).transpose(-1, -2))


def test_bipam_module_path_matches_chunked(tmp_path):
    """The whole module: embed with BiPAM, then fuse in chunks == BiPAM.forward in eval mode."""
    torch.manual_seed(3)
    bipam = BiPAM(8, 32).eval()
    feat_l, feat_r = torch.randn(2, 8, 6, 10), torch.randn(2, 8, 6, 10)
    hier_l, hier_r = torch.randn(2, 32, 6, 10), torch.randn(2, 32, 6, 10)
    with torch.no_grad():
        expected_l, expected_r, _ = bipam(feat_l, feat_r, hier_l, hier_r)
        query, key = bipam.embed(hier_l, bipam.query), bipam.embed(hier_r, bipam.key)
        out_l, out_r, _ = chunked_parallax_fusion(query, key, feat_l, feat_r, rows=4)
    torch.testing.assert_close(out_l, expected_l, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_r, expected_r, rtol=1e-5, atol=1e-5)


def test_chunk_height_follows_budget():
    row = attention_row_bytes(2, 100)
    assert row == 4 * 2 * 100 * 100 * 4
    assert rows_per_chunk(2, 50, 100, 3 * row + 1) == 3
    assert rows_per_chunk(2, 50, 100, 10 ** 12) == 50


def test_budget_below_one_row_names_the_minimum():
    with pytest.raises(IpassrError, match=r"too small for one image row.*minimum is 3\.8 MiB"):
        rows_per_chunk(1, 10, 500, 1000)


def test_subnormal_flushing_is_scoped_to_the_block():
    torch.set_flush_denormal(False)
    assert not subnormals_are_flushed()
    with subnormals_flushed():
        assert subnormals_are_flushed()
        assert torch.tensor([1e-39]).mul(1.0).item() == 0.0
    assert not subnormals_are_flushed()
    torch.set_flush_denormal(True)  # a caller who flushes already keeps flushing
    try:
        with subnormals_flushed():
            pass
        assert subnormals_are_flushed()
    finally:
        torch.set_flush_denormal(False)


def test_flushing_subnormals_leaves_the_attention_result_unchanged():
    """Large scores make softmax maps full of subnormals; flushing them changes nothing visible."""
    torch.manual_seed(3)
    query, key = 6 * torch.randn(1, 16, 6, 40), 6 * torch.randn(1, 16, 6, 40)
    left, right = torch.randn(1, 8, 6, 40), torch.randn(1, 8, 6, 40)
    maps = torch.softmax(torch.einsum("bchi,bchj->bhij", query, key), dim=-1)
    assert ((maps > 0) & (maps < torch.finfo(torch.float32).tiny)).any()  # subnormals occur
    torch.set_flush_denormal(False)
    kept = chunked_parallax_fusion(query, key, left, right, rows=2, with_details=True)
    with subnormals_flushed():
        flushed = chunked_parallax_fusion(query, key, left, right, rows=2, with_details=True)
    for a, b in [(kept[0], flushed[0]), (kept[1], flushed[1]),
                 *zip(kept[2][:4], flushed[2][:4])]:
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
