"""Benchmarks for space-partitioning REC (He, Flamich & Hernandez-Lobato, NeurIPS 2024).

1. **Exact coding at D_inf ~ 16 bits** (5-D Gaussians): PFR against SP-PFR (``"sup_ratio"``
   weights), mean steps and wall time per problem.  Targets ``Q = N(mu, diag sigma^2)`` with equal
   per-axis MI (``sigma_d = 2^{-I/5}``) and ``mu_d ~ N(0, 1 - sigma_d^2)`` (``P = N(0, I)`` is the
   marginal), kept when ``D_inf[Q||P]`` lies in ``[15.5, 16.5]`` bits; the partition has
   ``log2 J = round(I)`` bits allocated by MI.  Each problem is encoded by a jitted, un-batched
   encoder (compiled once, timed after a warm-up), so the time is per problem.

2. **SP-ORC against ORC at equal message length** (25-D blocks, issue 16).  The paper's headline
   ("REC tasks with about three times the KL") holds the *sample budget* ``N`` fixed; here the
   *rate* is fixed instead: a block's fixed-length message is ``R = log2 J + log2 N`` bits (ORC:
   ``log2 J = 0``).  For every KL per block and every rate, each split of ``R`` between ``log2 J``
   and ``log2 N`` is run (``log2 N`` up to a compute cap: ORC at ``R`` bits needs ``2^R``
   candidates, so it runs only where ``R`` is within the cap), for every weight policy.

   Blocks: ``P = N(0, I_25)``, ``Q = N(mu, diag sigma^2)`` with ``sigma_d = 2^{-I_d}`` and
   ``mu_d ~ N(0, 1 - sigma_d^2)``, so ``P`` is the marginal and ``E KL_d = I_d``; per-axis MI
   ``I_d`` sums to the block's KL level ``K``:

   * ``isotropic``: ``I_d ∝ w_d``, ``w_d ~ U(0.5, 1.5)`` per block and axis (every axis informative;
     posterior scales 0.2-0.6 around ``K = 40``);
   * ``concentrated``: 5 fixed informative axes share ``K`` (``w_d ~ U(0.5, 1.5)``), the other 20
     carry 0.02 bits each (scales ~0.99, means ~0): the shape of VAE latents and INR posteriors,
     where a few axes hold the information.

   The grid is :func:`jaxrec.partition_from_mi` on the average per-axis KL of independent training
   blocks of the same family (shared statistics, never the item's own KL).

   Bias of the decoded sample ``x``, pooled over blocks:

   * **log-ratio deficit**: ``mean_b (KL_b - log2 r_b(x_b))`` bits (``E_Q log2 r = KL`` exactly);
   * **MMD²**: unbiased, RBF kernel of length scale ``sqrt(25)``, in each block's standard
     coordinates (:func:`jaxrec.core.distributions.mmd2_to_gaussian`).

   Noise floor: the same two statistics for exact samples of ``Q`` (same count), over independent
   draws (mean and standard deviation).  A configuration is *at noise level* when both statistics lie
   within the floor's mean + 2 sd.

Writes ``experiments/results/bench_sp/{results.json, results.md, equal_rate.png}``.

    python experiments/bench_sp.py           # default: ~10 min on 2 CPU cores (reduced grid, see output)
    python experiments/bench_sp.py --full    # the complete grid
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import jaxrec  # noqa: E402
from jaxrec.coders.sp.partition import reweighted_dinf, reweighted_kl  # noqa: E402
from jaxrec.core.distributions import mmd2_to_gaussian  # noqa: E402

DIM = 5
BLOCK_DIM = 25
INFORMATIVE_AXES = 5
NEAR_ZERO_MI_BITS = 0.02
FAMILIES = ("isotropic", "concentrated")
LN2 = math.log(2.0)
OUT = pathlib.Path(__file__).resolve().parent / "results" / "bench_sp"

DEFAULT = dict(
    exact_level=12.4, exact_problems=30, sp_chunks=[64, 256],
    problems=24, train_blocks=1000, floor_draws=200, policies=["q_mass", "sup_ratio"],
    kl_levels=[16, 32, 48, 64], rates=[16, 20, 24, 32, 48, 64], rate_window=[-8, 16],
    log2_n=[8, 12, 16], orc_max_log2_n=20, claim_log2_n=16,
)
FULL = dict(
    DEFAULT, exact_problems=100, problems=100,
    kl_levels=[16, 24, 32, 40, 48, 56, 64], rates=[16, 20, 24, 32, 40, 48, 56, 64], rate_window=[-16, 48],
    log2_n=[4, 8, 12, 16, 20], orc_max_log2_n=24,
)
REDUCED = ("problems 24 (full: 100); KL levels 16/32/48/64 (full: every 8 bits); rates 16-64 within "
           "[KL - 8, KL + 16] (full: [KL - 16, KL + 48]); log2 N in {8, 12, 16} (full: 4-20); ORC up to "
           "2^20 candidates (full: 2^24)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the complete grid (hours on 2 CPU cores)")
    parser.add_argument("--part", choices=("all", "exact", "equal-rate"), default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    return parser.parse_args()


# ---------------------------------------------------------------------------------------------
# Part 1: exact SP-PFR against PFR.


def equal_mi_targets(level: float, num: int, key: jax.Array) -> jaxrec.DiagGaussian:
    sigma = jnp.full((DIM,), 2.0 ** (-level / DIM), jnp.float32)
    mu = jnp.sqrt(1.0 - sigma**2) * jax.random.normal(key, (num, DIM))
    return jaxrec.DiagGaussian(mu, jnp.broadcast_to(sigma, mu.shape))


def exact_benchmark(cfg: dict, key: jax.Array, bar: tqdm) -> dict:
    prior = jaxrec.DiagGaussian(jnp.zeros(DIM), jnp.ones(DIM))
    level = cfg["exact_level"]
    pool = equal_mi_targets(level, 20000, key)
    dinf = np.asarray(jax.vmap(jaxrec.dinf, (0, None))(pool, prior))
    keep = np.flatnonzero((dinf >= 15.5) & (dinf <= 16.5))[: cfg["exact_problems"]]
    targets = jax.tree.map(lambda leaf: leaf[keep], pool)
    part = jaxrec.partition_from_mi(np.full(DIM, level / DIM), int(round(level)), max_intervals=64)
    pfr = jaxrec.pfr(chunk_size=1024, max_steps=2**26)
    encoders = {"pfr": jax.jit(lambda k, q: pfr.encode(k, q, prior))}
    for chunk in cfg["sp_chunks"]:
        coder = jaxrec.sp_pfr(part, chunk_size=chunk, max_steps=2**26)
        encoders[f"sp_pfr_chunk{chunk}"] = jax.jit(lambda k, q, c=coder: c.encode(k, q, prior))
    out = dict(mi_bits=level, dinf=dict(mean=float(dinf[keep].mean()), min=float(dinf[keep].min()),
                                         max=float(dinf[keep].max())),
               num_intervals=np.asarray(part.num_intervals).tolist(), problems=len(keep),
               dinf_prime_mean=float(np.mean(np.asarray(
                   jax.vmap(reweighted_dinf, (0, None, None, None))(targets, prior, part, "sup_ratio")))))
    keys = jax.random.split(jax.random.fold_in(key, 1), len(keep))
    for name, encode in encoders.items():
        first = jax.tree.map(lambda leaf: leaf[0], targets)
        jax.block_until_ready(encode(keys[0], first))  # compile
        steps, seconds = [], []
        for i in range(len(keep)):
            q = jax.tree.map(lambda leaf: leaf[i], targets)
            t0 = time.perf_counter()
            code = jax.block_until_ready(encode(keys[i], q))
            seconds.append(time.perf_counter() - t0)
            steps.append(int(code.steps))
            assert not bool(code.exhausted)
        out[name] = dict(mean_steps=float(np.mean(steps)), median_steps=float(np.median(steps)),
                         mean_seconds=float(np.mean(seconds)), median_seconds=float(np.median(seconds)))
        bar.update(1)
    for name in encoders:
        if name != "pfr":
            out[name]["steps_ratio"] = out["pfr"]["mean_steps"] / out[name]["mean_steps"]
            out[name]["time_ratio"] = out["pfr"]["mean_seconds"] / out[name]["mean_seconds"]
    return out


# ---------------------------------------------------------------------------------------------
# Part 2: SP-ORC against ORC at equal message length.


def block_prior() -> jaxrec.DiagGaussian:
    return jaxrec.DiagGaussian(jnp.zeros(BLOCK_DIM), jnp.ones(BLOCK_DIM))


def make_blocks(family: str, kl_bits: float, num: int, key: jax.Array) -> jaxrec.DiagGaussian:
    """``num`` blocks ``Q = N(mu, diag 2^{-2 I})``, ``mu ~ N(0, 1 - 2^{-2 I})``, ``sum_d I_d = kl_bits``
    (``E KL[Q||P] = kl_bits`` for ``P = N(0, I)``); leaves ``(num, BLOCK_DIM)``."""
    k_w, k_mu = jax.random.split(key)
    w = jax.random.uniform(k_w, (num, BLOCK_DIM), minval=0.5, maxval=1.5)
    if family == "isotropic":
        mi = kl_bits * w / w.sum(-1, keepdims=True)
    elif family == "concentrated":
        w = w[:, :INFORMATIVE_AXES]
        informative = (kl_bits - NEAR_ZERO_MI_BITS * (BLOCK_DIM - INFORMATIVE_AXES)) * w / w.sum(-1, keepdims=True)
        mi = jnp.concatenate([informative, jnp.full((num, BLOCK_DIM - INFORMATIVE_AXES), NEAR_ZERO_MI_BITS)], -1)
    else:
        raise ValueError(f"unknown family {family!r}")
    sigma = 2.0 ** (-mi)
    mu = jnp.sqrt(1.0 - sigma**2) * jax.random.normal(k_mu, sigma.shape)
    return jaxrec.DiagGaussian(mu, sigma)


def policy_name(policy: str) -> str:
    return policy if isinstance(policy, str) else policy.__name__


def _batched(fn, batch: int, keys: jax.Array, targets: jaxrec.DiagGaussian) -> np.ndarray:
    """``fn(keys, targets)`` over ``batch`` problems at a time (the last batch padded, so one
    compiled shape serves all)."""
    num = keys.shape[0]
    pad = -num % batch
    take = np.concatenate([np.arange(num), np.zeros(pad, int)])
    parts = [fn(keys[take[i:i + batch]], jax.tree.map(lambda leaf: leaf[take[i:i + batch]], targets))
             for i in range(0, num + pad, batch)]
    return np.concatenate([np.asarray(p) for p in parts])[:num]


@functools.cache
def sp_orc_sampler(num_samples: int, policy, max_intervals: int):
    """Jitted ``(counts, keys, targets) -> decoded samples`` of SP-ORC; the grid's counts are a
    runtime argument, so one compilation serves every partition with this table width."""

    def run(counts, keys, targets):
        coder = jaxrec.sp_orc(jaxrec.Partition(counts, max_intervals), num_samples, weights=policy)
        prior = block_prior()
        return jax.vmap(lambda k, q: coder.decode(k, coder.encode(k, q, prior), prior))(keys, targets)

    return jax.jit(run)


@functools.cache
def orc_sampler(num_samples: int):
    coder = jaxrec.orc(num_samples)
    prior = block_prior()
    return jax.jit(jax.vmap(lambda k, q: coder.decode(k, coder.encode(k, q, prior), prior)))


def bias_stats(xs: jax.Array, targets: jaxrec.DiagGaussian, kls: jax.Array) -> dict:
    """Log-ratio deficit (bits; mean and standard error) and pooled MMD² of samples ``xs``."""
    log2_r = jax.vmap(jaxrec.log_ratio, (0, None, 0))(targets, block_prior(), jnp.asarray(xs)) / LN2
    deficit = np.asarray(kls - log2_r)
    z = (jnp.asarray(xs) - targets.loc) / targets.scale
    mmd2 = mmd2_to_gaussian(z, block_prior(), lengthscale=math.sqrt(BLOCK_DIM))
    return dict(deficit=float(deficit.mean()), deficit_se=float(deficit.std(ddof=1) / math.sqrt(deficit.size)),
                mmd2=float(mmd2))


def noise_floor(targets: jaxrec.DiagGaussian, kls: jax.Array, draws: int, key: jax.Array) -> dict:
    """The bias statistics of exact samples of ``Q`` (as many as the coders decode), over ``draws``
    independent draws: mean, sd and the at-noise-level limits (mean + 2 sd)."""
    stats = [bias_stats(targets.loc + targets.scale * jax.random.normal(k, targets.loc.shape), targets, kls)
             for k in jax.random.split(key, draws)]
    out = {}
    for name in ("deficit", "mmd2"):
        values = np.array([s[name] for s in stats])
        out[name] = dict(mean=float(values.mean()), sd=float(values.std(ddof=1)),
                         limit=float(values.mean() + 2 * values.std(ddof=1)))
    return out


def at_noise_level(stats: dict, floor: dict) -> bool:
    return stats["deficit"] <= floor["deficit"]["limit"] and stats["mmd2"] <= floor["mmd2"]["limit"]


def splits(cfg: dict, rate: int) -> list[tuple[int, int]]:
    """``(log2 J, log2 N)`` splits of ``rate`` bits: ORC (``log2 J = 0``) within its compute cap,
    SP-ORC for each ``log2 N`` of the grid below ``rate``, at most 64 bin bits."""
    out = [(0, rate)] if rate <= cfg["orc_max_log2_n"] else []
    return out + [(rate - n, n) for n in cfg["log2_n"] if 0 < rate - n <= 64]


def pairs(cfg: dict) -> list[tuple[int, int]]:
    low, high = cfg["rate_window"]
    return [(kl, rate) for kl in cfg["kl_levels"] for rate in cfg["rates"] if kl + low <= rate <= kl + high]


def family_study(family: str, cfg: dict, key: jax.Array, bar: tqdm) -> dict:
    prior = block_prior()
    out = dict(levels={})
    for kl_bits in cfg["kl_levels"]:
        rates = [rate for kl, rate in pairs(cfg) if kl == kl_bits]
        if not rates:
            continue
        k_train, k_test, k_code, k_floor = jax.random.split(jax.random.fold_in(key, kl_bits), 4)
        train = make_blocks(family, kl_bits, cfg["train_blocks"], k_train)
        mi = np.asarray(jnp.mean(jaxrec.kl(train, prior, per_dim=True), axis=0), np.float64)
        targets = make_blocks(family, kl_bits, cfg["problems"], k_test)
        kls = jaxrec.kl(targets, prior)
        keys = jax.random.split(k_code, cfg["problems"])
        level = dict(kl_mean=float(kls.mean()), kl_sd=float(kls.std()), mi_bits=mi.round(3).tolist(),
                     floor=noise_floor(targets, kls, cfg["floor_draws"], k_floor), rates={})
        for rate in rates:
            rows = []
            for log2_j, log2_n in splits(cfg, rate):
                num = 2**log2_n
                if log2_j == 0:
                    t0 = time.perf_counter()
                    xs = _batched(orc_sampler(num), max(1, min(cfg["problems"], 2**24 // num)), keys, targets)
                    rows.append(dict(coder="orc", policy=None, log2_j=0, log2_n=log2_n,
                                     **bias_stats(xs, targets, kls), seconds=time.perf_counter() - t0))
                    bar.update(1)
                    continue
                part = jaxrec.partition_from_mi(mi, log2_j)
                counts = np.asarray(part.num_intervals)
                width = 2 ** math.ceil(math.log2(max(int(counts.max()), 2)))
                for policy in cfg["policies"]:
                    kl_prime = jax.vmap(reweighted_kl, (0, None, None, None))(targets, prior, part, policy)
                    t0 = time.perf_counter()
                    xs = _batched(functools.partial(sp_orc_sampler(num, policy, width), jnp.asarray(counts)),
                                  max(1, min(cfg["problems"], 2**21 // num)), keys, targets)
                    rows.append(dict(coder="sp_orc", policy=policy_name(policy), log2_j=log2_j, log2_n=log2_n,
                                     num_intervals=counts.tolist(), reweighted_kl=float(np.mean(kl_prime)),
                                     **bias_stats(xs, targets, kls), seconds=time.perf_counter() - t0))
                    bar.update(1)
            for row in rows:
                row["at_noise_level"] = at_noise_level(row, level["floor"])
            level["rates"][rate] = rows
        out["levels"][kl_bits] = level
    return out


def best(rows: list[dict], coder: str, policy: str | None = None) -> dict | None:
    """The split with the smallest log-ratio deficit among ``rows`` of this coder (and policy)."""
    rows = [r for r in rows if r["coder"] == coder and (policy is None or r["policy"] == policy)]
    return min(rows, key=lambda r: r["deficit"]) if rows else None


def claim_summary(study: dict, cfg: dict) -> dict:
    """The paper's claim at a fixed sample budget ``N = 2^claim_log2_n`` and its equal-rate reading.

    ``orc_reference``: ORC's bias at ``KL = log2 N`` with that ``N``.  For each KL level, the
    smallest rate at which SP-ORC with the same ``N`` is no more biased than that reference (and the
    smallest at which it is at noise level): the KL it handles at this budget, and what the message
    costs.
    """
    log2_n = cfg["claim_log2_n"]
    out = {}
    for family, res in study.items():
        ref_level = res["levels"].get(log2_n)
        ref = next((r for rows in (ref_level or {}).get("rates", {}).values() for r in rows
                    if r["coder"] == "orc" and r["log2_n"] == log2_n), None)
        per_kl = {}
        for kl_bits, level in res["levels"].items():
            cands = sorted((r for rows in level["rates"].values() for r in rows
                            if r["coder"] == "sp_orc" and r["log2_n"] == log2_n), key=lambda r: r["log2_j"])
            no_worse = [r for r in cands if ref is not None and r["deficit"] <= ref["deficit"]]
            noise = [r for r in cands if r["at_noise_level"]]
            per_kl[kl_bits] = dict(
                rate_no_worse_than_orc_ref=(no_worse[0]["log2_j"] + log2_n) if no_worse else None,
                rate_at_noise_level=(noise[0]["log2_j"] + log2_n) if noise else None)
        handled = [kl for kl, v in per_kl.items() if v["rate_no_worse_than_orc_ref"] is not None]
        out[family] = dict(log2_n=log2_n, orc_reference=ref, per_kl=per_kl,
                           largest_kl_no_worse_than_orc_ref=max(handled) if handled else None)
    return out


def fmt_row(row: dict | None) -> str:
    if row is None:
        return "–"
    split = "ORC" if row["coder"] == "orc" else f"{row['log2_j']}+{row['log2_n']}"
    mark = " ✓" if row["at_noise_level"] else ""
    return f"{split}: {row['deficit']:.2f} ± {row['deficit_se']:.2f} / {row['mmd2']:.4f}{mark}"


def markdown(study: dict, claim: dict, cfg: dict) -> str:
    policies = [policy_name(p) for p in cfg["policies"]]
    lines = ["# SP-ORC against ORC at equal message length", "",
             f"Blocks of {BLOCK_DIM} dims, {cfg['problems']} per KL level; message = log2 J + log2 N bits. "
             "Cells: `split (log2 J + log2 N): log-ratio deficit ± se (bits) / MMD²`, ✓ = at noise level "
             "(both within exact-sample mean + 2 sd). ORC runs only up to "
             f"2^{cfg['orc_max_log2_n']} candidates (a rate-R ORC needs 2^R); SP-ORC splits use log2 N in "
             f"{cfg['log2_n']}.", ""]
    for family, res in study.items():
        lines += [f"## {family}", "",
                  "| KL | rate | ORC (N = 2^rate) | " + " | ".join(f"best SP-ORC, {p}" for p in policies)
                  + " | exact floor: deficit / MMD² (mean ± sd) |",
                  "|---|---|---|" + "---|" * len(policies) + "---|"]
        for kl_bits, level in res["levels"].items():
            fl = level["floor"]
            floor = (f"{fl['deficit']['mean']:.2f} ± {fl['deficit']['sd']:.2f} / "
                     f"{fl['mmd2']['mean']:.4f} ± {fl['mmd2']['sd']:.4f}")
            for rate, rows in level["rates"].items():
                orc = best(rows, "orc")
                cells = [fmt_row(best(rows, "sp_orc", p)) for p in policies]
                lines.append(f"| {kl_bits} ({level['kl_mean']:.1f}) | {rate} | "
                             f"{fmt_row(orc) if orc else 'not run (2^' + str(rate) + ' candidates)'} | "
                             + " | ".join(cells) + f" | {floor} |")
        c = claim[family]
        ref = c["orc_reference"]
        lines += ["", f"Same sample budget N = 2^{c['log2_n']}: ORC at KL {c['log2_n']} has deficit "
                  + (f"{ref['deficit']:.2f} bits / MMD² {ref['mmd2']:.4f}" if ref else "(not run)")
                  + ". Smallest rate at which SP-ORC with this N is no more biased (at noise level):", "",
                  "| KL | rate, no worse than ORC | rate, at noise level |", "|---|---|---|"]
        for kl_bits, v in c["per_kl"].items():
            lines.append(f"| {kl_bits} | {v['rate_no_worse_than_orc_ref'] or '> grid'} | "
                         f"{v['rate_at_noise_level'] or '> grid'} |")
        lines.append("")
    lines += ["## Every split", "", "| family | KL | rate | coder | policy | log2 J | log2 N | KL[Q‖P′] | "
              "deficit | se | MMD² | noise level | s |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for family, res in study.items():
        for kl_bits, level in res["levels"].items():
            for rate, rows in level["rates"].items():
                for r in rows:
                    kp = f"{r['reweighted_kl']:.2f}" if "reweighted_kl" in r else f"{level['kl_mean']:.2f}"
                    lines.append(f"| {family} | {kl_bits} | {rate} | {r['coder']} | {r['policy'] or '–'} | "
                                 f"{r['log2_j']} | {r['log2_n']} | {kp} | {r['deficit']:.2f} | "
                                 f"{r['deficit_se']:.2f} | {r['mmd2']:.4f} | {'yes' if r['at_noise_level'] else 'no'} "
                                 f"| {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(study: dict, cfg: dict, path: pathlib.Path) -> None:
    fig, axes = plt.subplots(1, len(study), figsize=(6 * len(study), 4.5), squeeze=False)
    for ax, (family, res) in zip(axes[0], study.items()):
        for i, (kl_bits, level) in enumerate(res["levels"].items()):
            color = f"C{i}"
            rates = list(level["rates"])
            for policy, style in zip(cfg["policies"], ("-", "--", ":")):
                pts = [(rate, best(level["rates"][rate], "sp_orc", policy_name(policy))) for rate in rates]
                pts = [(rate, r["deficit"]) for rate, r in pts if r is not None]
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", color=color,
                            label=f"KL {kl_bits}: SP-ORC {policy_name(policy)}")
            orc = [(rate, best(level["rates"][rate], "orc")) for rate in rates]
            orc = [(rate, r["deficit"]) for rate, r in orc if r is not None]
            if orc:
                ax.plot(*zip(*orc), "s", color=color, markersize=9, markerfacecolor="none", label=f"KL {kl_bits}: ORC")
            ax.axhline(level["floor"]["deficit"]["limit"], color=color, lw=0.6, alpha=0.5)
        ax.set_xlabel("message bits log2 J + log2 N")
        ax.set_ylabel("log2-ratio deficit (bits), best split")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(f"{family} (thin lines: exact-sample limit)")
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def equal_rate_study(cfg: dict, key: jax.Array, bar: tqdm) -> dict:
    return {family: family_study(family, cfg, jax.random.fold_in(key, i), bar) for i, family in enumerate(FAMILIES)}


def count_runs(cfg: dict) -> int:
    return sum(len(FAMILIES) * (1 if log2_j == 0 else len(cfg["policies"]))
               for _, rate in pairs(cfg) for log2_j, _ in splits(cfg, rate))


def main() -> None:
    args = parse_args()
    cfg = dict(FULL if args.full else DEFAULT)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.full:
        print(f"default run, reduced grid: {REDUCED}; use --full for the complete grid", flush=True)
    key = jax.random.key(args.seed)
    results = dict(config=dict(cfg, full=args.full, seed=args.seed, reduced=None if args.full else REDUCED),
                   device=str(jax.devices()[0]))
    path = args.out / "results.json"
    if path.exists():  # keep the other part's numbers when only one part runs
        old = json.loads(path.read_text())
        results.update({k: old[k] for k in ("exact", "equal_rate", "claim") if k in old})
    total = (1 + len(cfg["sp_chunks"])) * (args.part != "equal-rate") + count_runs(cfg) * (args.part != "exact")
    with tqdm(total=total, desc="bench_sp") as bar:
        if args.part != "equal-rate":
            results["exact"] = exact_benchmark(cfg, key, bar)
        if args.part != "exact":
            results["equal_rate"] = equal_rate_study(cfg, jax.random.fold_in(key, 2), bar)
            results["claim"] = claim_summary(results["equal_rate"], cfg)
    path.write_text(json.dumps(results, indent=1))
    if "equal_rate" in results:
        table = markdown(results["equal_rate"], results["claim"], results["config"])
        (args.out / "results.md").write_text(table)
        plot(results["equal_rate"], results["config"], args.out / "equal_rate.png")
        print(table)
    if "exact" in results:
        print(json.dumps(results["exact"], indent=1))


if __name__ == "__main__":
    main()
