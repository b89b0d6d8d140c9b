"""Encoder throughput against the bulk-normal limit of the machine, and the per-candidate cost of
the space-partitioning coders against the plain ones.

For each event size D (default 5, 25, 64) one interleaved run times:

* **limit, single**: a jitted ``fori_loop`` over chunks of ``K`` candidates that draws each chunk
  with bulk ``jax.random.normal`` (counter-mode threefry, two 32-bit outputs per hash: the
  cheapest standard stream JAX has), maps it to the prior and adds up the log density ratio,
  keeping a running max -- the work any search must do, with no search bookkeeping and no
  requirement that a candidate be rebuilt alone.  Two layouts, ``(K, D)`` and ``(D, K)``; the
  fastest counts.  ``target``/``prior`` are arguments of the kernel (as of ``encode``), not
  constants XLA could fold;
* **limit, batch**: that kernel ``vmap``-ed over distinct problems (keys and targets), in several
  ``problems x K`` layouts (the batch encoders' own among them); the fastest counts;
* **PFR, ORC single**: ``encode`` of one problem (PFR: a few keys at ``D_inf`` set for about
  ``2^17`` steps; ORC: ``N = 2^17``);
* **PFR, ORC batch**: ``jaxrec.encode_batch`` (refilling lanes) on ``--batch`` problems (PFR at
  ``D_inf = 10`` bits, ORC with ``N = 2^10``);
* **SP-PFR, SP-ORC** (D <= 25): the same four measurements with a partition of ``J_d = 2`` per axis
  (``sup_ratio`` / ``q_mass`` weights), reported as time per candidate against PFR's / ORC's: every
  axis split, the most bin draws and the largest grid (``2^D`` bins, counters shared by a hash at
  D = 25) for a given D -- the stress case, a grid for blocks whose KL is about D bits;
* **SP-PFR, SP-ORC with the paper's grid** (``sp_pfr_rule``, ``sp_orc_rule``): ``log2 J`` = the
  problems' ``D_KL[Q||P]`` rounded, spread over the axes by mutual information
  (:func:`jaxrec.partition_from_mi`, here equal per axis), the rule of He, Flamich &
  Hernandez-Lobato (NeurIPS 2024, Sec. 3 and App. B.2.1) for these targets: at D = 25 their KL is
  about 6 bits (single) and 2 bits (batch), so ``J_d = 2`` on all 25 axes would spend 25 bits on the
  bin alone.  A fitting grid cuts the candidates a problem needs (``D_inf[Q||P']`` falls), so the
  fixed per-problem work (tables, dispatch) weighs more per candidate: the SP tables also give the
  time per problem against the plain coder's.

Throughput counts only the candidates an encoder examines (``sum(code.steps)``).  Every call runs
once (compile, warm-up), then ``--rounds`` rounds run all calls of one D in turn and the fastest
time of each counts: the machine is shared, so interleaving spreads its slow spells over every
measurement; but whole processes come out fast or slow on a shared machine (the same SP-ORC / ORC
ratio at D = 25 measured 1.08 in one process and 2.02 in the next), so ``--processes N`` (default
3) runs the measurement in ``N`` separate processes, one after another, and reports each rate and
ratio as the median over them (the ratios formed within each process), with their range in the
JSON.  Writes ``<backend>[-quick][<tag>].json`` and ``.md`` (``experiments/_results.py``:
``results/bench_throughput/latest/``; ``--update`` also the committed copy).

    python experiments/bench_throughput.py                 # CPU-sized default (2^17 candidates per call)
    python experiments/bench_throughput.py --quick         # smoke test (tiny sizes)
    python experiments/bench_throughput.py --coders pfr sp_pfr --dims 5   # some encoders, some sizes
    python experiments/bench_throughput.py --full          # 2^20 candidates per call
    python experiments/bench_throughput.py --device gpu --full --log2-candidates 24 --chunk 32768 \
        --lanes 1024 --lane-chunk 256 --batch 65536 --processes 1   # accelerator sizes (experiments/accelerator.sh)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _results import add_update_flag, save_json, save_text

import jaxrec
from jaxrec.coders.scan import DEFAULT_CANDIDATES_IN_FLIGHT, DEFAULT_LANE_CHUNK
from jaxrec.core import prng
from jaxrec.core.distributions import log_ratio_by_axis

NAME = "bench_throughput"
SP_MAX_DIM = 25  # SP coders are benchmarked up to this event size (J_d = 2: 2^D bins)
CODERS = ("pfr", "orc", "sp_pfr", "sp_orc", "sp_pfr_rule", "sp_orc_rule")
GRIDS = (("J_d = 2", ""), ("log2 J = KL", "_rule"))  # (the grid's label, its SP coders' name suffix)
# (SP coder, the plain coder it is compared with)
SP_PAIRS = tuple((f"{sp}{suffix}", plain) for _, suffix in GRIDS for sp, plain in (("sp_pfr", "pfr"), ("sp_orc", "orc")))


def problem(dim: int, dinf_bits: float, batch: int | None = None, seed: int = 0):
    """``P = N(0, I_D)`` and targets with ``D_inf[Q||P]`` about ``dinf_bits`` (centred, equal scales)."""
    scale = 2.0 ** (-dinf_bits / dim)
    shape = (dim,) if batch is None else (batch, dim)
    prior = jaxrec.DiagGaussian(jnp.zeros(dim), jnp.ones(dim))
    loc = jnp.asarray(np.random.default_rng(seed).normal(size=shape) * 1e-3, jnp.float32)  # distinct problems
    return jaxrec.DiagGaussian(loc, jnp.full(shape, scale, jnp.float32)), prior


def best_times(calls: dict[str, Callable[[], Any]], rounds: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Each call's fastest wall time over ``rounds`` interleaved rounds, and its output (every
    call runs once first: compile and warm-up)."""
    outs = {name: jax.block_until_ready(call()) for name, call in calls.items()}
    best = dict.fromkeys(calls, np.inf)
    for _ in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            best[name] = min(best[name], time.perf_counter() - t0)
    return best, outs


def limit_kernel(chunk: int, num_chunks: int, axis_major: bool) -> Callable:
    """``(key, target, prior) -> max log ratio`` over ``num_chunks`` bulk-normal chunks of ``chunk``."""

    def run(key, target, prior):
        def body(i, best):
            k = jax.random.fold_in(key, i)
            if axis_major:  # (D, K): the item axis minor
                z = jax.random.normal(k, (prior.event_size, chunk), prior.dtype)
                log_r = log_ratio_by_axis(target, prior, prior.loc[:, None] + prior.scale[:, None] * z)
            else:
                z = jax.random.normal(k, (chunk, prior.event_size), prior.dtype)
                log_r = jaxrec.log_ratio(target, prior, prior.loc + prior.scale * z)
            return jnp.maximum(best, jnp.max(log_r))

        return jax.lax.fori_loop(0, num_chunks, body, -jnp.inf)

    return run


def limit_calls(dim: int, layouts: list[tuple[int, int]], candidates: int) -> dict[str, tuple[Callable, int]]:
    """The bulk-normal limit kernels: ``{name: (call, candidates per call)}`` for ``(problems,
    chunk)`` layouts (``problems == 1``: one problem) in both array layouts."""
    out = {}
    for problems, chunk in layouts:
        num_chunks = max(1, candidates // (problems * chunk))
        for axis_major in (False, True):
            kernel = limit_kernel(chunk, num_chunks, axis_major)
            if problems == 1:
                target, prior = problem(dim, 10.0)
                fn, args = jax.jit(kernel), (prng.as_key(0), target, prior)
            else:
                targets, prior = problem(dim, 10.0, batch=problems)
                keys = jax.random.split(prng.as_key(0), problems)
                fn, args = jax.jit(jax.vmap(kernel, in_axes=(0, 0, None))), (keys, targets, prior)
            name = f"limit_{problems}x{chunk}_{'DK' if axis_major else 'KD'}"
            out[name] = ((lambda fn=fn, args=args: fn(*args)), problems * chunk * num_chunks)
    return out


def rule_partition(dim: int, dinf_bits: float) -> jaxrec.Partition:
    """The paper's grid for :func:`problem`'s targets: ``log2 J = round(D_KL[Q||P])`` bits (at least
    one), spread by mutual information (the per-axis KL, equal across axes here, all of them informative)."""
    target, prior = problem(dim, dinf_bits)
    per_axis = np.full(dim, float(jaxrec.kl(target, prior)) / dim)
    return jaxrec.partition_from_mi(per_axis, max(1, round(float(per_axis.sum()))), informative_threshold=0.0)


def coders(
    dim: int, args: argparse.Namespace, rules: tuple[jaxrec.Partition, jaxrec.Partition]
) -> dict[str, tuple[jaxrec.Coder, jaxrec.Coder]]:
    """``{name: (coder for one problem, coder for batches)}`` for the coders in ``args.coders``
    (the SP coders only up to :data:`SP_MAX_DIM`; the ``_rule`` ones on ``rules``, the
    :func:`rule_partition` of the single and of the batch problems)."""
    single_n, batch_n = args.candidates, 2**10
    split = jaxrec.Partition(np.full(dim, 2))
    single_rule, batch_rule = rules
    make = {
        "pfr": lambda chunk, n, part: jaxrec.pfr(chunk_size=chunk),
        "orc": lambda chunk, n, part: jaxrec.orc(n, chunk_size=chunk),
        "sp_pfr": lambda chunk, n, part: jaxrec.sp_pfr(split, chunk_size=chunk),
        "sp_orc": lambda chunk, n, part: jaxrec.sp_orc(split, n, chunk_size=chunk),
        "sp_pfr_rule": lambda chunk, n, part: jaxrec.sp_pfr(part, chunk_size=chunk),
        "sp_orc_rule": lambda chunk, n, part: jaxrec.sp_orc(part, n, chunk_size=chunk),
    }
    return {
        name: (make[name](args.chunk, single_n, single_rule), make[name](args.lane_chunk, batch_n, batch_rule))
        for name in args.coders
        if dim <= SP_MAX_DIM or not name.startswith("sp_")
    }


def measure(dim: int, args: argparse.Namespace, lanes: int) -> dict:
    """One row: the limits, and each coder's single and batch throughput, timed interleaved."""
    single_bits = float(np.log2(args.candidates))
    layouts = {(1, args.chunk), (lanes, args.lane_chunk)}
    if not args.quick:
        layouts |= {(1, 4 * args.chunk), (64, 128), (16, 512), (8, 1024)}
    layouts = sorted(layouts)
    limits = limit_calls(dim, layouts, args.candidates)
    calls = {name: call for name, (call, _) in limits.items()}
    counts = {name: n for name, (_, n) in limits.items()}

    target, prior = problem(dim, single_bits)
    targets, _ = problem(dim, args.batch_bits, batch=args.batch)
    single_keys = jax.random.split(prng.as_key(1), args.keys)
    batch_keys = jax.random.split(prng.as_key(2), args.batch)
    rules = (rule_partition(dim, single_bits), rule_partition(dim, args.batch_bits))
    kinds = coders(dim, args, rules)
    for name, (one, many) in kinds.items():
        encode = jax.jit(one.encode)
        for i, key in enumerate(single_keys):
            calls[f"{name}_single_{i}"] = lambda encode=encode, key=key: encode(key, target, prior)
        batch = jax.jit(lambda k, q, p, many=many: jaxrec.encode_batch(many, k, q, p, num_lanes=lanes,
                                                                         lane_chunk_size=args.lane_chunk))
        calls[f"{name}_batch"] = lambda batch=batch: batch(batch_keys, targets, prior)

    seconds, outs = best_times(calls, rounds=args.rounds)
    rate = {name: counts[name] / seconds[name] for name in counts}
    best_single = max((n for n in rate if n.startswith("limit_1x")), key=rate.get)
    best_batch = max((n for n in rate if not n.startswith("limit_1x") and n.startswith("limit_")), key=rate.get)
    row: dict[str, Any] = {
        "D": dim,
        "rule_log2_bins": [int(rule.log2_num_bins) for rule in rules],
        "limit_single_cands_per_s": rate[best_single],
        "limit_single_layout": best_single,
        "limit_batch_cands_per_s": rate[best_batch],
        "limit_batch_layout": best_batch,
        "limit_by_layout": rate,
        "coders": {},
    }
    for name in kinds:
        steps = sum(int(outs[f"{name}_single_{i}"].steps) for i in range(args.keys))
        single = steps / sum(seconds[f"{name}_single_{i}"] for i in range(args.keys))
        batch_steps = int(jnp.sum(outs[f"{name}_batch"].steps))
        batch = batch_steps / seconds[f"{name}_batch"]
        row["coders"][name] = {
            "single_s_per_problem": sum(seconds[f"{name}_single_{i}"] for i in range(args.keys)) / args.keys,
            "batch_s_per_problem": seconds[f"{name}_batch"] / args.batch,
            "single_mean_steps": steps / args.keys,
            "single_cands_per_s": single,
            "single_over_limit": single / rate[best_single],
            "batch_sum_steps": batch_steps,
            "batch_cands_per_s": batch,
            "batch_over_limit": batch / rate[best_batch],
        }
    for sp, plain in SP_PAIRS:
        c = row["coders"]
        if sp in c and plain in c:
            c[sp]["single_cost_over_plain"] = c[plain]["single_cands_per_s"] / c[sp]["single_cands_per_s"]
            c[sp]["batch_cost_over_plain"] = c[plain]["batch_cands_per_s"] / c[sp]["batch_cands_per_s"]
            for kind in ("single", "batch"):
                c[sp][f"{kind}_time_over_plain"] = c[sp][f"{kind}_s_per_problem"] / c[plain][f"{kind}_s_per_problem"]
    return row


def median_rows(runs: list[list[dict]]) -> list[dict]:
    """The rows of several processes' runs (same dims and coders) merged: every number the median
    over the processes (each ratio formed within its own process, then the median taken), and
    ``spread``: ``{field: [min, max]}`` of the SP ratios and the encoders' ``over_limit`` ratios."""

    def merge(values: list[Any]) -> Any:
        first = values[0]
        if isinstance(first, dict):
            return {key: merge([v[key] for v in values]) for key in first}
        if isinstance(first, (int, float)) and not isinstance(first, bool) and any(v != first for v in values):
            return float(np.median(values))
        return first  # D, layout names, the rule grids: the same in every process, or the first one's

    rows = [merge(list(same_dim)) for same_dim in zip(*runs)]
    for row, same_dim in zip(rows, zip(*runs)):
        for name, c in row["coders"].items():
            c["spread"] = {
                field: [min(r["coders"][name][field] for r in same_dim), max(r["coders"][name][field] for r in same_dim)]
                for field in c if field.endswith(("_over_plain", "_over_limit"))
            }
        row["processes"] = len(same_dim)
    return rows


def run_processes(count: int, argv: list[str]) -> list[dict]:
    """This script's rows measured in ``count`` separate processes (one after another) with the
    arguments ``argv``, merged by :func:`median_rows`."""
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(count):
            out = Path(scratch) / f"rows{i}.json"
            subprocess.run([sys.executable, __file__, *argv, "--processes", "1", "--rows-to", str(out)], check=True)
            runs.append(json.loads(out.read_text()))
    return median_rows(runs)


def tables(rows: list[dict], header: str) -> str:
    lines = [header, "", "Each encoder / bulk-normal limit (candidates per second, fastest of the rounds):", "",
             ("| D | limit single cand/s | limit batch cand/s | coder | single cand/s | single / limit | batch cand/s "
              "| batch / limit |"), "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for name, c in r["coders"].items():
            lines.append(
                f"| {r['D']} | {r['limit_single_cands_per_s']:.3g} | {r['limit_batch_cands_per_s']:.3g} | {name} "
                f"| {c['single_cands_per_s']:.3g} | {c['single_over_limit']:.2f} | {c['batch_cands_per_s']:.3g} "
                f"| {c['batch_over_limit']:.2f} |"
            )
    lines += [
        "",
        ("SP coder / plain coder: time per candidate (goal <= 1.5) and per problem (what the grid buys: "
         "fewer candidates); grid `J_d = 2`: every axis split, `log2 J = KL`: the paper's rule for these "
         "targets (log2 J single / batch in brackets):"),
        "",
        ("| D | grid | SP-PFR / PFR per candidate, single | batch | SP-PFR / PFR per problem, single | batch "
         "| SP-ORC / ORC per candidate, single | batch |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    # SP-PFR per candidate and per problem, SP-ORC per candidate (its N is fixed)
    columns = (("sp_pfr", "cost"), ("sp_pfr", "time"), ("sp_orc", "cost"))
    for r in rows:
        c = r["coders"]
        for grid, suffix in GRIDS:
            cells = [
                f"{c[sp + suffix][f'{kind}_{metric}_over_plain']:.2f}"
                if f"{kind}_{metric}_over_plain" in c.get(sp + suffix, {}) else "–"
                for sp, metric in columns
                for kind in ("single", "batch")
            ]
            if any(cell != "–" for cell in cells):
                bits = f" ({r['rule_log2_bins'][0]} / {r['rule_log2_bins'][1]})" if suffix else ""
                lines.append(f"| {r['D']} | {grid}{bits} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    size.add_argument("--full", action="store_true", help="2^20 candidates per call, 8 rounds")
    parser.add_argument("--device", default=None, help="JAX platform to run on (cpu, gpu, tpu; default: JAX's default)")
    parser.add_argument("--dims", type=int, nargs="+", default=[5, 25, 64])
    parser.add_argument("--coders", nargs="+", choices=CODERS, default=list(CODERS),
                        help="encoders to time (default: all; an SP/plain ratio needs both coders)")
    parser.add_argument("--log2-candidates", type=int, default=None, metavar="BITS",
                        help="candidates per single-problem call, log2 (default 17; --full 20; --quick 12): an "
                             "accelerator needs more than a CPU for the fixed cost of a call to vanish")
    parser.add_argument("--chunk", type=int, default=1024, help="chunk size of the single-problem searches")
    parser.add_argument("--lane-chunk", type=int, default=DEFAULT_LANE_CHUNK, help="encode_batch lane width")
    parser.add_argument("--lanes", type=int, default=None, help="encode_batch lanes (default: its own)")
    parser.add_argument("--batch", type=int, default=None, help="problems per batch (default 1024; quick 64)")
    parser.add_argument("--batch-bits", type=float, default=10.0, help="D_inf of the PFR batch problems")
    parser.add_argument("--tag", default="", help="suffix of the output file names")
    parser.add_argument("--processes", type=int, default=None,
                        help="separate processes to measure in, medians reported (default 3; quick 1)")
    parser.add_argument("--rows-to", default=None, help=argparse.SUPPRESS)  # a child process' output
    add_update_flag(parser)
    args = parser.parse_args()
    args.processes = args.processes or (1 if args.quick else 3)
    if args.processes < 1:
        parser.error(f"--processes must be at least 1, got {args.processes}")
    if args.log2_candidates is not None and not 8 <= args.log2_candidates <= 30:
        parser.error(f"--log2-candidates must be in [8, 30], got {args.log2_candidates}")
    args.candidates = 2 ** (args.log2_candidates or (20 if args.full else 12 if args.quick else 17))
    args.rounds = 8 if args.full else 1 if args.quick else 3
    args.keys = 2 if args.quick else 4
    args.batch = args.batch or (64 if args.quick else 1024)
    if args.quick:
        args.chunk, args.batch_bits = min(args.chunk, 256), min(args.batch_bits, 5.0)
    lanes = args.lanes or max(1, DEFAULT_CANDIDATES_IN_FLIGHT // args.lane_chunk)
    device = jax.devices(args.device)[0] if args.device else jax.devices()[0]
    if args.processes > 1:
        child = [a for a in sys.argv[1:] if a != "--update"]
        rows = run_processes(args.processes, child)
    else:
        with jax.default_device(device):
            rows = [measure(dim, args, lanes) for dim in args.dims]
        if args.rows_to:
            Path(args.rows_to).write_text(json.dumps(rows))
            return
    backend = device.platform
    header = (
        f"backend: {backend} ({device.device_kind}); single: chunk_size {args.chunk}, {args.candidates} candidates "
        f"per limit call (PFR at D_inf = log2 of that, ORC/SP-ORC N = that); batch: {args.batch} problems, "
        f"encode_batch on {lanes} lanes x {args.lane_chunk} (PFR at D_inf = {args.batch_bits} bits, ORC N = 1024); "
        f"SP coders: J_d = 2 per axis, and the paper's grid (log2 J = KL, _rule); {args.rounds} interleaved rounds, fastest counts; "
        f"median of {args.processes} process{'es' if args.processes > 1 else ''}"
    )
    text = tables(rows, header)
    print(text)
    stem = f"{backend}{'-quick' if args.quick else '-full' if args.full else ''}{args.tag}"
    out = save_json(NAME, f"{stem}.json", {"header": header, "rows": rows}, update=args.update, indent=2)
    save_text(NAME, f"{stem}.md", text, update=args.update)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
