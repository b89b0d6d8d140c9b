"""PFR encode throughput against the bare-kernel roofline of the same machine.

For each event size D it measures, in one run:

* **roofline**: a jitted ``fori_loop`` that only generates candidates (``jaxrec.core.prng.candidates``)
  and their log density ratios, chunk after chunk, keeping a running max -- the work any
  search must do, with no search bookkeeping (target and prior passed as arguments, as to
  ``encode``), at the single search's chunk size;
* **batch roofline**: the same kernel ``vmap``-ed over distinct problems (keys and targets) --
  the candidates a batch encoder generates -- in several layouts (problems x candidates: 128 x 64
  up to 8 x 1024, and ``encode_batch``'s own), the fastest of which counts (the flat one-problem
  kernel at ``encode_batch``'s candidates per iteration is in the JSON too);
* **single**: ``pfr.encode`` on one problem at a time (a few keys, ``D_inf`` set so that a
  search takes about 2^20 candidates);
* **batch**: 1024 problems at ``D_inf = 10`` bits, once as ``jax.vmap(pfr.encode)`` (every lane
  runs until the slowest stops) and once as ``jaxrec.encode_batch`` (lanes refill from a work
  queue and widen in the tail; its default schedule unless ``--lane-chunk``/``--lanes``).

All kernels and encoders of one D are timed interleaved, five rounds, fastest run of each (this
shared machine has slow spells).  Throughput counts only the candidates the algorithm needs (``sum(code.steps)``), so idle vmap
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
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxrec
from jaxrec.coders.scan import DEFAULT_CANDIDATES_IN_FLIGHT, DEFAULT_LANE_CHUNK
from jaxrec.core import prng

RESULTS = Path(__file__).resolve().parent / "results" / "bench_throughput"
# (problems, candidates per problem) layouts of the batch roofline kernel; the best one counts
BATCH_ROOFLINE_SHAPES = ((128, 64), (64, 128), (32, 256), (16, 512), (8, 1024))
BATCH = 1024  # problems in the batch


def problem(dim: int, dinf_bits: float, batch: int | None = None, seed: int = 0):
    """``P = N(0, I_D)`` and a target with ``D_inf[Q||P] = dinf_bits`` exactly (centred, equal scales)."""
    scale = 2.0 ** (-dinf_bits / dim)
    shape = (dim,) if batch is None else (batch, dim)
    prior = jaxrec.DiagGaussian(jnp.zeros(dim), jnp.ones(dim))
    # a small random offset keeps problems distinct without changing D_inf much
    rng = np.random.default_rng(seed)
    loc = jnp.asarray(rng.normal(size=shape) * 1e-3, jnp.float32)
    return jaxrec.DiagGaussian(loc, jnp.full(shape, scale, jnp.float32)), prior


def best_times(calls: dict[str, Callable[[], Any]], rounds: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Each call's fastest wall time over ``rounds`` rounds, and its output.

    Every call runs once first (compile and warm-up); then each round runs all of them in turn.
    Interleaving spreads the slow spells of a shared machine over every measurement instead of
    letting one spell hit all repeats of one of them, and the minimum is the machine's own speed.
    """
    outs = {name: jax.block_until_ready(call()) for name, call in calls.items()}
    best = dict.fromkeys(calls, np.inf)
    for _ in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            best[name] = min(best[name], time.perf_counter() - t0)
    return best, outs


def roofline_call(dim: int, chunk: int, num_chunks: int, problems: int = 1) -> tuple[Callable[[], Any], int]:
    """The bare generate-and-score kernel as a call, and the candidates one call generates.

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
        kernel, args = jax.jit(one), (prng.as_key(0), target, prior)
    else:
        targets, prior = problem(dim, 10.0, batch=problems)
        keys = jax.random.split(prng.as_key(0), problems)
        kernel, args = jax.jit(jax.vmap(one, in_axes=(0, 0, None))), (keys, targets, prior)
    return (lambda: kernel(*args)), problems * chunk * num_chunks


def measure(dim: int, args: argparse.Namespace, lanes: int, single_bits: float, batch_bits: float) -> dict:
    """One table row: rooflines, single-problem and batch throughput, measured interleaved."""
    iters = 2**21 if not args.quick else 2**18
    calls, candidates = {}, {}
    calls["roof"], candidates["roof"] = roofline_call(dim, args.chunk, iters // args.chunk)
    in_flight = lanes * args.lane_chunk
    calls["roof_flat"], candidates["roof_flat"] = roofline_call(dim, in_flight, max(1, iters // in_flight))
    # the batch roofline: the fastest layout of the bare per-problem kernel (XLA's CPU code for
    # some (problems, chunk) shapes is much slower than for others; a roofline takes the best)
    shapes = sorted({(lanes, args.lane_chunk)} | set(BATCH_ROOFLINE_SHAPES))
    for p, k in shapes:
        calls[f"roof_batch_{p}x{k}"], candidates[f"roof_batch_{p}x{k}"] = roofline_call(dim, k, iters // (p * k), p)

    target, prior = problem(dim, single_bits)
    encode = jax.jit(jaxrec.pfr(chunk_size=args.chunk).encode)
    for i, key in enumerate(jax.random.split(prng.as_key(1), 4)):
        calls[f"single_{i}"] = lambda key=key: encode(key, target, prior)

    targets, prior = problem(dim, batch_bits, batch=BATCH)
    keys = jax.random.split(prng.as_key(2), BATCH)
    coder = jaxrec.pfr(chunk_size=args.lane_chunk)
    queued = jax.jit(lambda k, q, p: jaxrec.encode_batch(coder, k, q, p, num_lanes=lanes, lane_chunk_size=args.lane_chunk))
    calls["queue"] = lambda: queued(keys, targets, prior)

    seconds, outs = best_times(calls, rounds=5)
    rate = {name: candidates[name] / seconds[name] for name in candidates}
    single_steps = sum(int(outs[f"single_{i}"].steps) for i in range(4))
    single = single_steps / sum(seconds[f"single_{i}"] for i in range(4))

    # vmap(encode) runs ~10x longer than the queue; one timed run is enough to show it
    vmapped = jax.jit(jax.vmap(coder.encode, in_axes=(0, 0, None)))
    t_vmap, vmap_codes = best_times({"vmap": lambda: vmapped(keys, targets, prior)}, rounds=1)
    codes = outs["queue"]
    assert np.array_equal(vmap_codes["vmap"].index, codes.index), "encode_batch must equal vmap(encode)"
    steps = int(jnp.sum(codes.steps))
    roof_batch = max(rate[f"roof_batch_{p}x{k}"] for p, k in shapes)
    return {
        "D": dim,
        "roofline_cands_per_s": rate["roof"],
        "single_dinf_bits": single_bits,
        "single_mean_steps": single_steps / 4,
        "single_cands_per_s": single,
        "single_ratio": single / rate["roof"],
        "batch": BATCH,
        "batch_dinf_bits": batch_bits,
        "lanes": lanes,
        "lane_chunk": args.lane_chunk,
        "batch_roofline_cands_per_s": roof_batch,
        "batch_roofline_by_shape": {f"{p}x{k}": rate[f"roof_batch_{p}x{k}"] for p, k in shapes},
        "flat_roofline_cands_per_s": rate["roof_flat"],
        "sum_steps": steps,
        "max_steps": int(jnp.max(codes.steps)),
        "vmap_cands_per_s": steps / t_vmap["vmap"],
        "queue_cands_per_s": steps / seconds["queue"],
        "batch_vmap_ratio": steps / t_vmap["vmap"] / roof_batch,
        "batch_queue_ratio": steps / seconds["queue"] / roof_batch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller problems (smoke test)")
    parser.add_argument("--chunk", type=int, default=1024, help="chunk size of the single-problem search")
    parser.add_argument("--lane-chunk", type=int, default=DEFAULT_LANE_CHUNK, help="encode_batch lane width")
    parser.add_argument("--lanes", type=int, default=None, help="encode_batch lanes (default: its own)")
    parser.add_argument("--dims", type=int, nargs="+", default=[5, 64])
    parser.add_argument("--batch-bits", type=float, default=None, help="D_inf of the batch problems (default 10)")
    parser.add_argument("--tag", default="", help="suffix of the JSON file name (for extra configurations)")
    args = parser.parse_args()
    lanes = args.lanes or max(1, DEFAULT_CANDIDATES_IN_FLIGHT // args.lane_chunk)
    backend = jax.default_backend()
    single_bits = {5: 20.0, 64: 18.0} if not args.quick else {5: 14.0, 64: 12.0}
    batch_bits = args.batch_bits or (10.0 if not args.quick else 7.0)
    rows = [measure(dim, args, lanes, single_bits.get(dim, 16.0), batch_bits) for dim in args.dims]
    header = (
        f"backend: {backend} ({jax.devices()[0].device_kind}); single: chunk_size {args.chunk}; "
        f"batch: {BATCH} problems, encode_batch on {lanes} lanes x {args.lane_chunk}, vmap(encode) with chunk_size {args.lane_chunk}"
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
    out = RESULTS / f"{backend}{'-quick' if args.quick else ''}{args.tag}.json"
    out.write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
