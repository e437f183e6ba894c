"""Pieces of the fast path (``ipassr.inference.fast``): stages, planning, details, budgets. That every
path gives the plain forward's output is tests/test_paths.py."""

from __future__ import annotations

import re

import pytest
import torch

from ipassr.errors import IpassrError
from ipassr.models.ipassr import IPASSR, ResidualDenseBlock
from ipassr.models.bipam import BiPAM
from ipassr.sizes import FLOAT_BYTES, format_bytes, parse_memory_size
from ipassr.inference.fast import InferencePlan, plan_inference, stage_halos, stereo_forward
from ipassr.inference.fast.plan import BAND_CHANNELS, MIN_BAND_ROWS, receptive_radius
from ipassr.inference.fast.stages import dense_block, embed, normalize


def _network(scale: int, **options) -> IPASSR:
    """A seeded random network with non-trivial BatchNorm affine parameters, in eval mode."""
    torch.manual_seed(7)
    network = IPASSR(scale, **options)
    if network.attention is not None:
        with torch.no_grad():
            network.attention.norm.weight.uniform_(0.5, 1.5)
            network.attention.norm.bias.uniform_(-0.5, 0.5)
    return network.eval()


@pytest.mark.parametrize("channels,growth", [(64, 24), (128, 32), (5, 3)])
def test_dense_block_by_pieces_equals_the_module(channels, growth):
    """The per-piece convolutions (no channel-slice copies) sum to the module's convolutions."""
    torch.manual_seed(5)
    block = ResidualDenseBlock(channels, growth).eval()
    x = torch.randn(2, channels, 7, 10).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(dense_block(block, x), block(x), rtol=1e-5, atol=2e-6)


def test_bipam_embedding_by_hierarchy_pieces_equals_the_module():
    """Each group of biPAM's grouped layers run on its own hierarchy piece gives the module's
    query and key; pieces that do not match the groups are refused, not silently misread."""
    torch.manual_seed(6)
    pieces = [torch.randn(2, 16, 5, 9).contiguous(memory_format=torch.channels_last)
              for _ in range(4)]
    # without whitening too: it would hide a wrong bias after the last nonlinearity
    for whitening in (True, False):
        bipam = BiPAM(16, 64, use_whitening=whitening).eval()  # 4 groups of 16 channels
        with torch.no_grad():
            for projection in (bipam.query, bipam.key):
                expected = bipam.embed(torch.cat(pieces, dim=1), projection)
                torch.testing.assert_close(embed(bipam, normalize(bipam, pieces), projection),
                                           expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="groups of 16 channels do not match"):
        normalize(bipam, pieces[:3])


def test_details_match_plain_attention_maps():
    network = _network(2)
    torch.manual_seed(13)
    left, right = torch.rand(1, 3, 10, 14), torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        *_, maps = network(left, right, return_attention=True)
    for plan in (InferencePlan(False, 10, 3, 0), InferencePlan(True, 8, 2, 0)):
        *_, details = stereo_forward(network, left, right, plan=plan, return_details=True,
                                     keep_rows=[3, 9])
        assert sorted(details.rows) == [3, 9]
        torch.testing.assert_close(details.rows[9][0], maps.right_to_left[:, 9], rtol=0, atol=1e-5)
        torch.testing.assert_close(details.rows[3][1], maps.left_to_right[:, 3], rtol=0, atol=1e-5)
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
    # the plan also says whether the plain forward (full attention maps) fits its budget
    assert (small.budget, large.budget) == (2 ** 30, 4 * 2 ** 30)
    assert small.plain_fits and not large.plain_fits
    kitti_x2 = plan_inference(network, 1, 187, 621, max_memory=2 * 2 ** 30)
    assert not kitti_x2.tiled and not kitti_x2.plain_fits  # fast path untiled; full maps 4.2 GB


def test_plan_refuses_what_cannot_fit_even_tiled():
    network = IPASSR(2)
    with pytest.raises(IpassrError, match=r"1920x1080 pair.*needs at least .*even when tiled.*"
                                          r"memory budget is 1\.00 GiB.*holds images of width "
                                          r"1920 up to about \d+ rows high"):
        plan_inference(network, 1, 1080, 1920, max_memory=2 ** 30)
    with pytest.raises(IpassrError, match="not even one band"):
        plan_inference(network, 1, 1080, 1920, max_memory=2 ** 20)


def test_a_plan_without_rows_is_refused():
    for band_rows, attention_rows in ((0, 2), (8, 0)):
        with pytest.raises(ValueError, match="at least 1 row per band and per attention chunk"):
            InferencePlan(True, band_rows, attention_rows, 0)


def test_training_mode_is_refused():
    network = IPASSR(2)
    with pytest.raises(ValueError, match=r"^stereo_forward implements eval-mode inference: call "
                                         r"network\.eval\(\)$"):
        stereo_forward(network, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_the_smallest_pairs_and_mismatched_views():
    """biPAM needs 2 pixels per view (its per-view statistics): 1x2 and 2x1 pairs run, a 1x1
    pair is refused in words, and without biPAM even 1x1 runs; views of different sizes are
    refused naming both shapes."""
    with_bipam, without = _network(2), IPASSR(2, use_attention=False).eval()
    for height, width in ((1, 2), (2, 1)):
        sr_left, _ = stereo_forward(with_bipam, torch.rand(1, 3, height, width),
                                    torch.rand(1, 3, height, width))
        assert sr_left.shape == (1, 3, 2 * height, 2 * width)
    one = torch.rand(1, 3, 1, 1)
    with pytest.raises(IpassrError, match=r"^a 1x1 pair is too small: biPAM normalises each view "
                                          r"by the mean and variance of its own pixels, which "
                                          r"needs at least 2 pixels$"):
        stereo_forward(with_bipam, one, one)
    assert stereo_forward(without, one, one)[0].shape == (1, 3, 2, 2)
    with pytest.raises(IpassrError, match=r"^left \(1, 3, 4, 5\) and right \(1, 3, 4, 6\) differ$"):
        stereo_forward(with_bipam, torch.rand(1, 3, 4, 5), torch.rand(1, 3, 4, 6))


def test_memory_sizes_parse_and_bad_ones_are_refused():
    assert parse_memory_size("4G") == 4 * 2 ** 30
    assert parse_memory_size("512m") == 512 * 2 ** 20
    assert parse_memory_size("1.5GiB") == 3 * 2 ** 29
    assert parse_memory_size("1000") == 1000
    for bad in ("", "abc", "-1G", "0", "4X", "inf"):
        with pytest.raises(IpassrError, match="expected a positive size"):
            parse_memory_size(bad)


def test_bfloat16_network_runs_with_float32_attention():
    network = _network(2)
    torch.manual_seed(14)
    left, right = torch.rand(1, 3, 6, 10), torch.rand(1, 3, 6, 10)
    expected = stereo_forward(network, left, right)
    low = stereo_forward(network.to(torch.bfloat16), left, right)
    assert low[0].dtype == torch.bfloat16
    for a, e in zip(low, expected):  # measured: 0.0088 at most, 0.0011 on average
        torch.testing.assert_close(a.float(), e, rtol=0, atol=0.02)
        assert (a.float() - e).abs().mean() < 0.003


def test_budget_error_for_a_small_image_names_the_untiled_minimum(conformance_dir):
    """A tiny pair needs less memory untiled than tiled: the error must quote the smaller need."""
    from ipassr.models.checkpoint import load_network

    network = load_network(conformance_dir / "x2.pth.tar")
    untiled = plan_inference(network, 1, 24, 60, 10**9).estimated_bytes
    with pytest.raises(IpassrError, match=r"needs at least (\d+\.\d) MiB") as info:
        plan_inference(network, 1, 24, 60, 4 * 2**20)
    quoted = float(re.search(r"needs at least (\d+\.\d) MiB", str(info.value)).group(1))
    assert quoted * 2**20 <= untiled * 1.1


def test_default_budget_and_chunks_follow_the_device(monkeypatch, conformance_dir):
    """CPU: 4 GiB and 32 MiB chunks. GPU: half its available memory and 4 GiB chunks, so a
    1080p pair runs untiled with many rows per chunk on a large GPU (read from the device)."""
    from ipassr.models.checkpoint import load_network
    from ipassr.inference.fast.attention import DEFAULT_ATTENTION_MEMORY, attention_row_bytes
    from ipassr.inference.fast.plan import CUDA_ATTENTION_MEMORY, DEFAULT_MAX_MEMORY, default_max_memory

    network = load_network(conformance_dir / "x2.pth.tar")
    assert default_max_memory(torch.device("cpu")) == DEFAULT_MAX_MEMORY
    assert plan_inference(network, 1, 1080, 1920).tiled
    kitti = plan_inference(network, 1, 187, 621)  # untiled: the chunk cap decides
    assert kitti.attention_rows == DEFAULT_ATTENTION_MEMORY // attention_row_bytes(1, 621) < 187
    gpu = torch.device("cuda")

    def on_the_gpu(value):  # each query must name the device being planned for
        def query(device=None):
            assert device == gpu, f"asked about {device}, not {gpu}"
            return value
        return query

    monkeypatch.setattr(torch.cuda, "mem_get_info", on_the_gpu((70 * 2 ** 30, 80 * 2 ** 30)))
    monkeypatch.setattr(torch.cuda, "memory_reserved", on_the_gpu(6 * 2 ** 30))
    monkeypatch.setattr(torch.cuda, "memory_allocated", on_the_gpu(2 * 2 ** 30))
    assert default_max_memory(gpu) == 37 * 2 ** 30  # (70 free + 4 cached unused) / 2
    plan = plan_inference(network, 1, 1080, 1920, device=gpu)
    assert not plan.tiled and plan.estimated_bytes <= 37 * 2 ** 30
    assert plan.attention_rows == CUDA_ATTENTION_MEMORY // attention_row_bytes(1, 1920) > 1
    assert plan_inference(network, 1, 187, 621, device=gpu).attention_rows == 187
    assert plan_inference(network, 1, 1080, 1920, max_memory=4 * 2 ** 30, device=gpu).tiled


def _plan_or_none(network, batch: int, height: int, width: int, budget: int):
    try:
        return plan_inference(network, batch, height, width, max_memory=budget)
    except IpassrError:
        return None


def _smallest_budget(accepts, high: int = 2 ** 42) -> int:
    """The smallest budget in bytes that ``accepts`` (which every larger budget passes too)."""
    low = 0
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if accepts(middle) else (middle, high)
    return high


def _band_row_bytes(batch: int, width: int) -> int:
    """What one more LR row of band costs a tiled plan (both views of each pair)."""
    return BAND_CHANNELS * 2 * batch * width * FLOAT_BYTES


@pytest.mark.parametrize("scale,batch", [(2, 1), (4, 2)])
def test_plans_fill_their_budget_without_passing_it(scale, batch):
    """Every plan's estimate is whole bytes within its budget, and a tiled plan's bands are as
    tall as the budget allows: what it leaves unused is less than one more band row."""
    from ipassr.inference.fast.attention import DEFAULT_ATTENTION_MEMORY, attention_row_bytes

    network = IPASSR(scale)
    for height, width in ((1080, 1920), (2000, 450), (375, 450), (40, 60), (3000, 64)):
        for budget in (48 * 2 ** 20, 256 * 2 ** 20, 2 ** 30, 4 * 2 ** 30):
            plan = _plan_or_none(network, batch, height, width, budget)
            if plan is None:
                continue
            assert type(plan.estimated_bytes) is int and plan.estimated_bytes <= budget
            unused, row = budget - plan.estimated_bytes, attention_row_bytes(batch, width)
            if plan.tiled and plan.band_rows < height:
                assert unused < _band_row_bytes(batch, width), (height, width, budget)
                if plan.attention_rows < min(plan.band_rows, DEFAULT_ATTENTION_MEMORY // row):
                    assert unused < row, (height, width, budget)  # nor one more attention row


@pytest.mark.parametrize("batch", [1, 2])
def test_the_untiled_threshold_is_the_untiled_estimate(batch):
    """The smallest budget that runs untiled is exactly the untiled estimate with one attention
    row; it grows by one attention row with biPAM, by the real SR outputs with the scale, and
    the plain forward fits exactly from its own estimate."""
    from ipassr.inference.fast.attention import attention_row_bytes
    from ipassr.inference.fast.plan import PLAIN_MAPS, UNTILED_CHANNELS, plain_forward_bytes

    height, width = 12, 16

    found = {}

    def threshold(network):
        if network not in found:
            found[network] = _smallest_budget(lambda b: getattr(
                _plan_or_none(network, batch, height, width, b), "tiled", True) is False)
        return found[network]

    x2, x4, without = (IPASSR(2).eval(), IPASSR(4).eval(),
                       IPASSR(2, use_attention=False).eval())
    views = torch.rand(batch, 3, height, width), torch.rand(batch, 3, height, width)
    outputs = {network: sum(view.nbytes for view in stereo_forward(network, *views))
               for network in (x2, x4)}  # the SR views of a real pass
    row = attention_row_bytes(batch, width)
    for network in (x2, x4, without):
        plan = plan_inference(network, batch, height, width, max_memory=threshold(network))
        assert plan.estimated_bytes == threshold(network) and plan.attention_rows == 1
    assert threshold(x2) - threshold(without) == row
    assert threshold(x4) - threshold(x2) == outputs[x4] - outputs[x2]
    assert (threshold(x2) - row - outputs[x2]
            == UNTILED_CHANNELS * 2 * batch * height * width * FLOAT_BYTES)
    plain = plain_forward_bytes(x2, batch, height, width)
    maps = PLAIN_MAPS * batch * height * width * width * FLOAT_BYTES
    assert plain - (threshold(x2) - row) == maps
    assert plain_forward_bytes(without, batch, height, width) == threshold(without)
    assert plan_inference(x2, batch, height, width, max_memory=plain).plain_fits
    assert not plan_inference(x2, batch, height, width, max_memory=plain - 1).plain_fits


@pytest.mark.parametrize("scale", [2, 4])
def test_the_smallest_tiled_plan_and_what_the_refusal_says(scale):
    """The smallest budget that plans a large pair is one band of MIN_BAND_ROWS and fills it;
    a byte less is refused, quoting that figure; the rows the refusal says would fit do fit (and
    one more does not); the hint speaks of rows from the first budget that holds one band."""
    network, batch, height, width = IPASSR(scale), 2, 600, 1920
    least = _smallest_budget(lambda b: _plan_or_none(network, batch, height, width, b) is not None)
    plan = plan_inference(network, batch, height, width, max_memory=least)
    assert plan.tiled and plan.band_rows == MIN_BAND_ROWS and plan.estimated_bytes == least
    with pytest.raises(IpassrError) as refused:
        plan_inference(network, batch, height, width, max_memory=least - 1)
    said = str(refused.value)
    assert (f"a {width}x{height} pair (batch {batch}) needs at least {format_bytes(least)}" in said
            and said.endswith("raise --max-memory or use smaller images"))

    def rows_said(budget: int) -> int | None:
        with pytest.raises(IpassrError) as refused:
            plan_inference(network, batch, height, width, max_memory=budget)
        found = re.search(r"up to about (\d+) rows high", str(refused.value))
        return int(found.group(1)) if found else None

    budget = least // 2
    fits = rows_said(budget)
    assert fits > 100  # tall enough that tiling, not an untiled pass, decides what fits
    assert _plan_or_none(network, batch, fits, width, budget) is not None
    assert _plan_or_none(network, batch, fits + 1, width, budget) is None
    first = _smallest_budget(lambda b: rows_said(b) is not None, high=least - 1)
    assert rows_said(first) == MIN_BAND_ROWS and rows_said(first - 1) is None


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_folded_upsampler_equals_the_module_at_borders_and_in_bands(scale):
    """One LR convolution + pixel shuffle == 1x1 conv, shuffle, 3x3 conv (biases included, and
    the zero padding at every image border), whole and in bands of 3 rows."""
    from ipassr.models.ipassr import Upsampler
    from ipassr.inference.fast.upsample import upsample_rows

    torch.manual_seed(scale)
    upsampler = Upsampler(scale, channels=8)
    for parameter in upsampler.parameters():  # biases well away from zero, to see the border
        parameter.data.normal_()
    features = torch.randn(2, 8, 7, 11).contiguous(memory_format=torch.channels_last)
    views = torch.rand(2, 3, 7, 11)
    bicubic = torch.nn.functional.interpolate(views, scale_factor=scale, mode="bicubic",
                                              align_corners=False)
    with torch.inference_mode():  # the reference in float64; float32 rounding relative to it
        expected = upsampler.double()(features.double()) + bicubic.double()
        upsampler.float()
        tolerance = {"rtol": 0, "atol": 1e-6 * expected.abs().max().item()}
        for rows in (None, 3):
            out = torch.empty(expected.shape)
            upsample_rows(upsampler, scale, features, views, out, rows=rows)
            torch.testing.assert_close(out.double(), expected, **tolerance)
        out = torch.empty(2, 3, 4 * scale, 11 * scale)  # rows 2:6 only, as a tiled band asks
        upsample_rows(upsampler, scale, features, views, out, rows=3, first=2, last=6)
        torch.testing.assert_close(out.double(), expected[:, :, 2 * scale:6 * scale], **tolerance)
