"""``ipassr infer --input/--output`` and the API on stereo photos: any layout or container gives
what the two views give as separate files; bad input is one line and writes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ipassr
from ipassr.cli import main
from ipassr.data import layouts, media
from ipassr.data.io import read_image, write_image
from ipassr.inference.api import StereoSR
from ipassr.models.ipassr import IPASSR

from conftest import ASSETS
from test_infer_cli import run_cli_error

MPO = ASSETS / "media" / "sugarshack.mpo"


@pytest.fixture(scope="module")
def weights():
    return "x2"  # the shipped weights: real SR output, so JPEG's loss in an MPO is as in use


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    """A 20x24 crop of both views of the real 3DS photo, as PNG files (small: each test runs
    the network through the CLI)."""
    photo = media.read_stereo(MPO)
    folder = tmp_path_factory.mktemp("views")
    for name, view in (("left.png", photo.left), ("right.png", photo.right)):
        write_image(folder / name, view[200:220, 300:324])
    return folder / "left.png", folder / "right.png"


@pytest.fixture(scope="module")
def expected(views, weights, tmp_path_factory):
    """What ``ipassr infer`` gives on the two views as separate files."""
    folder = tmp_path_factory.mktemp("expected")
    assert main(["infer", "--left", str(views[0]), "--right", str(views[1]), "--weights", weights,
                 "--output-left", str(folder / "l.png"), "--output-right", str(folder / "r.png")]) == 0
    return read_image(folder / "l.png"), read_image(folder / "r.png")


def _pair(views):
    return read_image(views[0]), read_image(views[1])


def _same(got, want):
    """Equal within 1 grey level (PNG both ways; measured: identical)."""
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.mark.parametrize("name", list(layouts.LAYOUTS))
def test_a_picture_in_any_layout_gives_what_the_two_views_give(tmp_path, views, expected, weights,
                                                                name, capsys):
    picture = tmp_path / f"in_{name}.png"
    write_image(picture, layouts.join(*_pair(views), name))
    out = tmp_path / "out.png"
    assert main(["infer", "--input", str(picture), "--layout", name, "--output", str(out),
                 "--weights", weights]) == 0
    assert f"({name})" in capsys.readouterr().out
    result = read_image(out)
    assert result.shape[:2] == tuple(2 * s for s in read_image(picture).shape[:2])
    got_left, got_right = layouts.split(result, name)
    _same(got_left, expected[0])
    _same(got_right, expected[1])


def test_a_half_width_picture_to_full_width_restores_each_eye(tmp_path, views, expected, weights):
    picture = tmp_path / "half.png"
    write_image(picture, layouts.join(*_pair(views), "sbs2l"))  # eyes stored 48 px wide
    out = tmp_path / "full.png"
    assert main(["infer", "--input", str(picture), "--layout", "sbs2l", "--output", str(out),
                 "--output-layout", "sbsl", "--weights", weights]) == 0
    got_left, got_right = layouts.split(read_image(out), "sbsl")
    assert got_left.shape == (40, 96, 3)  # SR on the stored pixels, then the eye stretched x2
    want = layouts.convert_views(*expected, layouts.get_layout("sbs2l"), None)
    _same(got_left, want[0])
    _same(got_right, want[1])


def test_two_files_to_an_anaglyph_or_an_mpo(tmp_path, views, expected, weights):
    common = ["infer", "--left", str(views[0]), "--right", str(views[1]), "--weights", weights]
    assert main([*common, "--output", str(tmp_path / "ana.png"), "--output-layout", "anaglyph"]) == 0
    _same(read_image(tmp_path / "ana.png"), layouts.anaglyph(*expected))
    assert main([*common, "--output", str(tmp_path / "out.mpo")]) == 0
    back = media.read_stereo(tmp_path / "out.mpo")
    # JPEG at quality 95 of the SR views: measured 0.9 levels apart on average, at most 5
    assert np.abs(back.left.astype(int) - expected[0]).mean() < 2
    assert np.abs(back.right.astype(int) - expected[1]).mean() < 2


def test_an_mpo_and_a_jps_in_give_what_their_views_give(tmp_path, views, expected, weights):
    mpo = tmp_path / "in.mpo"
    media.write_stereo(media.plan_target(mpo), media.StereoImage(*_pair(views), None, "files", "x"))
    photo = media.read_stereo(mpo)  # the JPEG-decoded views, as separate files
    write_image(tmp_path / "l.png", photo.left)
    write_image(tmp_path / "r.png", photo.right)
    assert main(["infer", "--left", str(tmp_path / "l.png"), "--right", str(tmp_path / "r.png"),
                 "--weights", weights, "--output", str(tmp_path / "want.png")]) == 0
    assert main(["infer", "--input", str(mpo), "--weights", weights,
                 "--output", str(tmp_path / "got.png")]) == 0  # no layout: sbsl
    _same(read_image(tmp_path / "got.png"), read_image(tmp_path / "want.png"))
    jps = tmp_path / "in.jps"
    media.write_stereo(media.plan_target(jps), photo)  # cross-eyed, with its block
    assert main(["infer", "--input", str(jps), "--weights", weights,
                 "--output", str(tmp_path / "out.jps")]) == 0
    out = media.read_stereo(tmp_path / "out.jps")
    assert out.layout.name == "sbsr" and out.left.shape == (40, 48, 3)


def test_the_api_takes_a_spatial_heic_in_the_order_of_its_ster_group(weights, spatial_photo):
    """The 2560x2560 views of the real Apple photo, super-resolved as a small crop."""
    model = ipassr.load_model(weights)  # the API's own path; the CLI is tested above
    photo = spatial_photo
    crop = photo.with_views(photo.left[1200:1232, 1200:1248], photo.right[1200:1232, 1200:1248])
    result = model.super_resolve_photo(crop)
    want_left, want_right = model.super_resolve(crop.left, crop.right)
    assert result.kind == "heic" and result.left.shape == (64, 96, 3)
    assert np.array_equal(result.left, want_left) and np.array_equal(result.right, want_right)


def _bicubic_x2(network, left, right, **kwargs):
    """A stand-in for the network: bicubic x2 (the plumbing at full size, in a fraction of a second)."""
    up = [torch.nn.functional.interpolate(v, scale_factor=2, mode="bicubic", align_corners=False)
          for v in (left, right)]
    return up[0], up[1]


def test_the_3ds_photo_goes_to_an_mpo_of_two_1280x960_frames(tmp_path):
    model = StereoSR(IPASSR(scale=2), fast_forward=_bicubic_x2)
    target = model.super_resolve_file(MPO, tmp_path / "sugarshack_x2.mpo")
    assert target.kind == "mpo"
    with Image.open(tmp_path / "sugarshack_x2.mpo") as image:
        assert image.format == "MPO" and image.n_frames == 2
        sizes = []
        for frame in range(2):
            image.seek(frame)
            sizes.append(image.size)
    assert sizes == [(1280, 960), (1280, 960)]


@pytest.mark.parametrize("args, message", [
    (["--input", "{sbs}"], "sbs.png: one picture; say how its two views sit with --layout "
                           "(one of: sbsl, sbsr, sbs2l, sbs2r, tbl, tbr, tb2l, tb2r, abl, abr"),
    (["--input", "{sbs}", "--layout", "sideways"], "unknown stereo layout 'sideways'"),
    (["--input", "{odd}", "--layout", "sbsl"], "odd.png: its width (47 px) is odd"),
    (["--input", "{cut}"], "cut.mpo: truncated or damaged"),
    (["--input", "{mpo}", "--layout", "sbsl"], "drop --layout sbsl"),
    (["--left", "{mpo}", "--right", "{left}"], "an MPO stereo photo, not one view; pass the whole "
                                               "file as --input"),
    (["--left", "{sbs}", "--right", "{sbs}"], "sbs.png: given as both the left and the right view"),
    (["--left", "{left}", "--right", "{right}", "--layout", "sbsl"], "--layout says how --input's"),
    (["--input", "{mpo}", "--output-layout", "sbsl", "--out", "mpo"], "drop --output-layout sbsl"),
    (["--input", "{mpo}", "--out", "heic"], "cannot write a spatial HEIC"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, views, weights, capsys, args, message):
    sbs = tmp_path / "sbs.png"
    write_image(sbs, layouts.join(*_pair(views), "sbsl"))
    write_image(tmp_path / "odd.png", read_image(sbs)[:, :47])
    data = MPO.read_bytes()
    (tmp_path / "cut.mpo").write_bytes(data[: int(len(data) * 0.75)])
    paths = {"sbs": sbs, "odd": tmp_path / "odd.png", "cut": tmp_path / "cut.mpo", "mpo": MPO,
             "left": views[0], "right": views[1]}
    suffix = args[args.index("--out") + 1] if "--out" in args else "png"
    args = [a.format(**paths) for a in args if a != "--out" and a != suffix]
    out = tmp_path / "result"
    outputs = (["--output", f"{out}.{suffix}"] if "--input" in args or "--out" in args
               else ["--output-left", f"{out}_L.png", "--output-right", f"{out}_R.png"])
    error = run_cli_error(["infer", *args, *outputs, "--weights", weights], capsys)
    assert message in error
    assert not list(tmp_path.glob("result*")) and not list(tmp_path.glob(".result*"))


def test_folder_mode_takes_stereo_photos_beside_pairs(tmp_path, views, expected, weights):
    """A folder of 3DS photos next to _L/_R pairs, batched together: the same reader as --input."""
    folder = tmp_path / "in"
    folder.mkdir()
    left, right = _pair(views)
    write_image(folder / "b_L.png", left)
    write_image(folder / "b_R.png", right)
    photo = media.StereoImage(left, right, None, "files", "x")
    media.write_stereo(media.plan_target(folder / "HNI_0001.MPO"), photo)
    assert main(["infer", "--input-dir", str(folder), "--output-dir", str(tmp_path / "out"),
                 "--batch-size", "2", "--weights", weights]) == 0
    _same(read_image(tmp_path / "out" / "b_L.png"), expected[0])
    # the MPO's views went through JPEG: measured 1.6 and 1.4 levels from the PNG pair's SR on
    # average (the views swapped: 14)
    for side, want in zip("LR", expected):
        got = read_image(tmp_path / "out" / f"HNI_0001_{side}.png")
        assert np.abs(got.astype(int) - want).mean() < 3
