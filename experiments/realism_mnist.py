"""MNIST with perfect realism: a lossy, latent-only VAE codec whose decoder samples ``p(x|z)`` with shared
randomness (issue 15, item 2).

For each latent size ``L`` of the grid the script trains a small VAE (:class:`jaxrec.models.vae.VAE`,
beta-binomial likelihood; the latent size sets the rate), wraps it as
:class:`jaxrec.models.realism.LossyVAE` and compresses test images into one archive with exact PFR
(blocks of at most ``--kappa`` bits of mean training KL, :func:`jaxrec.plan_blocks`): only ``z ~ q(z|x)``
is sent, no pixel stream.  The same archive is decoded twice:

* ``sample``: ``x_hat ~ p(x|z)`` drawn with a key derived from ``z`` (shared randomness) -- if the
  VAE were exact, ``x_hat`` would follow the data distribution (perfect realism) at twice the MMSE
  (Blau & Michaeli, ICML 2019; Theis, Salimans, Hoffman & Mentzer, 2022);
* ``mean``: ``E[x|z]``, the MSE-oriented decoder (blurry).

Measured per latent size: the rate in bits per image from the archive's bytes (and the ideal bits),
MSE and PSNR against the originals (pixels in [0, 255]), and realism: an unbiased ``MMD^2`` kernel
two-sample test (Gaussian kernel on pixels / 255, bandwidth by the median heuristic on held-out test
images, permutation p-value; Gretton et al., JMLR 2012) between the decoded images and *other* test
images.  Reference rows: held-out test images against the same reference (the floor of the
statistic at this sample size) and unconditional VAE samples ``x ~ p(x|z), z ~ N(0, I)`` (the
realism the decoder can reach at all).

Writes ``results.json``, ``table.md``, ``rate_distortion.png`` and ``reconstructions.png`` (originals,
sampled and mean reconstructions for every rate) to ``experiments/results/realism_mnist/latest/``;
``--update`` also rewrites the committed copies in ``experiments/results/realism_mnist/``.  VAE
checkpoints are cached (git-ignored) in ``experiments/results/realism_mnist/latest/checkpoints/``;
``--retrain`` rebuilds them.

    python experiments/realism_mnist.py           # L = 2, 4, 8; 4 epochs; 300 test images: < 15 min on 2 cores
    python experiments/realism_mnist.py --full    # L = 2, 4, 8, 16; 20 epochs; 1000 test images
    python experiments/realism_mnist.py --update  # also rewrite the committed results
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from _results import (
    LATEST,
    add_update_flag,
    results_dir,
    save_figure,
    save_json,
    save_text,
)
from flax import nnx
from tqdm import tqdm

import jaxrec
from jaxrec.data import load_mnist
from jaxrec.models import vae
from jaxrec.models.realism import (
    LossyVAE,
    median_bandwidth,
    sample_likelihood,
    two_sample_test,
)

NAME = "realism_mnist"
GRID_IMAGES = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the complete grid (L up to 16, 20 epochs, 1000 images)")
    parser.add_argument("--latents", type=int, nargs="+", help="latent sizes (default 2 4 8, --full 2 4 8 16)")
    parser.add_argument("--epochs", type=int, help="training epochs per VAE (default 4, --full 20)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[200])
    parser.add_argument("--test-images", type=int, help="images compressed per rate (default 300, --full 1000)")
    parser.add_argument("--kappa", type=float, default=10.0, help="largest mean training KL per PFR block, bits")
    parser.add_argument("--max-steps", type=int, default=20, help="log2 of PFR's step cap")
    parser.add_argument("--permutations", type=int, default=200, help="permutations of the MMD test")
    parser.add_argument("--retrain", action="store_true", help="retrain even if a checkpoint exists")
    parser.add_argument("--seed", type=int, default=0)
    add_update_flag(parser)
    args = parser.parse_args()
    args.latents = args.latents or ([2, 4, 8, 16] if args.full else [2, 4, 8])
    args.epochs = args.epochs or (20 if args.full else 4)
    args.test_images = args.test_images or (1000 if args.full else 300)
    return args


def get_model(latent_dim: int, train_images: np.ndarray, args: argparse.Namespace) -> tuple[vae.VAE, dict[str, Any]]:
    """Loads the cached checkpoint of this configuration or trains and caches one."""
    config = vae.VAEConfig(image_shape=(28, 28), latent_dim=latent_dim, hidden=tuple(args.hidden))
    folder = results_dir(NAME) / LATEST / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"vae_L{latent_dim}_H{'-'.join(map(str, args.hidden))}_E{args.epochs}_S{args.seed}.msgpack"
    if path.is_file() and not args.retrain:
        model, meta = vae.load_checkpoint(path)
        if model.config == config:
            return model, meta
    model = vae.VAE(config, rngs=nnx.Rngs(args.seed))
    start = time.perf_counter()
    history = vae.train(model, train_images, epochs=args.epochs, seed=args.seed,
                        log=lambda s: tqdm.write(f"[L={latent_dim}] {s}"))
    meta = {"epochs": args.epochs, "train_seconds": round(time.perf_counter() - start, 1),
            "train_neg_elbo_bpd": [round(h, 5) for h in history], "seed": args.seed}
    vae.save_checkpoint(path, model, meta)
    return model, meta


def block_plan(model: vae.VAE, train_images: np.ndarray, args: argparse.Namespace) -> jaxrec.BlockPlan:
    """Blocks of at most ``kappa`` bits of mean KL over 2000 training images (shared side information)."""
    targets = model.posterior(np.asarray(train_images[:2000].reshape(2000, -1), np.float32))
    kl_per_dim = np.asarray(jaxrec.kl(targets, model.prior(), per_dim=True)).mean(axis=0)
    return jaxrec.plan_blocks(kl_per_dim, budget_bits=args.kappa, key=args.seed)


def realism(images: np.ndarray, reference: np.ndarray, bandwidth: float, args: argparse.Namespace) -> dict[str, float]:
    """Unbiased MMD^2 (Gaussian kernel on pixels / 255) of ``images`` against ``reference`` and its p-value."""
    flat = lambda a: a.reshape(a.shape[0], -1).astype(np.float64) / 255.0
    result = two_sample_test(flat(images), flat(reference), bandwidth=bandwidth, num_permutations=args.permutations,
                             seed=args.seed)
    return {"mmd2": result.statistic, "mmd2_p": result.pvalue}


def distortion(images: np.ndarray, originals: np.ndarray) -> dict[str, float]:
    mse = float(np.mean((images.astype(np.float64) - originals.astype(np.float64)) ** 2))
    return {"mse": mse, "psnr_db": 10 * math.log10(255.0**2 / mse)}


def run_latent(latent_dim: int, data: dict[str, np.ndarray], bandwidth: float, args: argparse.Namespace) -> dict:
    model, meta = get_model(latent_dim, data["train"], args)
    plan = block_plan(model, data["train"], args)
    originals = data["test"]
    start = time.perf_counter()
    report = jaxrec.codec.compress_report(LossyVAE(model, reconstruction="sample", seed=args.seed), originals,
                                          key=args.seed, coder=jaxrec.pfr(max_steps=2**args.max_steps), plan=plan)
    encode_s = time.perf_counter() - start
    n = originals.shape[0]
    status = np.asarray(report.code.status)
    common = {
        "latent_dim": latent_dim,
        "rate_bits_per_image": 8 * report.total_bytes / n,
        "rate_ideal_bits_per_image": report.ideal_bits / n,
        "rate_bpd": 8 * report.total_bytes / (n * originals[0].size),
        "mean_kl_bits": float(report.block_kl.sum(axis=1).mean()),
        "blocks": plan.num_blocks,
        "exhausted_fraction": float(np.mean(status != 0)),
        "encode_s": round(encode_s, 1),
        "train": meta,
    }
    rows, decoded = [], {}
    for reconstruction in ("sample", "mean"):
        codec = LossyVAE(model, reconstruction=reconstruction, seed=args.seed)
        images = np.asarray(jaxrec.decompress_batch(codec, report.archive, plan=plan))
        decoded[reconstruction] = images
        rows.append({"scheme": f"VAE L={latent_dim}, {reconstruction}", "decoder": reconstruction, **common,
                     **distortion(images, originals), **realism(images, data["reference"], bandwidth, args)})
    prior_key = jax.random.key(args.seed + latent_dim)
    z = jax.random.normal(prior_key, (n, latent_dim))
    keys = jax.random.split(jax.random.fold_in(prior_key, 1), n)
    unconditional = np.asarray(jax.jit(jax.vmap(lambda k, zi: sample_likelihood(model, k, zi)))(keys, z))
    rows.append({"scheme": f"VAE L={latent_dim}, prior samples (no rate)", "decoder": "prior", "latent_dim": latent_dim,
                 **realism(unconditional, data["reference"], bandwidth, args)})
    return {"rows": rows, "decoded": decoded}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| scheme | rate (bits/image, bytes) | ideal | MSE | PSNR (dB) | MMD^2 (p) | notes |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        rate = f"{r['rate_bits_per_image']:.1f}" if "rate_bits_per_image" in r else "-"
        ideal = f"{r['rate_ideal_bits_per_image']:.1f}" if "rate_ideal_bits_per_image" in r else "-"
        mse = f"{r['mse']:.1f}" if "mse" in r else "-"
        psnr = f"{r['psnr_db']:.2f}" if "psnr_db" in r else "-"
        notes = []
        if "blocks" in r:
            notes.append(f"{r['blocks']} PFR blocks, mean KL {r['mean_kl_bits']:.1f} bits")
            if r["exhausted_fraction"]:
                notes.append(f"{100 * r['exhausted_fraction']:.2f}% blocks capped")
        lines.append(f"| {r['scheme']} | {rate} | {ideal} | {mse} | {psnr} | {r['mmd2']:.2e} ({r['mmd2_p']:.2g}) | "
                     f"{'; '.join(notes)} |")
    return "\n".join(lines) + "\n"


def plot_rate_distortion(rows: list[dict[str, Any]], floor: float) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for decoder, style in (("sample", dict(marker="o", color="C0")), ("mean", dict(marker="s", color="C3"))):  # noqa: C408
        mine = [r for r in rows if r["decoder"] == decoder]
        rate = [r["rate_bits_per_image"] for r in mine]
        axes[0].plot(rate, [r["mse"] for r in mine], label=f"decoder: {decoder}", **style)
        axes[1].plot(rate, [r["mmd2"] for r in mine], label=f"decoder: {decoder}", **style)
        for r in mine:
            axes[0].annotate(f"L={r['latent_dim']}", (r["rate_bits_per_image"], r["mse"]), fontsize=7,
                             textcoords="offset points", xytext=(4, 4))
    axes[1].axhline(floor, color="k", ls=":", lw=1, label="held-out test images (noise level)")
    axes[0].set(xlabel="rate (bits per image, from archive bytes)", ylabel="MSE per pixel (0-255 scale)",
                title="MNIST lossy VAE codec: distortion")
    axes[1].set(xlabel="rate (bits per image, from archive bytes)", ylabel="unbiased MMD^2 to other test images",
                title="realism (lower is more realistic)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_grid(originals: np.ndarray, decoded: dict[int, dict[str, np.ndarray]], rates: dict[int, float]) -> plt.Figure:
    rows = [("original", originals)]
    for latent_dim, images in decoded.items():
        rows += [(f"L={latent_dim} sample\n{rates[latent_dim]:.0f} bits", images["sample"]),
                 (f"L={latent_dim} mean\n{rates[latent_dim]:.0f} bits", images["mean"])]
    fig, axes = plt.subplots(len(rows), GRID_IMAGES, figsize=(GRID_IMAGES * 0.9, len(rows) * 0.95))
    for i, (label, images) in enumerate(rows):
        for j in range(GRID_IMAGES):
            axes[i, j].imshow(images[j], cmap="gray", vmin=0, vmax=255)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.2)
    return fig


def main() -> None:
    args = parse_args()
    train_images, _ = load_mnist("train")
    test_images, _ = load_mnist("test")
    n = args.test_images
    if 3 * n + 500 > test_images.shape[0]:
        raise SystemExit(f"--test-images {n}: needs 3 disjoint sets of {n} test images plus 500 for the bandwidth")
    # compressed images, the reference they are compared with, held-out images (the floor), bandwidth set
    data = {"train": train_images, "test": test_images[:n], "reference": test_images[n : 2 * n]}
    bandwidth = median_bandwidth(test_images[-500:].reshape(500, -1).astype(np.float64) / 255.0)
    floor = {"scheme": "held-out test images (floor)", "decoder": "data",
             **realism(test_images[2 * n : 3 * n], data["reference"], bandwidth, args)}
    rows: list[dict[str, Any]] = []
    decoded: dict[int, dict[str, np.ndarray]] = {}
    for latent_dim in tqdm(args.latents, desc="latent sizes"):
        result = run_latent(latent_dim, data, bandwidth, args)
        rows += result["rows"]
        decoded[latent_dim] = result["decoded"]
        for r in result["rows"]:
            tqdm.write(f"{r['scheme']}: " + ", ".join(f"{k} {r[k]:.4g}" for k in ("rate_bits_per_image", "mse", "mmd2")
                                                     if k in r))
    rows.append(floor)
    results = {"settings": {k: v for k, v in vars(args).items() if k != "update"}, "bandwidth": bandwidth,
               "machine": "2-core CPU shared with other jobs (timings indicative only)", "rows": rows}
    save_json(NAME, "results.json", results, update=args.update)
    table = markdown_table(rows)
    save_text(NAME, "table.md", table, update=args.update)
    coded = [r for r in rows if r["decoder"] in ("sample", "mean")]
    save_figure(NAME, "rate_distortion.png", plot_rate_distortion(coded, floor["mmd2"]), update=args.update, dpi=110)
    rates = {r["latent_dim"]: r["rate_bits_per_image"] for r in coded}
    save_figure(NAME, "reconstructions.png", plot_grid(data["test"], decoded, rates), update=args.update, dpi=110)
    print(table)


if __name__ == "__main__":
    main()
