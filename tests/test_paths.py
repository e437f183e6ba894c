"""Every inference path gives the plain eval-mode forward's output, for every model variant.

The networks carry the shipped weights, so that every stage carries signal (random weights let a
wrong halo or band boundary change the output by less than float32 rounding), and a real Cones
crop of 30 rows is cut into bands of 7: every banded pass crops its halo inside the image. The
rule is shown to be sensitive: shrinking the fusion stage's halo by one row fails it.
(The compiled plain forward is checked in test_infer_cli.py: compiling per variant is slow.)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import ipassr
from ipassr.errors import IpassrError
from ipassr.inference.fast import InferencePlan, stereo_forward
from ipassr.inference.fast import forward as fast_forward
from ipassr.inference.fast.fusion import fusion_disabled
from ipassr.inference.api import StereoSR
from ipassr.data.io import read_image
from ipassr.models.ipassr import IPASSR, ExportForward

ROWS, COLUMNS, BAND = 30, 40, 7
# measured largest gap from the plain forward over these paths and variants: 1.4e-6 (AVX2, the x3
# variant banded); a one-row halo error changes outputs by 1.6e-4 to 2.9e-4 (test below)
TOLERANCE = 1e-5

VARIANTS = {  # name: (scale, options, shipped weights to start from)
    "x2": (2, {}, 2),
    "x4": (4, {}, 4),
    "x3 no whitening, no valid mask": (3, {"use_whitening": False, "use_valid_mask": False}, 4),
    "x2 no biPAM": (2, {"use_attention": False}, 2),
}


def _banded(network, left, right):
    return stereo_forward(network, left, right, plan=InferencePlan(True, BAND, 2, 0))


def _untiled(network, left, right):
    return stereo_forward(network, left, right, plan=InferencePlan(False, ROWS, 3, 0))


def _without_fusion(path: Callable) -> Callable:
    def run(network, left, right):
        with fusion_disabled():
            return path(network, left, right)
    return run


def _export(network, left, right):
    with torch.no_grad():
        return ExportForward(network)(left, right)


PATHS = {"untiled fast": _untiled, "banded fast": _banded,
         "untiled, fusion off": _without_fusion(_untiled),
         "banded, fusion off": _without_fusion(_banded), "export forward": _export}


@pytest.fixture(scope="module")
def pair(data_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """A textured 30x40 crop of Middlebury Cones, (1, 3, 30, 40) in [0, 1] per view."""
    cones = data_dir / "middlebury" / "2003" / "Cones"
    views = [read_image(cones / name)[100:100 + ROWS, 150:150 + COLUMNS] for name in
             ("im2.png", "im6.png")]
    return tuple(torch.from_numpy(np.ascontiguousarray(v)).permute(2, 0, 1)[None].float() / 255
                 for v in views)


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, pair):
    """(network with the shipped weights that fit it, its plain eval-mode output)."""
    network = _with_shipped_weights(*VARIANTS[request.param])
    with torch.no_grad():
        return network, network(*pair)


def _with_shipped_weights(scale: int, options: dict, weights: int) -> IPASSR:
    """An eval-mode network carrying the shipped weights of ``weights`` that fit it."""
    network = IPASSR(scale, **options)
    own = network.state_dict()
    shipped = {key: value for key, value in load_file(str(ipassr.weights_path(weights))).items()
               if key in own and own[key].shape == value.shape}
    assert len(shipped) > 0.9 * len(own)  # all but an upsampler of another scale
    network.load_state_dict(shipped, strict=False)
    return network.eval()


def _gap(actual, expected) -> float:
    return max((a - e).abs().max().item() for a, e in zip(actual, expected))


@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_gives_the_plain_forward(variant, pair, path):
    network, expected = variant
    assert _gap(PATHS[path](network, *pair), expected) <= TOLERANCE


def test_a_halo_one_row_short_is_caught(variant, pair, monkeypatch):
    """The fusion RDB's halo (4 rows) less one: the banded output leaves the tolerance by far.
    (The deeper stages' outermost halo row weighs below float64 rounding with these weights.)"""
    network, expected = variant
    halos = fast_forward.stage_halos
    monkeypatch.setattr(fast_forward, "stage_halos",
                        lambda n: {**halos(n), "fusion": halos(n)["fusion"] - 1})
    assert _gap(_banded(network, *pair), expected) > 5 * TOLERANCE


def test_bands_narrower_than_the_fusion_halo_give_the_plain_forward(pair):
    """Bands of 1 and 3 rows, under the fusion RDB's 4-row halo: a band's output waits until no
    later band reads its rows as halo (written after the next band, it once spoiled rows that
    band still read: 7e-3 off with bands of 1 row, 5.6e-5 with 3, on this 8-row crop)."""
    network = _with_shipped_weights(*VARIANTS["x2"])
    crop = [view[:, :, :8] for view in pair]
    with torch.no_grad():
        expected = network(*crop)
    for band in (1, 3):
        assert _gap(stereo_forward(network, *crop, plan=InferencePlan(True, band, 2, 0)),
                    expected) <= TOLERANCE


def test_stereo_forward_plans_within_the_budget_it_is_given(pair):
    """``max_memory`` reaches the planner: 64 KiB holds not even one band of this crop, and is
    refused with the figure; the default budget runs it whole."""
    network = IPASSR(2).eval()
    with pytest.raises(IpassrError, match="not even one band"):
        stereo_forward(network, *pair, max_memory=2 ** 16)
    assert stereo_forward(network, *pair)[0].shape == (1, 3, 2 * ROWS, 2 * COLUMNS)


def test_the_untiled_forward_runs_in_the_networks_dtype(pair):
    """float32 views into a float64 network: the pass runs, and answers, in float64."""
    network = IPASSR(2).eval()
    with torch.no_grad():
        expected = network(*pair)
    sr_left, sr_right = stereo_forward(network.double(), *pair)
    assert sr_left.dtype == sr_right.dtype == torch.float64
    assert _gap((sr_left, sr_right), expected) <= TOLERANCE


def test_stereo_sr_picks_the_path_and_runs_the_fast_one_it_is_given(variant, pair):
    """One place decides: SR and biPAM's details both go through the given fast forward; full
    attention maps through the plain forward."""
    network, expected = variant
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("return_details", False))
        return stereo_forward(*args, **kwargs)

    model = StereoSR(network, fast_forward=counted)
    assert _gap(model.super_resolve_tensors(*pair), expected) <= TOLERANCE
    if model.has_attention:
        sr_left, _, details = model.forward_with_details(*pair, keep_rows=[3])
        assert details.valid_left.shape == (1, 1, ROWS, COLUMNS) and 3 in details.rows
        assert model.super_resolve_tensors(*pair, return_attention=True)[2] is not None
    else:
        with pytest.raises(IpassrError, match="no parallax attention"):
            model.forward_with_details(*pair)
    assert calls == [False, True] if model.has_attention else calls == [False]


def test_a_batch_of_tall_pairs_in_bands_gives_each_pairs_output_and_details(pair):
    """Two pairs taller than wide (16 columns, 22 rows) in one batch, whole and in bands of 7:
    each pair's SR views, per-pixel details and kept maps (rows on both sides of each band
    boundary) are what that pair gives alone and whole. (Halos clipped at the width instead of
    the height, or a batch read from the channels, would differ.)"""
    network = _with_shipped_weights(*VARIANTS["x2"])
    pairs = [tuple(view[:, :, :22, cols] for view in pair)
             for cols in (slice(0, 16), slice(20, 36))]
    batched = tuple(torch.cat(views) for views in zip(*pairs))
    keep = [0, 6, 7, 13, 14, 21]
    whole = InferencePlan(False, 22, 3, 0)
    alone = [stereo_forward(network, *p, return_details=True, keep_rows=keep, plan=whole)
             for p in pairs]
    for plan in (whole, InferencePlan(True, BAND, 2, 0)):
        *sr, details = stereo_forward(network, *batched, return_details=True, keep_rows=keep,
                                      plan=plan)
        assert sorted(details.rows) == keep
        for index, (*sr_alone, details_alone) in enumerate(alone):
            assert _gap([view[index:index + 1] for view in sr], sr_alone) <= TOLERANCE
            for name in details._fields[:-1]:
                torch.testing.assert_close(getattr(details, name)[index:index + 1],
                                           getattr(details_alone, name), rtol=0, atol=1e-4)
            for row in keep:
                for maps, maps_alone in zip(details.rows[row], details_alone.rows[row]):
                    torch.testing.assert_close(maps[index:index + 1], maps_alone, rtol=0,
                                               atol=1e-5)
