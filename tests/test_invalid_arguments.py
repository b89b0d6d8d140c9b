"""Bad arguments at the API boundary (issue 11): ``InvalidArgumentError`` or a correct result, nothing else.

Two kinds of tests:

* one test per case the issue lists (a key ``"abc"`` or ``None``, ``jaxrec.kl`` with event sizes 3
  and 5, ``encode_batch(lane_chunk_size=0)``, a Gaussian target with a ``Uniform`` prior,
  ``partition_from_mi(total_bits=5.0)``, a batched target into ``encode``, ...), each checking the
  message names the argument;
* property tests (hypothesis) that feed random malformed arguments -- wrong shapes, dtypes, NaNs,
  wrong key types, mismatched batch sizes, codes of another coder -- to every coder's ``encode``,
  ``decode`` and ``encode_batch`` and to the public functions of :mod:`jaxrec.core.distributions`,
  :mod:`jaxrec.entropy`, :mod:`jaxrec.coders.sp.partition`, :mod:`jaxrec.codec.blocks` and
  :mod:`jaxrec.data`, and accept only :class:`~jaxrec.InvalidArgumentError` or a result they check.

The coder property test draws only arguments that must be refused before any search is compiled,
so it stays fast; what a coder does with bad *values* inside ``jit`` (a status, no exception) is
checked for every coder in :func:`test_invalid_values_under_jit_stop_at_once_with_a_status`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxrec
from jaxrec import data, entropy
from jaxrec.coders.base import INVALID_INPUT, OK, UNBOUNDED_RATIO
from jaxrec.core.distributions import mmd2_to_gaussian

G, U = jaxrec.DiagGaussian, jaxrec.Uniform
IAE = jaxrec.InvalidArgumentError
FEW = settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])


def gauss(d: int, loc: float = 0.2, scale: float = 0.6, batch: tuple[int, ...] = ()) -> jaxrec.DiagGaussian:
    return G(jnp.full(batch + (d,), loc), jnp.full(batch + (d,), scale))


# Every coder, with small settings, and the event size of its problem (the 1-D samplers take D = 1).
PARTITION_2D = jaxrec.Partition(np.array([2, 4]))
CODERS: dict[str, tuple[Callable[[], jaxrec.Coder], int]] = {
    "pfr": (lambda: jaxrec.pfr(chunk_size=16, max_steps=2**10), 2),
    "orc": (lambda: jaxrec.orc(16), 2),
    "mrc": (lambda: jaxrec.mrc(16), 2),
    "sp_pfr": (lambda: jaxrec.sp_pfr(PARTITION_2D, chunk_size=16, max_steps=2**10), 2),
    "sp_orc": (lambda: jaxrec.sp_orc(PARTITION_2D, 16), 2),
    "gprs": (lambda: jaxrec.gprs(chunk_size=16, max_steps=2**10), 1),
    "grs": (lambda: jaxrec.grs(chunk_size=16, max_steps=2**10), 1),
    "agrs": (lambda: jaxrec.agrs(max_steps=2**10), 1),
    "astar": (lambda: jaxrec.astar(capacity=8, max_steps=64), 1),
    "adstar": (lambda: jaxrec.adstar(capacity=8, max_steps=64), 1),
    "dadstar": (lambda: jaxrec.dadstar(4, capacity=8, max_steps=64), 1),
    "gprs_bnb": (lambda: jaxrec.gprs_bnb(capacity=8, max_steps=64), 1),
    "irec": (lambda: jaxrec.irec(8, 2), 2),
    "factorized": (lambda: jaxrec.factorized(jaxrec.grs(chunk_size=16, max_steps=2**10)), 2),
}
NAMES = sorted(CODERS)
SIGNED = {"agrs": ("bound_level", "bound_index")}  # message fields that may be negative


@functools.cache
def coder(name: str) -> jaxrec.Coder:
    return CODERS[name][0]()


CODE_CLASSES = {
    "sp_pfr": jaxrec.SPCode, "sp_orc": jaxrec.SPCode, "agrs": jaxrec.AGRSCode, "irec": jaxrec.IrecCode,
    "astar": jaxrec.TreeCode, "adstar": jaxrec.TreeCode, "dadstar": jaxrec.TreeCode, "gprs_bnb": jaxrec.TreeCode,
}
FIELD_SHAPES = {"bin": lambda d: (d,), "path": lambda d: (1,), "indices": lambda d: (2,)}  # irec(8, 2): K = 2


def template(name: str) -> Any:
    """A well-formed code of the coder, every field 0 (built from the code class's fields by name, so it
    does not depend on the encoder)."""
    d = CODERS[name][1]
    cls = CODE_CLASSES.get(name, jaxrec.Code)
    batch = (d,) if name == "factorized" else ()  # the wrapper's leaves carry a trailing axis D
    fields = {
        f.name: jnp.zeros(batch + FIELD_SHAPES.get(f.name, lambda d: ())(d), jnp.uint32 if f.name == "path" else jnp.int32)
        for f in dataclasses.fields(cls) if not f.metadata.get("static")
    }
    return cls(**fields, coder="factorized(grs)" if name == "factorized" else name, event_size=d)


def raises_invalid(call: Callable[[], Any], *match: str) -> str:
    """Runs ``call``; it must raise :class:`InvalidArgumentError` whose message contains every ``match``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(IAE) as info:
            call()
    message = str(info.value)
    for word in match:
        assert word in message, (word, message)
    return message


# ------------------------------------------------------------------------------------------------
# The cases the issue lists


@pytest.mark.parametrize("key", ["abc", None])
def test_key_abc_or_none_is_refused_by_encode_decode_and_encode_batch(key):
    coder_ = coder("pfr")
    raises_invalid(lambda: coder_.encode(key, gauss(2), gauss(2, 0.0, 1.0)), "key must be", repr(key))
    raises_invalid(lambda: coder_.decode(key, template("pfr"), gauss(2, 0.0, 1.0)), "key must be", repr(key))
    raises_invalid(lambda: jaxrec.encode_batch(coder_, key, gauss(2, batch=(3,)), gauss(2, 0.0, 1.0)), "keys", repr(key))


def test_kl_with_event_sizes_3_and_5_names_both():
    for fn in (jaxrec.kl, jaxrec.dinf, jaxrec.log_sup_ratio):
        raises_invalid(lambda fn=fn: fn(gauss(3), gauss(5)), "event sizes differ: 3 != 5")
    raises_invalid(lambda: jaxrec.log_ratio(gauss(3), gauss(5), jnp.zeros(3)), "event sizes differ: 3 != 5")
    raises_invalid(lambda: jaxrec.log_ratio(gauss(3), gauss(3), jnp.zeros(5)), "x must be", "(..., 3)")
    raises_invalid(lambda: jaxrec.kl(gauss(3, batch=(2,)), gauss(3, batch=(4,))), "batch shapes", "(2,)", "(4,)")


def test_encode_batch_lane_chunk_size_zero_is_refused():
    raises_invalid(
        lambda: jaxrec.encode_batch(coder("pfr"), jnp.arange(4), gauss(2, batch=(4,)), gauss(2, 0.0, 1.0), lane_chunk_size=0),
        "lane_chunk_size", "got 0",
    )
    raises_invalid(
        lambda: jaxrec.encode_batch(coder("pfr"), jnp.arange(4), gauss(2, batch=(4,)), gauss(2, 0.0, 1.0), chunk=8),
        "unknown encode_batch options", "chunk",
    )


@pytest.mark.parametrize("name", ["pfr", "orc", "mrc", "sp_pfr", "sp_orc", "irec"])
def test_gaussian_target_with_a_uniform_prior_says_what_is_wrong(name):
    uniform = U(jnp.full(2, -1.0), jnp.full(2, 1.0))
    message = raises_invalid(lambda: coder(name).encode(0, gauss(2), uniform), "target")
    assert "support" in message or "DiagGaussian" in message, message
    if name in ("pfr", "orc", "mrc", "sp_pfr", "sp_orc"):
        assert "outside the prior's support" in message and "D_KL[Q||P] = inf" in message, message


def test_partition_from_mi_accepts_integral_floats_and_refuses_fractions():
    mi = np.array([2.0, 1.0, 0.5])
    assert np.array_equal(
        np.asarray(jaxrec.partition_from_mi(mi, total_bits=5.0).num_intervals),
        np.asarray(jaxrec.partition_from_mi(mi, total_bits=5).num_intervals),
    )
    assert np.array_equal(
        np.asarray(jaxrec.partition_from_mi(mi, np.float32(4.0)).num_intervals),
        np.asarray(jaxrec.partition_from_mi(mi, 4).num_intervals),
    )
    raises_invalid(lambda: jaxrec.partition_from_mi(mi, total_bits=5.5), "total_bits", "whole number", "5.5")
    for bad in (-1, float("nan"), "5", None, True):
        raises_invalid(lambda bad=bad: jaxrec.partition_from_mi(mi, total_bits=bad), "total_bits")


def test_encode_refuses_a_batch_and_encode_batch_refuses_mismatched_sizes():
    raises_invalid(lambda: coder("pfr").encode(0, gauss(2, batch=(3,)), gauss(2, 0.0, 1.0)), "encode codes one problem")
    raises_invalid(
        lambda: jaxrec.encode_batch(coder("pfr"), jnp.arange(3), gauss(2, batch=(4,)), gauss(2, 0.0, 1.0)),
        "need 4 keys", "(3,)",
    )
    raises_invalid(
        lambda: jaxrec.encode_batch(coder("pfr"), jnp.arange(4), gauss(2, batch=(4,)), gauss(2, 0.0, 1.0, batch=(3,))),
        "batch shapes", "(4,)", "(3,)",
    )


def test_decoders_refuse_codes_of_another_coder_or_event_size_also_under_jit():
    prior2, prior3 = gauss(2, 0.0, 1.0), gauss(3, 0.0, 1.0)
    sp_code = template("sp_pfr")  # an SPCode made by sp_pfr, event size 2
    for decode in (coder("pfr").decode, jax.jit(coder("pfr").decode)):
        raises_invalid(lambda decode=decode: decode(0, sp_code, prior2), "code must be a Code made by pfr", "SPCode")
        raises_invalid(lambda decode=decode: decode(0, template("orc"), prior2), "made by 'orc'", "'pfr' decoder cannot decode it")
        raises_invalid(lambda decode=decode: decode(0, template("pfr"), prior3), "event size 2", "event size 3")


def test_encode_batch_takes_int_seeds_like_vmap_of_encode():
    coder_, prior = coder("orc"), gauss(2, 0.0, 1.0)
    targets = G(jnp.linspace(-0.5, 0.5, 8).reshape(4, 2), jnp.full((4, 2), 0.6))
    batch = jaxrec.encode_batch(coder_, jnp.arange(4), targets, prior)
    for seeds in ([0, 1, 2, 3], np.arange(4, dtype=np.uint32)):  # a list and a numpy array of seeds
        again = jaxrec.encode_batch(coder_, seeds, targets, prior)
        np.testing.assert_array_equal(np.asarray(again.index), np.asarray(batch.index))
    keys = jax.vmap(lambda seed: jax.random.key(seed, impl="threefry2x32"))(jnp.arange(4))  # the seeds' keys
    np.testing.assert_array_equal(np.asarray(jaxrec.encode_batch(coder_, keys, targets, prior).index), np.asarray(batch.index))
    raises_invalid(lambda: jaxrec.encode_batch(coder_, np.array([0, 1, 2, 2**32], np.int64), targets, prior), "keys", "2**32")


@pytest.mark.slow  # two compiled searches (test_coders_core keeps the warning before the search in the fast tier)
def test_eager_encode_warns_before_a_hopeless_search_and_on_a_bad_status():
    target, prior = G(3.0, 0.01), G(0.0, 1.0)  # D_inf ~ 13 bits against a limit of 64 steps
    pfr = jaxrec.pfr(chunk_size=16, max_steps=64)
    with pytest.warns(RuntimeWarning) as record:
        code = pfr.encode(1, target, prior)
    messages = [str(w.message) for w in record]
    assert any("exceeds the limit of 64 steps" in m for m in messages), messages  # before the search
    assert any("not ok" in m and "exhausted" in m for m in messages), messages  # after it
    assert int(code.status) != OK and int(code.steps) == 64
    targets = G(jnp.array([[0.1], [3.0]]), jnp.array([[0.6], [0.01]]))  # the second problem is hopeless
    with pytest.warns(RuntimeWarning, match=r"\{'exhausted': 1\} of 2 code\(s\) are not ok"):
        jaxrec.encode_batch(pfr, jnp.arange(2), targets, prior)
    with warnings.catch_warnings():  # a valid, easy problem: no warning at all
        warnings.simplefilter("error")
        pfr.encode(1, G(0.2, 0.8), prior)


def test_several_keys_where_one_is_expected():
    data_pair = jnp.zeros((2, 2), jnp.uint32)
    raises_invalid(lambda: coder("pfr").encode(data_pair, gauss(2), gauss(2, 0.0, 1.0)), "one key", "(2,)")
    raises_invalid(lambda: coder("astar").decode(data_pair, template("astar"), gauss(1, 0.0, 1.0)), "one key")


@pytest.mark.parametrize("factory", [jaxrec.pfr, jaxrec.gprs, jaxrec.grs, jaxrec.agrs])
def test_factories_refuse_a_bool_chunk_size(factory):
    raises_invalid(lambda: factory(chunk_size=True), "chunk_size must be an int", "True")
    raises_invalid(lambda: jaxrec.orc(16, chunk_size=False), "chunk_size must be an int", "False")


def test_distribution_parameters_are_checked_at_construction():
    raises_invalid(lambda: G("a", 1.0), "loc must be a real number or array", "'a'")
    raises_invalid(lambda: G(None, 1.0), "loc")
    raises_invalid(lambda: G(0.0, 1j), "scale must be real")
    raises_invalid(lambda: G(jnp.zeros(3), jnp.ones(4)), "must broadcast together", "(3,)", "(4,)")
    raises_invalid(lambda: G(jnp.zeros(3), -jnp.ones(3)), "scale must be > 0")
    raises_invalid(lambda: U(jnp.ones(2), jnp.zeros(2)), "high > low")
    raises_invalid(lambda: G(jnp.array([0.0, jnp.nan]), 1.0), "loc must be finite")


def test_coders_refuse_half_precision_and_empty_events():
    half = G(jnp.zeros(2, jnp.float16), jnp.ones(2, jnp.float16))
    raises_invalid(lambda: coder("orc").encode(0, half, half), "float32 or float64", "float16")
    empty = G(jnp.zeros(0), jnp.ones(0))
    raises_invalid(lambda: coder("orc").encode(0, empty, empty), "event size must be >= 1")


def test_decoders_refuse_malformed_codes():
    prior = gauss(2, 0.0, 1.0)
    code = template("pfr")
    raises_invalid(lambda: coder("pfr").decode(0, code.replace(index=jnp.int32(-1)), prior), "code.index must be >= 0")
    raises_invalid(lambda: coder("pfr").decode(0, code.replace(index=jnp.float32(1.0)), prior), "code.index", "integer")
    batched = jax.tree.map(lambda a: jnp.stack([a, a]), code)
    raises_invalid(lambda: coder("pfr").decode(0, batched, prior), "decode takes one code", "jax.vmap")
    raises_invalid(lambda: coder("pfr").decode(0, code, gauss(2, 0.0, 1.0, batch=(3,))), "prior without batch axes")
    # a negative AGRS bound index is a reflected bound, not an error
    agrs_code = template("agrs").replace(index=jnp.int32(1), bound_level=jnp.int32(2), bound_index=jnp.int32(-2))
    assert coder("agrs").decode(0, agrs_code, gauss(1, 0.0, 1.0)).shape == (1,)


def test_public_helpers_refuse_wrong_types():
    raises_invalid(lambda: jaxrec.plan_blocks(np.ones(4), 2.0, shuffle="yes"), "shuffle")
    raises_invalid(lambda: jaxrec.plan_blocks("abc", 2.0), "kl_per_dim")
    raises_invalid(lambda: jaxrec.plan_blocks(np.ones(4), 2.0).with_partitions(None), "build must be a callable")
    raises_invalid(lambda: jaxrec.kl(gauss(2), gauss(2), per_dim="yes"), "per_dim")
    raises_invalid(  # refused by the factory, at the latest by encode
        lambda: jaxrec.sp_pfr(PARTITION_2D, weights="mass").encode(0, gauss(2), gauss(2, 0.0, 1.0)), "weights must be one of"
    )
    raises_invalid(lambda: jaxrec.irec(8, 2, variance_fractions="ab"), "variance_fractions")
    raises_invalid(lambda: entropy.zipf_bits(-1, 1.5), "index must be whole numbers >= 0", "-1")
    raises_invalid(lambda: entropy.zipf_bits(3, 1.0), "alpha must be", "> 1")
    raises_invalid(lambda: entropy.uniform_bits(0), "num_symbols")
    raises_invalid(lambda: entropy.encode_streams([1]), "streams must be a sequence of (indices, model) pairs")
    raises_invalid(lambda: data.load_mnist(directory=3), "directory must be a path")
    raises_invalid(lambda: data.load_mnist(split=["train"]), "split must be one of")
    raises_invalid(lambda: jaxrec.register_coder("toy", jaxrec.pfr, params=3, message=lambda *a: ()), "params")
    raises_invalid(lambda: mmd2_to_gaussian(jnp.zeros((1, 2)), gauss(2)), "samples", "R >= 2")
    raises_invalid(lambda: mmd2_to_gaussian(jnp.zeros((4, 3)), gauss(2)), "samples", "(R, 2)")


# ------------------------------------------------------------------------------------------------
# Property test: every coder's encode, decode and encode_batch

BAD_KEYS = [
    "abc", None, 1.5, -1, 2**32, True, b"ab", 1j, object(), [1, 2], np.array([0, 1], np.int64),
    jnp.zeros(3, jnp.uint32), jnp.zeros((2, 2), jnp.uint32), jnp.array(3.0), jax.random.key(0, impl="rbg"),
]


def _not_a_distribution(d: int) -> list[Any]:
    return [None, "gauss", jnp.zeros(d), (jnp.zeros(d), jnp.ones(d)), {"loc": jnp.zeros(d)}, 3.0]


@st.composite
def malformed_encode(draw: Any, name: str) -> tuple[Callable[[], Any], str]:
    """A call of ``coder(name).encode`` with exactly one malformed argument, and what it must name."""
    d = CODERS[name][1]
    target, prior = gauss(d), gauss(d, 0.0, 1.0)
    enc = coder(name).encode
    kind = draw(st.sampled_from(["key", "target", "prior", "event", "batch", "nan", "scale", "dtype", "support"]))
    if kind == "key":
        key = draw(st.sampled_from(BAD_KEYS))
        return (lambda: enc(key, target, prior)), "key"
    if kind in ("target", "prior"):
        bad = draw(st.sampled_from(_not_a_distribution(d)))
        args = (bad, prior) if kind == "target" else (target, bad)
        return (lambda: enc(0, *args)), kind
    if kind == "event":
        other = draw(st.integers(0, 6).filter(lambda k: k != d))
        which = draw(st.booleans())
        args = (gauss(other), prior) if which else (target, gauss(other, 0.0, 1.0))
        return (lambda: enc(0, *args)), "event size"
    if kind == "batch":
        batch = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple))
        which = draw(st.booleans())
        args = (gauss(d, batch=batch), prior) if which else (target, gauss(d, 0.0, 1.0, batch=batch))
        return (lambda: enc(0, *args)), "batch"
    if kind in ("nan", "scale"):  # built inside the call: the constructor must refuse it
        pos = draw(st.integers(0, d - 1))
        value = draw(st.sampled_from([math.nan, math.inf, -math.inf])) if kind == "nan" else draw(st.floats(-3.0, 0.0))
        field = draw(st.sampled_from(["loc", "scale"])) if kind == "nan" else "scale"
        params = {"loc": np.full(d, 0.2), "scale": np.full(d, 0.6)}
        params[field][pos] = value
        return (lambda: enc(0, G(params["loc"], params["scale"]), prior)), field
    if kind == "dtype":
        dtype = draw(st.sampled_from([jnp.float16, jnp.bfloat16]))
        half = G(jnp.zeros(d, dtype), jnp.full(d, 0.5, dtype))
        return (lambda: enc(0, half, prior)), "float32 or float64"
    # "support": a Gaussian target against a uniform prior, or a uniform target outside a uniform prior
    low = draw(st.floats(-2.0, 0.0))
    box = U(jnp.full(d, low), jnp.full(d, low + 1.0))
    args = (target, box) if draw(st.booleans()) else (U(jnp.full(d, low - 1.0), jnp.full(d, low + 0.5)), box)
    return (lambda: enc(0, *args)), ""


@st.composite
def malformed_decode(draw: Any, name: str) -> tuple[Callable[[], Any], str]:
    """A call of ``coder(name).decode`` with one malformed argument."""
    d = CODERS[name][1]
    prior, code = gauss(d, 0.0, 1.0), template(name)
    dec = coder(name).decode
    kind = draw(st.sampled_from(["key", "prior", "event", "prior_batch", "code", "other", "batched", "sign", "dtype"]))
    if kind == "key":
        key = draw(st.sampled_from(BAD_KEYS))
        return (lambda: dec(key, code, prior)), "key"
    if kind == "prior":
        bad = draw(st.sampled_from(_not_a_distribution(d)))
        return (lambda: dec(0, code, bad)), "prior"
    if kind == "event":
        other = draw(st.integers(1, 6).filter(lambda k: k != d))
        return (lambda: dec(0, code, gauss(other, 0.0, 1.0))), "event size"
    if kind == "prior_batch":
        return (lambda: dec(0, code, gauss(d, 0.0, 1.0, batch=(2,)))), "batch"
    if kind == "code":
        bad = draw(st.sampled_from([None, 3, jnp.zeros(3), {"index": 0}]))
        return (lambda: dec(0, bad, prior)), "code"
    if kind == "other":  # a code of another coder (same event size where possible)
        other = draw(st.sampled_from([n for n in NAMES if n != name]))
        foreign = template(other).replace(event_size=d)
        return (lambda: dec(0, foreign, prior)), ""
    if kind == "batched":
        size = draw(st.integers(1, 3))
        stacked = jax.tree.map(lambda a: jnp.stack([a] * size), code)
        return (lambda: dec(0, stacked, prior)), "one code"
    fields = [f for f in code.MESSAGE if f not in SIGNED.get(name, ())]
    field = draw(st.sampled_from(fields if kind == "sign" else list(code.MESSAGE)))
    value = getattr(code, field)
    if kind == "sign":
        bad = value - draw(st.integers(1, 2**20))
        return (lambda: dec(0, code.replace(**{field: bad.astype(value.dtype) if value.dtype != jnp.uint32 else bad.astype(jnp.int32)}), prior)), field
    bad = value.astype(draw(st.sampled_from([jnp.float32, jnp.bool_])))
    return (lambda: dec(0, code.replace(**{field: bad}), prior)), field


@st.composite
def malformed_encode_batch(draw: Any, name: str) -> tuple[Callable[[], Any], str]:
    """A call of ``jaxrec.encode_batch(coder(name), ...)`` with one malformed argument."""
    d = CODERS[name][1]
    batch = draw(st.integers(1, 4))
    keys, targets, prior = jnp.arange(batch), gauss(d, batch=(batch,)), gauss(d, 0.0, 1.0)
    run = functools.partial(jaxrec.encode_batch, coder(name))
    kind = draw(st.sampled_from(["keys", "count", "targets", "prior", "option", "unknown"]))
    if kind == "keys":
        # (B,) int arrays and uint32[B, 2] are valid batches of keys: only forms that never are
        never = [k for k in BAD_KEYS if not isinstance(k, (list, np.ndarray, jax.Array)) or np.ndim(k) == 0]
        bad = draw(st.sampled_from(never + [jnp.zeros((batch, 3), jnp.int32)]))
        return (lambda: run(bad, targets, prior)), "key"
    if kind == "count":
        other = draw(st.integers(0, 6).filter(lambda k: k != batch))
        return (lambda: run(jnp.arange(other), targets, prior)), f"need {batch} keys"
    if kind == "targets":
        bad = draw(st.sampled_from([gauss(d), gauss(d, batch=(batch, 2)), gauss(d + 1, batch=(batch,)), jnp.zeros((batch, d))]))
        return (lambda: run(keys, bad, prior)), ""
    if kind == "prior":
        other = draw(st.integers(2, 5).filter(lambda k: k != batch))
        return (lambda: run(keys, targets, gauss(d, 0.0, 1.0, batch=(other,)))), "prior"
    if kind == "unknown":
        return (lambda: run(keys, targets, prior, chunk_size=8)), "unknown encode_batch options"
    option = draw(st.sampled_from(["lane_chunk_size", "num_lanes", "max_widening"]))
    value = draw(st.sampled_from([0, -1, 2.5, "8", True]).filter(lambda v: option != "max_widening" or v != 0))
    if name in ("sp_orc", "astar", "adstar", "dadstar", "gprs_bnb", "irec"):  # no batch encoder: no options at all
        return (lambda: run(keys, targets, prior, **{option: value})), "no batch encoder"
    return (lambda: run(keys, targets, prior, **{option: value})), option


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "sp_pfr" else n for n in NAMES])  # sp_pfr: 9 s cold
@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_coders_refuse_malformed_arguments(name, data):
    """encode, decode and encode_batch: one malformed argument -> InvalidArgumentError naming it."""
    strategy = data.draw(st.sampled_from([malformed_encode, malformed_decode, malformed_encode_batch]))
    call, word = data.draw(strategy(name))
    raises_invalid(call, word)


# ------------------------------------------------------------------------------------------------
# Property test: the public functions (invalid -> InvalidArgumentError, valid -> a checked result)

ANYTHING = st.one_of(
    st.none(), st.text(max_size=3), st.booleans(), st.complex_numbers(max_magnitude=2, allow_nan=False),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 70),
    st.lists(st.floats(-3, 3), max_size=4), st.just(object()), st.just({}),
)


def real_arrays(min_dims: int = 0, max_dims: int = 2) -> st.SearchStrategy:
    """Float arrays of small random shapes, sometimes with NaN/inf or negative entries."""
    shapes = st.lists(st.integers(0, 4), min_size=min_dims, max_size=max_dims).map(tuple)
    values = st.floats(-4.0, 4.0) | st.sampled_from([math.nan, math.inf, -math.inf, 0.0])
    return shapes.flatmap(lambda shape: st.lists(values, min_size=math.prod(shape), max_size=math.prod(shape)).map(
        lambda v: np.asarray(v, np.float64).reshape(shape)
    ))


def outcome(call: Callable[[], Any]) -> tuple[bool, Any]:
    """``(True, result)``, or ``(False, message)`` for an InvalidArgumentError; anything else fails."""
    try:
        return True, call()
    except IAE as err:
        return False, str(err)


@FEW
@given(loc=real_arrays() | ANYTHING, scale=real_arrays() | ANYTHING, uniform=st.booleans())
def test_distribution_constructors(loc, scale, uniform):
    ok, dist = outcome(lambda: U(loc, scale) if uniform else G(loc, scale))
    if ok:
        first, second = (np.asarray(getattr(dist, p)) for p in dist._params)
        assert first.shape == second.shape == (np.broadcast_shapes(np.shape(loc), np.shape(scale)) or (1,))
        assert np.all(np.isfinite(first)) and np.all(np.isfinite(second)) and jnp.issubdtype(dist.dtype, jnp.floating)
        assert np.all(second > first) if uniform else np.all(second > 0)


def distributions(max_event: int = 4) -> st.SearchStrategy:
    """Valid Gaussians and uniforms of random event sizes and batch shapes, or non-distributions."""
    shape = st.tuples(st.lists(st.integers(1, 3), max_size=1).map(tuple), st.integers(1, max_event))

    def build(arg: tuple[tuple[int, ...], int], kind: str, shift: float) -> Any:
        batch, d = arg
        if kind == "gauss":
            return G(jnp.full(batch + (d,), shift), jnp.full(batch + (d,), 0.5 + abs(shift)))
        return U(jnp.full(batch + (d,), shift - 1.0), jnp.full(batch + (d,), shift + 1.0))

    valid = st.builds(build, shape, st.sampled_from(["gauss", "uniform"]), st.floats(-1.0, 1.0))
    return valid | st.sampled_from([None, "x", jnp.zeros(3), (0.0, 1.0)])


@FEW
@given(target=distributions(), prior=distributions(), per_dim=st.sampled_from([False, True, "yes", 1]),
       x=real_arrays(1, 2))
def test_pair_quantities(target, prior, per_dim, x):
    for fn in (jaxrec.kl, jaxrec.dinf, jaxrec.log_sup_ratio):
        ok, value = outcome(lambda fn=fn: fn(target, prior, per_dim=per_dim))
        if ok:
            batch = np.broadcast_shapes(target.batch_shape, prior.batch_shape)
            assert value.shape == batch + ((target.event_size,) if per_dim else ())
            assert not np.any(np.isnan(np.asarray(value)))
            if fn is jaxrec.kl:  # Gibbs' inequality, up to float32 rounding
                assert np.all(np.asarray(value) >= -1e-4)
    ok, value = outcome(lambda: jaxrec.log_ratio(target, prior, x))
    if ok:
        assert value.shape == np.broadcast_shapes(x.shape[:-1], target.batch_shape, prior.batch_shape)


@FEW
@given(mi=real_arrays(1, 2) | ANYTHING, total=ANYTHING | st.integers(0, 12).map(float), strategy=st.sampled_from(
    ["mi", "random", "random_informative", "other"]), seed=st.sampled_from([0, 3, -1, "s", 1.5]))
def test_partition_from_mi(mi, total, strategy, seed):
    ok, part = outcome(lambda: jaxrec.partition_from_mi(mi, total, strategy, seed=seed))
    if ok:
        assert part.event_size == np.asarray(mi).size
        assert float(np.sum(np.log2(np.asarray(part.num_intervals)))) == total


@FEW
@given(counts=st.lists(st.integers(-2, 2**31), min_size=0, max_size=4) | ANYTHING | real_arrays(1, 1),
       max_intervals=st.sampled_from([None, 1, 4, 2**31, 4.0, "4"]))
def test_partition_constructor(counts, max_intervals):
    ok, part = outcome(lambda: jaxrec.Partition(counts, max_intervals))
    if ok:
        host = np.asarray(counts)
        assert np.array_equal(np.asarray(part.num_intervals), host) and part.max_intervals >= host.max() >= 1


@FEW
@given(kl=real_arrays(1, 2) | ANYTHING, budget=st.floats(-1.0, 8.0) | ANYTHING, cap=st.sampled_from([None, 0, 2, 3.0, "2", 2.5]),
       shuffle=st.sampled_from([True, False, "no", None]), key=st.sampled_from([0, 7, "k", -1, None]))
def test_plan_blocks(kl, budget, cap, shuffle, key):
    ok, plan = outcome(lambda: jaxrec.plan_blocks(kl, budget, key=key, max_block_size=cap, shuffle=shuffle))
    if ok:
        stats = np.asarray(kl, np.float64)
        assert sorted(plan.order.tolist()) == list(range(stats.size)) and int(plan.sizes.sum()) == stats.size
        assert cap is None or int(plan.sizes.max()) <= cap
        sums = [stats[plan.order[a:b]].sum() for a, b in zip(np.cumsum(plan.sizes) - plan.sizes, np.cumsum(plan.sizes))]
        assert all(s <= budget + 1e-9 or size == 1 for s, size in zip(sums, plan.sizes))


@FEW
@given(index=st.lists(st.integers(-3, 2**40), max_size=4) | ANYTHING | real_arrays(0, 1),
       alpha=st.floats(0.5, 3.0) | ANYTHING, symbols=st.integers(-1, 2**20) | ANYTHING)
def test_ideal_codelengths(index, alpha, symbols):
    ok, bits = outcome(lambda: entropy.zipf_bits(index, alpha))
    if ok:
        assert np.all(np.isfinite(np.asarray(bits))) and np.all(np.asarray(bits) >= 0)
    for fn in (entropy.elias_gamma_bits, entropy.elias_delta_bits):
        ok, bits = outcome(lambda fn=fn: fn(index))
        if ok:
            assert np.all(np.asarray(bits) >= 1)
    ok, bits = outcome(lambda: entropy.uniform_bits(symbols))
    if ok:
        np.testing.assert_allclose(bits, np.log2(np.asarray(symbols, np.float64)), rtol=1e-6, atol=1e-4)
    ok, alpha_ = outcome(lambda: entropy.zipf_exponent(alpha))  # alpha drawn here as a KL budget
    if ok:
        assert np.all((1.0 <= np.asarray(alpha_)) & (np.asarray(alpha_) <= 2.0))


@FEW
@given(indices=st.lists(st.integers(-2, 40), max_size=5) | ANYTHING,
       model=st.sampled_from(["zipf", "uniform", "categorical", None, "x"]))
def test_index_streams_round_trip(indices, model):
    models = {"zipf": entropy.ZipfModel(1.5), "uniform": entropy.UniformModel(32),
              "categorical": entropy.CategoricalModel(np.arange(1.0, 41.0))}
    chosen = models.get(model, model)
    ok, blob = outcome(lambda: entropy.encode_indices(indices, chosen))
    if ok:
        flat = np.asarray(indices, np.int64).reshape(-1)
        assert np.array_equal(entropy.decode_indices(blob, chosen, flat.size), flat)


@FEW
@given(split=st.sampled_from(["train", "test", "valid", None, 3, ["train"]]),
       dataset=st.sampled_from(["mnist", "fashion-mnist", "cifar", None, 1]),
       directory=st.sampled_from([3, 2.5, b"dir", object(), ["a"]]))
def test_data_loaders_refuse_bad_arguments(split, dataset, directory):
    # directory is never a path here, so every call is malformed and must be refused before any file is read
    raises_invalid(lambda: data.load_mnist(split, dataset=dataset, directory=directory))
    raises_invalid(lambda: data.load_cifar10(split, directory=directory))


# ------------------------------------------------------------------------------------------------
# Inside jit: bad values cannot raise, so the search stops at once and the status says why


@pytest.mark.parametrize(  # one compile per coder: PFR in the fast tier, the others slow (mutation runs pick them by id)
    "name", [n if n == "pfr" else pytest.param(n, marks=[pytest.mark.slow, pytest.mark.mutation]) for n in NAMES]
)
def test_invalid_values_under_jit_stop_at_once_with_a_status(name):
    d = CODERS[name][1]
    prior = gauss(d, 0.0, 1.0)
    encode = jax.jit(coder(name).encode)
    # (loc, scale, expected status); built under jit, so the constructor's checks cannot run
    cases = {
        "nan loc": (jnp.full(d, jnp.nan), jnp.full(d, 0.5), INVALID_INPUT),
        "inf scale": (jnp.zeros(d), jnp.full(d, jnp.inf), INVALID_INPUT),
        "negative scale": (jnp.zeros(d), jnp.full(d, -0.5), INVALID_INPUT),
        "valid": (jnp.full(d, 0.2), jnp.full(d, 0.6), OK),
    }
    build = jax.jit(G)
    for label, (loc, scale, expected) in cases.items():
        code = encode(0, build(loc, scale), prior)
        assert int(np.max(np.asarray(code.status))) == expected, label
        if expected != OK:
            assert int(np.max(np.asarray(code.steps))) == 0, label
    if name in ("pfr", "orc", "mrc", "sp_pfr", "sp_orc"):  # the coders that take a uniform prior
        box = U(jnp.full(d, -1.0), jnp.full(d, 1.0))
        # a Gaussian target is never inside a box: refused from the types, also under jit
        raises_invalid(lambda: encode(0, gauss(d), box), "outside the prior's support", "D_KL[Q||P] = inf")
        # a box not inside the prior's box: only the values say so, so under jit the status does
        outside = encode(0, jax.jit(U)(jnp.full(d, 0.5), jnp.full(d, 1.5)), box)
        assert int(outside.status) == INVALID_INPUT and int(outside.steps) == 0
        inside = encode(0, jax.jit(U)(jnp.full(d, -0.5), jnp.full(d, 0.25)), box)
        assert int(inside.status) == OK and int(inside.steps) >= 1
    exact = name not in ("orc", "mrc", "sp_orc", "irec")  # the tree coders all need a bounded ratio
    wide = encode(0, gauss(d, 0.0, 1.5), prior)
    assert int(np.max(np.asarray(wide.status))) == (UNBOUNDED_RATIO if exact else OK)
