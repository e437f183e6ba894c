"""`ipassr prepare testset` + `ipassr evaluate`: the paper's protocol end to end, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ipassr.cli import main
from ipassr.data.disparity import read_pfm
from ipassr.data.io import read_image, write_image
from ipassr.evaluation.metrics import score_pair
from ipassr.data.resize import imresize


@pytest.fixture(scope="module")
def root(tmp_path_factory, cones_pair, data_dir) -> Path:
    """A dataset root with two tiny test sets made by `ipassr prepare testset` from real crops."""
    base = tmp_path_factory.mktemp("eval")
    left, right = (read_image(p) for p in cones_pair)
    for k, (y, x) in enumerate([(40, 60), (200, 250)]):
        write_image(base / "src" / f"s{k}_L.png", left[y:y + 98, x:x + 162])      # mod-cropped to 96x160
        write_image(base / "src" / f"s{k}_R.png", right[y:y + 98, x:x + 162])
    teddy = data_dir / "middlebury" / "MiddEval3" / "trainingQ" / "Teddy"
    for name in ("im0", "im1"):
        write_image(base / "mid" / "Teddy" / f"{name}.png", read_image(teddy / f"{name}.png")[100:180, 50:170])
    assert main(["prepare", "testset", str(base / "src"), "--name", "Crops", "--output-root", str(base / "root")]) == 0
    assert main(["prepare", "testset", str(base / "mid"), "--name", "Mid", "--output-root", str(base / "root")]) == 0
    return base / "root"


def test_prepare_testset_layout_and_matlab_lr(root, cones_pair):
    hr = read_image(root / "Crops" / "hr" / "s0" / "hr0.png")
    assert hr.shape == (96, 160, 3)
    np.testing.assert_array_equal(hr, read_image(cones_pair[0])[40:136, 60:220])
    for scale in (2, 4):
        lr = read_image(root / "Crops" / f"lr_x{scale}" / "s0" / "lr0.png")
        np.testing.assert_array_equal(lr, imresize(hr, 1 / scale))
        assert (root / "Crops" / f"lr_x{scale}" / "s1" / "lr1.png").is_file()
    assert sorted(p.name for p in (root / "Mid" / "hr").iterdir()) == ["Teddy"]
    assert not any(p.name.startswith(".") for p in root.iterdir())        # no partial folder left behind


def test_prepare_testset_refuses_to_overwrite(root, capsys, tmp_path):
    assert main(["prepare", "testset", str(root / "Crops"), "--name", "Crops", "--output-root", str(root)]) == 2
    assert "already exists" in capsys.readouterr().err
    # The community layout itself is a valid source (its HR pairs are re-used).
    assert main(["prepare", "testset", str(root / "Crops"), "--name", "Copy", "--output-root", str(tmp_path)]) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "Copy" / "lr_x4" / "s1" / "lr1.png"),
                                  read_image(root / "Crops" / "lr_x4" / "s1" / "lr1.png"))


def test_evaluate_bicubic_table_json_markdown(root, tmp_path, capsys):
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    assert main(["evaluate", "--dataset-root", str(root), "--scale", "2", "--bicubic",
                 "--json", str(out_json), "--markdown", str(out_md)]) == 0
    printed = capsys.readouterr().out
    assert "Crops" in printed and "Mid" in printed and "(Left+Right)/2" in printed and "Bicubic" in printed
    data = json.loads(out_json.read_text())
    assert data["scale"] == 2 and data["datasets"] == ["Crops", "Mid"]
    crops = data["methods"]["Bicubic"]["Crops"]
    assert set(crops) == {"left_psnr", "left_ssim", "stereo_psnr", "stereo_ssim", "scenes"}
    assert set(crops["scenes"]) == {"s0", "s1"}
    # Per-scene figures are the protocol applied directly; dataset figures are the mean over scenes.
    hr = [read_image(root / "Crops" / "hr" / "s1" / f"hr{v}.png") for v in (0, 1)]
    lr = [read_image(root / "Crops" / "lr_x2" / "s1" / f"lr{v}.png") for v in (0, 1)]
    direct = score_pair(imresize(lr[0], 2), imresize(lr[1], 2), hr[0], hr[1]).to_dict()
    assert crops["scenes"]["s1"] == pytest.approx(direct)
    assert crops["left_psnr"] == pytest.approx(np.mean([s["left_psnr"] for s in crops["scenes"].values()]))
    assert 20 < crops["stereo_psnr"] < 40 and 0.5 < crops["stereo_ssim"] < 1
    markdown = out_md.read_text()
    assert "| Method | Scale | Crops Left | Crops (Left+Right)/2 | Mid Left |" in markdown
    assert "Gaussian window 11x11" in markdown


def test_sr_dir_equals_bicubic_and_missing_results_listed(root, tmp_path, capsys):
    sr = tmp_path / "sr"
    for dataset in ("Crops", "Mid"):
        for scene in sorted(p.name for p in (root / dataset / "hr").iterdir()):
            for view, side in ((0, "L"), (1, "R")):
                lr = read_image(root / dataset / "lr_x4" / scene / f"lr{view}.png")
                write_image(sr / dataset / f"{scene}_{side}.png", imresize(lr, 4))
    out = tmp_path / "r.json"
    assert main(["evaluate", "--dataset-root", str(root), "--scale", "4", "--bicubic",
                 "--sr-dir", f"Mine={sr}", "--json", str(out)]) == 0
    methods = json.loads(out.read_text())["methods"]
    assert list(methods) == ["Bicubic", "Mine"]
    assert methods["Mine"] == methods["Bicubic"]
    capsys.readouterr()
    Image.open(sr / "Mid" / "Teddy_R.png").convert("L").save(sr / "Mid" / "Teddy_R.png")
    assert main(["evaluate", "--dataset-root", str(root), "--scale", "4", "--sr-dir", str(sr)]) == 2
    assert "Mid/Teddy: sr result Teddy_R.png is grayscale but HR is RGB" in capsys.readouterr().err
    (sr / "Crops" / "s0_R.png").unlink()
    (sr / "Mid" / "Teddy_L.png").unlink()
    assert main(["evaluate", "--dataset-root", str(root), "--scale", "4", "--sr-dir", str(sr)]) == 2
    err = capsys.readouterr().err
    assert "2 SR result(s) missing" in err and "s0_R.png" in err and "Teddy_L.png" in err


def test_weights_method_runs_the_network(root, conformance_dir, tmp_path, capsys):
    out = tmp_path / "w.json"
    assert main(["evaluate", "--dataset-root", str(root), "--datasets", "Mid", "--scale", "2",
                 "--weights", str(conformance_dir / "x2.pth.tar"), "--json", str(out)]) == 0
    methods = json.loads(out.read_text())["methods"]
    assert list(methods) == ["x2"] and set(methods["x2"]) == {"Mid"}
    assert np.isfinite(methods["x2"]["Mid"]["left_psnr"])
    capsys.readouterr()
    assert main(["evaluate", "--dataset-root", str(root), "--scale", "2",
                 "--weights", str(conformance_dir / "x4.pth.tar")]) == 2
    assert "ipassr: error:" in capsys.readouterr().err


def _copy_set(source: Path, target: Path) -> Path:
    """Copy a test set (so a test can break it)."""
    import shutil

    shutil.copytree(source, target)
    return target


def test_bad_input(root, tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    assert main(["evaluate", "--dataset-root", str(tmp_path / "nothing"), "--scale", "2", "--bicubic"]) == 2
    assert "no datasets found" in capsys.readouterr().err
    assert main(["evaluate", "--dataset-root", str(root), "--scale", "3", "--bicubic"]) == 2
    assert "no lr_x3/ folder" in capsys.readouterr().err

    broken = _copy_set(root / "Crops", tmp_path / "bad" / "Crops")
    write_image(broken / "lr_x2" / "s1" / "lr0.png", np.zeros((40, 70, 3), np.uint8))
    write_image(broken / "lr_x2" / "s1" / "lr1.png", np.zeros((40, 70, 3), np.uint8))
    assert main(["evaluate", "--dataset-root", str(tmp_path / "bad"), "--scale", "2", "--bicubic"]) == 2
    err = capsys.readouterr().err
    assert "Crops/s1: HR is 160x96 but LR x2 is 70x40" in err and "s0" not in err.split("test data:")[1]

    mixed = _copy_set(root / "Crops", tmp_path / "mixed" / "Crops")
    grey = Image.open(mixed / "lr_x2" / "s0" / "lr1.png").convert("L")
    grey.save(mixed / "lr_x2" / "s0" / "lr1.png")
    assert main(["evaluate", "--dataset-root", str(tmp_path / "mixed"), "--scale", "2", "--bicubic"]) == 2
    assert "Crops/s0: mixed grayscale/RGB" in capsys.readouterr().err

    narrow = tmp_path / "narrow" / "N"
    for name, size in (("hr", (72, 40)), ("lr_x2", (36, 20))):
        for view in (0, 1):
            prefix = "hr" if name == "hr" else "lr"
            write_image(narrow / name / "tiny" / f"{prefix}{view}.png", np.zeros(size[::-1] + (3,), np.uint8))
    assert main(["evaluate", "--dataset-root", str(tmp_path / "narrow"), "--scale", "2", "--bicubic"]) == 2
    assert "N/tiny: HR is 72x40, smaller than the 64-column crop" in capsys.readouterr().err

    assert main(["evaluate", "--dataset-root", str(root), "--scale", "2"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_real_middlebury_scene_end_to_end(data_dir, tmp_path, capsys):
    """Real 2003 Cones: prepare testset, then bicubic x4 scores sit in the expected range."""
    assert main(["prepare", "testset", str(data_dir / "middlebury" / "2003"), "--name", "Middlebury2003",
                 "--output-root", str(tmp_path)]) == 0
    assert read_image(tmp_path / "Middlebury2003" / "hr" / "Cones" / "hr0.png").shape == (372, 448, 3)
    assert main(["evaluate", "--dataset-root", str(tmp_path), "--scale", "4", "--bicubic",
                 "--json", str(tmp_path / "r.json")]) == 0
    scores = json.loads((tmp_path / "r.json").read_text())["methods"]["Bicubic"]["Middlebury2003"]
    assert 20 < scores["left_psnr"] < 30 and 0.5 < scores["left_ssim"] < 0.9


def test_prepare_copies_ground_truth_disparity_and_evaluate_uses_it(tmp_path, capsys):
    texture = np.random.default_rng(0).integers(0, 256, (42, 100, 3), dtype=np.uint8)
    write_image(tmp_path / "k15" / "image_2" / "000000_10.png", texture[:, 3:93])     # left(x) = right(x - 3)
    write_image(tmp_path / "k15" / "image_3" / "000000_10.png", texture[:, 6:96])
    raw = np.full((42, 90), 256 * 3, dtype=np.uint16)
    raw[0, 0] = 0
    (tmp_path / "k15" / "disp_occ_0").mkdir()
    Image.fromarray(raw).save(tmp_path / "k15" / "disp_occ_0" / "000000_10.png")
    assert main(["prepare", "testset", str(tmp_path / "k15"), "--name", "KITTI2015",
                 "--output-root", str(tmp_path / "out")]) == 0
    disparity = read_pfm(tmp_path / "out" / "KITTI2015" / "hr" / "000000_10" / "disp0.pfm")
    assert disparity.shape == (40, 88) and np.isnan(disparity[0, 0]) and disparity[5, 5] == 3.0
    capsys.readouterr()
    assert main(["evaluate", "--dataset-root", str(tmp_path / "out"), "--scale", "2", "--bicubic", "--disparity",
                 "--json", str(tmp_path / "d.json")]) == 0
    assert "Disparity (StereoSGBM) on KITTI2015, x2" in capsys.readouterr().out
    rows = json.loads((tmp_path / "d.json").read_text())["disparity"]["datasets"]["KITTI2015"]
    assert list(rows) == ["Bicubic", "HR"] and rows["HR"]["scenes"]["000000_10"]["epe"] < 1.0
