"""Training NAFSSR and PASSRnet: the official NAFSSR step (conformance), drop path, PASSRnet's
training pass, both networks from the CLI with their recipes, exact resume, recipe files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ipassr.cli import main
from ipassr.data.io import write_image
from ipassr.errors import IpassrError
from ipassr.models.nafssr import NAFSSR, drop_path_factors, official_to_ours
from ipassr.models.passrnet import PASSRnet
from ipassr.train.data import ArrayPatches, to_inputs
from ipassr.train.recipes import RECIPES, recipe_config
from ipassr.train.trainer import Trainer

from training_helpers import CONFORMANCE, cones_patches, one_thread, write_patch_file  # noqa: F401

ZOO = CONFORMANCE / "zoo"
VIEWS = ("LR_left", "LR_right", "HR_left", "HR_right")


@pytest.fixture(scope="module")
def cones_x4(tmp_path_factory) -> Path:
    """6 real x4 patches of Middlebury Cones in the patch file format."""
    return write_patch_file(tmp_path_factory.mktemp("patches") / "cones_x4.safetensors",
                            cones_patches(4), 4, count=6)


def states(trainer: Trainer) -> tuple[dict[str, torch.Tensor], dict]:
    weights = {k: v.detach().clone() for k, v in trainer.network.state_dict().items()}
    return weights, trainer.optimizer.state_dict()["state"]


# ----------------------------------------------------------------------------- the official step

def test_one_nafssr_training_step_is_the_official_step(tmp_path):
    """NAFSSR-T x4 by its recipe from the official checkpoint on the official batch: the loss, the
    clipped gradients and the parameters after AdamW are the official step's (measured: loss
    equal, gradients within 4.2e-7 relative in norm, 1.2e-10 absolute; parameters 4e-7)."""
    fixture = np.load(ZOO / "nafssr_t_x4_train.npz")
    expected = json.loads((ZOO / "nafssr_t_x4_train.json").read_text())
    source = ArrayPatches(*(fixture[k] for k in VIEWS), scale=4, name="conformance")
    config = recipe_config("nafssr", "T", {
        "scale": 4, "batch_size": 2, "lr_crop": None, "hflip": False, "vflip": False,
        "channel_shuffle": False, "workers": 0, "tensorboard": False})
    trainer = Trainer(config, tmp_path / "run", source=source, progress=False,
                      init_weights=ZOO / "nafssr_t_x4.pth")
    batch = tuple(torch.from_numpy(fixture[k]) for k in VIEWS)  # the official batch order
    values = trainer.train_step(to_inputs(batch, trainer.device))
    assert values["total"] == pytest.approx(expected["loss_value"], rel=1e-6)
    params = dict(trainer.network.named_parameters())
    norms = [k for k in fixture.files if k.startswith("gradnorm.")]
    assert len(norms) == len(params)
    for key in norms:
        grad = params[official_to_ours(key[len("gradnorm."):])].grad.double()
        assert float(grad.norm()) == pytest.approx(float(fixture[key]), rel=1e-5), key
    values_checked = [k for k in fixture.files if k.startswith("grad.")]
    assert len(values_checked) > 100
    for key in values_checked:
        grad = params[official_to_ours(key[len("grad."):])].grad
        torch.testing.assert_close(grad, torch.from_numpy(fixture[key]), rtol=1e-3, atol=2e-9)
    for key in (k for k in fixture.files if k.startswith("step.")):
        torch.testing.assert_close(params[official_to_ours(key[len("step."):])].detach(),
                                   torch.from_numpy(fixture[key]), rtol=0, atol=4e-6)


# ----------------------------------------------------------------------------- training passes

def test_drop_path_skips_whole_blocks_from_the_seed_and_scales_the_rest():
    """A skipped block leaves both views as they were; a kept one adds its residual / (1 - rate);
    the draws depend on the seed alone; eval mode and rate 0 run every block unscaled."""
    assert drop_path_factors(4, 0.0, 1) == [None] * 4
    factors = drop_path_factors(64, 0.5, 7)
    assert factors == drop_path_factors(64, 0.5, 7) != drop_path_factors(64, 0.5, 8)
    assert {f for f in factors} == {0.0, 2.0}
    torch.manual_seed(0)
    network = NAFSSR(2, width=8, blocks=3).train()
    left, right = torch.rand(2, 1, 3, 6, 10).unbind(0)
    seed = next(s for s in range(100) if drop_path_factors(3, 0.5, s) == [0.0, 2.0, 0.0])
    with torch.no_grad():
        dropped = network.features(left, right, drop_path=(0.5, seed))
        intro_left, intro_right = network.intro(left), network.intro(right)
        new_left, new_right = network.blocks[1](intro_left, intro_right)
        expected = (intro_left + 2.0 * (new_left - intro_left),
                    intro_right + 2.0 * (new_right - intro_right))
        torch.testing.assert_close(dropped, expected, rtol=0, atol=0)
        plain = network.features(left, right)
        assert torch.equal(network.eval().features(left, right, drop_path=(0.5, seed))[0],
                           network.features(left, right)[0])
        assert torch.equal(network.train().features(left, right, drop_path=None)[0], plain[0])


def test_passrnet_training_pass_is_its_evaluation_with_the_maps_its_losses_need():
    """The official training pass (is_training=1) gives the left SR view of the evaluation, and
    both views' maps and valid masks; every parameter gets a gradient from its losses."""
    from ipassr.models.passrnet import training_objective
    from ipassr.train.config import TrainConfig

    torch.manual_seed(0)
    network = PASSRnet(2).train()
    lr_left, lr_right = torch.rand(2, 1, 3, 12, 20).unbind(0)
    hr_left, hr_right = torch.rand(2, 1, 3, 24, 40).unbind(0)
    sr_left, sr_right, maps = network(lr_left, lr_right, return_attention=True)
    assert sr_right is None and maps.right_to_left.shape == (1, 12, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(sr_left, network.super_resolve_left(lr_left, lr_right))
        torch.testing.assert_close(maps.valid_left, network.valid_mask(lr_left, lr_right))
    config = recipe_config("passrnet", changes={"scale": 2})
    assert isinstance(config, TrainConfig) and config.loss_weight == 0.005
    objective = training_objective(config)
    inputs = (lr_left, lr_right, hr_left, hr_right)
    terms = objective.loss(objective.forward(network, inputs, 0), inputs)
    assert set(terms) == {"sr", "photo", "smooth", "cycle", "total"}
    weighted = terms["sr"] + 0.005 * (terms["photo"] + terms["smooth"] + terms["cycle"])
    torch.testing.assert_close(terms["total"], weighted)
    terms["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.parameters())


# ----------------------------------------------------------------------------- from the CLI

@pytest.mark.parametrize("arch,extra", [("nafssr", ["--model-size", "T"]), ("passrnet", [])])
def test_each_network_trains_from_the_cli_by_its_recipe_and_its_weights_run(tmp_path, cones_x4,
                                                                            arch, extra, capsys):
    run = tmp_path / "run"
    code = main(["train", "--arch", arch, *extra, "--scale", "4", "--patches", str(cones_x4),
                 "--out", str(run), "--preset", "smoke", "--batch-size", "2", "--lr-crop", "10x20",
                 "--max-steps", "2", "--no-progress", "--no-tensorboard"])
    assert code == 0, capsys.readouterr().err
    saved = (run / "config.toml").read_text()
    recipe = {"nafssr": ['optimizer = "adamw"', "channel_shuffle = true", "grad_clip = 0.01"],
              "passrnet": ["loss_weight = 0.005", "hflip_swap = false", 'loss = "mse"']}[arch]
    assert all(line in saved for line in recipe), saved
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["event"] == "step"]
    assert len(steps) == 2 and all(np.isfinite(r["loss"]["total"]) for r in steps)
    out = tmp_path / "sr"
    views = [tmp_path / "l.png", tmp_path / "r.png"]
    for path, patches in zip(views, cones_patches(4)[:2]):
        write_image(path, patches[0][:12, :24])
    assert main(["infer", "--weights", str(run / "weights" / "last.safetensors"), "--left",
                 str(views[0]), "--right", str(views[1]), "--output-left", str(out / "l.png"),
                 "--output-right", str(out / "r.png")]) == 0, capsys.readouterr().err
    assert (out / "l.png").is_file()


def test_nafssr_resumes_exactly_two_and_two_steps_are_four(tmp_path, cones_x4):
    """With its drop path, channel shuffle, flips and AdamW: weights and optimizer state equal."""
    source = ArrayPatches(*(a[:6] for a in cones_patches(4)), scale=4, name="cones")
    config = recipe_config("nafssr", "T", {
        "scale": 4, "batch_size": 2, "lr_crop": (10, 20), "workers": 0, "tensorboard": False,
        "drop_path_rate": 0.5, "total_steps": None, "epochs": 2})  # 3 steps an epoch
    straight = Trainer(config, tmp_path / "straight", source=source, progress=False)
    straight.fit(max_steps=4)
    first = Trainer(config, tmp_path / "resumed", source=source, progress=False)
    first.fit(max_steps=2)
    second = Trainer(config, tmp_path / "resumed", source=source, resume=True, progress=False)
    second.fit(max_steps=4)
    (weights_a, adam_a), (weights_b, adam_b) = states(straight), states(second)
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert adam_a.keys() == adam_b.keys()
    for index in adam_a:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(adam_a[index][key], adam_b[index][key]), (index, key)


# ----------------------------------------------------------------------------- recipes

def test_network_recipes_say_where_each_value_comes_from_and_refuse_what_they_do_not_use():
    for name in ("nafssr-T", "nafssr-S", "nafssr-B", "nafssr-L", "passrnet"):
        lines = [line for line in (RECIPES / f"{name}.toml").read_text().splitlines()
                 if line and not line.startswith("#")]
        assert all("#" in line for line in lines), name  # where each value comes from
    sizes = {s: recipe_config("nafssr", s) for s in "TSBL"}
    assert [sizes[s].drop_path_rate for s in "TSBL"] == [0.0, 0.1, 0.2, 0.3]
    assert [sizes[s].total_steps for s in "TSBL"] == [400000, 100000, 100000, 100000]
    assert recipe_config("nafssr", "t").model_size == "T"
    with pytest.raises(IpassrError, match="NAFSSR sizes are T, S, B, L"):
        recipe_config("nafssr", "XL")
    source = ArrayPatches(*(a[:2] for a in cones_patches(4)), scale=4, name="cones")
    with pytest.raises(IpassrError, match="--hint-weight: NAFSSR's training does not use it"):
        Trainer(recipe_config("nafssr", changes={"hint_weight": 0.1, "batch_size": 2}), "unused",
                source=source)
