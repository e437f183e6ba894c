"""pytest plugin of tools/mutation.py, loaded in each process that tests a mutant.

- Fastest tests first: mutmut runs a mutant's tests with ``-x`` in no particular order, and most
  mutants fail the first test that reaches them, so starting with the quickest (durations from
  mutmut's stats, in the working folder) kills a mutant in the least time. Survivors still run
  every test.
- No garbage collection of the inherited heap: each mutant's process is forked from one that has
  imported torch and the tests, and pytest's end-of-session ``gc.collect()`` calls walked all of
  it (0.66 of the 1.0 s a one-test mutant took); frozen, they see only the test's own objects.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    gc.freeze()


@pytest.hookimpl(trylast=True)  # after the suite's own ordering (tests/conftest.py)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    stats = Path("mutmut-stats.json")
    if stats.is_file():
        durations = json.loads(stats.read_text())["duration_by_test"]
        items.sort(key=lambda item: durations.get(item.nodeid, float("inf")))
