"""``ipassr train`` end to end: smoke preset, config files, validation, resume, bad input (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ipassr.cli import main
from ipassr.errors import IpassrError
from ipassr.inference.api import load_model
from ipassr.data.io import read_image, write_image
from ipassr.data.resize import imresize
from ipassr.train.config import (TrainConfig, apply_overrides, load_config, parse_duration,
                                 save_config)
from ipassr.train.trainer import Trainer

from training_helpers import CONES, cones_patches, one_thread, write_patch_file  # noqa: F401


@pytest.fixture(scope="module")
def patch_file(tmp_path_factory) -> Path:
    """16 real x2 patches of Middlebury Cones in the patch file format."""
    return write_patch_file(tmp_path_factory.mktemp("patches") / "cones_x2.safetensors",
                            cones_patches(2), 2, count=16)


@pytest.fixture(scope="module")
def test_root(tmp_path_factory) -> Path:
    """A community-layout test root with one tiny real scene: Tiny/hr/cones, Tiny/lr_x2/cones."""
    root = tmp_path_factory.mktemp("testsets")
    for index, name in enumerate(("im2.png", "im6.png")):
        hr = read_image(CONES / name)[100:140, 100:200]  # 100 wide: room for the 64-column crop
        write_image(root / "Tiny" / "hr" / "cones" / f"hr{index}.png", hr)
        write_image(root / "Tiny" / "lr_x2" / "cones" / f"lr{index}.png", imresize(hr, 0.5))
    return root


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture
def motorcycle_rows(monkeypatch):
    """Validation's biPAM correspondence on 64 of Motorcycle's 500 rows (every column, so every
    match stays in the pair): on the whole pair it took two thirds of a smoke run's test. Its
    scores are checked where they matter (test_demo.py, both scales). The smoke preset's own
    validation crop (train/smoke.py, bound at its import, done first) stays the real one."""
    import ipassr.data.datasets
    import ipassr.train.smoke  # noqa: F401

    whole = ipassr.data.datasets.stereo_motorcycle
    monkeypatch.setattr(ipassr.data.datasets, "stereo_motorcycle",
                        lambda *args: tuple(a[160:224] for a in whole(*args)))


def test_smoke_preset_loss_decreases_and_weights_infer(tmp_path, patch_file, test_root, capsys,
                                                       motorcycle_rows):
    run = tmp_path / "run"
    code = main(["train", "--preset", "smoke", "--patches", str(patch_file), "--out", str(run),
                 "--max-steps", "4", "--validate", str(test_root), "--validate-every-steps", "4",
                 "--validate-every-epochs", "100",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    log = records(run)
    losses = [r["loss"]["total"] for r in log if r["event"] == "step"]
    assert len(losses) == 4
    assert np.mean(losses[-2:]) < 0.9 * losses[0]
    assert set(log[1]["loss"]) == {"total", "sr", "photo", "smooth", "cycle", "cons"}
    assert {"lr", "samples_per_s", "epoch", "global_step"} <= set(log[1])
    validations = [r for r in log if r["event"] == "validation"]
    assert [r["global_step"] for r in validations] == [4]  # the run's end is validated
    scores = validations[-1]["val"]["Tiny"]
    assert scores["scenes"] == 1 and 15 < scores["left_psnr"] < 60 and 0 < scores["stereo_ssim"] <= 1
    # biPAM's correspondences on Motorcycle are logged with every validation
    matches = validations[-1]["correspondence"]
    assert set(matches) >= {"within_1px", "within_2px", "epe", "peak", "valid_visible"}
    assert 0 <= matches["within_1px"] <= matches["within_2px"] <= 1 and matches["epe"] >= 0
    config = (run / "config.toml").read_text()
    assert "batch_size = 4" in config and "lr_crop = [24, 48]" in config
    model = load_model(run / "weights" / "last.safetensors", scale=2)
    sr_left, _ = model.super_resolve(read_image(test_root / "Tiny/lr_x2/cones/lr0.png"),
                                     read_image(test_root / "Tiny/lr_x2/cones/lr1.png"))
    assert sr_left.shape == (40, 100, 3)
    assert (run / "weights" / "best.safetensors").is_file()  # from the validation
    assert "stopped (budget) after 4 steps" in capsys.readouterr().err


def test_validation_on_schedule_and_at_the_last_step_not_on_a_time_limit(tmp_path, patch_file,
                                                                          test_root):
    """The step schedule validates, and so does the run's last step (--max-steps) off the
    schedule, so the log ends with the numbers of the weights it leaves; a time-limit stop (to be
    resumed) does not spend time validating."""
    config = TrainConfig(patches=str(patch_file), batch_size=2, lr_crop=(10, 20), workers=0,
                         tensorboard=False, validate=str(test_root), validate_every_steps=2,
                         validate_every_epochs=100, validate_correspondence=False)
    steps = []
    for name, budget in (("steps", {"max_steps": 3}), ("time", {"time_limit": 1e-9})):
        Trainer(config, tmp_path / name, progress=False).fit(**budget)
        steps.append([r["global_step"] for r in records(tmp_path / name)
                      if r["event"] == "validation"])
    assert steps == [[2, 3], []]
    # resuming a run that has already reached its --max-steps stops at once, with nothing to do
    again = Trainer(config, tmp_path / "steps", resume=True, progress=False).fit(max_steps=3)
    assert (again.status, again.global_step) == ("budget", 3)


def test_a_step_validated_on_both_schedules_is_validated_once(tmp_path, patch_file, test_root):
    """An epoch that ends on a multiple of --validate-every-steps validates its weights once, not
    once for each schedule (the same numbers twice in the log, and a validation's time wasted)."""
    config = TrainConfig(patches=str(patch_file), batch_size=4, lr_crop=(10, 20), workers=0,
                         tensorboard=False, validate=str(test_root), validate_every_steps=2,
                         validate_every_epochs=1, validate_correspondence=False)
    Trainer(config, tmp_path / "run", progress=False).fit(max_steps=6)  # 4 steps an epoch
    assert [r["global_step"] for r in records(tmp_path / "run") if r["event"] == "validation"] == [2, 4, 6]


def test_resume_says_when_the_init_weights_file_was_replaced(tmp_path, patch_file, capsys):
    """--auto-resume continues from the checkpoint whatever --init-weights says; a file replaced
    since the run started from it (same path, other weights) is named, an unchanged one is not."""
    from ipassr.models.checkpoint import save_weights
    from ipassr.models.ipassr import IPASSR
    init = tmp_path / "init.safetensors"
    torch.manual_seed(1)
    save_weights(IPASSR(2), init)
    run = tmp_path / "run"
    args = ["train", "--patches", str(patch_file), "--out", str(run), "--init-weights", str(init),
            "--batch-size", "2", "--lr-crop", "10x20", "--workers", "0", "--no-progress",
            "--auto-resume"]
    assert main(args + ["--max-steps", "1"]) == 0
    assert main(args + ["--max-steps", "2"]) == 0
    assert "not the weights this run started from" not in capsys.readouterr().err
    save_weights(IPASSR(2), init)  # other random weights, same path
    assert main(args + ["--max-steps", "3"]) == 0
    err = capsys.readouterr().err
    assert f"{init}: not the weights this run started from" in err and "stopped (budget) after 3" in err
    assert records(run)[0]["init_weights"] == str(init)


def test_saved_config_repeats_the_run_and_resume_continues(tmp_path, patch_file, capsys):
    tiny = ["--batch-size", "8", "--lr-crop", "10x20", "--workers", "0", "--no-progress",
            "--epochs", "1"]
    first = tmp_path / "first"
    assert main(["train", "--patches", str(patch_file), "--out", str(first), *tiny,
                 "--max-steps", "1", "--no-loss-smooth", "--lr", "1e-4"]) == 0
    saved = load_config(first / "config.toml")
    assert (saved.loss_smooth, saved.lr, saved.scale, saved.lr_crop) == (False, 1e-4, 2, (10, 20))
    # the saved config alone repeats the run
    repeat = tmp_path / "repeat"
    assert main(["train", "--config", str(first / "config.toml"), "--out", str(repeat),
                 "--max-steps", "1", "--no-progress"]) == 0
    repeated = load_file(str(repeat / "weights" / "last.safetensors"))
    original = load_file(str(first / "weights" / "last.safetensors"))
    assert all(torch.equal(repeated[k], original[k]) for k in original)
    # a plain --resume keeps the saved recipe and finishes the epoch (2 steps)
    assert main(["train", "--out", str(first), "--resume", "--no-progress"]) == 0
    log = records(first)
    assert [r["global_step"] for r in log if r["event"] == "step"] == [1, 2]
    assert all("smooth" not in r["loss"] for r in log if r["event"] == "step")
    assert "finished 1 epochs (2 steps)" in capsys.readouterr().err
    # --auto-resume on a fresh folder starts, on a finished run does nothing more
    assert main(["train", "--out", str(first), "--auto-resume", "--no-progress"]) == 0


def test_yaml_config_and_command_line_precedence(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("lr: 0.001\nbatch_size: 8\nviews: left\nlr_crop: [12, 24]\n")
    config = load_config(path)
    assert (config.lr, config.batch_size, config.views, config.lr_crop) == (1e-3, 8, "left", (12, 24))
    assert apply_overrides(config, {"lr": "5e-4"}, "command line").lr == 5e-4
    save_config(config, tmp_path / "saved.toml")
    assert load_config(tmp_path / "saved.toml") == config
    assert TrainConfig() == TrainConfig(epochs=80, batch_size=36, lr=2e-4, lr_step_epochs=30,
                                        lr_gamma=0.5, adam_beta1=0.9, adam_beta2=0.999,
                                        loss_weight=0.1, hflip=True, vflip=True)
    assert parse_duration("10m") == 600 and parse_duration("1.5h") == 5400
    # --amp takes inference's --dtype names too
    assert [TrainConfig(amp=a).autocast for a in ("off", "float32", "bf16", "bfloat16")] == [
        False, False, True, True]


@pytest.mark.parametrize("text, message", [
    ("lr_stepp = 3\n", r"unknown config key 'lr_stepp' \(did you mean 'lr_step_epochs'\?\)"),
    ("batch_size = 'many'\n", r"'batch_size' must be int, got 'many'"),
    ("views = 'right'\n", r"views must be 'both' or 'left'"),
    ("amp = 'float16'\n", r"amp must be one of off, float32, bf16, bfloat16 .*loss scaling"),
    ("[optim]\nlr = 1\n", r"sections are not supported \(found optim\)"),
    ("lr = \n", r"not a valid config file"),
])
def test_bad_config_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(IpassrError, match=message):
        load_config(path)


def test_cli_bad_input_exits_2_with_one_line(tmp_path, patch_file, capsys):
    def error(*argv) -> str:
        assert main(["train", "--out", str(tmp_path / "run"), "--no-progress", *argv]) == 2
        return capsys.readouterr().err

    assert "patches are for x2 but the run trains x4" in error("--patches", str(patch_file),
                                                               "--scale", "4")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    assert f"{empty}: empty patch file" in error("--patches", str(empty))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(patch_file.read_bytes()[:5000])
    assert str(corrupt) in error("--patches", str(corrupt))
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = 1\n")
    assert "unknown config key 'learning_rate'" in error("--config", str(bad))
    assert "nothing to resume" in error("--resume")
    assert "no training data" in error()
    assert "holds 16 patches, fewer than one batch (36)" in error("--patches", str(patch_file))
    small = ["--patches", str(patch_file), "--batch-size", "4"]
    assert "missing: no such folder" in error(*small, "--validate", str(tmp_path / "missing"))
    assert "no datasets found" in error(*small, "--validate", str(tmp_path))


def test_resume_with_the_same_relative_patch_path_changes_nothing(tmp_path, patch_file, monkeypatch):
    monkeypatch.chdir(patch_file.parent)
    args = ["train", "--patches", patch_file.name, "--out", str(tmp_path / "run"), "--batch-size", "8",
            "--lr-crop", "10x20", "--workers", "0", "--no-progress", "--max-steps", "1"]
    assert main(args) == 0
    assert main([*args[:-1], "2", "--resume"]) == 0
    resumed = [r for r in records(tmp_path / "run") if r["event"] == "resume"]
    assert len(resumed) == 1 and "changed" not in resumed[0]
    assert resumed[0]["config"]["patches"] == str(patch_file)


def test_loader_workers_read_the_memory_mapped_file_and_change_nothing(tmp_path, patch_file):
    """Data order and flips come from the epoch plan, so 2 worker processes = no workers."""
    weights = {}
    for workers in (0, 2):
        run = tmp_path / f"w{workers}"
        assert main(["train", "--patches", str(patch_file), "--out", str(run), "--batch-size", "4",
                     "--lr-crop", "10x20", "--workers", str(workers), "--no-progress",
                     "--max-steps", "2"]) == 0
        weights[workers] = load_file(str(run / "weights" / "last.safetensors"))
    assert all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_sigterm_to_the_whole_process_group_checkpoints_cleanly(tmp_path, patch_file):
    """As a scheduler stops a job: every process, DataLoader workers included, gets SIGTERM.
    Batches of 2 LR 10x20 crops, not the smoke preset's 4 of 24x48: the run finishes the step
    under way when the signal comes, and the first step waited for, so both are short."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    command = [sys.executable, "-m", "ipassr", "train", "--preset", "smoke", "--patches",
               str(patch_file), "--out", str(run), "--workers", "1", "--epochs", "1000",
               "--batch-size", "2", "--lr-crop", "10x20", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    # wait for the first logged step however long it takes; fail at once if the run ends first
    while not (run / "log.jsonl").exists() or '"step"' not in (run / "log.jsonl").read_text():
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate()
    assert process.returncode == 128 + signal.SIGTERM, err  # stopped by a signal, cleanly
    assert "stopped (interrupted)" in err and "Traceback" not in err
    assert records(run)[-1]["status"] == "interrupted"
    assert (run / "checkpoints" / "last.pt").is_file()


def test_plain_resume_of_a_smoke_run_without_patches(tmp_path, capsys, monkeypatch,
                                                     motorcycle_rows):
    """The smoke preset's built-in data is found again by a plain --resume."""
    import ipassr.train.data

    few = ipassr.train.data.ArrayPatches(*(a[:8] for a in cones_patches(2)), scale=2)
    monkeypatch.setattr(ipassr.train.data, "motorcycle_patches", lambda scale: few)
    run = tmp_path / "smoke"
    assert main(["train", "--preset", "smoke", "--out", str(run), "--max-steps", "1",
                 "--no-progress", "--lr-crop", "10x20", "--no-tensorboard"]) == 0
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "2", "--no-progress"]) == 0
    assert [r["global_step"] for r in records(run) if r["event"] == "step"] == [1, 2]
    assert "stopped (budget) after 2 steps" in capsys.readouterr().err


def test_tensorboard_asked_for_but_missing_is_a_warning(tmp_path, patch_file, capsys,
                                                        monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    assert main(["train", "--patches", str(patch_file), "--out", str(tmp_path / "run"),
                 "--batch-size", "8", "--lr-crop", "10x20", "--workers", "0", "--max-steps", "1",
                 "--no-progress", "--tensorboard"]) == 0
    err = capsys.readouterr().err
    assert "ipassr: warning: TensorBoard logging is on but the tensorboard package is not " \
           "installed (pip install tensorboard)" in err


def test_python_3_10_reads_toml_with_tomli(monkeypatch, tmp_path):
    """On Python 3.10 (no tomllib) the config reader uses tomli, its published twin. The module
    is executed afresh under another name, so the real one is left alone."""
    import importlib.util
    import sys
    import tomllib
    import types

    import ipassr.train.config as train_config

    tomli = types.ModuleType("tomli")
    tomli.load = tomllib.load
    monkeypatch.setitem(sys.modules, "tomli", tomli)
    monkeypatch.setitem(sys.modules, "tomllib", None)  # importing it fails, as on 3.10
    monkeypatch.setattr(sys, "version_info", (3, 10, 13, "final", 0))
    spec = importlib.util.spec_from_file_location("ipassr.train.config_on_310",
                                                  train_config.__file__)
    on_310 = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, on_310)  # dataclasses look their module up
    spec.loader.exec_module(on_310)
    assert on_310.tomllib is tomli
    (tmp_path / "r.toml").write_text("lr = 0.001\n")
    assert on_310.load_config(tmp_path / "r.toml").lr == 0.001
