"""PFR encode throughput against the bare-kernel roofline of the same machine.

For each event size D it measures, in one run:

* **roofline**: a jitted ``fori_loop`` that only generates candidates (``jaxrec.prng.candidates``)
  and their log density ratios, chunk after chunk, keeping a running max -- the work any
  search must do, with no search bookkeeping (target and prior passed as arguments, as to
  ``encode``), at the single search's chunk size;
* **batch roofline**: the same kernel ``vmap``-ed over as many distinct problems (keys and
  targets) as ``encode_batch`` has lanes, each at the lane width -- the candidates a batch
  encoder generates per iteration (the flat one-problem kernel at that size is in the JSON too);
* **single**: ``pfr.encode`` on one problem at a time (a few keys, ``D_inf`` set so that a
  search takes about 2^20 candidates), best of 3 runs per key;
* **batch**: 1024 problems at ``D_inf = 10`` bits, once as ``jax.vmap(pfr.encode)`` (every lane
  runs until the slowest stops) and once as ``jaxrec.encode_batch`` (lanes refill from a work
  queue and widen in the tail; its default schedule unless ``--lane-chunk``/``--lanes``).

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
from jaxrec.coders.scan import DEFAULT_CANDIDATES_IN_FLIGHT, DEFAULT_LANE_CHUNK

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


def timed(fn, *args, repeats: int = 5):
    jax.block_until_ready(fn(*args))  # compile and warm up
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best, out


def roofline(dim: int, chunk: int, num_chunks: int, problems: int = 1) -> float:
    """Candidates per second of the bare generate-and-score kernel.

    ``problems == 1``: one key and one target, ``chunk`` candidates per iteration (the roofline of
    a single ``encode``).  ``problems > 1``: ``vmap`` of that kernel over ``problems`` distinct
    keys and targets, ``problems * chunk`` candidates per iteration -- the same candidates a batch
    encoder generates with that many lanes of that width (every problem has its own key schedule
    and its own log-ratio parameters, which costs more per candidate than one shared problem).

    ``target`` and ``prior`` are arguments of the jitted kernel, as they are of ``encode``: baked
    in as constants, XLA would fold the per-problem parts of the log ratio (``log scale``, the
    reciprocals) into the program, a shortcut no encoder of runtime targets can take.
    """

    def one(key, target, prior):
        def body(i, best):
            ns = i * chunk + jnp.arange(chunk, dtype=jnp.int32)
            log_r = jaxrec.log_ratio(target, prior, prng.candidates(key, ns, prior))
            return jnp.maximum(best, jnp.max(log_r))

        return jax.lax.fori_loop(0, num_chunks, body, -jnp.inf)

    if problems == 1:
        target, prior = problem(dim, 10.0)
        seconds, _ = timed(jax.jit(one), prng.as_key(0), target, prior)
    else:
        targets, prior = problem(dim, 10.0, batch=problems)
        keys = jax.random.split(prng.as_key(0), problems)
        seconds, _ = timed(jax.jit(jax.vmap(one, in_axes=(0, 0, None))), keys, targets, prior)
    return problems * chunk * num_chunks / seconds


def single_throughput(dim: int, dinf_bits: float, chunk: int, num_keys: int, repeats: int = 3) -> tuple[float, float]:
    """Candidates/s of ``pfr.encode`` on one problem: total steps over the summed best-of-``repeats``
    time of each key (this shared 2-core machine has noisy neighbours; the minimum is the
    machine's own speed)."""
    target, prior = problem(dim, dinf_bits)
    encode = jax.jit(jaxrec.pfr(chunk_size=chunk).encode)
    keys = jax.random.split(prng.as_key(1), num_keys)
    steps, seconds = 0, 0.0
    for key in keys:
        best, code = timed(encode, key, target, prior, repeats=repeats)
        seconds += best
        steps += int(code.steps)
    return steps / seconds, steps / num_keys


def batch_throughput(dim: int, dinf_bits: float, batch: int, lane_chunk: int, lanes: int) -> dict:
    targets, prior = problem(dim, dinf_bits, batch=batch)
    keys = jax.random.split(prng.as_key(2), batch)
    coder = jaxrec.pfr(chunk_size=lane_chunk)
    vmapped = jax.jit(jax.vmap(coder.encode, in_axes=(0, 0, None)))
    queued = jax.jit(lambda k, q, p: jaxrec.encode_batch(coder, k, q, p, num_lanes=lanes, lane_chunk_size=lane_chunk))
    t_vmap, codes_vmap = timed(vmapped, keys, targets, prior, repeats=1)
    t_queue, codes_queue = timed(queued, keys, targets, prior, repeats=5)
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
    parser.add_argument("--lane-chunk", type=int, default=DEFAULT_LANE_CHUNK, help="encode_batch lane width")
    parser.add_argument("--lanes", type=int, default=None, help="encode_batch lanes (default: its own)")
    parser.add_argument("--dims", type=int, nargs="+", default=[5, 64])
    args = parser.parse_args()
    lanes = args.lanes or max(1, DEFAULT_CANDIDATES_IN_FLIGHT // args.lane_chunk)
    backend = jax.default_backend()
    single_bits = {5: 20.0, 64: 18.0} if not args.quick else {5: 14.0, 64: 12.0}
    batch_bits = 10.0 if not args.quick else 7.0
    batch = 1024
    roof_iters = 2**21 if not args.quick else 2**18
    rows = []
    for dim in args.dims:
        roof = roofline(dim, args.chunk, roof_iters // args.chunk)
        roof_batch = roofline(dim, args.lane_chunk, roof_iters // (lanes * args.lane_chunk), problems=lanes)
        roof_flat = roofline(dim, lanes * args.lane_chunk, roof_iters // (lanes * args.lane_chunk))
        single, mean_steps = single_throughput(dim, single_bits.get(dim, 16.0), args.chunk, num_keys=4)
        b = batch_throughput(dim, batch_bits, batch, args.lane_chunk, lanes)
        rows.append(
            {
                "D": dim,
                "roofline_cands_per_s": roof,
                "single_dinf_bits": single_bits.get(dim, 16.0),
                "single_mean_steps": mean_steps,
                "single_cands_per_s": single,
                "single_ratio": single / roof,
                "batch": batch,
                "batch_dinf_bits": batch_bits,
                "lanes": lanes,
                "lane_chunk": args.lane_chunk,
                "batch_roofline_cands_per_s": roof_batch,
                "flat_roofline_cands_per_s": roof_flat,
                **b,
                "batch_vmap_ratio": b["vmap_cands_per_s"] / roof_batch,
                "batch_queue_ratio": b["queue_cands_per_s"] / roof_batch,
            }
        )
    header = (
        f"backend: {backend} ({jax.devices()[0].device_kind}); single: chunk_size {args.chunk}; "
        f"batch: {batch} problems, encode_batch on {lanes} lanes x {args.lane_chunk}, vmap(encode) with chunk_size {args.lane_chunk}"
    )
    print(header)
    print(
        "| D | roofline cand/s | single cand/s | single/roof | batch roofline cand/s | batch vmap/roof "
        "| batch encode_batch/roof | batch max/mean steps |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['D']} | {r['roofline_cands_per_s']:.3g} | {r['single_cands_per_s']:.3g} | {r['single_ratio']:.2f} "
            f"| {r['batch_roofline_cands_per_s']:.3g} | {r['batch_vmap_ratio']:.2f} | {r['batch_queue_ratio']:.2f} "
            f"| {r['max_steps'] / (r['sum_steps'] / r['batch']):.1f} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{backend}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
