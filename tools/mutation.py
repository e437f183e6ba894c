"""Mutation testing of ipassr's core modules with mutmut 3, one group of modules at a time.

    tools/mutation.sh [GROUP ...]     # every group by default; --list names them

Each group runs in ``mutants/<group>/`` (ignored by git): mutmut copies the package there, mutates
only the group's modules (and, where the group names some, only those functions) and runs only the
group's targeted tests, one CPU thread each. Results stay there, so a rerun tests only the
functions that changed. The summary (score per group, every surviving mutant's diff) is printed
and written to ``mutants/summary.md``; ``docs/testing.md`` keeps the explained copy.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutants"
KILLED = {"killed", "timeout", "caught by type check", "segfault"}


@dataclass(frozen=True)
class Group:
    """Modules to mutate, the pytest arguments that select their tests, and optionally the only
    functions whose mutants count (mutmut names: ``module.x_function``, ``module.xǁClassǁmethod``)."""

    modules: tuple[str, ...]
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()


def _in(module: str, *functions: str) -> tuple[str, ...]:
    """mutmut name patterns of some functions (``name`` or ``Class.method``) of a module."""
    return tuple(f"{module}.x{'ǁ' + f.replace('.', 'ǁ') if '.' in f else '_' + f}__mutmut_*"
                 for f in functions)


GROUPS = {
    "metrics": Group(("ipassr/evaluation/metrics.py",), ("tests/test_metrics.py",)),
    "resize": Group(("ipassr/data/resize.py",), ("tests/test_resize.py",)),
    "losses": Group(
        ("ipassr/models/losses.py",),
        ("tests/test_conformance.py", "tests/test_hints.py", "tests/test_model.py", "-k",
         "every_loss_term or gradients or hint_loss or uneven or ipassr_loss or asymmetric_loss"),
        _in("ipassr.models.losses", "LossConfig.needs_attention", "bicubic", "masked_l1",
            "sr_loss", "lr_residuals", "photometric_loss", "cycle_loss", "smoothness_loss",
            "consistency_loss", "hint_loss", "ipassr_loss", "_consistency_inputs")),
    "bipam": Group(
        ("ipassr/models/bipam.py",),
        ("tests/test_conformance.py", "tests/test_model.py", "tests/test_chunked.py",
         "tests/test_export.py", "-k",
         "attention_maps or training_outputs or relax or valid_mask or return_attention or "
         "siamese or batchnorm or running_statistics or ablation or bipam_module or "
         "export_forward")),
    "fast-plan": Group(
        ("ipassr/inference/fast/plan.py", "ipassr/inference/fast/forward.py"),
        ("tests/test_tiling.py", "tests/test_paths.py", "-k",
         "plan or halo or budget or details or training_mode or default_budget or banded "
         "or narrower or untiled or smallest_pairs")),
    "zoo": Group(
        ("ipassr/models/nafssr.py", "ipassr/models/passrnet.py", "ipassr/models/morphology.py"),
        # not what TorchScript compiles (it cannot compile mutmut's wrapped functions): the graph
        # morphology is checked in Python, against SciPy
        ("tests/test_zoo.py", "-k", "(official or local_pooling or tlc or thresholds or constructor or "
         "morphology or bad_checkpoints or safetensors) and not torchscript and not scripted "
         "and not in_the_graph"),
        _in("ipassr.models.nafssr", "official_to_ours", "is_official", "config_from_state",
            "local_average", "_box_starts", "_box_sums", "NAFSSR.__init__")
        + _in("ipassr.models.passrnet", "clean_valid_mask", "config_from_state")
        + ("ipassr.models.morphology.*",)),
    "folder": Group(
        ("ipassr/commands/infer.py",),
        ("tests/test_infer_cli.py", "tests/test_api_cli_alike.py", "tests/test_kept_formats.py",
         "-k", "folder or batched or batch_size or outputs_are_checked"),
        _in("ipassr.commands.infer", "check_outputs", "output_paths", "read_pair", "find_pairs",
            "run_folder", "image_size", "batches_of_equal_size", "super_resolve_or_say_why",
            "super_resolve_group")),
    "resume": Group(
        ("ipassr/train/trainer.py", "ipassr/train/run.py", "ipassr/train/step.py"),
        ("tests/test_training.py", "tests/test_training_cli.py::"
         "test_resume_says_when_the_init_weights_file_was_replaced", "-k",
         "resume or rng_state or foreign_file"),
        _in("ipassr.train.trainer", "Trainer._load_resume_state", "Trainer._restore",
            "Trainer.checkpoint_payload")
        + _in("ipassr.train.run", "rng_state", "set_rng_state", "read_checkpoint")
        + _in("ipassr.train.step", "apply_schedule_config")),
}


def mutmut_config(group: Group) -> str:
    """The group's pyproject.toml: the repository's [tool.mutmut] plus its modules and tests."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    settings = {**project["tool"]["mutmut"], "only_mutate": list(group.modules),
                "pytest_add_cli_args_test_selection": list(group.tests)}
    settings["pytest_add_cli_args"] = settings["pytest_add_cli_args"] + ["-p", "mutation_plugin"]
    lines = ["[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    pytest_options = project["tool"].get("pytest", {}).get("ini_options", {})
    lines += ["", "[tool.pytest.ini_options]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in pytest_options.items()]
    return "\n".join(lines) + "\n"


def prepare(name: str, group: Group) -> Path:
    """mutants/<name>/ with links to the package and the tests, and the group's config."""
    folder = WORK / name
    folder.mkdir(parents=True, exist_ok=True)
    for linked in ("ipassr", "tests"):
        if not (folder / linked).exists():
            (folder / linked).symlink_to(ROOT / linked)
    (folder / "pyproject.toml").write_text(mutmut_config(group))
    return folder


def run_group(name: str, group: Group, jobs: int) -> tuple[float, float]:
    """Run mutmut on one group; (wall seconds, CPU seconds of its processes)."""
    folder = prepare(name, group)
    # the mutated copy of the package, and tools/ for the plugin mutation_plugin.py only
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tools")}
    # no pytest-xdist workers (pyproject's addopts): mutmut records in its own process which
    # tests reach which function
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTEST_ADDOPTS="-n 0")
    started, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs),
                    *group.functions], cwd=folder, env=env, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (time.monotonic() - started,
            after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime)


def results(name: str, group: Group) -> dict[str, str]:
    """Mutant name -> mutmut status, for the group's modules and functions."""
    from mutmut.stats import status_by_exit_code

    statuses = {}
    for module in group.modules:
        meta = WORK / name / "mutants" / (module + ".meta")
        for mutant, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if not group.functions or any(fnmatch.fnmatch(mutant, f) for f in group.functions):
                statuses[mutant] = status_by_exit_code[code]
    return statuses


def diff(name: str, group: Group, mutant: str) -> str:
    """mutmut's diff of one mutant against the source, in this process (``mutmut show``, one
    process per survivor, took ~3 s each)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    module = next(m for m in group.modules if mutant.startswith(m[:-3].replace("/", ".") + ".x"))
    here = os.getcwd()
    os.chdir(WORK / name)  # mutmut reads the mutated copy relative to the working folder
    try:
        return get_diff_for_mutant(mutant, path=module).strip()
    finally:
        os.chdir(here)


def report(names: list[str], timings: dict[str, tuple[float, float]]) -> str:
    """Markdown: a score table, then every mutant that no test killed, with its diff."""
    rows, survivors = [], []
    totals = [0, 0]
    for name in names:
        statuses = results(name, GROUPS[name])
        checked = {m: s for m, s in statuses.items() if s != "not checked"}
        killed = sum(s in KILLED for s in checked.values())
        totals[0] += killed
        totals[1] += len(checked)
        wall, cpu = timings.get(name, (0.0, 0.0))
        rows.append(f"| {name} | {len(checked)} | {killed} | {len(checked) - killed} | "
                    f"{100 * killed / max(1, len(checked)):.1f}% | {wall / 60:.1f} | {cpu / 60:.1f} |")
        survivors += [(name, m, s) for m, s in sorted(checked.items()) if s not in KILLED]
    lines = ["| group | mutants | killed | not killed | score | wall min | CPU min |",
             "| --- | --- | --- | --- | --- | --- | --- |", *rows,
             f"| all | {totals[1]} | {totals[0]} | {totals[1] - totals[0]} | "
             f"{100 * totals[0] / max(1, totals[1]):.1f}% | | |", ""]
    for name, mutant, status in survivors:
        lines += [f"### {mutant} ({status})", "```diff", diff(name, GROUPS[name], mutant), "```",
                  ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help=f"groups to run (default all: {', '.join(GROUPS)})")
    parser.add_argument("--list", action="store_true", help="name the groups and their modules")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--report-only", action="store_true", help="summarise the last runs")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results first")
    args = parser.parse_args()
    if args.list:
        for name, group in GROUPS.items():
            print(f"{name}: {', '.join(group.modules)} <- {' '.join(group.tests)}")
        return 0
    names = args.groups or list(GROUPS)
    unknown = sorted(set(names) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; --list names them")
    timings = {}
    for name in names:
        if args.fresh:
            shutil.rmtree(WORK / name, ignore_errors=True)
        if not args.report_only:
            timings[name] = run_group(name, GROUPS[name], args.jobs)
    summary = report(names, timings)
    (WORK / "summary.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
