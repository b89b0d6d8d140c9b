"""What each part of SP-PFR's chunk costs per candidate, added one at a time to a PFR-like chunk.

    python tools/sp_chunk_parts.py                    # D = 25, J_d = 2 on every axis and the paper's grid
    python tools/sp_chunk_parts.py --dim 5 --chunk 256
    python tools/sp_chunk_parts.py --lanes 64 --chunk 128   # encode_batch's shape: vmapped lanes

Pin it to one core for stable numbers (``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1" taskset -c 1 python tools/sp_chunk_parts.py``). Each level is one
jitted ``fori_loop`` over chunks of ``--chunk`` candidates (no search around it: no stop rule, no
running argmax beyond a max, no payload), timed best of five; with ``--lanes L`` the chunk is
``vmap``-ped over ``L`` lanes of distinct keys (the shape of ``encode_batch``'s steps, whose costs
differ: XLA fuses the batched program differently); a level adds one part of
:func:`jaxrec.coders.sp._sp_pfr.sp_chunk_fn` to the one before:

0. PFR's chunk: one private word (the arrival time, exact fixed-point sums) and the candidate
   stream's log ratios (:func:`jaxrec.core.prng.stream_log_ratio`);
1. the bin draws: ``draw_words`` more private words and :func:`~jaxrec.coders.sp.partition.sample_bins`;
2. the bin weights ``log(J pi_j)`` in the score;
3. the visit counts (packed bins, counter slots, :class:`~jaxrec.coders.sp._sp_pfr.VisitCounts`) as
   the points' indices;
4. the points drawn in their bins from the labelled bin streams instead of PFR's candidate stream:
   the whole SP-PFR chunk, :func:`~jaxrec.coders.sp._sp_pfr.sp_chunk_fn` itself.

Differences between levels are what a part costs inside the fused program, which is not always what
it costs alone (XLA fuses differently around a sort or a gather), and the levels below 4 compute
wrong codes: this is a profile, not a coder.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxrec
from jaxrec.coders.sp import _sp_pfr as sp
from jaxrec.coders.sp.partition import (
    Partition,
    axis_tables,
    draw_words,
    log_scaled_bin_weights,
    sample_bins,
)
from jaxrec.core import arrivals, prng

LEVELS = ("PFR chunk", "+ bin draws", "+ bin weights", "+ visit counts", "+ in-bin points (SP-PFR)")


def level_fn(level: int, key, target, prior, part: Partition, counters: int):
    """``(state, ns, tables) -> (scores, bounds, state)``: the chunk at ``level`` (see the module
    docstring); state: the arrival-time limbs and the visit counters, carried from chunk to chunk."""
    if level == len(LEVELS) - 1:  # the library's own chunk function, as SP-PFR's search runs it
        count_visits = lambda visits, packed, ns: visits.assign(sp.counter_slots(part, packed, counters), ns)
        log_ratios = functools.partial(sp.bin_log_ratios, labelled=sp.labelled_streams(part, True))
        sp_chunk = sp.sp_chunk_fn(key, target, prior, part, count_visits, log_ratios)

        def whole(state, ns, tables):
            scores, bounds, _, (base, visits, _) = sp_chunk((*state, tables), ns)
            return scores, bounds, (base, visits)

        return whole
    drawn = part.drawn_axes()
    bin_words = draw_words(drawn, part.max_intervals) if level >= 1 else 0
    candidates, private = prng.candidate_stream(key), prng.private_stream(key)

    def chunk(state, ns, tables):
        base, visits = state
        words = prng.counter_words(private, ns, 1 + bin_words)
        bins = sample_bins(tables, words[1:], drawn) if level >= 1 else None
        extra = 0.0
        if level == 1:
            extra = bins[0].astype(prior.dtype)  # keep the draws alive
        elif level >= 2:
            extra = -log_scaled_bin_weights(tables, part, bins)
        index = ns
        if level >= 3:
            packed = part.pack_columns(bins)
            index, visits = visits.assign(sp.counter_slots(part, packed, counters), ns)
        log_r = prng.stream_log_ratio(candidates, index, target, prior)
        log_t, base = arrivals.log_arrival_times(base, arrivals.increments_from_words(words[0]), prior.dtype)
        return log_r + extra - log_t, tables.log_bound - log_t, (base, visits)

    return chunk


def looped(level: int, part: Partition, counters: int, chunk: int, loops: int, lanes: int):
    """A jitted ``fori_loop`` of the level's chunk over ``loops`` chunks ``i * chunk + [0, chunk)``
    on each of ``lanes`` keys (``vmap``-ped; ``keys``: ``lanes`` typed keys), keeping each lane's
    best score less its smallest bound (what a search reads of them)."""

    @jax.jit
    def run(keys, target, prior, tables):
        def lane(key, state, i):
            scores, bounds, state = level_fn(level, key, target, prior, part, counters)(
                state, i * chunk + jnp.arange(chunk, dtype=jnp.int32), tables
            )
            return state, jnp.max(scores) - jnp.min(bounds)

        def step(i, carry):
            state, best = carry
            state, lane_best = jax.vmap(lane, in_axes=(0, 0, None))(keys, state, i)
            return state, jnp.maximum(best, lane_best)

        init = jax.vmap(lambda key: (arrivals.zero_time(), sp.VisitCounts.empty(counters)))(keys)
        return lax.fori_loop(0, loops, step, (init, jnp.full(lanes, -jnp.inf, jnp.float32)))[1]

    return run


def time_levels(dim: int, bits: np.ndarray, chunk: int, loops: int, lanes: int) -> list[float]:
    """ns per candidate of each level for one grid (``bits``: ``log2 J_d`` per axis)."""
    rng = np.random.default_rng(0)
    target = jaxrec.DiagGaussian(jnp.asarray(rng.normal(0, 0.3, dim), jnp.float32), jnp.full(dim, 0.6, jnp.float32))
    prior = jaxrec.DiagGaussian(jnp.zeros(dim, jnp.float32), jnp.ones(dim, jnp.float32))
    part = Partition.from_bits(bits)
    tables = axis_tables(target, prior, part, "sup_ratio")
    counters = sp.fitted_table_size(part, 4096)
    keys = jax.random.split(jax.random.key(0), lanes)
    runs = [looped(level, part, counters, chunk, loops, lanes) for level in range(len(LEVELS))]
    for run in runs:
        run(keys, target, prior, tables).block_until_ready()  # compile
    best = [float("inf")] * len(runs)
    for _ in range(5):  # interleaved rounds, fastest counts
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run(keys, target, prior, tables).block_until_ready()
            best[i] = min(best[i], time.perf_counter() - start)
    return [t / (loops * chunk * lanes) * 1e9 for t in best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=25)
    parser.add_argument("--chunk", type=int, default=1024, help="candidates per chunk (default 1024, bench_throughput's single)")
    parser.add_argument("--loops", type=int, default=200, help="chunks per lane and timed call")
    parser.add_argument("--lanes", type=int, default=1, help="lanes vmapped over distinct keys (default 1; encode_batch: 64 x 128)")
    parser.add_argument("--split", type=int, default=6, help="split axes of the paper's grid (default 6: D = 25 at KL 6)")
    args = parser.parse_args()
    grids = {"J_d = 2": np.ones(args.dim, int), f"{args.split} axes of J_d = 2": (np.arange(args.dim) < args.split).astype(int)}
    results = {name: time_levels(args.dim, bits, args.chunk, args.loops, args.lanes) for name, bits in grids.items()}
    shape = f"{args.lanes} vmapped lanes x {args.chunk}" if args.lanes > 1 else f"chunks of {args.chunk}"
    print(f"D = {args.dim}, {shape}, ns per candidate (difference to the level above):")
    print("| level | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for i, name in enumerate(LEVELS):
        cells = [f"{r[i]:.1f}" + ("" if i == 0 else f" ({r[i] - r[i - 1]:+.1f})") for r in results.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
