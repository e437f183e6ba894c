"""``ipassr infer`` and the Python API on real pairs, and their bad-input behaviour."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ipassr
from ipassr.cli import main
from ipassr.errors import CheckpointError, IpassrError
from ipassr.data.io import read_image, write_image

from conftest import write_cones_crop


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory, cones_pair):
    """A 40x64 crop of the real Cones pair (keeps the CPU test quick)."""
    return write_cones_crop(tmp_path_factory.mktemp("pair"), cones_pair, slice(100, 140),
                            slice(150, 214))


@pytest.fixture(scope="module")
def x2_weights(conformance_dir):
    return conformance_dir / "x2.pth.tar"


@pytest.fixture(scope="module")
def model(x2_weights):
    return ipassr.load_model(x2_weights)


def test_cli_pair_writes_both_views(tmp_path, small_pair, x2_weights, model):
    out_left, out_right = tmp_path / "a.png", tmp_path / "b.png"
    code = main(["infer", "--left", str(small_pair[0]), "--right", str(small_pair[1]),
                 "--weights", str(x2_weights), "--output-left", str(out_left),
                 "--output-right", str(out_right)])
    assert code == 0
    sr_left = read_image(out_left)
    assert sr_left.shape == (80, 128, 3)
    expected, _ = model.super_resolve(read_image(small_pair[0]), read_image(small_pair[1]))
    assert np.array_equal(sr_left, expected)


def test_cli_bfloat16_is_close_to_float32(tmp_path, cones_pair, x2_weights, model):
    """Half precision (meant for GPUs) runs anywhere; only its rounding differs. On a 24x40 part
    of the small pair: bfloat16 on a CPU without it costs 4 s of CPU at 40x64, 1.5 s here."""
    left, right = write_cones_crop(tmp_path, cones_pair, slice(100, 124), slice(150, 190))
    views = [read_image(left), read_image(right)]
    out_left, out_right = tmp_path / "a.png", tmp_path / "b.png"
    code = main(["infer", "--left", str(left), "--right", str(right),
                 "--weights", str(x2_weights), "--output-left", str(out_left),
                 "--output-right", str(out_right), "--dtype", "bfloat16"])
    assert code == 0
    expected, _ = model.super_resolve(*views)
    difference = np.abs(read_image(out_left).astype(int) - expected.astype(int))
    # measured (AMD EPYC, AVX2): at most 3 levels, 0.30 on average, on this crop as on the whole
    # 40x64 pair (bf16 keeps 8 bits of mantissa)
    assert 0 < difference.max() <= 5 and difference.mean() < 0.6


def test_unsupported_precision_is_refused(x2_weights):
    with pytest.raises(IpassrError, match="unsupported precision 'float64'"):
        ipassr.load_model(x2_weights, dtype="float64")


def test_cli_folder_of_scenes(tmp_path, small_pair, x2_weights):
    for scene in ("sceneA", "sceneB"):
        (tmp_path / "in" / scene).mkdir(parents=True)
        shutil.copy(small_pair[0], tmp_path / "in" / scene / "lr0.png")
        shutil.copy(small_pair[1], tmp_path / "in" / scene / "lr1.png")
    code = main(["infer", "--input-dir", str(tmp_path / "in"), "--weights", str(x2_weights),
                 "--output-dir", str(tmp_path / "out")])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "sceneA_L.png", "sceneA_R.png", "sceneB_L.png", "sceneB_R.png"]


@pytest.mark.parametrize("batch", [1, 3])
def test_cli_folder_carries_on_past_bad_pairs_and_lists_them(tmp_path, small_pair, x2_weights,
                                                              capsys, batch):
    """Scene folders and flat _L/_R files together; an incomplete scene, an unpaired file and a
    corrupt image fail, the good pairs are written, every failure is listed, exit 2. In one
    batch of three, the corrupt pair fails alone, not the two good pairs batched with it."""
    (tmp_path / "in" / "good").mkdir(parents=True)
    (tmp_path / "in" / "bad").mkdir(parents=True)
    shutil.copy(small_pair[0], tmp_path / "in" / "good" / "lr0.png")
    shutil.copy(small_pair[1], tmp_path / "in" / "good" / "lr1.png")
    shutil.copy(small_pair[0], tmp_path / "in" / "bad" / "lr0.png")
    shutil.copy(small_pair[0], tmp_path / "in" / "0001_L.png")
    shutil.copy(small_pair[1], tmp_path / "in" / "0001_R.png")
    shutil.copy(small_pair[0], tmp_path / "in" / "0002_L.png")
    shutil.copy(small_pair[0], tmp_path / "in" / "0003_L.png")
    (tmp_path / "in" / "0003_R.png").write_bytes(b"not a png")
    code = main(["infer", "--input-dir", str(tmp_path / "in"), "--weights", str(x2_weights),
                 "--output-dir", str(tmp_path / "out"), "--batch-size", str(batch)])
    err = capsys.readouterr().err
    assert code == 2
    assert "bad/ has lr0.png but no lr1 image" in err and "0002_L.png has no right view" in err
    assert "ipassr: error: 0003: " in err and "0003_R.png: not a readable image" in err
    summary = ("ipassr: error: 3 pair(s) failed, 2 done; run the same command again to retry "
               "only the missing ones")
    assert summary in err
    assert main(["infer", "--input-dir", str(tmp_path / "in"), "--weights", str(x2_weights),
                 "--output-dir", str(tmp_path / "out")]) == 2  # again: the done pairs count
    assert summary in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "0001_L.png", "0001_R.png", "good_L.png", "good_R.png"]
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left


def test_cli_folder_skips_pairs_already_done(tmp_path, small_pair, x2_weights, capsys):
    for name in ("0001", "0002"):
        shutil.copy(small_pair[0], tmp_path / f"{name}_L.png")
        shutil.copy(small_pair[1], tmp_path / f"{name}_R.png")
    args = ["infer", "--input-dir", str(tmp_path), "--weights", str(x2_weights),
            "--output-dir", str(tmp_path / "out")]
    (tmp_path / "out").mkdir()
    for side in ("L", "R"):
        (tmp_path / "out" / f"0001_{side}.png").write_bytes(b"done before")
    assert main(args) == 0
    assert "1 pair(s) already in" in capsys.readouterr().out
    assert (tmp_path / "out" / "0001_L.png").read_bytes() == b"done before"
    assert read_image(tmp_path / "out" / "0002_L.png").shape == (80, 128, 3)
    assert main(args + ["--overwrite"]) == 0
    assert read_image(tmp_path / "out" / "0001_L.png").shape == (80, 128, 3)


def test_cli_folder_redoes_a_pair_with_only_one_output(tmp_path, small_pair, x2_weights, capsys):
    """What an interrupted run leaves: 0001_L.png written, 0001_R.png not. The pair is not done."""
    shutil.copy(small_pair[0], tmp_path / "0001_L.png")
    shutil.copy(small_pair[1], tmp_path / "0001_R.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "0001_L.png").write_bytes(b"interrupted")
    assert main(["infer", "--input-dir", str(tmp_path), "--weights", str(x2_weights),
                 "--output-dir", str(tmp_path / "out")]) == 0
    assert "already in" not in capsys.readouterr().out
    for side in ("L", "R"):
        assert read_image(tmp_path / "out" / f"0001_{side}.png").shape == (80, 128, 3)


def test_cli_folder_refuses_outputs_onto_its_inputs(tmp_path, small_pair, x2_weights, capsys):
    shutil.copy(small_pair[0], tmp_path / "a_L.png")
    shutil.copy(small_pair[1], tmp_path / "a_R.png")
    before = (tmp_path / "a_L.png").read_bytes()
    message = run_cli_error(["infer", "--input-dir", str(tmp_path), "--weights", str(x2_weights),
                             "--output-dir", str(tmp_path)], capsys)
    assert "a_L.png: is also an input" in message
    assert (tmp_path / "a_L.png").read_bytes() == before


def test_torchrun_processes_share_a_folder_without_overlap(tmp_path, small_pair, x2_weights):
    """2 CPU processes under torchrun: each takes every other pair, none is done twice."""
    import os

    for k in range(5):
        shutil.copy(small_pair[0], tmp_path / f"{k:04d}_L.png")
        shutil.copy(small_pair[1], tmp_path / f"{k:04d}_R.png")
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "ipassr", "infer", "--input-dir", str(tmp_path), "--weights", str(x2_weights),
         "--output-dir", str(tmp_path / "out")],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    out = completed.stdout
    assert "process 1 of 2: 3 of 5 pairs" in out and "process 2 of 2: 2 of 5 pairs" in out
    assert out.count("wrote 6 images") == 1 and out.count("wrote 4 images") == 1
    assert len(list((tmp_path / "out").glob("*.png"))) == 10


def test_folder_pairs_named_twice_and_folders_without_pairs(tmp_path, small_pair):
    """A name that is both a scene folder and _L/_R files is a problem, not a pair; views beside
    the scene folders are not a scene; an empty or missing folder is refused, naming it."""
    from ipassr.commands.infer import find_pairs

    root = tmp_path / "in"
    (root / "d").mkdir(parents=True)
    for view, scene, flat in zip(small_pair, ("lr0.png", "lr1.png"), ("d_L.png", "d_R.png")):
        shutil.copy(view, root / "d" / scene)
        shutil.copy(view, root / scene)
        shutil.copy(view, root / flat)
    assert find_pairs(root) == ([], ["d: found both as a scene folder and as d_L/_R files"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(IpassrError, match=rf"^{re.escape(str(tmp_path / 'empty'))}: no pairs found "
                                          r"\(expected <scene>/lr0\.png, lr1\.png subfolders, "
                                          r"<name>_L\.png, <name>_R\.png files or \.mpo, \.jps, "
                                          r"\.heic stereo photos\)$"):
        find_pairs(tmp_path / "empty")
    missing = re.escape(str(tmp_path / "none"))
    with pytest.raises(IpassrError, match=rf"^{missing}: no such folder$"):
        find_pairs(tmp_path / "none")


def test_folder_mode_loads_the_network_with_compile_when_asked(tmp_path, small_pair, x2_weights,
                                                                monkeypatch):
    """--compile reaches the network of a folder run (what compiling does is
    test_cli_compile_runs_the_compiled_forward_with_the_same_result's; here it is not run)."""
    import ipassr.inference.api

    real_load, asked = ipassr.inference.api.load_model, []

    def load_without_compiling(*args, **kwargs):
        asked.append(kwargs.pop("compile"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(ipassr.inference.api, "load_model", load_without_compiling)
    shutil.copy(small_pair[0], tmp_path / "p_L.png")
    shutil.copy(small_pair[1], tmp_path / "p_R.png")
    for flags in ([], ["--compile"]):
        assert main(["infer", "--input-dir", str(tmp_path), "--weights", str(x2_weights),
                     "--output-dir", str(tmp_path / "out"), "--overwrite", *flags]) == 0
    assert asked == [False, True]


def test_folder_share_of_the_second_torchrun_process(tmp_path, small_pair, x2_weights, capsys,
                                                    monkeypatch):
    """In-process, as torchrun's second of two processes: every other pair from the second, said
    so, and the folder's problems left to the first process to report (exit 0 here)."""
    for k in range(3):
        shutil.copy(small_pair[0], tmp_path / f"{k:04d}_L.png")
        shutil.copy(small_pair[1], tmp_path / f"{k:04d}_R.png")
    shutil.copy(small_pair[0], tmp_path / "lone_L.png")  # a problem of the folder
    for name, value in (("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    assert main(["infer", "--input-dir", str(tmp_path), "--weights", str(x2_weights),
                 "--output-dir", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr()
    assert f"wrote 2 images to {tmp_path / 'out'} (process 2 of 2: 1 of 3 pairs)" in printed.out
    assert re.search(r"super-resolving \(process 2 of 2: 1 of 3 pairs\): 100%.* 1/1 \[.*"
                     r"(pair/s|s/pair)\]", printed.err)  # the progress bar
    assert "lone" not in printed.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0001_L.png", "0001_R.png"]


def test_outputs_are_checked_before_any_compute(tmp_path, small_pair, x2_weights, capsys,
                                                monkeypatch):
    import ipassr.inference.api  # infer imports load_model from here when it runs (lazily)

    def no_model(*args, **kwargs):
        raise AssertionError("the network was loaded before the outputs were checked")

    monkeypatch.setattr(ipassr.inference.api, "load_model", no_model)
    left, right = small_pair
    before = left.read_bytes()
    base = ["infer", "--left", str(left), "--right", str(right), "--weights", str(x2_weights)]
    (tmp_path / "file").write_text("a file where a folder would go")
    (tmp_path / "folder.png").mkdir()
    out, xyz, folder = tmp_path / "o.png", tmp_path / "o.xyz", tmp_path / "folder.png"
    cases = {
        (str(left), str(tmp_path / "b.png")):
            f"{left}: is also an input ({left}); refusing to overwrite it",
        (str(out), str(out)): f"{out}: is also another output ({out}); refusing to overwrite it",
        (str(xyz), str(tmp_path / "b.png")): f"{xyz}: unknown image format '.xyz' (use .png)",
        (str(folder), str(tmp_path / "b.png")): f"{folder}: is a folder; give an image file name",
        (str(tmp_path / "file" / "x.png"), str(tmp_path / "b.png")):
            f"{tmp_path / 'file'}: cannot create this folder ({tmp_path / 'file'} is a file)",
    }
    for (out_left, out_right), expected in cases.items():
        message = run_cli_error(base + ["--output-left", out_left, "--output-right", out_right],
                                capsys)
        assert message.endswith(expected), message
    assert left.read_bytes() == before
    from ipassr.commands.infer import check_outputs

    check_outputs([left], [tmp_path / "photo.JPS"])  # a stereo JPEG, whatever its case


def run_cli_error(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("ipassr: error:")
    return err[0]


def test_different_sizes(tmp_path, small_pair, x2_weights, capsys):
    write_image(tmp_path / "small.png", read_image(small_pair[1])[:30])
    message = run_cli_error(["infer", "--left", str(small_pair[0]), "--right",
                             str(tmp_path / "small.png"), "--weights", str(x2_weights),
                             "--output-left", str(tmp_path / "a.png"),
                             "--output-right", str(tmp_path / "b.png")], capsys)
    assert "same size" in message and "small.png" in message
    assert not list(tmp_path.glob("[ab].png"))


def test_single_pixel_pair_names_the_files(tmp_path, x2_weights, capsys):
    pixel = np.full((1, 1, 3), 128, dtype=np.uint8)
    write_image(tmp_path / "l.png", pixel)
    write_image(tmp_path / "r.png", pixel)
    message = run_cli_error(["infer", "--left", str(tmp_path / "l.png"), "--right",
                             str(tmp_path / "r.png"), "--weights", str(x2_weights),
                             "--output-left", str(tmp_path / "a.png"),
                             "--output-right", str(tmp_path / "b.png")], capsys)
    assert "l.png" in message and "1x1 pair is too small" in message
    assert not list(tmp_path.glob("[ab].png"))


def test_missing_view(tmp_path, small_pair, x2_weights, capsys):
    message = run_cli_error(["infer", "--left", str(small_pair[0]), "--right",
                             str(tmp_path / "nope.png"), "--weights", str(x2_weights),
                             "--output-left", str(tmp_path / "a.png"),
                             "--output-right", str(tmp_path / "b.png")], capsys)
    assert "nope.png: no such file" in message


def test_corrupt_png(tmp_path, small_pair, x2_weights, capsys):
    data = small_pair[1].read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    message = run_cli_error(["infer", "--left", str(small_pair[0]), "--right",
                             str(tmp_path / "cut.png"), "--weights", str(x2_weights),
                             "--output-left", str(tmp_path / "a.png"),
                             "--output-right", str(tmp_path / "b.png")], capsys)
    assert "cut.png" in message
    assert not list(tmp_path.glob("[ab].png"))


def test_wrong_scale_weights(tmp_path, small_pair, x2_weights, capsys):
    message = run_cli_error(["infer", "--left", str(small_pair[0]), "--right",
                             str(small_pair[1]), "--weights", str(x2_weights), "--scale", "4",
                             "--output-left", str(tmp_path / "a.png"),
                             "--output-right", str(tmp_path / "b.png")], capsys)
    assert "x2 iPASSR weights but x4" in message


def test_malicious_checkpoint_via_cli(tmp_path, small_pair, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"state_dict": {"w": Evil()}}, tmp_path / "evil.pth")
    message = run_cli_error(["infer", "--left", str(small_pair[0]), "--right",
                             str(small_pair[1]), "--weights", str(tmp_path / "evil.pth"),
                             "--output-left", str(tmp_path / "a.png"),
                             "--output-right", str(tmp_path / "b.png")], capsys)
    assert "evil.pth: refused to load" in message


def test_usage_error_exit_code(capsys):
    message = run_cli_error(["infer", "--left", "a.png"], capsys)
    assert "--right" in message


def test_console_script_module_entry(tmp_path):
    """``python -m ipassr`` runs the CLI and exits with its code. An unknown option is refused
    before torch loads (0.6 s of CPU; a missing --right, checked in this process above, 3.3 s)."""
    result = subprocess.run([sys.executable, "-m", "ipassr", "infer", "--left", "x.png",
                             "--no-such-option"], capture_output=True, text=True)
    assert result.returncode == 2 and "ipassr: error:" in result.stderr


def test_api_accepts_pil_numpy_and_tensors(model, small_pair):
    left, right = read_image(small_pair[0]), read_image(small_pair[1])
    from_numpy = model.super_resolve(left, right)
    from_pil = model.super_resolve(Image.fromarray(left), Image.fromarray(right))
    assert isinstance(from_pil[0], Image.Image) and from_pil[0].size == (128, 80)
    assert np.array_equal(np.asarray(from_pil[0]), from_numpy[0])
    as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1).float() / 255  # noqa: E731
    from_tensor = model.super_resolve(as_tensor(left), as_tensor(right))
    assert from_tensor[0].shape == (3, 80, 128)
    assert np.array_equal(ipassr.data.io.tensor_to_image(from_tensor[0]), from_numpy[0])
    from_float = model.super_resolve(left / 255.0, right / 255.0)
    assert from_float[0].dtype == np.float32 and from_float[0].shape == (80, 128, 3)


def test_api_rejects_non_finite_and_mismatched_inputs(model):
    bad = torch.rand(3, 8, 8)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(IpassrError, match="NaN"):
        model.super_resolve(bad, torch.rand(3, 8, 8))
    with pytest.raises(IpassrError, match="same size"):
        model.super_resolve(torch.rand(3, 8, 8), torch.rand(3, 8, 9))


def test_api_scale_check(x2_weights):
    with pytest.raises(CheckpointError):
        ipassr.load_model(x2_weights, scale=4)


def test_cli_compile_runs_the_compiled_forward_with_the_same_result(tmp_path, small_pair,
                                                                  x2_weights, model, monkeypatch):
    """``--compile``: the pair runs through torch.compile of the plain forward (TorchDynamo
    captures the network's graph, and the graph captured is what runs), equal to the default path
    to float32 rounding, so the 8-bit outputs agree within one level. The graph goes to
    ``aot_eager`` (AOTAutograd's tracing, PyTorch's own kernels), not Inductor: a cold Inductor
    spends 10-90 s generating and compiling C++ for PyTorch's code, not ipassr's."""
    from torch._dynamo import lookup_backend

    import ipassr.inference.api as api  # infer imports load_model from here when it runs

    graphs = []

    def recording_backend(graph, example_inputs):
        graphs.append(graph)
        return lookup_backend("aot_eager")(graph, example_inputs)

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile",
                        lambda network, **options: real_compile(network, **options,
                                                                backend=recording_backend))
    loaded = []
    real_load_model = api.load_model
    monkeypatch.setattr(api, "load_model",
                        lambda *a, **k: loaded.append(real_load_model(*a, **k)) or loaded[-1])
    out_left, out_right = tmp_path / "a.png", tmp_path / "b.png"
    code = main(["infer", "--left", str(small_pair[0]), "--right", str(small_pair[1]),
                 "--weights", str(x2_weights), "--output-left", str(out_left),
                 "--output-right", str(out_right), "--compile"])
    assert code == 0
    assert loaded[0].compiled is not None and loaded[0]._plain_fits(torch.zeros(1, 3, 40, 64))
    assert graphs  # the forward went through the compiler
    expected = model.super_resolve(read_image(small_pair[0]), read_image(small_pair[1]))
    for path, view in zip((out_left, out_right), expected):
        assert np.abs(read_image(path).astype(int) - view.astype(int)).max() <= 1


def test_compile_is_used_only_where_the_full_maps_fit_the_budget(small_pair, x2_weights):
    """Pairs whose plain forward would exceed --max-memory take the fast path instead."""
    from ipassr.inference.fast import plain_forward_bytes

    calls = []
    compiled = ipassr.load_model(x2_weights, compile=True)
    compiled.compiled = (lambda left, right:
                         calls.append(left.shape) or compiled.network(left, right))
    left, right = (read_image(p) for p in small_pair)
    compiled.super_resolve(left, right)
    assert calls == [(1, 3, 40, 64)]
    need = plain_forward_bytes(compiled.network, 1, 40, 64)
    compiled.max_memory = need - 1  # the fast path still fits: it needs far less
    sr_left, _ = compiled.super_resolve(left, right)
    assert len(calls) == 1 and sr_left.shape == (80, 128, 3)


def test_running_out_of_memory_is_a_clear_error_naming_the_pair(tmp_path, small_pair, x2_weights,
                                                               forward_out_of_memory,
                                                               monkeypatch, capsys):
    """The allocator failing (e.g. --max-memory above what the machine has) gets one line that
    names the files and says what to do, exit 2, and no output file; other errors propagate."""
    from ipassr.inference.api import StereoSR

    out_left = tmp_path / "a.png"
    argv = ["infer", "--left", str(small_pair[0]), "--right", str(small_pair[1]), "--weights",
            str(x2_weights), "--output-left", str(out_left), "--output-right",
            str(tmp_path / "b.png"), "--max-memory", "1T"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(small_pair[0]) in error
    assert "out of CPU memory" in error and "64x40 pair" in error and "lower --max-memory" in error
    assert not out_left.exists()
    monkeypatch.setattr(StereoSR, "fast_forward",
                        staticmethod(lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug"))))
    assert main(argv) == 1  # not taken for running out of memory: an internal error
    assert "internal error (RuntimeError: a bug)" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="a bug"):
        main(["--debug"] + argv)


def test_api_friendly_inputs(model, small_pair):
    """Read-only arrays are copied quietly, 0..255 floats are refused with a hint, grey in gives
    grey out (PIL L, (H, W) arrays, and RGB arrays whose channels are equal)."""
    import warnings

    left, right = read_image(small_pair[0]), read_image(small_pair[1])
    read_only = np.asarray(Image.fromarray(left))
    assert not read_only.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sr, _ = model.super_resolve(read_only, np.asarray(Image.fromarray(right)))
    assert np.array_equal(sr, model.super_resolve(left, right)[0])
    with pytest.raises(IpassrError, match=r"reach 2\d\d.*divide by 255"):
        model.super_resolve(left.astype(np.float32), right.astype(np.float32))
    with pytest.raises(IpassrError, match="divide by 255"):
        model.super_resolve(torch.full((3, 8, 8), 200.0), torch.full((3, 8, 8), 200.0))
    grey_left, grey_right = left[:, :, 1], right[:, :, 1]
    out, _ = model.super_resolve(grey_left, grey_right)
    assert out.shape == (80, 128) and out.dtype == np.uint8
    pil, _ = model.super_resolve(Image.fromarray(grey_left), Image.fromarray(grey_right))
    assert pil.mode == "L" and np.array_equal(np.asarray(pil), out)
    as_rgb = [np.repeat(v[:, :, None], 3, axis=2) for v in (grey_left, grey_right)]
    rgb, _ = model.super_resolve(*as_rgb)
    assert np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2])
    assert np.array_equal(rgb[:, :, 0], out)
    floats, _ = model.super_resolve(grey_left / 255.0, grey_right / 255.0)
    assert floats.shape == (80, 128) and floats.dtype == np.float32


def test_shipped_weights_by_name(tmp_path, small_pair, capsys):
    from ipassr.inference.api import shipped_weights_path

    assert ipassr.weights_path(4) == shipped_weights_path(4) and ipassr.weights_path(4).is_file()
    with pytest.raises(CheckpointError, match="shipped scales are"):
        ipassr.weights_path(3)
    assert ipassr.load_model("x4").scale == 4
    message = run_cli_error(["infer", "--left", str(small_pair[0]), "--right", str(small_pair[1]),
                             "--weights", "x2", "--scale", "4", "--output-left",
                             str(tmp_path / "a.png"), "--output-right", str(tmp_path / "b.png")],
                            capsys)
    assert "names the shipped x2 weights but x4 was requested" in message


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory, cones_pair):
    """Three tiny scenes from the real Cones pair: two of one size, one of another."""
    root = tmp_path_factory.mktemp("scenes")
    left, right = (read_image(p) for p in cones_pair)
    for name, (y, x, h, w) in {"a": (100, 100, 12, 20), "b": (200, 150, 12, 20),
                               "c": (50, 50, 10, 16)}.items():
        (root / name).mkdir()
        write_image(root / name / "lr0.png", left[y:y + h, x:x + w])
        write_image(root / name / "lr1.png", right[y:y + h, x:x + w])
    return root


def assert_batched_equals_one_by_one(folder: Path, out: Path, weights: Path, batch: int,
                                     names: tuple[str, ...]) -> None:
    """``infer --input-dir folder`` at --batch-size 1 (into out/one) and ``batch`` (out/batched)
    writes the same ``names``, up to float rounding at .5."""
    for size, written in ((1, out / "one"), (batch, out / "batched")):
        assert main(["infer", "--weights", str(weights), "--input-dir", str(folder),
                     "--output-dir", str(written), "--batch-size", str(size),
                     "--max-memory", "64M"]) == 0
    for name in names:
        one, batched = read_image(out / "one" / name), read_image(out / "batched" / name)
        assert np.abs(one.astype(int) - batched.astype(int)).max() <= 1


def test_infer_folder_batched_equals_one_by_one(tmp_path, scene_dir, conformance_dir):
    assert_batched_equals_one_by_one(scene_dir, tmp_path, conformance_dir / "x2.pth.tar", 2,
                                     ("a_L.png", "a_R.png", "b_L.png", "c_R.png"))


def test_folder_batches_group_pairs_by_size_in_runs_of_batch_size(tmp_path, scene_dir):
    """Batches are runs of at most --batch-size pairs of one left-view size (a and b are 20x12, c
    16x10), in folder order within a size; a file whose header cannot be read goes alone; batch
    size 1 keeps the folder's order."""
    from ipassr.commands.infer import batches_of_equal_size
    from ipassr.data.datasets import PairFiles

    (tmp_path / "bad.png").write_text("not a picture")
    a, b, c = (PairFiles(n, scene_dir / n / "lr0.png", scene_dir / n / "lr1.png") for n in "abc")
    again = PairFiles("again", a.left, a.right)
    bad = PairFiles("bad", tmp_path / "bad.png", tmp_path / "bad.png")
    pairs = [a, c, bad, b, again]

    def names(batches):
        return [[pair.name for pair in batch] for batch in batches]

    assert names(batches_of_equal_size(pairs, 2)) == [["a", "b"], ["again"], ["c"], ["bad"]]
    assert names(batches_of_equal_size(pairs, 3)) == [["a", "b", "again"], ["c"], ["bad"]]
    assert names(batches_of_equal_size(pairs, 1)) == [["a"], ["c"], ["bad"], ["b"], ["again"]]


def test_folder_batched_with_a_photo_whose_header_matches_a_pairs_size(tmp_path, scene_dir,
                                                                       conformance_dir):
    """A JPS photo's picture (20x12: two 10x12 views) is the size of scene a's left view, so its
    header batches it with a and b; decoded, its views are smaller, and each pair is done on its
    own: the same outputs as one at a time, the photo's from its two views (20x24 at x2)."""
    from ipassr.data import media

    folder = tmp_path / "in"
    shutil.copytree(scene_dir, folder)
    picture = read_image(folder / "a" / "lr0.png")
    media.write_stereo(media.plan_target(folder / "p.jps"),
                       media.StereoImage(picture[:, :10], picture[:, 10:], None, "files", "p"))
    (folder / "._p.jps").write_bytes(b"macOS metadata")  # hidden: not a photo
    assert_batched_equals_one_by_one(folder, tmp_path, conformance_dir / "x2.pth.tar", 3,
                                     ("a_L.png", "b_R.png", "p_L.png", "p_R.png"))
    assert read_image(tmp_path / "batched" / "p_L.png").shape == (24, 20, 3)


def test_infer_reports_a_budget_too_small(tmp_path, scene_dir, conformance_dir, capsys):
    code = main(["infer", "--weights", str(conformance_dir / "x2.pth.tar"),
                 "--left", str(scene_dir / "a" / "lr0.png"), "--right",
                 str(scene_dir / "a" / "lr1.png"), "--output-left", str(tmp_path / "l.png"),
                 "--output-right", str(tmp_path / "r.png"), "--max-memory", "2K"])
    assert code == 2
    assert "needs at least" in capsys.readouterr().err
    assert not (tmp_path / "l.png").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["infer", "--max-memory", "lots"])
    assert exit_info.value.code == 2
    assert "expected a positive size" in capsys.readouterr().err

