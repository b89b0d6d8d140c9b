"""Packages the trained lossless VAEs as jaxrec model files (``jaxrec.models.load("mnist-vae")``).

Reads the checkpoints trained by ``experiments/mnist_lossless.py``
(``results/mnist_lossless/vae_{dataset}_L20_H200_E20.msgpack``), computes the training-set
statistics a bundle rebuilds its block plans and partitions from (per-dimension KL and mutual
information over all 60,000 training images, :func:`jaxrec.models.vae.latent_statistics`) and
writes ``jaxrec/models/weights/{dataset}-vae.msgpack`` (package data).

    python experiments/package_models.py                 # both datasets, a few minutes on 2 CPU cores
    python experiments/package_models.py --dataset mnist
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jaxrec import data
from jaxrec.models import _registry, vae

CHECKPOINTS = Path(__file__).resolve().parent / "results" / "mnist_lossless"
BUNDLE = {"coder": "sp_pfr", "blocks": 4, "plan_seed": 0, "sp_bits_offset": 0}


def package(dataset: str, out_dir: Path, data_dir: Path | None) -> Path:
    model, metadata = vae.load_checkpoint(CHECKPOINTS / f"vae_{dataset}_L20_H200_E20.msgpack")
    images, _ = data.load_mnist("train", dataset=dataset, directory=data_dir)
    stats = vae.latent_statistics(model, images)
    meta = {"dataset": dataset, "training": metadata, "stats": stats, "bundle": BUNDLE}
    path = out_dir / f"{dataset}-vae.msgpack"
    vae.save_checkpoint(path, model, meta)
    kl, mi = np.asarray(stats["kl_per_dim"]), np.asarray(stats["mi_per_dim"])
    tqdm.write(f"{path}: KL {kl.sum():.2f} bits, MI {mi.sum():.2f} bits over {stats['num_images']} images")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist", "both"], default="both")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder with the IDX files")
    parser.add_argument("--out-dir", type=Path, default=_registry.WEIGHTS)
    args = parser.parse_args()
    for dataset in tqdm(["mnist", "fashion-mnist"] if args.dataset == "both" else [args.dataset], desc="models"):
        package(dataset, args.out_dir, args.data_dir)


if __name__ == "__main__":
    main()
