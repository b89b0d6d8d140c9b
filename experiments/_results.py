"""Where an experiment writes its results, so that rerunning it never dirties tracked files.

Every script under ``experiments/`` writes to ``experiments/results/<name>/``:

* a plain run writes *every* output (JSON, Markdown tables, plots: anything with timings or other
  machine-dependent numbers) to ``experiments/results/<name>/latest/``, which git ignores
  (``.gitignore``: ``experiments/results/*/latest/``);
* ``--update`` also rewrites the committed files ``experiments/results/<name>/<file>``: run it when
  the committed numbers should change (and commit them with the README numbers they back).

Usage in a script::

    from _results import add_update_flag, save_figure, save_json, save_text

    parser = argparse.ArgumentParser(...)
    add_update_flag(parser)
    args = parser.parse_args()
    ...
    save_json("samplers_1d", "results.json", results, update=args.update)
    save_text("samplers_1d", "table.md", table, update=args.update)
    save_figure("samplers_1d", "runtime.png", fig, update=args.update, dpi=110)

For other writers (``np.save``, checkpoints) :func:`output_paths` gives the paths to write.
Scripts import this module as ``_results`` (``python experiments/<script>.py`` puts
``experiments/`` on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
LATEST = "latest"

__all__ = [
    "LATEST",
    "RESULTS",
    "add_update_flag",
    "output_paths",
    "results_dir",
    "save_figure",
    "save_json",
    "save_results",
    "save_text",
]


def results_dir(name: str) -> Path:
    """``experiments/results/<name>``: the committed results of experiment ``name``."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"experiment name must be a plain folder name, got {name!r}")
    return RESULTS / name


def add_update_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``--update`` to ``parser``: also rewrite the committed result files."""
    parser.add_argument(
        "--update",
        action="store_true",
        help=f"also rewrite the committed files in experiments/results/<name>/ (default: only "
        f"experiments/results/<name>/{LATEST}/, which git ignores)",
    )
    return parser


def output_paths(name: str, filename: str, *, update: bool) -> list[Path]:
    """The paths to write ``filename`` of experiment ``name`` to: always ``results/<name>/latest/``,
    plus the committed ``results/<name>/`` with ``update``.  Parent folders are created."""
    committed = results_dir(name) / filename
    paths = [committed.parent / LATEST / committed.name] + ([committed] if update else [])
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    return paths


def _write(name: str, filename: str, update: bool, write: Callable[[Path], Any]) -> Path:
    paths = output_paths(name, filename, update=update)
    for path in paths:
        write(path)
    return paths[-1]


def save_text(name: str, filename: str, text: str, *, update: bool) -> Path:
    """Writes ``text``; returns the path of record (the committed one with ``update``)."""
    return _write(name, filename, update, lambda path: path.write_text(text))


def save_json(name: str, filename: str, data: Any, *, update: bool, indent: int = 1) -> Path:
    """Writes ``data`` as JSON (``indent`` spaces, a final newline); returns the path of record."""
    return save_text(name, filename, json.dumps(data, indent=indent) + "\n", update=update)


def save_results(name: str, data: Any, *, update: bool) -> Path:
    """``save_json(name, "results.json", data, update=update)``: the usual single result file."""
    return save_json(name, "results.json", data, update=update)


def save_figure(name: str, filename: str, fig: Any, *, update: bool, **savefig_kwargs: Any) -> Path:
    """Saves a matplotlib figure (``fig.savefig(path, **savefig_kwargs)``); returns the path of record."""
    return _write(name, filename, update, lambda path: fig.savefig(path, **savefig_kwargs))
