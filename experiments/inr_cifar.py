"""Rate-distortion of Bayesian INR compression (COMBINER / RECOMBINER) on CIFAR-10, with standard
ORC and with space-partitioned REC, against JPEG and published codecs.

Reproduces, as far as a 2-core CPU allows, the CIFAR-10 experiment of He, Flamich &
Hernandez-Lobato (NeurIPS 2024, "Accelerating relative entropy coding with space partitioning",
Figs. 9 and 12): RECOMBINER (He et al., ICLR 2024) and COMBINER (Guo et al., NeurIPS 2023) send
one posterior sample of an INR's latent block by block, either with standard ORC (16-bit blocks,
2^16 candidates, as the papers) or with SP-ORC / SP-PFR on larger blocks with an MI-driven
partition from the training statistics. For each model and target rate:

1. **Prior.** :func:`jaxrec.models.inr.learn_prior` on CIFAR-10 training images (the lossless
   extract ``train_batch_3``); each rate continues from the previous, higher one. The prior, the
   training statistics and one plan per coder are saved as a prior file
   (``results/inr_cifar/latest/priors/<model>-<rate>bpp.msgpack``, git-ignored; reused by later runs
   unless ``--relearn``).
2. **Compression.** For every coder, the test images (the first ones of the CIFAR-10 test set)
   are compressed into one archive (:class:`jaxrec.codec.ArchiveWriter`, one chunk) --
   progressively (largest-KL blocks first, fine-tuning the rest after each step) -- the archive is
   written to disk, read back and decompressed (:func:`jaxrec.decompress_batch`).
3. **Metrics from the bytes on disk.** Rate = archive bytes x 8 / (images x 1024) bits per pixel
   (the archive header, shared by the images, included; the payload alone is reported as well);
   PSNR of the decoded 8-bit image against the original, averaged over images, as the papers.
4. **Baselines.** JPEG (Pillow, a quality sweep, the same images): whole files, and the
   entropy-coded scan alone (headers and tables excluded -- a lower bound; a 32x32 JPEG file is
   >= 2.4 bpp of headers). Published CIFAR-10 points of COIN++, BPG and the Balle et al. (2018)
   hyperprior (from COIN++'s baseline files) on the plot.
5. **BD-rate** of SP-ORC and SP-PFR against standard ORC per model: the mean bitrate change at
   equal PSNR over the common PSNR range, log-rate interpolated piecewise-linearly in PSNR.

    python experiments/inr_cifar.py            # default: < 45 min on 2 CPU cores (reduced, see RunSize)
    python experiments/inr_cifar.py --full     # the papers' settings (accelerator: hours)
    python experiments/inr_cifar.py --models COMBINER --coders orc sp_orc_20 --tag sp20   # larger SP blocks

Writes ``results.json``, ``results.md``, ``rd.png`` (``*_full`` with ``--full``) and the archives
``files/<model>-<rate>bpp-<coder>.jxr`` to ``experiments/results/inr_cifar/latest/`` (git-ignored),
and with ``--update`` also to the committed ``experiments/results/inr_cifar/`` (``experiments/_results.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from _results import (
    LATEST,
    add_update_flag,
    results_dir,
    save_figure,
    save_json,
    save_text,
)
from flax import nnx
from tqdm.auto import tqdm

import jaxrec
from jaxrec import codec, data
from jaxrec.models import inr

NAME = "inr_cifar"
PRIORS = results_dir(NAME) / LATEST / "priors"
DEFAULT_PRIOR = Path(jaxrec.__file__).resolve().parent / "models" / "weights" / "inr-cifar10.msgpack"

# CIFAR-10 baselines (bits per pixel, PSNR dB) from COIN++'s result files (Dupont et al., TMLR 2022).
PUBLISHED = {
    "COIN++": [(0.548, 24.22), (1.099, 27.03), (1.647, 28.90), (2.195, 30.45), (3.294, 32.42), (4.057, 33.69)],
    "BPG": [(1.0, 27.11), (1.25, 28.74), (1.875, 31.97), (2.5, 34.53), (3.75, 38.57)],
    "Balle et al. 2018 (hyperprior)": [(0.19, 19.20), (0.37, 22.58), (0.746, 26.83), (1.112, 29.50), (1.631, 32.13)],
}
JPEG_QUALITIES = (1, 5, 10, 20, 30, 50, 70, 90)
MODELS = {"COMBINER": inr.combiner, "RECOMBINER": inr.recombiner}


@dataclasses.dataclass(frozen=True)
class RunSize:
    """Everything the default and the --full runs differ in."""

    num_train: int
    num_test: int
    rates: tuple[float, ...]  # target training rates (bpp), highest first
    prior_iterations: int
    prior_steps: int
    prior_first_steps: int
    prior_lr: float
    beta_init: float
    fit_steps: int
    refine_steps: int  # per progressive round (--full: max(30000 // blocks, 50), as RECOMBINER)
    learning_rate: float
    num_samples: int
    final_lr_fraction: float
    group_size: int  # blocks coded per item between two refine rounds


DEFAULT = RunSize(
    num_train=24, num_test=8, rates=(0.8, 0.3), prior_iterations=30, prior_steps=15, prior_first_steps=30,
    prior_lr=1e-3, beta_init=1e-6, fit_steps=400, refine_steps=10, learning_rate=1e-3, num_samples=1,
    final_lr_fraction=0.1, group_size=2,
)
FULL = RunSize(
    num_train=1000, num_test=1000, rates=(1.5, 1.0, 0.6, 0.3, 0.15), prior_iterations=550, prior_steps=100,
    prior_first_steps=200, prior_lr=2e-4, beta_init=1e-8, fit_steps=30000, refine_steps=0, learning_rate=2e-4,
    num_samples=5, final_lr_fraction=1.0, group_size=1,
)


SMOKE = RunSize(
    num_train=4, num_test=2, rates=(0.5,), prior_iterations=2, prior_steps=3, prior_first_steps=3, prior_lr=1e-3,
    beta_init=1e-5, fit_steps=20, refine_steps=2, learning_rate=1e-3, num_samples=1, final_lr_fraction=0.1,
    group_size=4,
)


def coder_settings(full: bool) -> dict[str, inr.CoderSetting]:
    """The coder settings every prior file offers (see the module docstring and the report).

    * ``orc``: standard ORC as the papers: 16-bit blocks, 2^16 candidates.
    * ``sp_orc``: SP-ORC at the same rate and block count: 16-bit blocks, message split into
      ``log2 J = 4`` bin bits and ``log2 N = 12`` index bits (the best split at 16 bits in
      ``bench_sp``'s equal-rate study).
    * ``sp_orc_20``: SP-ORC with larger blocks at ORC's sample budget: 20-bit blocks, 4 + 16 bits
      (one image per call; not in the default coder list, for time: run it with ``--coders orc
      sp_orc_20 --tag sp20``, about 10 min per model for 8 images and 2 rates on 2 busy cores).
    * ``sp_pfr``: SP-PFR on 16-bit blocks with ``log2 J = 12``, capped at ``2^12`` steps (``2^20``
      with ``--full``); posterior scales capped at 0.95 of the prior's (a bounded ratio). On these
      posteriors ``D_inf[Q||P']`` is hundreds of bits, so every block runs to the cap: the samples
      are approximate and the cap sets the cost (2^16 steps took ~3 s per block on the 2-core CPU).
    """
    return {
        "orc": inr.CoderSetting("orc", kappa=16.0, num_samples=2**16),
        "sp_orc": inr.CoderSetting("sp_orc", kappa=16.0, num_samples=2**12, partition_offset=-12),
        "sp_orc_20": inr.CoderSetting("sp_orc", kappa=20.0, num_samples=2**16, partition_offset=-16),
        "sp_pfr": inr.CoderSetting(
            "sp_pfr", kappa=16.0, max_steps=2**20 if full else 2**12, partition_offset=-4, max_scale_ratio=0.95
        ),
    }


CODER_LABELS = {"orc": "standard ORC", "sp_orc": "SP-ORC (4+12 bits)", "sp_orc_20": "SP-ORC (20-bit blocks, 4+16)",
                "sp_pfr": "SP-PFR (capped)"}
DEFAULT_CODERS = ("orc", "sp_orc", "sp_pfr")
IMAGES_PER_CALL = {"sp_orc": 4, "sp_orc_20": 1}  # SP-ORC holds N x block size integers per problem


# --------------------------------------------------------------------------------------------------
# Timing helpers


class CompileClock:
    """Sums XLA compilation time reported by jax.monitoring while it is active."""

    def __init__(self) -> None:
        self.total = 0.0
        self.active = False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **_: Any) -> None:
        if self.active and "compile" in event and "backend" in event:
            self.total += duration

    def measure(self, fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
        """``(result, wall seconds, of which compilation)``."""
        self.total, self.active = 0.0, True
        start = time.perf_counter()
        try:
            out = jax.block_until_ready(fn(*args, **kwargs))
        finally:
            self.active = False
        return out, time.perf_counter() - start, self.total


# --------------------------------------------------------------------------------------------------
# Metrics


def psnr(decoded: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of 8-bit images ``(N, H, W, C)``."""
    err = (decoded.astype(np.float64) - original.astype(np.float64)) ** 2
    mse = err.reshape(err.shape[0], -1).mean(axis=1)
    return 10.0 * np.log10(255.0**2 / np.maximum(mse, 1e-12))


def bd_rate(reference: list[tuple[float, float]], test: list[tuple[float, float]]) -> float | None:
    """Bjontegaard delta rate (%) of ``test`` against ``reference`` (``(bpp, psnr)`` points): the
    mean of ``log rate`` difference over the common PSNR interval, log rate interpolated
    piecewise-linearly in PSNR (robust with 2-3 points); None without overlap."""
    if len(reference) < 2 or len(test) < 2:
        return None
    curves = []
    for points in (reference, test):
        pts = sorted(points, key=lambda p: p[1])
        curves.append((np.array([p[1] for p in pts]), np.log(np.array([p[0] for p in pts]))))
    lo = max(c[0][0] for c in curves)
    hi = min(c[0][-1] for c in curves)
    if hi <= lo:
        return None
    grid = np.linspace(lo, hi, 256)
    ref, tst = (np.interp(grid, q, r) for q, r in curves)
    return float((math.exp(np.trapezoid(tst - ref, grid) / (hi - lo)) - 1.0) * 100.0)


def jpeg_scan_bytes(raw: bytes) -> int:
    """Bytes of a baseline JPEG's entropy-coded scan: after the SOS segment, before the EOI marker."""
    sos = raw.index(b"\xff\xda")
    header_end = sos + 2 + int.from_bytes(raw[sos + 2 : sos + 4], "big")
    return len(raw) - header_end - 2


def jpeg_curve(images: np.ndarray) -> list[dict[str, float]]:
    """JPEG at several qualities: whole-file and scan-only bpp, PSNR of the decoded images."""
    from PIL import Image

    rows = []
    pixels = images.shape[1] * images.shape[2]
    for quality in JPEG_QUALITIES:
        sizes, scans, decoded = [], [], []
        for image in images:
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, "JPEG", quality=quality, optimize=True)
            raw = buf.getvalue()
            sizes.append(len(raw))
            scans.append(jpeg_scan_bytes(raw))
            decoded.append(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")))
        rows.append({
            "quality": quality,
            "bpp": float(8 * np.mean(sizes) / pixels),
            "scan_bpp": float(8 * np.mean(scans) / pixels),
            "psnr": float(psnr(np.stack(decoded), images).mean()),
        })
    return rows


# --------------------------------------------------------------------------------------------------
# Priors


def learn_priors(model: str, train: np.ndarray, size: RunSize, args: argparse.Namespace) -> dict[float, Path]:
    """One prior file per rate (highest first, each continuing from the previous)."""
    config = MODELS[model]()
    network = inr.InrNetwork(config, rngs=nnx.Rngs(args.seed))
    fit_settings = inr.FitSettings(size.fit_steps, size.learning_rate, size.num_samples, None, size.final_lr_fraction)
    refine_settings = inr.FitSettings(max(size.refine_steps, 1), size.learning_rate, size.num_samples)
    paths, previous = {}, None
    for rate in size.rates:
        path = PRIORS / f"{model.lower()}-{rate:g}bpp{args.suffix}.msgpack"
        if path.is_file() and not args.relearn:
            tqdm.write(f"[{model} {rate:g} bpp] reusing {path.name}")
            paths[rate] = path
            previous = None  # a reused file has no training posteriors to continue from
            continue
        schedule = inr.PriorSchedule(
            rate, size.prior_iterations, size.prior_steps, size.prior_first_steps, size.prior_lr, size.beta_init
        )
        start = time.perf_counter()
        fit = inr.learn_prior(network, train, schedule, seed=args.seed, start=previous)
        seconds = time.perf_counter() - start
        previous = fit
        last = fit.history[-1]
        meta = {
            "model": model, "target_bpp": rate, "num_train": int(train.shape[0]), "schedule": schedule._asdict(),
            "seconds": seconds, "final": last, "train_kl_bpp": float(fit.kl_per_dim.sum() / config.num_pixels),
            "train_psnr_one_sample": float(-10 * math.log10(last["mse"])),
        }
        nbytes = inr.save_prior(
            path, fit, coder_settings(args.full), fit_settings=fit_settings, refine_settings=refine_settings,
            plan_seed=args.seed, weights_dtype="float32", metadata=meta,
        )
        tqdm.write(
            f"[{model} {rate:g} bpp] prior: train KL {meta['train_kl_bpp']:.3f} bpp, one-sample PSNR "
            f"{meta['train_psnr_one_sample']:.2f} dB, {seconds:.0f} s, {nbytes / 1e6:.2f} MB"
        )
        paths[rate] = path
    return paths


# --------------------------------------------------------------------------------------------------
# Compression


def run_coder(bundle: inr.InrBundle, name: str, images: np.ndarray, size: RunSize, args: argparse.Namespace,
              clock: CompileClock, label: str) -> dict[str, Any]:
    """Compresses ``images`` with one coder into one archive, writes it, decodes it from disk."""
    coder, plan = bundle.setup(name)
    chunk = IMAGES_PER_CALL.get(name, len(images))
    refine_steps = max(30000 // plan.num_blocks, 50) if args.full else size.refine_steps
    bundle.codec = bundle.codec.bind(plan, refine=bundle.codec.refine_settings._replace(steps=refine_steps))
    # one chunk holds every image: the fewest stream headers
    writer = codec.ArchiveWriter(bundle.codec, key=args.seed, coder=coder, plan=plan, chunk_items=len(images),
                                group_size=size.group_size)
    enc_s, enc_compile = 0.0, 0.0
    for start in range(0, len(images), chunk):
        _, seconds, compile_s = clock.measure(writer.add, images[start : start + chunk])
        enc_s += seconds
        enc_compile += compile_s
    report = writer.report()
    paths = [results_dir(NAME) / folder / "files" / f"{label}.jxr" for folder in ([LATEST, ""] if args.update else [LATEST])]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(report.archive)
    on_disk = paths[0].read_bytes()
    decoded, dec_s, dec_compile = clock.measure(jaxrec.decompress_batch, bundle.codec, on_disk, plan=plan)
    decoded = np.asarray(decoded)
    _, dec_again_s, _ = clock.measure(jaxrec.decompress_batch, bundle.codec, on_disk, plan=plan)
    n, pixels = len(images), images.shape[1] * images.shape[2]
    block_kl = np.asarray(report.block_kl)
    scores = psnr(decoded, images)
    return {
        "coder": name,
        "kappa": bundle.coders[name].kappa,
        "blocks": plan.num_blocks,
        "refine_steps": refine_steps,
        "file": f"files/{label}.jxr",
        "archive_bytes": len(on_disk),
        "header_bytes": report.header_bytes,
        "bpp": float(8 * len(on_disk) / (n * pixels)),
        "payload_bpp": float(8 * report.payload_bytes / (n * pixels)),
        "index_bpp": float(np.mean(report.index_bits) / pixels),
        "kl_bpp": float(block_kl.sum(axis=1).mean() / pixels),
        "block_kl_mean": float(block_kl.mean()),
        "block_kl_max": float(block_kl.max()),
        "blocks_over_kappa": float(np.mean(block_kl > bundle.coders[name].kappa + 0.5)),
        "psnr": float(scores.mean()),
        "psnr_per_image": scores.round(3).tolist(),
        "mean_steps_per_block": float(np.mean(report.code.steps)),
        "exhausted_fraction": float(np.mean(report.code.exhausted)),
        "images_per_call": chunk,
        "encode_s_per_image": enc_s / n,
        "encode_compile_s": enc_compile,
        "encode_s_per_image_excl_compile": (enc_s - enc_compile) / n,
        "decode_s_per_image_first": dec_s / n,
        "decode_s_per_image": dec_again_s / n,
        "decode_compile_s": dec_compile,
    }


# --------------------------------------------------------------------------------------------------
# Output


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        "# Bayesian INR compression on CIFAR-10: standard ORC vs space-partitioned REC",
        "",
        (f"Test images: the first {cfg['num_test']} of the CIFAR-10 test set; priors learned on {cfg['num_train']} "
        f"training images (train_batch_3). Machine: {result['machine']}. Run: {cfg['run']}; "
        f"encoder: progressive, {cfg['size']['group_size']} blocks per image and step (largest KL first), "
        f"{cfg['size']['refine_steps']} fine-tuning steps of the rest after each step ({cfg['size']['fit_steps']} "
        "steps for the first fit)."),
        "",
        ("Rates are from the archives on disk: one archive per model, rate and coder holding all test images, "
        "bpp = 8 x archive bytes / (images x 1024), its header (shared by the images) included; *payload* excludes "
        "the header. PSNR: decoded 8-bit images, mean over images."),
        "",
        ("| model | prior (target bpp) | coder | kappa | blocks | archive B (header) | bpp (file) | bpp (payload) | KL bpp | PSNR dB "
        "| blocks > kappa+0.5 | steps/block | encode s/img (compile excl.) | decode s/img |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['model']} | {row['target_bpp']:g} | {CODER_LABELS[row['coder']]} | {row['kappa']:g} | {row['blocks']} "
            f"| {row['archive_bytes']} ({row['header_bytes']}) | {row['bpp']:.3f} | {row['payload_bpp']:.3f} | {row['kl_bpp']:.3f} | {row['psnr']:.2f} "
            f"| {row['blocks_over_kappa']:.0%} | {row['mean_steps_per_block']:.3g} "
            f"| {row['encode_s_per_image']:.1f} ({row['encode_s_per_image_excl_compile']:.1f}) | {row['decode_s_per_image']:.3f} |"
        )
    lines += ["", "**BD-rate against standard ORC** (negative = fewer bits at equal PSNR; common PSNR range only):", ""]
    lines += ["| model | coder | BD-rate (file bytes) | BD-rate (payload) | PSNR range dB |", "|---|---|---|---|---|"]
    for entry in result["bd_rate"]:
        fmt = lambda v: "no overlap" if v is None else f"{v:+.1f}%"
        lines.append(
            f"| {entry['model']} | {CODER_LABELS[entry['coder']]} | {fmt(entry['bd_rate'])} | {fmt(entry['bd_rate_payload'])} "
            f"| {entry['psnr_range']} |"
        )
    lines += ["", "**JPEG** (Pillow, optimized Huffman tables), same images:", ""]
    lines += ["| quality | bpp (file) | bpp (scan only) | PSNR dB |", "|---|---|---|---|"]
    lines += [f"| {j['quality']} | {j['bpp']:.2f} | {j['scan_bpp']:.2f} | {j['psnr']:.2f} |" for j in result["jpeg"]]
    lines += ["", "**Priors**:", ""]
    lines += ["| model | target bpp | train KL bpp | one-sample train PSNR | seconds | file MB |", "|---|---|---|---|---|---|"]
    for p in result["priors"]:
        lines.append(
            f"| {p['model']} | {p['target_bpp']:g} | {p['train_kl_bpp']:.3f} | {p['train_psnr_one_sample']:.2f} "
            f"| {p['seconds']:.0f} | {p['file_mb']:.2f} |"
        )
    lines += [
        "",
        (f"Total: {result['total_seconds'] / 60:.1f} min wall clock, {result['total_cpu_seconds'] / 60:.1f} min CPU time "
         "of this process (the machine is shared: wall-clock times include waiting for other jobs)."),
        "",
        "Settings: " + json.dumps(cfg["size"]),
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any]) -> Any:
    """The rate-distortion figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 6))
    styles = {"orc": "-", "sp_orc": "--", "sp_orc_20": "-.", "sp_pfr": ":"}
    colors = {"COMBINER": "C0", "RECOMBINER": "C3"}
    for model in MODELS:
        for name, style in styles.items():
            mine = sorted((r for r in result["rows"] if r["model"] == model and r["coder"] == name), key=lambda r: r["bpp"])
            if mine:
                label = f"{model}, {CODER_LABELS[name]}"
                ax.plot([r["bpp"] for r in mine], [r["psnr"] for r in mine], style, marker="o", color=colors[model],
                        label=f"{label} (file)")
                ax.plot([r["payload_bpp"] for r in mine], [r["psnr"] for r in mine], style, marker="o", mfc="none",
                        color=colors[model], alpha=0.5, label=f"{label} (payload)")
    jpeg = result["jpeg"]
    ax.plot([j["bpp"] for j in jpeg], [j["psnr"] for j in jpeg], "-", marker="s", color="k", label="JPEG (file)")
    ax.plot([j["scan_bpp"] for j in jpeg], [j["psnr"] for j in jpeg], "--", marker="s", color="gray",
            label="JPEG (scan data only)")
    for (name, pts), color in zip(PUBLISHED.items(), ("C2", "C4", "C5")):
        ax.plot(*zip(*pts), "-.", marker="^", color=color, alpha=0.7, label=f"{name} (published)")
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR (dB)")
    ax.set_xlim(0, 4.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"CIFAR-10, first {result['config']['num_test']} test images")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------


def run_name(args: argparse.Namespace, size: RunSize) -> str:
    """``--full``, ``--smoke`` or ``default (reduced)``, with the command-line reductions."""
    name = "--full" if args.full else "--smoke" if args.smoke else "default (reduced)"
    base = FULL if args.full else SMOKE if args.smoke else DEFAULT
    changed = [f"{f}={getattr(size, f)}" for f in ("num_test", "num_train", "rates") if getattr(size, f) != getattr(base, f)]
    return name + (f" with {', '.join(changed)}" if changed else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the papers' settings (all 1000 images, 30k steps; accelerator)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--coders", nargs="+", choices=sorted(CODER_LABELS), default=None,
                        help=f"coder settings to run (default {' '.join(DEFAULT_CODERS)}; --full: all)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only checks the pipeline")
    parser.add_argument("--num-test", type=int, default=None)
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--rates", type=float, nargs="+", default=None, help="target training rates, bpp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--relearn", action="store_true", help="learn the priors even when their files exist")
    parser.add_argument("--export-default", default=None, metavar="MODEL:RATE",
                        help="copy that prior file to jaxrec/models/weights/inr-cifar10.msgpack")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--tag", default=None, help="suffix of the result file names (results_<tag>.json, ...)")
    add_update_flag(parser)
    args = parser.parse_args()
    size = FULL if args.full else SMOKE if args.smoke else DEFAULT
    args.coders = args.coders or (list(CODER_LABELS) if args.full else list(DEFAULT_CODERS))
    size = dataclasses.replace(
        size,
        num_test=args.num_test or size.num_test,
        num_train=args.num_train or size.num_train,
        rates=tuple(sorted(args.rates, reverse=True)) if args.rates else size.rates,
    )
    args.suffix = "_full" if args.full else "_smoke" if args.smoke else ""
    started = time.perf_counter()
    train, _ = data.load_cifar10("train", args.data_dir)
    test, _ = data.load_cifar10("test", args.data_dir)
    train, test = train[: size.num_train], test[: size.num_test]
    clock = CompileClock()
    rows, priors = [], []
    for model in args.models:
        paths = learn_priors(model, train, size, args)
        for rate, path in paths.items():
            bundle = inr.load_bundle(path)
            meta = bundle.metadata
            priors.append({**{k: meta[k] for k in ("model", "target_bpp", "train_kl_bpp", "train_psnr_one_sample", "seconds")},
                           "file_mb": path.stat().st_size / 1e6})
            for name in tqdm(args.coders, desc=f"{model} @ {rate:g} bpp", leave=False):
                label = f"{model.lower()}-{rate:g}bpp-{name}{args.suffix}"
                row = run_coder(bundle, name, test, size, args, clock, label)
                row.update(model=model, target_bpp=rate, prior_file=path.name)
                rows.append(row)
                tqdm.write(
                    f"[{model} {rate:g} bpp {name}] {row['blocks']} blocks: {row['bpp']:.3f} bpp (KL {row['kl_bpp']:.3f}), "
                    f"PSNR {row['psnr']:.2f} dB, encode {row['encode_s_per_image']:.1f} s/img, decode "
                    f"{row['decode_s_per_image'] * 1e3:.1f} ms/img"
                )
        if args.export_default and args.export_default.split(":")[0].upper() == model:
            rate = float(args.export_default.split(":")[1])
            DEFAULT_PRIOR.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paths[rate], DEFAULT_PRIOR)
            tqdm.write(f"default prior: {DEFAULT_PRIOR} ({DEFAULT_PRIOR.stat().st_size / 1e6:.2f} MB)")
    bd = []
    for model in args.models:
        reference = [(r["bpp"], r["psnr"]) for r in rows if r["model"] == model and r["coder"] == "orc"]
        reference_payload = [(r["payload_bpp"], r["psnr"]) for r in rows if r["model"] == model and r["coder"] == "orc"]
        for name in ("sp_orc", "sp_orc_20", "sp_pfr"):
            mine = [r for r in rows if r["model"] == model and r["coder"] == name]
            if not mine or not reference:
                continue
            lo = max(min(p for _, p in reference), min(r["psnr"] for r in mine))
            hi = min(max(p for _, p in reference), max(r["psnr"] for r in mine))
            bd.append({
                "model": model, "coder": name,
                "bd_rate": bd_rate(reference, [(r["bpp"], r["psnr"]) for r in mine]),
                "bd_rate_payload": bd_rate(reference_payload, [(r["payload_bpp"], r["psnr"]) for r in mine]),
                "psnr_range": f"{lo:.2f}-{hi:.2f}" if hi > lo else "none",
            })
    result = {
        "config": {"full": args.full, "run": run_name(args, size), "num_test": size.num_test, "num_train": size.num_train, "seed": args.seed,
                   "size": dataclasses.asdict(size), "coders": {k: v.to_dict() for k, v in coder_settings(args.full).items()}},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores visible, jax {jax.__version__} on {jax.default_backend()}",
        "priors": priors,
        "rows": rows,
        "bd_rate": bd,
        "jpeg": jpeg_curve(test),
        "published": PUBLISHED,
        "total_seconds": time.perf_counter() - started,
        "total_cpu_seconds": time.process_time(),
    }
    out = args.suffix + (f"_{args.tag}" if args.tag else "")
    where = save_json(NAME, f"results{out}.json", result, update=args.update).parent
    save_text(NAME, f"results{out}.md", markdown(result), update=args.update)
    save_figure(NAME, f"rd{out}.png", plot(result), update=args.update, dpi=120)
    print(f"wrote {where}/results{out}.{{json,md}} and rd{out}.png in {result['total_seconds'] / 60:.1f} min "
          f"({result['total_cpu_seconds'] / 60:.1f} CPU min)")


if __name__ == "__main__":
    main()
