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
   draws (mean and standard deviation).  A configuration is *at noise level* when its deficit lies
   within the floor's mean ± 2 sd and its MMD² below the floor's mean + 2 sd.

3. **Bin-weight policies** (``--part policies``): candidate policies (``Q_B^alpha`` with alpha 0.75,
   1.5 and 3; the geometric mean of ``"q_mass"`` and ``"sup_ratio"``) against ``"q_mass"`` at the
   rate = KL splits of part 2, on the same blocks and keys (paired differences), with a two-sided
   check of the log ratio (its probability integral transform).

Writes ``results.json``, ``results.md`` and ``equal_rate.png`` (``results-<backend>...`` off CPU, ``...-quick``
for ``--quick``) to ``experiments/results/bench_sp/latest/``
(git-ignored: timings change from run to run); ``--update`` also rewrites the committed copies in
``experiments/results/bench_sp/`` (``experiments/_results.py``).  A run of one part keeps the other
parts' last numbers (from ``latest/results.json``, else the committed file).

    python experiments/bench_sp.py                   # parts 1-2, ~10 min on 2 idle CPU cores (reduced grid)
    python experiments/bench_sp.py --full            # the complete grid, ~3 h on 2 CPU cores
    python experiments/bench_sp.py --part policies   # part 3, ~6 min
    python experiments/bench_sp.py --update          # also rewrite the committed results
    python experiments/bench_sp.py --quick --part all   # smoke test (tiny sizes; also --part policies)
    python experiments/bench_sp.py --device gpu      # on an accelerator: results-gpu.json, .md, equal_rate-gpu.png
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _results import (  # noqa: E402
    LATEST,
    add_update_flag,
    results_dir,
    save_figure,
    save_json,
    save_text,
)
from tqdm import tqdm  # noqa: E402

import jaxrec  # noqa: E402
from jaxrec.coders.sp.partition import POLICIES, reweighted_dinf, reweighted_kl  # noqa: E402
from jaxrec.core.distributions import mmd2_to_gaussian  # noqa: E402

DIM = 5
BLOCK_DIM = 25
INFORMATIVE_AXES = 5
NEAR_ZERO_MI_BITS = 0.02
FAMILIES = ("isotropic", "concentrated")
LN2 = math.log(2.0)
NAME = "bench_sp"

DEFAULT = dict(
    exact_level=12.4, exact_problems=30, sp_chunks=[64, 256],
    problems=32, train_blocks=1000, floor_draws=100, policies=["q_mass", "sup_ratio"],
    kl_levels=[16, 32, 48, 64], rates=[16, 20, 24, 32, 48, 64], rate_window=[-8, 16],
    log2_n=[8, 12, 16], orc_max_log2_n=20, claim_log2_n=16, proxy_min_kl=8,
    policy_study=[("isotropic", 32, 16, 16), ("isotropic", 48, 32, 16), ("concentrated", 32, 16, 16),
                  ("concentrated", 48, 32, 16)],
)
FULL = dict(
    DEFAULT, exact_problems=100, problems=100,
    kl_levels=[16, 24, 32, 40, 48, 56, 64], rates=[16, 20, 24, 32, 40, 48, 56, 64], rate_window=[-8, 24],
    log2_n=[4, 8, 12, 16], orc_max_log2_n=24,
)
QUICK = dict(  # a smoke test: every part at tiny sizes, about a minute on CPU (never written with --update)
    DEFAULT, exact_problems=3, sp_chunks=[64], problems=4, train_blocks=50, floor_draws=5, policies=["q_mass"],
    kl_levels=[16], rates=[16], log2_n=[8], orc_max_log2_n=16, claim_log2_n=8,
    policy_study=[("concentrated", 16, 8, 8)],
)
REDUCED = ("32 blocks per KL level (full: 100); KL levels 16/32/48/64 (full: every 8 bits); rates "
           "16/20/24/32/48/64 within [KL - 8, KL + 16] (full: every 8 bits and 20, within [KL - 8, KL + 24]); "
           "SP-ORC log2 N in {8, 12, 16} (full: 4-16); ORC up to 2^20 candidates (full: 2^24)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the complete grid (~3 h on 2 CPU cores)")
    size.add_argument("--quick", action="store_true", help="tiny sizes (smoke test); cannot be combined with --update")
    parser.add_argument("--device", default=None, help="JAX platform to run on (cpu, gpu, tpu; default: JAX's default)")
    parser.add_argument("--part", choices=("all", "exact", "equal-rate", "policies"), default="all",
                        help="all = exact + equal-rate; one part alone keeps the others' last numbers in "
                             "results.json; 'policies' is the bin-weight policy study (~6 min)")
    parser.add_argument("--seed", type=int, default=0)
    add_update_flag(parser)
    args = parser.parse_args()
    if args.quick and args.update:
        parser.error("--quick results are never committed: drop --update")
    return args


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
            q = jax.tree.map(lambda leaf, i=i: leaf[i], targets)
            t0 = time.perf_counter()
            code = jax.block_until_ready(encode(keys[i], q))
            seconds.append(time.perf_counter() - t0)
            steps.append(int(code.steps))
            assert bool(code.ok)
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


def _batched(fn, batch: int, keys: jax.Array, targets: jaxrec.DiagGaussian) -> np.ndarray:
    """``fn(keys, targets)`` over ``batch`` problems at a time (the last batch padded, so one
    compiled shape serves all)."""
    num = keys.shape[0]
    pad = -num % batch
    take = np.concatenate([np.arange(num), np.zeros(pad, int)])
    parts = []
    for start in range(0, num + pad, batch):
        rows = take[start:start + batch]
        parts.append(fn(keys[rows], jax.tree.map(lambda leaf, rows=rows: leaf[rows], targets)))
    return np.concatenate([np.asarray(p) for p in parts])[:num]


def _tempered(alpha: float):
    def policy(log_q_mass, log_sup, log_p_mass):
        return alpha * log_q_mass

    return policy


def _geometric(log_q_mass, log_sup, log_p_mass):
    return 0.5 * log_q_mass + 0.5 * (log_p_mass + log_sup)


# Candidate bin-weight policies for the policy study (issue 16, item 3), in the callable form
# ``policy(log_q_mass, log_sup_ratio, log_p_mass)`` of :mod:`jaxrec.coders.sp.partition`:
# ``Q_B^alpha`` flatter or sharper than ``"q_mass"``, and the geometric mean of ``"q_mass"`` and
# ``"sup_ratio"`` (``pi ∝ sqrt(Q(B) sup_B r)``, an upper-bound proxy for the chi²-optimal
# ``pi ∝ sqrt(∫_B q r)``).
CANDIDATE_POLICIES = {"tempered_0.75": _tempered(0.75), "tempered_1.5": _tempered(1.5), "tempered_3": _tempered(3.0),
                      "geometric": _geometric}
POLICY_TABLE = dict(POLICIES, **CANDIDATE_POLICIES)

TABLE_WIDTHS = (16, 256, 4096)  # a few static table widths, so few compilations serve every grid


def table_width(counts: np.ndarray) -> int:
    return next(w for w in TABLE_WIDTHS + (2 ** math.ceil(math.log2(int(counts.max()))),) if w >= counts.max())


@functools.cache
def sp_orc_sampler(num_samples: int, policies: tuple[str, ...], max_intervals: int):
    """Jitted ``(counts, policy_index, keys, targets) -> decoded samples`` of SP-ORC.  The grid's
    counts and the weight policy (an index into ``policies``, names in :data:`POLICY_TABLE`) are
    runtime arguments, so one compilation serves every grid of this table width and every policy."""
    table = [POLICY_TABLE[name] for name in policies]

    def run(counts, policy_index, keys, targets):
        def policy(*logs):
            return jax.lax.switch(policy_index, table, *logs)

        coder = jaxrec.sp_orc(jaxrec.Partition(counts, max_intervals), num_samples, weights=policy)
        prior = block_prior()
        return jax.vmap(lambda k, q: coder.decode(k, coder.encode(k, q, prior), prior))(keys, targets)

    return jax.jit(run)


@functools.cache
def orc_sampler(num_samples: int):
    coder = jaxrec.orc(num_samples)
    prior = block_prior()
    return jax.jit(jax.vmap(lambda k, q: coder.decode(k, coder.encode(k, q, prior), prior)))


def deficits(xs: jax.Array, targets: jaxrec.DiagGaussian, kls: jax.Array) -> np.ndarray:
    """Per block ``KL_b - log2 r_b(x_b)`` in bits (``E_Q log2 r = KL``)."""
    return np.asarray(kls - jax.vmap(jaxrec.log_ratio, (0, None, 0))(targets, block_prior(), jnp.asarray(xs)) / LN2)


def bias_stats(xs: jax.Array, targets: jaxrec.DiagGaussian, kls: jax.Array) -> dict:
    """Log-ratio deficit (bits; mean and standard error) and pooled MMD² of samples ``xs``."""
    deficit = deficits(xs, targets, kls)
    z = (jnp.asarray(xs) - targets.loc) / targets.scale
    mmd2 = mmd2_to_gaussian(z, block_prior(), lengthscale=math.sqrt(BLOCK_DIM))
    return dict(deficit=float(deficit.mean()), deficit_se=float(deficit.std(ddof=1) / math.sqrt(deficit.size)),
                mmd2=float(mmd2))


def noise_floor(targets: jaxrec.DiagGaussian, kls: jax.Array, draws: int, key: jax.Array) -> dict:
    """The bias statistics of exact samples of ``Q`` (as many as the coders decode), over ``draws``
    independent draws: mean and sd."""
    stats = [bias_stats(targets.loc + targets.scale * jax.random.normal(k, targets.loc.shape), targets, kls)
             for k in jax.random.split(key, draws)]
    out = {}
    for name in ("deficit", "mmd2"):
        values = np.array([s[name] for s in stats])
        out[name] = dict(mean=float(values.mean()), sd=float(values.std(ddof=1)))
    return out


def at_noise_level(stats: dict, floor: dict) -> bool:
    """Deficit within the exact samples' mean ± 2 sd (two-sided: a sampler that concentrates on Q's
    high-ratio core has a negative deficit) and MMD² below their mean + 2 sd."""
    deficit, mmd2 = floor["deficit"], floor["mmd2"]
    return (abs(stats["deficit"] - deficit["mean"]) <= 2 * deficit["sd"]
            and stats["mmd2"] <= mmd2["mean"] + 2 * mmd2["sd"])


def pairs(cfg: dict) -> list[tuple[int, int]]:
    """The ``(KL level, rate)`` pairs run: rates within ``rate_window`` of the KL."""
    low, high = cfg["rate_window"]
    return [(kl, rate) for kl in cfg["kl_levels"] for rate in cfg["rates"] if kl + low <= rate <= kl + high]


def level_plan(cfg: dict, kl_bits: int) -> list[tuple[int, str, int, int]]:
    """Runs of one KL level, ``(rate, coder, log2 J, log2 N)``: ORC at ``N = 2^rate`` within its
    compute cap; where ``rate`` exceeds the same-budget ``N`` (``2^claim_log2_n``), the gap-matched
    ORC proxy (see :func:`family_study`); SP-ORC for each ``log2 N`` of the grid below ``rate`` (at
    most 64 bin bits), every policy."""
    base = cfg["claim_log2_n"]
    plan = []
    for kl, rate in pairs(cfg):
        if kl != kl_bits:
            continue
        if rate <= cfg["orc_max_log2_n"]:
            plan.append((rate, "orc", 0, rate))
        if rate > base and kl_bits - (rate - base) >= cfg["proxy_min_kl"]:
            plan.append((rate, "orc_proxy", 0, base))
        plan += [(rate, "sp_orc", rate - n, n) for n in cfg["log2_n"] if 0 < rate - n <= 64]
    return plan


def count_runs(cfg: dict) -> int:
    return len(FAMILIES) * sum(1 + sum(len(cfg["policies"]) if coder == "sp_orc" else 1
                                       for _, coder, _, _ in level_plan(cfg, kl))
                               for kl in cfg["kl_levels"])


class Level:
    """Blocks of one family and KL level with their grid statistics, keys and noise floor."""

    def __init__(self, family: str, kl_bits: float, cfg: dict, key: jax.Array):
        prior = block_prior()
        k_train, k_test, k_code, k_floor = jax.random.split(key, 4)
        train = make_blocks(family, kl_bits, cfg["train_blocks"], k_train)
        self.mi = np.asarray(jnp.mean(jaxrec.kl(train, prior, per_dim=True), axis=0), np.float64)
        self.targets = make_blocks(family, kl_bits, cfg["problems"], k_test)
        self.kls = jaxrec.kl(self.targets, prior)
        self.keys = jax.random.split(k_code, cfg["problems"])
        exact = self.targets.loc + self.targets.scale * jax.random.normal(k_floor, self.targets.loc.shape)
        log2_r = jax.vmap(jaxrec.log_ratio, (0, None, 0))(self.targets, prior, exact) / LN2
        self.summary = dict(kl_mean=float(self.kls.mean()), kl_sd=float(self.kls.std()),
                            log2_ratio_sd=float(jnp.std(log2_r - self.kls)), mi_bits=self.mi.round(3).tolist(),
                            floor=noise_floor(self.targets, self.kls, cfg["floor_draws"], k_floor))

    def orc(self, log2_n: int) -> dict:
        num = 2**log2_n
        t0 = time.perf_counter()
        xs = _batched(orc_sampler(num), max(1, min(len(self.keys), 2**24 // num)), self.keys, self.targets)
        stats = bias_stats(xs, self.targets, self.kls)
        return dict(coder="orc", policy=None, log2_j=0, log2_n=log2_n, reweighted_kl=self.summary["kl_mean"],
                    **stats, at_noise_level=at_noise_level(stats, self.summary["floor"]),
                    seconds=time.perf_counter() - t0)

    def sp_orc_samples(self, log2_j: int, log2_n: int, policies: list[str]):
        """The MI grid with ``log2 J`` bits and, per policy, ``(mean KL[Q||P'], decoded samples,
        seconds)``; every policy sees the same blocks and keys."""
        num = 2**log2_n
        prior = block_prior()
        part = jaxrec.partition_from_mi(self.mi, log2_j)
        counts = np.asarray(part.num_intervals)
        sampler = sp_orc_sampler(num, tuple(policies), table_width(counts))
        runs = []
        for i, policy in enumerate(policies):
            kl_prime = jax.vmap(reweighted_kl, (0, None, None, None))(self.targets, prior, part, POLICY_TABLE[policy])
            t0 = time.perf_counter()
            xs = _batched(functools.partial(sampler, jnp.asarray(counts), i),
                          max(1, min(len(self.keys), 2**21 // num)), self.keys, self.targets)
            runs.append((float(np.mean(kl_prime)), xs, time.perf_counter() - t0))
        return counts, runs

    def sp_orc(self, log2_j: int, log2_n: int, policies: list[str]) -> list[dict]:
        counts, runs = self.sp_orc_samples(log2_j, log2_n, policies)
        rows = []
        for policy, (kl_prime, xs, seconds) in zip(policies, runs):
            stats = bias_stats(xs, self.targets, self.kls)
            rows.append(dict(coder="sp_orc", policy=policy, log2_j=log2_j, log2_n=log2_n,
                             num_intervals=counts.tolist(), reweighted_kl=kl_prime,
                             rate_loss=kl_prime - self.summary["kl_mean"] + log2_j, **stats,
                             at_noise_level=at_noise_level(stats, self.summary["floor"]), seconds=seconds))
        return rows


def family_study(family: str, cfg: dict, key: jax.Array, bar: tqdm) -> dict:
    """Every run of :func:`level_plan` for one family.

    Per KL level ``K``: ``same_budget_orc`` is ORC at ``N = 2^claim_log2_n`` (the paper's
    comparison); ``rates[R]`` lists the runs at message length ``R``.  ORC at ``R`` bits needs
    ``2^R`` candidates, so past the compute cap it is replaced by the **gap-matched proxy**
    ``orc_proxy``: ORC with ``N = 2^claim_log2_n`` on blocks of the same family at
    ``KL = K - (R - claim_log2_n)``, i.e. the same ``KL - log2 N``.  ORC's bias is governed by
    that gap and by the spread of ``log2 r`` under Q (Chatterjee & Diaconis, Ann. Appl. Probab.
    2018; Theis & Yosri, ICML 2022), which stays nearly constant across levels of a family
    (``log2_ratio_sd``); where both run (``R = 20``) the proxy can be checked against ORC.
    """
    base = cfg["claim_log2_n"]
    levels = {}
    for kl_bits in cfg["kl_levels"]:
        plan = level_plan(cfg, kl_bits)
        if not plan:
            continue
        level = Level(family, kl_bits, cfg, jax.random.fold_in(key, kl_bits))
        out = dict(level.summary, same_budget_orc=level.orc(base), rates={})
        bar.update(1)
        for rate, coder, log2_j, log2_n in plan:
            rows = out["rates"].setdefault(str(rate), [])
            if coder == "orc":
                rows.append(out["same_budget_orc"] if log2_n == base else level.orc(log2_n))
            elif coder == "orc_proxy":
                kl_proxy = kl_bits - (rate - base)
                proxy = Level(family, kl_proxy, cfg, jax.random.fold_in(key, 1000 * rate + kl_bits))
                rows.append(dict(proxy.orc(base), coder="orc_proxy", proxy_kl=kl_proxy,
                                 proxy_kl_mean=proxy.summary["kl_mean"],
                                 proxy_log2_ratio_sd=proxy.summary["log2_ratio_sd"]))
            else:
                new = level.sp_orc(log2_j, log2_n, cfg["policies"])
                rows += new
                bar.update(len(new) - 1)
            bar.update(1)
        levels[str(kl_bits)] = out
    return dict(levels=levels)


def best(rows: list[dict], coder: str, policy: str | None = None) -> dict | None:
    """The split with the smallest absolute log-ratio deficit among ``rows`` of this coder (and
    policy)."""
    rows = [r for r in rows if r["coder"] == coder and (policy is None or r["policy"] == policy)]
    return min(rows, key=lambda r: abs(r["deficit"])) if rows else None


def orc_at_rate(rows: list[dict]) -> dict | None:
    """ORC at ``N = 2^rate``: measured where it ran, else the gap-matched proxy."""
    return best(rows, "orc") or best(rows, "orc_proxy")


def claim_summary(study: dict, cfg: dict) -> dict:
    """The paper's claim at a fixed sample budget ``N = 2^claim_log2_n``, and the equal-rate verdicts.

    ``reference``: ORC at ``KL = log2 N`` with that ``N``.  Per KL level: the smallest message
    length at which SP-ORC with the same ``N`` is no more biased than the reference, and the
    smallest at which it is at noise level; ``largest_kl_no_worse`` over the levels is the KL the
    budget handles.  ``equal_rate``: per (KL, rate), the best SP-ORC (any split and policy) minus ORC
    at that rate (measured or proxy), in bits of deficit (negative: SP-ORC less biased), with the
    combined standard error.
    """
    log2_n = cfg["claim_log2_n"]
    out = {}
    for family, res in study.items():
        ref = res["levels"][str(log2_n)]["same_budget_orc"] if str(log2_n) in res["levels"] else None
        per_kl, equal_rate = {}, {}
        for kl_bits, level in res["levels"].items():
            cands = sorted((r for rows in level["rates"].values() for r in rows
                            if r["coder"] == "sp_orc" and r["log2_n"] == log2_n), key=lambda r: r["log2_j"])
            no_worse = [r for r in cands if ref is not None and abs(r["deficit"]) <= abs(ref["deficit"])]
            noise = [r for r in cands if r["at_noise_level"]]
            per_kl[kl_bits] = dict(
                orc_deficit=level["same_budget_orc"]["deficit"],
                rate_no_worse=(no_worse[0]["log2_j"] + log2_n) if no_worse else None,
                rate_at_noise_level=(noise[0]["log2_j"] + log2_n) if noise else None)
            for rate, rows in level["rates"].items():
                sp, orc = best(rows, "sp_orc"), orc_at_rate(rows)
                if sp is not None and orc is not None:
                    equal_rate[f"{kl_bits}/{rate}"] = dict(
                        sp_minus_orc=sp["deficit"] - orc["deficit"], orc_kind=orc["coder"],
                        se=math.hypot(sp["deficit_se"], orc["deficit_se"]))
        handled = [kl for kl, v in per_kl.items() if v["rate_no_worse"] is not None]
        out[family] = dict(log2_n=log2_n, reference=ref, per_kl=per_kl, equal_rate=equal_rate,
                           largest_kl_no_worse=max(handled, key=float) if handled else None)
    return out


def fmt_row(row: dict | None) -> str:
    if row is None:
        return "–"
    mark = " ✓" if row["at_noise_level"] else ""
    stats = f"{row['deficit']:.2f} ± {row['deficit_se']:.2f} / {row['mmd2']:.4f}{mark}"
    if row["coder"] == "orc":
        return stats
    if row["coder"] == "orc_proxy":
        return f"≈ {stats} (KL {row['proxy_kl']}, N = 2^{row['log2_n']})"
    return f"{row['log2_j']}+{row['log2_n']} (loss {row['rate_loss']:.1f}): {stats}"


def markdown(study: dict, claim: dict, cfg: dict) -> str:
    policies = cfg["policies"]
    lines = ["# SP-ORC against ORC at equal message length", "",
             (f"Blocks of {BLOCK_DIM} dims, {cfg['problems']} per KL level, P = N(0, I); message = log2 J + "
             "log2 N bits. Cells: `log-ratio deficit ± se (bits) / MMD²`, SP-ORC cells prefixed by the best "
             "split `log2 J+log2 N` (smallest |deficit|; SP-ORC splits use log2 N in "
             f"{cfg['log2_n']}); ✓ = at noise level (deficit within the exact-sample mean ± 2 sd, MMD² below mean + 2 sd). "
             f"ORC at R bits needs 2^R candidates: it runs up to 2^{cfg['orc_max_log2_n']}; beyond, `≈` is "
             f"the gap-matched proxy (ORC with N = 2^{cfg['claim_log2_n']} on blocks of the same family whose "
             "KL is lower by as much as the rate is, i.e. the same KL − log2 N). `loss` = KL[Q‖P′] − log2 N − "
             "(KL − rate) = KL[Q‖P′] − KL + log2 J: how much further SP-ORC's KL-to-budget gap is than ORC's at the "
             "same rate (H(Q_B) for q_mass weights)."), ""]
    if cfg.get("reduced"):
        lines += [f"Default (reduced) run: {cfg['reduced']}.", ""]
    for family, res in study.items():
        c = claim[family]
        lines += [f"## {family}", "",
                  "| KL (mean) | rate | ORC, N = 2^rate | " + " | ".join(f"best SP-ORC, {p}" for p in policies)
                  + " |", "|---|---|---|" + "---|" * len(policies)]
        for kl_bits, level in res["levels"].items():
            for rate, rows in level["rates"].items():
                cells = [fmt_row(best(rows, "sp_orc", p)) for p in policies]
                lines.append(f"| {kl_bits} ({level['kl_mean']:.1f}) | {rate} | {fmt_row(orc_at_rate(rows))} | "
                             + " | ".join(cells) + " |")
        ref = c["reference"]
        lines += ["", f"Per KL level: spread of log2 r under Q, exact-sample floor, ORC at the same budget "
                  f"N = 2^{c['log2_n']}, and the smallest message length at which SP-ORC with that N is no more "
                  "biased than ORC at KL = log2 N "
                  + (f"(deficit {ref['deficit']:.2f} bits)" if ref else "(not run)") + " or at noise level:", "",
                  ("| KL | sd log2 r | floor deficit | floor MMD² | ORC, same N | SP-ORC rate, no worse | "
                   "SP-ORC rate, noise level |"), "|---|---|---|---|---|---|---|"]
        for kl_bits, level in res["levels"].items():
            fl, v = level["floor"], c["per_kl"][kl_bits]
            lines.append(f"| {kl_bits} | {level['log2_ratio_sd']:.1f} | {fl['deficit']['mean']:.2f} ± "
                         f"{fl['deficit']['sd']:.2f} | {fl['mmd2']['mean']:.4f} ± {fl['mmd2']['sd']:.4f} | "
                         f"{fmt_row(level['same_budget_orc'])} | {v['rate_no_worse'] or '> grid'} | "
                         f"{v['rate_at_noise_level'] or '> grid'} |")
        largest = c["largest_kl_no_worse"]
        lines += ["", f"Largest KL level at which SP-ORC with N = 2^{c['log2_n']} is no more biased than ORC at KL "
                  f"{c['log2_n']} (any rate in the grid): "
                  + (f"{largest} bits ({int(largest) / c['log2_n']:.1f}×)." if largest else "none."), ""]
    lines += ["## Every run", "", ("| family | KL | rate | coder | policy | log2 J | log2 N | KL[Q‖P′] | "
                                   "deficit | se | MMD² | noise level | s |"),
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for family, res in study.items():
        for kl_bits, level in res["levels"].items():
            for rate, rows in level["rates"].items():
                for r in rows:
                    coder = f"orc_proxy (KL {r['proxy_kl']})" if r["coder"] == "orc_proxy" else r["coder"]
                    lines.append(f"| {family} | {kl_bits} | {rate} | {coder} | {r['policy'] or '–'} | "
                                 f"{r['log2_j']} | {r['log2_n']} | {r['reweighted_kl']:.2f} | {r['deficit']:.2f} | "
                                 f"{r['deficit_se']:.2f} | {r['mmd2']:.4f} | {'yes' if r['at_noise_level'] else 'no'} "
                                 f"| {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(study: dict, cfg: dict, update: bool, suffix: str = "") -> None:
    fig, axes = plt.subplots(1, len(study), figsize=(6.5 * len(study), 4.8), squeeze=False)
    for ax, (family, res) in zip(axes[0], study.items()):
        for i, (kl_bits, level) in enumerate(res["levels"].items()):
            color = f"C{i}"
            rates = list(level["rates"])
            for policy, style in zip(cfg["policies"], ("-", "--", ":")):
                pts = [(rate, best(level["rates"][rate], "sp_orc", policy)) for rate in rates]
                pts = [(int(rate), r["deficit"]) for rate, r in pts if r is not None]
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", color=color, label=f"KL {kl_bits}: SP-ORC {policy}")
            for coder, marker, label in (("orc", "s", "ORC"), ("orc_proxy", "^", "ORC (proxy)")):
                pts = [(rate, best(level["rates"][rate], coder)) for rate in rates]
                pts = [(int(rate), r["deficit"]) for rate, r in pts if r is not None]
                if pts:
                    ax.plot(*zip(*pts), marker, color=color, markersize=9, markerfacecolor="none",
                            label=f"KL {kl_bits}: {label}")
            floor = level["floor"]["deficit"]
            ax.axhline(floor["mean"] + 2 * floor["sd"], color=color, lw=0.6, alpha=0.5)
        ax.set_xlabel("message bits  log2 J + log2 N")
        ax.set_ylabel("log2-ratio deficit of the best split (bits)")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(f"{family} (thin lines: exact-sample mean + 2 sd)")
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save_figure(NAME, f"equal_rate{suffix}.png", fig, update=update, dpi=120)
    plt.close(fig)


def log_ratio_pit(xs: np.ndarray, level: Level, key: jax.Array, num_exact: int = 2000) -> np.ndarray:
    """Per block, the probability integral transform ``u_b = P_{Q_b}[log r_b(X) < log r_b(x_b)]``
    (estimated from ``num_exact`` exact samples): ``Uniform(0, 1)`` for exact samples.  Two-sided,
    unlike the deficit: ``mean u < 1/2`` means the sample under-covers Q's high-ratio core (the usual
    ORC bias), ``> 1/2`` that it concentrates there."""
    prior = block_prior()
    shape = (level.targets.loc.shape[0], num_exact, BLOCK_DIM)
    exact = level.targets.loc[:, None] + level.targets.scale[:, None] * jax.random.normal(key, shape)
    log_r = jax.vmap(lambda q, x: jaxrec.log_ratio(q, prior, x))
    return np.asarray(jnp.mean(log_r(level.targets, exact) < log_r(level.targets, jnp.asarray(xs))[:, None], axis=1))


def policy_study(cfg: dict, key: jax.Array, bar: tqdm) -> list[dict]:
    """Candidate bin-weight policies against ``"q_mass"`` on the equal-rate study's own blocks and
    keys (the same :class:`Level` seeds), at the splits in ``cfg["policy_study"]``: deficit, MMD²,
    the per-block paired deficit difference to ``"q_mass"`` (mean and standard error) and the mean
    log-ratio PIT (:func:`log_ratio_pit`; 0.5 ± 0.29/sqrt(blocks) for exact samples)."""
    policies = ["q_mass", "sup_ratio", *CANDIDATE_POLICIES]
    out = []
    for family, kl_bits, log2_j, log2_n in cfg["policy_study"]:
        family_key = jax.random.fold_in(key, FAMILIES.index(family))
        level = Level(family, kl_bits, cfg, jax.random.fold_in(family_key, kl_bits))
        _, runs = level.sp_orc_samples(log2_j, log2_n, policies)
        base = deficits(runs[0][1], level.targets, level.kls)
        for policy, (kl_prime, xs, _) in zip(policies, runs):
            diff = deficits(xs, level.targets, level.kls) - base
            pit = log_ratio_pit(xs, level, jax.random.fold_in(family_key, 7))
            out.append(dict(family=family, kl=kl_bits, log2_j=log2_j, log2_n=log2_n, policy=policy,
                            reweighted_kl=kl_prime, **bias_stats(xs, level.targets, level.kls),
                            paired_diff=float(diff.mean()), paired_diff_se=float(diff.std(ddof=1) / math.sqrt(diff.size)),
                            pit_mean=float(pit.mean())))
            bar.update(1)
    return out


def policy_markdown(rows: list[dict]) -> str:
    lines = ["## Bin-weight policies (paired: same blocks and keys)", "",
             ("| family | KL | log2 J + log2 N | policy | KL[Q‖P′] | deficit ± se | MMD² | deficit − q_mass (paired) "
              "| mean PIT of log r (exact 0.5) |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['kl']} | {r['log2_j']}+{r['log2_n']} | {r['policy']} | "
                     f"{r['reweighted_kl']:.2f} | {r['deficit']:.2f} ± {r['deficit_se']:.2f} | {r['mmd2']:.4f} | "
                     f"{r['paired_diff']:+.2f} ± {r['paired_diff_se']:.2f} | {r['pit_mean']:.3f} |")
    return "\n".join(lines) + "\n"


def equal_rate_study(cfg: dict, key: jax.Array, bar: tqdm) -> dict:
    return {family: family_study(family, cfg, jax.random.fold_in(key, i), bar) for i, family in enumerate(FAMILIES)}


def main() -> None:
    args = parse_args()
    device = jax.devices(args.device)[0] if args.device else jax.devices()[0]
    with jax.default_device(device):
        run_parts(args, device)


def run_parts(args: argparse.Namespace, device: jax.Device) -> None:
    """The parts ``args.part`` on ``device``; files ``results[-<backend>][-quick].{json,md}`` and
    ``equal_rate[...].png`` (CPU results keep the plain names)."""
    cfg = dict(FULL if args.full else QUICK if args.quick else DEFAULT)
    if not args.full:
        print(f"{'quick' if args.quick else 'default'} run, reduced grid: {REDUCED}; use --full for the complete grid",
              flush=True)
    suffix = ("" if device.platform == "cpu" else f"-{device.platform}") + ("-quick" if args.quick else "")
    key = jax.random.key(args.seed)
    results = dict(config=dict(cfg, full=args.full, quick=args.quick, seed=args.seed, reduced=None if args.full else REDUCED),
                   device=str(device), backend=device.platform)
    name = f"results{suffix}.json"
    previous = [p for p in (results_dir(NAME) / LATEST / name, results_dir(NAME) / name) if p.exists()]
    if previous and args.part != "all":  # keep the other parts' last numbers
        old = json.loads(previous[0].read_text())
        results.update({k: old[k] for k in ("exact", "equal_rate", "claim", "policies") if k in old})
    parts = dict(exact=(1 + len(cfg["sp_chunks"])), equal_rate=count_runs(cfg),
                 policies=len(cfg["policy_study"]) * (2 + len(CANDIDATE_POLICIES)))
    run = {"all": ("exact", "equal_rate"), "exact": ("exact",), "equal-rate": ("equal_rate",),
           "policies": ("policies",)}[args.part]
    with tqdm(total=sum(parts[p] for p in run), desc="bench_sp") as bar:
        if "exact" in run:
            results["exact"] = exact_benchmark(cfg, key, bar)
        if "equal_rate" in run:
            results["equal_rate"] = equal_rate_study(cfg, jax.random.fold_in(key, 2), bar)
            results["claim"] = claim_summary(results["equal_rate"], cfg)
        if "policies" in run:
            results["policies"] = policy_study(cfg, jax.random.fold_in(key, 2), bar)
    save_json(NAME, name, results, update=args.update)
    if "equal_rate" in results:
        table = markdown(results["equal_rate"], results["claim"], results["config"])
        if "policies" in results:
            table += "\n" + policy_markdown(results["policies"])
        save_text(NAME, f"results{suffix}.md", table, update=args.update)
        plot(results["equal_rate"], results["config"], args.update, suffix)
        print(table)
    if "exact" in results:
        print(json.dumps(results["exact"], indent=1))


if __name__ == "__main__":
    main()
