"""The coder contract: an optax-style pair of pure functions and the codes they exchange.

A coder factory (``jaxrec.pfr(...)``) returns a :class:`Coder`::

    code = coder.encode(key, target, prior)   # searches; jit- and vmap-able
    x = coder.decode(key, code, prior)        # O(D); never needs the target

``key`` is the shared randomness (an int seed, a typed ``threefry2x32`` key or its ``uint32[2]``
data).  ``target`` and ``prior`` are :mod:`jaxrec.core.distributions` pytrees with event size ``D``.

**Codes know what made them.**  Every code is a frozen dataclass registered as a pytree whose
array fields are the transmitted *message* (``code.message``: e.g. ``index``) and two diagnostics,
``steps`` and ``status``, and whose two *static* fields (pytree metadata, visible at trace time)
name the coder that made it (``code.coder``, e.g. ``"pfr"``) and the event size of its latent
(``code.event_size``).  A decoder refuses, with :class:`~jaxrec.errors.InvalidArgumentError`, a
code of another coder or of another event size than its prior, inside ``jit`` too (the check runs
at trace time).

**Status.**  ``code.status`` is an ``int32`` per problem:

* ``OK`` (0) -- the sample is what the coder promises (exact for exact coders);
* ``EXHAUSTED`` (1) -- an exact coder hit its step, queue or depth limit before its stop rule
  fired: the sample is the best candidate found, not an exact sample of Q;
* ``INVALID_INPUT`` (2) -- a target or prior parameter was NaN/inf, a scale was not positive, or the
  target has mass outside the prior's support (``D_KL[Q||P] = inf``, e.g. a Gaussian target
  against a uniform prior): the search stopped before examining any candidate (``steps == 0``)
  and the sample is meaningless;
* ``UNBOUNDED_RATIO`` (3) -- an exact coder got ``D_inf[Q||P] = inf`` (a target at least as wide as
  the prior): the search stopped at once (``steps == 0``), as it could never finish.

Outside ``jit`` these inputs raise at the API boundary instead; ``encode`` called eagerly warns
(``RuntimeWarning``) when a status is not ``OK``.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Callable, ClassVar, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.core import prng
from jaxrec.core.distributions import Distribution, Uniform, kl, log_sup_ratio
from jaxrec.core.distributions import check_pair as check_distribution_pair
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array

OK, EXHAUSTED, INVALID_INPUT, UNBOUNDED_RATIO = 0, 1, 2, 3
STATUS_NAMES = ("ok", "exhausted", "invalid_input", "unbounded_ratio")

__all__ = [
    "EXHAUSTED",
    "INVALID_INPUT",
    "OK",
    "STATUS_NAMES",
    "UNBOUNDED_RATIO",
    "Code",
    "CodeBase",
    "Coder",
    "CoderSpec",
    "check_bounded_ratio",
    "check_code",
    "check_pair",
    "check_positive_int",
    "code_type",
    "coder_factory",
    "compiled_encoder",
    "decode_candidate",
    "input_status",
    "origin",
    "search_status",
    "static_field",
    "warn_status",
]

_STATIC = {"static": True}


def static_field() -> Any:
    """A keyword-only dataclass field kept as pytree metadata (``coder``, ``event_size``)."""
    return dataclasses.field(kw_only=True, metadata=_STATIC)


def code_type(cls: type) -> type:
    """Class decorator: a frozen dataclass registered as a pytree, static fields as metadata."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    jax.tree_util.register_dataclass(
        cls,
        data_fields=[f.name for f in fields if not f.metadata.get("static")],
        meta_fields=[f.name for f in fields if f.metadata.get("static")],
    )
    return cls


class CodeBase:
    """Methods shared by every code type (see the module docstring).

    Subclasses are :func:`code_type` dataclasses with the message fields first, then ``steps``,
    ``status`` and the static ``coder`` and ``event_size``; ``MESSAGE`` names the message fields.
    """

    MESSAGE: ClassVar[tuple[str, ...]] = ()
    SIGNED: ClassVar[tuple[str, ...]] = ()  # message fields that may be negative (all others are >= 0)
    coder: str
    event_size: int
    steps: Array
    status: Array

    @property
    def message(self) -> dict[str, Array]:
        """The transmitted fields, ``{name: array}`` (everything else is diagnostics)."""
        return {name: getattr(self, name) for name in self.MESSAGE}

    @property
    def ok(self) -> Array:
        """``status == OK``."""
        return jnp.asarray(self.status) == OK

    @property
    def exhausted(self) -> Array:
        """``status == EXHAUSTED``: an exact coder hit a limit; the sample is not exact."""
        return jnp.asarray(self.status) == EXHAUSTED

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


@code_type
class Code(CodeBase):
    """What a scan-type coder (PFR, ORC, MRC, GPRS, GRS) sends, plus diagnostics.

    Attributes:
      index: ``int32``, 0-based index of the chosen candidate: the transmitted integer.
      steps: ``int32``, candidates the algorithm examined (its own step count, independent of
        the chunk size; comparable with ``2^{D_inf}`` for exact coders).
      status: ``int32``, see the module docstring.
      coder: static, the registry name of the coder that made it.
      event_size: static, ``D``.
    """

    MESSAGE: ClassVar[tuple[str, ...]] = ("index",)
    index: Array
    steps: Array
    status: Array
    coder: str = static_field()
    event_size: int = static_field()


Factory = TypeVar("Factory", bound=Callable[..., "Coder"])

FACTORY_CACHE_SIZE = 128


def coder_factory(factory: Factory) -> Factory:
    """Decorator: a coder factory returns the same :class:`Coder` for the same arguments.

    A coder compiles its search once (:func:`compiled_encoder`, the batch encoder, the ``vmap``
    fallback of :func:`jaxrec.encode_batch`), so a new coder per call, as in ``jaxrec.pfr().encode(
    ...)`` in a loop, would trace and compile again every time (about 1 s per eager encode and 4 s
    per batch encoder on a CPU).  Arguments are keyed with their types (``1``, ``1.0`` and ``True``
    differ, so a refused ``True`` is never answered from the cache); calls with unhashable arguments
    (arrays, lists) or traced ones (a partition traced inside ``jit``: a new object per trace, so
    never hit again, and the cache would keep the trace alive) build a new coder; the last
    :data:`FACTORY_CACHE_SIZE` (128) configurations are kept (``factory.cache_info()``;
    ``factory.cache_clear()`` empties it).
    """
    cached = functools.lru_cache(maxsize=FACTORY_CACHE_SIZE, typed=True)(factory)

    @functools.wraps(factory)
    def make(*args: Any, **kwargs: Any) -> Coder:
        try:
            hash((args, tuple(kwargs.items())))
        except TypeError:
            return factory(*args, **kwargs)
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((args, kwargs))):
            return factory(*args, **kwargs)
        return cached(*args, **kwargs)

    make.cache_info = cached.cache_info  # type: ignore[attr-defined]
    make.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return make  # type: ignore[return-value]


class CoderSpec(NamedTuple):
    """Static description of a coder (its factory name and arguments), written in file headers."""

    name: str
    params: tuple[tuple[str, Any], ...]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


class Coder(NamedTuple):
    """``encode(key, target, prior) -> code`` and ``decode(key, code, prior) -> x (D,)``.

    ``encode_batch(keys, targets, prior, **options)``, when a coder provides it, encodes a batch
    (leading axis ``B`` on ``keys`` and ``targets``; ``prior`` shared or batched) with the same
    result as ``jax.vmap(encode)`` but a schedule that keeps lanes busy; use
    :func:`jaxrec.encode_batch`, which falls back to ``vmap`` for coders without one.
    """

    encode: Callable[..., Any]
    decode: Callable[..., Array]
    spec: CoderSpec
    encode_batch: Callable[..., Any] | None = None


def origin(name: str, prior: Distribution) -> dict[str, Any]:
    """The static fields of a code made by coder ``name`` with ``prior``: ``{coder, event_size}``."""
    return {"coder": name, "event_size": int(prior.event_size)}


_SEARCH_DTYPES = (jnp.float32, jnp.float64)


def check_pair(target: Any, prior: Any) -> None:
    """Raises :class:`InvalidArgumentError` unless a coder can encode ``target`` against ``prior``.

    Both must be distributions of one event size ``D >= 1`` with broadcasting batch shapes
    (:func:`jaxrec.core.distributions.check_pair`) and float32 or float64 parameters (the search
    keeps its running scores in the prior's dtype).  ``Q`` must be absolutely continuous with
    respect to ``P`` (``D_KL[Q||P] < inf``): no coder can encode a target with mass outside the
    prior's support.  A Gaussian target against a uniform prior never is (checked from the types,
    so also under ``jit``); other pairs are checked when their parameters are concrete (under
    ``jit`` the search reports ``INVALID_INPUT`` instead).
    """
    check_distribution_pair(target, prior)
    if target.event_size < 1:
        raise InvalidArgumentError(f"the event size must be >= 1, got target and prior of event size {target.event_size}")
    for name, dist in (("target", target), ("prior", prior)):
        if dist.dtype not in _SEARCH_DTYPES:
            raise InvalidArgumentError(f"{name} parameters must be float32 or float64, got {dist.dtype}")
    if isinstance(prior, Uniform) and not isinstance(target, Uniform):  # unbounded support inside a box
        _refuse_support(target, prior, "")
    if any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves((target, prior))):
        return
    kl_bits = kl(target, prior, per_dim=True)
    if isinstance(kl_bits, jax.core.Tracer):  # concrete parameters closed over by a jitted function
        return
    where = _first_non_finite(kl_bits)
    if where is not None:
        _refuse_support(target, prior, f" at index {where}")


def _first_non_finite(values: Any) -> tuple[int, ...] | None:
    """The first (batch..., dim) index of a concrete array where it is not finite, or ``None``."""
    bad = np.argwhere(~np.isfinite(np.atleast_1d(np.asarray(values))))
    return tuple(int(i) for i in bad[0]) if bad.size else None


def _refuse_support(target: Distribution, prior: Distribution, where: str) -> None:
    raise InvalidArgumentError(
        f"the target has mass outside the prior's support{where} (D_KL[Q||P] = inf: a "
        f"{type(target).__name__} target against a {type(prior).__name__} prior"
        + (", the target box not inside the prior box" if isinstance(target, type(prior)) else "")
        + "); no coder can encode it: use a prior whose support covers the target's (e.g. a DiagGaussian prior)"
    )


def check_code(
    code: Any, code_class: type, name: str | tuple[str, ...], prior: Any, code_batch: tuple[int, ...] = ()
) -> None:
    """Raises :class:`InvalidArgumentError` unless ``code`` can be decoded by coder ``name`` with ``prior``.

    Checks the code's type, the static name of the coder that made it and its event size against
    the prior's, that the prior has no batch axes and that the code is *one* code: ``status`` of
    shape ``code_batch`` (``()``; ``(D,)`` for the per-dimension wrapper) and message fields of an
    integer dtype whose shapes start with it -- all static, so these checks also run inside
    ``jit`` (inside ``vmap`` the mapped axis is gone).  On concrete codes the message fields must
    also be ``>= 0`` (except the class's ``SIGNED`` fields).  ``name`` may list several coders whose
    codes share one decoder (e.g. AD* decodes DAD* codes).
    """
    names = (name,) if isinstance(name, str) else tuple(name)
    if not isinstance(prior, Distribution):
        raise InvalidArgumentError(f"prior must be a jaxrec distribution, got {type(prior).__name__}")
    if prior.batch_shape:
        raise InvalidArgumentError(
            f"decode takes one code and a prior without batch axes, got a prior of batch shape {prior.batch_shape}; "
            "use jax.vmap(coder.decode) for a batch"
        )
    if not isinstance(code, code_class):
        raise InvalidArgumentError(
            f"code must be a {code_class.__name__} made by {names[0]}, got {type(code).__name__}"
            + (f" made by {code.coder}" if isinstance(code, CodeBase) else "")
        )
    if code.coder not in names:
        raise InvalidArgumentError(
            f"this code was made by {code.coder!r}; the {names[0]!r} decoder cannot decode it (decode with the "
            "coder that encoded it)"
        )
    if code.event_size != prior.event_size:
        raise InvalidArgumentError(
            f"this code encodes a latent of event size {code.event_size}, but the prior has event size "
            f"{prior.event_size}"
        )
    _check_code_fields(code, tuple(code_batch))


def _check_code_fields(code: Any, code_batch: tuple[int, ...]) -> None:
    """Shapes, dtypes and (when concrete) signs of a code's fields; see :func:`check_code`."""
    status_shape = tuple(np.shape(code.status))
    if status_shape != code_batch:
        raise InvalidArgumentError(
            f"decode takes one code, got a code whose status has shape {status_shape} (expected {code_batch}); use "
            "jax.vmap(coder.decode) for a batch of codes"
        )
    for field, value in code.message.items():
        concrete = None
        if isinstance(value, (jax.core.Tracer, jax.ShapeDtypeStruct)):
            dtype, shape = value.dtype, tuple(value.shape)
        else:
            try:
                concrete = np.asarray(value)
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"code.{field} must be an integer array, got {value!r}") from None
            dtype, shape = concrete.dtype, concrete.shape
        if not jnp.issubdtype(dtype, jnp.integer):
            raise InvalidArgumentError(f"code.{field} must be an integer array, got dtype {dtype}")
        if shape[: len(code_batch)] != code_batch:
            raise InvalidArgumentError(f"code.{field} must have shape {code_batch} + (...), got {shape}")
        if field not in code.SIGNED and concrete is not None and np.any(concrete < 0):
            raise InvalidArgumentError(f"code.{field} must be >= 0, got {concrete.tolist()!r}")


def input_status(target: Distribution, prior: Distribution, *, bounded: bool) -> Array:
    """``int32`` status per problem before any search: ``INVALID_INPUT`` for a non-finite parameter,
    a non-positive scale or a target with mass outside the prior's support (``D_KL = inf``), else
    ``UNBOUNDED_RATIO`` when ``bounded`` (exact coders) and ``D_inf[Q||P] = inf``, else ``OK``.
    Traceable (batch shape of the pair)."""
    valid = target.valid() & prior.valid() & jnp.isfinite(kl(target, prior))
    status = jnp.where(valid, OK, INVALID_INPUT)
    if bounded:
        log_m = log_sup_ratio(target, prior)
        status = jnp.where(valid & ~jnp.isfinite(log_m), UNBOUNDED_RATIO, status)
    return status.astype(jnp.int32)


def search_status(status0: Array, stopped: Array, *, exact: bool) -> Array:
    """Final status: ``status0`` if the input was bad, else ``EXHAUSTED`` for an exact search that
    did not stop by its own rule, else ``OK``."""
    ran = jnp.where(stopped | (not exact), OK, EXHAUSTED)
    return jnp.where(status0 != OK, status0, ran).astype(jnp.int32)


def compiled_encoder(search: Callable[[Array, Any, Any], Any], *checks: Callable[[Any, Any], None]) -> Callable[..., Any]:
    """``encode(key, target, prior)`` from a traceable ``search(key, target, prior) -> code``.

    The encoder converts the key (:func:`~jaxrec.core.prng.as_key`), runs each ``check(target, prior)``
    on the arguments as given (errors and warnings at the API boundary), runs ``search`` jitted once
    per encoder, and warns when a concrete code's status is not ``OK``.  Eager calls with the same
    shapes reuse the compiled search (a ``lax.while_loop`` run eagerly recompiles on every call);
    under an outer ``jit`` or ``vmap`` the search is inlined.
    """
    compiled = jax.jit(search)

    def encode(key: Any, target: Any, prior: Any) -> Any:
        key = prng.as_key(key)
        for check in checks:
            check(target, prior)
        code = compiled(key, target, prior)
        warn_status(code)
        return code

    return encode


def warn_status(code: Any, stacklevel: int = 3) -> None:
    """Warns (``RuntimeWarning``) when a concrete code's status is not ``OK``; no-op under tracing."""
    status = getattr(code, "status", None)
    if status is None or isinstance(status, jax.core.Tracer):
        return
    status = np.asarray(status)
    bad = status[status != OK]
    if bad.size:
        counts = {STATUS_NAMES[int(s)]: int((bad == s).sum()) for s in np.unique(bad)}
        hint = {
            "exhausted": "the samples are the best candidates found, not exact samples (raise the step limit or use "
            "smaller blocks)",
            "invalid_input": "a target or prior parameter was NaN/inf, a scale was not positive, or the target has "
            "mass outside the prior's support",
            "unbounded_ratio": "D_inf[Q||P] is infinite (a target at least as wide as the prior)",
        }
        detail = "; ".join(f"{name}: {hint[name]}" for name in counts)
        warnings.warn(f"{counts} of {status.size} code(s) are not ok ({detail})", RuntimeWarning, stacklevel=stacklevel)


def check_bounded_ratio(target: Any, prior: Any) -> None:
    """Raises :class:`InvalidArgumentError` where ``D_inf[Q||P] = inf`` (a PFR-type search would never
    stop); skipped when the parameters are traced.  Names the first offending (batch..., dim) index:
    the ratio of a diagonal pair is unbounded exactly where one coordinate's is, so the check runs
    per coordinate (for the joint coders and the per-dimension wrapper alike)."""
    log_m = log_sup_ratio(target, prior, per_dim=True)
    if isinstance(log_m, jax.core.Tracer):
        return
    where = _first_non_finite(log_m)
    if where is not None:
        raise InvalidArgumentError(
            f"this coder needs a bounded density ratio (D_inf[Q||P] < inf), but it is unbounded at index "
            f"{where} (a target at least as wide as the prior); use a wider prior or a fixed-budget coder (orc/mrc)"
        )


def check_positive_int(name: str, value: Any, upper: int) -> int:
    """Returns ``value`` if it is an int in ``[1, upper]``; raises :class:`InvalidArgumentError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= upper:
        raise InvalidArgumentError(f"{name} must be an int in [1, {upper}], got {value!r}")
    return int(value)


@jax.jit
def stream_candidate(key: Array, index: Array, prior: Distribution, stream: Array | int = 0) -> Array:
    """Candidate ``index`` of shared stream ``stream`` (:func:`jaxrec.core.prng.candidates`): ``(D,)``,
    O(D) work.  Always runs compiled, so an eager call returns the same bits as the encoder's
    (compiled) search on the same backend; XLA's fusion of ``loc + scale * z`` can differ from
    op-by-op evaluation in the last ulp."""
    return prng.candidates(key, jnp.asarray(index, jnp.int32)[None], prior, stream)[0]


def decode_candidate(key: Any, code: Code, prior: Distribution) -> Array:
    """Rebuilds candidate ``code.index`` of the shared stream 0 (:func:`stream_candidate`): ``(D,)``
    (no checks; the coder's ``decode`` checks the code first)."""
    return stream_candidate(prng.as_key(key), code.index, prior)
