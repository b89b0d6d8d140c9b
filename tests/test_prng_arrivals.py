"""Shared randomness (golden values, key handling) and the exact arrival-time accumulator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxrec
from jaxrec import InvalidArgumentError
from jaxrec.core import arrivals, prng


def test_golden_first_candidates():
    """Pins the candidate streams: a JAX upgrade that changes them must fail loudly."""
    key = prng.as_key(20261124)
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(key)), [0, 20261124])
    ns = jnp.arange(3, dtype=jnp.int32)
    gauss = prng.candidates(key, ns, jaxrec.DiagGaussian(jnp.zeros(3), jnp.ones(3)))
    assert [hex(v) for v in np.asarray(gauss).view(np.uint32).ravel()] == [
        "0xbf158f3c", "0x3f1a6bb6", "0x3eddec66", "0xbf1e2990", "0xbed8c6e2",
        "0x3f15e86d", "0x3e1af58b", "0x3f958aff", "0xbeb7849b",
    ]  # fmt: skip
    unif = prng.candidates(key, ns[:2], jaxrec.Uniform(jnp.zeros(2), jnp.ones(2)))
    assert [hex(v) for v in np.asarray(unif).view(np.uint32).ravel()] == [
        "0x3e8f1f80", "0x3f3a107e", "0x3e8964b4", "0x3eac08c8",
    ]  # fmt: skip
    np.testing.assert_array_equal(np.asarray(arrivals.exponential_increments(key, ns)), [35100584, 1778541, 10055729])


def test_exponential_increments_are_exponential():
    """The one-hash increments ``ceil(-log U 2^24)`` follow Exp(1) on the 2^-24 grid (KS), and the
    arrival words are independent of the candidate words of the same index."""
    key = prng.as_key(3)
    ns = jnp.arange(50_000, dtype=jnp.int32)
    inc = np.asarray(arrivals.exponential_increments(key, ns), np.float64) / 2**24
    assert inc.min() > 0
    assert stats.kstest(inc, "expon").pvalue > 1e-3
    u = (np.asarray(prng.arrival_bits(key, ns)) >> 8) / 2**24
    z = np.asarray(prng.candidates(key, ns, jaxrec.DiagGaussian(jnp.zeros(1), jnp.ones(1))))[:, 0]
    assert abs(stats.spearmanr(u, z).statistic) < 4 / np.sqrt(len(ns))


def test_as_key_accepts_seeds_keys_and_key_data_and_refuses_the_rest():
    k = prng.as_key(7)
    assert prng.as_key(k) is k
    same = prng.as_key(jnp.asarray(prng.key_to_words(k)))
    np.testing.assert_array_equal(jax.random.key_data(same), jax.random.key_data(k))
    for bad in [-1, 2**32, 2**40]:
        with pytest.raises(InvalidArgumentError, match=str(bad)):
            prng.as_key(bad)
    with pytest.raises(InvalidArgumentError, match="threefry2x32"):
        prng.as_key(jax.random.key(0, impl="rbg"))
    with pytest.raises(InvalidArgumentError, match="float32"):
        prng.as_key(jnp.zeros(2))


def test_candidates_are_pure_functions_of_the_index():
    key = prng.as_key(3)
    prior = jaxrec.DiagGaussian(jnp.zeros(4), jnp.ones(4))
    many = prng.candidates(key, jnp.arange(100, dtype=jnp.int32), prior)
    one = prior.sample(prng.candidate_key(key, jnp.int32(57)))
    np.testing.assert_array_equal(many[57], one)
    other_stream = prng.candidates(key, jnp.arange(100, dtype=jnp.int32), prior, stream=1)
    assert not np.any(np.asarray(other_stream == many))


def _accumulate_in_chunks(increments, chunk):
    base, out = arrivals.zero_time(), []
    for start in range(0, len(increments), chunk):
        limbs, base = arrivals.accumulate(base, increments[start : start + chunk])
        out.append(limbs)
    return np.concatenate(out)


def test_arrival_times_are_exact_and_chunk_invariant():
    key = prng.as_key(11)
    inc = arrivals.exponential_increments(key, jnp.arange(4096, dtype=jnp.int32))
    a, b = _accumulate_in_chunks(inc, 64), _accumulate_in_chunks(inc, 1024)
    np.testing.assert_array_equal(a, b)
    exact = np.cumsum(np.asarray(inc, dtype=np.uint64))
    limbs = a.astype(np.uint64)
    recombined = limbs[:, 0] + (limbs[:, 1] << 16) + (limbs[:, 2] << 32) + (limbs[:, 3] << 48)
    np.testing.assert_array_equal(recombined, exact)


def test_arrival_times_stay_accurate_past_2_pow_24():
    """Float32 accumulation would stall at 2^24; the fixed-point clock keeps every increment."""
    start = 3 * 2**24 + 0.25  # in time units
    start_ticks = int(start * 2**24)
    base = jnp.array([(start_ticks >> (16 * i)) & 0xFFFF for i in range(4)], jnp.uint32)
    inc = arrivals.exponential_increments(prng.as_key(5), jnp.arange(1000, dtype=jnp.int32))
    limbs, _ = arrivals.accumulate(base, inc)
    t32 = np.asarray(arrivals.to_float(limbs, jnp.float32), dtype=np.float64)
    exact = (start_ticks + np.cumsum(np.asarray(inc, dtype=np.float64))) / 2**24
    assert np.all(np.diff(exact) > 0)
    np.testing.assert_allclose(t32, exact, rtol=1e-7)  # float32 rounding of the value only
    with jax.enable_x64(True):
        t64 = np.asarray(arrivals.to_float(limbs, jnp.float64))
    np.testing.assert_array_equal(t64, exact)
