"""Compile once (issue 10, item 4): a second call with the same static configuration and shapes
neither retraces nor recompiles -- eager ``coder.encode`` / ``coder.decode``, ``Coder.encode_batch``, ``jaxrec.encode_batch`` (also its
``vmap`` fallback), ``compress*`` and ``decompress*``, also with a fresh coder object and a fresh
``functools.partial`` for space-partitioning coders.

Traces and compiles are counted with JAX's monitoring events.
"""

import collections
import contextlib
import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import monitoring
from test_codec import GaussianChannel

import jaxrec
from jaxrec import codec as jcodec

_COUNTS = collections.Counter()


def _listener(name: str, duration: float, **_: object) -> None:
    if name.endswith("jaxpr_trace_duration"):
        _COUNTS["traces"] += 1
    elif name.endswith("backend_compile_duration"):
        _COUNTS["compiles"] += 1


monitoring.register_event_duration_secs_listener(_listener)


@contextlib.contextmanager
def counting():
    _COUNTS.clear()
    yield _COUNTS


def assert_compiled_once(call):
    """The first call may trace and compile; the second, with a fresh equal configuration, neither."""
    call()
    with counting() as counts:
        call()
    assert counts["traces"] == 0 and counts["compiles"] == 0, dict(counts)


B, D = 64, 5
RNG = np.random.default_rng(0)
TARGETS = jaxrec.DiagGaussian(jnp.asarray(0.5 * RNG.normal(size=(B, D)), jnp.float32), jnp.full((B, D), 0.4))
PRIOR = jaxrec.DiagGaussian(jnp.zeros(D), jnp.ones(D))


@pytest.mark.slow  # 9 s in the fast tier (2 idle cores)
def test_coder_encode_batch_compiles_once():
    coder = jaxrec.pfr(chunk_size=64)
    assert_compiled_once(lambda: jax.block_until_ready(coder.encode_batch(jnp.arange(B), TARGETS, PRIOR)))
    assert_compiled_once(lambda: jax.block_until_ready(jaxrec.encode_batch(coder, jnp.arange(B), TARGETS, PRIOR)))


def test_vmap_fallback_compiles_once():
    """A coder without a batch encoder runs jit(vmap(encode)), cached per coder."""
    coder = jaxrec.orc(16)
    plain = coder._replace(encode_batch=None)
    assert_compiled_once(lambda: jax.block_until_ready(jaxrec.encode_batch(plain, jnp.arange(B), TARGETS, PRIOR)))


@pytest.mark.slow  # 21 s cold in the fast tier (two codec programs)
@pytest.mark.parametrize("sp", [False, True], ids=["pfr", "sp_orc"])
def test_compress_and_decompress_compile_once(sp):
    codec = GaussianChannel(D)
    xs = jnp.stack([TARGETS.loc, TARGETS.scale], axis=1)[:16]
    plan = jaxrec.plan_blocks(np.full(D, 1.0), 3.0, key=0)
    if sp:
        plan = plan.with_partitions(lambda dims, size: jaxrec.Partition(np.where(np.arange(size) < dims.size, 2, 1)))
        coder = lambda: functools.partial(jaxrec.sp_orc, num_samples=16)  # a new partial every call
    else:
        coder = lambda: jaxrec.pfr(chunk_size=64)  # a new coder object every call
    assert_compiled_once(lambda: jaxrec.compress_batch(codec, xs, key=1, coder=coder(), plan=plan))
    data = jaxrec.compress_batch(codec, xs, key=1, coder=coder(), plan=plan)
    assert_compiled_once(lambda: jaxrec.decompress_batch(codec, data, plan=plan))
    assert_compiled_once(lambda: jaxrec.decompress_batch(codec, data, plan=plan, items=[3, 9]))
    assert_compiled_once(lambda: jaxrec.compress(codec, xs[0], key=1, coder=coder(), plan=plan))
    one = jaxrec.compress(codec, xs[0], key=1, coder=coder(), plan=plan)
    assert_compiled_once(lambda: jaxrec.decompress(codec, one, plan=plan))
    # another key is data, not configuration (a plain-Python codec is a static argument: keep the object)
    assert_compiled_once(lambda: jcodec.compress_report(codec, xs, key=2, coder=coder(), plan=plan))


@pytest.mark.slow  # 9 s in the fast tier (2 idle cores)
def test_array_pytree_codecs_compile_once():
    """Flax NNX codecs are jit arguments: a new module of the same structure reuses the compiled code."""
    from flax import nnx
    from test_codec import ToyLosslessVAE

    plan = jaxrec.plan_blocks(np.full(12, 1.0), 4.0, key=0)
    xs = jax.random.randint(jax.random.key(3), (4, 10), 0, 5)
    data = jaxrec.compress_batch(ToyLosslessVAE(rngs=nnx.Rngs(0), levels=5), xs, key=0, coder=jaxrec.pfr(), plan=plan)
    assert_compiled_once(lambda: jaxrec.decompress_batch(ToyLosslessVAE(rngs=nnx.Rngs(0), levels=5), data, plan=plan))


@pytest.mark.parametrize("make", [lambda: jaxrec.pfr(chunk_size=64), pytest.param(lambda: jaxrec.astar(), marks=pytest.mark.slow)], ids=["pfr", "astar"])
def test_eager_encode_and_decode_compile_once(make):
    """``coder.encode`` / ``coder.decode`` called eagerly in a loop: the search compiles once per coder
    (it used to recompile its while loop on every call, 1-3 s each)."""
    coder = make()
    target, prior = (jax.tree.map(lambda a: a[0], TARGETS), PRIOR) if coder.spec.name == "pfr" else (
        jaxrec.DiagGaussian(0.9, 0.45), jaxrec.DiagGaussian(0.4, 1.5))
    seeds = iter(range(100))

    def round_trip():
        seed = next(seeds)  # a new key each call: compiled code is reused, not results
        jax.block_until_ready(coder.decode(seed, coder.encode(seed, target, prior), prior))

    assert_compiled_once(round_trip)


def test_factories_return_one_coder_per_configuration():
    """``jaxrec.pfr().encode(...)`` in a loop compiles once: equal arguments give the same coder
    (keyed with their types, so a refused ``True`` is not answered by a cached ``1``); unhashable
    arguments build a new coder."""
    assert jaxrec.pfr(chunk_size=64) is jaxrec.pfr(chunk_size=64)
    assert jaxrec.pfr(chunk_size=64) is not jaxrec.pfr(chunk_size=128)
    assert jaxrec.orc(16) is jaxrec.orc(16) and jaxrec.factorized(jaxrec.orc(16)) is jaxrec.factorized(jaxrec.orc(16))
    assert jaxrec.irec(8, 2, variance_fractions=[1.0, 2.0]) is not jaxrec.irec(8, 2, variance_fractions=[1.0, 2.0])
    assert jaxrec.pfr.__name__ == "pfr" and "chunk_size" in str(inspect.signature(jaxrec.pfr))
    part = jaxrec.Partition(np.array([2, 2]))
    before = jaxrec.sp_orc.cache_info()
    jax.eval_shape(lambda p: jaxrec.sp_orc(p, 8) and p.num_intervals, part)  # a traced partition: built, not kept
    assert jaxrec.sp_orc.cache_info().currsize == before.currsize
    jaxrec.grs(chunk_size=1)
    with pytest.raises(jaxrec.InvalidArgumentError, match="chunk_size"):
        jaxrec.grs(chunk_size=True)
    target = jax.tree.map(lambda a: a[0], TARGETS)
    seeds = iter(range(100))
    assert_compiled_once(lambda: jax.block_until_ready(jaxrec.pfr(chunk_size=64).encode(next(seeds), target, PRIOR).index))
