"""MIRACLE on LeNet-5 (MNIST, Fashion-MNIST) with the Mean-Var and the Mean-KL parameterization.

Reproduces, as far as a 2-core CPU allows, the LeNet-5 experiments of Havasi, Peharz &
Hernandez-Lobato (ICLR 2019, "Minimal Random Code Learning: Getting Bits Back from Compressed
Model Parameters") and tests the claims of Lin, Flamich & Hernandez-Lobato (ICML 2023 Neural
Compression Workshop, "Minimal Random Code Learning with Mean-KL Parameterization"): Mean-KL
training converges about twice as fast, keeps the predictive performance after compression, gives
heavier-tailed posteriors and weight samples more robust to pruning.

Per dataset: one deterministic pre-training of the means (shared), then for every budget (bits per
block of 30 variables) and both parameterizations: variational training, progressive compression
(one MRC sample per block over 2^bits candidates, retraining the unsent blocks after each group of
blocks), the compressed network written to disk and loaded back, its test error (checked equal to
the encoder's evaluation of the same weights), magnitude pruning of the decoded weights, and the
tails of the decoded weights.

    python experiments/miracle.py                       # default: < 30 min on 2 CPU cores (reduced)
    python experiments/miracle.py --full                # the papers' schedule (an accelerator and days)

Reduced by default (``--full`` restores MIRACLE's settings): batch 64 (256), pre-training 1,000
steps (200k), variational training 1,200 steps (200k) at Adam 1e-2 (1e-3) with the Mean-Var
penalty step scaled to ``exp(20 / steps)`` so that it spans the same factor ``e^20`` as 1.0001 over
200k steps, retraining 20 steps (Adam 1e-3, a fresh state per call) after each tenth of the blocks
(100 steps after every block), budgets 6/10/14 bits on MNIST and 10 bits on Fashion-MNIST (6 to 16
on both). Checkpoints go to
``--workdir`` (runs resume from them); results (``results.json``, ``README.md``, the compressed networks
``*.jbnn`` and the plots) to ``experiments/results/miracle/latest/`` (git-ignored), and with ``--update``
also to the committed ``experiments/results/miracle/``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _results import LATEST, add_update_flag, results_dir
from flax import nnx
from tqdm.auto import tqdm

import jaxrec
from jaxrec import data
from jaxrec.models import bnn

NAME = "miracle"
PARAMETERIZATIONS = ("mean_var", "mean_kl")
LABELS = {"mean_var": "Mean-Var", "mean_kl": "Mean-KL"}
SPARSITIES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98)
# MIRACLE's LeNet-5 / MNIST Pareto points: Table 1 of the paper as recalled (1.52 kB at 0.96 %, 3.03 kB
# at 0.69 %), checked against the Pareto plot of the official repository (cambridge-mlg/miracle,
# figures/mnist_comp.png: about 1.5-1.6 kB at 0.96 % and 3.1 kB at 0.69 %). Their size counts the
# block indices only (bits per block x blocks), no header.
PUBLISHED_MIRACLE = ((1520, 0.0096), (3030, 0.0069))


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The schedule: the papers' with ``--full``, the reduced one otherwise; flags override either."""
    full = {
        "batch_size": 256, "pretrain_steps": 200_000, "steps": 200_000, "learning_rate": 1e-3,
        "penalty_step": 1.0001, "retrain_steps": 100, "retrain_learning_rate": 1e-3, "groups": None,
        "compress_penalty_step": 1.0005,
        "budgets": {"mnist": [6, 8, 10, 12, 14, 16], "fashion-mnist": [6, 8, 10, 12, 14, 16]},
    }
    reduced = {
        "batch_size": 64, "pretrain_steps": 1000, "steps": 1200, "learning_rate": 1e-2,
        "penalty_step": None, "retrain_steps": 20, "retrain_learning_rate": 1e-3, "groups": 10,
        "compress_penalty_step": None,
        "budgets": {"mnist": [6, 10, 14], "fashion-mnist": [10]},
    }
    s = full if args.full else reduced
    for name in ("batch_size", "pretrain_steps", "steps", "learning_rate", "retrain_steps", "groups"):
        if getattr(args, name) is not None:
            s[name] = getattr(args, name)
    if args.budgets is not None:
        s["budgets"] = {d: list(args.budgets) for d in s["budgets"]}
    if s["penalty_step"] is None:  # lambda spans e^20 over the run, as 1.0001 over 200k steps
        s["penalty_step"] = float(math.exp(20.0 / s["steps"]))
    if s["compress_penalty_step"] is None:
        s["compress_penalty_step"] = s["penalty_step"]
    return s


# ------------------------------------------------------------------------------------------------
# One dataset


def pretrained_means(dataset: str, train: tuple, s: dict, args: argparse.Namespace) -> tuple[np.ndarray, float]:
    """Means of a deterministic LeNet-5 (shared by every run of the dataset), cached in the workdir."""
    path = args.workdir / f"{dataset}_pretrain_{s['pretrain_steps']}x{s['batch_size']}_seed{args.seed}.msgpack"
    if path.is_file():
        net, info = bnn.load_checkpoint(path)
        return np.asarray(net.flat_params()[0]), info["metadata"]["seconds"]
    net = bnn.BayesianNetwork(bnn.lenet5(), rngs=nnx.Rngs(args.seed))
    tic = time.perf_counter()
    bnn.pretrain(net, *train, steps=s["pretrain_steps"], batch_size=s["batch_size"], seed=args.seed,
                 progress=not args.no_progress)
    seconds = time.perf_counter() - tic
    bnn.save_checkpoint(path, net, metadata={"seconds": seconds})
    return np.asarray(net.flat_params()[0]), seconds


def prune(network: bnn.BayesianNetwork, z: np.ndarray, sparsity: float) -> np.ndarray:
    """Layer-wise magnitude pruning: the fraction ``sparsity`` of smallest ``|z|`` of every kernel set
    to 0 (biases kept). With hashing a variable is a group of weights, so the weight sparsity is the same."""
    z = np.array(z)
    bounds = np.cumsum((0, *network.tensor_sizes))
    for t, (a, b) in enumerate(itertools.pairwise(bounds)):
        if t % 2 == 0 and sparsity > 0:  # kernels are the even tensors (kernel, bias per layer)
            part = z[a:b]
            k = round(sparsity * part.size)
            part[np.argsort(np.abs(part), kind="stable")[:k]] = 0.0
    return z


def excess_kurtosis(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x - x.mean()
    return float(np.mean(x**4) / np.mean(x**2) ** 2 - 3.0)


def steps_to_reach(history: dict, error: float, budget: float, tolerance: float = 0.02) -> tuple[int | None, float | None]:
    """First evaluated step whose sample error is <= ``error`` with the mean block KL within
    ``tolerance`` of the budget (Mean-KL: always), and the training seconds up to it."""
    kl_at = dict(zip(history["step"], history["kl_mean_bits"]))
    seconds_at = dict(zip(history["step"], history["seconds"]))
    for step, err in zip(history["eval_step"], history["eval_error"]):
        if err <= error and kl_at.get(step, math.inf) <= budget * (1 + tolerance):
            return step, seconds_at.get(step)
    return None, None


def run_one(dataset: str, parameterization: str, bits: int, means: np.ndarray, train: tuple, test: tuple,
            s: dict, args: argparse.Namespace) -> dict[str, Any]:
    name = f"{dataset}_{parameterization}_{bits}bits"
    config = bnn.lenet5(parameterization=parameterization, bits_per_block=float(bits))
    net = bnn.BayesianNetwork(config, rngs=nnx.Rngs(args.seed))
    net.set_flat_params(jnp.asarray(means), net.flat_params()[1])
    eval_subset = (test[0][: args.eval_images], test[1][: args.eval_images])
    history = bnn.train(
        net, *train, steps=s["steps"], batch_size=s["batch_size"], learning_rate=s["learning_rate"],
        penalty_step=s["penalty_step"], seed=args.seed, eval_data=eval_subset, eval_every=args.eval_every,
        checkpoint=args.workdir / f"{name}_{s['steps']}x{s['batch_size']}_lr{s['learning_rate']:g}_seed{args.seed}.msgpack",
        checkpoint_every=max(100, s["steps"] // 10),
        progress=not args.no_progress,
    )
    q, prior = net.posterior(), net.prior()
    block_kl = np.asarray(net.block_kl(q, prior))
    sample_error = bnn.evaluate(net, *test, q.sample(jax.random.key(args.seed + 2)))

    # Progressive compression: one MRC sample per block, retraining after each group of blocks.
    codec = bnn.MiracleCodec(net, *train, retrain_steps=s["retrain_steps"], batch_size=s["batch_size"],
                             learning_rate=s["retrain_learning_rate"], penalty_step=s["compress_penalty_step"],
                             seed=args.seed)
    plan = codec.plan
    group = plan.num_blocks if s["retrain_steps"] == 0 else (1 if s["groups"] is None else math.ceil(plan.num_blocks / s["groups"]))
    coder = jaxrec.mrc(2**bits)
    tic = time.perf_counter()
    report = jaxrec.codec.compress_report(codec, jnp.zeros((1,), jnp.int32), key=args.seed, coder=coder, plan=plan,
                                          group_size=group)
    compress_seconds = time.perf_counter() - tic
    container = report.archive
    path = args.out_dir / f"{name}.jbnn"
    file_bytes = bnn.save_compressed(path, net, container)

    # The decoder: a fresh bundle from the file; the encoder: its own codec on the same container.
    bundle = bnn.load_bundle(path)
    z_file = np.asarray(bundle.weights())
    z_encoder = np.asarray(jaxrec.decompress(codec, container, plan=plan))
    decoded_error = bundle.error(*test)
    encoder_error = bnn.evaluate(net, *test, z_encoder)
    assert np.array_equal(z_file, z_encoder) and decoded_error == encoder_error, "decoder and encoder disagree"

    scale = np.asarray(prior.scale)
    pruning = [bnn.evaluate(bundle.network, *test, prune(bundle.network, z_file, p)) for p in SPARSITIES]
    return {
        "dataset": dataset,
        "parameterization": parameterization,
        "bits_per_block": bits,
        "num_variables": net.num_variables,
        "num_blocks": plan.num_blocks,
        "group_size": group,
        "history": history.to_dict(),
        "train_seconds": history.seconds[-1],
        "seconds_per_step": history.seconds[-1] / s["steps"],
        "block_kl_bits": {"mean": float(block_kl.mean()), "max": float(block_kl.max()),
                          "coded_mean": float(report.block_kl.mean()), "coded_max": float(report.block_kl.max())},
        "prior_scales": np.exp(np.asarray(net.log_prior_scales())).tolist(),
        "sample_error": sample_error,
        "decoded_error": decoded_error,
        "encoder_error": encoder_error,
        "compress_seconds": compress_seconds,
        "file": path.name,
        "file_bytes": file_bytes,
        "file_bytes_on_disk": path.stat().st_size,
        "container_bytes": len(container),
        "container_header_bytes": report.header_bytes,
        "payload_bytes": report.payload_bytes,
        "index_bits": float(report.index_bits.sum()),
        "pruning_error": dict(zip(map(str, SPARSITIES), pruning)),
        "decoded_kurtosis": excess_kurtosis(z_file / scale),
        "decoded_standardized": np.histogram(z_file / scale, bins=np.linspace(-6, 6, 61))[0].tolist(),
        "posterior_std_ratio_median": float(np.median(np.asarray(q.scale) / scale)),
    }


def run_dataset(dataset: str, s: dict, args: argparse.Namespace) -> dict[str, Any] | None:
    try:
        train, test = data.load_mnist("train", dataset=dataset), data.load_mnist("test", dataset=dataset)
    except FileNotFoundError as err:
        tqdm.write(f"[{dataset}] skipped: {err} (Fashion-MNIST: apt-get install dataset-fashion-mnist)")
        return None
    train = (train[0], train[1].astype(np.int32))
    test = (test[0], test[1].astype(np.int32))
    means, pretrain_seconds = pretrained_means(dataset, train, s, args)
    net = bnn.BayesianNetwork(bnn.lenet5(), rngs=nnx.Rngs(0))
    deterministic_error = bnn.evaluate(net, *test, means)
    runs = []
    jobs = [(p, b) for b in s["budgets"][dataset] for p in PARAMETERIZATIONS]
    for parameterization, bits in tqdm(jobs, desc=f"{dataset} runs", disable=args.no_progress):
        runs.append(run_one(dataset, parameterization, bits, means, train, test, s, args))
        r = runs[-1]
        tqdm.write(f"[{dataset}] {LABELS[parameterization]} {bits} bits: {r['file_bytes']} B, decoded error "
                   f"{100 * r['decoded_error']:.2f} % (sample {100 * r['sample_error']:.2f} %), "
                   f"train {r['train_seconds']:.0f} s, compress {r['compress_seconds']:.0f} s")
    return {"dataset": dataset, "deterministic_error": deterministic_error, "pretrain_seconds": pretrain_seconds,
            "runs": runs, "speed": training_speed(runs)}


def training_speed(runs: list[dict]) -> list[dict[str, Any]]:
    """Per budget: steps (and seconds) each parameterization needs to reach the error both reach."""
    out = []
    for bits in sorted({r["bits_per_block"] for r in runs}):
        pair = {r["parameterization"]: r for r in runs if r["bits_per_block"] == bits}
        if set(pair) != set(PARAMETERIZATIONS):
            continue
        # the target: 10 % above the worse of the two final errors (both runs reach it)
        target = 1.1 * max(r["history"]["eval_error"][-1] for r in pair.values())
        row = {"bits_per_block": bits, "target_error": target}
        for p, r in pair.items():
            row[f"{p}_steps"], row[f"{p}_seconds"] = steps_to_reach(r["history"], target, bits)
            row[f"{p}_seconds_per_step"] = r["seconds_per_step"]
        if row["mean_var_steps"] and row["mean_kl_steps"]:
            row["step_ratio"] = row["mean_var_steps"] / row["mean_kl_steps"]
            row["time_ratio"] = row["mean_var_seconds"] / row["mean_kl_seconds"]
        out.append(row)
    return out


# ------------------------------------------------------------------------------------------------
# Reporting


def plot(results: list[dict], out_dir: Path) -> list[str]:
    """Writes the three figures to ``out_dir``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        written.append(name)

    colors = {"mean_var": "tab:blue", "mean_kl": "tab:orange"}
    datasets = [r for r in results if r is not None]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for ax, res in zip(axes[0], datasets):
        for p in PARAMETERIZATIONS:
            rs = sorted((r for r in res["runs"] if r["parameterization"] == p), key=lambda r: r["bits_per_block"])
            ax.plot([r["file_bytes"] for r in rs], [100 * r["decoded_error"] for r in rs], "o-", color=colors[p],
                    label=f"{LABELS[p]} (file on disk)")
            ax.plot([r["index_bits"] / 8 for r in rs], [100 * r["decoded_error"] for r in rs], "o:", color=colors[p],
                    alpha=0.5, label=f"{LABELS[p]} (indices only)")
        if res["dataset"] == "mnist":
            ax.plot(*zip(*[(b, 100 * e) for b, e in PUBLISHED_MIRACLE]), "k*", ms=12, label="MIRACLE paper (indices only)")
        ax.axhline(100 * res["deterministic_error"], color="gray", ls="--", lw=1, label="uncompressed (pre-trained)")
        ax.set(xscale="log", yscale="log", xlabel="compressed size (bytes)", ylabel="test error (%)",
               title=f"LeNet-5, {res['dataset']}")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
            axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=7)
    save(fig, "size_vs_error.png")

    runs = [r for res in datasets for r in res["runs"]]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for r in runs:
        style = "-" if r["parameterization"] == "mean_kl" else "--"
        label = f"{r['dataset']} {LABELS[r['parameterization']]} {r['bits_per_block']}b"
        h = r["history"]
        axes[0].plot(h["eval_step"], [100 * e for e in h["eval_error"]], style, label=label)
        axes[1].plot(h["step"], h["kl_mean_bits"], style, label=label)
        axes[2].plot([float(p) * 100 for p in r["pruning_error"]], [100 * e for e in r["pruning_error"].values()],
                     style + "o", ms=3, label=label)
    axes[0].set(xlabel="training step", ylabel="test error of a posterior sample (%)", yscale="log",
                title="variational training")
    axes[1].set(xlabel="training step", ylabel="mean block KL (bits)", yscale="log", title="KL per block")
    axes[2].set(xlabel="kernel sparsity (%)", ylabel="test error of the decoded network (%)", yscale="log",
                title="magnitude pruning of the decoded weights")
    for ax in axes:
        ax.legend(fontsize=6)
    save(fig, "training_and_pruning.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    centers = np.linspace(-6, 6, 61)
    centers = (centers[1:] + centers[:-1]) / 2
    for r in runs:
        if r["bits_per_block"] == 10:
            counts = np.asarray(r["decoded_standardized"], float)
            ax.plot(centers, counts / counts.sum(), "-" if r["parameterization"] == "mean_kl" else "--",
                    label=f"{r['dataset']} {LABELS[r['parameterization']]} (kurtosis {r['decoded_kurtosis']:.1f})")
    ax.set(yscale="log", xlabel="decoded weight / prior scale", ylabel="fraction", title="decoded weights, 10 bits per block")
    ax.legend(fontsize=7)
    save(fig, "weights.png")
    return written


def _reached(row: dict, p: str) -> str:
    return f"{row[f'{p}_steps']} ({row[f'{p}_seconds']:.0f})" if row[f"{p}_steps"] else "not reached"


def markdown(results: list[dict], s: dict, args: argparse.Namespace, seconds: float) -> str:
    settings_json = json.dumps({k: v for k, v in s.items() if k != "budgets"})
    lines = [
        "# MIRACLE on LeNet-5: Mean-Var vs Mean-KL",
        "",
        (f"Written by `experiments/miracle.py{' --full' if args.full else ''}` in {seconds / 60:.1f} min on "
         f"{platform.processor() or platform.machine()} ({jax.device_count()} {jax.default_backend()} device(s)); "
         f"settings: `{settings_json}`."),
        "",
        ("Sizes are bytes on disk of the compressed network (`*.jbnn`: jaxrec container + config + prior "
         "scales); `indices` is the ideal index cost (blocks x bits). Errors are on the 10,000 test images; "
         "`decoded` is the network loaded from the file (equal to the encoder's evaluation of the same weights, "
         "checked), `sample` one posterior sample before compression."),
        "",
    ]
    run_header = ("| parameterization | bits/block | blocks | file B | container B | indices B | decoded error | "
                  "sample error | mean / max block KL (bits) at coding | train s | s/step | compress s |")
    speed_note = ("Training speed (steps until the sample error is within 10 % of the worse final error, "
                  "with the mean block KL at most 2 % over budget):")
    pruning_note = ("Pruning (test error in % of the decoded network after layer-wise magnitude pruning of the "
                    "kernels) and tails (excess kurtosis of decoded weight / prior scale):")
    sparsity_header = " | ".join(f"{int(100 * p)} %" for p in SPARSITIES)
    for res in results:
        if res is None:
            continue
        pretrained = (f"Pre-trained deterministic LeNet-5 (the shared means): {100 * res['deterministic_error']:.2f} % "
                      f"test error, {res['pretrain_seconds']:.0f} s.")
        lines += [f"## {res['dataset']}", "", pretrained, "", run_header, "|---" * 12 + "|"]
        for r in res["runs"]:
            kl = r["block_kl_bits"]
            lines.append(
                f"| {LABELS[r['parameterization']]} | {r['bits_per_block']} | {r['num_blocks']} | {r['file_bytes']} | "
                f"{r['container_bytes']} | {r['index_bits'] / 8:.0f} | {100 * r['decoded_error']:.2f} % | "
                f"{100 * r['sample_error']:.2f} % | {kl['coded_mean']:.2f} / {kl['coded_max']:.2f} | "
                f"{r['train_seconds']:.0f} | {r['seconds_per_step']:.3f} | {r['compress_seconds']:.0f} |")
        lines += ["", speed_note, "",
                  "| bits/block | target error | Mean-Var steps (s) | Mean-KL steps (s) | step ratio | time ratio |",
                  "|---" * 6 + "|"]
        for row in res["speed"]:
            lines.append(f"| {row['bits_per_block']} | {100 * row['target_error']:.2f} % | {_reached(row, 'mean_var')} | "
                         f"{_reached(row, 'mean_kl')} | {row.get('step_ratio', float('nan')):.2f} | "
                         f"{row.get('time_ratio', float('nan')):.2f} |")
        lines += ["", pruning_note, "", f"| parameterization | bits/block | {sparsity_header} | kurtosis |",
                  "|---" * (len(SPARSITIES) + 3) + "|"]
        for r in res["runs"]:
            errors = " | ".join(f"{100 * e:.2f}" for e in r["pruning_error"].values())
            lines.append(f"| {LABELS[r['parameterization']]} | {r['bits_per_block']} | {errors} | {r['decoded_kurtosis']:.2f} |")
        lines.append("")
    published = ", ".join(f"{b / 1000:.2f} kB at {100 * e:.2f} %" for b, e in PUBLISHED_MIRACLE)
    lines += [(f"Published MIRACLE LeNet-5 / MNIST points (indices only): {published} "
               "(200k + 200k training steps, 100 retraining steps per block)."), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"], choices=["mnist", "fashion-mnist"])
    parser.add_argument("--full", action="store_true", help="the papers' schedule (accelerator)")
    parser.add_argument("--budgets", type=int, nargs="+", default=None, help="bits per block (overrides the defaults)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--pretrain-steps", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="variational training steps")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--retrain-steps", type=int, default=None, help="retraining steps per refine call")
    parser.add_argument("--groups", type=int, default=None, help="refine calls per network (default 10; --full: every block)")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-images", type=int, default=2000, help="test images of the training curves")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/jaxrec-miracle"), help="checkpoints (resumed)")
    parser.add_argument("--out-dir", type=Path, default=results_dir(NAME) / LATEST,
                        help="where this run writes its files (default: experiments/results/miracle/latest)")
    parser.add_argument("--no-progress", action="store_true")
    add_update_flag(parser)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    s = settings(args)
    tic = time.perf_counter()
    results = [run_dataset(d, s, args) for d in args.datasets]
    seconds = time.perf_counter() - tic
    (args.out_dir / "results.json").write_text(json.dumps({"settings": s, "seconds": seconds, "results": results,
                                                           "published_miracle": PUBLISHED_MIRACLE}, indent=1))
    (args.out_dir / "README.md").write_text(markdown(results, s, args, seconds))
    figures = plot(results, args.out_dir)
    if args.update:  # the committed results: the files this run wrote (not older ones left in out_dir)
        written = ["results.json", "README.md", *figures, *(r["file"] for res in results if res for r in res["runs"])]
        for name in written:
            shutil.copy2(args.out_dir / name, results_dir(NAME) / name)
    print(f"done in {seconds / 60:.1f} min: {args.out_dir}" + (f" (and {results_dir(NAME)})" if args.update else ""))


if __name__ == "__main__":
    main()
