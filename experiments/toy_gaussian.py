"""Toy 5-D Gaussian experiments of He, Flamich & Hernandez-Lobato (NeurIPS 2024), Fig. 2 and Fig. 7.

Setup (He, Flamich & Hernández-Lobato, NeurIPS 2024, Fig. 2; the paper's exact construction is not available): the
coding distribution is ``P = N(0, I_5)`` and targets are ``Q = N(mu, diag sigma^2)`` with
``mu_d ~ N(0, 1 - sigma_d^2)``, so ``P`` is the marginal and the mutual information is
``I_d = -log2 sigma_d``.  Each MI level ``I`` splits its bits over the axes with a Dirichlet(1)
draw (one draw per level: the shared "training statistics"); the partition gets
``log2 J = round(I)`` bits allocated by MI (:func:`jaxrec.partition_from_mi`).

Panels:
  (a) steps against ``D_inf[Q||P]`` for PFR and SP-PFR (``"sup_ratio"`` weights), mean and IQR;
  (b) ideal code length against MI (Zipf index codes with budgets from MI, not from the item);
  (c) fixed budgets: MMD between encoded samples and Q for ORC and SP-ORC against N, per level,
      and the smallest N reaching each MMD threshold;
  (d) Fig. 7: ORC with 20 samples and dimension 0 collapsed (MI 0): plain ORC and SP-ORC with
      bits on the collapsed axis only, at random, randomly over informative axes, and by MI.

MMD: RBF kernel (length scale 1) in each target's standard coordinates, pooled over problems,
with closed-form target terms (:func:`jaxrec.core.distributions.mmd2_to_gaussian`).

Writes ``results.json``, ``fig2.png`` and ``fig7.png`` to ``experiments/results/toy_gaussian/latest/``
(git-ignored: timings change from run to run); ``--update`` also rewrites the committed copies in
``experiments/results/toy_gaussian/`` (``experiments/_results.py``).

    python experiments/toy_gaussian.py            # small default, a few minutes on 2 CPU cores
    python experiments/toy_gaussian.py --full     # paper-sized
    python experiments/toy_gaussian.py --update   # also rewrite the committed results
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _results import add_update_flag, save_figure, save_json  # noqa: E402
from tqdm import tqdm  # noqa: E402

import jaxrec  # noqa: E402
from jaxrec import entropy  # noqa: E402
from jaxrec.coders.sp.message import sp_ideal_bits, sp_index_budget_bits  # noqa: E402
from jaxrec.coders.sp.partition import Partition, allocate_bits  # noqa: E402
from jaxrec.core.distributions import mmd2_to_gaussian  # noqa: E402

DIM = 5
NAME = "toy_gaussian"
STRATEGIES = ("collapsed", "random", "random_informative", "mi")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="paper-sized run")
    parser.add_argument("--seed", type=int, default=0)
    add_update_flag(parser)
    return parser.parse_args()


def sizes(full: bool) -> dict:
    if full:
        return dict(levels=list(range(2, 17, 2)), problems=1000, budgets=[2**k for k in range(2, 17, 2)],
                    mmd_samples=2000, fig7_runs=5000, max_steps=2**24)
    return dict(levels=[2, 4, 6, 8], problems=200, budgets=[4, 32, 256], mmd_samples=500, fig7_runs=2000,
                max_steps=2**18)


def level_sigmas(level: float, rng: np.random.Generator) -> np.ndarray:
    """Per-axis sigma for a total MI of ``level`` bits, split by a Dirichlet(1) draw."""
    return 2.0 ** (-level * rng.dirichlet(np.ones(DIM)))


def targets_for(sigma: np.ndarray, num: int, key: jax.Array) -> jaxrec.DiagGaussian:
    sigma = jnp.asarray(sigma, jnp.float32)
    mu = jnp.sqrt(1.0 - sigma**2) * jax.random.normal(key, (num, DIM))
    return jaxrec.DiagGaussian(mu, jnp.broadcast_to(sigma, mu.shape))


def mi_bits(sigma: np.ndarray, total_bits: int, strategy: str = "mi", seed: int = 0) -> np.ndarray:
    """Bits per axis; ``"collapsed"`` puts every bit on the collapsed axis 0 (the paper's worst case)."""
    if strategy == "collapsed":
        bits = np.zeros(DIM, np.int64)
        bits[0] = total_bits
        return bits
    return allocate_bits(-np.log2(sigma), total_bits, strategy, seed=seed)


def partitions(bit_rows: list[np.ndarray]) -> list[Partition]:
    """Partitions with one shared table width, so one compiled encoder serves them all."""
    width = 2 ** int(max(np.max(b) for b in bit_rows))
    return [Partition.from_bits(b, width) for b in bit_rows]


def summary(values: np.ndarray) -> dict:
    values = np.asarray(values, np.float64)
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return dict(mean=float(values.mean()), q25=float(q25), median=float(q50), q75=float(q75))


class Encoders:
    """Jitted, vmapped encoders; partitions are traced arguments, so each compiles once."""

    def __init__(self, max_steps: int):
        prior = jaxrec.DiagGaussian(jnp.zeros(DIM), jnp.ones(DIM))
        self.prior = prior
        pfr = jaxrec.pfr(max_steps=max_steps)
        # encode_batch refills lanes as problems finish: the work is about the sum of the steps.
        self.pfr = jax.jit(lambda k, q: jaxrec.encode_batch(pfr, k, q, prior, lane_chunk_size=256, num_lanes=16))
        self.sp_pfr = jax.jit(lambda k, q, p: jaxrec.encode_batch(
            jaxrec.sp_pfr(p, max_steps=max_steps), k, q, prior, lane_chunk_size=32, num_lanes=64))
        self.dinf_prime = jax.jit(jax.vmap(
            lambda q, p: jaxrec.coders.sp.partition.reweighted_dinf(q, prior, p, "sup_ratio"), (0, None)))
        self._orc, self._sp_orc = {}, {}

    def orc(self, num: int):
        if num not in self._orc:
            coder = jaxrec.orc(num)
            self._orc[num] = jax.jit(jax.vmap(lambda k, q: coder.decode(k, coder.encode(k, q, self.prior), self.prior)))
        return self._orc[num]

    def sp_orc(self, num: int):
        if num not in self._sp_orc:
            def encode_decode(k, q, p):
                coder = jaxrec.sp_orc(p, num)
                return coder.decode(k, coder.encode(k, q, self.prior), self.prior)

            self._sp_orc[num] = jax.jit(jax.vmap(encode_decode, (0, 0, None)))
        return self._sp_orc[num]


def standardized_mmd(xs: jax.Array, targets: jaxrec.DiagGaussian) -> float:
    z = (xs - targets.loc) / targets.scale
    return float(mmd2_to_gaussian(z, jaxrec.DiagGaussian(jnp.zeros(DIM), jnp.ones(DIM))))


def exact_runs(enc: Encoders, cfg: dict, sigmas: list, parts: list, key: jax.Array, bar: tqdm) -> list[dict]:
    """Panels (a) and (b): PFR and SP-PFR steps and ideal code lengths per MI level."""
    rows = []
    for level, sigma, part in zip(cfg["levels"], sigmas, parts):
        key, k_q, k_c = jax.random.split(key, 3)
        targets = targets_for(sigma, cfg["problems"], k_q)
        keys = jax.random.split(k_c, cfg["problems"])
        if not rows:  # compile both encoders before timing
            jax.block_until_ready((enc.pfr(keys, targets), enc.sp_pfr(keys, targets, part)))
        t0 = time.perf_counter()
        pfr = jax.block_until_ready(enc.pfr(keys, targets))
        t1 = time.perf_counter()
        sp = jax.block_until_ready(enc.sp_pfr(keys, targets, part))
        t2 = time.perf_counter()
        dinf = np.asarray(jax.vmap(jaxrec.dinf, (0, None))(targets, enc.prior), np.float64)
        dinf_prime = np.asarray(enc.dinf_prime(targets, part), np.float64)
        log2_j = float(part.log2_num_bins)
        pfr_bits = np.asarray(entropy.zipf_bits(np.asarray(pfr.index), entropy.zipf_exponent(level)))
        alpha = entropy.zipf_exponent(sp_index_budget_bits(level, log2_j))
        sp_bits = np.asarray(sp_ideal_bits(np.asarray(sp.index), np.asarray(part.num_intervals), alpha))
        rows.append(dict(
            mi_bits=level, sigma=sigma.tolist(), num_intervals=np.asarray(part.num_intervals).tolist(),
            dinf=dinf.tolist(), dinf_prime=dinf_prime.tolist(),
            expected_steps_pfr=float(np.mean(2.0**dinf)), expected_steps_sp_pfr=float(np.mean(2.0**dinf_prime)),
            pfr_steps=np.asarray(pfr.steps).tolist(), sp_pfr_steps=np.asarray(sp.steps).tolist(),
            pfr_exhausted=int(np.sum(pfr.exhausted)), sp_pfr_exhausted=int(np.sum(sp.exhausted)),
            pfr_bits=summary(pfr_bits), sp_pfr_bits=summary(sp_bits), pfr_seconds=t1 - t0, sp_pfr_seconds=t2 - t1,
        ))
        bar.update(1)
    return rows


def budget_runs(enc: Encoders, cfg: dict, sigmas: list, parts: list, key: jax.Array, bar: tqdm) -> list[dict]:
    """Panel (c): pooled MMD of ORC and SP-ORC samples at each budget and level."""
    rows = []
    for level, sigma, part in zip(cfg["levels"], sigmas, parts):
        key, k_q, k_c = jax.random.split(key, 3)
        targets = targets_for(sigma, cfg["mmd_samples"], k_q)
        keys = jax.random.split(k_c, cfg["mmd_samples"])
        row = dict(mi_bits=level, dinf=summary(jax.vmap(jaxrec.dinf, (0, None))(targets, enc.prior)), orc={}, sp_orc={})
        for num in cfg["budgets"]:
            row["orc"][str(num)] = standardized_mmd(enc.orc(num)(keys, targets), targets)
            row["sp_orc"][str(num)] = standardized_mmd(enc.sp_orc(num)(keys, targets, part), targets)
            bar.update(1)
        exact = targets.loc + targets.scale * jax.random.normal(k_c, targets.loc.shape)
        row["exact_mmd"] = standardized_mmd(exact, targets)
        for threshold in MMD_THRESHOLDS:
            row[f"smallest_n_mmd2<={threshold:g}"] = {m: smallest_budget(row, m, threshold) for m in ("orc", "sp_orc")}
        rows.append(row)
    return rows


def fig7_runs(enc: Encoders, cfg: dict, seed: int, bar: tqdm) -> dict:
    """Panel (d): ORC with 20 samples, one collapsed axis, by partition strategy."""
    sigma = np.array([1.0, 0.2, 0.3, 0.25, 0.35])
    mu = np.array([0.0, 0.6, -0.7, 0.3, -0.5]) * np.sqrt(1 - sigma**2)
    target = jaxrec.DiagGaussian(jnp.asarray(mu, jnp.float32), jnp.asarray(sigma, jnp.float32))
    runs = cfg["fig7_runs"]
    targets = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (runs, DIM)), target)
    keys = jax.random.split(jax.random.key(seed + 7), runs)
    total = int(round(float(np.sum(-np.log2(sigma)))))
    out = dict(mu=mu.tolist(), sigma=sigma.tolist(), total_bits=total, samples={}, mmd={}, num_intervals={})
    out["samples"]["orc"] = np.asarray(enc.orc(20)(keys, targets))
    for strategy, part in zip(STRATEGIES, partitions([mi_bits(sigma, total, s, seed) for s in STRATEGIES])):
        out["num_intervals"][strategy] = np.asarray(part.num_intervals).tolist()
        out["samples"][strategy] = np.asarray(enc.sp_orc(20)(keys, targets, part))
        bar.update(1)
    for name, xs in out["samples"].items():
        out["mmd"][name] = standardized_mmd(jnp.asarray(xs), targets)
    return out


MMD_THRESHOLDS = (1e-2, 1e-3)


def smallest_budget(row: dict, method: str, threshold: float) -> float:
    """Smallest N with MMD^2 <= threshold (NaN if none of the budgets reaches it)."""
    ok = [int(n) for n, v in row[method].items() if v <= threshold]
    return float(min(ok)) if ok else float("nan")


def plot_fig2(exact: list[dict], budgets: list[dict], update: bool) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    ax = axes[0]
    dinf = np.concatenate([r["dinf"] for r in exact])
    edges = np.linspace(dinf.min(), dinf.max(), 12)
    centers = 0.5 * (edges[1:] + edges[:-1])
    idx = np.digitize(dinf, edges[1:-1])
    keep = [i for i in range(len(centers)) if np.sum(idx == i) >= 5]
    for name, color in (("pfr", "C0"), ("sp_pfr", "C1")):
        steps = np.concatenate([r[f"{name}_steps"] for r in exact]).astype(np.float64)
        ax.plot(centers[keep], [steps[idx == i].mean() for i in keep], color=color, label=name.upper().replace("_", "-"))
        ax.fill_between(centers[keep], [np.percentile(steps[idx == i], 25) for i in keep],
                        [np.percentile(steps[idx == i], 75) for i in keep], color=color, alpha=0.25)
    ax.plot(centers[keep], 2.0 ** centers[keep], "k:", label=r"$2^{D_\infty}$")
    ax.set(yscale="log", xlabel=r"$D_\infty[Q\|P]$ (bits)", ylabel="steps", title="(a) runtime, exact (mean, IQR)")
    ax.legend()
    ax = axes[1]
    levels = [r["mi_bits"] for r in exact]
    for name, color in (("pfr", "C0"), ("sp_pfr", "C1")):
        ax.plot(levels, [r[f"{name}_bits"]["mean"] for r in exact], "o-", color=color,
                label=name.upper().replace("_", "-"))
        ax.fill_between(levels, [r[f"{name}_bits"]["q25"] for r in exact], [r[f"{name}_bits"]["q75"] for r in exact],
                        color=color, alpha=0.25)
    ax.plot(levels, levels, "k:", label="I")
    ax.set(xlabel="mutual information I (bits)", ylabel="ideal code length (bits)", title="(b) code length (mean, IQR)")
    ax.legend()
    ax = axes[2]
    floor = max(abs(r["exact_mmd"]) for r in budgets)  # sampling noise of the estimator on exact samples
    for row, color in zip(budgets, plt.cm.viridis(np.linspace(0, 0.9, len(budgets)))):
        ns = sorted(row["orc"], key=int)
        ax.plot([int(n) for n in ns], [max(row["orc"][n], floor) for n in ns], "o--", color=color,
                label=f"ORC, I={row['mi_bits']}")
        ax.plot([int(n) for n in ns], [max(row["sp_orc"][n], floor) for n in ns], "s-", color=color,
                label=f"SP-ORC, I={row['mi_bits']}")
    ax.axhspan(ax.get_ylim()[0], floor, color="0.85", zorder=0, label="exact-sample noise")
    ax.set(xscale="log", yscale="log", xlabel="samples N", ylabel="MMD$^2$ to Q", title="(c) fixed budget")
    ax.legend(fontsize=6, ncol=2)
    ax = axes[3]
    dinf_levels = [r["dinf"]["mean"] for r in budgets]
    for threshold, style in zip(MMD_THRESHOLDS, ("-", "--")):
        for method, color in (("orc", "C0"), ("sp_orc", "C1")):
            ax.plot(dinf_levels, [smallest_budget(r, method, threshold) for r in budgets], "o" + style, color=color,
                    label=f"{method.upper().replace('_', '-')}, MMD$^2$<={threshold:g}")
    ax.set(yscale="log", xlabel=r"mean $D_\infty[Q\|P]$ (bits)", ylabel="smallest budget N",
           title="(d) approximate: runtime by MMD")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(NAME, "fig2.png", fig, update=update, dpi=120)
    plt.close(fig)


def plot_fig7(fig7: dict, update: bool) -> None:
    names = ["orc", *STRATEGIES]
    fig, axes = plt.subplots(len(names), DIM, figsize=(3 * DIM, 2.2 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        xs = fig7["samples"][name]
        for d in range(DIM):
            ax = axes[i, d]
            mu, s = fig7["mu"][d], fig7["sigma"][d]
            grid = np.linspace(mu - 4 * s, mu + 4 * s, 200)
            ax.hist(xs[:, d], bins=40, range=(grid[0], grid[-1]), density=True, color="C0", alpha=0.7)
            ax.plot(grid, np.exp(-0.5 * ((grid - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi)), color="C1")
            ax.set_yticks([])
            if d == 0:
                ax.set_ylabel(f"{name}\nMMD$^2$={fig7['mmd'][name]:.3f}", fontsize=8)
            if i == 0:
                ax.set_title(f"dim {d}" + (" (collapsed)" if d == 0 else ""))
    fig.tight_layout()
    save_figure(NAME, "fig7.png", fig, update=update, dpi=100)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    cfg = sizes(args.full)
    rng = np.random.default_rng(args.seed)
    key = jax.random.key(args.seed)
    enc = Encoders(cfg["max_steps"])
    # Per level: the MI split (shared statistics) and the MI-driven grid with log2 J = round(I).
    sigmas = [level_sigmas(level, rng) for level in cfg["levels"]]
    parts = partitions([mi_bits(sigma, int(round(level))) for level, sigma in zip(cfg["levels"], sigmas)])
    total = len(cfg["levels"]) * (1 + len(cfg["budgets"])) + len(STRATEGIES)
    with tqdm(total=total, desc="toy_gaussian") as bar:
        exact = exact_runs(enc, cfg, sigmas, parts, key, bar)
        budgets = budget_runs(enc, cfg, sigmas, parts, jax.random.fold_in(key, 1), bar)
        fig7 = fig7_runs(enc, cfg, args.seed, bar)
    plot_fig2(exact, budgets, args.update)
    plot_fig7(fig7, args.update)
    fig7_json = {k: v for k, v in fig7.items() if k != "samples"}
    results = dict(config=dict(cfg, full=args.full, seed=args.seed, dim=DIM), exact=exact, budgets=budgets, fig7=fig7_json)
    path = save_json(NAME, "results.json", results, update=args.update)
    for row in exact:  # steps are heavy-tailed: medians, and E[steps] = mean 2^{D_inf} from closed forms
        print(f"I={row['mi_bits']:>3}: median steps PFR {np.median(row['pfr_steps']):8.0f} SP-PFR "
              f"{np.median(row['sp_pfr_steps']):6.0f} | E[steps] PFR {row['expected_steps_pfr']:9.1f} SP-PFR "
              f"{row['expected_steps_sp_pfr']:7.1f} | time PFR {row['pfr_seconds']:5.1f}s SP-PFR "
              f"{row['sp_pfr_seconds']:5.1f}s | bits PFR {row['pfr_bits']['mean']:.2f} SP-PFR {row['sp_pfr_bits']['mean']:.2f}")
    print("Fig. 7 MMD^2:", {k: round(v, 4) for k, v in fig7["mmd"].items()})
    print(f"wrote {path.parent}")


if __name__ == "__main__":
    main()
