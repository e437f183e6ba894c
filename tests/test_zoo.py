"""NAFSSR and PASSRnet against their official code's outputs (tests/assets/conformance/zoo), their
checkpoints as published, and everything ipassr runs them through."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import ipassr
from ipassr.models.checkpoint import load_network, save_weights
from ipassr.cli import main
from ipassr.errors import CheckpointError, IpassrError
from ipassr.data.io import read_image, write_image
from ipassr.models.ipassr import count_parameters
from ipassr.models.nafssr import NAFSSR, SIZES, NAFSSRConfig, local_average
from ipassr.models.passrnet import PASSRnet

# Float32 against float64 of the same network, measured (AMD EPYC, 1 and 2 threads), plus the
# official outputs against float64: NAFSSR-T 3.4e-6 + 3.4e-6, NAFSSR-S 7.5e-6 + 6.8e-6,
# PASSRnet 1.7e-5 + 1.5e-5; tolerances ~1.5x the sum. With the fixtures' random weights a pooling
# window one row too tall moves NAFSSR's outputs by only 1.0e-5 (inside the tolerance): the window
# is checked on a network whose pooling carries signal (test_tlc_pooling_is_the_official_window).
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
    rows = slice(0, 12)  # a strip keeps it quick; NAFSSR-S's 150 columns still pool locally
    left, right = (torch.from_numpy(arrays[k])[:, :, rows] for k in ("LR_left", "LR_right"))
    with torch.no_grad():
        whole = network(left, right)
        network.set_attention_memory(1)  # one row a chunk
        chunked = network(left, right)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_local_pooling_window_and_its_global_fallback():
    x = torch.arange(2 * 3 * 6 * 8, dtype=torch.float32).reshape(2, 3, 6, 8) ** 1.5
    torch.testing.assert_close(local_average(x, (6, 8)),
                               x.mean(dim=(2, 3), keepdim=True).expand_as(x), rtol=1e-6, atol=0)
    out = local_average(x, (3, 5))
    boxes = torch.nn.functional.avg_pool2d(x.double(), (3, 5), stride=1).float()  # (4, 4): the
    # official valid boxes, which it pads with ((8-4)//2, (8-4+1)//2, (6-4)//2, (6-4+1)//2)
    torch.testing.assert_close(out[..., 1:5, 2:6], boxes, rtol=1e-6, atol=0)
    assert torch.equal(out[..., 0, 2:6], out[..., 1, 2:6])  # replicate padding
    assert torch.equal(out[..., :, 0], out[..., :, 2]) and torch.equal(out[..., :, 7], out[..., :, 5])
    tall = local_average(x, (3, 20))  # window wider than the image: one column of boxes
    assert tall.shape == x.shape and torch.equal(tall[..., 0], tall[..., 7])
    # one row, one column: the window shrinks to the image along that side
    row, column = x[..., :1, :], x[..., :, :1]
    boxes = torch.nn.functional.avg_pool2d(row.double(), (1, 5), stride=1).float()
    torch.testing.assert_close(local_average(row, (3, 5)),
                               torch.nn.functional.pad(boxes, (2, 2, 0, 0), mode="replicate"),
                               rtol=1e-6, atol=0)
    boxes = torch.nn.functional.avg_pool2d(column.double(), (3, 1), stride=1).float()
    torch.testing.assert_close(local_average(column, (3, 5)),
                               torch.nn.functional.pad(boxes, (0, 0, 1, 1), mode="replicate"),
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("network", [NAFSSR, PASSRnet])
def test_constructor_refuses_scales_that_are_not_positive_integers(network):
    options = {"width": 8, "blocks": 1} if network is NAFSSR else {}
    assert network(1, **options).scale == 1
    for scale in (0, -2, 2.0, "2"):
        with pytest.raises(ValueError, match=rf"^scale must be a positive integer, got {scale!r}$"):
            network(scale, **options)


def test_constructor_defaults_to_nafssr_t_at_x4():
    assert NAFSSR().config == NAFSSRConfig(4, *SIZES["T"])


def test_our_safetensors_record_the_architecture(tmp_path, conformance_dir):
    network = load_network(conformance_dir / "zoo" / "nafssr_s_x2.pth")
    save_weights(network, tmp_path / "s.safetensors")
    again = load_network(tmp_path / "s.safetensors")
    assert isinstance(again, NAFSSR) and again.config == network.config
    saved = again.state_dict()  # once, not once per key (1028 keys)
    for key, value in network.state_dict().items():
        assert torch.equal(saved[key], value), key


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
    for network, upsampler in ((NAFSSR(4, 8, 1), "upsampler.weight"),
                               (PASSRnet(4), "upscale.4.weight")):
        state = network.state_dict()
        state[upsampler] = torch.zeros(40, *state[upsampler].shape[1:])
        torch.save(state, tmp_path / "odd.pth")
        with pytest.raises(CheckpointError, match=r"odd\.pth: cannot read the .* network's shape "
                                                  r"\(ValueError: upsampler of 40 channels fits "
                                                  r"no scale\)"):
            load_network(tmp_path / "odd.pth")
    torch.save({"params": {"encoder.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"architecture ipassr does not know.*encoder\.weight"
                                              r".*iPASSR.*NAFSSR.*PASSRnet"):
        load_network(tmp_path / "other.pth")


@pytest.fixture(scope="module")
def motorcycle_crop(tmp_path_factory, conformance_dir):
    """A 64x24 part of the NAFSSR-S fixture's LR crop of Motorcycle, as PNG files."""
    folder = tmp_path_factory.mktemp("crop")
    arrays = np.load(conformance_dir / "zoo" / "nafssr_s_x2.npz")
    for name, key in (("l.png", "LR_left"), ("r.png", "LR_right")):
        image = np.round(arrays[key][0, :, :24, 40:104].transpose(1, 2, 0) * 255)
        write_image(folder / name, image.astype(np.uint8))
    return folder / "l.png", folder / "r.png"


@pytest.mark.parametrize("name", ["nafssr_t_x4", "passrnet_x4"])
def test_infer_api_and_cli_run_them(name, motorcycle_crop, conformance_dir, tmp_path):
    path = conformance_dir / "zoo" / f"{name}.pth"
    model = ipassr.load_model(path)
    left, right = (read_image(p) for p in motorcycle_crop)
    sr_left, sr_right = model.super_resolve(left, right)
    assert sr_left.shape == (24 * model.scale, 64 * model.scale, 3) == sr_right.shape
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


def test_visualize_draws_their_attention_and_passrnet_masks(motorcycle_crop, conformance_dir,
                                                             tmp_path):
    for name, expected in (("nafssr_t_x4", set()), ("passrnet_x4", {"valid_left", "valid_right"})):
        out = tmp_path / name
        assert main(["visualize", "--weights", str(conformance_dir / "zoo" / f"{name}.pth"),
                     "--left", str(motorcycle_crop[0]), "--right", str(motorcycle_crop[1]),
                     "--row", "20", "--output-dir", str(out)]) == 0
        names = {p.stem for p in out.iterdir()}
        assert {"attention_row20_right_to_left", "attention_row20_left_to_right",
                "comparison_left"} | expected <= names
        row = read_image(out / "attention_row20_right_to_left.png")
        # the 64x64 map of the 64-px-wide crop, enlarged pixel for pixel to at least 480 px and
        # framed by axes, a title and a colour bar (ipassr.figures)
        assert row.ndim == 3 and row.shape[1] >= 64 * (480 // 64) and row.shape[0] > 64


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_nafssr_exports_with_a_dynamic_size_past_its_pooling_window(tmp_path, fmt):
    from ipassr.inference.export import export_model, run_onnx, run_torchscript

    network = pooling_matters()  # small, and its pooling shows in the output
    path = tmp_path / f"m.{'pt' if fmt == 'torchscript' else 'onnx'}"
    error = export_model(network, path, fmt)
    assert error is not None and error <= 1e-4  # checked at 13x30 and at 50x150
    left, right = (torch.rand(1, 3, 47, 140) + torch.linspace(0, 1, 140) for _ in range(2))
    with torch.no_grad():
        expected = network(left, right)
    actual = (run_torchscript(path, left, right) if fmt == "torchscript" else
              [torch.from_numpy(a) for a in run_onnx(path, left.numpy(), right.numpy())])
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-4)


def test_export_leaves_the_callers_network_as_it_was(tmp_path):
    """Exporters restore the wrapper's training flag recursively when they finish: a wrapper left
    in training mode switched NAFSSR to global pooling, so its reference, not ONNX Runtime, was
    wrong past the window (which once made ipassr refuse NAFSSR's ONNX export)."""
    from ipassr.inference.export import export_model

    for training in (False, True):
        network = pooling_matters().train(training)
        before = {k: v.clone() for k, v in network.state_dict().items()}
        assert export_model(network, tmp_path / "m.onnx", "onnx") <= 1e-4
        assert network.training is training
        assert all(m.training is training for m in network.modules())
        assert all(torch.equal(v, before[k]) for k, v in network.state_dict().items())


def pooling_matters() -> NAFSSR:
    """A small random NAFSSR whose channel attention and residual scales carry signal (with the
    fixtures' random weights, local and global pooling differ by only ~1e-5)."""
    torch.manual_seed(0)
    network = NAFSSR(2, 16, 2)
    with torch.no_grad():
        for name, value in network.named_parameters():
            if name.endswith(("beta", "gamma")):
                value.fill_(1.0)
            if "sca.conv.weight" in name:
                value.mul_(20)
    return network


def global_pooling(x, window):
    """The official branch alone: the global mean whatever the size."""
    return x.mean(dim=(2, 3), keepdim=True)


def test_local_pooling_is_what_runs_past_the_window(monkeypatch):
    import ipassr.models.nafssr as nafssr

    network = pooling_matters()
    views = [torch.rand(1, 3, 50, 150) + torch.linspace(0, 1, 150) for _ in range(2)]
    small = [v[..., :40, :100] for v in views]
    with torch.no_grad():
        local, local_small = network(*views), network(*small)
        monkeypatch.setattr(nafssr, "local_average", global_pooling)
        globally, global_small = network(*views), network(*small)
    assert (local[0] - globally[0]).abs().max() > 1e-2  # 50x150 is past the (45, 135) window
    torch.testing.assert_close(local_small[0], global_small[0], rtol=0, atol=1e-5)  # inside it


def official_tlc_pooling(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """The official TLC pooling, written as its code does it: valid box means of
    min(size, window), replicate-padded back to size; the global mean when the box is the image."""
    height, width = x.shape[-2:]
    box = (min(height, window[0]), min(width, window[1]))
    if box == (height, width):
        return x.mean(dim=(2, 3), keepdim=True)
    means = torch.nn.functional.avg_pool2d(x.double(), box, stride=1)
    rows, cols = height - means.shape[-2], width - means.shape[-1]
    padding = (cols // 2, (cols + 1) // 2, rows // 2, (rows + 1) // 2)
    return torch.nn.functional.pad(means, padding, mode="replicate").to(x.dtype)


def test_tlc_pooling_is_the_official_window(monkeypatch):
    """Every block pools over (45, 135), 1.5x the (30, 90) training crop, and on a 48x140 input
    with a vertical ramp the output is the official pooling's; there one row or column more or
    less moves the output by 2.8e-3 to 2.0e-2 (measured), so an off-by-one window shows."""
    import ipassr.models.nafssr as nafssr

    assert all(block.block.sca.window == (45, 135) for block in NAFSSR(4, 48, 16).blocks)
    network = pooling_matters()
    torch.manual_seed(1)
    views = [torch.rand(1, 3, 48, 140) + 2 * torch.linspace(0, 1, 48)[:, None] for _ in range(2)]
    outputs = {}
    with torch.no_grad():
        ours = network(*views)
        for window in ((45, 135), (44, 135), (46, 135), (45, 134), (45, 136)):
            monkeypatch.setattr(nafssr, "local_average",
                                lambda x, _, window=window: official_tlc_pooling(x, window))
            outputs[window] = network(*views)
    official = outputs.pop((45, 135))
    gap = lambda a, b: max((x - y).abs().max().item() for x, y in zip(a, b))  # noqa: E731
    assert gap(ours, official) <= 1e-5
    assert min(gap(other, official) for other in outputs.values()) > 1e-3


def test_an_export_that_bakes_the_pooling_branch_is_refused(tmp_path, monkeypatch):
    """The size check past the window catches a size-dependent Python branch in the graph."""
    import ipassr.models.nafssr as nafssr
    from ipassr.inference.export import export_model

    exact = nafssr.local_average

    def branchy(x, window):
        if window[0] >= x.shape[-2] and window[1] >= x.shape[-1]:
            return global_pooling(x, window)
        return exact(x, window)

    assert export_model(pooling_matters(), tmp_path / "ok.pt", "torchscript") <= 1e-4
    monkeypatch.setattr(nafssr, "local_average", branchy)
    with pytest.raises(IpassrError, match="fixed a size while tracing"):
        export_model(pooling_matters(), tmp_path / "m.pt", "torchscript")
    assert not (tmp_path / "m.pt").exists()


def test_exports_are_checked_past_size_windows_unless_the_spec_says_there_are_none():
    """NAFSSR (pooling window (45, 135)) and a plugin that says nothing are also checked at a
    size past the window; PASSRnet, whose windows are all fixed, at the new small size only."""
    from ipassr.inference.export import CHECK_SIZE, LARGE_CHECK_SIZE, OwnForward, check_sizes
    from ipassr.models.registry import NetworkSpec
    from ipassr.models.specs import NAFSSR_SPEC, PASSRNET_SPEC

    own = OwnForward(torch.nn.Identity())
    plugin = NetworkSpec(name="mine", build=torch.nn.Identity)
    assert LARGE_CHECK_SIZE[1] > 45 and LARGE_CHECK_SIZE[2] > 135
    for spec, sizes in ((NAFSSR_SPEC, [CHECK_SIZE, LARGE_CHECK_SIZE]),
                        (plugin, [CHECK_SIZE, LARGE_CHECK_SIZE]), (PASSRNET_SPEC, [CHECK_SIZE])):
        assert check_sizes(own, spec.size_windows) == sizes, spec.name


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_passrnet_exports_with_its_mask_morphology_in_the_graph(conformance_dir, tmp_path, fmt):
    """On the fixture's real crop the valid mask has structure that the morphology changes (both
    checked), so a graph that dropped or froze the morphology would differ."""
    from ipassr.inference.export import run_onnx, run_torchscript
    from ipassr.models.passrnet import VALID_THRESHOLD

    weights = conformance_dir / "zoo" / "passrnet_x4.pth"
    output = tmp_path / f"p.{'onnx' if fmt == 'onnx' else 'pt'}"
    assert main(["export", "--weights", str(weights), "--format", fmt,
                 "--output", str(output)]) == 0
    network = ipassr.load_model(weights).network
    arrays = np.load(conformance_dir / "zoo" / "passrnet_x4.npz")
    for crop in (np.s_[:1], np.s_[1:, :, 2:, 5:50]):  # two sizes, neither the tracing one
        left, right = (torch.from_numpy(arrays[key][crop]) for key in ("LR_left", "LR_right"))
        with torch.no_grad():
            expected = network(left, right)
            features = network.init_feature(left), network.init_feature(right)
            maps = network.pam.attention(network.pam.embeddings(*features), slice(None))
            raw = maps[1].sum(dim=-2)[:, None] > VALID_THRESHOLD
            cleaned = network.valid_mask(left, right)
        assert 0.2 < float(cleaned.mean()) < 0.95 and (raw.float() != cleaned).sum() > 20
        actual = (run_torchscript(output, left, right) if fmt == "torchscript" else
                  [torch.from_numpy(a) for a in run_onnx(output, left.numpy(), right.numpy())])
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e, rtol=0, atol=1e-4)


def test_the_graph_morphology_is_scipys_pixel_for_pixel():
    """One pair and batches (whose pairs the official 4-D labelling links) of blob masks."""
    from scipy import ndimage

    from ipassr.models.morphology import clean_valid_masks_graph
    from ipassr.models.passrnet import clean_valid_mask

    generator = np.random.default_rng(0)
    changed = 0
    for trial in range(24):
        batch, (height, width) = 1 + trial % 3, generator.integers(5, 60, size=2)
        noise = ndimage.gaussian_filter(generator.random((batch, height, width)),
                                        (0, *[generator.random() * 3] * 2))
        valid = torch.from_numpy(noise > np.quantile(noise, generator.random()))[:, None]
        expected = clean_valid_mask(valid)
        assert torch.equal(clean_valid_masks_graph(valid), expected)
        changed += int((expected != valid.float()).sum())
    assert changed > 100  # the masks gave the morphology work to do


def test_the_graph_morphology_labels_in_float64():
    """ONNX's MaxPool takes no integer tensors, and float64 labels stay exact past 2**24 pixels."""
    from ipassr.models.morphology import component_labels

    labels = component_labels(torch.tensor([[[True, False, True]]]))
    assert labels.dtype == torch.float64 and labels.tolist() == [[[1.0, 0.0, 3.0]]]
    assert component_labels(torch.ones(1, 1, 1, dtype=torch.bool)).tolist() == [[[1.0]]]  # 1 px


def test_without_scipy_the_morphology_names_what_to_install(monkeypatch):
    from ipassr.models.passrnet import clean_valid_mask

    monkeypatch.setitem(sys.modules, "scipy", None)  # `from scipy import ndimage` fails
    with pytest.raises(IpassrError, match=r"^PASSRnet's valid mask needs SciPy: pip install scipy$"):
        clean_valid_mask(torch.ones(1, 1, 4, 4, dtype=torch.bool))


def test_the_scripted_cleaner_is_the_graph_cleaner():
    """TorchScript compiles the graph cleaning with its loops (tools/mutation.py leaves this
    out: TorchScript cannot compile mutmut's wrapped functions)."""
    from ipassr.models.morphology import scripted_cleaner
    from ipassr.models.passrnet import clean_valid_mask

    batch = torch.rand(3, 1, 20, 30) > 0.4
    assert torch.equal(scripted_cleaner()(batch), clean_valid_mask(batch))




def _thresholds_masks() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(valid mask, what the official cleaning makes of it): invalid regions of 19, 20 and 21
    pixels on a valid image (only the 19 goes), and valid holes of 9, 10 and 11 pixels along the
    top edge of an invalid image (only the 9 goes; the closing keeps edge pixels it can reach
    from outside). Rectangles and lines, which the disk(3) closing leaves as they are."""
    objects = torch.ones(1, 1, 16, 48, dtype=torch.bool)
    objects[..., 3, 2:21] = False  # 19 pixels
    objects[..., 8:12, 2:7] = False  # 20
    objects[..., 8:11, 12:19] = False  # 21
    objects_cleaned = objects.clone()
    objects_cleaned[..., 3, 2:21] = True
    holes = torch.zeros(1, 1, 12, 48, dtype=torch.bool)
    holes[..., 0, 2:11] = True  # 9
    holes[..., 0, 14:24] = True  # 10
    holes[..., 0, 27:38] = True  # 11
    holes_cleaned = holes.clone()
    holes_cleaned[..., 0, 2:11] = False
    return [(objects, objects_cleaned), (holes, holes_cleaned)]


@pytest.mark.parametrize("cleaner", ["scipy", "graph", "torchscript"])
def test_the_morphology_thresholds_are_20_and_10_pixels(cleaner):
    """SciPy's cleaning, the graph one in Python, and the same compiled by TorchScript."""
    from ipassr.models.morphology import clean_valid_masks_graph, scripted_cleaner
    from ipassr.models.passrnet import clean_valid_mask

    clean = (scripted_cleaner() if cleaner == "torchscript" else
             {"scipy": clean_valid_mask, "graph": clean_valid_masks_graph}[cleaner])
    for valid, expected in _thresholds_masks():
        cleaned = clean(valid)
        assert cleaned.dtype == torch.float32 and torch.equal(cleaned, expected.float())
