"""The coder registry: each coder family describes its own message here, next to its code.

A file header names the coder (``CoderSpec.name``) and stores its static parameters. Every coder
module registers itself with :func:`register_coder`: its factory, the parameter names stored in
the header, and its **message** -- the integer symbols it transmits and the entropy model of each,
given the KL budget per block and the block plan both sides know. The codec layer
(:mod:`jaxrec.codec`) holds no per-coder knowledge: it asks the registry.

Symbols are by default the code's message fields (``code.MESSAGE``); a coder whose fields are not
convenient integers to entropy-code supplies ``pack`` / ``unpack`` (the tree coders send their
``(depth, path)`` as one heap index).

Space-partitioning coders are ``partitioned``: the factory takes the block's partition (from
``BlockPlan.partitions``) as its first argument. The encoder accepts such a coder as a ``Coder``
(rebuilt from its spec with the factory's defaults for anything not in the spec, such as
``weights``) or as a callable ``partition -> Coder`` such as ``functools.partial(jaxrec.sp_orc,
num_samples=2**10, weights="sup_ratio")``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from jaxrec.coders.base import Coder, CoderSpec
from jaxrec.core.distributions import Distribution
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.entropy import (
    IndexModel,
    PlanAlphabetModel,
    UniformModel,
    ZipfModel,
    zipf_exponent,
)

if TYPE_CHECKING:
    from jaxrec.codec.blocks import BlockPlan

FieldModel = IndexModel | PlanAlphabetModel
Message = tuple[tuple[str, FieldModel], ...]
MessageFn = Callable[[CoderSpec, float, "BlockPlan"], Message]
PackFn = Callable[[CoderSpec, dict[str, np.ndarray]], dict[str, np.ndarray]]

__all__ = [
    "REGISTRY",
    "CoderEntry",
    "FieldModel",
    "Message",
    "coder_from_spec",
    "lookup",
    "register_coder",
    "uniform_index_message",
    "zipf_index_message",
    "zipf_model",
]


class CoderEntry(NamedTuple):
    """How to rebuild a coder from a header and entropy-code its codes.

    Attributes:
      factory: ``factory(**params) -> Coder``, or ``factory(partition, **params)`` when
        ``partitioned`` (called inside ``vmap`` with a traced partition).
      params: the names of the spec parameters stored in the header, in order; the factory must
        accept them as keywords. (A partitioned coder's spec may hold more, describing its
        partition; those come from the plan instead.)
      message: ``message(spec, budget_bits, plan) -> ((symbol, model), ...)``: the transmitted
        symbols in coding order and the entropy model of each, an :mod:`jaxrec.entropy` model (its
        parameters go into the header) or :class:`~jaxrec.entropy.PlanAlphabetModel` for a symbol
        whose alphabet sizes ``alphabet(plan, symbol)`` gives. ``budget_bits`` is the KL budget per
        block both sides know (the plan's, or the item's largest block KL rounded up).
      partitioned: the factory takes a per-block partition from ``BlockPlan.partitions``.
      check: optional ``check(target_blocks, prior_blocks)``, run outside ``jit`` before encoding;
        raises :class:`InvalidArgumentError` for what the coder cannot report from inside ``jit``.
      alphabet: ``alphabet(plan, symbol) -> int[B, ...]``, the alphabet size of every element of
        a :class:`PlanAlphabetModel` symbol (e.g. the partition counts ``J_d``).
      pack: ``pack(spec, fields) -> symbols``: numpy message fields ``{name: int[..., *field_shape]}``
        (leading axes: items and blocks) to the symbols ``{name: int64[..., *symbol_shape]}``;
        ``None`` = the fields themselves. Raises :class:`InvalidArgumentError` for a value it cannot send.
      unpack: ``unpack(spec, symbols) -> fields``, the inverse; ``None`` = identity.
      oldest_format: ``{latent dtype: version}``: the oldest file format version whose codes this
        coder decodes as it draws them today, per latent dtype (``"float32"``, ``"float64"``); a file
        of an older version with codes of that dtype is refused. ``None`` (or a missing dtype): every
        readable version. A coder whose decoder starts drawing other points from the same code bumps
        the format version and lists the new one here.
      added_params: ``{param: (version, value)}``: parameters that headers store from format
        ``version`` on; an older header lacks them and means ``value`` (e.g. SP-PFR's
        ``shared_keys``, version 5: older files were drawn with ``shared_keys=False``). The other way
        to keep reading older files when a coder starts drawing other points: a parameter whose
        old value reproduces them.
    """

    factory: Callable[..., Coder]
    params: tuple[str, ...]
    message: MessageFn
    partitioned: bool = False
    check: Callable[[Distribution, Distribution], None] | None = None
    alphabet: Callable[["BlockPlan", str], np.ndarray] | None = None
    pack: PackFn | None = None
    unpack: PackFn | None = None
    oldest_format: dict[str, int] | None = None
    added_params: dict[str, tuple[int, Any]] | None = None

    def header_params(self, version: int) -> tuple[tuple[str, ...], dict[str, Any]]:
        """``(names, implied)``: the parameters a header of format ``version`` stores, in order,
        and the values of those it does not store (``added_params`` of later versions)."""
        later = {name: value for name, (since, value) in (self.added_params or {}).items() if version < since}
        return tuple(name for name in self.params if name not in later), later

    def symbols(self, spec: CoderSpec, fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The transmitted symbols of message ``fields`` (see ``pack``)."""
        if self.pack is not None:
            return self.pack(spec, fields)
        return {k: np.asarray(v, np.int64) for k, v in fields.items()}

    def fields(self, spec: CoderSpec, symbols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The message fields of decoded ``symbols`` (see ``unpack``)."""
        return self.unpack(spec, symbols) if self.unpack is not None else dict(symbols)

    def symbol_shapes(self, spec: CoderSpec, plan: "BlockPlan", template: Any) -> dict[str, tuple[int, ...]]:
        """``{symbol: per-block shape}`` in message order, for one block's code ``template`` (a code
        of ShapeDtypeStructs).  The symbols' names and shapes must not depend on the budget."""
        zeros = {f: np.zeros(getattr(template, f).shape, getattr(template, f).dtype) for f in type(template).MESSAGE}
        shapes = {name: np.shape(value) for name, value in self.symbols(spec, zeros).items()}
        names = [name for name, _ in self.message(spec, 0.0, plan)]
        if sorted(names) != sorted(shapes):
            raise InvalidArgumentError(f"coder {spec.name!r}: message symbols {names} != packed symbols {sorted(shapes)}")
        return {name: shapes[name] for name in names}


REGISTRY: dict[str, CoderEntry] = {}
LATENT_DTYPES = ("float32", "float64")
"""The latent dtypes a file can hold (``CoderEntry.oldest_format``'s keys; the file format's own list,
``jaxrec.codec.container.DTYPES``, is checked equal by the tests: the registry cannot import the codec
package, whose archive module imports the registry)."""


def register_coder(
    name: str,
    factory: Callable[..., Coder],
    *,
    params: Sequence[str],
    message: MessageFn,
    partitioned: bool = False,
    check: Callable[[Distribution, Distribution], None] | None = None,
    alphabet: Callable[["BlockPlan", str], np.ndarray] | None = None,
    pack: PackFn | None = None,
    unpack: PackFn | None = None,
    oldest_format: dict[str, int] | None = None,
    added_params: dict[str, tuple[int, Any]] | None = None,
) -> None:
    """Makes coders named ``name`` usable by :func:`jaxrec.compress` and decodable from file headers.

    See :class:`CoderEntry` for the arguments. Registering a name again replaces its entry.
    """
    if not isinstance(name, str) or not name.isascii() or not 1 <= len(name) <= 64:
        raise InvalidArgumentError(f"coder name must be 1 to 64 ASCII characters, got {name!r}")
    if not callable(factory) or not callable(message):
        raise InvalidArgumentError("factory and message must be callables")
    if isinstance(params, str) or not all(isinstance(p, str) for p in _as_sequence(params)):
        raise InvalidArgumentError(f"params must be a sequence of parameter names (str), got {params!r}")
    for label, hook in (("check", check), ("alphabet", alphabet), ("pack", pack), ("unpack", unpack)):
        if hook is not None and not callable(hook):
            raise InvalidArgumentError(f"{label} must be a callable or None, got {hook!r}")
    if oldest_format is not None and not (
        isinstance(oldest_format, dict)
        and all(dtype in LATENT_DTYPES and type(v) is int and v >= 1 for dtype, v in oldest_format.items())
    ):
        raise InvalidArgumentError(
            f"oldest_format must be None or a dict {{latent dtype in {LATENT_DTYPES}: format version >= 1}}, "
            f"got {oldest_format!r}"
        )
    if added_params is not None and not (
        isinstance(added_params, dict)
        and all(
            p in tuple(params) and isinstance(v, tuple) and len(v) == 2 and type(v[0]) is int and v[0] >= 2
            for p, v in added_params.items()
        )
    ):
        raise InvalidArgumentError(
            f"added_params must be None or a dict {{parameter in params: (format version >= 2, value)}}, "
            f"got {added_params!r}"
        )
    REGISTRY[name] = CoderEntry(
        factory, tuple(params), message, bool(partitioned), check, alphabet, pack, unpack,
        None if oldest_format is None else dict(oldest_format), None if added_params is None else dict(added_params),
    )


def _as_sequence(value: Any) -> Sequence[Any]:
    try:
        return tuple(value)
    except TypeError:
        return (None,)  # not iterable: fails the name check


def lookup(name: str) -> CoderEntry:
    """The entry of a registered coder; :class:`InvalidArgumentError` naming the known ones otherwise."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise InvalidArgumentError(f"coder {name!r} is not registered (known: {sorted(REGISTRY)})")
    return entry


def coder_from_spec(spec: CoderSpec, partition: Any = None) -> Coder:
    """Rebuilds a registered coder from its header spec (and a block's partition if partitioned)."""
    entry = lookup(spec.name)
    kwargs = {name: spec.kwargs[name] for name in entry.params}
    return entry.factory(partition, **kwargs) if entry.partitioned else entry.factory(**kwargs)


def zipf_model(budget_bits: float) -> ZipfModel:
    """The Zipf model of an index whose ``E log2(index + 1) <~ budget + 1`` (PFR-type coders; Li &
    El Gamal, IEEE Trans. Inf. Theory 2018): ``alpha = 1 + 1/(budget + 1)``, rounded to float32 so
    that a header stores it in 4 bytes and reads it back exactly."""
    alpha = np.float32(zipf_exponent(max(float(budget_bits), 0.0)))
    return ZipfModel(float(max(alpha, np.nextafter(np.float32(1.0), np.float32(2.0)))))


def zipf_index_message(spec: CoderSpec, budget_bits: float, plan: Any) -> Message:
    """An ``index`` under :func:`zipf_model` of the block budget (PFR, GPRS, GRS)."""
    return (("index", zipf_model(budget_bits)),)


def uniform_index_message(spec: CoderSpec, budget_bits: float, plan: Any) -> Message:
    """An ``index`` uniform on ``[0, N)``, ``N = spec num_samples``: ``log2 N`` bits (ORC, MRC)."""
    return (("index", UniformModel(spec.kwargs["num_samples"])),)
