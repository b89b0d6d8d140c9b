"""Benchmark numbers for space-partitioning REC (issue 3, item 5) on 5-D Gaussians.

1. **Exact coding at D_inf ~ 16 bits**: PFR against SP-PFR (``"sup_ratio"`` weights), mean steps
   and wall time per problem.  Targets ``Q = N(mu, diag sigma^2)`` with equal per-axis MI
   (``sigma_d = 2^{-I/5}``) and ``mu_d ~ N(0, 1 - sigma_d^2)`` (``P = N(0, I)`` is the marginal),
   kept when ``D_inf[Q||P]`` lies in ``[15.5, 16.5]`` bits; the partition has ``log2 J = round(I)``
   bits allocated by MI.  Each problem is encoded by a jitted, un-batched encoder (compiled once,
   timed after a warm-up), so the time is per problem.

2. **Fixed budget N = 2^16**: pooled MMD (RBF, standardized coordinates) between encoded samples
   and Q for ORC at ``KL = I = 16`` bits and SP-ORC at larger KL, with the SP-ORC message kept at
   ``log2 J + log2 N = I`` bits (``log2 J = I - 16``: the same "one candidate per bit" budget as
   ORC's ``N = 2^KL``).  Reported: the largest KL whose MMD is no worse than ORC's at 16 bits.

Writes ``experiments/results/bench_sp/results.json``.

    python experiments/bench_sp.py           # default (a few minutes on 2 CPU cores)
    python experiments/bench_sp.py --full    # more problems and KL levels
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import jaxrec
from jaxrec import coding
from jaxrec.distributions import mmd2_to_gaussian
from jaxrec.partition import partition_from_mi

DIM = 5
OUT = pathlib.Path(__file__).resolve().parent / "results" / "bench_sp"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    return parser.parse_args()


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
    part = partition_from_mi(np.full(DIM, level / DIM), int(round(level)), max_intervals=64)
    pfr = jaxrec.pfr(chunk_size=1024, max_steps=2**26)
    encoders = {"pfr": jax.jit(lambda k, q: pfr.encode(k, q, prior))}
    for chunk in cfg["sp_chunks"]:
        coder = jaxrec.sp_pfr(part, chunk_size=chunk, max_steps=2**26)
        encoders[f"sp_pfr_chunk{chunk}"] = jax.jit(lambda k, q, c=coder: c.encode(k, q, prior))
    out = dict(mi_bits=level, dinf=dict(mean=float(dinf[keep].mean()), min=float(dinf[keep].min()),
                                         max=float(dinf[keep].max())),
               num_intervals=np.asarray(part.num_intervals).tolist(), problems=len(keep),
               dinf_prime_mean=float(np.mean(np.asarray(
                   jax.vmap(jaxrec.partition.reweighted_dinf, (0, None, None, None))(targets, prior, part, "sup_ratio")))))
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


def pooled_mmd(xs: np.ndarray, targets: jaxrec.DiagGaussian) -> float:
    z = (jnp.asarray(xs) - targets.loc) / targets.scale
    return float(mmd2_to_gaussian(z, jaxrec.DiagGaussian(jnp.zeros(DIM), jnp.ones(DIM))))


def budget_benchmark(cfg: dict, key: jax.Array, bar: tqdm) -> dict:
    prior = jaxrec.DiagGaussian(jnp.zeros(DIM), jnp.ones(DIM))
    num, runs, batch = cfg["num_samples"], cfg["mmd_runs"], cfg["batch"]
    log2_n = int(np.log2(num))

    def encode_decode(coder):
        def one(k, q):
            code = coder.encode(k, q, prior)
            return code, coder.decode(k, code, prior)

        return jax.jit(jax.vmap(one))

    def samples(fn, targets, keys):
        """(codes, decoded samples) for all runs, ``batch`` problems at a time."""
        parts = [fn(keys[i:i + batch], jax.tree.map(lambda l: l[i:i + batch], targets)) for i in range(0, runs, batch)]
        return jax.tree.map(lambda *leaves: np.concatenate(leaves), *parts)

    out = dict(num_samples=num, runs=runs, levels={})
    key, k_q, k_c = jax.random.split(key, 3)
    targets = equal_mi_targets(float(log2_n), runs, k_q)
    keys = jax.random.split(k_c, runs)
    out["orc_kl_mean"] = float(np.mean(np.asarray(jax.vmap(jaxrec.kl, (0, None))(targets, prior))))
    t0 = time.perf_counter()
    orc = pooled_mmd(samples(encode_decode(jaxrec.orc(num)), targets, keys)[1], targets)
    out["orc_at_log2n"] = dict(kl_bits=log2_n, mmd2=orc, seconds=time.perf_counter() - t0)
    exact = targets.loc + targets.scale * jax.random.normal(jax.random.fold_in(k_c, 1), targets.loc.shape)
    out["exact_mmd2"] = pooled_mmd(np.asarray(exact), targets)
    bar.update(1)
    for level in cfg["kl_levels"]:
        key, k_q, k_c = jax.random.split(key, 3)
        targets = equal_mi_targets(float(level), runs, k_q)
        keys = jax.random.split(k_c, runs)
        row = dict(kl_mean=float(np.mean(np.asarray(jax.vmap(jaxrec.kl, (0, None))(targets, prior)))))
        for rule, bits in (("log2J=KL-log2N", level - log2_n), ("log2J=KL", level)):
            if bits < 0:
                continue
            part = partition_from_mi(np.full(DIM, level / DIM), int(bits), max_intervals=2 ** int(np.ceil(bits / DIM)))
            t0 = time.perf_counter()
            codes, xs = samples(encode_decode(jaxrec.sp_orc(part, num)), targets, keys)
            log2_j = float(part.log2_num_bins)
            alpha = coding.zipf_exponent(coding.sp_index_budget_bits(level, log2_j))
            bits = np.asarray(coding.sp_ideal_bits(codes.index, np.asarray(part.num_intervals), alpha))
            row[rule] = dict(log2_num_bins=log2_j, mmd2=pooled_mmd(xs, targets),
                             ideal_bits_zipf_index=float(bits.mean()), fixed_length_bits=log2_j + log2_n,
                             reweighted_kl_mean=float(np.mean(np.asarray(jax.vmap(
                                 jaxrec.partition.reweighted_kl, (0, None, None, None))(targets, prior, part, "q_mass")))),
                             seconds=time.perf_counter() - t0)
        out["levels"][level] = row
        bar.update(1)
    for rule in ("log2J=KL-log2N", "log2J=KL"):
        ok = [lvl for lvl, row in out["levels"].items() if rule in row and row[rule]["mmd2"] <= orc]
        out[f"largest_kl_no_worse_than_orc[{rule}]"] = max(ok) if ok else None
    return out


def main() -> None:
    args = parse_args()
    cfg = dict(exact_level=12.4, exact_problems=100 if args.full else 30, sp_chunks=[64, 256],
               num_samples=2**16, mmd_runs=2000 if args.full else 500, batch=50,
               kl_levels=[16, 24, 32, 40, 48, 56, 64] if args.full else [16, 32, 48, 64])
    args.out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(args.seed)
    with tqdm(total=1 + len(cfg["sp_chunks"]) + 1 + len(cfg["kl_levels"]), desc="bench_sp") as bar:
        exact = exact_benchmark(cfg, key, bar)
        budget = budget_benchmark(cfg, jax.random.fold_in(key, 2), bar)
    results = dict(config=dict(cfg, full=args.full, seed=args.seed), exact=exact, budget=budget,
                   device=str(jax.devices()[0]))
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
