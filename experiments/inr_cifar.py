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
   (``results/inr_cifar/priors/<model>-<rate>bpp.msgpack``).
2. **Compression.** For every coder, the test images (the first ones of the CIFAR-10 test set)
   are compressed through :func:`jaxrec.compress_batch` -- progressively (largest-KL blocks first,
   fine-tuning the rest after each step) when the installed jaxrec has the progressive encoder
   loop -- and every file is written to disk, read back and decompressed.
3. **Metrics from the bytes on disk.** Rate = file bytes x 8 / 1024 bits per pixel (header
   included; the payload alone is reported as well); PSNR of the decoded 8-bit image against the
   original, averaged over images, as the papers.
4. **Baselines.** JPEG (Pillow, a quality sweep, the same images): whole files, and the
   entropy-coded scan alone (headers and tables excluded -- a lower bound; a 32x32 JPEG file is
   >= 2.4 bpp of headers). Published CIFAR-10 points of COIN++, BPG and the Balle et al. (2018)
   hyperprior (from COIN++'s baseline files) on the plot.
5. **BD-rate** of SP-ORC and SP-PFR against standard ORC per model: the mean bitrate change at
   equal PSNR over the common PSNR range, log-rate interpolated piecewise-linearly in PSNR.

    python experiments/inr_cifar.py            # default: < 45 min on 2 CPU cores (reduced, see --help)
    python experiments/inr_cifar.py --full     # the papers' settings (accelerator: hours)

Writes ``experiments/results/inr_cifar/{results.json, results.md, rd.png}`` (``*_full`` with ``--full``),
the prior files, and the compressed files under ``files/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
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
from flax import nnx
from tqdm.auto import tqdm

import jaxrec
from jaxrec import codec, data
from jaxrec.models import inr

RESULTS = Path(__file__).resolve().parent / "results" / "inr_cifar"
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
      (about 8 GB of encoder memory per image on RECOMBINER's blocks: ``--full`` only).
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
        path = args.out_dir / "priors" / f"{model.lower()}-{rate:g}bpp{args.suffix}.msgpack"
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


def progressive_available() -> bool:
    """Whether the installed jaxrec runs progressive codecs' ``refine`` (the ``group_size`` argument)."""
    return "group_size" in inspect.signature(codec.compress_report).parameters


def run_coder(bundle: inr.InrBundle, name: str, images: np.ndarray, size: RunSize, args: argparse.Namespace,
              clock: CompileClock, folder: Path) -> dict[str, Any]:
    """Compresses ``images`` with one coder, writes the files, decodes them from disk."""
    coder, plan = bundle.setup(name)
    chunk = IMAGES_PER_CALL.get(name, len(images))
    refine_steps = max(30000 // plan.num_blocks, 50) if args.full else size.refine_steps
    bundle.codec = bundle.codec.bind(plan, refine=bundle.codec.refine_settings._replace(steps=refine_steps))
    progressive = progressive_available() and refine_steps > 0
    kwargs = {"group_size": size.group_size} if progressive else {}
    reports, enc_s, enc_compile = [], 0.0, 0.0
    for start in range(0, len(images), chunk):
        part, seconds, compile_s = clock.measure(
            codec.compress_report, bundle.codec, images[start : start + chunk], key=args.seed, coder=coder, plan=plan,
            first_item=start, **kwargs,
        )
        reports.append(part)
        enc_s += seconds
        enc_compile += compile_s
    files = [f for r in reports for f in r.files]
    rates = [x for r in reports for x in r.rates]
    block_kl = np.concatenate([np.asarray(r.block_kl) for r in reports])
    steps = np.concatenate([np.asarray(r.code.steps) for r in reports])
    exhausted = np.concatenate([np.asarray(getattr(r.code, "exhausted", np.zeros_like(r.code.steps))) for r in reports])
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i, blob in enumerate(files):
        (folder / f"{i:04d}.jxr").write_bytes(blob)
    on_disk = [(folder / f"{i:04d}.jxr").read_bytes() for i in range(len(files))]
    decoded, dec_s, dec_compile = clock.measure(jaxrec.decompress_batch, bundle.codec, on_disk, plan=plan)
    decoded = np.asarray(decoded)
    _, dec_again_s, _ = clock.measure(jaxrec.decompress_batch, bundle.codec, on_disk, plan=plan)
    pixels = images.shape[1] * images.shape[2]
    sizes = np.array([len(b) for b in on_disk])
    payload = np.array([r.payload_bytes for r in rates])
    scores = psnr(decoded, images)
    return {
        "coder": name,
        "kappa": bundle.coders[name].kappa,
        "blocks": plan.num_blocks,
        "progressive": progressive,
        "refine_steps": refine_steps,
        "bpp": float(8 * sizes.mean() / pixels),
        "payload_bpp": float(8 * payload.mean() / pixels),
        "index_bpp": float(np.mean([r.index_bits for r in rates]) / pixels),
        "kl_bpp": float(block_kl.sum(axis=1).mean() / pixels),
        "block_kl_mean": float(block_kl.mean()),
        "block_kl_max": float(block_kl.max()),
        "blocks_over_kappa": float(np.mean(block_kl > bundle.coders[name].kappa + 0.5)),
        "psnr": float(scores.mean()),
        "psnr_per_image": scores.round(3).tolist(),
        "mean_steps_per_block": float(steps.mean()),
        "exhausted_fraction": float(exhausted.mean()),
        "images_per_call": chunk,
        "encode_s_per_image": enc_s / len(images),
        "encode_compile_s": enc_compile,
        "encode_s_per_image_excl_compile": (enc_s - enc_compile) / len(images),
        "decode_s_per_image_first": dec_s / len(images),
        "decode_s_per_image": dec_again_s / len(images),
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
        f"training images (train_batch_3). Machine: {result['machine']}. Run: {'--full' if cfg['full'] else 'default (reduced)'}; "
        f"encoder: {'progressive (largest KL first, refine after each step)' if result['progressive'] else 'non-progressive (the installed jaxrec has no progressive loop)'}."),
        "",
        ("Rates are from the files on disk (header included); *payload* excludes the header. PSNR: decoded 8-bit "
        "images, mean over images."),
        "",
        ("| model | prior (target bpp) | coder | kappa | blocks | bpp (file) | bpp (payload) | KL bpp | PSNR dB "
        "| blocks > kappa+0.5 | steps/block | encode s/img (compile excl.) | decode s/img |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['model']} | {row['target_bpp']:g} | {CODER_LABELS[row['coder']]} | {row['kappa']:g} | {row['blocks']} "
            f"| {row['bpp']:.3f} | {row['payload_bpp']:.3f} | {row['kl_bpp']:.3f} | {row['psnr']:.2f} "
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


def plot(result: dict[str, Any], path: Path) -> None:
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
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------


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
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
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
    args.out_dir.mkdir(parents=True, exist_ok=True)
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
                folder = args.out_dir / "files" / f"{model.lower()}-{rate:g}bpp-{name}{args.suffix}"
                row = run_coder(bundle, name, test, size, args, clock, folder)
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
        "config": {"full": args.full, "num_test": size.num_test, "num_train": size.num_train, "seed": args.seed,
                   "size": dataclasses.asdict(size), "coders": {k: v.to_dict() for k, v in coder_settings(args.full).items()}},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores visible, jax {jax.__version__} on {jax.default_backend()}",
        "progressive": progressive_available(),
        "priors": priors,
        "rows": rows,
        "bd_rate": bd,
        "jpeg": jpeg_curve(test),
        "published": PUBLISHED,
        "total_seconds": time.perf_counter() - started,
        "total_cpu_seconds": time.process_time(),
    }
    (args.out_dir / f"results{args.suffix}.json").write_text(json.dumps(result, indent=1))
    (args.out_dir / f"results{args.suffix}.md").write_text(markdown(result))
    plot(result, args.out_dir / f"rd{args.suffix}.png")
    print(f"wrote {args.out_dir}/results{args.suffix}.{{json,md}} and rd{args.suffix}.png in {result['total_seconds'] / 60:.1f} min "
          f"({result['total_cpu_seconds'] / 60:.1f} CPU min)")


if __name__ == "__main__":
    main()
