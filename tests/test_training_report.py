"""Training you can watch: RUN/curves.png drawn at each validation, ``ipassr report``, and the
smoke preset's own validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ipassr.cli import main
from ipassr.train.report import draw_report, read_log, write_report

from training_helpers import cones_patches


def fake_log(path, steps: int = 30, validations=(10, 20, 30)) -> None:
    """A log.jsonl as the trainer writes it: start, steps, validations, stop."""
    lines = [{"event": "start", "global_step": 0, "config": {"scale": 2}}]
    for step in range(1, steps + 1):
        lines.append({"event": "step", "global_step": step,
                      "loss": {"total": 1 / step, "sr": 0.5 / step, "photo": 0.01}})
        if step in validations:
            lines.append({"event": "validation", "global_step": step,
                          "val": {"Tiny": {"left_psnr": 20 + step / 10, "stereo_psnr": 21,
                                           "scenes": 1}},
                          "correspondence": {"within_1px": 0.5, "within_2px": 0.7}})
    lines.append({"event": "stop", "global_step": steps, "status": "finished"})
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n{\"cut short")


def test_report_draws_losses_validation_and_matches(tmp_path, capsys):
    fake_log(tmp_path / "log.jsonl")
    records = read_log(tmp_path / "log.jsonl")  # the line cut short is skipped
    assert records[-1]["event"] == "stop"
    with_matches = draw_report(tmp_path, records)
    without = draw_report(tmp_path, [r for r in records if r["event"] != "validation"])
    assert with_matches.shape[0] > without.shape[0]  # the matches chart is added when scored
    assert main(["report", str(tmp_path)]) == 0
    assert "curves.png" in capsys.readouterr().out
    picture = np.asarray(Image.open(tmp_path / "curves.png"))
    assert np.array_equal(picture, with_matches)


def test_report_of_a_folder_without_a_log_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"ipassr: error: {tmp_path}: not a training run " \
                                              "(no log.jsonl)"


def test_smoke_run_validates_on_its_own_crop_and_says_where_its_pictures_are(
        tmp_path, capsys, monkeypatch):
    """Without --validate the smoke preset validates on a Motorcycle crop (best.safetensors
    comes from it) and ends by naming curves.png, which the trainer drew from the log."""
    import ipassr.train.data

    few = ipassr.train.data.ArrayPatches(*(a[:8] for a in cones_patches(2)), scale=2)
    monkeypatch.setattr(ipassr.train.data, "motorcycle_patches", lambda scale: few)
    run = tmp_path / "smoke"
    assert main(["train", "--preset", "smoke", "--out", str(run), "--max-steps", "2",
                 "--no-progress", "--lr-crop", "10x20", "--no-tensorboard"]) == 0
    err = capsys.readouterr().err
    assert f"training curves in {run / 'curves.png'}" in err
    validations = [r for r in read_log(run / "log.jsonl") if r["event"] == "validation"]
    assert [set(r["val"]) for r in validations] == [{"Motorcycle-crop"}]
    assert "correspondence" not in validations[0]  # the whole-pair score is left out
    assert (run / "weights" / "best.safetensors").is_file()
    drawn = np.asarray(Image.open(run / "curves.png"))
    assert np.array_equal(drawn, np.asarray(Image.open(write_report(run))))  # from the log alone
