"""What an input stores comes back (issues 25 and 26): grey stays grey (L, I;16), 16 bits stay 16
bits, alpha is upscaled and kept, on every path: one pair, a folder at any batch size, the API."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import ipassr
from ipassr.cli import main
from ipassr.data.io import read_image, read_pixels, write_image
from ipassr.data.resize import imresize_tensor


@pytest.fixture(scope="module")
def model(conformance_dir):
    return ipassr.load_model(conformance_dir / "x2.pth.tar")


@pytest.fixture(scope="module")
def views(cones_pair):
    """Two 24x40 crops of the real Cones pair, RGB uint8."""
    return [read_image(p)[110:134, 160:200] for p in cones_pair]


def grey(view: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(view).convert("L"))


def infer_pair(weights, left, right, out_left, out_right, *extra) -> None:
    assert main(["infer", "--weights", str(weights), "--left", str(left), "--right", str(right),
                 "--output-left", str(out_left), "--output-right", str(out_right), *extra]) == 0


def test_grey_pairs_stay_grey_at_every_batch_size(tmp_path, views, conformance_dir):
    """Folder mode at --batch-size 2 used to write tinted RGB for grey pairs."""
    weights = conformance_dir / "x2.pth.tar"
    for name, flip in (("a", False), ("b", True)):
        for side, view in zip("LR", views):
            write_image(tmp_path / "in" / f"{name}_{side}.png", grey(view[:, ::-1] if flip else view))
    outputs = {}
    for batch in (1, 2):
        out = tmp_path / f"out{batch}"
        assert main(["infer", "--weights", str(weights), "--input-dir", str(tmp_path / "in"),
                     "--output-dir", str(out), "--batch-size", str(batch)]) == 0
        for path in sorted(out.glob("*.png")):
            with Image.open(path) as image:
                assert image.mode == "L", (batch, path.name)
                outputs.setdefault(path.name, []).append(np.asarray(image).astype(int))
    for one, two in outputs.values():
        assert np.abs(one - two).max() <= 1  # float rounding at .5 between batch sizes
    infer_pair(weights, tmp_path / "in" / "a_L.png", tmp_path / "in" / "a_R.png",
               tmp_path / "l.png", tmp_path / "r.png")
    assert np.array_equal(read_pixels(tmp_path / "l.png"), outputs["a_L.png"][0])


def test_sixteen_bit_grey_comes_back_sixteen_bit(tmp_path, views, conformance_dir):
    """The low byte reaches the network (it used to be rounded away) and the result is I;16."""
    weights = conformance_dir / "x2.pth.tar"
    noise = np.random.default_rng(0).integers(0, 256, views[0].shape[:2], dtype=np.uint16)
    for name, low in (("clean", 0), ("noisy", noise)):
        for side, view in zip("LR", views):
            Image.fromarray(grey(view).astype(np.uint16) * 256 + low).save(
                tmp_path / f"{name}_{side}.png")
        infer_pair(weights, tmp_path / f"{name}_L.png", tmp_path / f"{name}_R.png",
                   tmp_path / f"sr_{name}_L.png", tmp_path / f"sr_{name}_R.png")
        with Image.open(tmp_path / f"sr_{name}_L.png") as image:
            assert image.mode == "I;16"
    clean, noisy = (read_pixels(tmp_path / f"sr_{n}_L.png") for n in ("clean", "noisy"))
    assert clean.dtype == np.uint16 and clean.shape == (48, 80)
    assert not np.array_equal(clean, noisy)
    eight_bit, _ = ipassr.load_model(weights).super_resolve(grey(views[0]), grey(views[1]))
    # 16-bit clean input = 8-bit input * 256: the same picture, to 8-bit rounding
    assert np.abs(clean / 256.0 - eight_bit).max() <= 1.0


def test_sixteen_bit_colour_png_and_tiff(tmp_path, views, model):
    """16-bit RGB PNG and TIFF (read and written through OpenCV) keep their 16 bits."""
    sixteen = [v.astype(np.uint16) * 257 + 100 for v in views]
    for suffix in (".png", ".tif"):
        paths = [tmp_path / f"{side}{suffix}" for side in "LR"]
        for path, view in zip(paths, sixteen):
            write_image(path, view)
            assert np.array_equal(read_pixels(path), view)
        sr_left, sr_right = model.super_resolve(*paths)
        assert sr_left.dtype == np.uint16 and sr_left.shape == (48, 80, 3)
        from_arrays = model.super_resolve(*sixteen)
        assert np.array_equal(sr_left, from_arrays[0]) and np.array_equal(sr_right, from_arrays[1])


def test_alpha_is_upscaled_and_kept(tmp_path, views, model, conformance_dir):
    """RGBA in, RGBA out: the colour as without alpha, the alpha MATLAB-bicubic upscaled; an
    opaque alpha stays opaque, without a warning."""
    height, width = views[0].shape[:2]
    ramp = np.linspace(0, 255, width, dtype=np.float32).round().astype(np.uint8)
    alphas = {"ramp": np.tile(ramp, (height, 1)), "opaque": np.full((height, width), 255, np.uint8)}
    for name, alpha in alphas.items():
        for side, view in zip("LR", views):
            write_image(tmp_path / f"{name}_{side}.png", np.dstack([view, alpha]))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            infer_pair(conformance_dir / "x2.pth.tar", tmp_path / f"{name}_L.png",
                       tmp_path / f"{name}_R.png", tmp_path / f"sr_{name}_L.png",
                       tmp_path / f"sr_{name}_R.png")
        result = read_pixels(tmp_path / f"sr_{name}_L.png")
        assert result.shape == (48, 80, 4)
        colour, _ = model.super_resolve(*views)
        assert np.array_equal(result[:, :, :3], colour)
        expected = imresize_tensor(torch.from_numpy(alpha / np.float32(255)), 2).clamp(0, 1)
        assert np.array_equal(result[:, :, 3], (expected * 255).round().to(torch.uint8).numpy())
    assert (read_pixels(tmp_path / "sr_opaque_R.png")[:, :, 3] == 255).all()


def test_api_gives_back_what_it_was_given(tmp_path, views, model):
    """Paths, PIL modes L / LA / RGBA / I;16 and uint16 arrays come back as they came."""
    for side, view in zip("LR", views):
        write_image(tmp_path / f"{side}.png", grey(view))
    from_paths = model.super_resolve(tmp_path / "L.png", str(tmp_path / "R.png"))
    from_arrays = model.super_resolve(grey(views[0]), grey(views[1]))
    assert from_paths[0].shape == (48, 80) and np.array_equal(from_paths[0], from_arrays[0])
    for mode in ("L", "LA", "RGBA", "I;16"):
        pil = [Image.fromarray(v).convert(mode) for v in views]
        result = model.super_resolve(*pil)
        assert all(isinstance(r, Image.Image) and r.mode == mode for r in result), mode
    sixteen = model.super_resolve(*(v.astype(np.uint16) * 257 for v in views))
    assert sixteen[0].dtype == np.uint16 and sixteen[0].shape == (48, 80, 3)


def test_write_image_warns_where_the_format_cannot_hold_it(tmp_path):
    rgba16 = np.full((4, 6, 4), 40000, np.uint16)
    with pytest.warns(UserWarning, match="has no alpha channel"):
        with pytest.warns(UserWarning, match="holds 8 bits"):
            write_image(tmp_path / "x.jpg", rgba16)
    assert read_pixels(tmp_path / "x.jpg").shape == (4, 6, 3)
