"""Reading every common image kind as RGB uint8 or as stored, and writing atomically."""

from __future__ import annotations

import os
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from ipassr.errors import ImageReadError
from ipassr.data.io import atomic_path, read_image, read_pixels, write_image


def test_real_rgb_png(cones_pair):
    image = read_image(cones_pair[0])
    assert image.shape == (375, 450, 3) and image.dtype == np.uint8 and image.flags.writeable


def test_grayscale_is_replicated(tmp_path):
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10)
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.shape == (6, 10, 3)
    assert np.array_equal(image[:, :, 0], grey) and np.array_equal(image[:, :, 2], grey)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    image = read_image(tmp_path / "d.png")
    assert image[0, :, 0].tolist() == [0, 1, 128, 255]


def test_rgba_drops_alpha_with_a_warning(tmp_path):
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match=r"a\.png: alpha channel dropped"):
        image = read_image(tmp_path / "a.png")
    assert image.shape == (4, 5, 3) and np.all(image[..., 0] == 200)


def test_palette_image(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[:2] = (255, 0, 0)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image[0, 0].tolist() == [255, 0, 0] and image[3, 3].tolist() == [0, 0, 0]


def test_truncated_png_names_the_file(tmp_path, cones_pair):
    data = cones_pair[0].read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match=r"cut\.png: not a readable image"):
        read_image(tmp_path / "cut.png")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.png: not a readable image"):
        read_image(tmp_path / "notes.png")


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_write_image_round_trip_leaves_no_temp_file(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    write_image(tmp_path / "out" / "x.png", image)
    assert np.array_equal(read_image(tmp_path / "out" / "x.png"), image)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.png"]


def test_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_written_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_image(tmp_path / "m.png", np.zeros((2, 2, 3), dtype=np.uint8))
    finally:
        os.umask(old)
    assert (tmp_path / "m.png").stat().st_mode & 0o777 == 0o644


def test_opaque_alpha_is_dropped_without_a_warning(tmp_path):
    rgba = np.full((4, 5, 4), 255, dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "a.png").shape == (4, 5, 3)


def test_read_pixels_keeps_channels_and_bit_depth(tmp_path):
    """What the file stores: grey (H, W), grey + alpha (H, W, 2), RGBA for a transparent palette,
    uint16 for 16-bit grey, and a 16-bit grey + alpha PNG (which Pillow opens as 8-bit RGBA)."""
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    Image.fromarray(grey).save(tmp_path / "l.png")
    Image.fromarray(np.dstack([grey, grey[::-1]]), "LA").save(tmp_path / "la.png")
    palette = Image.fromarray(np.dstack([grey] * 3)).convert("P")
    palette.save(tmp_path / "p.png", transparency=0)
    Image.fromarray(grey.astype(np.uint16) * 3000).save(tmp_path / "i16.png")
    assert np.array_equal(read_pixels(tmp_path / "l.png"), grey)
    assert np.array_equal(read_pixels(tmp_path / "la.png")[:, :, 1], grey[::-1])
    assert read_pixels(tmp_path / "p.png").shape == (4, 5, 4)
    assert np.array_equal(read_pixels(tmp_path / "i16.png"), grey.astype(np.uint16) * 3000)
    la16 = np.dstack([grey.astype(np.uint16) * 3000 + 7, np.full((4, 5), 60000, np.uint16)])
    (tmp_path / "la16.png").write_bytes(png_bytes(la16, colour_type=4))
    assert np.array_equal(read_pixels(tmp_path / "la16.png"), la16)


def png_bytes(pixels: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG written by hand (unfiltered rows), for kinds neither Pillow nor OpenCV write."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    height, width = pixels.shape[:2]
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))
