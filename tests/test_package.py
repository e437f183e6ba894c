"""The package's import behaviour and the CLI's process-wide runtime settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import ipassr


@pytest.mark.parametrize("name", ipassr.__all__)
def test_every_public_name_resolves(name):
    assert getattr(ipassr, name) is not None


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ipassr.nope  # noqa: B018


def _run(code: str, **environment: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    env.update(environment)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def test_cli_asks_for_huge_pages_before_torch_loads():
    """Torch reads THP_MEM_ALLOC_ENABLE once, at its first allocation: the CLI must come first."""
    code = ("import os, sys, ipassr, ipassr.cli\n"
            "assert 'torch' not in sys.modules\n"
            "ipassr.cli.use_huge_pages_for_large_tensors()\n"
            "print(os.environ.get('THP_MEM_ALLOC_ENABLE'))")
    assert _run(code) == "1"
    assert _run(code, THP_MEM_ALLOC_ENABLE="0") == "0"  # the user's choice wins


def test_huge_pages_are_not_requested_once_torch_is_loaded():
    code = ("import os, torch, ipassr.cli\n"
            "ipassr.cli.use_huge_pages_for_large_tensors()\n"
            "print(os.environ.get('THP_MEM_ALLOC_ENABLE'))")
    assert _run(code) == "None"
