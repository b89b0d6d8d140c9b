"""Gaussian source with perfect realism: REC on the rate-distortion-perception bound against quantization
(issue 15, item 1).

Source ``X ~ N(0, I_n)`` (items of ``n = --dim`` coordinates), squared error per coordinate, perfect
realism (``Xh ~ N(0, I)``).  For every rate ``R`` of the grid (bits per coordinate):

* **REC** (PFR, SP-PFR): the encoder sends, through an archive (:func:`jaxrec.codec.compress_report`),
  a sample of the channel ``Xh = rho X + sqrt(1 - rho^2) Z`` with ``rho = sqrt(1 - 2^{-2R})``
  (:class:`jaxrec.models.realism.GaussianChannel`), which attains the perfect-realism bound with common
  randomness ``D = 2 (1 - sqrt(1 - 2^{-2R}))`` (Blau & Michaeli, ICML 2019; Theis & Agustsson, 2021).
  Items are cut into blocks of ``D_b`` coordinates; exact REC costs about ``2^{D_inf}`` steps per block
  with ``D_inf = D_b (R + x^2 / (2 ln 2))`` on average ``D_b (R + 0.72)`` bits, so ``D_b`` is the largest
  divisor of ``n`` (at most ``--max-block``) whose mean ``D_inf`` stays within ``--dinf-budget`` bits;
  SP-PFR (He, Flamich & Hernandez-Lobato, NeurIPS 2024) uses blocks ``--sp-block-factor`` times larger
  with ``log2 J = floor(block KL) + --sp-bits-offset`` bins, at the rates ``--sp-rates`` only (its encoder
  takes about 3 minutes to compile per rate on a loaded 2-core CPU, and its CPU search is slow: the
  default codes the first ``--sp-items`` items only).  Blocks whose search reached the step cap
  (status ``exhausted``: the best candidate so far, not an exact sample) are counted.
* **Quantization** (no common randomness; :class:`jaxrec.models.realism.ScalarQuantizer`):
  entropy-coded uniform scalar quantization at entropy ``R``, range-coded, with the centroid decoder
  (best MSE, no realism), posterior sampling inside the cell (exact realism, ``D = 2 x`` the
  centroid's) and moment-matching noise (variance restored, the law is a Gaussian mixture).

Rates are measured from bytes: REC from the archive's range-coded streams (its payload bytes; the
whole file, with its ~50-byte header and item table, and the ideal bits are reported beside),
quantization from its range-coded stream (no container), so both count the same kind of bytes.  Realism: KS of all coordinates pooled against ``N(0, 1)``, KS on 16 random
projections of ``--proj-dim``-coordinate vectors (Bonferroni), and the energy distance (permutation
test) of those vectors against fresh ``N(0, I)`` draws.  Each REC row is also compared with the
posterior-sampling quantizer and with the bound without common randomness at REC's *measured* rate.

Writes ``results.json``, ``table.md``, ``mse_rate.png`` (MSE against rate with Shannon's ``D(R)``,
the perfect-realism bounds with and without common randomness, and the ECSQ curves; a second panel in
dB above Shannon) and ``realism.png`` to ``experiments/results/realism_gaussian/latest/``;
``--update`` also rewrites the committed copies in ``experiments/results/realism_gaussian/``; ``--tag NAME``
suffixes the file names with ``_NAME`` (ablations beside the default run).

    python experiments/realism_gaussian.py            # 4 rates (SP-PFR at 2), 6144 coordinates each: ~15 min on 2 loaded cores
    python experiments/realism_gaussian.py --full     # 8 rates, 49152 coordinates, larger blocks and caps
    python experiments/realism_gaussian.py --update   # also rewrite the committed results
    python experiments/realism_gaussian.py --rates 2 3 --dinf-budget 18 --max-steps 22 --tag large_blocks --update
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from typing import Any

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from _results import add_update_flag, save_figure, save_json, save_text
from tqdm import tqdm

import jaxrec
from jaxrec.models import realism

NAME = "realism_gaussian"
DINF_EXCESS = 1.0 / (2.0 * math.log(2.0))  # E x^2 / (2 ln 2): mean D_inf - KL per coordinate, bits
QUANTIZER_DECODERS = {"centroid": "ECSQ (centroid)", "sample": "ECSQ + posterior sample", "noise": "ECSQ + noise"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the complete grid (8 rates, 49152 coordinates)")
    parser.add_argument("--rates", type=float, nargs="+", help="bits per coordinate (default: by --full)")
    parser.add_argument("--items", type=int, help="items per rate (default 128, --full 1024)")
    parser.add_argument("--dim", type=int, default=48, help="coordinates per item")
    parser.add_argument("--dinf-budget", type=float, help="mean D_inf per PFR block, bits (default 14, --full 18)")
    parser.add_argument("--max-block", type=int, default=32, help="largest PFR block, coordinates")
    parser.add_argument("--sp-rates", type=float, nargs="+",
                        help="rates with an SP-PFR row (default 0.5 1; --full: every rate): SP-PFR compiles for minutes")
    parser.add_argument("--sp-items", type=int, help="items of the SP-PFR rows (default 32, --full 1024)")
    parser.add_argument("--sp-block-factor", type=int, default=1, help="SP-PFR blocks are this many PFR blocks")
    parser.add_argument("--sp-bits-offset", type=int, default=0, help="log2 J = floor(block KL) + offset")
    parser.add_argument("--max-steps", type=int, help="log2 of the step cap of both coders (default 20, --full 24)")
    parser.add_argument("--proj-dim", type=int, default=8, help="coordinates per vector for projections and energy")
    parser.add_argument("--permutations", type=int, default=200, help="permutations of the energy-distance test")
    parser.add_argument("--tag", default="", help="suffix of the output file names (for ablations beside the default run)")
    parser.add_argument("--seed", type=int, default=0)
    add_update_flag(parser)
    args = parser.parse_args()
    args.rates = args.rates or ([0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0] if args.full else [0.25, 0.5, 1.0, 2.0])
    args.sp_rates = args.sp_rates or (args.rates if args.full else [0.5, 1.0])
    args.items = args.items or (1024 if args.full else 128)
    args.sp_items = min(args.sp_items or (1024 if args.full else 32), args.items)
    args.dinf_budget = args.dinf_budget or (18.0 if args.full else 14.0)
    args.max_steps = args.max_steps or (24 if args.full else 20)
    if args.dim % args.proj_dim:
        parser.error("--proj-dim must divide --dim")
    return args


# --------------------------------------------------------------------------------------------------
# Block plans (shared: they depend on R only, never on the item)


def block_size(rate: float, dim: int, dinf_budget: float, max_block: int) -> int:
    """The largest divisor ``D_b`` of ``dim`` (at most ``max_block``) with ``D_b (R + 0.72) <= budget``; >= 1."""
    fits = [d for d in range(1, min(dim, max_block) + 1) if dim % d == 0 and d * (rate + DINF_EXCESS) <= dinf_budget]
    return max(fits, default=1)


def equal_blocks(dim: int, size: int, rate: float) -> jaxrec.BlockPlan:
    """Blocks of ``size`` consecutive coordinates, each with KL budget ``size * R`` (the index code's budget)."""
    num = dim // size
    return jaxrec.BlockPlan(
        order=np.arange(dim), sizes=np.full(num, size), budget_bits=size * rate, block_kl=np.full(num, size * rate)
    )


def with_sp_partitions(plan: jaxrec.BlockPlan, rate: float, bits_offset: int) -> jaxrec.BlockPlan:
    """Every block gets the grid with ``floor(size R) + offset`` bits spread evenly by MI (all axes carry ``R``)."""
    size = int(plan.sizes[0])
    total = int(np.clip(math.floor(size * rate) + bits_offset, 0, 64))
    partition = jaxrec.partition_from_mi(np.full(size, rate), total)
    return plan.with_partitions(lambda dims, max_size: partition)


# --------------------------------------------------------------------------------------------------
# Realism statistics


def realism_statistics(x_hat: np.ndarray, args: argparse.Namespace, key: jax.Array) -> dict[str, float]:
    """KS (pooled coordinates), projection KS and energy distance against fresh N(0, I) vectors."""
    vectors = x_hat.reshape(-1, args.proj_dim)
    reference = np.asarray(jax.random.normal(key, vectors.shape), np.float64)
    ks = realism.ks_gaussian(x_hat)
    proj = realism.projection_ks(vectors, num_projections=16, seed=args.seed)
    energy = realism.two_sample_test(vectors, reference, kernel="energy", num_permutations=args.permutations,
                                     seed=args.seed)
    return {"ks": ks.statistic, "ks_p": ks.pvalue, "proj_ks": proj.statistic, "proj_ks_p": proj.pvalue,
            "energy": energy.statistic, "energy_p": energy.pvalue}


# --------------------------------------------------------------------------------------------------
# Schemes


def run_rec(name: str, x: np.ndarray, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """Compresses ``x`` into an archive with PFR or SP-PFR, decodes it and measures everything."""
    channel = realism.GaussianChannel(dim=args.dim, rate_bits=rate)
    size = block_size(rate, args.dim, args.dinf_budget, args.max_block)
    if name == "SP-PFR":
        size = min(size * args.sp_block_factor, args.dim)
        while args.dim % size:
            size -= 1
        plan = with_sp_partitions(equal_blocks(args.dim, size, rate), rate, args.sp_bits_offset)
        coder: Any = functools.partial(jaxrec.sp_pfr, max_steps=2**args.max_steps, chunk_size=1024)
    else:
        plan = equal_blocks(args.dim, size, rate)
        coder = jaxrec.pfr(max_steps=2**args.max_steps)
    start = time.perf_counter()
    report = jaxrec.codec.compress_report(channel, x, key=args.seed, coder=coder, plan=plan)
    encode_s = time.perf_counter() - start
    x_hat = np.asarray(jaxrec.decompress_batch(channel, report.archive, plan=plan))
    decode_s = time.perf_counter() - encode_s - start
    coords = x.size
    steps = np.asarray(report.code.steps)
    status = np.asarray(report.code.status)
    return {
        "scheme": name,
        "nominal_rate": rate,
        "rate": 8 * report.payload_bytes / coords,
        "rate_archive": 8 * report.total_bytes / coords,
        "rate_ideal": report.ideal_bits / coords,
        "header_bytes": report.header_bytes,
        "mse": float(np.mean((x_hat - x) ** 2)),
        "block_size": size,
        "block_kl": size * rate,
        "log2_bins": float(np.asarray(plan.partitions.log2_num_bins)[0]) if name == "SP-PFR" else None,
        "steps_median": float(np.median(steps)),
        "steps_p99": float(np.quantile(steps, 0.99)),
        "exhausted_fraction": float(np.mean(status != 0)),
        "encode_s": round(encode_s, 2),
        "decode_s": round(decode_s, 2),
        "x_hat": x_hat,
    }


def run_quantizer(decoder: str, x: np.ndarray, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """ECSQ at entropy ``rate``: range-codes the cells, decodes them and reconstructs with ``decoder``."""
    quantizer = realism.ScalarQuantizer.at_rate(rate)
    cells = quantizer.quantize(x)
    data = quantizer.encode(cells)
    decoded = quantizer.decode(data, cells.size).reshape(cells.shape)
    if not np.array_equal(decoded, cells):
        raise AssertionError(f"ECSQ round trip failed at R={rate}")
    key = jax.random.fold_in(jax.random.key(args.seed + 1), round(rate * 1000))
    x_hat = quantizer.reconstruct(decoded, decoder, key=key)
    return {
        "scheme": QUANTIZER_DECODERS[decoder],
        "nominal_rate": rate,
        "rate": 8 * len(data) / x.size,
        "rate_ideal": quantizer.entropy_bits(),
        "mse": float(np.mean((x_hat - x) ** 2)),
        "mse_expected": quantizer.mse(decoder),
        "step": quantizer.step,
        "x_hat": x_hat,
    }


def compare_at_measured_rate(row: dict[str, Any]) -> None:
    """Adds, at REC's measured rate: the bounds, and the posterior-sampling quantizer's expected MSE."""
    rate = row["rate"]
    row["bound_cr"] = float(realism.perfect_realism_distortion(row["nominal_rate"], common_randomness=True))
    row["bound_no_cr_at_rate"] = float(realism.perfect_realism_distortion(rate, common_randomness=False))
    row["ecsq_sample_at_rate"] = realism.ScalarQuantizer.at_rate(rate).mse("sample")
    row["beats_no_cr_bound"] = row["mse"] < row["bound_no_cr_at_rate"]
    row["beats_ecsq_sample"] = row["mse"] < row["ecsq_sample_at_rate"]


# --------------------------------------------------------------------------------------------------
# Output


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        ("| R (nominal) | scheme | rate (stream bytes) | whole file | ideal | MSE | bound with CR | KS stat (p) "
        "| proj. KS (p) | energy (p) | notes |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        notes = []
        if "block_size" in r:
            notes.append(f"blocks of {r['block_size']}")
            if r["log2_bins"] is not None:
                notes.append(f"log2 J = {r['log2_bins']:.0f}")
            notes.append(f"steps median {r['steps_median']:.0f}")
            if r["exhausted_fraction"]:
                notes.append(f"{100 * r['exhausted_fraction']:.2f}% blocks capped")
            notes.append(f"no-CR bound at this rate {r['bound_no_cr_at_rate']:.4f}")
            notes.append(f"ECSQ+sample at this rate {r['ecsq_sample_at_rate']:.4f}")
        bound = float(realism.perfect_realism_distortion(r["nominal_rate"], common_randomness=True))
        lines.append(
            f"| {r['nominal_rate']:g} | {r['scheme']} | {r['rate']:.3f} | {r.get('rate_archive', r['rate']):.3f} | "
            f"{r['rate_ideal']:.3f} | {r['mse']:.4f} | "
            f"{bound:.4f} | {r['ks']:.4f} ({r['ks_p']:.2g}) | {r['proj_ks']:.4f} ({r['proj_ks_p']:.2g}) | "
            f"{r['energy']:.2e} ({r['energy_p']:.2g}) | {'; '.join(notes)} |"
        )
    return "\n".join(lines) + "\n"


STYLES = {
    "PFR": {"marker": "o", "color": "C0"},
    "SP-PFR": {"marker": "s", "color": "C1"},
    QUANTIZER_DECODERS["centroid"]: {"marker": "x", "color": "0.3"},
    QUANTIZER_DECODERS["sample"]: {"marker": "^", "color": "C2"},
    QUANTIZER_DECODERS["noise"]: {"marker": "v", "color": "C3"},
}


def theory_curves(max_rate: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rates = np.linspace(0.02, max_rate * 1.15, 200)
    ecsq = [realism.ScalarQuantizer.at_rate(float(r)) for r in rates]
    return {
        "Shannon D(R)": (rates, realism.distortion_rate(rates)),
        "perfect realism, common randomness": (rates, realism.perfect_realism_distortion(rates, common_randomness=True)),
        "perfect realism, no common randomness": (rates, realism.perfect_realism_distortion(rates, common_randomness=False)),
        "ECSQ centroid (theory)": (rates, np.array([q.mse("centroid") for q in ecsq])),
        "ECSQ + sample (theory)": (rates, np.array([q.mse("sample") for q in ecsq])),
    }


CURVE_STYLES = {
    "Shannon D(R)": {"color": "k"},
    "perfect realism, common randomness": {"color": "C0"},
    "perfect realism, no common randomness": {"color": "C2"},
    "ECSQ centroid (theory)": {"color": "0.5", "ls": "--"},
    "ECSQ + sample (theory)": {"color": "C2", "ls": "--"},
}


def plot_mse(rows: list[dict[str, Any]]) -> plt.Figure:
    """MSE against the measured rate; REC rows also as hollow markers at their channel's rate ``R``
    (where the bound with common randomness lies), joined to the measured point: the coder's overhead."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    shannon = realism.distortion_rate
    for label, (r, d) in theory_curves(max(r["rate"] for r in rows)).items():
        axes[0].plot(r, d, lw=1.2, label=label, **CURVE_STYLES[label])
        axes[1].plot(r, 10 * np.log10(d / shannon(r)), lw=1.2, **CURVE_STYLES[label])
    for scheme, style in STYLES.items():
        mine = [r for r in rows if r["scheme"] == scheme]
        if not mine:
            continue
        rate = np.array([r["rate"] for r in mine])
        mse = np.array([r["mse"] for r in mine])
        axes[0].plot(rate, mse, ls="none", ms=7, label=scheme + " (measured)", **style)
        axes[1].plot(rate, 10 * np.log10(mse / shannon(rate)), ls="none", ms=7, **style)
        if "block_size" in mine[0]:
            nominal = np.array([r["nominal_rate"] for r in mine])
            for ax, y_nominal, y in zip(axes, (mse, 10 * np.log10(mse / shannon(nominal))),
                                        (mse, 10 * np.log10(mse / shannon(rate)))):
                ax.plot(nominal, y_nominal, ls="none", ms=7, mfc="none", **style)
                for segment in zip(nominal, rate, y_nominal, y):
                    ax.plot(segment[:2], segment[2:], ls=":", lw=1, color=style["color"])
    axes[0].set(yscale="log", xlabel="rate (bits per coordinate, stream bytes)", ylabel="MSE per coordinate",
                title="Gaussian source, MSE against rate")
    axes[1].set(xlabel="rate (bits per coordinate, stream bytes)", ylabel="MSE / Shannon D(R)  [dB]",
                title="above Shannon's bound (hollow: REC at its channel's rate R)", ylim=(-0.5, 6.5))
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7.5)
    fig.tight_layout()
    return fig


def plot_realism(rows: list[dict[str, Any]], proj_dim: int) -> plt.Figure:
    """KS statistics scaled by sqrt(sample size), comparable across rows of different sizes."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for scheme, style in STYLES.items():
        mine = [r for r in rows if r["scheme"] == scheme]
        if not mine:
            continue
        rate = [r["nominal_rate"] for r in mine]
        n = np.array([r["coordinates"] for r in mine])
        axes[0].plot(rate, np.sqrt(n) * [r["ks"] for r in mine], label=scheme, **style)
        axes[1].plot(rate, np.sqrt(n / proj_dim) * [r["proj_ks"] for r in mine], label=scheme, **style)
    # asymptotic Kolmogorov critical values: sqrt(-ln(alpha / 2) / 2), alpha = 5% and 5% / 16 (Bonferroni)
    for ax, alpha in zip(axes, (0.05, 0.05 / 16)):
        ax.axhline(math.sqrt(-0.5 * math.log(alpha / 2)), color="k", ls=":", lw=1, label=f"{alpha:.2g} critical value")
    axes[0].set(yscale="log", xlabel="nominal rate (bits per coordinate)", ylabel="sqrt(n) KS statistic vs N(0, 1)",
                title="realism: all coordinates pooled")
    axes[1].set(yscale="log", xlabel="nominal rate (bits per coordinate)",
                ylabel="sqrt(n) largest KS of 16 projections", title="realism: random projections of vectors")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main() -> None:
    args = parse_args()
    rows: list[dict[str, Any]] = []
    jobs = [(rate, scheme) for rate in args.rates for scheme in ("PFR", "SP-PFR", *QUANTIZER_DECODERS)
            if scheme != "SP-PFR" or rate in args.sp_rates]
    for rate, scheme in tqdm(jobs, desc="rate x scheme"):
        key = jax.random.fold_in(jax.random.key(args.seed), round(rate * 1000))
        x = np.asarray(jax.random.normal(key, (args.items, args.dim)), np.float32)
        if scheme in QUANTIZER_DECODERS:
            row = run_quantizer(scheme, x, rate, args)
        else:
            x = x[: args.sp_items] if scheme == "SP-PFR" else x
            row = run_rec(scheme, x, rate, args)
            compare_at_measured_rate(row)
        row.update(realism_statistics(row.pop("x_hat"), args, jax.random.fold_in(key, 1)), coordinates=x.size)
        rows.append(row)
        tqdm.write(f"R={rate:g} {row['scheme']}: rate {row['rate']:.3f} MSE {row['mse']:.4f} KS {row['ks']:.4f}")
    settings = {k: v for k, v in vars(args).items() if k != "update"}
    results = {
        "settings": settings,
        "machine": "2-core CPU shared with other jobs (timings indicative only)",
        "bounds": {
            str(r): {
                "shannon": float(realism.distortion_rate(r)),
                "perfect_realism_cr": float(realism.perfect_realism_distortion(r, common_randomness=True)),
                "perfect_realism_no_cr": float(realism.perfect_realism_distortion(r, common_randomness=False)),
            }
            for r in args.rates
        },
        "rows": rows,
    }
    tag = f"_{args.tag}" if args.tag else ""
    save_json(NAME, f"results{tag}.json", results, update=args.update)
    table = markdown_table(rows)
    save_text(NAME, f"table{tag}.md", table, update=args.update)
    save_figure(NAME, f"mse_rate{tag}.png", plot_mse(rows), update=args.update, dpi=110)
    save_figure(NAME, f"realism{tag}.png", plot_realism(rows, args.proj_dim), update=args.update, dpi=110)
    print(table)


if __name__ == "__main__":
    main()
