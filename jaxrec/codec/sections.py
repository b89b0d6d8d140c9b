"""The streams of an archive chunk: the coder's message over the chunk's items (the index stream)
and, for lossless codecs, the items themselves given their latents (the data stream).

Both are `constriction`_ range-coder streams (Bamler, NeurIPS 2022): one stream per chunk and
section costs its termination (at most two 32-bit words) once per chunk instead of once per item.

* **Index stream.** The coder's message (its symbols and entropy models, from the coder registry)
  of every item of the chunk: for each group of items sharing one set of models (ascending), for
  each symbol and model in message order, the symbols of all the group's items in item order.
  A :class:`~jaxrec.entropy.PlanAlphabetModel` symbol is sent as one ``UniformModel(J)`` stream per
  alphabet size ``J > 1`` over the elements of that size (elements of size 1 carry no information).
* **Data stream.** Every element of every item, in item then C order, under the codec's weights
  ``likelihood(z)`` at the *decoded* latent (constriction's ``Categorical`` family, one row of
  weights per element, quantized identically on both sides). For a codec that declares
  ``latent_step`` (format version 4), each likelihood batch of items is preceded by its **snap
  marks**: one symbol per latent coordinate under :data:`SNAP_WEIGHTS` (see :func:`snap_marks`).

.. _constriction: https://bamler-lab.github.io/constriction/
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

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

__all__ = [
    "DataDecoder",
    "DataEncoder",
    "Stream",
    "as_format_error",
    "check_tables",
    "data_ideal_bits",
    "decode_index_chunk",
    "encode_index_chunk",
    "fields_ideal_bits",
    "index_streams",
]


class Stream(NamedTuple):
    """One entropy-coded stream of a symbol: its name, model and the elements it covers."""

    symbol: str
    model: IndexModel
    select: np.ndarray | None  # bool mask over one item's (B, ...) symbol values; None = all

    def count(self, shape: tuple[int, ...]) -> int:
        """Elements of one item this stream codes (``shape``: the symbol's ``(B, ...)`` shape)."""
        return int(np.prod(shape)) if self.select is None else int(self.select.sum())

    def values(self, field: np.ndarray) -> np.ndarray:
        """The stream's symbols from field values ``[n, B, ...]``: ``[n, count]``."""
        values = field if self.select is None else field[:, self.select]
        return values.reshape(values.shape[0], -1)


def index_streams(
    entry: CoderEntry, models: Sequence[FieldModel], plan: BlockPlan, shapes: dict[str, tuple]
) -> list[Stream]:
    """The streams of one group in coding order, one per ``(symbol, model)`` of the coder's message
    (``shapes``: the symbols' ``(B, ...)`` shapes, in message order)."""
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


def encode_index_chunk(groups: Sequence[tuple[list[Stream], dict[str, np.ndarray]]]) -> bytes:
    """The index stream of a chunk: per group, its streams and its items' symbols ``{symbol: int[n_g, B, ...]}``."""
    return encode_streams([(s.values(symbols[s.symbol]), s.model) for streams, symbols in groups for s in streams])


def decode_index_chunk(
    data: bytes, groups: Sequence[tuple[list[Stream], int]], shapes: dict[str, tuple]
) -> list[dict[str, np.ndarray]]:
    """Inverse of :func:`encode_index_chunk` given each group's streams and item count ``n_g``:
    per group ``{symbol: int64[n_g, B, ...]}``. FormatError unless ``data`` is exactly that encoding."""
    specs = [(s.model, n * s.count(shapes[s.symbol])) for streams, n in groups for s in streams]
    with as_format_error("an index stream"):
        decoded = iter(decode_streams(data, specs))
    out = []
    for streams, n in groups:
        symbols = {name: np.zeros((n, *shape), np.int64) for name, shape in shapes.items()}
        for s in streams:
            values = next(decoded).reshape(n, -1)
            if s.select is None:
                symbols[s.symbol] = values.reshape(n, *shapes[s.symbol])
            else:
                symbols[s.symbol][:, s.select] = values
        out.append(symbols)
    return out


def fields_ideal_bits(streams: list[Stream], symbols: dict[str, np.ndarray]) -> np.ndarray:
    """``float64[n]``: ideal bits of ``n`` items' messages, from symbols ``int[n, B, ...]``.

    Zipf costs are evaluated in one vectorized call (``entropy.ideal_bits`` per item would dispatch
    a JAX computation per item); the other models are plain numpy."""
    n = next(iter(symbols.values())).shape[0]
    bits = np.zeros(n)
    for s in streams:
        values = s.values(symbols[s.symbol])
        if isinstance(s.model, ZipfModel):
            bits += np.asarray(zipf_bits(values, s.model.alpha), np.float64).sum(axis=1)
        else:
            bits += [ideal_bits(v, s.model) for v in values]
    return bits


@contextlib.contextmanager
def as_format_error(what: str) -> Iterator[None]:
    """Turns what a decoder of corrupt bytes can raise (including constriction's Rust panics,
    which derive from BaseException) into FormatError."""
    try:
        yield
    except FormatError:
        raise
    except (ValueError, KeyError, IndexError, OverflowError, AssertionError) as err:
        raise FormatError(f"{what} is corrupt: {err}") from None
    except BaseException as err:
        if type(err).__name__ == "PanicException":
            raise FormatError(f"{what} is corrupt: {err}") from None
        raise


# ------------------------------------------------------------------------------------------------
# The data stream of lossless codecs

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


def check_tables(weights: np.ndarray, item_shape: tuple[int, ...], error: type = InvalidArgumentError) -> np.ndarray:
    """``float64[n, size, K]`` from the codec's weights ``[n, *item_shape, K]``, validated: a shape
    that does not fit ``item_shape`` raises ``error`` (FormatError when the shape came from a file);
    weights must be finite, ``>= 0``, with a positive sum per element."""
    weights = np.asarray(weights)
    if weights.ndim < 2 or weights.shape[1:-1] != tuple(item_shape) or weights.shape[-1] < 1:
        raise error(
            f"codec.likelihood(z) has shape {weights.shape[1:]} per item, the items have shape {tuple(item_shape)} "
            "(expected item shape + (K,))"
        )
    table = weights.reshape(weights.shape[0], -1, weights.shape[-1])
    if np.issubdtype(table.dtype, np.integer):  # integer weights (jaxrec.models.lossless): two cheap passes
        valid = table.size == 0 or (table.min() >= 0 and (table.sum(axis=-1, dtype=np.int64) > 0).all())
        table = table.astype(np.float64)
    else:
        table = table.astype(np.float64)
        valid = np.isfinite(table).all() and (table >= 0).all() and (table.sum(axis=-1) > 0).all()
    if not valid:
        raise InvalidArgumentError("codec.likelihood(z) must give finite weights >= 0 with a positive sum per element")
    return table


def data_ideal_bits(items: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """``float64[n]``: ``-log2 p(x | z)`` of each item (integers ``[n, ...]``, ``size`` elements
    each) under ``tables`` ``[n, size, K]``.

    Raises:
      InvalidArgumentError: a value outside ``[0, K)`` or of weight 0 (named by item and flat position).
    """
    n, size, k = tables.shape
    symbols = np.asarray(items).reshape(n, size).astype(np.int64)
    bad = np.argwhere((symbols < 0) | (symbols >= k))
    if bad.size:
        i, pos = bad[0]
        raise InvalidArgumentError(f"item {i} has value {symbols[i, pos]} at flat position {pos}, outside [0, {k})")
    picked = np.take_along_axis(tables, symbols[..., None], axis=-1)[..., 0]
    zero = np.argwhere(picked == 0)
    if zero.size:
        raise InvalidArgumentError(f"codec.likelihood gives weight 0 to item {zero[0][0]}'s value at flat position {zero[0][1]}")
    return -np.log2(picked / tables.sum(axis=-1)).sum(axis=1)


# Snap marks: the latent a lossless codec's likelihood sees must be the same on every backend, but a
# regenerated candidate may differ in its last bits between XLA:CPU and XLA:GPU (measured on an H200:
# 7.5% of the MNIST VAE's coordinates by 1-3 ulps, up to 4.8e-7 absolute), and a codec that rounds z
# to a grid of step ``s`` then sees another cell wherever z lies that close to a cell boundary (2 of
# 200,000 coordinates there: the archive did not decode across backends).  So the encoder marks every
# coordinate within a margin of a boundary and both sides move it to a quarter step inside the cell
# the encoder's z lies in, with numpy float64 arithmetic on the host (the same bits everywhere).

SNAP_KEEP, SNAP_DOWN, SNAP_UP = 0, 1, 2
SNAP_WEIGHTS = np.array([510.0, 1.0, 1.0])
"""Fixed model of the snap marks (keep, down, up): a mark costs about 9 bits, a keep 0.006."""
SNAP_MARGIN_ULPS = 16
SNAP_MARGIN_FLOOR = 2.0**-20
"""The encoder marks ``|z / s - b| * s <= max(16 ulp(z), 2^-20)`` for the nearest boundary ``b``
(a half-integer): 5 times the largest cross-backend difference measured in ulps (3), twice the
largest absolute one (4.8e-7)."""


def snap_marks(z: np.ndarray, step: float) -> np.ndarray:
    """The encoder's marks ``int32[n, D]`` for latents ``z`` ``[n, D]`` on a grid of ``step``.

    A coordinate whose ``x = z / step`` lies within ``max(16 ulp(z), 2^-20) / step`` of the nearest
    half-integer ``b`` (the rounding boundary between cells ``b - 1/2`` and ``b + 1/2``) is marked
    :data:`SNAP_UP` if the encoder's ``rint(x)`` is ``b + 1/2`` (``x > b``, or a tie whose even
    neighbour is above), else :data:`SNAP_DOWN`; every other one :data:`SNAP_KEEP`.  So the marks
    never move the encoder's own cell: they only tell the decoder which one it was.

    Raises:
      InvalidArgumentError: a margin reaches a quarter step (``step`` too fine for the float
        precision of ``z``: the decoder could not tell which boundary was meant).
    """
    z = np.asarray(z)
    x = z.astype(np.float64) / step
    boundary = np.floor(x) + 0.5
    margin = np.maximum(SNAP_MARGIN_ULPS * np.spacing(np.abs(z)).astype(np.float64), SNAP_MARGIN_FLOOR) / step
    if margin.size and margin.max() >= 0.25:
        worst = np.unravel_index(np.argmax(margin), margin.shape)
        raise InvalidArgumentError(
            f"codec.latent_step = {step!r} is too fine for {z.dtype} latents at |z| = {abs(float(z[worst])):.4g}: "
            f"the snap margin (16 ulps) is {margin.max():.3f} of a step (it must stay below 1/4)"
        )
    near = np.abs(x - boundary) <= margin
    return np.where(near, np.where(np.rint(x) > boundary, SNAP_UP, SNAP_DOWN), SNAP_KEEP).astype(np.int32)


def apply_snaps(z: np.ndarray, step: float, marks: np.ndarray) -> np.ndarray:
    """``z`` with each marked coordinate moved to ``(b -/+ 1/4) step`` (down/up) for the half-integer
    ``b = floor(z / step) + 1/2`` of its cell: the same value on both sides whenever their ``z``
    differ by less than the margin of :func:`snap_marks` (``b`` is then the same boundary).  Same
    dtype and shape as ``z``."""
    z = np.asarray(z)
    boundary = np.floor(z.astype(np.float64) / step) + 0.5
    moved = (boundary + np.where(marks == SNAP_UP, 0.25, -0.25)) * step
    return np.where(marks == SNAP_KEEP, z, moved.astype(z.dtype))


class DataEncoder:
    """Range-codes the items of one chunk, a batch of items at a time, into one data stream."""

    def __init__(self) -> None:
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, items: np.ndarray, tables: np.ndarray) -> np.ndarray:
        """Appends ``items`` (integers ``[n, ...]`` in ``[0, K)``) under ``tables`` ``[n, size, K]``;
        returns their ideal bits (see :func:`data_ideal_bits`, which also names the errors)."""
        bits = data_ideal_bits(items, tables)
        n, size, k = tables.shape
        symbols = np.asarray(items).reshape(-1).astype(np.int32)
        self._coder.encode(symbols, _CATEGORICAL, tables.reshape(n * size, k))
        return bits

    def encode_marks(self, marks: np.ndarray) -> None:
        """Appends snap marks ``[n, D]`` (see :func:`snap_marks`)."""
        flat = np.asarray(marks, np.int32).reshape(-1)
        self._coder.encode(flat, _CATEGORICAL, np.tile(SNAP_WEIGHTS, (flat.size, 1)))

    def finish(self) -> bytes:
        """The stream: whole little-endian 32-bit words."""
        return self._coder.get_compressed().astype("<u4").tobytes()


class DataDecoder:
    """Inverse of :class:`DataEncoder`: decodes a chunk's items a batch at a time, given their tables."""

    def __init__(self, data: bytes) -> None:
        with as_format_error("a data stream"):
            self._coder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))

    def decode(self, tables: np.ndarray) -> np.ndarray:
        """``int64[n, size]``: the next ``n`` items, under ``tables`` ``[n, size, K]``."""
        n, size, k = tables.shape
        flat = tables.reshape(n * size, k)
        with as_format_error("a data stream"):
            symbols = np.asarray(self._coder.decode(_CATEGORICAL, flat), np.int64)
        if symbols.shape != (n * size,) or (symbols < 0).any() or (symbols >= k).any():
            raise FormatError("a data stream is corrupt: it decodes outside the alphabet")
        if (flat[np.arange(n * size), symbols] == 0).any():
            raise FormatError("a data stream is corrupt: it decodes a value of weight 0")
        return symbols.reshape(n, size)

    def decode_marks(self, n: int, dim: int) -> np.ndarray:
        """``int32[n, dim]``: the next snap marks."""
        with as_format_error("a data stream"):
            marks = np.asarray(self._coder.decode(_CATEGORICAL, np.tile(SNAP_WEIGHTS, (n * dim, 1))), np.int32)
        return marks.reshape(n, dim)

    def finish(self) -> None:
        """Checks that the whole stream was used (no words past the chunk's items)."""
        if not self._coder.maybe_exhausted():
            raise FormatError("a data stream is corrupt: words are left after its last item")
