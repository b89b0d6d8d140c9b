"""Runtime and codelength of the 1-D REC samplers: PFR, GPRS (global, parallel, sac, dyadic), GRS, AGRS, AS*, AD*.

Problems: ``P = N(0, 1)``, ``Q = N(mu, s^2)``.  Three sweeps, ``--num`` encodes (random shared keys)
per point, one jitted call per (coder, point):

* **scale sweep** (``mu = 1``, ``s`` shrinking): ``D_KL`` and ``D_inf`` grow together.  Runtime
  (mean steps) against ``D_inf`` and codelength against ``D_KL`` for every coder; the coders whose
  runtime is ``2^{D_inf}`` (PFR, global/parallel GPRS, GRS) stop at ``--max-dinf`` bits.
* **fixed-KL sweep** (``D_KL = 3`` bits, ``D_inf`` from 4 to 40 bits): the tree searches and AGRS,
  whose runtime should follow ``D_KL``, not ``D_inf`` (Flamich, NeurIPS 2023).
* **per-dimension wrapper** (``D = 8`` coordinates of about 1 bit each): ``jaxrec.factorized`` of
  sac GPRS and of GRS against joint PFR on the same 8-D problem -- runtime and codelength overhead.

Steps are each algorithm's own count (candidates; tree nodes tested; AGRS/GRS steps; positions per
stream for parallel GPRS, whose total work is ``J`` times that).  Codelength: the plug-in entropy
of the message over the keys (per instance, so ``>= D_CS`` for the causal samplers, and
``<= D_CS + log2(e + 1)`` for global GPRS), and a universal code: Zipf with the exponent from the
KL (:func:`jaxrec.entropy.zipf_exponent`) on the index (heap index for tree coders; for AGRS
``Zipf(K)`` plus, when ``K > 0``, Elias-gamma of ``m + 1``, one reflection bit and ``log2(2^m + 1)``
bits for ``n``, uniform given ``m``).  The per-instance entropy understates the cost of messages that
carry the target's location (the dyadic path, AGRS's bound): for a fixed target they are nearly
deterministic, in a channel setting they are not; the universal column is the fair one there.

Writes ``results.json``, ``table.md`` and three PNGs to ``experiments/results/samplers_1d/latest/``
(git-ignored: timings change from run to run); ``--update`` also rewrites the committed copies in
``experiments/results/samplers_1d/`` (``experiments/_results.py``).  The published points from the
GPRS repository (channel setup not recovered) are listed next to ours in
``table.md``.

    python experiments/samplers_1d.py            # about 5 minutes on 2 CPU cores
    python experiments/samplers_1d.py --full     # 20000 encodes per point, larger D_KL
    python experiments/samplers_1d.py --update   # also rewrite the committed results
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from _results import add_update_flag, save_figure, save_json, save_text
from scipy import optimize, special, stats
from tqdm import tqdm

import jaxrec
from jaxrec import entropy
from jaxrec.coders.tree import paths

NAME = "samplers_1d"
EXPONENTIAL = ("pfr", "gprs", "gprs_parallel", "grs")  # runtime 2^{D_inf}
PUBLISHED = [  # the GPRS repository's data/figure2: mean steps; codelength bits
    ("gprs", "global GPRS mean steps at I = 6.00 bits", 40.1),
    ("gprs", "global GPRS mean codelength at I = 6.00 bits", 9.43),
    ("gprs_sac", "sac steps per bit (slope)", 1.38),
    ("gprs_dyadic", "dyadic steps per bit (slope)", 0.98),
    ("gprs_sac", "sac mean steps at I = 6.05 bits", 7.93),
    ("gprs_dyadic", "dyadic mean steps at I = 6.05 bits", 5.96),
    ("astar", "A* mean steps at I = 6.05 bits", 10.32),
]


def coders() -> dict[str, jaxrec.Coder]:
    out = {
        "pfr": jaxrec.pfr(chunk_size=256),
        "gprs": jaxrec.gprs(chunk_size=64),
        "gprs_parallel": jaxrec.gprs(num_streams=4, chunk_size=16),
        "gprs_sac": jaxrec.gprs_bnb("sample"),
        "gprs_dyadic": jaxrec.gprs_bnb("dyadic"),
        "grs": jaxrec.grs(chunk_size=64),
        "agrs": jaxrec.agrs(),
    }
    for name in ("astar", "adstar"):  # written alongside; used if present
        if hasattr(jaxrec, name):
            out[name] = getattr(jaxrec, name)()
    return out


def fixed_kl_pair(kl_bits: float, dinf_bits: float) -> tuple[float, float]:
    """``(mu, s)`` of ``N(mu, s^2)`` against ``N(0, 1)`` with the given KL and D_inf (bits)."""
    kl, dinf = kl_bits * math.log(2), dinf_bits * math.log(2)

    def mu2(s: float) -> float:
        return 2 * (kl + math.log(s)) + 1 - s * s

    def gap(s: float) -> float:
        return -math.log(s) + mu2(s) / (2 * (1 - s * s)) - dinf

    lo = math.exp(-kl) * 1.0001  # mu = 0 at the lower end
    s = optimize.brentq(gap, lo, 1 - 1e-12, xtol=1e-15)
    return math.sqrt(max(mu2(s), 0.0)), s


def message_bits(name: str, codes, kl_bits: float) -> tuple[np.ndarray, list]:
    """Universal codelength per sample, and the messages as hashable tuples (for the entropy)."""
    alpha = entropy.zipf_exponent(max(kl_bits, 1e-3))
    log_zeta = math.log2(special.zeta(alpha, 1))
    if isinstance(codes, paths.TreeCode):
        heap = [paths.heap_index(d, p) for d, p in zip(np.asarray(codes.depth), np.asarray(codes.path))]
        return np.array([alpha * math.log2(h) + log_zeta for h in heap]), heap
    index = np.asarray(codes.index)
    bits = alpha * np.log2(index + 1.0) + log_zeta
    if isinstance(codes, jaxrec.AGRSCode):
        m, n = np.asarray(codes.bound_level), np.asarray(codes.bound_index)
        extra = np.asarray(entropy.elias_gamma_bits(m + 1)) + 1.0 + np.log2(2.0 ** m + 1.0)
        bits = bits + np.where(index > 0, extra, 0.0)
        return bits, list(zip(index.tolist(), m.tolist(), n.tolist()))
    return bits, index.tolist()


def plug_in_entropy(messages: list) -> float:
    _, counts = np.unique(np.asarray([hash(m) for m in messages]), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def measure(name: str, coder: jaxrec.Coder, mu: float, s: float, num: int, seed: int, cache: dict) -> dict:
    target, prior = jaxrec.DiagGaussian(mu, s), jaxrec.DiagGaussian(0.0, 1.0)
    if name not in cache:
        cache[name] = (
            jax.jit(jax.vmap(coder.encode, in_axes=(0, None, None))),
            jax.jit(jax.vmap(coder.decode, in_axes=(0, 0, None))),
        )
    enc, dec = cache[name]
    keys = jax.random.split(jax.random.key(seed), num)
    jax.block_until_ready(enc(keys, target, prior))  # compile (first point) and warm up
    start = time.perf_counter()
    codes = jax.block_until_ready(enc(keys, target, prior))
    seconds = time.perf_counter() - start
    xs = np.asarray(dec(keys, codes, prior)[:, 0], np.float64)
    kl_bits = float(jaxrec.kl(target, prior))
    bits, messages = message_bits(name, codes, kl_bits)
    steps = np.asarray(codes.steps, np.float64)
    return {
        "coder": name, "mu": mu, "s": s, "kl_bits": kl_bits, "dinf_bits": float(jaxrec.dinf(target, prior)),
        "d_cs_bits": float(jaxrec.coders.greedy.widths.d_cs(jaxrec.coders.greedy.widths.pair_widths(target, prior))),
        "mean_steps": float(steps.mean()), "steps_q90": float(np.quantile(steps, 0.9)),
        "entropy_bits": plug_in_entropy(messages), "mean_code_bits": float(bits.mean()),
        "exhausted": float(np.mean(np.asarray(codes.exhausted))),
        "ks_p": float(stats.kstest(xs, stats.norm(mu, s).cdf).pvalue),
        "us_per_encode": 1e6 * seconds / num,
    }


def factorized_overhead(num: int, seed: int) -> list[dict]:
    """8 coordinates of about 1 bit each: per-dimension coders against joint PFR."""
    dims = 8
    rng = np.random.default_rng(seed)
    loc = jnp.asarray(rng.uniform(-0.5, 0.5, dims), jnp.float32)
    scale = jnp.full((dims,), 0.55, jnp.float32)
    target, prior = jaxrec.DiagGaussian(loc, scale), jaxrec.DiagGaussian(jnp.zeros(dims), jnp.ones(dims))
    kl_dims = np.asarray(jaxrec.kl(target, prior, per_dim=True))
    keys = jax.random.split(jax.random.key(seed), num)
    rows = []
    for name, coder in (("pfr (joint)", jaxrec.pfr(chunk_size=1024)),
                        ("factorized(gprs_sac)", jaxrec.factorized(jaxrec.gprs_bnb("sample"))),
                        ("factorized(grs)", jaxrec.factorized(jaxrec.grs(chunk_size=16))),
                        ("factorized(agrs)", jaxrec.factorized(jaxrec.agrs()))):
        enc = jax.jit(jax.vmap(coder.encode, in_axes=(0, None, None)))
        jax.block_until_ready(enc(keys, target, prior))
        start = time.perf_counter()
        codes = jax.block_until_ready(enc(keys, target, prior))
        seconds = time.perf_counter() - start
        steps = np.asarray(codes.steps, np.float64).reshape(num, -1).sum(axis=1)
        if name.startswith("pfr"):
            bits, _ = message_bits("pfr", codes, float(kl_dims.sum()))
        else:
            per_dim = [message_bits(name, jax.tree.map(lambda a: a[:, d], codes), float(kl_dims[d]))[0]
                       for d in range(dims)]
            bits = np.sum(per_dim, axis=0)
        rows.append({
            "coder": name, "dims": dims, "kl_bits": float(kl_dims.sum()),
            "dinf_bits": float(jaxrec.dinf(target, prior)),
            "mean_total_steps": float(steps.mean()), "mean_code_bits": float(bits.mean()),
            "overhead_bits": float(bits.mean() - kl_dims.sum()), "us_per_encode": 1e6 * seconds / num,
        })
    return rows


def fit_slope(rows: list[dict], coder: str, x_key: str = "kl_bits") -> float | None:
    """Least-squares slope of mean steps on ``x_key`` (points with KL > 1.5 bits)."""
    pts = [(r[x_key], r["mean_steps"]) for r in rows if r["coder"] == coder and r["kl_bits"] > 1.5]
    if len(pts) < 2:
        return None
    x, y = np.asarray(pts).T
    return float(np.polyfit(x, y, 1)[0])


def interpolate(rows: list[dict], coder: str, key: str, at_kl: float) -> float | None:
    pts = sorted((r["kl_bits"], r[key]) for r in rows if r["coder"] == coder)
    if len(pts) < 2 or not pts[0][0] <= at_kl <= pts[-1][0]:
        return None
    x, y = np.asarray(pts).T
    return float(np.interp(at_kl, x, y))


def table(scale_rows, fixed_rows, fact_rows) -> str:
    """The Markdown table of the three sweeps and the published points."""
    lines = ["# 1-D samplers: P = N(0, 1), Q = N(mu, s^2)", "",
             "## Scale sweep (mu = 1)", "",
             "| coder | s | KL bits | D_inf bits | 2^D_inf | mean steps | q90 steps | D_CS | H[message] "
             "| universal bits | KS p | us/encode |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in scale_rows:
        lines.append(
            f"| {r['coder']} | {r['s']:.4g} | {r['kl_bits']:.2f} | {r['dinf_bits']:.2f} | {2 ** r['dinf_bits']:.1f} | "
            f"{r['mean_steps']:.2f} | {r['steps_q90']:.0f} | {r['d_cs_bits']:.2f} | {r['entropy_bits']:.2f} | "
            f"{r['mean_code_bits']:.2f} | {r['ks_p']:.3g} | {r['us_per_encode']:.1f} |")
    lines += ["", "## Fixed KL (3 bits), growing D_inf", "",
              "| coder | mu | s | KL bits | D_inf bits | mean steps | q90 steps | H[message] | KS p |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in fixed_rows:
        lines.append(f"| {r['coder']} | {r['mu']:.3f} | {r['s']:.5f} | {r['kl_bits']:.2f} | {r['dinf_bits']:.1f} | "
                     f"{r['mean_steps']:.2f} | {r['steps_q90']:.0f} | {r['entropy_bits']:.2f} | {r['ks_p']:.3g} |")
    lines += ["", "## Per-dimension wrapper (8 coordinates of ~1 bit)", "",
              "| coder | KL bits | D_inf bits | mean total steps | mean universal bits | overhead bits | us/encode |",
              "|---|---|---|---|---|---|---|"]
    for r in fact_rows:
        lines.append(f"| {r['coder']} | {r['kl_bits']:.2f} | {r['dinf_bits']:.2f} | {r['mean_total_steps']:.1f} | "
                     f"{r['mean_code_bits']:.2f} | {r['overhead_bits']:.2f} | {r['us_per_encode']:.1f} |")
    lines += ["", "## Against the published points (GPRS repo figure data; their channel setup was not recovered)", "",
              "| quantity | published | ours (per instance, scale sweep) |", "|---|---|---|"]
    for coder, what, value in PUBLISHED:
        if "slope" in what:
            ours = fit_slope(scale_rows, coder)
        elif "codelength" in what:
            ours = interpolate(scale_rows, coder, "mean_code_bits", 6.0)
        else:
            ours = interpolate(scale_rows, coder, "mean_steps", 6.0 if "6.00" in what else 6.05)
        lines.append(f"| {what} | {value} | {'n/a' if ours is None else f'{ours:.2f}'} |")
    tree = ("gprs_sac", "gprs_dyadic", "agrs", "astar", "adstar")
    lines += ["", "Mean steps per bit of D_KL (scale sweep, KL > 1.5 bits): " + ", ".join(
        f"{c} {fit_slope(scale_rows, c):.2f}" for c in tree if fit_slope(scale_rows, c) is not None),
        "", "Mean steps per bit of D_inf at D_KL = 3 bits (fixed-KL sweep): " + ", ".join(
        f"{c} {fit_slope(fixed_rows, c, 'dinf_bits'):.3f}" for c in tree
        if fit_slope(fixed_rows, c, "dinf_bits") is not None)]
    return "\n".join(lines) + "\n"


def plot(scale_rows, fixed_rows, update: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["coder"] for r in scale_rows})
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for n in names:
        pts = sorted((r["dinf_bits"], r["mean_steps"]) for r in scale_rows if r["coder"] == n)
        ax.plot(*zip(*pts), "o-", label=n, ms=3)
    grid = np.linspace(min(r["dinf_bits"] for r in scale_rows), max(r["dinf_bits"] for r in scale_rows), 50)
    ax.plot(grid, 2 ** grid, "k:", label="2^D_inf")
    ax.set(xlabel="D_inf [bits]", ylabel="mean steps", yscale="log", title="runtime vs D_inf (mu = 1)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(NAME, "runtime_vs_dinf.png", fig, update=update, dpi=110)

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for n in names:
        pts = sorted((r["kl_bits"], r["mean_code_bits"]) for r in scale_rows if r["coder"] == n)
        ax.plot(*zip(*pts), "o-", label=f"{n} (universal)", ms=3)
    pts = sorted({(r["kl_bits"], r["d_cs_bits"]) for r in scale_rows})
    ax.plot(*zip(*pts), "k--", label="D_CS")
    kl = np.linspace(0, max(p[0] for p in pts), 50)
    ax.plot(kl, kl, "k:", label="D_KL")
    ax.set(xlabel="D_KL [bits]", ylabel="bits", title="codelength vs KL (mu = 1)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(NAME, "codelength_vs_kl.png", fig, update=update, dpi=110)

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for n in sorted({r["coder"] for r in fixed_rows}):
        pts = sorted((r["dinf_bits"], r["mean_steps"]) for r in fixed_rows if r["coder"] == n)
        ax.plot(*zip(*pts), "o-", label=n, ms=3)
    ax.set(xlabel="D_inf [bits]", ylabel="mean steps", title="runtime at D_KL = 3 bits")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(NAME, "runtime_fixed_kl.png", fig, update=update, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="20000 encodes per point, D_KL up to 16 bits")
    parser.add_argument("--num", type=int, default=None, help="encodes per point (default 2000, --full 20000)")
    parser.add_argument("--max-dinf", type=float, default=None, help="D_inf cap for the 2^D_inf coders (bits)")
    parser.add_argument("--seed", type=int, default=0)
    add_update_flag(parser)
    args = parser.parse_args()
    num = args.num or (20000 if args.full else 2000)
    max_dinf = args.max_dinf or (12.5 if args.full else 8.5)
    scales = [0.7, 0.5, 0.3, 0.15, 0.08, 0.04, 0.02, 0.01, 0.005]
    scales += [2.0**-9, 2.0**-11, 2.0**-13, 2.0**-16] if args.full else [2.0**-11]
    fixed_dinf = [4, 8, 16, 24, 32, 40]
    all_coders = coders()
    cache: dict = {}
    todo = [("scale", n, 1.0, s) for s in scales for n in all_coders]
    todo += [("fixed", n, *fixed_kl_pair(3.0, d)) for d in fixed_dinf for n in all_coders if n not in EXPONENTIAL]
    scale_rows, fixed_rows = [], []
    for sweep, name, mu, s in tqdm(todo, desc="encoding"):
        dinf_bits = float(jaxrec.dinf(jaxrec.DiagGaussian(mu, s), jaxrec.DiagGaussian(0.0, 1.0)))
        if name in EXPONENTIAL and dinf_bits > max_dinf:
            continue
        row = measure(name, all_coders[name], mu, s, num, args.seed, cache)
        (scale_rows if sweep == "scale" else fixed_rows).append(row)
    fact_rows = factorized_overhead(num, args.seed)
    meta = {"num": num, "full": args.full, "backend": jax.default_backend(), "devices": str(jax.devices())}
    results = {"meta": meta, "scale_sweep": scale_rows, "fixed_kl_sweep": fixed_rows, "factorized": fact_rows}
    path = save_json(NAME, "results.json", results, update=args.update)
    text = table(scale_rows, fixed_rows, fact_rows)
    save_text(NAME, "table.md", text, update=args.update)
    plot(scale_rows, fixed_rows, args.update)
    print(text)
    print(f"wrote {path.parent}/: results.json, table.md, runtime_vs_dinf.png, codelength_vs_kl.png, runtime_fixed_kl.png")


if __name__ == "__main__":
    main()
