"""Every failure a user can cause is one `ipassr: error:` line and exit 2, before any work is lost;
an internal error is one line too, with the traceback behind --debug."""

from __future__ import annotations

import errno
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import ipassr
from ipassr.cli import main
from ipassr.errors import IpassrError
from ipassr.data.io import write_image


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(0)
    for name in ("l.png", "r.png"):
        write_image(folder / name, rng.integers(0, 256, (12, 20, 3), dtype=np.uint8))
    return folder / "l.png", folder / "r.png"


def one_line_error(args, capsys, code=2) -> str:
    assert main(args) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ipassr: error:"), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def infer_args(pair, tmp_path, *extra):
    return ["infer", "--left", str(pair[0]), "--right", str(pair[1]), "--output-left",
            str(tmp_path / "a.png"), "--output-right", str(tmp_path / "b.png"), *extra]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("command", ["infer", "evaluate", "demo", "visualize"])
def test_cuda_on_a_cpu_only_machine(command, pair, tmp_path, capsys):
    args = {"infer": infer_args(pair, tmp_path, "--scale", "2"),
            "evaluate": ["evaluate", "--scale", "2", "--attention", "--weights", "x2"],
            "demo": ["demo", "--output-dir", str(tmp_path / "demo")],
            "visualize": ["visualize", "--scale", "2", "--left", str(pair[0]), "--right",
                          str(pair[1]), "--output-dir", str(tmp_path / "vis")]}[command]
    message = one_line_error(args + ["--device", "cuda"], capsys)
    assert "--device cuda" in message and ("without CUDA" in message or "no CUDA GPU" in message)
    assert not list(tmp_path.iterdir())


def test_unknown_device(pair, tmp_path, capsys):
    message = one_line_error(infer_args(pair, tmp_path, "--scale", "2", "--device", "gpu7"), capsys)
    assert "--device gpu7: unknown device" in message


@pytest.mark.parametrize("content", [b"", b"x" * 100, b"\x10\x00\x00\x00\x00\x00\x00\x00{bad json}"])
def test_corrupt_safetensors_everywhere(content, pair, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(content)
    for args in (infer_args(pair, tmp_path, "--weights", str(weights)),
                 ["export", "--weights", str(weights), "--output", str(tmp_path / "m.onnx")],
                 ["evaluate", "--scale", "2", "--attention", "--weights", str(weights)]):
        message = one_line_error(args, capsys)
        assert "w.safetensors: not a readable safetensors file" in message
    with pytest.raises(IpassrError, match="not a readable safetensors file"):
        ipassr.load_model(weights)


def test_random_bytes_named_like_a_checkpoint(pair, tmp_path, capsys):
    (tmp_path / "w.pth.tar").write_bytes(np.random.default_rng(1).bytes(2000))
    message = one_line_error(infer_args(pair, tmp_path, "--weights", str(tmp_path / "w.pth.tar")),
                             capsys)
    assert "w.pth.tar: not a PyTorch checkpoint" in message
    assert "weights_only" not in message and "objects" not in message


def test_image_header_claiming_a_huge_size(tmp_path, capsys):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                        + chunk(b"IEND", b""))
    message = one_line_error(["visualize", "--scale", "2", "--left", str(tmp_path / "huge.png"),
                              "--right", str(tmp_path / "huge.png"), "--output-dir",
                              str(tmp_path / "vis")], capsys)
    assert "huge.png: its header claims 10,000 megapixels" in message


@pytest.mark.parametrize("args, expected", [
    (["train", "--out", "x", "--time-limit", "5x"], "train: argument --time-limit: bad duration '5x'"),
    (["infer", "--max-memory", "3Q"], "infer: argument --max-memory"),
    (["infer", "--batch-size", "two"], "infer: argument --batch-size: invalid int value"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_values_checked_while_parsing_are_one_line(args, expected, capsys):
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ipassr: error:") and expected in err[0], err


def test_export_never_replaces_a_file_or_folder_unasked(tmp_path, capsys):
    message = one_line_error(["export", "--weights", "x2", "--output", str(tmp_path)], capsys)
    assert "is a folder" in message
    (tmp_path / "m.pt").write_bytes(b"keep me")
    message = one_line_error(["export", "--weights", "x2", "--format", "torchscript", "--output",
                              str(tmp_path / "m.pt")], capsys)
    assert "already exists (use --overwrite" in message
    assert (tmp_path / "m.pt").read_bytes() == b"keep me"


def test_a_full_disk_is_one_line(pair, tmp_path, capsys, monkeypatch):
    import ipassr.data.io

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "a.png"))

    monkeypatch.setattr(ipassr.data.io.Image.Image, "save", full)
    message = one_line_error(infer_args(pair, tmp_path, "--scale", "2"), capsys)
    assert "a.png: no space left on the device (disk full)" in message
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".png", ".tmp")]


def test_an_internal_error_is_one_line_and_debug_shows_it(pair, tmp_path, capsys, monkeypatch):
    import ipassr.inference.api  # infer imports load_model from here when it runs (lazily)

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(ipassr.inference.api, "load_model", broken)
    message = one_line_error(infer_args(pair, tmp_path, "--scale", "2"), capsys, code=1)
    assert "internal error (ZeroDivisionError: a bug)" in message and "--debug" in message
    with pytest.raises(ZeroDivisionError):
        main(["--debug"] + infer_args(pair, tmp_path, "--scale", "2"))


def test_sigterm_during_a_folder_run_leaves_no_temporary_file(tmp_path):
    """SIGTERM is handled like Ctrl-C: the pass stops, atomic writes delete their temp files."""
    import os
    import signal

    rng = np.random.default_rng(2)
    for k in range(40):
        view = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        write_image(tmp_path / "in" / f"{k:04d}_L.png", view)
        write_image(tmp_path / "in" / f"{k:04d}_R.png", view)
    process = subprocess.Popen(
        [sys.executable, "-m", "ipassr", "infer", "--input-dir", str(tmp_path / "in"),
         "--scale", "2", "--output-dir", str(tmp_path / "out")],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    while not (tmp_path / "out").is_dir() or not any((tmp_path / "out").iterdir()):
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate()
    assert process.returncode == 130, err
    assert "ipassr: interrupted" in err and "Traceback" not in err
    left_over = [p.name for p in (tmp_path / "out").iterdir() if not p.name.endswith(".png")
                 or p.name.startswith(".")]
    assert not left_over
