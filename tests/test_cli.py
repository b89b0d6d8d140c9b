"""The ``jaxrec`` command line on real files: compress PNG / IDX / .npy inputs with the packaged
MNIST VAE, decompress to PNGs or .npy bit-exactly, ``info``; every error is one line on stderr with
exit status 1 (2 for bad usage), no traceback, and nothing partially written.

The digits are the first eight MNIST test images (``tests/data/mnist_test_digits.npy``).
"""

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from idx_files import write_idx
from PIL import Image

import jaxrec
from jaxrec import cli
from jaxrec import codec as jcodec

DIGITS = np.load(Path(__file__).parent / "data" / "mnist_test_digits.npy")


def run(argv, capsys):
    status = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return status, out.out, out.err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Three PNGs, a gzip IDX file of three digits, a raw IDX file of one and a .npy of one."""
    root = tmp_path_factory.mktemp("inputs")
    pngs = []
    for i in range(3):
        pngs.append(root / f"digit{i}.png")
        Image.fromarray(DIGITS[i]).save(pngs[-1])
    write_idx(root / "three-idx3-ubyte.gz", DIGITS[3:6], compress=True)
    write_idx(root / "one-idx3-ubyte", DIGITS[6:7], compress=False)
    np.save(root / "one.npy", DIGITS[7])
    return root, [*pngs, root / "three-idx3-ubyte.gz", root / "one-idx3-ubyte", root / "one.npy"]


@pytest.fixture(scope="module")
def archive(inputs):
    root, files = inputs
    out = root / "digits.jxr"
    assert cli.main(["compress", "--model", "mnist-vae", *map(str, files), "-o", str(out), "-q"]) == 0
    return out


def test_round_trip_through_pngs_and_npy(archive, tmp_path, capsys):
    status, out, _ = run(["decompress", archive, "-o", tmp_path / "digits.npy", "-q"], capsys)
    assert status == 0 and "8 items of shape (28, 28) uint8" in out
    decoded = np.load(tmp_path / "digits.npy")
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, DIGITS)
    status, _, _ = run(["decompress", archive, "-o", tmp_path / "pngs", "-q"], capsys)
    pngs = sorted((tmp_path / "pngs").iterdir())
    assert status == 0 and [p.name for p in pngs] == [f"{i:05d}.png" for i in range(8)]
    assert np.array_equal(np.stack([np.asarray(Image.open(p)) for p in pngs]), DIGITS)
    # the library reads the same archive with the bundle's plan
    bundle = jaxrec.models.load("mnist-vae")
    _, plan = bundle.setup()
    np.testing.assert_array_equal(jaxrec.decompress_batch(bundle.codec, archive.read_bytes(), plan=plan, items=[5]), DIGITS[5:6])


def test_info_gives_the_header_and_ideal_vs_actual(archive, capsys):
    status, out, _ = run(["info", archive], capsys)
    assert status == 0
    for expected in ("mnist-vae crc32=", "sp_pfr(", "8 of shape (28, 28) uint8, lossless", "in 4 blocks",
                     "bits/item", "on disk"):
        assert expected in out, (expected, out)
    status, out, _ = run(["info", "--json", archive], capsys)
    info = json.loads(out)[str(archive)]
    assert status == 0 and info["num_items"] == 8 and info["coder"] == "sp_pfr"
    assert info["ideal_bits"] == pytest.approx(info["index_ideal_bits"] + info["data_ideal_bits"])
    assert info["ideal_bits"] <= 8 * info["bytes"] and info["bytes"] == archive.stat().st_size


def test_input_errors_are_one_line_and_write_nothing(inputs, tmp_path, capsys):
    _root, files = inputs
    small = tmp_path / "small.png"
    Image.fromarray(DIGITS[0][:27]).save(small)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.stack([DIGITS[0]] * 3, axis=-1)).save(rgb)
    floats = tmp_path / "floats.npy"
    np.save(floats, DIGITS[:2].astype(np.float32))
    wide = tmp_path / "wide.npy"
    np.save(wide, np.zeros((2, 28, 29), np.uint8))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    out = tmp_path / "out.jxr"
    cases = [
        (["--model", "no-such-model", files[0]], "unknown model 'no-such-model'"),
        (["--model", "mnist-vae", small], "shape (27, 28); the model takes items of shape (28, 28)"),
        (["--model", "mnist-vae", rgb], "RGB PNG"),
        (["--model", "mnist-vae", floats], "dtype float32; the model takes uint8 items"),
        (["--model", "mnist-vae", wide], "shape (28, 29)"),
        (["--model", "mnist-vae", text], "not a PNG, IDX or .npy file"),
        (["--model", "mnist-vae", tmp_path / "missing.png"], "missing.png"),
        (["--model", "mnist-vae", files[0], "--coder", "nope"], "coder must be one of"),
        (["--model", "mnist-vae", files[0], "--blocks", "21"], "blocks must be an int in [1, 20]"),
    ]
    for args, message in cases:
        status, _, err = run(["compress", *args, "-o", out, "-q"], capsys)
        assert status == 1 and message in err and err.count("\n") == 1, (args, err)
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.jxr")]
    with pytest.raises(SystemExit) as usage:
        cli.main(["compress", str(files[0]), "-o", str(out)])  # no --model
    assert usage.value.code == 2


def test_archive_errors_are_one_line_and_write_nothing(archive, tmp_path, capsys):
    data = archive.read_bytes()
    corrupt = tmp_path / "corrupt.jxr"
    corrupt.write_bytes(data[:100] + bytes([data[100] ^ 4]) + data[101:])
    target = tmp_path / "out.npy"
    status, _, err = run(["decompress", corrupt, "-o", target], capsys)
    assert status == 1 and "checksum mismatch" in err and err.count("\n") == 1 and not target.exists()
    cut = tmp_path / "cut.jxr"
    cut.write_bytes(data[: len(data) // 2])
    status, _, err = run(["decompress", cut, "-o", target], capsys)
    assert status == 1 and err.startswith(f"jaxrec decompress: {cut}: not a valid jaxrec archive: truncated")
    assert err.count("\n") == 1 and not target.exists()
    status, _, err = run(["decompress", archive, "-o", target, "--model", "fashion-mnist-vae"], capsys)
    assert status == 1 and "another block plan" in err and not target.exists()
    status, _, err = run(["decompress", tmp_path / "none.jxr", "-o", target], capsys)
    assert status == 1 and "none.jxr" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    status, _, err = run(["decompress", archive, "-o", tmp_path / "full"], capsys)
    assert status == 1 and "not an empty folder" in err
    status, _, err = run(["info", corrupt, archive], capsys)
    assert status == 1 and "checksum mismatch" in err


def test_info_on_a_library_archive_without_a_model(tmp_path, capsys):
    from test_codec import GaussianChannel

    data = jaxrec.compress(GaussianChannel(3), np.array([[0.4, -1.1, 0.2], [0.3, 0.5, 0.25]], np.float32), key=7,
                           coder=jaxrec.pfr(chunk_size=64), item=3)
    path = tmp_path / "item.jxr"
    path.write_bytes(data)
    status, out, _ = run(["info", path], capsys)
    assert status == 0 and "(not recorded)" in out and "ideal (messages only)" in out
    assert "pfr(chunk_size=64, max_steps=67108864)" in out and "first item 3" in out
    assert json.loads(run(["info", "--json", path], capsys)[1])[str(path)]["index_ideal_bits"] == pytest.approx(
        jcodec.describe(data)["index_ideal_bits"])


def test_console_script(archive):
    """The installed ``jaxrec`` entry point (pyproject: jaxrec.cli:console_main), or ``python -m jaxrec.cli``."""
    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"jaxrec": "jaxrec.cli:console_main"}
    command = [shutil.which("jaxrec")] if shutil.which("jaxrec") else [sys.executable, "-m", "jaxrec.cli"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    bad = archive.parent / "bad.jxr"
    bad.write_bytes(archive.read_bytes()[:-1])
    fail = subprocess.run([*command, "info", str(bad)], check=False, capture_output=True, text=True, env=env, timeout=300)
    assert fail.returncode == 1 and "jaxrec info:" in fail.stderr and fail.stdout == ""
    assert "Traceback" not in fail.stderr and fail.stderr.count("\n") == 1


@pytest.mark.slow  # an interpreter start, the model and one decode: ~10 s
def test_console_script_exits_quietly_when_its_reader_leaves(archive):
    """``jaxrec info x.jxr | head -1``: once the pipe's reader has gone, the script stops with the
    status of a broken pipe (141) and no traceback."""
    command = [sys.executable, "-c", "import sys; from jaxrec import cli; sys.exit(cli.console_main(sys.argv[1:]))"]
    child = subprocess.Popen([*command, "info", str(archive)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, JAX_PLATFORMS="cpu"))
    child.stdout.close()  # the reader leaves before the first line
    _, err = child.communicate(timeout=300)
    assert child.returncode == 141 and b"Traceback" not in err, err.decode()


def test_compile_cache_folder_follows_the_environment():
    assert cli.compile_cache_dir({"HOME": "/h"}) == Path("/h/.cache/jaxrec/xla")
    assert cli.compile_cache_dir({"HOME": "/h", "XDG_CACHE_HOME": "/x"}) == Path("/x/jaxrec/xla")
    assert cli.compile_cache_dir({"HOME": "/h", "XDG_CACHE_HOME": "/x", "JAXREC_COMPILE_CACHE": "/c"}) == Path("/c")
    for off in ("off", "OFF", "0", "", " "):
        assert cli.compile_cache_dir({"HOME": "/h", "JAXREC_COMPILE_CACHE": off}) is None
    # a folder the user gave JAX itself is JAX's business
    assert cli.compile_cache_dir({"HOME": "/h", "JAXREC_COMPILE_CACHE": "/c", "JAX_COMPILATION_CACHE_DIR": "/j"}) is None


def test_console_main_sets_up_the_cache_and_main_does_not(archive, tmp_path, monkeypatch, capsys):
    folders = []
    monkeypatch.setattr(cli, "_use_compile_cache", folders.append)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("JAXREC_COMPILE_CACHE", str(tmp_path / "cache"))
    missing = str(tmp_path / "missing.jxr")
    assert cli.main(["info", missing]) == 1 and folders == []
    assert cli.console_main(["info", missing]) == 1 and folders == [tmp_path / "cache"]
    assert capsys.readouterr().err.count("jaxrec info:") == 2


def test_the_cache_keeps_compiled_programs(tmp_path):
    """In a fresh process (JAX reads the cache settings at its first compilation): a compiled
    program lands in the folder; an uncreatable folder means no cache and no error."""
    script = (
        "import sys; from pathlib import Path; from jaxrec import cli; import jax\n"
        "cli._use_compile_cache(Path(sys.argv[1])); print(float(jax.jit(lambda x: x + 1)(1.0)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    blocker = tmp_path / "file"
    blocker.write_text("")
    for folder, cached in ((tmp_path / "cache", True), (blocker / "cache", False)):
        done = subprocess.run([sys.executable, "-c", script, str(folder)], check=False, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0 and done.stdout == "2.0\n", done.stderr
        assert (folder.is_dir() and any(folder.iterdir())) == cached
