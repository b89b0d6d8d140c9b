"""compress / decompress: items through the block plan, the coder and the entropy models into files.

``jax.jit`` as arguments; other objects are called inside ``vmap`` without ``jit``.

Compression
===========

``compress(codec, x, key=..., coder=jaxrec.pfr(), plan=plan) -> bytes``:

1. ``Q = codec.target(x)``, ``P = codec.prior()``; the block plan (:mod:`jaxrec.blocks`) cuts both
   into ``B`` blocks padded to one size.
2. Block ``b`` of item ``i`` uses the key ``fold_in(fold_in(key, i), b)``. One jitted call encodes
   all blocks of all items: the coder's ``encode_batch`` (refilling lanes,
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.codec import container
from jaxrec.codec.blocks import BlockPlan
from jaxrec.codec.protocol import Codec
from jaxrec.codec.runtime import (
    BlockCoder,
    block_decoder,
    block_encoder,
    block_key_data,
    code_template,
    codec_prior,
    problem_decoder,
    problem_encoder,
    resolve_devices,
    resolve_plan,
    run_sharded,
    vmap_call,
)
from jaxrec.codec.sections import (
    as_format_error,
    decode_data,
    decode_fields,
    encode_data,
    encode_fields,
    fields_ideal_bits,
    index_streams,
    likelihood_table,
)
from jaxrec.coders.base import Coder, CoderSpec, check_positive_int, warn_status
from jaxrec.coders.registry import REGISTRY, CoderEntry, lookup
from jaxrec.core import prng
from jaxrec.core.distributions import Distribution, kl
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy import PlanAlphabetModel, decode_streams, ideal_bits

Array = jax.Array



def _block_coder(coder: Any, plan: BlockPlan) -> tuple[BlockCoder, CoderEntry]:
    """Resolves ``compress``'s ``coder`` argument into the header spec and the per-block coder."""
    make = None
    if isinstance(coder, (Coder, CoderSpec)):
        spec = coder.spec if isinstance(coder, Coder) else coder
    elif callable(coder):
        if plan.partitions is None:
            raise InvalidArgumentError("a callable coder (partition -> Coder) needs a plan with partitions")
        make = coder
        spec = coder(jax.tree.map(lambda leaf: leaf[0], plan.partitions)).spec
    else:
        raise InvalidArgumentError(
            f"coder must be a Coder, a CoderSpec or a partition -> Coder callable, got {coder!r}"
        )
    entry = lookup(spec.name)
    given = dict(spec.params)
    missing = [name for name in entry.params if name not in given]
    extra = [name for name in given if name not in entry.params]
    if missing or (extra and not entry.partitioned):
        raise InvalidArgumentError(
            f"coder {spec.name!r} has parameters {tuple(given)}, the registry stores {entry.params}"
        )
    header_spec = CoderSpec(spec.name, tuple((name, given[name]) for name in entry.params))
    if entry.partitioned:
        if plan.partitions is None:
            raise InvalidArgumentError(f"coder {spec.name!r} needs per-block partitions: use plan.with_partitions(...)")
    elif entry.factory(**header_spec.kwargs).spec != spec:
        raise InvalidArgumentError(f"the registry's factory does not rebuild {spec}: no decoder could read the file")
    return BlockCoder(header_spec, make), entry


class Rate(NamedTuple):
    """Ideal codelength and actual size of one file.

    Attributes:
      index_bits: ``sum -log2 p(symbol)`` of the transmitted ``Code`` fields under the file's
        entropy models, over all blocks.
      data_bits: ``-log2 p(x | z)`` under the codec's likelihood (0 for lossy codecs).
      header_bytes: bytes outside the payload: magic, header and CRC32.
      payload_bytes: bytes of the entropy-coded sections.
    """

    index_bits: float
    data_bits: float
    header_bytes: int
    payload_bytes: int

    @property
    def ideal_bits(self) -> float:
        return self.index_bits + self.data_bits

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.payload_bytes


class CompressReport(NamedTuple):
    """Files plus diagnostics from :func:`compress_report` (``N`` items, ``B`` blocks).

    Attributes:
      files: ``N`` byte strings, one self-contained file per item.
      code: the coder's ``Code`` with numpy leaves of shape ``(N, B, ...)`` (``steps``,
        ``exhausted`` and the transmitted fields).
      block_kl: ``float[N, B]``, ``KL[Q||P]`` of each block in bits.
      rates: ``N`` :class:`Rate` records.
    """

    files: list[bytes]
    code: Any
    block_kl: np.ndarray
    rates: list[Rate]


# ------------------------------------------------------------------------------------------------
# Compress


def compress_report(
    codec: Codec,
    xs: Any,
    *,
    key: Any,
    coder: Coder | CoderSpec | Callable[[Any], Coder],
    plan: BlockPlan | None = None,
    first_item: int = 0,
    devices: Sequence[Any] | None = None,
    group_size: int = 1,
) -> CompressReport:
    """Compresses ``N`` items in one jitted (and sharded) call and keeps the diagnostics.

    Args:
      codec: a :class:`Codec` (or :class:`LosslessCodec`, :class:`ProgressiveCodec`).
      xs: the items stacked along a leading axis, ``(N, ...)``.
      key: the shared seed (int in ``[0, 2^32)``) or threefry key; written into every header.
      coder: a registered coder (``jaxrec.pfr()``, ``jaxrec.orc(2**16)``, ...), its spec, or for
        space-partitioning coders a callable ``partition -> Coder``.
      plan: the block plan (with partitions for space-partitioning coders); ``None`` = one block.
      first_item: the item number of ``xs[0]``; item ``i`` is number ``first_item + i``.
      devices: devices to shard the items over; ``None`` = all local devices.
      group_size: for a progressive codec (one with ``refine``), the blocks coded per item and step
        (largest current KL first) before the codec re-fits the rest; ignored otherwise.

    Returns:
      A :class:`CompressReport`: the files and, per item and block, the codes and KLs.
    """
    prior = codec_prior(codec)
    dtype = prior.dtype
    plan = resolve_plan(plan, prior.event_size)
    block_coder, entry = _block_coder(coder, plan)
    spec = block_coder.spec
    xs = jnp.asarray(xs)
    if xs.ndim < 1 or xs.shape[0] < 1:
        raise InvalidArgumentError(f"xs must have a leading item axis of size >= 1, got shape {xs.shape}")
    n = int(xs.shape[0])
    if isinstance(first_item, bool) or not isinstance(first_item, int) or not 0 <= first_item <= 2**32 - n:
        raise InvalidArgumentError(f"first_item must be an int with first_item + N <= 2**32, got {first_item!r}")
    progressive = callable(getattr(codec, "refine", None))
    if progressive:
        check_positive_int("group_size", group_size, plan.num_blocks)
    lossless = callable(getattr(codec, "likelihood", None))
    targets = _as_float(vmap_call(codec, "target", xs), n, dtype)
    partitions = plan.partitions if entry.partitioned else None
    devices = resolve_devices(devices)
    key_words = prng.key_to_words(key)
    items = np.arange(first_item, first_item + n, dtype=np.uint32)
    key_data = block_key_data(np.tile(key_words, (n, 1)), items, plan.num_blocks)
    if progressive:
        code, block_kl, z = _encode_progressive(
            codec, xs, targets, prior, plan, block_coder, entry, key_data, devices, group_size
        )
    else:
        target_blocks, prior_blocks = plan.split(targets, prior)
        if entry.check is not None:
            entry.check(target_blocks, prior_blocks)
        encoder = block_encoder(block_coder, entry.partitioned, devices)
        code, block_kl = run_sharded(encoder, devices, (key_data, target_blocks), (prior_blocks, partitions), n)
        if lossless:
            decoder = block_decoder(spec, devices)
            z = plan.merge(run_sharded(decoder, devices, (key_data, code), (prior_blocks, partitions), n))
    symbols = entry.symbols(spec, {f: getattr(code, f) for f in type(code).MESSAGE})
    # Items share their entropy models unless the budget comes from each item's own KL.
    budgets = [plan.budget_bits if plan.budget_bits is not None else float(math.ceil(kl_i.max())) for kl_i in block_kl]
    messages = {budget: entry.message(spec, budget, plan) for budget in set(budgets)}
    shapes = {name: symbols[name].shape[1:] for name, _ in next(iter(messages.values()))}
    streams = {budget: index_streams(entry, [m for _, m in msg], plan, shapes) for budget, msg in messages.items()}
    index_bits = np.zeros(n)
    for budget, group in streams.items():
        chosen = np.array([b == budget for b in budgets])
        index_bits[chosen] = fields_ideal_bits(group, {s: value[chosen] for s, value in symbols.items()})
    files, rates = [], []
    items_host = np.asarray(xs) if lossless else None
    for i, budget in enumerate(budgets):
        index_bytes = encode_fields(streams[budget], {s: value[i] for s, value in symbols.items()})
        sections, data_bits = [index_bytes], 0.0
        if lossless:
            data_bytes, data_bits = encode_data(items_host[i], likelihood_table(codec, z[i], xs.shape[1:]))
            sections.append(data_bytes)
        header = container.Header(
            coder_name=spec.name,
            coder_args=tuple(value for _, value in spec.params),
            key_words=(int(key_words[0]), int(key_words[1])),
            item=first_item + i,
            latent_size=plan.dim,
            latent_dtype=str(dtype),
            num_blocks=plan.num_blocks,
            plan_fingerprint=plan.fingerprint,
            data_shape=tuple(int(d) for d in xs.shape[1:]),
            lossless=lossless,
            models=tuple(m for _, m in messages[budget]),
        )
        files.append(container.write(header, sections))
        payload = sum(len(section) for section in sections)
        rates.append(Rate(float(index_bits[i]), data_bits, len(files[-1]) - payload, payload))
    return CompressReport(files, code, block_kl, rates)


def _as_float(targets: Any, n: int, dtype: Any) -> Distribution:
    """The codec's targets in the prior's dtype; checks they are ``n`` distributions."""
    if not isinstance(targets, Distribution) or targets.batch_shape != (n,):
        raise InvalidArgumentError(
            f"codec.target(x) / codec.refine(...) must return a jaxrec distribution with batch shape (), got {targets!r}"
        )
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), targets)


def _encode_progressive(
    codec: Any, xs: Array, targets: Distribution, prior: Distribution, plan: BlockPlan, block_coder: BlockCoder,
    entry: CoderEntry, key_data: Array, devices: tuple[Any, ...], group_size: int,
) -> tuple[Any, np.ndarray, np.ndarray]:
    """Codes the blocks of every item in steps of ``group_size`` blocks, largest current KL first,
    re-fitting the rest with ``codec.refine`` after each step (see :mod:`jaxrec.codec.protocol`).

    Returns ``(code [N, B, ...], block_kl [N, B] at the time each block was coded, z [N, D])``;
    ``z`` holds the decoded latent, bit for bit what the decoder rebuilds.
    """
    n, num_blocks = key_data.shape[:2]
    key_data = np.asarray(key_data)
    dtype = prior.dtype
    encoder = problem_encoder(block_coder, entry.partitioned, devices)
    decoder = problem_decoder(block_coder.spec, devices)
    coded = np.zeros((n, num_blocks), bool)
    z = np.zeros((n, plan.dim), dtype)
    fixed = np.zeros((n, plan.dim), bool)
    block_kl = np.zeros((n, num_blocks))
    code = None
    while not coded.all():
        target_blocks, prior_blocks = plan.split(targets, prior)
        if entry.check is not None:
            entry.check(target_blocks, prior_blocks)
        kls = np.where(coded, -np.inf, np.asarray(kl(target_blocks, prior_blocks), np.float64))
        width = min(group_size, num_blocks - int(coded[0].sum()))
        chosen = np.argsort(-kls, axis=1, kind="stable")[:, :width]  # (N, G) blocks of this step
        rows, cols = np.repeat(np.arange(n), width), chosen.reshape(-1)
        take = lambda tree, *index: jax.tree.map(lambda a: np.asarray(a)[index], tree)
        problem_priors = take(prior_blocks, cols)
        partitions = take(plan.partitions, cols) if entry.partitioned else None
        problems = (key_data[rows, cols], take(target_blocks, rows, cols), problem_priors, partitions)
        step_code, step_kl = run_sharded(encoder, devices, problems, (), rows.size)
        step_z = run_sharded(decoder, devices, (problems[0], step_code, problem_priors, partitions), (), rows.size)
        if code is None:
            code = jax.tree.map(lambda a: np.zeros((n, num_blocks) + a.shape[1:], a.dtype), step_code)
        for full, new in zip(jax.tree.leaves(code), jax.tree.leaves(step_code)):
            full[rows, cols] = new
        block_kl[rows, cols] = step_kl
        coded[rows, cols] = True
        real = plan.mask[cols]  # (M, S): drop padding
        dims = plan.index[cols][real]
        owner = np.repeat(rows, real.sum(axis=1))
        z[owner, dims] = np.asarray(step_z)[real]
        fixed[owner, dims] = True
        if not coded.all():
            targets = _as_float(vmap_call(codec, "refine", xs, targets, jnp.asarray(z), jnp.asarray(fixed)), n, dtype)
    return code, block_kl, z


def compress_batch(
    codec: Codec,
    xs: Any,
    *,
    key: Any,
    coder: Coder | CoderSpec | Callable[[Any], Coder],
    plan: BlockPlan | None = None,
    first_item: int = 0,
    devices: Sequence[Any] | None = None,
    group_size: int = 1,
) -> list[bytes]:
    """Compresses the items ``xs`` (leading axis ``N``) into ``N`` files; see :func:`compress_report`.

    File ``i`` is byte-identical to ``compress(codec, xs[i], key=key, coder=coder, plan=plan,
    item=first_item + i)``. Warns (RuntimeWarning) when an exact coder hit its step limit.
    """
    report = compress_report(
        codec, xs, key=key, coder=coder, plan=plan, first_item=first_item, devices=devices, group_size=group_size
    )
    warn_status(report.code, stacklevel=3)
    return report.files


def compress(
    codec: Codec,
    x: Any,
    *,
    key: Any,
    coder: Coder | CoderSpec | Callable[[Any], Coder],
    plan: BlockPlan | None = None,
    item: int = 0,
    group_size: int = 1,
) -> bytes:
    """Compresses one item into a self-contained file.

    Args:
      codec: a :class:`Codec` (or :class:`LosslessCodec`).
      x: the item.
      key: the shared seed (int in ``[0, 2^32)``) or threefry key.
      coder: a registered coder (``jaxrec.pfr()``, ``jaxrec.orc(2**16)``, ...), its spec, or a
        ``partition -> Coder`` callable for space-partitioning coders.
      plan: the block plan; ``None`` = one block.
      item: the item number (block ``b`` uses ``fold_in(fold_in(key, item), b)``).

    Returns:
      The file's bytes (layout: :mod:`jaxrec.container`). Warns (RuntimeWarning) when an exact
      coder hit its step limit.
    """
    report = compress_report(
        codec, jnp.asarray(x)[None], key=key, coder=coder, plan=plan, first_item=item,
        devices=resolve_devices(None)[:1], group_size=group_size,
    )
    warn_status(report.code, stacklevel=3)
    return report.files[0]


# ------------------------------------------------------------------------------------------------
# Decompress


def _header_spec(header: container.Header) -> tuple[CoderSpec, CoderEntry]:
    entry = REGISTRY.get(header.coder_name)
    if entry is None:
        raise FormatError(f"unknown coder {header.coder_name!r} (registered: {sorted(REGISTRY)})")
    if len(header.coder_args) != len(entry.params):
        raise FormatError(
            f"coder {header.coder_name!r} takes {len(entry.params)} parameters, the header has {len(header.coder_args)}"
        )
    return CoderSpec(header.coder_name, tuple(zip(entry.params, header.coder_args))), entry


# Header fields the files of one decompress_batch call must share (keys and items may differ).
_SHARED_FIELDS = (
    "coder_name", "coder_args", "latent_size", "latent_dtype", "num_blocks", "plan_fingerprint", "data_shape",
    "lossless",
)


def decompress_batch(
    codec: Codec,
    files: Sequence[bytes],
    *,
    plan: BlockPlan | None = None,
    devices: Sequence[Any] | None = None,
) -> Array:
    """Decompresses files that share coder, latent and plan (e.g. from :func:`compress_batch`).

    Returns:
      The reconstructions stacked, ``(N, ...)``: ``codec.reconstruct(z)``, or the exact items for a
      lossless codec.

    Raises:
      FormatError: a malformed file, or a header inconsistent with the codec or the plan (latent
        size, block plan, lossless or not, a coder or dtype this decoder cannot reproduce); the
        message says which.
      InvalidArgumentError: ``files`` is empty or its files differ in coder, latent or plan.
    """
    if isinstance(files, (bytes, bytearray)) or not len(files):
        raise InvalidArgumentError("files must be a non-empty sequence of byte strings")
    parsed = [container.read(f) for f in files]
    header = parsed[0][0]
    for i, (h, _) in enumerate(parsed):
        if any(getattr(h, k) != getattr(header, k) for k in _SHARED_FIELDS):
            raise InvalidArgumentError(f"file {i} differs from file 0 in coder, latent or plan; decode them separately")
    spec, entry = _header_spec(header)
    if header.latent_dtype == "float64" and not jax.config.jax_enable_x64:
        raise FormatError("the file was written with float64 latents: decode it with jax x64 enabled")
    prior = codec_prior(codec, header.latent_dtype)
    if prior.event_size != header.latent_size:
        raise FormatError(
            f"the file's latent has {header.latent_size} dimensions, the codec's prior {prior.event_size}"
        )
    plan = resolve_plan(plan, prior.event_size)
    if plan.fingerprint != header.plan_fingerprint or plan.num_blocks != header.num_blocks:
        raise FormatError(
            f"the file was written with another block plan ({header.num_blocks} blocks, fingerprint "
            f"{header.plan_fingerprint:08x}; this plan: {plan.num_blocks} blocks, {plan.fingerprint:08x})"
        )
    lossless = callable(getattr(codec, "likelihood", None))
    if header.lossless != lossless:
        raise FormatError(f"the file is {'lossless' if header.lossless else 'lossy'}, the codec is not")
    if entry.partitioned and plan.partitions is None:
        raise FormatError(f"coder {spec.name!r} needs the plan's partitions, this plan has none")
    partitions = plan.partitions if entry.partitioned else None
    _, prior_blocks = plan.split(prior, prior)
    try:
        template = code_template(spec, prior_blocks, partitions)
        block_shapes = entry.symbol_shapes(spec, plan, template)
    except InvalidArgumentError as err:
        raise FormatError(f"the header's coder parameters are invalid: {err}") from None
    if len(header.models) != len(block_shapes):
        raise FormatError(
            f"coder {header.coder_name!r} sends {len(block_shapes)} symbols, the header has {len(header.models)} models"
        )
    shapes = {name: (plan.num_blocks, *shape) for name, shape in block_shapes.items()}
    symbols = []
    for h, sections in parsed:
        symbols.append(decode_fields(sections[0], index_streams(entry, h.models, plan, shapes), shapes))
    stacked = {name: np.stack([s[name] for s in symbols]) for name in shapes}
    with as_format_error("the index section"):
        try:
            fields = entry.fields(spec, stacked)
        except InvalidArgumentError as err:
            raise FormatError(f"the index section is invalid: {err}") from None
    for name, value in fields.items():
        info = np.iinfo(getattr(template, name).dtype)
        if value.size and (value.min() < info.min or value.max() > info.max):
            raise FormatError(f"decoded {name} {value.max()} does not fit the coder's {info.dtype}")
    n = len(files)
    code = template.replace(
        **{f: np.asarray(fields[f]).astype(getattr(template, f).dtype) for f in type(template).MESSAGE},
        steps=np.zeros((n, plan.num_blocks) + template.steps.shape, template.steps.dtype),
        status=np.zeros((n, plan.num_blocks) + template.status.shape, template.status.dtype),
    )
    key_words = np.array([h.key_words for h, _ in parsed], np.uint32)
    key_data = block_key_data(key_words, np.array([h.item for h, _ in parsed], np.uint32), plan.num_blocks)
    devices = resolve_devices(devices)
    z = plan.merge(run_sharded(block_decoder(spec, devices), devices, (key_data, code), (prior_blocks, partitions), n))
    if not lossless:
        return vmap_call(codec, "reconstruct", z)
    items = [
        decode_data(sections[1], likelihood_table(codec, z[i], h.data_shape, FormatError)).reshape(h.data_shape)
        for i, (h, sections) in enumerate(parsed)
    ]
    return jnp.asarray(np.stack(items))


def decompress(codec: Codec, data: bytes, *, plan: BlockPlan | None = None) -> Array:
    """Decompresses one file: ``codec.reconstruct(z)``, or the exact item for a lossless codec.

    ``plan`` must be the encoder's block plan (``None`` = one block); the header's fingerprint
    catches a mismatch. Raises :class:`~jaxrec.core.errors.FormatError` naming what is wrong.
    """
    return decompress_batch(codec, [data], plan=plan, devices=resolve_devices(None)[:1])[0]


def describe(data: bytes) -> dict[str, Any]:
    """The header of a jaxrec file and its index rate, as a JSON-ready dict (``jaxrec info``).

    Needs neither the codec nor the plan; the index section is decoded under the header's
    models when they are all coding models (``index_ideal_bits``; ``None`` for plan alphabets,
    which need the plan). Raises :class:`~jaxrec.core.errors.FormatError` for a malformed file.
    """
    header, sections = container.read(data)
    entry = REGISTRY.get(header.coder_name)
    known = entry is not None and len(entry.params) == len(header.coder_args)
    names = entry.params if known else tuple(f"arg{i}" for i in range(len(header.coder_args)))
    index_bits = None
    if not any(isinstance(m, PlanAlphabetModel) for m in header.models):
        # Assumes one symbol per block and field (true of pfr, orc, mrc); else the rate is unknown.
        with contextlib.suppress(FormatError), as_format_error("the index section"):
            decoded = decode_streams(sections[0], [(m, header.num_blocks) for m in header.models])
            index_bits = sum(ideal_bits(values, m) for values, m in zip(decoded, header.models))
    payload = sum(len(s) for s in sections)
    return {
        "format_version": header.version,
        "prng": header.prng_impl,
        "coder": header.coder_name,
        "coder_registered": entry is not None,
        "coder_params": dict(zip(names, header.coder_args)),
        "key_words": list(header.key_words),
        "item": header.item,
        "latent_size": header.latent_size,
        "latent_dtype": header.latent_dtype,
        "num_blocks": header.num_blocks,
        "plan_fingerprint": f"{header.plan_fingerprint:08x}",
        "data_shape": list(header.data_shape),
        "lossless": header.lossless,
        "entropy_models": [repr(m) for m in header.models],
        "index_ideal_bits": index_bits,
        "bytes": len(data),
        "header_bytes": len(data) - payload,
        "payload_bytes": payload,
        "section_bytes": [len(s) for s in sections],
    }
