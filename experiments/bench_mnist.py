"""The MNIST test set end to end: lossless VAE codec, SP-PFR on 4 blocks, one archive, and back.

Loads the packaged model (``jaxrec.models.load("mnist-vae")``, its ``setup("sp_pfr", 4)`` plan and
coder), compresses the test images into ONE archive with ``jaxrec.compress_batch``, writes it to
disk, reads it back and decompresses it with ``jaxrec.decompress_batch``; checks the round trip is
bit-exact and compares the archive's bytes with the ideal bits (latent message + pixel data under
the model).  Timed by stage: the library's stages are wrapped with timers here (the archive
writer's ``_targets`` = posterior, the compiled block encoder / decoder calls = REC search /
candidate rebuild (the lossless encoder rebuilds its latents too), ``_encode_data`` /
``_decode_data`` = pixel likelihoods and entropy coding); "other" is the rest (index streams,
container), and I/O the file write / read.

The encoder adds the images to one :class:`jaxrec.codec.ArchiveWriter` in batches of ``--batch``
(one compiled, sharded REC call per batch).  A warm-up pass on one batch compiles everything first
(its time is reported apart), so the timed pass measures steady-state throughput, as a server
compressing many batches would see.

``--keep`` keeps the timed run's archive; ``--decode ARCHIVE`` only decodes an archive written by
another run (another backend, another machine, another JAX release) on this one, timed, and checks
it against the test images: the GPU-encode / CPU-decode check.

    python experiments/bench_mnist.py                 # the 10,000 test images (CPU: a few minutes)
    python experiments/bench_mnist.py --num 1000      # fewer images
    python experiments/bench_mnist.py --device gpu --keep gpu.jxr   # keep the archive ...
    python experiments/bench_mnist.py --device cpu --decode gpu.jxr # ... and decode it on the CPU
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from _results import add_update_flag, save_json, save_text

import jaxrec
import jaxrec.models
from jaxrec import data
from jaxrec.codec import archive

NAME = "bench_mnist"
GOAL_S = 60.0

# (owner, attribute, stage): library calls whose wall time is charged to a stage
STAGES = (
    (archive.ArchiveWriter, "_targets", "posterior"),
    (archive.ArchiveWriter, "_encode_data", "pixel coding"),
    (archive.ArchiveReader, "_decode_data", "pixel decoding"),
)
# functions that build the compiled block coders: each call they make is charged to a stage
BUILDERS = (("block_encoder", "REC search"), ("block_decoder", "candidate rebuild"))


def _timed(fn: Callable, totals: dict[str, float], stage: str) -> Callable:
    """``fn`` that adds its wall time (results ready) to ``totals[stage]``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args, **kwargs))
        totals[stage] += time.perf_counter() - t0
        return out

    return wrapper


@contextlib.contextmanager
def stage_timers(totals: dict[str, float]) -> Iterator[None]:
    """Wraps the :data:`STAGES` methods and the compiled block coders that :data:`BUILDERS`
    return with timers adding to ``totals``; restores them on exit."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in STAGES]
    saved += [(archive, name, getattr(archive, name)) for name, _ in BUILDERS]
    for owner, name, stage in STAGES:
        setattr(owner, name, _timed(getattr(owner, name), totals, stage))
    for name, stage in BUILDERS:
        build = getattr(archive, name)
        setattr(archive, name, lambda *a, build=build, stage=stage: _timed(build(*a), totals, stage))
    try:
        yield
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def decode(model: Any, path: Path, plan: Any) -> tuple[np.ndarray, float, float, dict[str, float]]:
    """Reads the archive at ``path`` and decompresses it; returns the images, the read and decode
    times and the decode stages (``"I/O (read file)"`` and ``"other"`` included)."""
    dec: dict[str, float] = defaultdict(float)
    with stage_timers(dec):
        t0 = time.perf_counter()
        blob = path.read_bytes()
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        decoded = jaxrec.decompress_batch(model, blob, plan=plan)
        t_decode = time.perf_counter() - t0
    dec["other (index streams, container)"] = t_decode - sum(dec.values())
    dec["I/O (read file)"] = t_read
    return decoded, t_read, t_decode, dict(dec)


def run(model: Any, images: np.ndarray, coder: Any, plan: Any, seed: int, batch: int, path: Path) -> dict[str, Any]:
    """One compress (in batches of ``batch`` images) / write (to ``path``) / read / decompress pass
    over ``images`` into one archive; times by stage."""
    enc: dict[str, float] = defaultdict(float)
    with stage_timers(enc):
        t0 = time.perf_counter()
        writer = jaxrec.codec.ArchiveWriter(model, key=seed, coder=coder, plan=plan)
        for start in range(0, len(images), batch):  # one compiled REC call per batch of this shape
            writer.add(images[start : start + batch])
        report = writer.report()
        t_encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    path.write_bytes(report.archive)
    t_write = time.perf_counter() - t0
    decoded, t_read, t_decode, dec = decode(model, path, plan)
    exact = bool(np.array_equal(decoded.reshape(images.shape), images))
    index_bits = float(np.sum(report.index_bits))
    data_bits = float(np.sum(report.data_bits))
    enc["other (index streams, container)"] = t_encode - sum(enc.values())
    enc["I/O (write file)"] = t_write
    n = len(images)
    return {
        "images": n,
        "bit_exact": exact,
        "archive_bytes": len(report.archive),
        "ideal_bits": index_bits + data_bits,
        "ideal_latent_bits": index_bits,
        "ideal_pixel_bits": data_bits,
        "overhead_vs_ideal": 8 * len(report.archive) / (index_bits + data_bits) - 1,
        "bits_per_dim": 8 * len(report.archive) / (n * images[0].size),
        "encode_s": t_encode + t_write,
        "decode_s": t_decode + t_read,
        "encode_images_per_s": n / (t_encode + t_write),
        "decode_images_per_s": n / (t_decode + t_read),
        "encode_stages_s": dict(enc),
        "decode_stages_s": dec,
        "mean_steps_per_block": float(np.mean(report.code.steps)),
        "max_steps_per_block": int(np.max(report.code.steps)),
    }


def decode_elsewhere(model: Any, path: Path, plan: Any, images: np.ndarray) -> dict[str, Any]:
    """Decodes an archive written by another run (another backend or machine: the GPU-encode /
    CPU-decode check), after a first pass over its first chunk that compiles the decoders; checks it
    against the first test images.  A ``FormatError`` is a result (``"error"``), not a crash."""
    result: dict[str, Any] = {"archive": path.name, "archive_bytes": path.stat().st_size, "bit_exact": False}
    try:
        t0 = time.perf_counter()
        jaxrec.decompress_batch(model, path.read_bytes(), plan=plan, items=[0])
        result["warmup_decode_s"] = time.perf_counter() - t0
        decoded, t_read, t_decode, stages = decode(model, path, plan)
    except jaxrec.FormatError as err:
        return {**result, "images": None, "mismatched_images": None, "error": str(err)}
    n = len(decoded)
    if n > len(images):
        raise SystemExit(f"{path} holds {n} images, more than the {len(images)} MNIST test images")
    same = np.all(decoded.reshape(n, -1) == images[:n].reshape(n, -1), axis=1)
    return {
        **result,
        "images": n,
        "bit_exact": bool(same.all()),
        "mismatched_images": int(n - same.sum()),
        "decode_s": t_read + t_decode,
        "decode_images_per_s": n / (t_read + t_decode),
        "decode_stages_s": stages,
    }


def markdown(result: dict[str, Any], warm: dict[str, Any], header: str) -> str:
    lines = [
        header, "",
        (f"{result['images']} images, one archive of {result['archive_bytes']} bytes "
         f"({result['bits_per_dim']:.4f} bits/dim; ideal {result['ideal_bits'] / 8:.0f} bytes, overhead "
         f"{100 * result['overhead_vs_ideal']:.2f}%); round trip bit-exact: {result['bit_exact']}; "
         f"steps per block: mean {result['mean_steps_per_block']:.0f}, max {result['max_steps_per_block']}."), "",
        f"| direction | total s | images/s | goal < {GOAL_S:.0f} s | stages (s) |", "|---|---|---|---|---|",
    ]
    for side in ("encode", "decode"):
        stages = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result[f"{side}_stages_s"].items(), key=lambda kv: -kv[1]))
        total = result[f"{side}_s"]
        lines.append(
            f"| {side} | {total:.1f} | {result[f'{side}_images_per_s']:.0f} | {'met' if total < GOAL_S else 'missed'} "
            f"| {stages} |"
        )
    lines += ["", (f"Warm-up (compilation) pass on one batch of {warm['images']} images: encode {warm['encode_s']:.1f} s, "
                   f"decode {warm['decode_s']:.1f} s.")]
    return "\n".join(lines) + "\n"


def decode_markdown(result: dict[str, Any], header: str) -> str:
    written = f"Decoded `{result['archive']}` ({result['archive_bytes']} bytes, written by another run): "
    if "error" in result:
        return "\n".join([header, "", written + f"**FormatError**: {result['error']}"]) + "\n"
    stages = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result["decode_stages_s"].items(), key=lambda kv: -kv[1]))
    return "\n".join([
        header, "",
        (written + f"{result['images']} images, bit-exact against the MNIST test images: {result['bit_exact']} "
         f"({result['mismatched_images']} mismatched)."), "",
        "| direction | total s | images/s | stages (s) |", "|---|---|---|---|",
        f"| decode | {result['decode_s']:.1f} | {result['decode_images_per_s']:.0f} | {stages} |", "",
        f"First (compiling) pass over the first chunk: {result['warmup_decode_s']:.1f} s.",
    ]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=10_000, help="test images (default: all 10,000)")
    parser.add_argument("--batch", type=int, default=1000, help="images per compiled encoder call (ArchiveWriter.add)")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--coder", default="sp_pfr")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="JAX platform (cpu, gpu, tpu; default: JAX's default)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tag", default="")
    parser.add_argument("--keep", type=Path, default=None, metavar="ARCHIVE",
                        help="also keep the timed run's archive here (to decode it elsewhere with --decode)")
    parser.add_argument("--decode", type=Path, default=None, metavar="ARCHIVE",
                        help="only decode ARCHIVE (written by another run, e.g. on another backend) on this "
                             "backend, timed, and check it against the test images; writes <backend>-decoded<tag>.*")
    add_update_flag(parser)
    args = parser.parse_args()
    if args.decode is not None and args.keep is not None:
        parser.error("--decode reads an archive and --keep writes one: give one of them")
    if args.decode is not None and not args.decode.is_file():
        parser.error(f"--decode: no archive at {args.decode}")
    bundle = jaxrec.models.load("mnist-vae")
    coder, plan = bundle.setup(args.coder, args.blocks)
    images, _ = data.load_mnist("test", directory=args.data_dir)
    images = images[: args.num]
    device = jax.devices(args.device)[0] if args.device else jax.devices()[0]
    header = f"backend: {device.platform} ({device.device_kind}), {len(jax.devices())} device(s); "
    if args.decode is not None:
        with jax.default_device(device):
            result = decode_elsewhere(bundle.codec, args.decode, plan, images)
        header += f"{args.coder} on {args.blocks} blocks, mnist-vae bundle"
        stem, text, saved = f"{device.platform}-decoded{args.tag}", decode_markdown(result, header), {"result": result}
    else:
        with jax.default_device(device), tempfile.TemporaryDirectory() as tmp:
            batch = min(args.batch, len(images))
            warm = run(bundle.codec, images[:batch], coder, plan, args.seed, batch, Path(tmp) / "warmup.jxr")
            result = run(bundle.codec, images, coder, plan, args.seed, batch, args.keep or Path(tmp) / "mnist_test.jxr")
        header += f"{args.coder} on {args.blocks} blocks, mnist-vae bundle, encoder batches of {batch} images"
        stem = f"{device.platform}{args.tag}" + ("" if args.num == 10_000 else f"-n{args.num}")
        text, saved = markdown(result, warm, header), {"result": result, "warmup": warm}
    print(text)
    save_json(NAME, f"{stem}.json", {"header": header, **saved}, update=args.update, indent=2)
    out = save_text(NAME, f"{stem}.md", text, update=args.update)
    print(f"wrote {out}")
    if not result["bit_exact"]:
        raise SystemExit(result.get("error") or f"not bit-exact: {result['mismatched_images']} image(s) differ")


if __name__ == "__main__":
    main()
