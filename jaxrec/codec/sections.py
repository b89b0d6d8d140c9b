"""The payload sections of a file: the index section (the coder's message under its entropy
models) and the data section of lossless codecs (constriction categorical, one row per element)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import constriction
import numpy as np

from jaxrec.codec.blocks import BlockPlan
from jaxrec.coders.registry import CoderEntry, FieldModel
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy import (
    IndexModel,
    PlanAlphabetModel,
    UniformModel,
    ZipfModel,
    decode_streams,
    encode_streams,
    ideal_bits,
    zipf_bits,
)


class Stream(NamedTuple):
    symbol: str
    model: IndexModel
    select: np.ndarray | None  # bool mask over the item's (B, ...) symbol values; None = all


def index_streams(
    entry: CoderEntry, models: Sequence[FieldModel], plan: BlockPlan, shapes: dict[str, tuple]
) -> list[Stream]:
    """The index section's streams in coding order, one per ``(symbol, model)`` of the coder's
    message (``shapes``: the symbols' ``(B, ...)`` shapes, in message order). A
    :class:`PlanAlphabetModel` symbol becomes one ``UniformModel(J)`` stream per distinct alphabet
    size ``J > 1`` (ascending), over the elements of that size; elements of size 1 carry no
    information and are not sent."""
    streams = []
    for symbol, model in zip(shapes, models):
        if not isinstance(model, PlanAlphabetModel):
            streams.append(Stream(symbol, model, None))
            continue
        if entry.alphabet is None:
            raise FormatError(f"symbol {symbol!r} has a plan-alphabet model, but its coder registered no alphabet")
        sizes = np.broadcast_to(np.asarray(entry.alphabet(plan, symbol), np.int64), shapes[symbol])
        streams += [Stream(symbol, UniformModel(int(j)), sizes == j) for j in np.unique(sizes) if j > 1]
    return streams


def stream_values(stream: Stream, field: np.ndarray) -> np.ndarray:
    """The symbols of ``stream`` from field values ``[..., B, ...]`` (leading axes kept, flattened)."""
    lead = field.ndim - (stream.select.ndim if stream.select is not None else field.ndim)
    values = field if stream.select is None else field[(slice(None),) * lead + (stream.select,)]
    return values.reshape(values.shape[:lead] + (-1,))


def encode_fields(streams: list[Stream], fields: dict[str, np.ndarray]) -> bytes:
    """The index section of one item, from its field values ``{field: int[B, ...]}``."""
    return encode_streams([(stream_values(s, fields[s.symbol]), s.model) for s in streams])


def fields_ideal_bits(streams: list[Stream], fields: dict[str, np.ndarray]) -> np.ndarray:
    """``float64[N]``: ideal bits of ``N`` items' index sections, from fields ``int[N, B, ...]``.

    Zipf costs are evaluated in one vectorized call (``entropy.ideal_bits`` per item would dispatch
    a JAX computation per item); the other models are plain numpy."""
    n = next(iter(fields.values())).shape[0]
    bits = np.zeros(n)
    for s in streams:
        values = stream_values(s, fields[s.symbol]).reshape(n, -1)
        if isinstance(s.model, ZipfModel):
            bits += np.asarray(zipf_bits(values, s.model.alpha), np.float64).sum(axis=1)
        else:
            bits += [ideal_bits(v, s.model) for v in values]
    return bits


def decode_fields(data: bytes, streams: list[Stream], shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_fields`: ``{field: int64[B, ...]}``."""
    counts = [int(np.prod(shapes[s.symbol])) if s.select is None else int(s.select.sum()) for s in streams]
    with as_format_error("the index section"):
        decoded = decode_streams(data, [(s.model, count) for s, count in zip(streams, counts)])
    fields = {name: np.zeros(shape, np.int64) for name, shape in shapes.items()}
    for s, values in zip(streams, decoded):
        if s.select is None:
            fields[s.symbol] = values.reshape(shapes[s.symbol])
        else:
            fields[s.symbol][s.select] = values
    return fields


@contextlib.contextmanager
def as_format_error(what: str) -> Iterator[None]:
    """Turns what a decoder of corrupt bytes can raise (including constriction's Rust panics,
    which derive from BaseException) into FormatError."""
    try:
        yield
    except FormatError:
        raise
    except (ValueError, KeyError, IndexError, OverflowError) as err:
        raise FormatError(f"{what} is corrupt: {err}") from None
    except BaseException as err:
        if type(err).__name__ == "PanicException":
            raise FormatError(f"{what} is corrupt: {err}") from None
        raise


# ------------------------------------------------------------------------------------------------
# The data section of lossless codecs (constriction categorical family, one row per element)

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


def likelihood_table(
    codec: Any, z: Any, data_shape: tuple[int, ...], error: type = InvalidArgumentError
) -> np.ndarray:
    """``float64[n, K]``, ``n = prod(data_shape)``: the codec's weights, validated. A shape that
    does not fit ``data_shape`` raises ``error`` (a FormatError when the shape came from a file)."""
    weights = np.asarray(codec.likelihood(z))
    if weights.ndim < 1 or weights.shape[:-1] != tuple(data_shape) or weights.shape[-1] < 1:
        raise error(f"codec.likelihood(z) has shape {weights.shape}, the item shape is {tuple(data_shape)}")
    table = weights.reshape(-1, weights.shape[-1]).astype(np.float64)
    if not (np.isfinite(table).all() and (table >= 0).all() and (table.sum(axis=1) > 0).all()):
        raise InvalidArgumentError("codec.likelihood(z) must give finite weights >= 0 with a positive sum per element")
    return table


def encode_data(x: Any, table: np.ndarray) -> tuple[bytes, float]:
    """``(bytes, ideal bits)`` of the item ``x`` (integers in ``[0, K)``) under ``table``."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise InvalidArgumentError(f"a lossless codec's items must be integer arrays, got {x.dtype}")
    symbols = x.reshape(-1).astype(np.int64)
    bad = np.flatnonzero((symbols < 0) | (symbols >= table.shape[1]))
    if bad.size:
        raise InvalidArgumentError(
            f"x has value {symbols[bad[0]]} at flat position {bad[0]}, outside [0, {table.shape[1]})"
        )
    p = table[np.arange(symbols.size), symbols] / table.sum(axis=1)
    zero = np.flatnonzero(p == 0)
    if zero.size:
        raise InvalidArgumentError(f"codec.likelihood gives weight 0 to x's value at flat position {zero[0]}")
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(symbols.astype(np.int32), _CATEGORICAL, table)
    return coder.get_compressed().astype("<u4").tobytes(), float(-np.log2(p).sum())


def decode_data(data: bytes, table: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_data`: ``int64[n]``; FormatError unless ``data`` is exactly the
    encoding of what it decodes to."""
    if len(data) % 4 or data[-4:] == b"\0\0\0\0":
        raise FormatError("the data section is not a valid ANS stream")
    with as_format_error("the data section"):
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
        symbols = np.asarray(coder.decode(_CATEGORICAL, table), np.int64)
    if (table[np.arange(symbols.size), symbols] == 0).any() or encode_data(symbols, table)[0] != data:
        raise FormatError("the data section is corrupt (it does not re-encode to itself)")
    return symbols
