"""The web page's work without the page (no Gradio needed): upload limits, bad uploads as one
line, one super-resolution with its downloads, and the correspondence explorer."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

import ipassr
from ipassr.data.io import read_image, write_image
from ipassr.data.media import read_stereo
from ipassr.errors import IpassrError
from ipassr.evaluation.correspondence import attention_details
from ipassr.serve.uploads import Limits, read_upload
import ipassr.serve.work
from ipassr.serve.work import Studio, network_choices

from conftest import ASSETS

MPO = ASSETS / "media" / "sugarshack.mpo"


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory, cones_pair):
    """A 36x24 crop of the real Cones pair as two PNGs."""
    folder = tmp_path_factory.mktemp("pair")
    paths = folder / "left.png", folder / "right.png"
    for source, path in zip(cones_pair, paths):
        write_image(path, read_image(source)[150:174, 200:236])
    return paths


@pytest.fixture(scope="module")
def studio(tmp_path_factory, conformance_dir):
    choices = {"tiny x2": str(conformance_dir / "x2.pth.tar"), **network_choices(None)}
    return Studio(choices, tmp_path_factory.mktemp("work"), max_memory=256 * 2 ** 20)


def refused(*args, limits: Limits = Limits()) -> str:
    with pytest.raises(IpassrError) as caught:
        read_upload(*args, limits=limits)
    return str(caught.value)


def test_bad_uploads_are_one_line_naming_the_file(tmp_path, pair_files):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    assert refused(text, None, None, None).startswith("notes.png: not a picture ipassr reads")
    small = tmp_path / "small.png"
    write_image(small, np.zeros((10, 12, 3), np.uint8))
    message = refused(None, pair_files[0], small, None)
    assert "left.png is 36x24 but small.png is 12x10" in message and str(tmp_path) not in message
    single = tmp_path / "single.mpo"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(single, format="MPO")
    assert refused(single, None, None, None).startswith("single.mpo: ")
    assert "not both" in refused(single, pair_files[0], pair_files[1], None)
    assert "upload a stereo file" in refused(None, pair_files[0], None, None)
    assert "\n" not in message


def test_limits_in_bytes_and_pixels_are_checked_before_decoding(tmp_path, pair_files):
    assert "more than this server takes" in refused(
        None, *pair_files, None, limits=Limits(max_bytes=100))
    bomb = tmp_path / "bomb.png"  # 100 megapixels of one colour: 13 kB on disk, 300 MB decoded
    Image.new("1", (10_000, 10_000)).save(bomb)
    assert bomb.stat().st_size < 100_000
    assert "a 10000x10000 picture (100 megapixels), more than this server takes" in refused(
        bomb, None, None, "sbsl")
    assert "left.png: a 36x24 picture" in refused(None, *pair_files, None,
                                                  limits=Limits(max_pixels=800))


def test_a_pair_is_super_resolved_with_its_downloads(studio, pair_files):
    """The page's SR pair is StereoSR's (1 level: the details pass rounds differently), and its
    downloads hold it: two PNGs exactly, side by side exactly, an MPO that reads back."""
    photo = read_upload(None, *pair_files, None, Limits())
    outcome = studio.super_resolve(photo, "tiny x2")
    expected = studio.model("tiny x2").super_resolve(photo.left, photo.right)
    for got, want in zip(outcome.sr, expected):
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    names = [p.name for p in outcome.downloads]
    assert names == ["stereo_x2_left.png", "stereo_x2_right.png", "stereo_x2_sbs.png",
                     "stereo_x2.mpo"]
    left, right, sbs, mpo = outcome.downloads
    assert np.array_equal(read_image(left), outcome.sr[0])
    assert np.array_equal(read_image(sbs), np.concatenate(outcome.sr, axis=1))
    assert read_stereo(mpo).left.shape == outcome.sr[0].shape
    assert outcome.psnr is None and outcome.masks is not None
    assert outcome.anaglyph.shape == outcome.sr[0].shape


def test_a_pair_over_the_memory_budget_is_refused_with_the_figure(studio, pair_files, tmp_path):
    """The same planner as ``ipassr infer``: the budget and what the pair needs, in the page's
    words."""
    from ipassr.serve.uploads import in_page_words

    tight = Studio(studio.choices, tmp_path, max_memory=2 ** 20)
    photo = read_upload(None, *pair_files, None, Limits())
    with pytest.raises(IpassrError) as caught:
        tight.super_resolve(photo, "tiny x2")
    said = in_page_words(str(caught.value))
    assert re.search(r"a 36x24 pair \(batch 1\) needs at least [\d.]+ MiB even when tiled, but "
                     r"the memory budget is 1.0 MiB .*use a smaller pair, or the known-answer", said)


def test_known_answer_mode_shrinks_first_and_scores(studio, pair_files):
    photo = read_upload(None, *pair_files, None, Limits())
    outcome = studio.super_resolve(photo, "tiny x2", known_answer=True)
    assert outcome.photo.left.shape == (12, 18, 3)
    assert set(outcome.psnr) == {"bicubic", "iPASSR"}
    assert [p.name for p in outcome.downloads][-2:] == ["stereo_lr_left.png", "stereo_lr_right.png"]


def test_explorer_finds_the_argmax_that_evaluate_attention_scores(studio, pair_files,
                                                                  monkeypatch):
    """Row maps kept from the pass or computed again for the clicked row: the same peak, at the
    disparity of the attention's argmax (``ipassr evaluate --attention``)."""
    photo = read_upload(None, *pair_files, None, Limits())
    kept = studio.super_resolve(photo, "tiny x2")
    assert kept.rows is not None and kept.rows.shape == (24, 36, 36)
    details = attention_details(studio.model("tiny x2"), photo.left, photo.right)
    again = Studio(studio.choices, studio.workdir, max_memory=studio.budget)
    monkeypatch.setattr(ipassr.serve.work, "rows_bytes", lambda h, w: studio.budget)  # too many
    recomputed = again.super_resolve(photo, "tiny x2")
    assert recomputed.rows is None
    for x, y in ((5, 3), (30, 20)):
        argmax = -int(round(float(details.peak_offset_left[0, 0, y, x])))
        for outcome, owner in ((kept, studio), (recomputed, again)):
            found = owner.explore(outcome.key, x, y)
            assert (found.x, found.y, found.disparity) == (x, y, argmax)
            assert f"disparity is {argmax} LR px" in found.describe()
            assert found.picture.shape[1] >= 480
    with pytest.raises(IpassrError, match="outside the 36x24 left view"):
        studio.explore(kept.key, 36, 0)


def test_networks_without_attention_say_so(tmp_path, pair_files):
    from ipassr.models.checkpoint import save_weights
    from ipassr.models.ipassr import IPASSR

    save_weights(IPASSR(2, use_attention=False), tmp_path / "single.safetensors")
    choices = network_choices(tmp_path)
    assert list(choices)[-1] == "single.safetensors"
    studio = Studio(choices, tmp_path / "work")
    outcome = studio.super_resolve(read_upload(None, *pair_files, None, Limits()),
                                   "single.safetensors")
    assert outcome.masks is None
    found = studio.explore(outcome.key, 1, 1)
    assert found.picture is None and "no parallax attention" in found.describe()
    with pytest.raises(IpassrError, match="no network called"):
        studio.model("../../etc/passwd")
