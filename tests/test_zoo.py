"""NAFSSR and PASSRnet against their official code's outputs (tests/assets/conformance/zoo), their
checkpoints as published, and everything ipassr runs them through."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ipassr
from ipassr.checkpoint import load_network, save_weights
from ipassr.cli import main
from ipassr.errors import CheckpointError, IpassrError
from ipassr.io import read_image, write_image
from ipassr.model import count_parameters
from ipassr.zoo import NAFSSR, PASSRnet
from ipassr.zoo.nafssr import local_average

# Float32 against float64 of the same network, measured (AMD EPYC, 1 and 2 threads), plus the
# official outputs against float64: NAFSSR-T 3.4e-6 + 3.4e-6, NAFSSR-S 7.5e-6 + 6.8e-6,
# PASSRnet 1.7e-5 + 1.5e-5; tolerances ~1.5x the sum. A wrong mask pixel or pooling window moves
# outputs by 1e-2 or more.
FIXTURES = {"nafssr_t_x4": (NAFSSR, 1e-5), "nafssr_s_x2": (NAFSSR, 2e-5),
            "passrnet_x4": (PASSRnet, 5e-5)}


@pytest.fixture(scope="module", params=sorted(FIXTURES))
def fixture(request, conformance_dir):
    name = request.param
    arrays = np.load(conformance_dir / "zoo" / f"{name}.npz")
    info = json.loads((conformance_dir / "zoo" / f"{name}.json").read_text())
    return name, conformance_dir / "zoo" / f"{name}.pth", arrays, info


def test_official_checkpoints_load_and_reproduce_the_official_outputs(fixture):
    name, path, arrays, info = fixture
    kind, tolerance = FIXTURES[name]
    network = load_network(path)
    assert isinstance(network, kind) and network.scale == info["scale"]
    assert count_parameters(network) == info["param_count"]
    if kind is NAFSSR:
        assert (network.config.width, network.config.blocks) == (info["width"], info["num_blks"])
    left, right = torch.from_numpy(arrays["LR_left"]), torch.from_numpy(arrays["LR_right"])
    with torch.no_grad():
        sr_left, sr_right = network(left, right)
    torch.testing.assert_close(sr_left, torch.from_numpy(arrays["SR_left"]), rtol=0, atol=tolerance)
    if "SR_right" in arrays.files:
        torch.testing.assert_close(sr_right, torch.from_numpy(arrays["SR_right"]), rtol=0,
                                   atol=tolerance)
    else:  # PASSRnet: the right view is the mirrored pair's left view, flipped back
        with torch.no_grad():
            mirrored = network.super_resolve_left(right.flip(-1), left.flip(-1)).flip(-1)
        assert torch.equal(sr_right, mirrored)


def test_attention_in_row_chunks_changes_nothing(fixture):
    name, path, arrays, _ = fixture
    network = load_network(path)
    left, right = torch.from_numpy(arrays["LR_left"]), torch.from_numpy(arrays["LR_right"])
    with torch.no_grad():
        whole = network(left, right)
        network.set_attention_memory(1)  # one row a chunk
        chunked = network(left, right)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_local_pooling_window_and_its_global_fallback():
    x = torch.arange(2 * 3 * 6 * 8, dtype=torch.float32).reshape(2, 3, 6, 8) ** 1.5
    assert torch.equal(local_average(x, (6, 8)), x.mean(dim=(2, 3), keepdim=True))
    out = local_average(x, (3, 5))
    boxes = torch.nn.functional.avg_pool2d(x.double(), (3, 5), stride=1).float()  # (4, 4)
    torch.testing.assert_close(out[..., 1:5, 2:6], boxes, rtol=1e-6, atol=0)
    assert torch.equal(out[..., 0, 2:6], out[..., 1, 2:6])  # replicate padding
    assert torch.equal(out[..., :, 0], out[..., :, 2]) and torch.equal(out[..., :, 7], out[..., :, 5])
    tall = local_average(x, (3, 20))  # window wider than the image: one column of boxes
    assert tall.shape == x.shape and torch.equal(tall[..., 0], tall[..., 7])


def test_our_safetensors_record_the_architecture(tmp_path, conformance_dir):
    network = load_network(conformance_dir / "zoo" / "nafssr_s_x2.pth")
    save_weights(network, tmp_path / "s.safetensors")
    again = load_network(tmp_path / "s.safetensors")
    assert isinstance(again, NAFSSR) and again.config == network.config
    for key, value in network.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_bad_checkpoints_and_options_are_named(tmp_path, conformance_dir):
    zoo = conformance_dir / "zoo"
    with pytest.raises(CheckpointError, match=r"holds x4 NAFSSR weights but x2 was requested"):
        load_network(zoo / "nafssr_t_x4.pth", scale=2)
    with pytest.raises(CheckpointError, match=r"NAFSSR-T \(width 48, 16 blocks\) but NAFSSR-L"):
        load_network(zoo / "nafssr_t_x4.pth", size="L")
    with pytest.raises(CheckpointError, match=r"holds PASSRnet weights but --arch nafssr"):
        load_network(zoo / "passrnet_x4.pth", architecture="nafssr")
    with pytest.raises(CheckpointError, match=r"holds x4 PASSRnet weights but x2"):
        load_network(zoo / "passrnet_x4.pth", scale=2)
    torch.save({"params": {"encoder.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"architecture ipassr does not know.*encoder\.weight"
                                              r".*iPASSR.*NAFSSR.*PASSRnet"):
        load_network(tmp_path / "other.pth")


@pytest.fixture(scope="module")
def motorcycle_crop(tmp_path_factory, conformance_dir):
    """The NAFSSR-S fixture's LR crop as PNG files."""
    folder = tmp_path_factory.mktemp("crop")
    arrays = np.load(conformance_dir / "zoo" / "nafssr_s_x2.npz")
    for name, key in (("l.png", "LR_left"), ("r.png", "LR_right")):
        image = np.round(arrays[key][0].transpose(1, 2, 0) * 255).astype(np.uint8)
        write_image(folder / name, image)
    return folder / "l.png", folder / "r.png"


@pytest.mark.parametrize("name", ["nafssr_s_x2", "passrnet_x4"])
def test_infer_api_and_cli_run_them(name, motorcycle_crop, conformance_dir, tmp_path):
    path = conformance_dir / "zoo" / f"{name}.pth"
    model = ipassr.load_model(path)
    left, right = (read_image(p) for p in motorcycle_crop)
    sr_left, sr_right = model.super_resolve(left, right)
    assert sr_left.shape == (50 * model.scale, 150 * model.scale, 3) == sr_right.shape
    assert main(["infer", "--weights", str(path), "--left", str(motorcycle_crop[0]), "--right",
                 str(motorcycle_crop[1]), "--output-left", str(tmp_path / "a.png"),
                 "--output-right", str(tmp_path / "b.png")]) == 0
    assert np.array_equal(read_image(tmp_path / "a.png"), sr_left)
    assert np.array_equal(read_image(tmp_path / "b.png"), sr_right)


def test_passrnet_in_a_batch_equals_one_pair_at_a_time(conformance_dir):
    model = ipassr.load_model(conformance_dir / "zoo" / "passrnet_x4.pth")
    arrays = np.load(conformance_dir / "zoo" / "passrnet_x4.npz")
    left, right = torch.from_numpy(arrays["LR_left"]), torch.from_numpy(arrays["LR_right"])
    batch_left, _ = model.super_resolve_tensors(left, right)
    for i in range(2):
        single, _ = model.super_resolve_tensors(left[i:i + 1], right[i:i + 1])
        assert torch.equal(batch_left[i:i + 1], single)


def test_memory_budget_is_checked_before_running(conformance_dir):
    model = ipassr.load_model(conformance_dir / "zoo" / "nafssr_t_x4.pth", max_memory=2 ** 20)
    with pytest.raises(IpassrError, match=r"needs about .* runs untiled .* budget is 1\.0 MiB"):
        model.super_resolve_tensors(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
