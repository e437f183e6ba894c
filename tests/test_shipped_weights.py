"""The trained weights shipped in the package load by scale and carry their provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

import ipassr
from ipassr.cli import main
from ipassr.inference.api import shipped_weights_path
from ipassr.data.io import read_image
from ipassr.evaluation.metrics import psnr
from ipassr.data.resize import imresize
from ipassr.train.config import load_config, read_config_file

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SHIPPED_RECIPES = {2: "shipped-x2-hints-stage7.toml", 4: "shipped-x4-hints-stage7.toml"}  # last runs


@pytest.mark.parametrize("scale", [2, 4])
def test_shipped_weights_load_by_scale_with_provenance(scale):
    model = ipassr.load_model(scale=scale)
    assert model.scale == scale
    with safe_open(str(shipped_weights_path(scale)), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["scale"] == str(scale)
    assert metadata["provenance"].startswith("ipassr train")
    assert int(metadata["trained_steps"]) > 0 and "training_config_toml" in metadata


def test_shipped_x2_weights_beat_bicubic_on_a_real_pair(cones_pair):
    """Cones (never trained on) cropped to keep the test quick; MATLAB-exact LR."""
    hr_left, hr_right = (read_image(p)[100:196, 100:260] for p in cones_pair)
    lr_left, lr_right = imresize(hr_left, 0.5), imresize(hr_right, 0.5)
    sr_left, sr_right = ipassr.load_model(scale=2).super_resolve(lr_left, lr_right)
    ours = (psnr(sr_left, hr_left) + psnr(sr_right, hr_right)) / 2
    bicubic = (psnr(imresize(lr_left, 2), hr_left) + psnr(imresize(lr_right, 2), hr_right)) / 2
    assert ours > bicubic + 0.5


def test_every_recipe_is_a_valid_training_config():
    paths = sorted(RECIPES.glob("*.toml"))
    assert len(paths) >= 23, paths
    for path in paths:
        load_config(path)  # unknown keys and bad values raise, naming the file
    # every network's published recipe, at every size, is one of them and names its network
    from ipassr.models.registry import registered_networks
    from ipassr.train.recipes import recipe_config, recipe_path

    for name, spec in registered_networks().items():
        for size in spec.sizes or [None]:
            path = recipe_path(name, size)
            assert path is None or path.resolve().parent == RECIPES.resolve(), path
            config = recipe_config(name, size)
            assert (config.arch, config.model_size) == (name, size)


@pytest.mark.parametrize("scale", [2, 4])
def test_shipped_weights_were_trained_with_the_recipe_the_docs_name(tmp_path, scale):
    """Every setting of the recipe the model card names is what the shipped run's config held."""
    with safe_open(str(shipped_weights_path(scale)), framework="pt") as handle:
        metadata = handle.metadata()
    recipe = SHIPPED_RECIPES[scale]
    assert f"recipes/{recipe}" in metadata["note"]
    ran_file = tmp_path / "ran.toml"
    ran_file.write_text(metadata["training_config_toml"])
    ran = read_config_file(ran_file)
    for key, value in read_config_file(RECIPES / recipe).items():
        assert (Path(ran[key]).name if key == "patches" else ran[key]) == value, key


def test_evaluate_attention_scores_the_shipped_weights_on_motorcycle(tmp_path, capsys,
                                                                     monkeypatch):
    """``evaluate --attention`` on its built-in scene, into JSON and Markdown, here on 64 of
    Motorcycle's rows (every column, so every match stays in the pair): the scores on the whole
    pair are the demo's, the same pass, held to their measured numbers in ``test_demo.py``."""
    import ipassr.data.datasets

    whole = ipassr.data.datasets.stereo_motorcycle
    monkeypatch.setattr(ipassr.data.datasets, "stereo_motorcycle",
                        lambda *args: tuple(a[160:224] for a in whole(*args)))
    assert main(["evaluate", "--scale", "4", "--attention", "--weights", "shipped=x4",
                 "--json", str(tmp_path / "a.json"), "--markdown", str(tmp_path / "a.md")]) == 0
    assert "biPAM correspondence on Motorcycle, x4" in capsys.readouterr().out
    row = json.loads((tmp_path / "a.json").read_text())["attention"]["datasets"]["Motorcycle"]
    mean = row["shipped"]["mean"]
    assert 0.8 < mean["within_1px"] <= mean["within_2px"] <= 1  # measured 0.890 / 0.908 there
    assert "| shipped |" in (tmp_path / "a.md").read_text()
