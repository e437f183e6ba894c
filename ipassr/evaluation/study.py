"""The skeleton the three studies share (PSNR/SSIM in ``protocol``, the disparity benefit,
biPAM's correspondence): score every method on every scene, file the figures by dataset,
method and scene, mean each dataset's scenes, and render tables as text and Markdown.

A per-dataset study's result is ``{"scale": s, "datasets": {dataset: {label: row}}}``, each
``row`` holding the dataset's figures and ``row["scenes"]`` the per-scene ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

# dataset -> method label -> scene -> figures
ByScene = dict[str, dict[str, dict[str, Any]]]
Progress = Callable[[Iterable, str], Iterable]


def score_scenes(cases: Iterable, score: Callable[[Any], tuple[str, str, dict[str, Any]]],
                 progress: Progress | None = None, name: str = "scene") -> ByScene:
    """Every case scored: ``score(case)`` gives (dataset, scene, {method label: figures}),
    filed in the order met (``progress`` wraps the cases, as ``name``)."""
    by_scene: ByScene = {}
    for case in progress(cases, name) if progress else cases:
        dataset, scene, figures = score(case)
        for label, values in figures.items():
            by_scene.setdefault(dataset, {}).setdefault(label, {})[scene] = values
    return by_scene


def plural(count: int, word: str) -> str:
    """'1 scene', '2 scenes'."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def scene_count(rows: dict[str, dict]) -> int:
    """How many scenes a dataset's rows were meaned over."""
    return len(next(iter(rows.values()))["scenes"])


@dataclass(frozen=True)
class Column:
    """One column of a per-dataset table: its Markdown heading (and text heading, when it
    differs), its text width (right-aligned), and its cell from (method label, row)."""

    heading: str
    width: int
    cell: Callable[[str, dict], str]
    text_heading: str | None = None


def text_tables(result: dict, title: Callable[[str, int], str], columns: tuple[Column, ...],
                footer: str) -> str:
    """One plain-text table per dataset (``title(dataset, scene count)``, a header, a row per
    method, a blank line), then ``footer``."""
    lines = []
    for dataset, rows in result["datasets"].items():
        width = max(len("Method"), *(len(label) for label in rows))
        lines.append(title(dataset, scene_count(rows)))
        lines.append(f"{'Method':<{width}}  " + "  ".join(
            f"{column.text_heading or column.heading:>{column.width}}" for column in columns))
        lines += [f"{label:<{width}}  " + "  ".join(
            f"{column.cell(label, row):>{column.width}}" for column in columns)
            for label, row in rows.items()]
        lines.append("")
    lines.append(footer)
    return "\n".join(lines)


def markdown_table(title: str, headings: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of one Markdown table under a '## title' heading, and a blank line."""
    return ([f"## {title}", "", "| " + " | ".join(headings) + " |", "|---" * len(headings) + "|"]
            + ["| " + " | ".join(row) + " |" for row in rows] + [""])


def markdown_tables(result: dict, title: Callable[[str, int], str],
                    columns: tuple[Column, ...], footer: str | None = None) -> str:
    """``text_tables`` in Markdown: a table per dataset, then ``footer`` if any."""
    lines = []
    for dataset, rows in result["datasets"].items():
        lines += markdown_table(title(dataset, scene_count(rows)),
                                ["Method", *(column.heading for column in columns)],
                                [[label, *(column.cell(label, row) for column in columns)]
                                 for label, row in rows.items()])
    if footer is not None:
        lines.append(footer)
    return "\n".join(lines)
