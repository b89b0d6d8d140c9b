"""Smoke tests of the benchmark scripts at tiny sizes: they run on CPU and write their results
(to the git-ignored ``experiments/results/<bench>/latest/``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args], cwd=ROOT, check=True, timeout=900)


@pytest.mark.slow
def test_bench_throughput_quick():
    # one plain and one SP coder (the others run the same code; each adds two compilations)
    _run("bench_throughput.py", "--quick", "--dims", "5", "--coders", "pfr", "sp_pfr", "--device", "cpu", "--tag=-smoke")
    rows = json.loads((ROOT / "experiments/results/bench_throughput/latest/cpu-quick-smoke.json").read_text())["rows"]
    coders = rows[0]["coders"]
    assert set(coders) == {"pfr", "sp_pfr"}
    assert all(c["single_cands_per_s"] > 0 and c["batch_cands_per_s"] > 0 for c in coders.values())
    assert coders["sp_pfr"]["single_cost_over_plain"] > 0


@pytest.mark.slow
def test_bench_mnist_tiny():
    _run("bench_mnist.py", "--num", "8", "--batch", "8", "--device", "cpu", "--tag=-smoke")
    result = json.loads((ROOT / "experiments/results/bench_mnist/latest/cpu-smoke-n8.json").read_text())["result"]
    assert result["bit_exact"] and result["images"] == 8
