"""The API and the command line behave alike (issue 25): errors in each one's words, existing
outputs refused without --overwrite, an interrupted folder run that says how to continue, the
shared options on every command that runs a network, torchrun's environment read once."""

from __future__ import annotations

import shutil

import pytest

import ipassr
from ipassr.cli import build_parser, main
from ipassr.data.io import read_image, write_image
from ipassr.errors import CheckpointError, IpassrError

from conftest import write_cones_crop


@pytest.fixture(scope="module")
def pair(tmp_path_factory, cones_pair):
    """A 16x24 crop of the real Cones pair."""
    return write_cones_crop(tmp_path_factory.mktemp("pair"), cones_pair, slice(120, 136),
                            slice(180, 204))


def test_load_model_answers_in_api_words_and_the_cli_in_its_own(pair, tmp_path, capsys):
    with pytest.raises(CheckpointError) as error:
        ipassr.load_model(scale=3)
    assert "weights=FILE" in str(error.value) and "--" not in str(error.value)
    with pytest.raises(IpassrError, match=r"give weights=FILE, or scale=S"):
        ipassr.load_model()
    assert main(["infer", "--scale", "3", "--left", str(pair[0]), "--right", str(pair[1]),
                 "--output-left", str(tmp_path / "a.png"),
                 "--output-right", str(tmp_path / "b.png")]) == 2
    assert "pass --weights FILE" in capsys.readouterr().err


def test_a_single_pair_refuses_existing_outputs_without_overwrite(pair, tmp_path, capsys,
                                                                 conformance_dir):
    args = ["infer", "--weights", str(conformance_dir / "x2.pth.tar"), "--left", str(pair[0]),
            "--right", str(pair[1]), "--output-left", str(tmp_path / "a.png"),
            "--output-right", str(tmp_path / "b.png")]
    (tmp_path / "b.png").write_bytes(b"keep me")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "b.png: already exists (use --overwrite" in err
    assert (tmp_path / "b.png").read_bytes() == b"keep me" and not (tmp_path / "a.png").exists()
    assert main(args + ["--overwrite"]) == 0
    assert read_image(tmp_path / "b.png").shape == (32, 48, 3)


def test_an_interrupted_folder_run_says_how_to_continue(pair, tmp_path, capsys, monkeypatch,
                                                       conformance_dir):
    """Ctrl-C after one pair: the message says the same command continues; the rerun skips the
    finished pair and redoes the one whose right view was never written (stopped again, it counts
    the pair done before)."""
    import ipassr.commands.infer as infer

    for name in ("a", "b", "c"):
        shutil.copy(pair[0], tmp_path / f"{name}_L.png")
        shutil.copy(pair[1], tmp_path / f"{name}_R.png")
    args = ["infer", "--weights", str(conformance_dir / "x2.pth.tar"), "--input-dir",
            str(tmp_path), "--output-dir", str(tmp_path / "out")]
    real_group = infer.super_resolve_group
    done = []

    def stop_at_the_second(model, group, output_dir):
        if done:
            write_image(output_dir / f"{group[0].name}_L.png", read_image(pair[0]))  # half done
            raise KeyboardInterrupt
        real_group(model, group, output_dir)
        done.append(group)

    monkeypatch.setattr(infer, "super_resolve_group", stop_at_the_second)
    assert main(args) == 130
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress bar
    assert last.startswith("ipassr: interrupted: 1 of 3 pair(s) done; run the same command "
                           "again to continue")
    done.clear()
    assert main(args) == 130  # stopped again: the pair done before counts
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "ipassr: interrupted: 2 of 3 pair(s) done")
    monkeypatch.setattr(infer, "super_resolve_group", real_group)
    assert main(args) == 0
    assert "2 pair(s) already in" in capsys.readouterr().out
    assert read_image(tmp_path / "out" / "b_L.png").shape == (32, 48, 3)  # redone at x2


@pytest.mark.parametrize("command", ["infer", "visualize", "demo", "evaluate"])
def test_every_command_that_runs_a_network_takes_the_shared_options(command):
    args = build_parser().parse_args([command, "--device", "auto", "--dtype", "bfloat16",
                                      "--max-memory", "2G", "--scale", "2"]
                                     + (["--left", "l", "--right", "r", "--output-dir", "o"]
                                        if command == "visualize" else []))
    assert (args.device, args.dtype, args.max_memory) == ("auto", "bfloat16", 2 ** 31)


def test_torchrun_environment_is_read_in_one_place(monkeypatch):
    from ipassr.devices import env_from_environment

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert env_from_environment().rank == 1 and env_from_environment().distributed
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(IpassrError, match="RANK=2 / WORLD_SIZE=2"):
        env_from_environment()


def test_the_smoke_preset_turns_on_tensorboard_only_where_it_is_installed():
    import subprocess
    import sys

    code = ("import sys; sys.modules['tensorboard'] = None; "
            "from ipassr.train.config import preset_config; "
            "print(preset_config('smoke').tensorboard)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_folder_mode_takes_every_image_format_the_datasets_read(tmp_path):
    """One folder-of-pairs reader: the same suffixes as the dataset readers (grey .pgm included,
    any case); other files and hidden ones (macOS ._ copies) ignored."""
    from ipassr.commands.infer import find_pairs
    for name in ("a_L.pgm", "a_R.pgm", "b_L.PNG", "b_R.png", "c_L.txt", "c_R.txt", "._b_L.png"):
        (tmp_path / name).touch()
    pairs, problems = find_pairs(tmp_path)
    assert [(p.name, p.left.name, p.right.name) for p in pairs] == [
        ("a", "a_L.pgm", "a_R.pgm"), ("b", "b_L.PNG", "b_R.png")]
    assert problems == []
