"""Index arrays to bytes and back, several streams under their own models in one byte string.

Byte format: the range coder's ``uint32`` words in little-endian order, nothing else (no length,
no model parameters: the caller stores those, counts included, since a stream does not delimit
itself). Decoding checks that the bytes are *exactly* the encoding of what they decode to (it
re-encodes and compares), so truncated or padded input raises :class:`~jaxrec.core.errors.FormatError`,
and so does most corrupt input; a corruption that happens to yield another valid encoding (a few
percent of bit flips) decodes to other indices, which the container's checksum catches. The range
coder is used rather than ANS because constriction's ANS coder starts from an empty state that
makes truncated streams valid encodings of other indices (often all zeros).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxrec.core.checks import describe
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy.models import (
    IndexModel,
    _as_count,
    _as_model,
    _RangeDecoder,
    _RangeEncoder,
    _Segment,
    _validated,
)

__all__ = ["decode_indices", "decode_streams", "encode_indices", "encode_streams", "ideal_bits"]


def ideal_bits(indices: Any, model: IndexModel) -> float:
    """Sum over ``indices`` (integer array, any shape) of ``-log2 p(index)`` under ``model``.

    For :class:`ZipfModel` this is the sum of :func:`zipf_bits` (the untruncated, unquantised prior).
    """
    idx, model = _validated(indices, model)
    return model._ideal_bits(idx)


def encode_streams(streams: Sequence[tuple[Any, IndexModel]]) -> bytes:
    """Encode several index arrays, each under its own model, into one byte string.

    Args:
      streams: ``(indices, model)`` pairs; ``indices`` is an integer array of any shape (flattened
        in C order).

    Returns:
      The range coder's words as little-endian bytes (a multiple of 4 long). Decode with
      :func:`decode_streams` and the same models and counts.

    Raises:
      InvalidArgumentError: a non-integer dtype, a negative or out-of-support index (named in the
        message), or an unknown model.
    """
    segments: list[_Segment] = []
    for indices, model in _pairs("streams", streams, "(indices, model)"):
        idx, model = _validated(indices, model)
        segments += model._segments(idx)
    coder = _RangeEncoder()
    for symbols, entropy_model, *params in segments:
        coder.encode(symbols, entropy_model, *params)
    return coder.get_compressed().astype("<u4").tobytes()


def _pairs(name: str, items: Any, form: str) -> list[tuple[Any, Any]]:
    """``items`` as a list of 2-tuples; :class:`InvalidArgumentError` naming ``name`` otherwise."""
    try:
        pairs = [tuple(item) for item in items]
    except TypeError:
        raise InvalidArgumentError(f"{name} must be a sequence of {form} pairs, got {describe(items)}") from None
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise InvalidArgumentError(f"{name}[{i}] must be an {form} pair, got {describe(pair)}")
    return pairs


def _words(data: Any) -> np.ndarray:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) % 4:
        raise FormatError(f"compressed data must be a multiple of 4 bytes long, got {len(data)}")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def decode_streams(data: bytes, specs: Sequence[tuple[IndexModel, int]]) -> list[np.ndarray]:
    """Inverse of :func:`encode_streams`.

    Args:
      data: bytes from :func:`encode_streams`.
      specs: ``(model, count)`` pairs, in the order the streams were encoded. Counts are trusted:
        decoding allocates and works in proportion to them, whatever ``data`` holds.

    Returns:
      One int64 array of shape ``(count,)`` per spec.

    Raises:
      FormatError: ``data`` is not exactly the encoding of the decoded indices (truncated, padded or
        corrupt) or decodes outside a model's support.
      InvalidArgumentError: ``data`` is not bytes-like, or a bad model or count.
    """
    specs = [(_as_model(model), _as_count(count)) for model, count in _pairs("specs", specs, "(model, count)")]
    words = _words(data)
    coder = _RangeDecoder(words)
    try:
        decoded = [model._decode(coder, count) for model, count in specs]
    except AssertionError as err:  # constriction's RangeDecoder on data no encoder can produce
        raise FormatError(f"compressed data is corrupt: {err}") from err
    if encode_streams([(idx, model) for idx, (model, _) in zip(decoded, specs)]) != words.astype("<u4").tobytes():
        raise FormatError("compressed data is truncated, padded or corrupt (it does not re-encode to itself)")
    return decoded


def encode_indices(indices: Any, model: IndexModel) -> bytes:
    """Encode one index array (integer, any shape, flattened) under ``model``; see :func:`encode_streams`."""
    return encode_streams([(indices, model)])


def decode_indices(data: bytes, model: IndexModel, count: int) -> np.ndarray:
    """Decode ``count`` indices, int64 shape ``(count,)``, written by :func:`encode_indices`."""
    return decode_streams(data, [(model, count)])[0]
