"""jaxrec in one minute: real MNIST digits into one archive with the command line, and back.

Takes the first ``--num`` MNIST test digits (uint8, 28x28), writes them to a ``.npy`` file and runs
the command line a user would type, with the packaged lossless VAE (``mnist-vae``) and its default
coder, SP-PFR over 4 latent blocks::

    jaxrec compress --model mnist-vae digits.npy -o digits.jxr
    jaxrec info digits.jxr
    jaxrec decompress digits.jxr -o decoded.npy

Then it prints the archive's bytes against the ideal bits (the REC messages under their entropy
models plus ``-log2 p(x | z)`` of the pixels), both in bits per pixel, and checks that the decoded
digits equal the originals bit for bit. Results go to ``experiments/results/demo/latest/demo.json``
(with the archive itself, ``digits.jxr``; git-ignored: timings change from run to run); ``--update``
also rewrites the committed ``experiments/results/demo/demo.json`` (``experiments/_results.py``).

    python experiments/demo.py               # 500 digits, well under a minute on 2 CPU cores
    python experiments/demo.py --num 10000   # the whole test set
    python experiments/demo.py --update      # also rewrite the committed demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import add_update_flag, output_paths, save_json

from jaxrec import cli, data

NAME = "demo"


def jaxrec_command(*args: str) -> None:
    """Runs ``jaxrec ARGS`` (the console script's entry point) and stops on an error."""
    print(f"$ jaxrec {shlex.join(args)}", flush=True)
    status = cli.main(list(args))
    if status:
        raise SystemExit(f"jaxrec {args[0]} failed with status {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=500, help="MNIST test digits to compress (default 500)")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder of the MNIST IDX files")
    add_update_flag(parser)
    args = parser.parse_args()
    images, _ = data.load_mnist("test", directory=args.data_dir)
    digits = np.ascontiguousarray(images[: args.num])
    saved = output_paths(NAME, "digits.jxr", update=False)[0]  # latest/ only: the archive is never committed
    home = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the commands as a user types them, with short relative names
        try:
            archive = Path("digits.jxr")
            np.save("digits.npy", digits)
            start = time.perf_counter()
            jaxrec_command("compress", "--model", "mnist-vae", "--quiet", "digits.npy", "-o", str(archive))
            encode_s = time.perf_counter() - start
            start = time.perf_counter()
            info = _info(archive)
            info_s = time.perf_counter() - start
            start = time.perf_counter()
            jaxrec_command("decompress", "--quiet", str(archive), "-o", "decoded.npy")
            decode_s = time.perf_counter() - start
            decoded = np.load("decoded.npy")
            shutil.copyfile(archive, saved)
        finally:
            os.chdir(home)
    pixels = digits.size
    exact = decoded.dtype == digits.dtype and np.array_equal(decoded, digits)
    summary = {
        "digits": len(digits),
        "archive_bytes": info["bytes"],
        "ideal_bits": info["ideal_bits"],
        "bits_per_pixel_on_disk": 8 * info["bytes"] / pixels,
        "bits_per_pixel_ideal": info["ideal_bits"] / pixels,
        "overhead_percent": 100 * (8 * info["bytes"] / info["ideal_bits"] - 1),
        "coder": info["coder"],
        "blocks": info["num_blocks"],
        "bit_exact": bool(exact),
        "compress_seconds": encode_s,
        "decompress_seconds": decode_s,
        "info_seconds": info_s,
    }
    print(
        f"\n{summary['digits']} MNIST test digits -> {saved.name}: {summary['archive_bytes']} bytes "
        f"= {summary['bits_per_pixel_on_disk']:.4f} bits/pixel on disk; ideal {summary['ideal_bits']:.0f} bits "
        f"= {summary['bits_per_pixel_ideal']:.4f} bits/pixel ({summary['overhead_percent']:+.3f}%)\n"
        f"coder {summary['coder']} over {summary['blocks']} blocks; compress {encode_s:.1f} s, "
        f"decompress {decode_s:.1f} s, info {info_s:.1f} s (compilation included)\n"
        f"decoded digits equal the originals bit for bit: {exact}"
    )
    print(f"wrote {save_json(NAME, 'demo.json', summary, update=args.update, indent=2)}")
    if not exact:
        raise SystemExit("the decoded digits differ from the originals")


def _info(archive: Path) -> dict:
    """``jaxrec info --json ARCHIVE`` (it decodes the archive to sum the ideal bits), parsed."""
    import contextlib
    import io

    print(f"$ jaxrec info --json {archive}  (summarized below)", flush=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main(["info", "--json", str(archive)])
    if status:
        raise SystemExit(f"jaxrec info failed with status {status}")
    return json.loads(out.getvalue())[str(archive)]


if __name__ == "__main__":
    main()
