"""Shared randomness (golden values, key handling) and the exact arrival-time accumulator."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxrec
from jaxrec import InvalidArgumentError
from jaxrec.core import arrivals, prng


def test_golden_first_candidates():
    """Pins the candidate streams (archive format version 2): a change here breaks stored files.

    The streams are their words, pinned bit for bit, and so is everything computed from them at
    XLA's default optimization level (the full suite, CI).  Under the fast tier's LLVM -O0 (see
    conftest.py) the float32 results differ by what was measured there: the candidates (an inverse
    CDF) by up to 2 ulp, the encoder-only arrival increments ``ceil(-log(U) 2^24)`` by one grid unit.
    """
    default_level = "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", "")
    max_ulp, max_grid_units = (0, 0) if default_level else (2, 1)
    key = prng.as_key(20261124)
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(key)), [0, 20261124])
    ns = jnp.arange(3, dtype=jnp.int32)
    words = prng.counter_words(prng.candidate_stream(key), ns, 3)
    assert [hex(v) for v in np.asarray(words).T.ravel()] == [
        "0x86d9e775", "0xadf070d0", "0xf079634f", "0x732faab0", "0x4eb74582",
        "0x295447c", "0x671608fd", "0x69cf5323", "0xc437ddb4",
    ]  # fmt: skip
    gauss = prng.candidates(key, ns, jaxrec.DiagGaussian(jnp.zeros(3), jnp.ones(3)))
    pinned = np.uint32([
        0x3D897D82, 0x3EEEACBB, 0x3FC65162, 0xBE00D115, 0xBF00C444,
        0xC014ABAF, 0xBE7C5496, 0xBE60450E, 0x3F3A3005,
    ]).view(np.float32)  # fmt: skip
    np.testing.assert_array_max_ulp(np.asarray(gauss).ravel(), pinned, maxulp=max_ulp)
    unif = prng.candidates(key, ns[:2], jaxrec.Uniform(jnp.zeros(2), jnp.ones(2)))
    pinned = np.uint32([0x3F06D9E8, 0x3F2DF070, 0x3EE65F55, 0x3E9D6E8B]).view(np.float32)
    np.testing.assert_array_max_ulp(np.asarray(unif).ravel(), pinned, maxulp=max_ulp)
    private = prng.counter_words(prng.private_stream(key), ns, 1)
    assert [hex(v) for v in np.asarray(private).ravel()] == ["0x1f987cfe", "0xe64025f8", "0x8c95a651"]
    increments = np.asarray(arrivals.exponential_increments(key, ns), np.int64)
    np.testing.assert_allclose(increments, [35100584, 1778541, 10055729], rtol=0, atol=max_grid_units)


def test_threefry_matches_jax_primitive():
    """The unrolled hash is JAX's threefry2x32, bit for bit (also with one key per item)."""
    from jax.extend.random import threefry2x32_p

    rng = np.random.default_rng(0)
    k = jnp.asarray(rng.integers(0, 2**32, (2, 1000), dtype=np.uint64).astype(np.uint32))
    x = jnp.asarray(rng.integers(0, 2**32, (2, 1000), dtype=np.uint64).astype(np.uint32))
    for k0, k1 in [(k[0, 0], k[1, 0]), (k[0], k[1])]:
        want = threefry2x32_p.bind(*jnp.broadcast_arrays(k0, k1, x[0], x[1]))
        got = jax.jit(prng.threefry2x32)(k0, k1, x[0], x[1])
        for g, w in zip(got, want):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@pytest.mark.parametrize("width", [1, 2, 5, 8, 9, 17, 64])
def test_counter_words_layout_and_sum_over_words(width):
    """Word ``w`` of item ``n`` is output ``w mod 2`` of ``threefry(stream, (w // 2, n))`` whatever
    the width (a padded item draws the same words for its first coordinates); the fused sum over
    words (loop path for widths above 8) adds the same words."""
    stream = prng.candidate_stream(prng.as_key(5))
    ns = jnp.array([0, 7, 3, 2**31 - 1], jnp.int32)
    words = np.asarray(prng.counter_words(stream, ns, width))
    for w in range(width):
        y = prng.threefry2x32(stream[0], stream[1], jnp.uint32(w // 2), ns.astype(jnp.uint32))[w % 2]
        np.testing.assert_array_equal(words[w], np.asarray(y))
    np.testing.assert_array_equal(np.asarray(prng.counter_words(stream, ns, width + 3))[:width], words)
    weights = jnp.arange(1, width + 1, dtype=jnp.float32)
    term = lambda w, y: weights[w] * (y >> 20).astype(jnp.float32)  # exact in float32
    total = jax.jit(prng.sum_over_words, static_argnums=2, static_argnames="term")(stream, ns, width, term=term)
    np.testing.assert_array_equal(np.asarray(total), (np.asarray(weights)[:, None] * (words >> 20)).sum(0))


def test_candidate_stream_marginals_and_independence():
    """Every coordinate of the Gaussian and uniform streams has the right law (KS over 20000
    candidates), and the two words of one hash (coordinates 2h and 2h + 1) are uncorrelated."""
    key = prng.as_key(8)
    ns = jnp.arange(20_000, dtype=jnp.int32)
    z = np.asarray(prng.candidates(key, ns, jaxrec.DiagGaussian(jnp.zeros(5), jnp.ones(5))), np.float64)
    u = np.asarray(prng.candidates(key, ns, jaxrec.Uniform(jnp.zeros(3), jnp.ones(3)), stream=1), np.float64)
    assert min(stats.kstest(z[:, d], "norm").pvalue for d in range(5)) > 1e-3
    assert min(stats.kstest(u[:, d], "uniform").pvalue for d in range(3)) > 1e-3
    for a, b in [(0, 1), (2, 3), (0, 2)]:
        assert abs(stats.spearmanr(z[:, a], z[:, b]).statistic) < 4 / np.sqrt(len(ns))


@pytest.mark.slow  # 6 s cold in the fast tier (2 cores)
@pytest.mark.mutation
def test_stream_log_ratio_matches_the_candidates():
    """The fused log ratio a search uses equals ``log_ratio`` at the materialized candidates, up
    to float rounding, for Gaussian and uniform pairs and widths on both code paths."""
    stream = prng.candidate_stream(prng.as_key(4))
    ns = jnp.arange(300, dtype=jnp.int32)
    for dim in (1, 11):
        pairs = [
            (jaxrec.DiagGaussian(jnp.linspace(-1, 1, dim), jnp.full(dim, 0.4)), jaxrec.DiagGaussian(jnp.zeros(dim), jnp.ones(dim))),
            (jaxrec.Uniform(jnp.zeros(dim), jnp.full(dim, 2.0)), jaxrec.DiagGaussian(jnp.ones(dim), jnp.full(dim, 2.0))),
        ]
        for target, prior in pairs:
            fused = jax.jit(prng.stream_log_ratio)(stream, ns, target, prior)
            xs = prng.stream_candidates(stream, ns, prior).T
            np.testing.assert_allclose(fused, jaxrec.log_ratio(target, prior, xs), rtol=1e-5, atol=1e-4)


def test_exponential_increments_are_exponential():
    """The one-word increments ``ceil(-log U 2^24)`` follow Exp(1) on the 2^-24 grid (KS), and the
    arrival words are independent of the candidate words of the same index."""
    key = prng.as_key(3)
    ns = jnp.arange(50_000, dtype=jnp.int32)
    inc = np.asarray(arrivals.exponential_increments(key, ns), np.float64) / 2**24
    assert inc.min() > 0
    assert stats.kstest(inc, "expon").pvalue > 1e-3
    u = (np.asarray(prng.counter_words(prng.private_stream(key), ns, 1)[0]) >> 8) / 2**24
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
    one = jax.jit(prng.candidates)(key, jnp.array([57], jnp.int32), prior)[0]
    np.testing.assert_array_equal(many[57], one)
    shuffled = prng.candidates(key, jnp.array([99, 57, 3], jnp.int32), prior)
    np.testing.assert_array_equal(shuffled, many[jnp.array([99, 57, 3])])
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


def test_increments_at_the_ends_of_the_word_range():
    """``U = 1`` (top 24 bits all ones) gives ``E = 0``, rounded up to one tick so that ``T_n``
    strictly increases; the smallest ``U = 2^-24`` gives the largest increment
    ``ceil(24 ln 2 * 2^24)``, far below ``2^32``."""
    words = jnp.array([0xFFFFFFFF, 0xFFFFFF00, 0x000000FF, 0, 0x80000000], jnp.uint32)
    u = ((np.asarray(words) >> 8) + 1.0) * 2.0**-24
    expected = np.maximum(np.ceil(-np.log(u) * 2**24), 1)  # float64 agrees with float32 at these words
    assert expected[0] == expected[1] == 1 and expected[3] == np.ceil(24 * np.log(2) * 2**24) < 2**29
    np.testing.assert_array_equal(np.asarray(arrivals.increments_from_words(words)), expected)


def test_fold_in_keys_and_bin_streams_follow_their_documented_derivations():
    """The per-draw keys (AGRS, iREC), the tree-node keys (A*, branch-and-bound GPRS) and the
    space-partitioning bin streams, rebuilt from ``jax.random.fold_in`` and JAX's threefry primitive
    with the ASCII tags written out (a changed tag or derivation would break stored files)."""
    from jax.extend.random import threefry2x32_p

    fold, data = jax.random.fold_in, jax.random.key_data
    key = prng.as_key(20261124)
    cand, time, bins, tree = (int.from_bytes(tag, "big") for tag in (b"CAND", b"TIME", b"BINS", b"TREE"))
    big = jnp.uint32(0x80000001)  # above 2**31: folded in as uint32
    pairs = [
        (prng.candidate_key(key, big, stream=2), fold(fold(fold(key, cand), 2), big)),
        (prng.candidate_key(key, jnp.int32(5)), fold(fold(fold(key, cand), 0), 5)),
        (prng.arrival_key(key, jnp.int32(5), stream=3), fold(fold(fold(key, time), 3), 5)),
        (prng.arrival_key(key, big), fold(fold(fold(key, time), 0), big)),
        (prng.tree_node_key(key, jnp.int32(3), jnp.array([big, 6], jnp.uint32)), fold(fold(fold(fold(key, tree), 3), big), 6)),
        (prng.node_location_key(key), fold(key, cand)),
        (prng.node_private_key(key), fold(key, time)),
    ]
    for got, want in pairs:
        np.testing.assert_array_equal(np.asarray(data(got)), np.asarray(data(want)))
    np.testing.assert_array_equal(np.asarray(prng.private_stream(key, 4)), np.asarray(data(fold(fold(key, time), 4))))
    np.testing.assert_array_equal(np.asarray(prng.key_to_words(key)), [0, 20261124])
    s = np.asarray(data(fold(fold(key, bins), 0)))
    hi, lo = jnp.array([0, 1, 7], jnp.uint32), jnp.array([5, 5, 0xFFFFFFFF], jnp.uint32)
    want = threefry2x32_p.bind(*jnp.broadcast_arrays(jnp.uint32(s[0]), jnp.uint32(s[1]), hi, lo))
    np.testing.assert_array_equal(np.asarray(prng.bin_stream(key, hi, lo)), np.stack([np.asarray(w) for w in want], axis=-1))


@pytest.mark.parametrize("width", [5, 6])
def test_labelled_bin_streams_follow_their_documented_derivation(width):
    """SP-PFR's bin streams of format version 5: row keys ``k_h = threefry2x32(s, (h, 0))`` with ``s``
    the ``ROWS`` stream of the key, and word ``w`` of item ``n`` of the bin labelled ``b`` output
    ``w mod 2`` of ``threefry2x32(k_{w // 2}, (b, n))``, rebuilt with JAX's threefry primitive; the
    fused sum over the words and a per-item label agree with the words (odd and even widths)."""
    from jax.extend.random import threefry2x32_p

    key = prng.as_key(20261204)
    s = np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.fold_in(key, int.from_bytes(b"ROWS", "big")), 0)))
    rows = (width + 1) // 2
    keys = np.asarray(prng.bin_row_keys(key, rows))
    for h in range(rows):
        want = threefry2x32_p.bind(*jnp.broadcast_arrays(jnp.uint32(s[0]), jnp.uint32(s[1]), jnp.uint32(h), jnp.uint32(0)))
        np.testing.assert_array_equal(keys[h], [int(w) for w in want])
    labels, ns = jnp.array([3, 3, 0x7FFFFFF], jnp.uint32), jnp.array([0, 9, 9], jnp.int32)
    words = np.asarray(prng.counter_words(prng.LabelledStreams(jnp.asarray(keys), labels), ns, width))
    for i, (b, n) in enumerate(zip(np.asarray(labels), np.asarray(ns))):
        for w in range(width):
            row = threefry2x32_p.bind(*jnp.broadcast_arrays(*(jnp.uint32(v) for v in (*keys[w // 2], b, n))))
            assert words[w, i] == int(row[w % 2]), (i, w)
        one = prng.counter_words(prng.LabelledStreams(jnp.asarray(keys), labels[i]), ns[i : i + 1], width)[:, 0]
        np.testing.assert_array_equal(np.asarray(one), words[:, i])  # a scalar label: the decoder's form
    term = lambda w, x: (x >> 8).astype(jnp.float32) * (w + 1).astype(jnp.float32)
    fused = prng.sum_over_words(prng.LabelledStreams(jnp.asarray(keys), labels), ns, width, term)
    direct = sum(term(jnp.int32(w), jnp.asarray(words[w])) for w in range(width))
    np.testing.assert_allclose(np.asarray(fused), np.asarray(direct), rtol=1e-6)
    short = prng.LabelledStreams(jnp.asarray(keys[: rows - 1]), labels)  # one row key short: refused, not clamped
    for draw in (lambda: prng.counter_words(short, ns, width), lambda: prng.sum_over_words(short, ns, width, term)):
        with pytest.raises(InvalidArgumentError, match=f"^LabelledStreams hold {rows - 1} row keys, {width} words need {rows}(?![.0-9])"):
            draw()


def test_each_seed_form_is_accepted_in_range_and_refused_outside_it():
    """``as_key`` and ``as_keys`` on every form they take: Python, numpy 0-d and JAX seeds at 0 and
    at ``2**32 - 1``, traced seeds, key data; refusals name the problem (a numpy ``int64`` seed of
    ``2**32`` would wrap to 0 in JAX without x64; a bool or a numpy float is not a seed)."""
    data = lambda k: np.asarray(jax.random.key_data(k))
    for seed in (0, 100, 2**32 - 1):
        want = [0, seed]
        for form in (seed, np.array(seed), jnp.uint32(seed)):
            np.testing.assert_array_equal(data(prng.as_key(form)), want)
    np.testing.assert_array_equal(data(prng.as_key(jnp.int32(0))), [0, 0])
    np.testing.assert_array_equal(data(jax.jit(prng.as_key)(jnp.int32(7))), [0, 7])
    np.testing.assert_array_equal(data(prng.as_keys(np.array([0, 100]), 2)), [[0, 0], [0, 100]])
    np.testing.assert_array_equal(data(prng.as_keys(np.array([0, 2**32 - 1]), 2)), [[0, 0], [0, 2**32 - 1]])
    np.testing.assert_array_equal(data(prng.as_keys(jnp.array([0, 100]), 2)), [[0, 0], [0, 100]])
    np.testing.assert_array_equal(data(jax.jit(lambda s: prng.as_keys(s, 3))(jnp.arange(3))), [[0, 0], [0, 1], [0, 2]])
    key_data = jnp.array([[1, 2], [3, 4], [5, 6]], jnp.uint32)
    np.testing.assert_array_equal(data(prng.as_keys(key_data, 3)), np.asarray(key_data))
    for bad, match in [
        (True, "got True"), (np.float32(-1.0), r"got float32\[\]"), ("abc", "an int seed in"),
        (np.array(2**32), r"seeds must be in \[0, 2\*\*32\), got 4294967296"), (jnp.int32(-1), r"seed must be in \[0, 2\*\*32\)"),
    ]:
        with pytest.raises(InvalidArgumentError, match=match):
            prng.as_key(bad)
    with pytest.raises(InvalidArgumentError, match=r"keys: seeds must be in \[0, 2\*\*32\), got \[0, 4294967296\]"):
        prng.as_keys(np.array([0, 2**32]), 2)
    with pytest.raises(InvalidArgumentError, match="keys must be 3 keys"):
        prng.as_keys(5, 3)
    with pytest.raises(InvalidArgumentError, match=r"seeds must be in \[0, 2\*\*32\)"):
        prng.as_keys(jnp.array([0, -1]), 2)
    with jax.enable_x64(True):
        with pytest.raises(InvalidArgumentError, match="4294967296"):
            prng.as_key(jnp.asarray(2**32, jnp.int64))
        with pytest.raises(InvalidArgumentError, match="4294967296"):
            prng.as_keys(jnp.asarray([0, 2**32], jnp.int64), 2)
    key = prng.as_key(9)
    np.testing.assert_array_equal(np.asarray(prng.candidate_stream(key)), np.asarray(prng.candidate_stream(key, 0)))
    np.testing.assert_array_equal(np.asarray(prng.private_stream(key)), np.asarray(prng.private_stream(key, 0)))
    hi, lo = jnp.array([[0, 1], [2, 3]], jnp.uint32), jnp.array([[4, 5], [6, 7]], jnp.uint32)
    np.testing.assert_array_equal(np.asarray(prng.bin_stream(key, hi, lo))[1, 0], np.asarray(prng.bin_stream(key, hi[1, 0], lo[1, 0])))


@pytest.mark.parametrize("width", [1, 5, 10, 17])
def test_sum_over_words_passes_each_word_index_once(width):
    """``term`` gets every word index ``0 .. width - 1`` once, on both code paths and for the last
    word of an odd width (a term may use the index as a number, not only to index parameters)."""
    stream = prng.candidate_stream(prng.as_key(5))
    term = lambda w, y: (w + 1).astype(jnp.float32) * jnp.ones(y.shape, jnp.float32)
    total = jax.jit(prng.sum_over_words, static_argnums=2, static_argnames="term")(stream, jnp.arange(3), width, term=term)
    np.testing.assert_array_equal(np.asarray(total), np.full(3, width * (width + 1) / 2))
