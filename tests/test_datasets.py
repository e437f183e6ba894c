"""Dataset readers on the real layouts in shared/data and on tiny synthetic KITTI/plain/test-set folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ipassr.data.datasets import check_pairs, detect_layout, open_dataset, read_pair, read_testset
from ipassr.errors import IpassrError


def _png(path: Path, size=(20, 12), value: int = 0, mode: str = "RGB") -> Path:
    """Write a tiny constant image (W, H) of the given mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode != "RGB" else (value, value, value)).save(path)
    return path


def test_flickr1024(data_dir):
    dataset = open_dataset(data_dir / "flickr1024" / "Train")
    assert dataset.layout == "flickr1024" and not dataset.is_middlebury
    assert [p.name for p in dataset.pairs] == ["0001"]
    assert dataset.pairs[0].left.name == "0001_L.png" and dataset.pairs[0].right.name == "0001_R.png"


def test_middeval3_reads_real_pairs(data_dir):
    dataset = open_dataset(data_dir / "middlebury" / "MiddEval3" / "trainingQ")
    assert dataset.layout == "middlebury2014" and dataset.is_middlebury
    assert [p.name for p in dataset.pairs] == ["ArtL", "Teddy"]
    assert all(p.left.name == "im0.png" and p.right.name == "im1.png" for p in dataset.pairs)
    check_pairs(dataset.pairs)
    name, left, right = next(iter(dataset))
    assert name == "ArtL" and left.dtype == np.uint8 and left.shape == right.shape and left.shape[2] == 3


def test_middlebury_2003_dataset_and_scene_folder(data_dir):
    for root in (data_dir / "middlebury" / "2003", data_dir / "middlebury" / "2003" / "Cones"):
        dataset = open_dataset(root)
        assert dataset.layout == "middlebury2003" and dataset.is_middlebury
        assert [(p.name, p.left.name, p.right.name) for p in dataset.pairs] == [("Cones", "im2.png", "im6.png")]


def test_eth3d(data_dir):
    dataset = open_dataset(data_dir / "eth3d" / "two_view_training")
    assert dataset.layout == "eth3d" and not dataset.is_middlebury
    assert [p.name for p in dataset.pairs] == ["electro_2s"]


def test_middlebury_2005_view1_view5(tmp_path):
    for scene in ("Art", "Books"):
        _png(tmp_path / "m2005" / scene / "view1.png")
        _png(tmp_path / "m2005" / scene / "view5.png")
    dataset = open_dataset(tmp_path / "m2005")
    assert dataset.layout == "middlebury2005" and [p.name for p in dataset.pairs] == ["Art", "Books"]


def _kitti(root: Path, left: str, right: str, gt: str | None, names=("000000_10", "000001_10")) -> Path:
    for name in names:
        _png(root / left / f"{name}.png")
        _png(root / right / f"{name}.png")
    if gt:
        array = np.full((12, 20), 256 * 7, dtype=np.uint16)
        (root / gt).mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(root / gt / f"{names[0]}.png")
    return root


def test_kitti_2012_and_2015_with_ground_truth(tmp_path):
    k12 = open_dataset(_kitti(tmp_path / "k12", "colored_0", "colored_1", "disp_occ"))
    k15 = open_dataset(_kitti(tmp_path / "k15", "image_2", "image_3", "disp_occ_0"))
    assert k12.layout == "kitti2012" and k15.layout == "kitti2015"
    for dataset, gt in ((k12, "disp_occ"), (k15, "disp_occ_0")):
        assert [p.name for p in dataset.pairs] == ["000000_10", "000001_10"]
        assert dataset.pairs[0].disparity.parent.name == gt and dataset.pairs[1].disparity is None
        assert dataset.pairs[0].right.parent.name in ("colored_1", "image_3")


def test_plain_folder_and_unpaired_files_listed(tmp_path):
    for stem in ("beach", "city"):
        _png(tmp_path / "plain" / f"{stem}_L.png")
        _png(tmp_path / "plain" / f"{stem}_R.png")
    dataset = open_dataset(tmp_path / "plain")
    assert dataset.layout == "plain" and [p.name for p in dataset.pairs] == ["beach", "city"]
    _png(tmp_path / "plain" / "lonely_L.png")
    _png(tmp_path / "plain" / "orphan_R.png")
    with pytest.raises(IpassrError) as error:
        open_dataset(tmp_path / "plain")
    assert "lonely_L.png" in str(error.value) and "orphan_R.png" in str(error.value)
    assert "2 unpaired" in str(error.value)


def test_kitti_unpaired_listed(tmp_path):
    root = _kitti(tmp_path / "k15", "image_2", "image_3", None)
    _png(root / "image_2" / "000009_10.png")
    with pytest.raises(IpassrError, match="000009_10.png has no match in image_3"):
        open_dataset(root)


def test_scene_folder_missing_view(tmp_path):
    _png(tmp_path / "MiddEval3" / "Teddy" / "im0.png")
    _png(tmp_path / "MiddEval3" / "Teddy" / "im1.png")
    _png(tmp_path / "MiddEval3" / "Piano" / "im0.png")
    with pytest.raises(IpassrError, match="Piano/ has im0.png but no im1"):
        open_dataset(tmp_path / "MiddEval3")


def test_testset_layout(tmp_path):
    for scene in ("a", "b"):
        _png(tmp_path / "T" / "hr" / scene / "hr0.png", (16, 8))
        _png(tmp_path / "T" / "hr" / scene / "hr1.png", (16, 8))
        _png(tmp_path / "T" / "lr_x2" / scene / "lr0.png", (8, 4))
        _png(tmp_path / "T" / "lr_x2" / scene / "lr1.png", (8, 4))
    dataset = open_dataset(tmp_path / "T")
    assert dataset.layout == "testset" and [p.left.name for p in dataset.pairs] == ["hr0.png", "hr0.png"]
    scenes = read_testset(tmp_path / "T", 2)
    assert [s.lr_right.name for s in scenes] == ["lr1.png", "lr1.png"]
    with pytest.raises(IpassrError, match="no lr_x4/ folder.*found lr_x2"):
        read_testset(tmp_path / "T", 4)
    (tmp_path / "T" / "lr_x2" / "b" / "lr1.png").unlink()
    with pytest.raises(IpassrError, match="lr_x2/b/ lacks lr1"):
        read_testset(tmp_path / "T", 2)


def test_unreadable_size_mismatch_and_mixed_grey_rgb_all_listed(tmp_path):
    root = tmp_path / "plain"
    _png(root / "good_L.png")
    _png(root / "good_R.png")
    _png(root / "broken_L.png")
    (root / "broken_R.png").write_bytes(b"not a png at all")
    _png(root / "sizes_L.png", (20, 12))
    _png(root / "sizes_R.png", (22, 12))
    _png(root / "mixed_L.png", mode="L")
    _png(root / "mixed_R.png")
    dataset = open_dataset(root)
    with pytest.raises(IpassrError) as error:
        check_pairs(dataset.pairs, root)
    message = str(error.value)
    assert "3 bad pair(s)" in message and "broken_R.png" in message
    assert "sizes: left sizes_L.png is 20x12 but right sizes_R.png is 22x12" in message
    assert "mixed: left mixed_L.png is grayscale but right mixed_R.png is RGB" in message
    mixed = next(p for p in dataset.pairs if p.name == "mixed")
    with pytest.raises(IpassrError, match="mixed grayscale/RGB"):
        read_pair(mixed)


def test_grey_pairs_are_fine(tmp_path):
    _png(tmp_path / "g" / "x_L.png", mode="L", value=9)
    _png(tmp_path / "g" / "x_R.png", mode="L", value=9)
    name, left, right = next(iter(open_dataset(tmp_path / "g")))
    assert left.shape == (12, 20, 3) and np.all(left == 9)


def test_no_dataset_and_hints(tmp_path, data_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IpassrError, match="no stereo dataset found"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(IpassrError, match="no such folder"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(IpassrError, match=r"datasets found in subfolders: .*MiddEval3/trainingQ"):
        detect_layout(data_dir / "middlebury")


def test_generic_im0_im1_and_forced_layout(tmp_path):
    for scene in ("sceneA", "sceneB"):
        _png(tmp_path / "stuff" / scene / "im0.png")
        _png(tmp_path / "stuff" / scene / "im1.png")
    assert open_dataset(tmp_path / "stuff").layout == "im0-im1"
    forced = open_dataset(tmp_path / "stuff", layout="middlebury2014")
    assert forced.is_middlebury and len(forced) == 2
    with pytest.raises(IpassrError, match="unknown layout"):
        open_dataset(tmp_path / "stuff", layout="nope")
