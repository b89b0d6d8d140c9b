"""PFR encode throughput against the bare-kernel roofline of the same machine.

For each event size D it measures, in one run:

* **roofline**: a jitted ``fori_loop`` that only generates candidates (``jaxrec.prng.candidates``)
  and their log density ratios, chunk after chunk, keeping a running max -- the work any
  search must do, with no search bookkeeping;
* **single**: ``pfr.encode`` on one problem at a time (a few keys, ``D_inf`` set so that a
  search takes about 2^20 candidates);
* **batch**: 1024 problems, once as ``jax.vmap(pfr.encode)`` (every lane runs until the slowest
  stops) and once as ``jaxrec.encode_batch`` (lanes refill from a work queue).

Throughput counts only the candidates the algorithm needs (``sum(code.steps)``), so idle vmap
lanes show up as a low ratio.  Prints a table of candidates/s and achieved / roofline, and writes
``experiments/results/bench_throughput/<backend>.json``.

    python experiments/bench_throughput.py            # CPU (or whatever JAX's default backend is)
    python experiments/bench_throughput.py --quick    # smaller problems, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxrec
from jaxrec import prng

RESULTS = Path(__file__).resolve().parent / "results" / "bench_throughput"


def problem(dim: int, dinf_bits: float, batch: int | None = None, seed: int = 0):
    """``P = N(0, I_D)`` and a target with ``D_inf[Q||P] = dinf_bits`` exactly (centred, equal scales)."""
    scale = 2.0 ** (-dinf_bits / dim)
    shape = (dim,) if batch is None else (batch, dim)
    prior = jaxrec.DiagGaussian(jnp.zeros(dim), jnp.ones(dim))
    # a small random offset keeps problems distinct without changing D_inf much
    rng = np.random.default_rng(seed)
    loc = jnp.asarray(rng.normal(size=shape) * 1e-3, jnp.float32)
    return jaxrec.DiagGaussian(loc, jnp.full(shape, scale, jnp.float32)), prior


def timed(fn, *args, repeats: int = 3):
    jax.block_until_ready(fn(*args))  # compile and warm up
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best, out


def roofline(dim: int, chunk: int, num_chunks: int) -> float:
    """Candidates per second of the bare generate-and-score kernel."""
    target, prior = problem(dim, 10.0)

    @jax.jit
    def kernel(key):
        def body(i, best):
            ns = i * chunk + jnp.arange(chunk, dtype=jnp.int32)
            log_r = jaxrec.log_ratio(target, prior, prng.candidates(key, ns, prior))
            return jnp.maximum(best, jnp.max(log_r))

        return jax.lax.fori_loop(0, num_chunks, body, -jnp.inf)

    seconds, _ = timed(kernel, prng.as_key(0))
    return chunk * num_chunks / seconds


def single_throughput(dim: int, dinf_bits: float, chunk: int, num_keys: int) -> tuple[float, float]:
    target, prior = problem(dim, dinf_bits)
    encode = jax.jit(jaxrec.pfr(chunk_size=chunk).encode)
    keys = jax.random.split(prng.as_key(1), num_keys)
    jax.block_until_ready(encode(keys[0], target, prior))
    steps, seconds = 0, 0.0
    for key in keys:
        t0 = time.perf_counter()
        code = jax.block_until_ready(encode(key, target, prior))
        seconds += time.perf_counter() - t0
        steps += int(code.steps)
    return steps / seconds, steps / num_keys


def batch_throughput(dim: int, dinf_bits: float, batch: int, chunk: int, lanes: int) -> dict:
    targets, prior = problem(dim, dinf_bits, batch=batch)
    keys = jax.random.split(prng.as_key(2), batch)
    coder = jaxrec.pfr(chunk_size=chunk)
    vmapped = jax.jit(jax.vmap(coder.encode, in_axes=(0, 0, None)))
    queued = jax.jit(lambda k, q, p: jaxrec.encode_batch(coder, k, q, p, num_lanes=lanes))
    t_vmap, codes_vmap = timed(vmapped, keys, targets, prior, repeats=1)
    t_queue, codes_queue = timed(queued, keys, targets, prior, repeats=2)
    assert np.array_equal(codes_vmap.index, codes_queue.index), "encode_batch must equal vmap(encode)"
    steps = int(jnp.sum(codes_queue.steps))
    return {
        "sum_steps": steps,
        "max_steps": int(jnp.max(codes_queue.steps)),
        "vmap_cands_per_s": steps / t_vmap,
        "queue_cands_per_s": steps / t_queue,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller problems (smoke test)")
    parser.add_argument("--chunk", type=int, default=1024, help="chunk size of the single-problem search")
    args = parser.parse_args()
    backend = jax.default_backend()
    single_bits = {5: 20.0, 64: 18.0} if not args.quick else {5: 14.0, 64: 12.0}
    batch_bits = 10.0 if not args.quick else 7.0
    batch = 1024
    rows = []
    for dim in (5, 64):
        roof = roofline(dim, args.chunk, num_chunks=2048 if not args.quick else 256)
        single, mean_steps = single_throughput(dim, single_bits[dim], args.chunk, num_keys=4)
        # encode_batch's default schedule (512-candidate lane chunks, 32 lanes); vmap with the same chunks
        b = batch_throughput(dim, batch_bits, batch, chunk=512, lanes=32)
        rows.append(
            {
                "D": dim,
                "roofline_cands_per_s": roof,
                "single_dinf_bits": single_bits[dim],
                "single_mean_steps": mean_steps,
                "single_cands_per_s": single,
                "single_ratio": single / roof,
                "batch": batch,
                "batch_dinf_bits": batch_bits,
                **b,
                "batch_vmap_ratio": b["vmap_cands_per_s"] / roof,
                "batch_queue_ratio": b["queue_cands_per_s"] / roof,
            }
        )
    header = f"backend: {backend} ({jax.devices()[0].device_kind}), chunk_size {args.chunk}"
    print(header)
    print("| D | roofline cand/s | single cand/s | single/roof | batch vmap/roof | batch queue/roof | batch max/mean steps |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['D']} | {r['roofline_cands_per_s']:.3g} | {r['single_cands_per_s']:.3g} | {r['single_ratio']:.2f} "
            f"| {r['batch_vmap_ratio']:.2f} | {r['batch_queue_ratio']:.2f} "
            f"| {r['max_steps'] / (r['sum_steps'] / r['batch']):.1f} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{backend}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
