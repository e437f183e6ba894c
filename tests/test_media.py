"""Stereo photo containers on real files: MPO (a Nintendo 3DS photo), JPS, spatial HEIC (Apple).

Reading and writing only; ``test_infer_media.py`` runs the network through them.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from ipassr.data import containers, layouts, media
from ipassr.data.io import write_image
from ipassr.errors import ImageReadError, IpassrError

from conftest import ASSETS

MPO = ASSETS / "media" / "sugarshack.mpo"  # two 640x480 frames marked Disparity, left first
HEIC = ASSETS / "media" / "spatial_photo.heic"  # two 2560x2560 images in a 'ster' group


@pytest.fixture(scope="module")
def mpo_views():
    with Image.open(MPO) as image:
        frames = []
        for index in range(2):
            image.seek(index)
            frames.append(np.array(image.convert("RGB")))
    return frames


def test_mpo_views_are_its_two_disparity_frames_left_first(mpo_views):
    photo = media.read_stereo(MPO)
    assert (photo.kind, photo.layout) == ("mpo", None)
    assert photo.left.shape == photo.right.shape == (480, 640, 3)
    assert np.array_equal(photo.left, mpo_views[0]) and np.array_equal(photo.right, mpo_views[1])
    assert not np.array_equal(photo.left, photo.right)


def _pillow_mpo(left: Image.Image, right: Image.Image) -> bytes:
    """An MPO as Pillow writes it by itself: frames marked Primary and Undefined, not Disparity."""
    buffer = io.BytesIO()
    left.save(buffer, format="MPO", save_all=True, append_images=[right])
    return buffer.getvalue()


def test_an_mpo_without_views_is_not_a_stereo_photo(tmp_path, mpo_views):
    """Like a camera JPEG whose MPF frames are a preview: refused, unless --layout says the
    picture itself holds both views; as one view it is simply a picture."""
    path = tmp_path / "camera.jpg"
    wide = layouts.join(*mpo_views, "sbsl")
    path.write_bytes(_pillow_mpo(Image.fromarray(wide), Image.fromarray(wide[:120, :160])))
    with pytest.raises(ImageReadError, match=r"camera\.jpg: not a stereo photo.*none is marked as a "
                                             r"view.*give --layout"):
        media.read_stereo(path)
    photo = media.read_stereo(path, "sbsl")
    assert photo.kind == "image" and photo.left.shape == (480, 640, 3)
    assert media.read_view(path).shape == (480, 1280, 3)


def test_an_mpo_with_one_frame_is_refused(tmp_path):
    data = bytearray(MPO.read_bytes())
    with Image.open(MPO) as image:
        first_frame = image.mpinfo[0xB002][0]["Size"]
    start = data.find(b"MPF\x00") + 4
    ifd = start + struct.unpack_from(">I", data, start + 4)[0]  # the 3DS writes big-endian
    for i in range(struct.unpack_from(">H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from(">H", data, entry)[0] == 0xB001:  # NumberOfImages: 2 -> 1
            struct.pack_into(">I", data, entry + 8, 1)
    (tmp_path / "one.mpo").write_bytes(bytes(data[:first_frame]))
    with pytest.raises(ImageReadError, match=r"one\.mpo: an MPO with one frame"):
        media.read_stereo(tmp_path / "one.mpo")


def test_a_truncated_mpo_is_one_line(tmp_path):
    data = MPO.read_bytes()
    (tmp_path / "cut.mpo").write_bytes(data[: int(len(data) * 0.75)])
    with pytest.raises(ImageReadError, match=r"cut\.mpo: truncated or damaged"):
        media.read_stereo(tmp_path / "cut.mpo")


def test_written_mpo_marks_both_frames_as_views(tmp_path, mpo_views):
    target = media.plan_target(tmp_path / "out.mpo")
    media.write_stereo(target, media.StereoImage(*mpo_views, None, "mpo", "x"))
    with Image.open(tmp_path / "out.mpo") as image:
        assert image.format == "MPO" and image.n_frames == 2
        attributes = [entry["Attribute"] for entry in image.mpinfo[0xB002]]
    assert [a["MPType"] for a in attributes] == ["Multi-Frame Image: (Disparity)"] * 2
    assert [a["RepresentativeImageFlag"] for a in attributes] == [True, False]
    back = media.read_stereo(tmp_path / "out.mpo")
    # JPEG at quality 95: measured 0.9 levels from the views on average (swapped: 46)
    assert np.abs(back.left.astype(int) - mpo_views[0]).mean() < 2
    assert np.abs(back.right.astype(int) - mpo_views[1]).mean() < 2


def test_jps_is_cross_eyed_unless_its_block_says_otherwise(tmp_path, mpo_views):
    left, right = (view[:64, :96] for view in mpo_views)
    plain = tmp_path / "plain.jps"
    Image.fromarray(layouts.join(left, right, "sbsr")).save(plain, format="JPEG", quality=100)
    photo = media.read_stereo(plain)
    assert (photo.kind, photo.layout.name) == ("jps", "sbsr")
    assert np.abs(photo.left.astype(int) - left).mean() < 2  # JPEG: measured 0.6 (swapped: 51)
    for name in ("sbsl", "sbs2r", "tbl", "tb2r"):
        target = media.plan_target(tmp_path / f"{name}.jps", output_layout=name)
        media.write_stereo(target, media.StereoImage(left, right, layouts.get_layout(name), "x", "x"))
        back = media.read_stereo(tmp_path / f"{name}.jps")
        assert back.layout.name == name and back.left.shape == left.shape
        assert np.abs(back.left.astype(int) - left).mean() < 2
    overruled = media.read_stereo(tmp_path / "sbsl.jps", layout="sbsr")  # --layout wins
    assert np.abs(overruled.left.astype(int) - right).mean() < 2


def test_a_jps_output_inherits_the_input_layout_else_is_cross_eyed(tmp_path):
    assert media.plan_target(tmp_path / "a.jps").layout == "sbsr"
    assert media.plan_target(tmp_path / "a.jps", source_layout=layouts.get_layout("tb2l")).layout == "tb2l"
    assert media.plan_target(tmp_path / "a.png").layout == "sbsl"
    with pytest.raises(IpassrError, match="a JPS holds two views, not an anaglyph"):
        media.plan_target(tmp_path / "a.jps", output_layout="anaglyph")


def test_heic_views_follow_the_ster_group_not_the_frame_order(monkeypatch, spatial_photo):
    import pillow_heif

    photo = spatial_photo
    assert (photo.kind, photo.left.shape, photo.right.shape) == ("heic", (2560, 2560, 3), (2560, 2560, 3))
    heif = pillow_heif.open_heif(HEIC)
    assert heif.info["entity_groups"][0]["images"] == [0, 1]
    frame0 = np.asarray(heif[0].to_pillow())
    assert np.array_equal(photo.left, frame0) and not np.array_equal(photo.right, frame0)

    original = pillow_heif.open_heif

    def swapped(path, *args, **kwargs):  # the same file, its group naming frame 1 as the left view
        opened = original(path, *args, **kwargs)
        opened.info["entity_groups"] = [{"type": "ster", "entities": [52, 26], "images": [1, 0]}]
        return opened

    monkeypatch.setattr(pillow_heif, "open_heif", swapped)
    reversed_photo = media.read_stereo(HEIC)
    assert np.array_equal(reversed_photo.right, frame0)
    assert np.array_equal(reversed_photo.left, photo.right)


def _heic(path, *pictures):
    import pillow_heif

    heif = pillow_heif.from_pillow(Image.fromarray(pictures[0]))
    for picture in pictures[1:]:
        heif.add_from_pillow(Image.fromarray(picture))
    heif.save(path, quality=-1)


def test_a_heic_without_a_ster_group_is_refused(tmp_path, mpo_views):
    crop = [view[:32, :48] for view in mpo_views]
    _heic(tmp_path / "two.heic", *crop)
    with pytest.raises(ImageReadError, match=r"two\.heic: a HEIC with 2 images and no 'ster'"):
        media.read_stereo(tmp_path / "two.heic")
    _heic(tmp_path / "sbs.heic", layouts.join(*crop, "sbsl"))
    with pytest.raises(ImageReadError, match="one image and no 'ster'.*give --layout"):
        media.read_stereo(tmp_path / "sbs.heic")
    photo = media.read_stereo(tmp_path / "sbs.heic", "sbsl")
    assert photo.left.shape == (32, 48, 3)
    assert media.read_view(tmp_path / "sbs.heic").shape == (32, 96, 3)  # one picture: one view
    with pytest.raises(IpassrError, match=r"two\.heic: a HEIC with 2 images, not one view; pass "
                                          r"the whole file as --input"):
        media.read_view(tmp_path / "two.heic")


def test_a_truncated_heic_is_one_line(tmp_path):
    (tmp_path / "cut.heic").write_bytes(HEIC.read_bytes()[:300_000])
    with pytest.raises(ImageReadError, match=r"cut\.heic: truncated or damaged HEIC"):
        media.read_stereo(tmp_path / "cut.heic")


def test_a_stereo_photo_is_not_one_view(tmp_path):
    for path, what in ((MPO, "an MPO stereo photo"), (HEIC, "a HEIC with 2 images")):
        with pytest.raises(IpassrError, match=f"{what}, not one view; pass the whole file as --input"):
            media.read_views(path, path)
    frames = [Image.new("RGB", (8, 4), colour) for colour in ("red", "blue")]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(IpassrError, match=r"moving\.gif: a GIF with 2 frames, not one picture"):
        media.read_view(tmp_path / "moving.gif")
    picture = tmp_path / "sbs.png"
    write_image(picture, np.zeros((4, 8, 3), np.uint8))
    with pytest.raises(IpassrError, match=r"sbs\.png: given as both the left and the right view.*"
                                          r"--input .*sbs\.png --layout L"):
        media.read_views(picture, picture)


def test_a_plain_picture_needs_its_layout_named(tmp_path):
    picture = tmp_path / "sbs.png"
    write_image(picture, np.zeros((4, 7, 3), np.uint8))
    with pytest.raises(IpassrError, match=r"sbs\.png: one picture; say how its two views sit with "
                                          r"--layout \(one of: sbsl, sbsr"):
        media.read_stereo(picture)
    with pytest.raises(IpassrError, match=r"width \(7 px\) is odd"):
        media.read_stereo(picture, "sbsl")
    with pytest.raises(IpassrError, match="unknown stereo layout 'side'"):
        media.read_stereo(picture, "side")
    with pytest.raises(IpassrError, match="drop --layout sbsl"):
        media.read_stereo(MPO, "sbsl")


def test_outputs_that_cannot_be_written_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(IpassrError, match="cannot write a spatial HEIC"):
        media.plan_target(tmp_path / "out.heic")
    with pytest.raises(IpassrError, match="an MPO holds the views as frames; drop --output-layout"):
        media.plan_target(tmp_path / "out.mpo", output_layout="sbsl")
    with pytest.raises(IpassrError, match=r"unknown image format '\.xyz'"):
        media.plan_target(tmp_path / "out.xyz")
    with pytest.raises(IpassrError, match="--output-layout sbsl is for one output file"):
        media.plan_target(output_left=tmp_path / "l.png", output_right=tmp_path / "r.png",
                          output_layout="sbsl")


def test_mark_views_needs_an_mp_index():
    with pytest.raises(ValueError, match="no MP Index"):
        containers.mark_views(bytearray(b"\xff\xd8\xff\xda"))
