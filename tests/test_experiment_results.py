"""``experiments/_results.py``: a plain run writes only to the git-ignored ``latest/`` folder, ``--update``
also rewrites the committed result files."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def results(tmp_path, monkeypatch):
    """The helper module, writing under ``tmp_path`` instead of ``experiments/results``."""
    spec = importlib.util.spec_from_file_location("_results", ROOT / "experiments" / "_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    return module


def test_a_plain_run_writes_only_the_latest_folder(results, tmp_path):
    path = results.save_json("demo", "results.json", {"steps": 3}, update=False)
    assert path == tmp_path / "demo" / "latest" / "results.json"
    assert json.loads(path.read_text()) == {"steps": 3}
    assert not (tmp_path / "demo" / "results.json").exists()
    results.save_text("demo", "table.md", "| a |\n", update=False)
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["latest"]


def test_update_rewrites_the_committed_file_and_the_latest_one(results, tmp_path):
    committed = tmp_path / "demo" / "results.json"
    committed.parent.mkdir(parents=True)
    committed.write_text("old")
    results.save_json("demo", "results.json", {"steps": 1}, update=False)
    assert committed.read_text() == "old"
    path = results.save_results("demo", {"steps": 2}, update=True)
    assert path == committed and json.loads(committed.read_text()) == {"steps": 2}
    assert json.loads((tmp_path / "demo" / "latest" / "results.json").read_text()) == {"steps": 2}


def test_figures_go_through_savefig(results, tmp_path):
    class Figure:
        def savefig(self, path, **kwargs):
            Path(path).write_text(repr(kwargs))

    path = results.save_figure("demo", "plot.png", Figure(), update=False, dpi=90)
    assert path.read_text() == "{'dpi': 90}" and path.parent.name == "latest"


def test_update_flag_and_names(results):
    parser = results.add_update_flag(argparse.ArgumentParser())
    assert parser.parse_args([]).update is False and parser.parse_args(["--update"]).update is True
    with pytest.raises(ValueError, match="plain folder name"):
        results.results_dir("../elsewhere")


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_latest_folders_are_ignored_by_git():
    path = "experiments/results/any_experiment/latest/results.json"
    check = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
    assert check.returncode == 0, f"{path} is not ignored by git (.gitignore: experiments/results/*/latest/)"
