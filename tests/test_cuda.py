"""The GPU paths: conformance, the fast path, half precision, the CLI and training on CUDA.

These run only where CUDA is available (CI has no GPU; see bench/README.md for where they were
last run). The CPU suite covers the same code paths on the CPU. fp32 comparisons switch TF32
off (``torch.backends.cudnn.flags``), so that fp32 means fp32 here; PyTorch's default TF32
convolutions change results by about 1e-3, which ``test_default_tf32_changes_rounding_only``
bounds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ipassr.models.checkpoint import load_network
from ipassr.cli import main
from ipassr.inference.api import load_model
from ipassr.data.io import read_image, write_image
from ipassr.models.losses import ipassr_loss
from ipassr.evaluation.metrics import psnr
from ipassr.data.resize import imresize
from ipassr.inference.fast import InferencePlan, stereo_forward

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = "cuda"


def exact_fp32():
    """cuDNN and cuBLAS in true fp32 (no TF32) inside the block; restored afterwards."""
    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False,
                                      allow_tf32=False)


@pytest.fixture(scope="module", params=(2, 4), ids=lambda s: f"x{s}")
def conformance(request, conformance_dir):
    scale = request.param
    arrays = np.load(conformance_dir / f"x{scale}.npz")
    tensors = {k: torch.from_numpy(arrays[k]).to(CUDA) for k in arrays.files}
    info = json.loads((conformance_dir / f"x{scale}.json").read_text())
    return load_network(conformance_dir / f"x{scale}.pth.tar").to(CUDA), tensors, info


@pytest.fixture(scope="module")
def lr_pair(cones_pair) -> tuple[np.ndarray, np.ndarray]:
    """The real Cones pair (450x375) downscaled x2 with MATLAB bicubic: 225x188 LR views."""
    return tuple(imresize(read_image(path), 0.5) for path in cones_pair)


def test_reference_inference_outputs_on_cuda(conformance):
    network, t, _ = conformance
    network.eval()
    with exact_fp32(), torch.no_grad():
        sr_left, sr_right = network(t["LR_left"], t["LR_right"])
        fast_left, fast_right = stereo_forward(network, t["LR_left"], t["LR_right"])
    for ours in (sr_left, fast_left):
        torch.testing.assert_close(ours, t["infer_SR_left"], atol=1e-4, rtol=0)
    for ours in (sr_right, fast_right):
        torch.testing.assert_close(ours, t["infer_SR_right"], atol=1e-4, rtol=0)


def test_reference_training_pass_on_cuda(conformance):
    """Training-mode forward, attention maps and all five loss terms, as the reference gives."""
    network, t, info = conformance
    network.train()
    with exact_fp32():
        sr_left, sr_right, maps = network(t["LR_left"], t["LR_right"], return_attention=True)
        terms = ipassr_loss(sr_left, sr_right, t["HR_left"], t["HR_right"], t["LR_left"],
                            t["LR_right"], maps, info["scale"])
        terms["total"].backward()
    network.zero_grad()
    network.eval()
    # (ours, reference, tolerance): cuDNN/cuBLAS sum in another order than the CPU reference;
    # the attention maps and valid masks differ by up to 7e-5 (seen on an H100; losses by 3e-6)
    checks = {"SR_left": (sr_left.detach(), t["train_SR_left"], 1e-4),
              "SR_right": (sr_right.detach(), t["train_SR_right"], 1e-4),
              "M_right_to_left": (maps.right_to_left.detach(), t["train_M_right_to_left"], 1e-4),
              "M_left_to_right": (maps.left_to_right.detach(), t["train_M_left_to_right"], 1e-4),
              "V_left": (maps.valid_left, t["train_V_left"], 1e-4),
              "V_right": (maps.valid_right, t["train_V_right"], 1e-4)}
    errors = {name: (ours - theirs).abs().max().item()
              for name, (ours, theirs, _) in checks.items()}
    losses = {name: abs(terms[name].item() / info["losses"][key] - 1)
              for name, key in (("sr", "loss_SR"), ("photo", "loss_photo"),
                                ("smooth", "loss_smooth"), ("cycle", "loss_cycle"),
                                ("cons", "loss_cons"), ("total", "loss_total"))}
    report = f"max abs errors {errors}, relative loss errors {losses}"
    assert all(errors[name] <= check[2] for name, check in checks.items()), report
    assert all(error <= 1e-3 for error in losses.values()), report


def test_default_plan_on_a_large_gpu_runs_1080p_untiled():
    """The GPU default budget (half the available memory) and 4 GiB attention chunks."""
    from ipassr.models.ipassr import IPASSR
    from ipassr.inference.fast import plan_inference

    network = IPASSR(2).to(CUDA)
    plan = plan_inference(network, 1, 1080, 1920)
    assert plan.attention_rows > 1
    if torch.cuda.mem_get_info()[0] > 32 * 2 ** 30:
        assert not plan.tiled


def test_tiled_and_chunked_on_cuda_equal_the_plain_forward(conformance_dir, lr_pair):
    """Bands of 9 rows and one-row attention chunks change nothing on the GPU."""
    network = load_network(conformance_dir / "x2.pth.tar").to(CUDA).eval()
    left, right = (torch.from_numpy(v[:61, :97]).permute(2, 0, 1)[None].float().div(255).to(CUDA)
                   for v in lr_pair)
    with exact_fp32(), torch.no_grad():
        expected = network(left, right)
        untiled = stereo_forward(network, left, right)
        tiled = stereo_forward(network, left, right, plan=InferencePlan(True, 9, 1, 0))
    for ours in (untiled, tiled):
        for view, theirs in zip(ours, expected):
            torch.testing.assert_close(view, theirs, atol=2e-5, rtol=0)


def test_default_tf32_changes_rounding_only(lr_pair):
    model = load_model(scale=2, device=CUDA)
    with exact_fp32():
        exact, _ = model.super_resolve(*lr_pair)
    default, _ = model.super_resolve(*lr_pair)
    assert np.abs(exact.astype(int) - default.astype(int)).max() <= 2


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_on_cuda_is_close_to_float32(lr_pair, dtype):
    """The shipped x2 weights on a real pair: half precision only rounds (PSNR > 40 dB to fp32)."""
    exact_model = load_model(scale=2, device=CUDA)
    half_model = load_model(scale=2, device=CUDA, dtype=dtype)
    with exact_fp32():
        exact, _ = exact_model.super_resolve(*lr_pair)
    half, _ = half_model.super_resolve(*lr_pair)
    assert half.shape == exact.shape == (376, 450, 3)
    assert psnr(half, exact) > 40  # against the fp32 output, in dB


def test_cli_infer_and_visualize_on_cuda(tmp_path, lr_pair):
    for view, name in zip(lr_pair, ("left.png", "right.png")):
        write_image(tmp_path / name, view)
    left, right = str(tmp_path / "left.png"), str(tmp_path / "right.png")
    code = main(["infer", "--left", left, "--right", right, "--scale", "2", "--device", CUDA,
                 "--dtype", "bfloat16", "--output-left", str(tmp_path / "sr_left.png"),
                 "--output-right", str(tmp_path / "sr_right.png")])
    assert code == 0
    cpu_left, _ = load_model(scale=2).super_resolve(*lr_pair)
    assert psnr(read_image(tmp_path / "sr_left.png"), cpu_left) > 40
    code = main(["visualize", "--left", left, "--right", right, "--scale", "2", "--device", CUDA,
                 "--output-dir", str(tmp_path / "viz")])
    assert code == 0
    assert len(list((tmp_path / "viz").glob("*.png"))) >= 4


def test_training_steps_on_cuda_with_bf16_autocast(tmp_path, cones_pair):
    from training_helpers import cones_patches, write_patch_file

    patches = write_patch_file(tmp_path / "p.safetensors", cones_patches(2), 2, count=16)
    run = tmp_path / "run"
    code = main(["train", "--preset", "smoke", "--patches", str(patches), "--out", str(run),
                 "--max-steps", "6", "--device", CUDA, "--amp", "bf16", "--channels-last",
                 "--no-progress"])
    assert code == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"]["total"] for r in log if r["event"] == "step"]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-2:]) < losses[0]
    model = load_model(run / "weights" / "last.safetensors", scale=2)  # loads on the CPU
    assert model.device.type == "cpu"
