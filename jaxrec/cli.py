"""The ``jaxrec`` command line.

``jaxrec info FILE [FILE ...] [--json]`` prints what a file's header says -- format version, PRNG,
coder and its parameters, key and item number, latent size, dtype, block count and plan
fingerprint, data shape, entropy models -- and its rate: the ideal codelength of the transmitted
indices (decoded from the payload under the header's models) against the bytes on disk.

Compressing needs a model (a codec) and its block plan, which are Python objects, so ``compress``
and ``decompress`` are library calls (:func:`jaxrec.compress`, :func:`jaxrec.decompress`), not
commands. Exit status: 0 on success, 1 when a file is missing or malformed (the reason goes to
stderr, without a traceback), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from jaxrec.codec import describe
from jaxrec.core.errors import FormatError


def _bits(bits: float | None) -> str:
    return "(ideal bits need the block plan)" if bits is None else f"{bits:.2f} bits ideal"


def _print_info(path: str, info: dict[str, Any]) -> None:
    params = ", ".join(f"{k}={v!r}" for k, v in info["coder_params"].items())
    unknown = "" if info["coder_registered"] else "  (not registered here: cannot decode)"
    fields = [
        ("file", f"{path}: {info['bytes']} bytes = header {info['header_bytes']} + payload {info['payload_bytes']}"),
        ("format", f"version {info['format_version']}, PRNG {info['prng']}"),
        ("coder", f"{info['coder']}({params}){unknown}"),
        ("key", f"words {info['key_words']}, item {info['item']}"),
        ("latent", f"{info['latent_size']} x {info['latent_dtype']} in {info['num_blocks']} blocks, "
                   f"plan fingerprint {info['plan_fingerprint']}"),
        ("data", f"shape {tuple(info['data_shape'])}, {'lossless' if info['lossless'] else 'lossy'}"),
        ("models", "; ".join(info["entropy_models"])),
        ("rate", f"indices {_bits(info['index_ideal_bits'])}, sections {info['section_bytes']} bytes"),
    ]
    for name, value in fields:
        print(f"{name + ':':<8}{value}")


def _info(args: argparse.Namespace) -> int:
    status, infos = 0, {}
    for path in args.files:
        try:
            with open(path, "rb") as f:
                infos[path] = describe(f.read())
        except (OSError, FormatError) as err:
            print(f"jaxrec info: {path}: {err}", file=sys.stderr)
            status = 1
            continue
        if not args.json:
            _print_info(path, infos[path])
    if args.json:
        print(json.dumps(infos, indent=2))
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxrec`` console script; returns the exit status."""
    parser = argparse.ArgumentParser(prog="jaxrec", description="Relative entropy coding in JAX: file tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the header and rate of jaxrec files")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument("--json", action="store_true", help="print one JSON object keyed by file name")
    info.set_defaults(run=_info)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
