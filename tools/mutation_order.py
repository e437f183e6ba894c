"""pytest plugin of tools/mutation.py: run a mutant's tests fastest first.

mutmut runs each mutant's tests with ``-x``, in no particular order; most mutants fail the first
test that reaches them, so starting with the quickest (their durations are in mutmut's stats,
in the working folder) kills a mutant in the least time. Survivors still run every test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.hookimpl(trylast=True)  # after the suite's own ordering (tests/conftest.py)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    stats = Path("mutmut-stats.json")
    if stats.is_file():
        durations = json.loads(stats.read_text())["duration_by_test"]
        items.sort(key=lambda item: durations.get(item.nodeid, float("inf")))
