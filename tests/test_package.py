"""The package's import behaviour and the CLI's process-wide runtime settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
            "ipassr.cli.use_huge_pages_for_large_tensors([])\n"
            "print(os.environ.get('THP_MEM_ALLOC_ENABLE'))")
    assert _run(code) == "1"
    assert _run(code, THP_MEM_ALLOC_ENABLE="0") == "0"  # the user's choice wins


def test_huge_pages_are_not_requested_once_torch_is_loaded():
    code = ("import os, torch, ipassr.cli\n"
            "ipassr.cli.use_huge_pages_for_large_tensors([])\n"
            "print(os.environ.get('THP_MEM_ALLOC_ENABLE'))")
    assert _run(code) == "None"


def test_huge_pages_only_for_ipassr_read_off_the_weights_without_torch(conformance_dir, tmp_path):
    """Huge pages help iPASSR and slow PASSRnet and NAFSSR (bench/README.md): the CLI reads the
    networks off the files named on its command line, before torch starts."""
    zoo = conformance_dir / "zoo"
    passrnet, nafssr = str(zoo / "passrnet_x4.pth"), str(zoo / "nafssr_t_x4.pth")
    reference = str(conformance_dir / "x4.pth.tar")
    code = ("import os, sys, ipassr.startup as s\n"
            f"print(s.network_in({passrnet!r}), s.network_in({nafssr!r}), "
            f"s.network_in({reference!r}), s.network_in(s.__file__))\n"
            f"s.use_huge_pages_for_large_tensors(['infer', '--weights', {passrnet!r}])\n"
            "print(os.environ.get('THP_MEM_ALLOC_ENABLE'), 'torch' in sys.modules)")
    assert _run(code).splitlines() == ["passrnet nafssr ipassr None", "None False"]

    from ipassr.models.checkpoint import save_weights
    from ipassr.startup import huge_pages_help, network_in
    from ipassr.models.nafssr import NAFSSR

    ours = tmp_path / "nafssr.safetensors"
    save_weights(NAFSSR(4, 8, 1), ours)
    shipped = Path(ipassr.__file__).parent / "weights" / "ipassr_x2.safetensors"
    assert (network_in(ours), network_in(shipped)) == ("nafssr", "ipassr")
    assert huge_pages_help([]) and huge_pages_help(["demo"])
    assert not huge_pages_help(["infer", f"--weights={ours}"])
    assert not huge_pages_help(["export", "--weights", passrnet, "--arch", "passrnet"])
    assert not huge_pages_help(["infer", "--arch", "nafssr", "--weights", reference])  # --arch rules
    assert huge_pages_help(["evaluate", "--weights", f"a={passrnet}", "--weights", str(shipped)])
    assert not huge_pages_help(["evaluate", "--weights", f"a={passrnet}", "--weights", nafssr])
    assert huge_pages_help(["infer", "--weights", str(tmp_path / "missing.pth")])


def test_help_and_argument_errors_answer_without_torch():
    """`ipassr --help`, every command's --help and a usage error do not import torch (seconds on
    a busy machine); the --arch / --model-size choices come from the registry, torch-free."""
    code = ("import sys\n"
            "from ipassr.cli import build_parser\n"
            "parser = build_parser()\n"
            "for argv in (['--help'], *([c, '--help'] for c in ipassr.cli.COMMANDS),\n"
            "             ['infer', '--arch', 'nope']):\n"
            "    try:\n"
            "        parser.parse_args(argv)\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print('torch' in sys.modules)\n")
    lines = _run("import ipassr.cli\n" + code).splitlines()
    assert lines[-1] == "False"
    assert any("--arch {ipassr,nafssr,passrnet}" in line for line in lines)
