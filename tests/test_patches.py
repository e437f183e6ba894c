"""Training patches: positions as the reference's MATLAB loops, the file format, and bad files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy as safetensors_numpy

from ipassr.cli import main
from ipassr.errors import IpassrError
from ipassr.data.io import read_image, write_image
from ipassr.data.patches import PatchFile, count_patches, extract_patches, patch_origins, prepare_pair
from ipassr.data.resize import imresize


def _reference_patches(hr_left: np.ndarray, lr_left: np.ndarray, scale: int):
    """The reference loops, 1-based: for x = 3:20:h-33, for y = 3:20:w-93 (slow, independent)."""
    lr_patches, hr_patches = [], []
    h, w = lr_left.shape[:2]
    for x in range(3, h - 33 + 1, 20):
        for y in range(3, w - 93 + 1, 20):
            lr_patches.append(lr_left[x - 1:x + 29, y - 1:y + 89])
            x_hr, y_hr = (x - 1) * scale + 1, (y - 1) * scale + 1
            hr_patches.append(hr_left[x_hr - 1:(x + 29) * scale, y_hr - 1:(y + 89) * scale])
    return lr_patches, hr_patches


@pytest.fixture(scope="module")
def cones(cones_pair):
    """The real 2003 Cones pair (450x375): at x4 it gives 3 patches, at x2 56."""
    return tuple(read_image(p) for p in cones_pair)


@pytest.mark.parametrize("scale", [2, 4])
def test_patches_match_reference_loops(cones, scale):
    left, right = cones
    lr_l, lr_r, hr_l, hr_r = extract_patches(left, right, scale)
    hr_left, hr_right, lr_left, lr_right = prepare_pair(left, right, scale)
    np.testing.assert_array_equal(lr_left, imresize(hr_left, 1 / scale))
    expected_lr, expected_hr = _reference_patches(hr_left, lr_left, scale)
    assert len(expected_lr) == {2: 56, 4: 3}[scale]
    assert lr_l.shape == (len(expected_lr), 30, 90, 3) and hr_l.shape == (len(expected_lr), 30 * scale, 90 * scale, 3)
    for k in range(len(expected_lr)):
        np.testing.assert_array_equal(lr_l[k], expected_lr[k])
        np.testing.assert_array_equal(hr_l[k], expected_hr[k])
    right_lr, right_hr = _reference_patches(hr_right, lr_right, scale)
    np.testing.assert_array_equal(lr_r[-1], right_lr[-1])
    np.testing.assert_array_equal(hr_r[-1], right_hr[-1])
    assert lr_l.shape[0] == count_patches(left.shape[1], left.shape[0], scale, False)


def test_origins_and_margins():
    rows, cols = patch_origins(64, 124)
    assert rows.tolist() == [2, 22] and cols.tolist() == [2, 22]    # last start H-34=30 -> 22, W-94=30 -> 22
    assert patch_origins(33, 93)[0].size == 0                      # too small for any patch
    assert count_patches(744, 1096, 4, False) == 12 * 5             # Flickr1024 0001 at x4


def test_middlebury_is_shrunk_by_two_first(cones):
    left, right = cones
    hr_left, _, lr_left, _ = prepare_pair(left, right, 2, middlebury=True)
    half = imresize(left, 0.5)
    np.testing.assert_array_equal(hr_left, half[: half.shape[0] // 2 * 2, : half.shape[1] // 2 * 2])
    assert count_patches(450, 375, 2, True) == extract_patches(left, right, 2, True)[0].shape[0] > 0


@pytest.fixture(scope="module")
def sources(tmp_path_factory, cones):
    """Two tiny plain sources and one Middlebury-2003-layout source made from real Cones crops."""
    root = tmp_path_factory.mktemp("sources")
    left, right = cones
    write_image(root / "a" / "one_L.png", left)
    write_image(root / "a" / "one_R.png", right)
    write_image(root / "a" / "two_L.png", left[:150, :250])
    write_image(root / "a" / "two_R.png", right[:150, :250])
    write_image(root / "Cones" / "im2.png", left)
    write_image(root / "Cones" / "im6.png", right)
    return root


def test_prepare_patches_cli_writes_one_safetensors_file(sources, tmp_path, capsys, cones):
    out = tmp_path / "p.safetensors"
    assert main(["prepare", "patches", str(sources / "a"), str(sources / "Cones"), "--scale", "2",
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    patches = PatchFile(out)
    expected_a = count_patches(450, 375, 2, False) + count_patches(250, 150, 2, False)
    expected_cones = count_patches(450, 375, 2, True)
    assert expected_a > 56 and expected_cones > 0
    assert list(patches.sources.values()) == [expected_a, expected_cones]
    assert len(patches) == expected_a + expected_cones and patches.scale == 2
    assert str(expected_a) in printed and "shrunk by 2" in printed
    lr_l, lr_r, hr_l, hr_r = patches[0]
    first = extract_patches(*cones, 2)
    for got, want in zip(patches[0], first):
        np.testing.assert_array_equal(got, want[0])
    assert hr_r.shape == (60, 180, 3) and lr_r.dtype == np.uint8
    np.testing.assert_array_equal(patches[-1][0], patches.batch([len(patches) - 1])[0][0])
    with pytest.raises(IndexError):
        patches[len(patches)]
    import pickle
    blob = pickle.dumps(patches)
    assert len(blob) < 1000                                          # by path, not by data
    np.testing.assert_array_equal(pickle.loads(blob)[7][2], patches[7][2])
    # The standard safetensors reader agrees on names, shapes and metadata.
    loaded = safetensors_numpy.load_file(str(out))
    assert {k: v.shape for k, v in loaded.items()} == {
        "lr_left": (len(patches), 30, 90, 3), "lr_right": (len(patches), 30, 90, 3),
        "hr_left": (len(patches), 60, 180, 3), "hr_right": (len(patches), 60, 180, 3)}
    np.testing.assert_array_equal(loaded["hr_right"][5], patches[5][3])
    from safetensors import safe_open
    with safe_open(str(out), framework="np") as handle:
        meta = handle.metadata()
    assert meta["format"] == "ipassr-patches" and meta["version"] == "1" and meta["scale"] == "2"
    assert meta["lr_patch_height"] == "30" and meta["lr_patch_width"] == "90"
    assert json.loads(meta["sources"]) == patches.sources
    # Refuses to overwrite unless asked.
    assert main(["prepare", "patches", str(sources / "a"), "--scale", "2", "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_too_small_sources(tmp_path, capsys):
    write_image(tmp_path / "s" / "x_L.png", np.zeros((40, 60, 3), np.uint8))
    write_image(tmp_path / "s" / "x_R.png", np.zeros((40, 60, 3), np.uint8))
    assert main(["prepare", "patches", str(tmp_path / "s"), "--scale", "4", "--output",
                 str(tmp_path / "p.safetensors")]) == 2
    assert "no training patches" in capsys.readouterr().err
    assert not (tmp_path / "p.safetensors").exists()


def _write_small_file(path: Path) -> Path:
    """A valid 4-patch x2 file written by the real writer."""
    from ipassr.data.datasets import PairFiles
    from ipassr.data.patches import PatchJob, write_patch_file

    image = np.random.default_rng(0).integers(0, 256, (130, 250, 3), dtype=np.uint8)
    job = PatchJob(PairFiles("r", Path("l"), Path("r")), "rand", False, count_patches(250, 130, 2, False))
    write_patch_file(path, [job], 2, lambda pair: (image, image))
    return path


def test_bad_patch_files_name_the_file(tmp_path):
    good = _write_small_file(tmp_path / "good.safetensors")
    assert len(PatchFile(good)) == 4                                # LR 65x125: starts 2, 22 in both directions
    data = good.read_bytes()
    cases = {
        "empty.safetensors": b"",
        "truncated.safetensors": data[: len(data) - 100],
        "garbage.safetensors": b"\x00" * 4 + b"hello world, not a patch file",
        "badjson.safetensors": struct.pack("<Q", 8) + b"{notjson" + b"\x00" * 16,
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(IpassrError, match=name):
            PatchFile(tmp_path / name)
    other = tmp_path / "other.safetensors"
    safetensors_numpy.save_file({"x": np.zeros((2, 2), np.float32)}, str(other), metadata={"format": "pt"})
    with pytest.raises(IpassrError, match="not an ipassr patch file"):
        PatchFile(other)
    with pytest.raises(IpassrError, match="no such patch file"):
        PatchFile(tmp_path / "missing.safetensors")
