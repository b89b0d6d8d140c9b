"""Lossless VAE compression of MNIST / Fashion-MNIST with REC: a Table-1-like comparison.

Reproduces, as far as a 2-core CPU allows, Table 1 of He, Flamich & Hernandez-Lobato (NeurIPS 2024,
"Accelerating relative entropy coding with space partitioning"): a VAE's latent is sent with a REC
coder split into blocks, then the pixels are entropy-coded under p(x|z) at the *decoded* z, so the
total approaches the negative ELBO (the "theoretical optimum" row).  Rows: standard PFR / ORC,
SP-PFR / SP-ORC and GPRS (one block per latent dimension) for 1, 2 and 4 blocks and several
samples per block.  Every file is decoded again and compared with the image (exact round trip).

    python experiments/mnist_lossless.py --dataset mnist            # default: < 20 min on 2 CPU cores
    python experiments/mnist_lossless.py --dataset fashion-mnist
    python experiments/mnist_lossless.py --dataset mnist --full     # paper-sized (accelerator)

The VAE checkpoint is cached in ``experiments/results/mnist_lossless/`` (trained on first use; a
committed checkpoint is only rewritten with ``--retrain``).  Results: ``{dataset}.json``,
``{dataset}.md`` and ``{dataset}.png`` in ``experiments/results/mnist_lossless/latest/`` (git-ignored:
timings change from run to run); ``--update`` also rewrites the committed copies in
``experiments/results/mnist_lossless/`` (``experiments/_results.py``).

    python experiments/mnist_lossless.py --dataset mnist --update   # also rewrite the committed results
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from _results import add_update_flag, save_figure, save_json, save_text
from flax import nnx
from tqdm.auto import tqdm

import jaxrec
from jaxrec import codec, data
from jaxrec.codec.blocks import BlockPlan
from jaxrec.models import vae

NAME = "mnist_lossless"
CHECKPOINTS = Path(__file__).resolve().parent / "results" / NAME  # the cached VAEs (committed)
PUBLISHED = (
    "Published MNIST figures (bits per dimension): negative ELBO 1.39-1.43 (A* coding: 1.43 with 20 latents, "
    "1.40 with 50; greedy rejection coding: 1.391 with 20 latents); earlier REC schemes 1.47-1.66 "
    "(A* coding 1.53 / 1.66; greedy rejection coding 1.472 with zeta-coded indices).  The space-partitioning "
    "paper's own Table 1 numbers were not available."
)


@dataclasses.dataclass(frozen=True)
class Method:
    """One row of the table: a coder on a block plan."""

    name: str  # PFR, ORC, SP-PFR, SP-ORC, GPRS
    factory: str  # attribute of jaxrec / module of jaxrec.coders
    blocks: int  # number of latent blocks (= latent dim for "per dimension")
    samples: int | None  # candidates per block (fixed-budget coders), None for exact ones
    max_steps: int | None = None  # step cap of exact coders

    @property
    def partitioned(self) -> bool:
        return self.name.startswith("SP-")

    @property
    def label(self) -> str:
        budget = f"N=2^{int(math.log2(self.samples))}" if self.samples else f"exact (cap 2^{int(math.log2(self.max_steps))})"
        return f"{self.name}, {self.blocks} block{'s' if self.blocks > 1 else ''}, {budget}"


def method_grid(latent_dim: int, full: bool) -> list[Method]:
    """The rows: small budgets by default, the paper-sized grid with ``--full``."""
    orc_samples = (2**12, 2**16, 2**20) if full else (2**12, 2**16)
    sp_orc_samples = (2**4, 2**8, 2**12, 2**16) if full else (2**4, 2**8, 2**12)
    cap = 2**26 if full else 2**20
    grid = [Method("PFR", "pfr", latent_dim, None, cap), Method("PFR", "pfr", 4, None, cap)]
    for b in (1, 2, 4):
        grid += [Method("ORC", "orc", b, n) for n in orc_samples]
    for b in (1, 2, 4):
        grid += [Method("SP-ORC", "sp_orc", b, n) for n in sp_orc_samples]
    grid += [Method("SP-PFR", "sp_pfr", b, None, cap) for b in ((2, 4) if full else (4,))]
    grid += [Method("GPRS", "gprs", latent_dim, None, cap)]
    return grid


def find_factory(name: str) -> Callable[..., Any] | None:
    """``jaxrec.<name>`` or ``jaxrec.coders.<name>.<name>``; None if this checkout lacks it."""
    factory = getattr(jaxrec, name, None)
    if factory is None:
        try:
            factory = getattr(importlib.import_module(f"jaxrec.coders.{name}"), name)
        except (ImportError, AttributeError):
            return None
    return factory


# --------------------------------------------------------------------------------------------------
# Model


def get_model(args: argparse.Namespace, dataset: str, train_images: np.ndarray) -> tuple[vae.VAE, dict]:
    config = vae.VAEConfig(image_shape=(28, 28), latent_dim=args.latent_dim, hidden=tuple(args.hidden))
    path = CHECKPOINTS / f"vae_{dataset}_L{args.latent_dim}_H{'-'.join(map(str, args.hidden))}_E{args.epochs}.msgpack"
    if path.is_file() and not args.retrain:
        model, meta = vae.load_checkpoint(path)
        if model.config == config:
            print(f"[{dataset}] loaded {path.name} (trained {meta.get('train_seconds', '?')} s)")
            return model, {"checkpoint": path.name, **meta}
    model = vae.VAE(config, rngs=nnx.Rngs(args.seed))
    start = time.perf_counter()
    history = vae.train(model, train_images, epochs=args.epochs, seed=args.seed, log=lambda s: print(f"[{dataset}] {s}"))
    meta = {
        "epochs": args.epochs,
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_neg_elbo_bpd": [round(h, 5) for h in history],
        "seed": args.seed,
    }
    vae.save_checkpoint(path, model, meta)
    print(f"[{dataset}] trained and saved {path.name} ({path.stat().st_size / 1e6:.2f} MB)")
    return model, {"checkpoint": path.name, **meta}


# --------------------------------------------------------------------------------------------------
# Block plans and partitions (shared side information: training-set statistics only)


def make_plan(kl_per_dim: np.ndarray, num_blocks: int, seed: int) -> BlockPlan:
    """Random equal-size split of the latent dimensions (the paper's MNIST blocks); the Zipf budget
    of exact coders is the largest training-mean block KL."""
    dim = kl_per_dim.size
    order = np.asarray(jax.random.permutation(jaxrec.core.prng.as_key(seed), dim))
    sizes = np.full(num_blocks, dim // num_blocks)
    sizes[: dim % num_blocks] += 1
    block_kl = np.array([kl_per_dim[idx].sum() for idx in np.split(order, np.cumsum(sizes)[:-1])])
    return BlockPlan(order=order, sizes=sizes, budget_bits=float(block_kl.max()), block_kl=block_kl)


def with_partitions(plan: BlockPlan, kl_per_dim: np.ndarray, bits_offset: int) -> BlockPlan:
    """Per-block grids: ``log2 J = floor(training block KL) + offset`` bits, spread over the axes in
    proportion to their mean training KL (the MI estimate) by :func:`jaxrec.coders.sp.partition.allocate_bits`."""
    from jaxrec.coders.sp import partition

    def bits_for(dims: np.ndarray) -> np.ndarray:
        total = int(np.clip(math.floor(kl_per_dim[dims].sum()) + bits_offset, 0, partition.MAX_PACKED_BITS))
        return partition.allocate_bits(kl_per_dim[dims], total, "mi")

    all_bits = [bits_for(plan.index[b, : plan.sizes[b]]) for b in range(plan.num_blocks)]
    max_intervals = 2 ** int(max(b.max() for b in all_bits))

    def build(dims: np.ndarray, size: int) -> Any:
        bits = np.zeros(size, np.int64)
        bits[: dims.size] = bits_for(dims)
        return partition.Partition.from_bits(bits, max_intervals)

    return plan.with_partitions(build)


# --------------------------------------------------------------------------------------------------
# Running one row


def run_method(
    model: vae.VAE, images: np.ndarray, method: Method, plan: BlockPlan, args: argparse.Namespace
) -> dict[str, Any]:
    """Compresses every image, decodes every file and checks the round trip; returns the row."""
    factory = find_factory(method.factory)
    if method.partitioned:
        kwargs = {"num_samples": method.samples} if method.samples else {"max_steps": method.max_steps}
        coder: Any = functools.partial(factory, **kwargs)
    elif method.samples:
        coder = factory(method.samples)
    else:
        coder = factory(max_steps=method.max_steps)
    n, chunk = images.shape[0], args.chunk
    latent_bits, pixel_bits, steps, exhausted, block_kl, enc_t, dec_t = [], [], [], [], [], [], []
    archive_bytes = payload_bytes = 0  # one archive per chunk of images
    for start in range(0, n, chunk):
        xs = images[start : start + chunk]
        t0 = time.perf_counter()
        try:
            report = codec.compress_report(model, xs, key=args.seed, coder=coder, plan=plan, first_item=start)
        except jaxrec.InvalidArgumentError as err:
            if "not registered" in str(err):
                return {"available": False, "reason": str(err)}
            raise
        t1 = time.perf_counter()
        decoded = np.asarray(codec.decompress_batch(model, report.archive, plan=plan))
        t2 = time.perf_counter()
        if not np.array_equal(decoded, xs):
            bad = np.flatnonzero((decoded != xs).reshape(len(xs), -1).any(axis=1))
            raise AssertionError(f"{method.label}: lossless round trip failed for images {(start + bad).tolist()}")
        latent_bits.append(report.index_bits)
        pixel_bits.append(report.data_bits)
        archive_bytes += report.total_bytes
        payload_bytes += report.payload_bytes
        steps.append(np.asarray(report.code.steps))
        exhausted.append(np.asarray(report.code.exhausted))
        block_kl.append(report.block_kl)
        enc_t.append(t1 - t0)
        dec_t.append(t2 - t1)
    # the first chunk pays the compilation; time the others (all chunks have the same shapes)
    timed = slice(1, None) if len(enc_t) > 1 else slice(None)
    timed_items = n - chunk if len(enc_t) > 1 else n
    d = model.config.num_pixels
    latent, pixel = np.concatenate(latent_bits), np.concatenate(pixel_bits)
    steps_all = np.concatenate(steps)
    return {
        "available": True,
        "latent_bits": float(latent.mean()),
        "pixel_bits": float(pixel.mean()),
        "total_bits": float((latent + pixel).mean()),
        "latent_bpd": float(latent.mean() / d),
        "pixel_bpd": float(pixel.mean() / d),
        "total_bpd": float((latent + pixel).mean() / d),
        "file_bytes": archive_bytes / n,
        "payload_bytes": payload_bytes / n,
        "file_bpd": 8 * archive_bytes / (n * d),
        "payload_bpd": 8 * payload_bytes / (n * d),
        "block_kl_bits": float(np.concatenate(block_kl).sum(axis=1).mean()),
        "mean_steps_per_block": float(steps_all.mean()),
        "median_steps_per_block": float(np.median(steps_all)),
        "max_steps_per_block": int(steps_all.max()),
        "exhausted_fraction": float(np.concatenate(exhausted).mean()),
        "encode_s_per_image": float(sum(enc_t[timed]) / timed_items),
        "decode_s_per_image": float(sum(dec_t[timed]) / timed_items),
        "compile_and_first_chunk_s": float(enc_t[0] + dec_t[0]),
        "lossless_round_trip": True,
    }


def optimum(model: vae.VAE, images: np.ndarray, seed: int, num_samples: int, batch: int = 250) -> dict[str, float]:
    """The "theoretical optimum" rows: ``KL + E_q[-log2 p(x|z)]`` under the float decoder and under
    the integer coding tables, on the same ``num_samples`` draws ``z ~ q`` per image (paired)."""
    flat = images.reshape(images.shape[0], -1)
    float_nll = jax.jit(jax.vmap(model.log_likelihood, in_axes=(None, 0)))
    tables = jax.jit(jax.vmap(model.likelihood))
    kl_bits, nll, int_nll = [], [], []
    for start in range(0, flat.shape[0], batch):
        x = flat[start : start + batch]
        q = model.posterior(x)
        kl_bits.append(np.asarray(jaxrec.kl(q, model.prior())))
        z = q.sample(jax.random.fold_in(jax.random.key(seed), start), (num_samples,))
        nll.append(-np.asarray(float_nll(x, z)).mean(axis=0) / math.log(2.0))
        total = np.zeros(x.shape[0])
        for s in range(num_samples):  # one (batch, D, 256) table at a time
            w = np.asarray(tables(z[s])).reshape(x.shape[0], x.shape[1], -1).astype(np.float64)
            picked = np.take_along_axis(w, x[..., None].astype(np.int64), axis=-1)[..., 0]
            total += -np.log2(picked / w.sum(axis=-1)).sum(axis=-1)
        int_nll.append(total / num_samples)
    d = flat.shape[1]
    out = {
        "kl_bits": float(np.concatenate(kl_bits).mean()),
        "nll_bits": float(np.concatenate(nll).mean()),
        "int_nll_bits": float(np.concatenate(int_nll).mean()),
    }
    out["neg_elbo_bits"] = out["kl_bits"] + out["nll_bits"]
    out["neg_elbo_bpd"] = out["neg_elbo_bits"] / d
    out["int_neg_elbo_bits"] = out["kl_bits"] + out["int_nll_bits"]
    out["int_neg_elbo_bpd"] = out["int_neg_elbo_bits"] / d
    return out


# --------------------------------------------------------------------------------------------------
# Output


def markdown(result: dict[str, Any]) -> str:
    opt = result["optimum"]
    lines = [
        f"# Lossless VAE compression with REC: {result['dataset']}",
        "",
        f"VAE: latent {result['config']['latent_dim']}, hidden {result['config']['hidden']}, beta-binomial likelihood, "
        f"{result['model'].get('epochs', '?')} epochs; test subset: {result['config']['num_test']} random test images "
        f"(seed {result['config']['seed']}, indices in the JSON); "
        f"machine: {result['machine']}.",
        f"Negative ELBO on the full test set ({result['full_test']['num_images']} images, one z per image): "
        f"**{result['full_test']['neg_elbo_bpd']:.4f} bpd**.",
        "",
        f"{PUBLISHED}",
        "",
        "Bits are per image (784 pixels) unless the column says bpd; *latent* = ideal index bits under the file's "
        "entropy models, *pixel* = -log2 p(x|z) under the integer tables at the decoded z, *file* = archive bytes per image "
        "(one archive per chunk of images: shared header, range-coded streams, item table, CRC). *Latent excess* = latent bits - KL (index coding overhead); *bias* = pixel bits "
        "- E_q[-log2 p(x|z)] under the same integer tables (the price of an approximate sample of q); "
        "gap = total bpd - float -ELBO bpd of the same subset.",
        "",
        "| method | blocks | samples / block | latent bits | pixel bits | total bits | total bpd | file bytes (bpd) "
        "| steps / block (mean) | exhausted | encode s/img | decode s/img | latent excess | bias | gap bpd |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| theoretical optimum (-ELBO, float decoder) | - | - | {opt['kl_bits']:.1f} (KL) | {opt['nll_bits']:.1f} "
        f"| {opt['neg_elbo_bits']:.1f} | **{opt['neg_elbo_bpd']:.4f}** | - | - | - | - | - | - | - | 0 |",
        f"| -ELBO with the integer coding tables | - | - | {opt['kl_bits']:.1f} (KL) | {opt['int_nll_bits']:.1f} "
        f"| {opt['int_neg_elbo_bits']:.1f} | {opt['int_neg_elbo_bpd']:.4f} | - | - | - | - | - | - | - "
        f"| {opt['int_neg_elbo_bpd'] - opt['neg_elbo_bpd']:+.4f} |",
    ]
    for row in result["rows"]:
        m = row["method"]
        budget = f"2^{int(math.log2(m['samples']))}" if m["samples"] else f"exact (cap 2^{int(math.log2(m['max_steps']))})"
        blocks = f"{m['blocks']} (per dim)" if m["blocks"] == result["config"]["latent_dim"] else str(m["blocks"])
        if not row["available"]:
            lines.append(f"| {m['name']} | {blocks} | {budget} | not available: {row['reason'][:80]} |" + " |" * 11)
            continue
        lines.append(
            f"| {m['name']} | {blocks} | {budget} | {row['latent_bits']:.1f} | {row['pixel_bits']:.1f} "
            f"| {row['total_bits']:.1f} | {row['total_bpd']:.4f} | {row['file_bytes']:.1f} ({row['file_bpd']:.3f}) "
            f"| {row['mean_steps_per_block']:.3g} | {row['exhausted_fraction']:.0%} | {row['encode_s_per_image']:.3g} "
            f"| {row['decode_s_per_image']:.3g} | {row['latent_bits'] - row['block_kl_bits']:+.1f} "
            f"| {row['pixel_bits'] - opt['int_nll_bits']:+.1f} | {row['total_bpd'] - opt['neg_elbo_bpd']:+.4f} |"
        )
    lines += [
        "",
        f"Lossless round trip asserted for every file of every available row ({result['config']['num_test']} images each).",
        f"Training-set statistics for block plans and partitions: mean KL per latent dimension over "
        f"{result['config']['num_stats']} training images (total {result['stats']['mean_kl_bits']:.1f} bits).",
        "Timings: batched (one jitted vmapped call per chunk of "
        f"{result['config']['chunk']} images), compile excluded (first chunk dropped), wall clock on a shared machine.",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], filename: str, update: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {"PFR": "C0", "ORC": "C1", "SP-PFR": "C2", "SP-ORC": "C3", "GPRS": "C4"}
    markers = {1: "o", 2: "s", 4: "^"}
    for row in result["rows"]:
        if not row["available"]:
            continue
        m = row["method"]
        kw = dict(color=colors[m["name"]], marker=markers.get(m["blocks"], "D"), s=40)
        ax.scatter(max(row["mean_steps_per_block"], 1), row["total_bpd"], **kw)
        ax2.scatter(m["blocks"], row["total_bpd"] - result["optimum"]["neg_elbo_bpd"], **kw)
    ax2.set_yscale("symlog", linthresh=0.05)
    ax.axhline(result["optimum"]["neg_elbo_bpd"], color="k", ls="--", lw=1, label="-ELBO")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("mean steps per block")
    ax.set_ylabel("total bits per dimension")
    ax.set_ylim(result["optimum"]["neg_elbo_bpd"] - 0.05, min(ax.get_ylim()[1], result["optimum"]["neg_elbo_bpd"] + 1.5))
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("number of blocks (per dimension = latent size)")
    ax2.set_ylabel("gap to -ELBO (bpd)")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=n) for n, c in colors.items()]
    handles += [plt.Line2D([], [], color="gray", marker=mk, ls="", label=f"{b} block(s)") for b, mk in markers.items()]
    handles += [plt.Line2D([], [], color="gray", marker="D", ls="", label="per dimension")]
    ax.legend(handles=handles + [plt.Line2D([], [], color="k", ls="--", label="-ELBO")], fontsize=8)
    fig.suptitle(f"Lossless VAE + REC on {result['dataset']} ({result['config']['num_test']} test images)")
    fig.tight_layout()
    save_figure(NAME, filename, fig, update=update, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------


def run(dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    train_images, _ = data.load_mnist("train", dataset=dataset, directory=args.data_dir)
    test_images, _ = data.load_mnist("test", dataset=dataset, directory=args.data_dir)
    model, model_meta = get_model(args, dataset, train_images)
    d = model.config.num_pixels

    stats_images = train_images[: args.num_stats].reshape(-1, d)
    q_train = model.posterior(stats_images)
    kl_per_dim = np.asarray(jaxrec.kl(q_train, model.prior(), per_dim=True), np.float64).mean(axis=0)

    full = vae.evaluate(model, test_images, seed=args.seed)
    subset = np.sort(np.random.default_rng(args.seed).choice(test_images.shape[0], args.num_test, replace=False))
    images = test_images[subset]
    opt = optimum(model, images, args.seed, args.elbo_samples)
    print(f"[{dataset}] -ELBO {opt['neg_elbo_bpd']:.4f} bpd on the subset, {full.neg_elbo_bits.mean() / d:.4f} on the test set")

    plans: dict[tuple[int, bool], BlockPlan] = {}
    rows = []
    methods = method_grid(model.config.latent_dim, args.full)
    for method in tqdm(methods, desc=f"{dataset} rows"):
        key = (method.blocks, method.partitioned)
        if find_factory(method.factory) is None:
            rows.append({"method": dataclasses.asdict(method), "available": False, "reason": f"no jaxrec.{method.factory}"})
            tqdm.write(f"[{dataset}] {method.label}: not available (no jaxrec.{method.factory})")
            continue
        if key not in plans:
            plan = make_plan(kl_per_dim, method.blocks, args.seed)
            plans[key] = with_partitions(plan, kl_per_dim, args.sp_bits_offset) if method.partitioned else plan
        row = run_method(model, images, method, plans[key], args)
        row["method"] = dataclasses.asdict(method)
        rows.append(row)
        if row["available"]:
            tqdm.write(
                f"[{dataset}] {method.label}: {row['total_bpd']:.4f} bpd (latent {row['latent_bits']:.1f} + pixel "
                f"{row['pixel_bits']:.1f} bits), file {row['file_bpd']:.3f} bpd, {row['mean_steps_per_block']:.3g} steps/block, "
                f"enc {row['encode_s_per_image'] * 1e3:.1f} ms/img"
            )
        else:
            tqdm.write(f"[{dataset}] {method.label}: not available ({row['reason']})")

    result = {
        "dataset": dataset,
        "config": {
            "latent_dim": model.config.latent_dim,
            "hidden": list(model.config.hidden),
            "num_test": int(images.shape[0]),
            "test_indices": subset.tolist(),
            "num_stats": int(stats_images.shape[0]),
            "elbo_samples": args.elbo_samples,
            "chunk": args.chunk,
            "seed": args.seed,
            "sp_bits_offset": args.sp_bits_offset,
            "full": args.full,
        },
        "model": model_meta,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores visible, jax {jax.__version__} on {jax.default_backend()}",
        "full_test": {"num_images": int(test_images.shape[0]), "neg_elbo_bpd": float(full.neg_elbo_bits.mean() / d)},
        "stats": {"mean_kl_bits": float(kl_per_dim.sum()), "kl_per_dim_bits": kl_per_dim.round(4).tolist()},
        "optimum": opt,
        "rows": rows,
        "published": PUBLISHED,
    }
    suffix = "_full" if args.full else ""
    path = save_json(NAME, f"{dataset}{suffix}.json", result, update=args.update)
    save_text(NAME, f"{dataset}{suffix}.md", markdown(result), update=args.update)
    plot(result, f"{dataset}{suffix}.png", args.update)
    print(f"[{dataset}] wrote {path.parent / (dataset + suffix)}.{{json,md,png}}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist", "both"], default="mnist")
    parser.add_argument("--full", action="store_true", help="paper-sized run: whole test set, larger budgets")
    parser.add_argument("--num-test", type=int, default=None, help="random test images (default 100, --full 10000)")
    parser.add_argument("--num-stats", type=int, default=None, help="training images for the shared statistics")
    parser.add_argument("--chunk", type=int, default=None, help="images per jitted call (must divide --num-test)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs when no cached checkpoint exists")
    parser.add_argument("--latent-dim", type=int, default=20)
    parser.add_argument("--hidden", type=int, nargs="+", default=[200])
    parser.add_argument("--elbo-samples", type=int, default=16, help="z samples per image for the -ELBO rows")
    parser.add_argument("--sp-bits-offset", type=int, default=0, help="log2 J = floor(block KL) + offset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder with the four IDX files")
    add_update_flag(parser)
    args = parser.parse_args()
    args.num_test = args.num_test or (10000 if args.full else 100)
    args.num_stats = args.num_stats or (60000 if args.full else 10000)
    args.chunk = args.chunk or min(args.num_test, 1000 if args.full else 25)
    if args.num_test % args.chunk:
        parser.error(f"--chunk {args.chunk} must divide --num-test {args.num_test}")
    if args.dataset == "both" and args.data_dir is not None:  # both datasets use the same file names
        parser.error("--data-dir names one dataset's folder; with --dataset both, set $JAXREC_DATA to the "
                     "folder that holds mnist/ and fashion-mnist/")
    datasets = ("mnist", "fashion-mnist") if args.dataset == "both" else (args.dataset,)
    for dataset in datasets:  # every dataset's files are found before the first (long) run starts
        for split in ("train", "test"):
            try:
                data.mnist_paths(split, dataset=dataset, directory=args.data_dir)
            except FileNotFoundError as err:
                parser.error(f"{dataset} {split}: {err}")
    for dataset in datasets:
        run(dataset, args)


if __name__ == "__main__":
    main()
