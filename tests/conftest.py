"""Shared fixtures: the conformance fixtures and real data the tests carry (tests/assets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parent / "assets"  # provenance: tests/assets/README.md
CONFORMANCE = ASSETS / "conformance"
DATA = ASSETS / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (one worker per core) each worker and the processes it starts use one
    thread: two workers of two threads each on two cores spend their time waiting on each other."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


# The longest test files, longest first (docs/testing.md, "Time"): pytest-xdist's loadfile hands
# files out in collection order (``--no-loadscope-reorder`` in pyproject.toml), so starting these
# first keeps one worker from being left with a long file at the end.
LONGEST_FILES_FIRST = (
    "test_serve_browser.py", "test_zoo.py", "test_training_cli.py", "test_infer_cli.py",
    "test_demo.py", "test_training.py", "test_paths.py", "test_shipped_weights.py",
    "test_training_distributed.py", "test_zoo_training.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the files of ``LONGEST_FILES_FIRST`` first, in that order; each file's tests keep
    their order."""
    rank = {name: position for position, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    assert CONFORMANCE.is_dir(), f"conformance fixtures not found at {CONFORMANCE}"
    return CONFORMANCE


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert DATA.is_dir(), f"test data not found at {DATA}"
    return DATA


@pytest.fixture(scope="session")
def cones_pair(data_dir: Path) -> tuple[Path, Path]:
    """A real Middlebury 2003 stereo pair (450x375)."""
    folder = data_dir / "middlebury" / "2003" / "Cones"
    return folder / "im2.png", folder / "im6.png"


def write_cones_crop(folder: Path, cones_pair: tuple[Path, Path], rows: slice, columns: slice
                     ) -> tuple[Path, Path]:
    """The same crop of both views of the Cones pair as folder/left.png, folder/right.png."""
    from ipassr.data.io import read_image, write_image

    for source, name in zip(cones_pair, ("left.png", "right.png")):
        write_image(folder / name, read_image(source)[rows, columns])
    return folder / "left.png", folder / "right.png"


@pytest.fixture
def forward_out_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fast forward fails as PyTorch's CPU allocator does when memory runs out."""
    from ipassr.inference.api import StereoSR

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 8589934592 bytes.")

    monkeypatch.setattr(StereoSR, "fast_forward", staticmethod(no_memory))


@pytest.fixture(scope="session")
def spatial_photo():
    """The real Apple spatial photo (tests/assets/media), its two 2560x2560 views decoded once."""
    from ipassr.data.media import read_stereo

    return read_stereo(ASSETS / "media" / "spatial_photo.heic")
