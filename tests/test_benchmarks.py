"""Smoke tests of the benchmark scripts at tiny sizes: they run on CPU and write their results
(to the git-ignored ``experiments/results/<bench>/latest/``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from idx_files import write_split

from jaxrec import data

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args], cwd=ROOT, check=True, timeout=900)


@pytest.mark.slow
def test_bench_throughput_quick():
    # one plain coder and SP-PFR on both grids (the others run the same code; each adds two compilations)
    coders = ("pfr", "sp_pfr", "sp_pfr_rule")
    _run("bench_throughput.py", "--quick", "--dims", "5", "--coders", *coders, "--device", "cpu", "--tag=-smoke")
    latest = ROOT / "experiments/results/bench_throughput/latest"
    rows = json.loads((latest / "cpu-quick-smoke.json").read_text())["rows"]
    measured = rows[0]["coders"]
    assert set(measured) == set(coders)
    assert all(c["single_cands_per_s"] > 0 and c["batch_cands_per_s"] > 0 for c in measured.values())
    assert all(measured[sp][f"{kind}_{metric}_over_plain"] > 0
               for sp in coders[1:] for kind in ("single", "batch") for metric in ("cost", "time"))
    # the rule grid: log2 J = round(KL) of the single and the batch problems (about 8.8 and 2.2 bits at D = 5)
    assert rows[0]["rule_log2_bins"] == [9, 2]
    assert "| 5 | log2 J = KL (9 / 2) |" in (latest / "cpu-quick-smoke.md").read_text()


@pytest.mark.slow
def test_bench_mnist_tiny(tmp_path):
    """A tiny run that keeps its archive, then the decode-only mode on it (the cross-backend check's
    second half), which must find it bit-exact; an archive of the wrong images, or a corrupt one, is
    reported (in the JSON, and by the exit status), not passed."""
    archive = tmp_path / "eight.jxr"
    _run("bench_mnist.py", "--num", "8", "--batch", "8", "--device", "cpu", "--tag=-smoke", "--keep", str(archive))
    latest = ROOT / "experiments/results/bench_mnist/latest"
    result = json.loads((latest / "cpu-smoke-n8.json").read_text())["result"]
    assert result["bit_exact"] and result["images"] == 8 and archive.stat().st_size == result["archive_bytes"]
    _run("bench_mnist.py", "--decode", str(archive), "--device", "cpu", "--tag=-smoke")
    decoded = json.loads((latest / "cpu-decoded-smoke.json").read_text())["result"]
    assert decoded["bit_exact"] and decoded["images"] == 8 and decoded["mismatched_images"] == 0
    # test images 8..15 compared with images 0..7: the mode must fail and count every image
    _run("bench_mnist.py", "--num", "8", "--batch", "8", "--device", "cpu", "--tag=-smoke", "--keep", str(archive),
         "--data-dir", str(_shifted_mnist(tmp_path)))
    with pytest.raises(subprocess.CalledProcessError):
        _run("bench_mnist.py", "--decode", str(archive), "--device", "cpu", "--tag=-smoke")
    assert json.loads((latest / "cpu-decoded-smoke.json").read_text())["result"]["mismatched_images"] == 8
    # a corrupt archive: the FormatError is the recorded result
    archive.write_bytes(archive.read_bytes()[:-1])
    with pytest.raises(subprocess.CalledProcessError):
        _run("bench_mnist.py", "--decode", str(archive), "--device", "cpu", "--tag=-smoke")
    failed = json.loads((latest / "cpu-decoded-smoke.json").read_text())["result"]
    assert not failed["bit_exact"] and ("truncated" in failed["error"] or "checksum" in failed["error"])
    assert "**FormatError**" in (latest / "cpu-decoded-smoke.md").read_text()


@pytest.mark.slow
def test_bench_sp_quick():
    """Every part of bench_sp at tiny sizes, into the ``-quick`` files; a later part keeps the others."""
    _run("bench_sp.py", "--quick", "--device", "cpu")
    latest = ROOT / "experiments/results/bench_sp/latest"
    results = json.loads((latest / "results-quick.json").read_text())
    assert results["backend"] == "cpu" and results["config"]["quick"]
    assert results["exact"]["sp_pfr_chunk64"]["mean_steps"] < results["exact"]["pfr"]["mean_steps"]
    assert set(results["equal_rate"]) == {"isotropic", "concentrated"} and "claim" in results
    assert (latest / "results-quick.md").exists() and (latest / "equal_rate-quick.png").exists()
    _run("bench_sp.py", "--quick", "--part", "policies")
    again = json.loads((latest / "results-quick.json").read_text())
    assert again["policies"] and again["exact"] == results["exact"]


@pytest.mark.slow  # two interpreter starts (jax and flax imports): 7 s
def test_mnist_lossless_checks_every_dataset_before_the_first_run(tmp_path):
    """``--dataset both`` looks for both datasets' files before it trains or codes anything, and refuses
    ``--data-dir`` (one folder cannot hold both datasets: their files have the same names)."""
    script = [sys.executable, str(ROOT / "experiments" / "mnist_lossless.py"), "--dataset", "both"]
    out = subprocess.run([*script, "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2 and "--data-dir names one dataset's folder" in out.stderr
    (tmp_path / "mnist").mkdir()  # an MNIST folder whose files are all there, and no Fashion-MNIST folder
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (tmp_path / "mnist" / name).write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(784))
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / "mnist" / name).write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 1, 0]))
    env = {**os.environ, "JAXREC_DATA": str(tmp_path)}
    out = subprocess.run(script, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert out.returncode == 2, out.stderr
    assert "fashion-mnist train: train-images-idx3-ubyte not found" in out.stderr
    assert str(tmp_path / "fashion-mnist" / "train-images-idx3-ubyte") in out.stderr


def _shifted_mnist(tmp_path: Path) -> Path:
    """A data folder whose MNIST test split starts at the real one's image 8."""
    images, labels = data.load_mnist("test")
    folder = tmp_path / "shifted"
    write_split(folder, "t10k", images[8:16], labels[8:16], compress=False)
    return folder


@pytest.mark.slow  # the packaged model's SP-PFR decoder: ~10 s cold
def test_latents_tool_records_and_compares(tmp_path):
    """``tools/latents.py``: record the latents of the format-3 digits archive, then compare the
    recording with a copy that moves one coordinate into the next cell of the 2^-10 grid and one by an ulp."""
    tool = [sys.executable, str(ROOT / "tools" / "latents.py")]
    recorded = tmp_path / "a.npy"
    subprocess.run([*tool, "record", str(ROOT / "tests/data/digits_format3.jxr"), str(recorded)], cwd=ROOT, check=True, timeout=600)
    z = np.load(recorded)
    assert z.shape == (8, 20) and z.dtype == np.float32
    moved = z.copy()
    moved[3, 7] += np.float32(2**-10)  # the next cell
    moved[5, 1] = np.nextafter(z[5, 1], np.float32(np.inf))  # an ulp, the same cell (not a tie: 2^-20 away)
    assert abs(z[5, 1] * 1024 - np.floor(z[5, 1] * 1024) - 0.5) > 2**-10
    np.save(tmp_path / "b.npy", moved)
    out = subprocess.run([*tool, "compare", str(recorded), str(tmp_path / "b.npy")], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert "160 coordinates, 2 differ" in out and "1: 1" in out and "item 3 coordinate 7" in out
    assert "1 coordinate(s) in another cell" in out


@pytest.mark.slow  # ten small programs: ~15 s
def test_sp_chunk_parts_tool_prints_every_level_for_both_grids():
    """``tools/sp_chunk_parts.py`` at tiny sizes (two vmapped lanes): one row per level, a positive time per grid."""
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "sp_chunk_parts.py"), "--dim", "5", "--chunk", "64",
                          "--loops", "2", "--split", "2", "--lanes", "2"], cwd=ROOT, check=True, capture_output=True, text=True,
                         timeout=600).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "level" not in line]
    assert [row.split(" | ")[0][2:] for row in rows] == ["PFR chunk", "+ bin draws", "+ bin weights", "+ visit counts",
                                                          "+ in-bin points (SP-PFR)"]
    assert "| level | J_d = 2 | 2 axes of J_d = 2 |" in out and "2 vmapped lanes x 64" in out
    assert all(float(cell.split()[0]) > 0 for row in rows for cell in row.strip("| ").split(" | ")[1:])
