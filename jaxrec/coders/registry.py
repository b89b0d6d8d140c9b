"""The coder registry: how a file header's coder name becomes a coder and its message.

The header names the coder (``CoderSpec.name``) and stores its static parameters;
:func:`register_coder` maps a name to its factory, the parameter names, the ``Code`` fields it
transmits and their entropy models. ``pfr``, ``orc``, ``mrc``, ``sp_pfr`` and ``sp_orc`` are
registered here. Space-partitioning coders are ``partitioned``: the decoder builds block ``b``'s
coder from ``plan.partitions[b]``. The encoder accepts such a coder as a ``Coder`` (rebuilt from
its spec with the factory's defaults for anything not in the spec, such as ``weights``) or as a
callable ``partition -> Coder`` such as ``functools.partial(jaxrec.sp_orc, num_samples=2**10,
weights="sup_ratio")`` (reuse one callable object: the compiled encoder is cached on it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from jaxrec.coders.base import Coder, CoderSpec, check_bounded_ratio
from jaxrec.coders.greedy._gprs import gprs
from jaxrec.coders.poisson import mrc, orc, pfr
from jaxrec.coders.sp._sp_orc import sp_orc
from jaxrec.coders.sp._sp_pfr import sp_pfr
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




class CoderEntry(NamedTuple):
    """How to rebuild a coder from a header and entropy-code its ``Code``.

    Attributes:
      factory: ``factory(**params) -> Coder``, or ``factory(partition, **params)`` when
        ``partitioned`` (called inside ``vmap`` with a traced partition).
      params: the names of the spec parameters stored in the header, in order; the factory must
        accept them as keywords. (A partitioned coder's spec may hold more, describing its
        partition; those come from the plan instead.)
      fields: the ``Code`` fields that are transmitted, in coding order.
      models: ``models(spec, budget_bits, plan) -> tuple[FieldModel, ...]``, one entropy model
        per field: an :mod:`jaxrec.coding` model (its parameters go into the header), or
        :class:`~jaxrec.entropy.PlanAlphabetModel` for a field whose alphabet sizes
        ``alphabet(plan, field)`` gives. ``budget_bits`` is the KL budget per block both sides
        know (the plan's, or the item's largest block KL rounded up).
      partitioned: the factory takes a per-block partition from ``BlockPlan.partitions``.
      check: optional ``check(target_blocks, prior_blocks)``, run outside ``jit`` before encoding;
        raises :class:`InvalidArgumentError` for what the coder cannot report from inside ``jit``.
      alphabet: ``alphabet(plan, field) -> int[B, ...]``, the alphabet size of every element of
        a :class:`PlanAlphabetModel` field (e.g. the partition counts ``J_d``).
    """

    factory: Callable[..., Coder]
    params: tuple[str, ...]
    fields: tuple[str, ...]
    models: Callable[[CoderSpec, float, BlockPlan], tuple[FieldModel, ...]]
    partitioned: bool = False
    check: Callable[[Distribution, Distribution], None] | None = None
    alphabet: Callable[[BlockPlan, str], np.ndarray] | None = None


REGISTRY: dict[str, CoderEntry] = {}


def register_coder(
    name: str,
    factory: Callable[..., Coder],
    *,
    params: Sequence[str],
    models: Callable[[CoderSpec, float, BlockPlan], tuple[FieldModel, ...]],
    fields: Sequence[str] = ("index",),
    partitioned: bool = False,
    check: Callable[[Distribution, Distribution], None] | None = None,
    alphabet: Callable[[BlockPlan, str], np.ndarray] | None = None,
) -> None:
    """Makes coders named ``name`` usable by :func:`compress` and decodable from file headers.

    See :class:`CoderEntry` for the arguments. Registering a name again replaces its entry.
    """
    if not isinstance(name, str) or not name.isascii() or not 1 <= len(name) <= 64:
        raise InvalidArgumentError(f"coder name must be 1 to 64 ASCII characters, got {name!r}")
    if not fields:
        raise InvalidArgumentError("a coder must transmit at least one Code field")
    REGISTRY[name] = CoderEntry(factory, tuple(params), tuple(fields), models, partitioned, check, alphabet)


def _zipf(budget_bits: float) -> ZipfModel:
    """Zipf model for a KL budget; alpha rounded to float32 (4 header bytes, read back exactly)."""
    alpha = np.float32(zipf_exponent(max(budget_bits, 0.0)))
    return ZipfModel(float(max(alpha, np.nextafter(np.float32(1.0), np.float32(2.0)))))


def _log2_num_bins(plan: BlockPlan) -> np.ndarray:
    """``log2 J`` of each block's partition, ``float64[B]``."""
    return np.log2(np.asarray(plan.partitions.num_intervals, np.float64)).sum(axis=-1)


def _pfr_models(spec: CoderSpec, budget_bits: float, plan: BlockPlan) -> tuple[FieldModel, ...]:
    return (_zipf(budget_bits),)


def _uniform_models(spec: CoderSpec, budget_bits: float, plan: BlockPlan) -> tuple[FieldModel, ...]:
    return (UniformModel(spec.kwargs["num_samples"]),)


def _sp_pfr_models(spec: CoderSpec, budget_bits: float, plan: BlockPlan) -> tuple[FieldModel, ...]:
    # The within-bin index costs about E log2(1 + r/J) <= (KL - log2 J)_+ + 1 bits.
    return PlanAlphabetModel(), _zipf(budget_bits - float(_log2_num_bins(plan).mean()))


def _sp_orc_models(spec: CoderSpec, budget_bits: float, plan: BlockPlan) -> tuple[FieldModel, ...]:
    return PlanAlphabetModel(), UniformModel(spec.kwargs["num_samples"])


def _partition_counts(plan: BlockPlan, field: str) -> np.ndarray:
    return np.asarray(plan.partitions.num_intervals)


register_coder("pfr", pfr, params=("chunk_size", "max_steps"), models=_pfr_models, check=check_bounded_ratio)
register_coder("orc", orc, params=("num_samples", "chunk_size"), models=_uniform_models)
# GPRS codes one-dimensional blocks (a plan with one latent dimension per block); its index is
# PFR-like (E log2(index + 1) <~ KL + 1), hence the same Zipf model.
register_coder(
    "gprs", gprs, params=("num_streams", "chunk_size", "max_steps"), models=_pfr_models, check=check_bounded_ratio
)
register_coder("mrc", mrc, params=("num_samples", "chunk_size"), models=_uniform_models)
register_coder(
    "sp_pfr", sp_pfr, params=("chunk_size", "max_steps", "table_size"), fields=("bin", "index"),
    models=_sp_pfr_models, partitioned=True, check=check_bounded_ratio, alphabet=_partition_counts,
)
register_coder(
    "sp_orc", sp_orc, params=("num_samples", "chunk_size"), fields=("bin", "index"),
    models=_sp_orc_models, partitioned=True, alphabet=_partition_counts,
)


def lookup(name: str) -> CoderEntry:
    entry = REGISTRY.get(name)
    if entry is None:
        raise InvalidArgumentError(f"coder {name!r} is not registered (known: {sorted(REGISTRY)})")
    return entry


def coder_from_spec(spec: CoderSpec, partition: Any = None) -> Coder:
    """Rebuilds a registered coder from its header spec (and a block's partition if partitioned)."""
    entry = lookup(spec.name)
    kwargs = {name: spec.kwargs[name] for name in entry.params}
    return entry.factory(partition, **kwargs) if entry.partitioned else entry.factory(**kwargs)
