"""``jaxrec info FILE``: prints the header and the rate; bad files give a one-line error and status 1."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest
from test_container import CODEC, CODER, X

import jaxrec
from jaxrec import cli
from jaxrec import codec as jcodec
from jaxrec.codec import container
from jaxrec.entropy import PlanAlphabetModel, UniformModel


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    good = root / "item.jrec"
    good.write_bytes(jaxrec.compress(CODEC, X, key=7, coder=CODER, item=3))
    bad = root / "bad.jrec"
    bad.write_bytes(good.read_bytes()[:-1] + bytes([good.read_bytes()[-1] ^ 0xFF]))
    return good, bad


def test_info_prints_the_header(files, capsys):
    good, _ = files
    assert cli.main(["info", str(good)]) == 0
    out = capsys.readouterr().out
    data = good.read_bytes()
    info = jcodec.describe(data)
    for expected in (
        f"{good}: {len(data)} bytes = header {info['header_bytes']} + payload 4",
        "version 1, PRNG threefry2x32",
        "pfr(chunk_size=64, max_steps=67108864)",
        "words [0, 7], item 3",
        f"3 x float32 in 1 blocks, plan fingerprint {info['plan_fingerprint']}",
        "shape (2, 3), lossy",
        "ZipfModel(alpha=1.2000000476837158)",
        f"indices {info['index_ideal_bits']:.2f} bits ideal",
    ):
        assert expected in out, (expected, out)


def test_info_json_and_errors(files, capsys):
    good, bad = files
    assert cli.main(["info", "--json", str(good), str(bad), str(good.parent / "missing.jrec")]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert list(report) == [str(good)]
    assert report[str(good)] == json.loads(json.dumps(jcodec.describe(good.read_bytes())))
    assert f"jaxrec info: {bad}: checksum mismatch" in captured.err
    assert "missing.jrec" in captured.err and "Traceback" not in captured.err
    with pytest.raises(SystemExit) as usage:
        cli.main(["info"])
    assert usage.value.code == 2


def test_console_script(files):
    """The installed ``jaxrec`` entry point (pyproject: jaxrec.cli:main), or ``python -m jaxrec.cli``."""
    good, bad = files
    command = [shutil.which("jaxrec")] if shutil.which("jaxrec") else [sys.executable, "-m", "jaxrec.cli"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    ok = subprocess.run([*command, "info", str(good)], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "pfr(chunk_size=64" in ok.stdout, ok.stderr
    fail = subprocess.run([*command, "info", str(bad)], capture_output=True, text=True, env=env, timeout=120)
    assert fail.returncode == 1 and "checksum mismatch" in fail.stderr and fail.stdout == ""


def test_info_on_a_space_partitioning_file(files, tmp_path, capsys):
    """Bin alphabets come from the block plan, so ``info`` cannot price the indices alone."""
    good, _ = files
    header, sections = container.read(good.read_bytes())
    sp = tmp_path / "sp.jrec"
    sp.write_bytes(container.write(dataclasses.replace(
        header, coder_name="sp_orc", coder_args=(32, 32), models=(PlanAlphabetModel(), UniformModel(32))), sections))
    assert cli.main(["info", str(sp)]) == 0
    out = capsys.readouterr().out
    assert "sp_orc(num_samples=32, chunk_size=32)" in out and "ideal bits need the block plan" in out
