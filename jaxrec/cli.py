"""The ``jaxrec`` command line: compress real files with a packaged model, decompress, inspect.

::

    jaxrec compress --model mnist-vae digits/*.png -o digits.jxr      # PNGs, an IDX file (.gz or not) or a .npy
    jaxrec decompress digits.jxr -o out/                               # one PNG per item (or -o out.npy)
    jaxrec info digits.jxr [--json]                                    # header, sizes, ideal vs actual bits

``compress`` reads the items (PNG files of the model's item shape -- 28x28 grayscale for
``mnist-vae`` --, IDX files, gzip-compressed or not, or ``.npy`` arrays of shape ``(N, *item_shape)``,
all of the model's item dtype, uint8), encodes them in batches (``--batch``, a progress bar on a
terminal) with the coder ``--coder`` (default: the model's, SP-PFR for the VAEs) and ``--blocks``
blocks, and writes one archive. The archive's header names the model, its file's CRC32 and the
coder settings, so ``decompress`` and ``info`` find the model by themselves (``--model`` overrides
it, e.g. for a model file given by path). ``info`` decodes the archive with the model, when it is
available, to give the ideal bits next to the bytes on disk.

Errors (a missing or unreadable file, an item of the wrong size or dtype, an unknown model, a
corrupt archive, an archive of another model) print one line on stderr and exit with status 1;
bad usage exits with status 2. Outputs are written to a temporary file (or folder) that replaces
the target only when everything succeeded: a failed command leaves nothing behind.

The console script (:func:`console_main`) keeps the programs XLA compiles in JAX's persistent
compilation cache (:func:`compile_cache_dir`: ``$JAXREC_COMPILE_CACHE``, default
``~/.cache/jaxrec/xla``; ``JAXREC_COMPILE_CACHE=off`` for none), so only the first command of a
kind pays for compiling the coder's batch encoder. :func:`main` itself leaves JAX's configuration
alone (it is what a Python caller or a test calls).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxrec.codec import ArchiveReader, ArchiveWriter, container, describe
from jaxrec.core.errors import FormatError, InvalidArgumentError

__all__ = ["compile_cache_dir", "console_main", "main"]

COMPILE_CACHE_ENV = "JAXREC_COMPILE_CACHE"


class CommandError(Exception):
    """A problem to report in one line (exit status 1)."""


# ------------------------------------------------------------------------------------------------
# Models and inputs


def _load_model(name: str) -> tuple[Any, str]:
    """``(bundle, tag)``: the bundle of a packaged name or a model file, and the tag stored in
    archive headers (``"<name> crc32=<hex>"``)."""
    from jaxrec import models

    try:
        path = models.resolve(name)
        bundle = models.load(path)
    except (InvalidArgumentError, FormatError) as err:
        raise CommandError(str(err)) from None
    return bundle, f"{bundle.name} crc32={zlib.crc32(path.read_bytes()):08x}"


def _parse_tag(model: str) -> dict[str, str]:
    """The ``key=value`` fields of a header's model tag, the name under ``"name"``."""
    words = model.split()
    fields = dict(word.split("=", 1) for word in words[1:] if "=" in word)
    return {"name": words[0], **fields} if words else fields


def _read_png(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    from PIL import Image

    modes = {2: "L", 3: {1: "L", 3: "RGB", 4: "RGBA"}.get(shape[-1] if shape else 0)}
    want = modes.get(len(shape))
    with Image.open(path) as image:
        if image.mode != want or dtype != np.uint8:
            raise CommandError(
                f"{path}: a {image.mode} PNG; the model takes {dtype} items of shape {shape}"
                + (f" ({want} PNGs)" if want else "")
            )
        pixels = np.asarray(image)
    return pixels.reshape(pixels.shape[:2] + shape[2:]) if len(shape) == 3 and shape[-1] == 1 else pixels


def _read_items(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The items of one input file, ``(n, *shape)`` of ``dtype``."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CommandError(f"{path}: {err.strerror or err}") from None
    if raw.startswith(b"\x89PNG"):
        items = _read_png(path, shape, dtype)[None]
    elif raw.startswith(b"\x93NUMPY"):
        try:
            with open(path, "rb") as f:
                items = np.load(f, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise CommandError(f"{path}: not a readable .npy array ({err})") from None
    else:
        from jaxrec import data

        if raw.startswith(b"\x1f\x8b"):
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError) as err:
                raise CommandError(f"{path}: corrupt gzip data ({err})") from None
        if raw[:2] != b"\0\0":
            raise CommandError(f"{path}: not a PNG, IDX or .npy file")
        try:
            items = data.read_idx(path)
        except (FormatError, InvalidArgumentError, OSError) as err:
            raise CommandError(f"{path}: {err}") from None
    if items.dtype != dtype:
        raise CommandError(f"{path}: items of dtype {items.dtype}; the model takes {dtype} items")
    if items.shape == shape:
        items = items[None]
    if items.shape[1:] != shape or items.shape[0] < 1:
        raise CommandError(f"{path}: items of shape {items.shape[1:] or items.shape}; the model takes items of shape {shape}")
    return items


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@contextlib.contextmanager
def _replacing(target: Path, folder: bool = False) -> Iterator[Path]:
    """A temporary file (or folder) next to ``target`` that replaces it on success only."""
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise CommandError(f"{target}: the folder {parent} does not exist")
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent)) if folder else None
    if not folder:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=parent)
        os.close(handle)
        temp = Path(name)
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True) if folder else temp.unlink(missing_ok=True)
        raise
    if folder:
        target.mkdir(exist_ok=True)
        for path in sorted(temp.iterdir()):
            os.replace(path, target / path.name)
        temp.rmdir()
    else:
        os.replace(temp, target)


def _progress(total: int, desc: str, quiet: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item", disable=True if quiet else None, leave=False)


# ------------------------------------------------------------------------------------------------
# Commands


def _compress(args: argparse.Namespace) -> int:
    bundle, tag = _load_model(args.model)
    shape, dtype = tuple(bundle.item_shape), np.dtype(bundle.item_dtype)
    items = np.concatenate([_read_items(Path(p), shape, dtype) for p in args.inputs])
    try:
        coder, plan = bundle.setup(args.coder, args.blocks)
    except InvalidArgumentError as err:
        raise CommandError(str(err)) from None
    settings = tag + (f" coder={args.coder}" if args.coder else "") + (f" blocks={args.blocks}" if args.blocks else "")
    writer = ArchiveWriter(bundle.codec, key=args.key, coder=coder, plan=plan, model=settings)
    with _replacing(Path(args.output)) as temp, _progress(len(items), "compress", args.quiet) as bar:
        for part in _batches(len(items), args.batch):
            writer.add(items[part])
            bar.update(part.stop - part.start)
        report = writer.report()
        temp.write_bytes(report.archive)
    n, pixels = len(items), math.prod(shape)
    print(
        f"{args.output}: {n} items, {report.total_bytes} bytes ({8 * report.total_bytes / (n * pixels):.4f} bits per "
        f"element; ideal {report.ideal_bits / (n * pixels):.4f}, {100 * report.overhead:+.3f}%)"
    )
    return 0


def _open_archive(path: str, model: str | None) -> tuple[ArchiveReader, Any]:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CommandError(f"{path}: {err.strerror or err}") from None
    try:
        header = container.read(data).header
    except FormatError as err:
        raise CommandError(f"{path}: not a valid jaxrec archive: {err}") from None
    tag = _parse_tag(header.model)
    if model is None and "name" not in tag:
        raise CommandError(f"{path}: the archive does not name its model: pass --model")
    bundle, loaded = _load_model(model or tag["name"])
    if model is None and "crc32" in tag and _parse_tag(loaded).get("crc32") != tag["crc32"]:
        raise CommandError(
            f"{path}: written with model {tag['name']} (file crc32 {tag['crc32']}), but this {tag['name']} has crc32 "
            f"{_parse_tag(loaded)['crc32']}: pass the right model file with --model"
        )
    blocks = int(tag["blocks"]) if "blocks" in tag else None
    try:
        _, plan = bundle.setup(tag.get("coder", header.coder_name), blocks)
        reader = ArchiveReader(bundle.codec, data, plan=plan)
    except (InvalidArgumentError, FormatError) as err:
        raise CommandError(f"{path}: {err} (is {bundle.name} the model it was written with?)") from None
    return reader, bundle


def _decompress(args: argparse.Namespace) -> int:
    reader, bundle = _open_archive(args.archive, args.model)
    header = reader.header
    target = Path(args.output)
    as_npy = target.suffix == ".npy"
    if not as_npy and target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CommandError(f"{target}: exists and is not an empty folder (give a new folder or a .npy file)")
    parts = []
    with _progress(len(reader), "decompress", args.quiet) as bar:
        for c in range(header.num_chunks):
            positions = header.chunk_range(c)
            parts.append(reader.read(positions))
            bar.update(len(positions))
    items = np.concatenate(parts)
    dtype = np.dtype(bundle.item_dtype)
    if items.dtype != dtype:  # a lossy model's reconstruction: round and clip to the item dtype
        info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
        items = (np.clip(np.rint(items), info.min, info.max) if info else items).astype(dtype)
    with _replacing(target, folder=not as_npy) as temp:
        if as_npy:
            with open(temp, "wb") as f:
                np.save(f, items)
        else:
            from PIL import Image

            width = max(5, len(str(len(items) - 1)))
            for i, item in enumerate(items):
                Image.fromarray(item[..., 0] if item.ndim == 3 and item.shape[-1] == 1 else item).save(
                    temp / f"{i:0{width}d}.png"
                )
    print(f"{args.output}: {len(items)} items of shape {tuple(items.shape[1:])} {items.dtype}")
    return 0


def _info(args: argparse.Namespace) -> int:
    status, infos = 0, {}
    for path in args.files:
        try:
            try:
                info = describe(Path(path).read_bytes())
            except OSError as err:
                raise CommandError(f"{path}: {err.strerror or err}") from None
            except FormatError as err:
                raise CommandError(f"{path}: not a valid jaxrec archive: {err}") from None
            info["ideal_bits"] = None
            if args.model or _parse_tag(info["model"]).get("name"):
                reader, _ = _open_archive(path, args.model)
                index_bits, data_bits = reader.rates()
                info["index_ideal_bits"] = float(index_bits.sum())
                info["data_ideal_bits"] = float(data_bits.sum())
                info["ideal_bits"] = float(index_bits.sum() + data_bits.sum())
        except (CommandError, FormatError, InvalidArgumentError) as err:
            print(f"jaxrec info: {err}", file=sys.stderr)
            status = 1
            continue
        infos[path] = info
        if not args.json:
            _print_info(path, info)
    if args.json:
        print(json.dumps(infos, indent=2))
    return status


def _print_info(path: str, info: dict[str, Any]) -> None:
    params = ", ".join(f"{k}={v!r}" for k, v in info["coder_params"].items())
    unknown = "" if info["coder_registered"] else "  (not registered here: cannot decode)"
    n = info["num_items"]
    coding = "lossy" if not info["lossless"] else "lossless with snap marks" if info["snap_marks"] else "lossless"
    ideal = info["ideal_bits"] if info["ideal_bits"] is not None else info["index_ideal_bits"]
    if ideal is None:
        rate = "ideal bits need the model and the block plan"
    else:
        what = "ideal" if info["ideal_bits"] is not None else "ideal (messages only)"
        rate = f"{what} {ideal / n:.2f} bits/item = {ideal / 8:.1f} bytes; on disk {info['bits_per_item']:.2f} bits/item"
        if info["ideal_bits"] is not None:
            rate += f" ({100 * (8 * info['bytes'] / ideal - 1):+.3f}%)"
    models = " | ".join("; ".join(group) for group in info["entropy_models"])
    fields = [
        ("file", (f"{path}: {info['bytes']} bytes = header {info['header_bytes']} + item table {info['table_bytes']} "
                  f"+ streams {info['payload_bytes']} + checksum {info['checksum_bytes']}")),
        ("format", f"version {info['format_version']}, PRNG {info['prng']}"),
        ("model", info["model"] or "(not recorded)"),
        ("coder", f"{info['coder']}({params}){unknown}"),
        ("key", f"words {info['key_words']}, first item {info['first_item']}"),
        ("items", (f"{n} of shape {tuple(info['item_shape'])} {info['item_dtype']}, {coding}, "
                   f"in {info['num_chunks']} chunks of {info['chunk_items']}")),
        ("latent", (f"{info['latent_size']} x {info['latent_dtype']} in {info['num_blocks']} blocks, "
                    f"plan fingerprint {info['plan_fingerprint']}")),
        ("models", models),
        ("rate", rate),
    ]
    for name, value in fields:
        print(f"{name + ':':<8}{value}")


# ------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxrec",
        description="Relative entropy coding in JAX: compress real files.",
        epilog=(f"Compiled programs are kept in ${COMPILE_CACHE_ENV} (default ~/.cache/jaxrec/xla; "
                f"{COMPILE_CACHE_ENV}=off for none): each program is compiled once per machine."),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    compress = sub.add_parser("compress", help="compress items (PNG, IDX, .npy) into one archive")
    compress.add_argument("inputs", nargs="+", metavar="INPUT", help="PNG files, IDX files (.gz or not), .npy arrays")
    compress.add_argument("-o", "--output", required=True, metavar="OUT.jxr")
    compress.add_argument("--model", required=True, help="a packaged model (e.g. mnist-vae) or a model file")
    compress.add_argument("--coder", default=None, help="the coder (default: the model's; sp_pfr for the VAEs)")
    compress.add_argument("--blocks", type=int, default=None, help="latent blocks (default: the model's)")
    compress.add_argument("--key", type=int, default=0, help="the shared seed written into the header (default 0)")
    compress.add_argument("--batch", type=_positive, default=1000, help="items per encoding call (default 1000)")
    compress.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    compress.set_defaults(run=_compress)
    decompress = sub.add_parser("decompress", help="decompress an archive into PNGs or one .npy")
    decompress.add_argument("archive", metavar="ARCHIVE")
    decompress.add_argument("-o", "--output", required=True, metavar="DIR_OR_FILE.npy")
    decompress.add_argument("--model", default=None, help="the model (default: the one the archive names)")
    decompress.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    decompress.set_defaults(run=_decompress)
    info = sub.add_parser("info", help="print the header, sizes and rate of archives")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument("--json", action="store_true", help="print one JSON object keyed by file name")
    info.add_argument("--model", default=None, help="the model for the ideal bits (default: the one the archive names)")
    info.set_defaults(run=_info)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def compile_cache_dir(environ: Mapping[str, str]) -> Path | None:
    """The folder of the console script's compilation cache under the environment ``environ``.

    ``$JAXREC_COMPILE_CACHE`` if set (``off``, ``0`` or empty: ``None``, no cache), else
    ``$XDG_CACHE_HOME/jaxrec/xla``, else ``~/.cache/jaxrec/xla``.  ``None`` as well when
    ``JAX_COMPILATION_CACHE_DIR`` is set: JAX then uses that folder, with its own settings.
    """
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    if COMPILE_CACHE_ENV in environ:
        value = environ[COMPILE_CACHE_ENV].strip()
        return None if value.lower() in ("", "0", "off") else Path(value).expanduser()
    root = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
    return Path(root).expanduser() / "jaxrec" / "xla"


def _use_compile_cache(folder: Path | None) -> None:
    """Points JAX's persistent compilation cache at ``folder`` (every program, however fast it
    compiled: a command compiles a few dozen, 2.5 MB in all for ``mnist-vae``).  An uncreatable
    folder means no cache, silently: the commands work the same, only slower."""
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def console_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxrec`` console script: :func:`main` with the compilation cache of
    :func:`compile_cache_dir` (``mnist-vae``, 500 digits, 2 cores: ``compress`` 31-37 s the first
    time, 13-16 s after)."""
    _use_compile_cache(compile_cache_dir(os.environ))
    try:
        return main(argv)
    except BrokenPipeError:  # `jaxrec info x.jxr | head`: the reader left; exit quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


def main(argv: Sequence[str] | None = None) -> int:
    """The ``jaxrec`` command line on ``argv`` (default ``sys.argv[1:]``), leaving JAX's configuration
    alone (the console script runs it through :func:`console_main`); returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, FormatError, InvalidArgumentError) as err:
        print(f"jaxrec {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(console_main())
