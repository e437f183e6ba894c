"""Loading reference and own checkpoints safely and strictly."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors import safe_open

from ipassr.models.checkpoint import load_network, read_state_dict, save_weights
from ipassr.errors import CheckpointError
from ipassr.models.ipassr import IPASSR


def test_reference_checkpoint_loads_every_tensor(conformance_dir):
    reference = torch.load(conformance_dir / "x4.pth.tar", weights_only=True)["state_dict"]
    model = load_network(conformance_dir / "x4.pth.tar")
    assert model.scale == 4
    ours = model.state_dict()
    assert len(ours) == len(reference)
    torch.testing.assert_close(ours["attention.query.weight"], reference["pam.bq.weight"])
    torch.testing.assert_close(ours["fusion.channel_attention.squeeze.weight"],
                               reference["fusion.1.conv_du.0.weight"])


def test_safetensors_round_trip_keeps_weights_and_metadata(tmp_path, conformance_dir):
    model = load_network(conformance_dir / "x2.pth.tar")
    path = tmp_path / "w.safetensors"
    save_weights(model, path, {"provenance": "test"})
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["scale"] == "2" and metadata["architecture"] == "ipassr-v1"
    assert metadata["provenance"] == "test"
    again = load_network(path).state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(again[name], value)
    assert not list(tmp_path.glob("*.tmp"))


def test_variant_is_restored_from_metadata(tmp_path):
    model = IPASSR(3, use_whitening=False, use_valid_mask=False, channels=16)
    save_weights(model, tmp_path / "v.safetensors")
    again = load_network(tmp_path / "v.safetensors")
    assert again.config == model.config and again.config.channels == 16


def test_single_view_variant_detected_without_metadata(tmp_path):
    model = IPASSR(2, use_attention=False, channels=8)
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, tmp_path / "s.pth.tar")
    assert load_network(tmp_path / "s.pth.tar").config == model.config  # width from the shapes


def test_wrong_scale_is_a_clear_error(conformance_dir):
    with pytest.raises(CheckpointError, match=r"x2 iPASSR weights but x4 was requested"):
        load_network(conformance_dir / "x2.pth.tar", scale=4)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/ipassr-pwned",))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    path = tmp_path / "evil.pth.tar"
    torch.save({"epoch": 1, "state_dict": {"x": Payload()}}, path, pickle_protocol=2)
    if os.path.exists("/tmp/ipassr-pwned"):
        os.remove("/tmp/ipassr-pwned")
    with pytest.raises(CheckpointError, match="refused to load"):
        load_network(path)
    assert not os.path.exists("/tmp/ipassr-pwned")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_plain_pickle_file_is_refused(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match=str(path)):
        load_network(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken"])
def test_unreadable_files_are_clear_errors(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_network(path)


def test_truncated_checkpoint(tmp_path, conformance_dir):
    data = (conformance_dir / "x2.pth.tar").read_bytes()
    path = tmp_path / "cut.pth.tar"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(path)):
        load_network(path)


def test_truncated_safetensors(tmp_path):
    save_weights(IPASSR(2), tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_network(tmp_path / "cut.safetensors")


def test_missing_and_misshapen_tensors_are_never_loaded_partially(tmp_path, conformance_dir):
    state = torch.load(conformance_dir / "x2.pth.tar", weights_only=True)["state_dict"]
    del state["fusion.2.bias"]
    state["pam.bq.weight"] = torch.zeros(64, 64, 3, 3)
    torch.save({"epoch": 0, "state_dict": state}, tmp_path / "broken.pth.tar")
    with pytest.raises(CheckpointError, match=r"1 missing .*fusion\.project\.bias.*wrong shape"):
        load_network(tmp_path / "broken.pth.tar")


def test_non_finite_weights_are_refused(tmp_path):
    model = IPASSR(2)
    with torch.no_grad():
        model.feature_conv.weight[0, 0, 0, 0] = float("nan")
    save_weights(model, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match="NaN"):
        load_network(tmp_path / "nan.safetensors")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such weights file"):
        read_state_dict(tmp_path / "nope.safetensors")


def test_wrapped_state_dicts_load(tmp_path):
    """DDP ('module.') and torch.compile ('_orig_mod.') prefixes are stripped, values kept."""
    torch.manual_seed(3)
    model = IPASSR(2)
    wrapped = {f"module._orig_mod.{k}": v for k, v in model.state_dict().items()}
    torch.save({"model": wrapped}, tmp_path / "ddp.pt")
    loaded = load_network(tmp_path / "ddp.pt").state_dict()
    assert loaded.keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded[name], value), name
    assert not torch.equal(loaded["feature_conv.weight"], IPASSR(2).state_dict()["feature_conv.weight"])


def test_graft_tool_takes_the_named_parts_and_keeps_the_rest(tmp_path, monkeypatch, capsys):
    """tools/graft.py: the named parts from the donor (another scale), everything else from the base."""
    import runpy
    from pathlib import Path
    torch.manual_seed(0)
    donor, base = IPASSR(4, channels=8), IPASSR(2, channels=8)
    save_weights(donor, tmp_path / "donor.safetensors")
    save_weights(base, tmp_path / "base.safetensors")
    tool = str(Path(__file__).resolve().parents[1] / "tools" / "graft.py")

    def graft(*options: str) -> int:
        monkeypatch.setattr("sys.argv", [tool, str(tmp_path / "donor.safetensors"),
                                         str(tmp_path / "base.safetensors"),
                                         str(tmp_path / "out.safetensors"), *options])
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(tool, run_name="__main__")
        return exit_.value.code

    assert graft("--parts", "feature_conv,attention") == 0
    out, _ = read_state_dict(tmp_path / "out.safetensors")
    donor_state, base_state = donor.state_dict(), base.state_dict()
    for name, value in out.items():
        source = donor_state if name.split(".")[0] in ("feature_conv", "attention") else base_state
        assert torch.equal(value, source[name]), name
    assert graft("--parts", "upsampler") == 2  # x4 expansion into x2
    assert "do not fit" in capsys.readouterr().err


def test_breakdown_tool_scores_an_x4_networks_matches_at_x2():
    """tools/correspondence_breakdown.py --scale 2: an x4 network's feature extraction and biPAM
    in an x2 network find the same matches on the same LR pair (the upsampler plays no part)."""
    import runpy
    from pathlib import Path

    from ipassr.inference.api import StereoSR, to_batch_tensor
    tool = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "correspondence_breakdown.py"))
    torch.manual_seed(0)
    x4 = IPASSR(4, channels=8)
    x2 = tool["matching_parts_at_scale"](x4, 2)
    assert x2.scale == 2
    pair = [to_batch_tensor(torch.rand(12, 40, 3).numpy(), "view")[0] for _ in range(2)]
    offsets = [StereoSR(network).forward_with_details(*pair)[2].peak_offset_left
               for network in (x4, x2)]
    assert torch.equal(offsets[0], offsets[1])
    with pytest.raises(SystemExit, match="no biPAM"):
        tool["matching_parts_at_scale"](IPASSR(4, channels=8, use_attention=False), 2)
