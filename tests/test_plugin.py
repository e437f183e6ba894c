"""A network from another package, registered only through the ``ipassr.networks`` entry point
with a name and a build function, runs through the CLI like the built-in ones (docs/networks.md).

The plugin is a real package with its own pyproject.toml, installed offline into a folder; a
fresh process with that folder on PYTHONPATH finds its entry point as an installed one's, and the
commands then run in this process with the folder on sys.path (the same lookup, without paying
for a Python and torch start-up per command).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from ipassr.cli import main
from ipassr.data.io import write_image
from ipassr.errors import CheckpointError
from ipassr.models.checkpoint import load_network

from training_helpers import cones_patches, write_patch_file

ROOT = Path(__file__).resolve().parents[1]
SCALE = 2

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "tinysr"
version = "0.1"

[project.entry-points."ipassr.networks"]
tinysr = "tinysr:SPEC"

[tool.setuptools]
packages = ["tinysr"]
"""

PACKAGE = '''\
"""A stereo-SR network from another package: a name and a build function, nothing else."""
import ipassr


def build(scale):
    from tinysr.network import TinySR  # torch only once a network is built
    return TinySR(scale)


SPEC = ipassr.NetworkSpec(name="tinysr", build=build)
'''

NETWORK = '''\
import torch
import torch.nn.functional as F
from torch import nn


class TinySR(nn.Module):
    """Each view: bilinear upsampling plus a correction from both views (3x3 conv, shuffle)."""

    def __init__(self, scale):
        super().__init__()
        self.upscale = scale
        self.conv = nn.Conv2d(6, 3 * scale * scale, 3, padding=1)
        nn.init.normal_(self.conv.weight, std=0.01)

    def view(self, own, other):
        upsampled = F.interpolate(own, scale_factor=self.upscale, mode="bilinear")
        return upsampled + F.pixel_shuffle(self.conv(torch.cat((own, other), 1)), self.upscale)

    def forward(self, left, right):
        return self.view(left, right), self.view(right, left)
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    """The plugin installed offline (pip, from its own pyproject.toml) into a folder of its own."""
    source = tmp_path_factory.mktemp("tinysr-source")
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "tinysr").mkdir()
    (source / "tinysr" / "__init__.py").write_text(PACKAGE)
    (source / "tinysr" / "network.py").write_text(NETWORK)
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(target), str(source)],
                   check=True, capture_output=True, cwd=source)
    return target


@contextlib.contextmanager
def installed(site: Path) -> Iterator[None]:
    """The plugin's folder on this process's sys.path (where PYTHONPATH would put it) and the
    registry looking the entry points up afresh; afterwards all as it was, the plugin unimported."""
    from ipassr.models import registry

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "_REGISTRY", dict(registry.registered_networks()))
        patch.setattr(registry, "_BROKEN", {})
        patch.setattr(registry, "_LOADED", False)
        patch.syspath_prepend(str(site))
        try:
            yield
        finally:
            for name in [n for n in sys.modules if n.partition(".")[0] == "tinysr"]:
                del sys.modules[name]


def _dataset(root: Path, rng: np.random.Generator) -> Path:
    """One scene in the layout ``ipassr evaluate`` reads (HR 96x32, LR x2)."""
    for kind, name, size in (("hr", "hr", (32, 96)), (f"lr_x{SCALE}", "lr", (16, 48))):
        scene = root / "Tiny" / kind / "scene"
        scene.mkdir(parents=True)
        for view in (0, 1):
            write_image(scene / f"{name}{view}.png",
                        rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return root


def test_a_network_registered_by_entry_point_trains_infers_and_evaluates(plugin, tmp_path,
                                                                          capsys):
    """A fresh ``ipassr`` process finds it by its installed entry point alone (the CLI offers
    it by name); train, infer, evaluate and export then run it through the CLI in this process,
    with the plugin's folder on sys.path; without that folder the same weights are refused."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(plugin)])}
    fresh = subprocess.run([sys.executable, "-m", "ipassr", "infer", "--help"], env=env,
                           capture_output=True, text=True)
    assert fresh.returncode == 0 and "tinysr" in fresh.stdout, fresh.stderr
    rng = np.random.default_rng(0)
    patches = write_patch_file(tmp_path / "cones.safetensors", cones_patches(SCALE), SCALE, count=4)
    run = tmp_path / "run"
    weights = run / "weights" / "last.safetensors"  # names its network: no --arch after train
    left, right = tmp_path / "l.png", tmp_path / "r.png"
    for path in (left, right):
        write_image(path, rng.integers(0, 256, (10, 14, 3), dtype=np.uint8))
    outputs = tmp_path / "sr_l.png", tmp_path / "sr_r.png"
    report, exported = tmp_path / "scores.json", tmp_path / "tinysr.pt"
    with installed(plugin):
        for command in (
                ["train", "--arch", "tinysr", "--patches", str(patches), "--out", str(run),
                 "--preset", "smoke", "--batch-size", "2", "--lr-crop", "10x20", "--max-steps",
                 "2", "--no-progress", "--no-tensorboard"],
                ["infer", "--weights", str(weights), "--left", str(left), "--right", str(right),
                 "--output-left", str(outputs[0]), "--output-right", str(outputs[1])],
                ["evaluate", "--dataset-root", str(_dataset(tmp_path / "data", rng)), "--scale",
                 str(SCALE), "--weights", f"tiny={weights}", "--bicubic", "--json", str(report)],
                ["export", "--weights", str(weights), "--format", "torchscript", "--output",
                 str(exported)]):
            assert main(command) == 0, f"{command[0]}: {capsys.readouterr().err}"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [set(r["loss"]) for r in log if r["event"] == "step"] == [{"total", "sr"}] * 2  # L1
    assert all(path.is_file() for path in outputs)
    methods = json.loads(report.read_text())["methods"]
    assert set(methods) == {"Bicubic", "tiny"}
    assert methods["tiny"]["Tiny"]["stereo_psnr"] != methods["Bicubic"]["Tiny"]["stereo_psnr"]
    assert exported.is_file()
    with pytest.raises(CheckpointError, match="'tinysr', which is not registered"):
        load_network(weights)


class _Tiny:
    """A stand-in network class (built only inside the tests below)."""

    @staticmethod
    def build(scale: int):
        import torch

        class Tiny(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.gain = torch.nn.Parameter(torch.ones(1))

            def forward(self, left, right):
                up = [torch.nn.functional.interpolate(v, scale_factor=scale, mode="nearest")
                      for v in (left, right)]
                return up[0] * self.gain, up[1] * self.gain

        return Tiny()


@pytest.fixture
def registry(monkeypatch):
    """The registry as it is now, restored afterwards; entry points looked up again."""
    from ipassr.models import registry as module

    monkeypatch.setattr(module, "_REGISTRY", dict(module.registered_networks()))
    monkeypatch.setattr(module, "_BROKEN", {})
    monkeypatch.setattr(module, "_LOADED", False)
    return module


def test_register_network_in_a_script(registry, tmp_path):
    import ipassr

    spec = ipassr.register_network(ipassr.NetworkSpec(name="mine", build=_Tiny.build))
    assert ipassr.registered_networks()["mine"] is spec
    with pytest.raises(ipassr.IpassrError, match="already registered"):
        ipassr.register_network(ipassr.NetworkSpec(name="MINE", build=_Tiny.build))
    network = ipassr.build_network("mine", 3)
    assert (network.architecture, network.scale) == ("mine", 3)
    ipassr.save_weights(network, tmp_path / "mine.safetensors")
    model = ipassr.load_model(tmp_path / "mine.safetensors")
    assert model.scale == 3 and model.label == "mine" and not model.has_attention
    sr_left, _ = model.super_resolve(np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
    assert sr_left.shape == (12, 15, 3)


def test_a_broken_plugin_warns_and_is_named_when_asked_for(registry, monkeypatch):
    import importlib.metadata

    class Entry:
        name, value = "broken", "nowhere:SPEC"

        def load(self):
            raise ImportError("No module named 'nowhere'")

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [Entry()])
    with pytest.warns(UserWarning, match="plugin 'broken'.*No module named 'nowhere'"):
        names = registry.network_names()
    assert names == ["ipassr", "nafssr", "passrnet"]
    with pytest.raises(registry.IpassrError, match="plugin 'broken'.*failed to load"):
        registry.get_network("broken")
