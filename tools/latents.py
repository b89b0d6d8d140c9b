"""Records the latents an archive decodes to on this backend, and compares two recordings.

A decoder regenerates each item's latent ``z`` from the key and the code; the bits of ``z`` can
differ between backends (XLA:CPU and XLA:GPU differ by 1-3 ulps on about 7% of the MNIST VAE's
coordinates).  Record them on each machine and compare: where the ulps go, and which coordinates a
lossless codec's ``latent_step`` grid would see in another cell (what format 4's snap marks are for).

    python tools/latents.py record ARCHIVE OUT.npy [--model mnist-vae]    # on each backend
    python tools/latents.py compare A.npy B.npy [--step 0.0009765625]      # anywhere

``record`` opens the archive as ``jaxrec decompress`` does (the model it names, or ``--model``: a
packaged model's name or a model file); ``compare`` prints how many coordinates differ, by how many
ulps, the largest absolute difference, and the coordinates whose cell ``rint(z / step)`` differs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def record(archive: Path, out: Path, model: str | None) -> None:
    import jax

    from jaxrec.cli import (  # the command line's model and plan lookup
        CommandError,
        _open_archive,
    )

    try:
        reader, _ = _open_archive(str(archive), model)
    except CommandError as err:
        raise SystemExit(str(err)) from None
    z = reader.latents()
    np.save(out, z)
    print(f"{out}: {z.shape[0]} latents of {z.shape[1]} {z.dtype} from {archive} on {jax.devices()[0].platform}")


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|a - b|`` in units in the last place of float32 (as ordered integers)."""
    def ordered(x: np.ndarray) -> np.ndarray:
        i = x.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)

    return np.abs(ordered(a) - ordered(b))


def compare(a_path: Path, b_path: Path, step: float) -> None:
    a, b = np.load(a_path), np.load(b_path)
    if a.shape != b.shape:
        raise SystemExit(f"{a_path} is {a.shape}, {b_path} is {b.shape}: not recordings of one archive")
    u = ulps(a, b)
    counts = np.bincount(u.ravel())
    print(f"{u.size} coordinates, {int((u > 0).sum())} differ ({100 * (u > 0).mean():.2f}%); by ulps: "
          + ", ".join(f"{k}: {int(c)}" for k, c in enumerate(counts) if k and c))
    print(f"largest absolute difference {np.abs(a.astype(np.float64) - b).max():.3g}")
    cells = np.rint(a.astype(np.float64) / step) != np.rint(b.astype(np.float64) / step)
    for item, coord in zip(*np.nonzero(cells)):
        print(f"item {item} coordinate {coord}: z / step = {a[item, coord] / step} against {b[item, coord] / step}")
    print(f"{int(cells.sum())} coordinate(s) in another cell of a grid of step {step}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    rec = verbs.add_parser("record", help="decode an archive's latents on this backend and save them (.npy)")
    rec.add_argument("archive", type=Path)
    rec.add_argument("out", type=Path)
    rec.add_argument("--model", default=None, help="the model (default: the one the archive names)")
    cmp = verbs.add_parser("compare", help="compare two recordings of one archive")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    cmp.add_argument("--step", type=float, default=2.0**-10, help="the latent grid (default 2^-10, the VAEs')")
    args = parser.parse_args()
    if args.verb == "record":
        record(args.archive, args.out, args.model)
    else:
        compare(args.a, args.b, args.step)


if __name__ == "__main__":
    main()
