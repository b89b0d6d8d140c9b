"""Partitions: equal-mass grids, tail-accurate in-bin sampling, bit allocation, bin weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import jaxrec
from jaxrec.coders.sp import partition as partition_lib
from jaxrec.coders.sp.partition import (
    Partition,
    allocate_bits,
    partition_from_mi,
    sample_bins,
)
from jaxrec.core.distributions import interval_log_sup_ratio
from jaxrec.core.errors import InvalidArgumentError

LN2 = np.log(2.0)
# Jitted once per module (the weight policy is static).
axis_tables = jax.jit(partition_lib.axis_tables, static_argnums=3)
reweighted_dinf = jax.jit(partition_lib.reweighted_dinf, static_argnums=3)
reweighted_kl = jax.jit(partition_lib.reweighted_kl, static_argnums=3)


def _std_normal(d, dtype=jnp.float32):
    return jaxrec.DiagGaussian(jnp.zeros(d, dtype), jnp.ones(d, dtype))


# ------------------------------------------------------------------------------------------------
# Grid


def test_edges_have_equal_prior_mass_in_both_tails():
    prior = jaxrec.DiagGaussian(jnp.array([1.0, -2.0]), jnp.array([2.0, 0.5]))
    part = Partition(np.array([1024, 3]))
    edges = np.asarray(part.edges(prior), np.float64)
    assert edges.shape == (2, 1025)
    z = (edges - np.array([[1.0], [-2.0]])) / np.array([[2.0], [0.5]])
    k = np.arange(1025)
    # Axis 0: log CDF below the median, log SF above it, both to float32 accuracy.
    lower, upper = k <= 512, k >= 512
    np.testing.assert_allclose(special.log_ndtr(z[0, lower][1:]), np.log(k[lower][1:] / 1024), rtol=1e-5)
    np.testing.assert_allclose(special.log_ndtr(-z[0, upper][:-1]), np.log((1024 - k[upper][:-1]) / 1024), rtol=1e-5)
    assert z[0, 0] == -np.inf and z[0, 1024] == np.inf
    np.testing.assert_allclose(special.ndtr(z[1, :4]), [0, 1 / 3, 2 / 3, 1], atol=1e-6)
    assert np.all(np.isinf(edges[1, 4:]))  # padding


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("num, k", [(2**20, 0), (2**20, 2**20 - 1), (2**30, 0), (2**30, 2**30 - 1), (5, 2), (1, 0)])
def test_sample_in_bin_is_the_truncated_prior_far_in_the_tails(dtype, num, k):
    """J * P(x < X | X in bin) - k must be Uniform(0, 1): checked in float64 with scipy's log_ndtr."""
    with jax.enable_x64(dtype == jnp.float64):
        prior = _std_normal(1, dtype)
        part = Partition(np.array([num]))
        bits = jax.random.bits(jax.random.key(1), (5000, 1), jnp.uint32)
        bins = jnp.full((5000, 1), k, jnp.int32)
        xs = np.asarray(jax.jit(jax.vmap(lambda b, u: part.sample_in_bin(prior, b, u)))(bins, bits), np.float64)[:, 0]
        assert np.all(np.isfinite(xs))
    # The bin's edges (part.edges would build the whole 2^30-entry table).
    lo, hi = (stats.norm.ppf(i / num) if 2 * i <= num else stats.norm.isf((num - i) / num) for i in (k, k + 1))
    assert np.all(xs >= lo - 1e-6 * (1 + abs(xs))) and np.all(xs <= hi + 1e-6 * (1 + abs(xs)))
    # Position inside the bin in probability units, from whichever tail is accurate.
    lower_half = 2 * k + 1 <= num
    if lower_half:
        pos = np.exp(special.log_ndtr(xs) + np.log(num)) - k
    else:
        pos = (num - k) - np.exp(special.log_ndtr(-xs) + np.log(num))
    pos = np.clip(pos, 0.0, 1.0)
    assert stats.kstest(pos, "uniform").pvalue > 1e-3


def test_sample_in_bin_reaches_the_float32_far_tail():
    prior = _std_normal(1)
    part = Partition(np.array([2**30]))
    x_low = part.sample_in_bin(prior, jnp.array([0]), jnp.array([0], jnp.uint32))
    x_high = part.sample_in_bin(prior, jnp.array([2**30 - 1]), jnp.array([2**32 - 1], jnp.uint32))
    # u = 2^-33 in a bin of mass 2^-30: P-quantile 2^-63, z = -9.37 (naive float32 inversion stops near 5.4).
    np.testing.assert_allclose(float(x_low[0]), stats.norm.ppf(2.0**-63), rtol=1e-4)
    np.testing.assert_allclose(float(x_high[0]), -stats.norm.ppf(2.0**-63), rtol=1e-4)


def test_stream_words_pack_the_multi_index_injectively():
    counts = np.array([3, 2**20, 1, 2**30, 7, 2**9])  # 2 + 20 + 0 + 30 + 3 + 9 = 64 bits
    part = Partition(counts)
    rng = np.random.default_rng(0)
    bins = np.stack([rng.integers(0, c, 2000) for c in counts], axis=-1)
    hi, lo = part.stream_words(jnp.asarray(bins, jnp.int32))
    widths = [int(c - 1).bit_length() for c in counts]
    offsets = np.cumsum([0] + widths[:-1])
    packed = [sum(int(b) << int(o) for b, o in zip(row, offsets)) for row in bins]
    got = [(int(h) << 32) | int(l) for h, l in zip(np.asarray(hi), np.asarray(lo))]
    assert got == packed


@pytest.mark.parametrize("counts, max_intervals, bound", [
    ([3, 2**20, 1, 2**30, 7, 2**9], None, 180),  # 64 packed bits: the spill path, unrolled
    ([2] * 25, None, 25),  # 32 bits or fewer for every partition of this shape: no spill, a loop over the axes
    ([5, 1, 3], 8, 9),  # no spill, unrolled
    ([2] * 17 + [4], 4, 36),  # the spill path in a loop (the bound is over 32 bits, this grid's 19 under)
    ([8] * 11, None, 33),  # one bit past 32: the spill path, and the bins of the last field do spill
])
def test_pack_columns_equals_stream_words_and_the_packed_bound_is_static(counts, max_intervals, bound):
    """:meth:`Partition.pack_columns` of axis-major bins ``(D, K)`` gives :meth:`stream_words` of the
    transpose on both paths (``packed_bits_bound <= 32``: ``hi = 0``; else the spill), unrolled and in
    a loop over more than ``UNROLLED_AXES`` axes; ``packed_bits_bound = D ceil(log2 max_intervals)``
    is the same for a traced partition."""
    part = Partition(np.array(counts), max_intervals)
    assert part.packed_bits_bound == bound
    assert jax.jit(lambda p: jnp.int32(p.packed_bits_bound))(part) == bound
    rng = np.random.default_rng(len(counts))
    bins = jnp.asarray(np.stack([rng.integers(0, c, 500) for c in counts]), jnp.int32)  # (D, K)
    want = part.stream_words(bins.T)
    for got in (part.pack_columns(bins), jax.jit(lambda p, b: p.pack_columns(b))(part, bins)):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_drawn_axes_stop_after_the_last_split_axis_and_skipping_the_rest_draws_the_same_bins():
    """:meth:`Partition.drawn_axes`: one past the last axis with ``J_d > 1`` for concrete counts
    (0 for a single bin), ``D`` when traced; :func:`sample_bins` from the words of those axes alone
    gives the bins of all axes (the axes past them pick 0)."""
    assert [Partition(np.array(c)).drawn_axes() for c in ([1, 4, 1, 2, 1, 1], [1, 1], [3], [2, 1, 20])] == [4, 0, 1, 3]
    assert jax.jit(lambda p: jnp.int32(p.drawn_axes()))(Partition(np.array([2, 1, 1]))) == 3
    for counts in ([1, 4, 1, 2, 1, 1], [2, 1, 20, 1], [1, 1, 1]):
        part = Partition(np.array(counts))
        target = jaxrec.DiagGaussian(jnp.linspace(-0.5, 0.5, len(counts)), jnp.full(len(counts), 0.5))
        tables = axis_tables(target, _std_normal(len(counts)), part, "sup_ratio")
        drawn = part.drawn_axes()
        words = jax.random.bits(jax.random.key(3), (partition_lib.draw_words(len(counts), part.max_intervals), 2000), jnp.uint32)
        skipped = sample_bins(tables, words[: partition_lib.draw_words(drawn, part.max_intervals)], drawn)
        np.testing.assert_array_equal(np.asarray(skipped), np.asarray(sample_bins(tables, words)))
        assert np.all(np.asarray(skipped)[drawn:] == 0) and np.asarray(skipped).shape == (len(counts), 2000)


@pytest.mark.parametrize("num_axes", [6, 40])  # unrolled, and a fori_loop over the axes (> UNROLLED_AXES)
def test_log_scaled_bin_weights_follow_the_definition(num_axes):
    """``log(J pi_j)`` of a chunk's axis-major bins ``(D, K)`` is the sum over axes of
    ``log J_d + log pi_{d, k_d}`` (float64 reference), for axes looked up by selects (2 intervals)
    and by a gather (20 > SMALL_AXIS intervals), summed unrolled and in a loop."""
    assert partition_lib.SMALL_AXIS < 20 and 6 <= partition_lib.UNROLLED_AXES < 40
    rng = np.random.default_rng(num_axes)
    phase = np.arange(num_axes) % 8
    counts = np.where(phase == 0, 20, np.where(phase <= 3, 2, 1))  # at most 64 packed bits
    part = Partition(counts)
    bins = np.stack([rng.integers(0, c, 300) for c in counts])  # (D, K)
    target = jaxrec.DiagGaussian(jnp.asarray(rng.normal(size=num_axes) * 0.3, jnp.float32), jnp.full(num_axes, 0.6))
    tables = axis_tables(target, _std_normal(num_axes), part, "q_mass")
    got = jax.jit(partition_lib.log_scaled_bin_weights)(tables, part, jnp.asarray(bins, jnp.int32))
    log_w = np.asarray(tables.log_weight, np.float64)
    want = sum(np.log(counts[d]) + log_w[d, bins[d]] for d in range(num_axes))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-5)


def test_partition_validation():
    with pytest.raises(InvalidArgumentError, match="64"):
        Partition(np.array([2**30, 2**30, 2**10]))
    with pytest.raises(InvalidArgumentError, match="num_intervals"):
        Partition(np.array([0, 4]))
    with pytest.raises(InvalidArgumentError, match="num_intervals"):
        Partition(np.array([2.0, 4.0]))
    with pytest.raises(InvalidArgumentError, match="max_intervals"):
        Partition(np.array([8, 4]), max_intervals=4)
    part = Partition.from_bits([3, 0, 2], max_intervals=16)
    np.testing.assert_array_equal(part.num_intervals, [8, 1, 4])
    assert part.max_intervals == 16 and float(part.log2_num_bins) == 5.0
    leaves, treedef = jax.tree.flatten(part)
    assert len(leaves) == 1 and jax.tree.unflatten(treedef, leaves).max_intervals == 16



def test_partition_bounds_are_exact_and_each_defect_is_named():
    """The per-axis range ``[1, 2^30]``, the 64-bit packing limit and ``max_intervals >= max J_d`` are
    accepted exactly at their ends and refused one past them, each with its own message; traced
    counts need an int array and an explicit ``max_intervals`` (coders/sp/partition mutation
    survivors: only ``match="num_intervals"`` was asserted)."""
    assert int(Partition(np.array([2**30])).num_intervals[0]) == 2**30
    with pytest.raises(InvalidArgumentError, match=r"num_intervals must lie in \[1, 1073741824\], got 1073741825 at index 1"):
        Partition(np.array([2, 2**30 + 1]))
    with pytest.raises(InvalidArgumentError, match=r"num_intervals must lie in \[1, 1073741824\], got 0 at index 0"):
        Partition(np.array([0, 4]))
    for bad in ([[1, 2], [3]], np.array([], np.int32), np.array([[2, 2]]), np.array([True, False]), None):
        with pytest.raises(InvalidArgumentError, match="num_intervals must be a non-empty 1-D int array"):
            Partition(bad)
    np.testing.assert_array_equal(Partition(np.array([5, 1], np.uint8)).num_intervals, [5, 1])
    # packing: 30 + 30 + 4 = 64 bits fit; J = 2^4 + 1 needs 5 bits for that axis
    assert Partition(np.array([2**30, 2**30, 16])).max_intervals == 2**30
    with pytest.raises(InvalidArgumentError, match=r"sum ceil\(log2 J_d\) = 65 > 64 bits"):
        Partition(np.array([2**30, 2**30, 17]))
    assert Partition(np.array([8, 4]), max_intervals=8).max_intervals == 8
    with pytest.raises(InvalidArgumentError, match="max_intervals must be"):
        Partition(np.array([8, 4]), max_intervals=7)
    np.testing.assert_array_equal(Partition.from_bits([30, 0]).num_intervals, [2**30, 1])
    with pytest.raises(InvalidArgumentError, match=r"bits must lie in \[0, 30\], got 31 at index 0"):
        Partition.from_bits([31])
    with pytest.raises(InvalidArgumentError, match=r"bits must lie in \[0, 30\], got -1 at index 1"):
        Partition.from_bits([2, -1])
    # traced counts (a partition built inside jit): checked for type here, for range by Partition.valid
    traced_counts = jax.jit(lambda c: Partition(c, max_intervals=4).num_intervals)
    np.testing.assert_array_equal(traced_counts(jnp.array([4, 2], jnp.int32)), [4, 2])
    for bad in (jnp.array([4.0, 2.0]), jnp.int32(4)):
        with pytest.raises(InvalidArgumentError, match=r"num_intervals must be an int array \(\.\.\., D\)"):
            traced_counts(bad)
    for max_intervals in (None, True, 4.0):
        with pytest.raises(InvalidArgumentError, match=r"^max_intervals must be given \(an int\) when num_intervals is traced"):
            jax.jit(lambda c, m=max_intervals: Partition(c, max_intervals=m).num_intervals)(jnp.array([4, 2]))


# ------------------------------------------------------------------------------------------------
# Bits per axis


def test_allocate_bits_mi_is_proportional_and_skips_uninformative_axes():
    mi = np.array([4.0, 0.0, 2.0, 2.0, 0.01])
    bits = allocate_bits(mi, 16)
    assert bits.sum() == 16
    np.testing.assert_array_equal(bits, [8, 0, 4, 4, 0])
    odd = allocate_bits(np.array([1.0, 1.0, 1.0]), 7)
    assert odd.sum() == 7 and odd.max() - odd.min() == 1
    assert allocate_bits(mi, 0).sum() == 0


def test_allocate_bits_random_strategies():
    mi = np.array([0.0, 3.0, 3.0, 0.0, 3.0])
    rand = allocate_bits(mi, 40, "random", seed=3)
    assert rand.sum() == 40 and (rand[[0, 3]] > 0).any()
    np.testing.assert_array_equal(rand, allocate_bits(mi, 40, "random", seed=3))
    assert not np.array_equal(rand, allocate_bits(mi, 40, "random", seed=4))
    informative = allocate_bits(mi, 40, "random_informative", seed=3)
    assert informative.sum() == 40 and informative[0] == 0 and informative[3] == 0
    part = partition_from_mi(mi, 12, "mi")
    np.testing.assert_array_equal(part.num_intervals, [1, 16, 16, 1, 16])


def test_allocate_bits_validation():
    with pytest.raises(InvalidArgumentError, match="strategy"):
        allocate_bits([1.0, 2.0], 3, "greedy")
    # anchored: each message starts with the argument's own name
    with pytest.raises(InvalidArgumentError, match="^total_bits must be an int >= 0, got -1$"):
        allocate_bits([1.0, 2.0], -1)
    with pytest.raises(InvalidArgumentError, match="^seed must be an int >= 0, got -1$"):
        allocate_bits([1.0, 2.0], 3, "random", seed=-1)
    with pytest.raises(InvalidArgumentError, match="^informative_threshold must be a finite real number, got 'x'$"):
        allocate_bits([1.0, 2.0], 3, "random_informative", informative_threshold="x")
    with pytest.raises(InvalidArgumentError, match="eligible"):
        allocate_bits([0.0, 0.0], 3)
    with pytest.raises(InvalidArgumentError, match="eligible"):
        allocate_bits([1.0, 1.0], 61)
    with pytest.raises(InvalidArgumentError, match="mi_bits"):
        allocate_bits([1.0, np.nan], 3)


def test_allocate_bits_limits_defaults_and_messages():
    """Each limit at its end and one past it (30 bits per axis, the eligible-axis budget, the MI
    threshold itself counting as MI ~ 0), the default seed, and the messages that name each defect
    (coders/sp/partition mutation survivors)."""
    np.testing.assert_array_equal(allocate_bits([1.0], 30), [30])
    np.testing.assert_array_equal(allocate_bits([100.0, 1.0], 60), [30, 30])  # MI asks for 59 + 1: capped
    for strategy in ("random", "random_informative"):
        np.testing.assert_array_equal(allocate_bits([1.0, 1.0], 60, strategy, seed=5), [30, 30])
        np.testing.assert_array_equal(allocate_bits([1.0, 2.0, 3.0], 9, strategy), allocate_bits([1.0, 2.0, 3.0], 9, strategy, seed=0))
    mi = np.array([0.0, 1.0, 2.0])
    assert partition_from_mi(mi, 9, "random").num_intervals.tolist() == partition_from_mi(mi, 9, "random", seed=0).num_intervals.tolist()
    with pytest.raises(InvalidArgumentError, match=r"cannot place 31 bits on 1 eligible axes"):
        allocate_bits([1.0], 31)
    with pytest.raises(InvalidArgumentError, match=r"cannot place 1 bits on 0 eligible axes"):
        allocate_bits([0.0, 0.05], 1)  # at the threshold counts as MI ~ 0
    np.testing.assert_array_equal(allocate_bits([0.0, 0.0], 0), [0, 0])  # nothing to place: no axis needed
    np.testing.assert_array_equal(allocate_bits([0.05, 0.06], 1), [0, 1])
    np.testing.assert_array_equal(allocate_bits([0.05, 0.06], 3, "random_informative"), [0, 3])
    np.testing.assert_array_equal(allocate_bits([1.0, 3.0], 1), [0, 1])
    with pytest.raises(InvalidArgumentError, match=r"mi_bits must not be empty"):
        allocate_bits([], 0)
    with pytest.raises(InvalidArgumentError, match=r"mi_bits must be finite and >= 0, got inf at index 1"):
        allocate_bits([1.0, np.inf], 2)
    with pytest.raises(InvalidArgumentError, match=r"mi_bits must be finite and >= 0, got -1.0 at index 0"):
        allocate_bits([-1.0, 2.0], 2)


def test_traced_partitions_report_their_validity():
    """:meth:`Partition.valid` for counts traced inside ``jit`` (the coders turn ``False`` into
    ``INVALID_INPUT``): each count in ``[1, max_intervals]`` and at most 64 packed bits, checked at
    both ends (coders/sp/partition mutation survivors)."""
    valid = jax.jit(lambda c: Partition(c, max_intervals=2**30).valid())
    cases = [([1], True), ([0], False), ([2**30], True), ([2**30 + 1], False), ([-3, 4], False),
             ([2**30, 2**30, 16, 1], True), ([2**30, 2**30, 17, 1], False), ([2**30, 2**30, 16, 2], False)]
    for counts, want in cases:
        assert bool(valid(jnp.array(counts, jnp.int32))) is want, counts
    small = jax.jit(lambda c: Partition(c, max_intervals=4).valid())
    assert bool(small(jnp.array([4, 1]))) and not bool(small(jnp.array([5, 1])))


def test_tables_edges_and_samples_keep_their_shapes_dtypes_and_tails():
    """The tables are ``(D, max_intervals)``; float32 priors give float32 samples under x64 too; an
    edge in the upper half of a grid whose ``k / J`` is not a float32 number comes from the upper
    tail (``isf``), accurate to float32 (``icdf(1 - small)`` would lose the digits)."""
    prior = _std_normal(2)
    target = jaxrec.DiagGaussian(jnp.array([0.3, -0.2]), jnp.array([0.5, 0.8]))
    tables = axis_tables(target, prior, Partition(np.array([3, 5]), max_intervals=6), "q_mass")
    for name in ("log_weight", "log_q_mass", "log_sup", "thresholds"):
        assert getattr(tables, name).shape == (2, 6), name
    assert tables.thresholds.dtype == jnp.uint32 and np.all(np.asarray(tables.thresholds)[:, -1] == 2**32 - 1)
    with jax.enable_x64(True):
        x = Partition(np.array([3])).sample_in_bin(_std_normal(1), jnp.array([2]), jnp.array([7], jnp.uint32))
        assert x.dtype == jnp.float32
    num = 3 * 2**20
    edges = np.asarray(Partition(np.array([num])).edges(_std_normal(1)), np.float64)[0]
    k = np.arange(num - 8, num)
    np.testing.assert_allclose(edges[k], stats.norm.isf((num - k) / num), rtol=2e-6)
    low = np.arange(1, 9)
    np.testing.assert_allclose(edges[low], stats.norm.ppf(low / num), rtol=2e-6)


# ------------------------------------------------------------------------------------------------
# Per-axis closed forms and bin weights


def _brute_sup(log_r, lo, hi):
    z = np.linspace(max(lo, -12.0), min(hi, 12.0), 200001)
    return log_r(z).max()


def _grows_to_infinity(mu, s, lo, hi):
    """Whether log r is unbounded on (lo, hi) for Q = N(mu, s^2), P = N(0, 1)."""
    if s > 1:
        return np.isinf(lo) or np.isinf(hi)
    if s == 1:
        return (hi == np.inf and mu > 0) or (lo == -np.inf and mu < 0)
    return False


@pytest.mark.parametrize("mu, s", [(2.0, 0.05), (-1.0, 0.7), (0.3, 1.0), (0.0, 1.0), (0.5, 1.5)])
def test_interval_sup_ratio_gauss_gauss_matches_a_grid(mu, s):
    prior = _std_normal(1)
    target = jaxrec.DiagGaussian(jnp.array([mu]), jnp.array([s]))
    log_r = lambda z: stats.norm.logpdf(z, mu, s) - stats.norm.logpdf(z)
    for lo, hi in [(-np.inf, -2.0), (-2.0, -0.5), (-0.5, 0.1), (0.1, 1.9), (1.9, 2.1), (2.5, np.inf)]:
        got = float(interval_log_sup_ratio(target, prior, jnp.array([lo]), jnp.array([hi]))[0])
        if _grows_to_infinity(mu, s, lo, hi):
            assert got == np.inf
        else:  # the sup lies inside [-12, 12] for these targets
            np.testing.assert_allclose(got, _brute_sup(log_r, lo, hi), rtol=1e-4, atol=1e-4)


def test_interval_sup_ratio_uniform_targets():
    prior_g = jaxrec.DiagGaussian(jnp.array([0.0]), jnp.array([2.0]))
    target = jaxrec.Uniform(jnp.array([-1.0]), jnp.array([0.5]))
    got = interval_log_sup_ratio(target, prior_g, jnp.array([-3.0, -0.5, 1.0]), jnp.array([-0.5, 0.2, 2.0]))
    want = [np.log(1 / 1.5) - stats.norm.logpdf(-1.0, 0, 2), np.log(1 / 1.5) - stats.norm.logpdf(-0.5, 0, 2), -np.inf]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    prior_u = jaxrec.Uniform(jnp.array([-2.0]), jnp.array([2.0]))
    got = interval_log_sup_ratio(target, prior_u, jnp.array([-2.0, 1.0]), jnp.array([0.0, 2.0]))
    np.testing.assert_allclose(np.asarray(got), [np.log(4 / 1.5), -np.inf], rtol=1e-6)
    with pytest.raises(InvalidArgumentError, match="interval"):
        interval_log_sup_ratio(jaxrec.DiagGaussian(0.0, 1.0), prior_u, jnp.array([0.0]), jnp.array([1.0]))


def _log_interval_mass(lo, hi, mu, s):
    """log N(mu, s^2)([lo, hi)) in float64 from whichever tail is accurate."""
    a, b = (lo - mu) / s, (hi - mu) / s
    upper = a > 0
    big, small = np.where(upper, special.log_ndtr(-a), special.log_ndtr(b)), np.where(upper, special.log_ndtr(-b), special.log_ndtr(a))
    with np.errstate(divide="ignore"):
        return big + np.log1p(-np.exp(small - big))


def _quantized_reference(log_pi, bits):
    """The documented integer weights in float64: ``max(1, ceil(pi 2^R - 2^-8))`` for every bin of
    positive weight but the first heaviest, which gets the rest of ``2^R``; returns the counts."""
    log_pi = np.asarray(log_pi, np.float64)
    live, heaviest = np.isfinite(log_pi), np.argmax(log_pi)
    counts = np.where(live, np.maximum(1.0, np.ceil(np.exp(log_pi) * 2.0**bits - 2.0**-8)), 0.0)
    counts[heaviest] = 0.0
    counts[heaviest] = 2.0**bits - counts.sum()
    return counts


@pytest.mark.slow  # 8 s cold in the fast tier (float64 programs)
@pytest.mark.mutation
def test_weights_and_reweighted_divergences_match_independent_float64_sums():
    """The bin weights are the float64 ideal ones (``Q`` masses, ``sup r`` masses) quantized by
    :func:`_quantized_reference` (counts to one count and 3e-4 relative, the float32 tables'
    accuracy), and ``D_inf[Q||P']``, ``D_KL[Q||P']`` follow those weights."""
    prior = _std_normal(2)
    params = [(2.0, 0.05), (-0.4, 0.3)]
    target = jaxrec.DiagGaussian(jnp.array([p[0] for p in params]), jnp.array([p[1] for p in params]))
    counts = np.array([64, 8])
    part = Partition(counts, max_intervals=64)
    bits = partition_lib.draw_bits(64)
    assert bits == 31
    q_mass, sup_r = axis_tables(target, prior, part, "q_mass"), axis_tables(target, prior, part, "sup_ratio")
    dinf_q, dinf_s, gain_q = 0.0, 0.0, 0.0
    for d, (mu, s) in enumerate(params):
        j = counts[d]
        e = stats.norm.ppf(np.arange(j + 1) / j)
        log_mass = _log_interval_mass(e[:-1], e[1:], mu, s)
        z = np.clip(mu / (1 - s * s), e[:-1], e[1:])
        log_sup = stats.norm.logpdf(z, mu, s) - stats.norm.logpdf(z)
        np.testing.assert_allclose(sup_r.log_sup[d, :j], log_sup, rtol=1e-4, atol=1e-4)
        for tables, ideal in ((q_mass, log_mass), (sup_r, log_sup - special.logsumexp(log_sup))):
            want = _quantized_reference(ideal, bits)
            got = np.exp(np.asarray(tables.log_weight[d, :j], np.float64)) * 2.0**bits
            np.testing.assert_allclose(got, want, rtol=3e-4, atol=1.0)
            assert np.all(np.isneginf(tables.log_weight[d, j:]))
        log_q_weight = np.log(_quantized_reference(log_mass, bits) / 2.0**bits)
        log_s_weight = np.log(_quantized_reference(log_sup - special.logsumexp(log_sup), bits) / 2.0**bits)
        dinf_s += np.max(log_sup - np.log(j) - log_s_weight) / LN2
        dinf_q += np.max(log_sup - np.log(j) - log_q_weight) / LN2
        gain_q += np.sum(np.exp(log_mass) * (np.log(j) + log_q_weight)) / LN2
    np.testing.assert_allclose(float(reweighted_dinf(target, prior, part, "sup_ratio")), dinf_s, rtol=1e-4)
    np.testing.assert_allclose(float(reweighted_dinf(target, prior, part, "q_mass")), dinf_q, rtol=1e-3)
    kl_full = float(jaxrec.kl(target, prior))
    np.testing.assert_allclose(float(reweighted_kl(target, prior, part, "q_mass")), kl_full - gain_q, atol=2e-3)
    # A 1-D table worked out by hand: the sup_ratio D_inf and q_mass KL columns.
    for mu, s, j, dinf_sup, kl_q_ref in [(1.0, 0.1, 16, 0.94, 0.23), (2.0, 0.05, 1024, 0.20, 0.01), (0.5, 0.3, 64, 0.08, 0.00)]:
        t = jaxrec.DiagGaussian(jnp.array([mu]), jnp.array([s]))
        p1 = Partition(np.array([j]), max_intervals=1024)  # one table width: one compile
        np.testing.assert_allclose(float(reweighted_dinf(t, _std_normal(1), p1, "sup_ratio")), dinf_sup, atol=0.01)
        np.testing.assert_allclose(float(reweighted_kl(t, _std_normal(1), p1, "q_mass")), kl_q_ref, atol=0.01)


def test_custom_policy_and_bad_policy():
    prior, target = _std_normal(1), jaxrec.DiagGaussian(jnp.array([1.0]), jnp.array([0.2]))
    part = Partition(np.array([16]))
    def uniform(log_q, log_sup, log_p):
        return jnp.zeros_like(log_q)

    np.testing.assert_allclose(np.exp(axis_tables(target, prior, part, uniform).log_weight), 1 / 16, rtol=1e-6)
    # Uniform weights are plain PFR: D_inf[Q||P'] = D_inf[Q||P].
    np.testing.assert_allclose(reweighted_dinf(target, prior, part, uniform), jaxrec.dinf(target, prior), rtol=1e-5)
    # A policy that weighs every entry: the padding past J_d (axis 0: 4 of 16 entries) still gets none.
    target2 = jaxrec.DiagGaussian(jnp.array([1.0, 0.0]), jnp.array([0.2, 0.5]))
    weights = np.exp(axis_tables(target2, _std_normal(2), Partition(np.array([4, 16])), uniform).log_weight)
    np.testing.assert_allclose(weights, [[0.25] * 4 + [0.0] * 12, [1 / 16] * 16], rtol=1e-6)
    with pytest.raises(InvalidArgumentError, match="weights"):
        axis_tables(target, prior, part, "posterior")


def _draw_all_values(tables, axis, bits):
    """Bins of ``axis`` for every one of its ``2^bits`` draw values, through :func:`sample_bins`'s word layout."""
    values = jnp.arange(2**bits, dtype=jnp.uint32)
    num_axes, size = tables.thresholds.shape
    width = partition_lib.draw_words(num_axes, size)
    if bits == 16:
        word = values << jnp.uint32(16 * (axis % 2))
        words = jnp.zeros((width, values.size), jnp.uint32).at[axis // 2].set(word)
    else:
        words = jnp.zeros((width, values.size), jnp.uint32).at[axis].set(values << jnp.uint32(1))
    return np.asarray(jax.jit(sample_bins)(tables, words)[axis])


def test_sample_bins_draws_each_bin_exactly_as_often_as_its_integer_weight():
    """Over all ``2^16`` draw values of an axis (tables of at most 16 intervals, two axes per word)
    bin ``k`` comes up exactly ``c_k = pi_k 2^16`` times: the scores' weights are the sampler's,
    with no rounding between them.  Counts: positive for every bin of positive weight (a bin of
    ``Q`` mass 1e-12 still has count 1), summing to ``2^16``, every bin but the heaviest rounded up."""
    prior = _std_normal(3)
    target = jaxrec.DiagGaussian(jnp.array([0.7, 0.0, 4.5]), jnp.array([0.4, 0.9, 0.3]))
    part = Partition(np.array([8, 3, 16]), max_intervals=16)
    assert partition_lib.draw_bits(16) == 16 and partition_lib.draw_words(3, 16) == 2
    tables = axis_tables(target, prior, part, "q_mass")
    for axis, j in enumerate([8, 3, 16]):
        counts = np.exp(np.asarray(tables.log_weight[axis, :j], np.float64)) * 2.0**16
        np.testing.assert_allclose(counts, np.round(counts), rtol=1e-6)  # log(c 2^-16) to float32
        counts = np.round(counts)
        assert counts.sum() == 2**16 and counts.min() >= 1
        drawn = np.bincount(_draw_all_values(tables, axis, 16), minlength=16)
        np.testing.assert_array_equal(drawn[:j], counts)
        assert drawn[j:].sum() == 0
        ideal = np.exp(np.asarray(tables.log_q_mass[axis, :j], np.float64))
        ideal = ideal / ideal.sum() * 2.0**16
        rounded_down = counts < ideal - 2.0**-8
        assert rounded_down.sum() <= 1 and (not rounded_down.any() or counts[rounded_down][0] == counts.max())
    assert np.exp(float(tables.log_q_mass[2, 0])) < 1e-12 and float(tables.log_weight[2, 0]) == np.float32(np.log(2.0**-16))


def test_quantized_weights_round_every_bin_but_the_heaviest_up_past_a_slack_of_2_to_the_minus_8():
    """``c = max(1, ceil(pi 2^R - 2^-8))``: 100.003 counts stay 100 (float noise above an integer),
    100.5 become 101, 1e-9 become 1, weight 0 stays 0; the heaviest takes the rest of ``2^16``.
    Word counts: two 16-bit draws per word up to 16 intervals, one 31-bit draw per word above."""
    pi = np.array([100.003, 100.5, 1e-9, 0.0, 0.0]) / 2.0**16
    pi[3] = 1.0 - pi.sum()
    with np.errstate(divide="ignore"):
        log_pi = jnp.asarray(np.log(pi)[None, :], jnp.float32)
    log_c, fits, thresholds = jax.jit(partition_lib.quantized_weights)(log_pi)
    counts = np.round(np.exp(np.asarray(log_c, np.float64)) * 2.0**16)
    np.testing.assert_array_equal(counts[0], [100, 101, 1, 2**16 - 202, 0])
    np.testing.assert_array_equal(np.asarray(thresholds)[0], [100, 201, 202, 2**32 - 1, 2**32 - 1])
    assert bool(fits)
    assert [partition_lib.draw_words(d, m) for d, m in ((1, 2), (25, 16), (25, 17), (3, 40))] == [1, 13, 25, 3]
    # counts whose uint32 running sum wraps past 2^32 (weights 0.9, four times, 31 bits) do not fit
    wrapping = jnp.full((1, 17), -jnp.inf).at[0, :4].set(np.log(0.9))
    assert not bool(jax.jit(partition_lib.quantized_weights)(wrapping)[1])
    # others summing to exactly 2^16 leave the heaviest nothing: no fit either
    assert not bool(jax.jit(partition_lib.quantized_weights)(jnp.full((1, 3), np.log(0.5), jnp.float32))[1])


def test_sample_bins_with_31_bit_draws_and_zero_weights():
    """An axis of more than 16 intervals draws 31 bits (the top of its own word): ``k = #{i :
    thresholds_i <= b}`` at random words and at the words around every threshold; a bin of weight
    0 (a policy's ``-inf``) is never drawn and the bins around it keep their counts."""
    prior, target = _std_normal(1), jaxrec.DiagGaussian(jnp.array([0.1]), jnp.array([0.7]))
    gap = lambda log_q, log_sup, log_p: jnp.where(jnp.arange(log_q.shape[-1]) == 3, -jnp.inf, log_q)
    tables = axis_tables(target, prior, Partition(np.array([40])), gap)
    assert partition_lib.draw_bits(40) == 31
    thresholds = np.asarray(tables.thresholds[0], np.int64)
    assert thresholds[2] == thresholds[3] and np.isneginf(float(tables.log_weight[0, 3]))
    near = np.concatenate([2 * thresholds[:39, None] + np.arange(-2, 3)[None, :]]).ravel()
    words = np.concatenate([np.asarray(jax.random.bits(jax.random.key(7), (512,), jnp.uint32), np.int64), near])
    words = words[(words >= 0) & (words < 2**32)].astype(np.uint32)
    want = [int(np.sum(thresholds <= (int(w) >> 1))) for w in words]
    got = np.asarray(jax.jit(sample_bins)(tables, jnp.asarray(words)[None, :])[0])
    np.testing.assert_array_equal(got, want)
    assert 3 not in got and {2, 4} <= set(got.tolist())
    # the widest axes a search takes (2^15 intervals) fit their 31-bit counts; 2^16 weights each
    # 4e-6 above 2^-16 (float noise) round up to 2^15 + 1 counts, which overflow: an undefined bound
    uniform = lambda log_q, log_sup, log_p: jnp.zeros_like(log_q)
    assert np.isfinite(float(axis_tables(target, prior, Partition(np.array([2**15])), uniform).log_bound))
    _, fits, _ = jax.jit(partition_lib.quantized_weights)(jnp.full((1, 2**16), np.log(2.0**-16 * (1 + 2.0**-18)), jnp.float32))
    assert not bool(fits)
    counts = np.diff(np.concatenate([[0], thresholds[:39], [2**31]]))
    np.testing.assert_allclose(np.exp(np.asarray(tables.log_weight[0], np.float64)) * 2.0**31, counts, rtol=3e-7)


def test_sample_bins_frequencies_from_random_words():
    """Random private words give bins at the frequencies ``pi`` (chi-square over 40,000 draws of two axes)."""
    prior = _std_normal(2)
    target = jaxrec.DiagGaussian(jnp.array([0.7, 0.0]), jnp.array([0.4, 0.9]))
    part = Partition(np.array([8, 3]), max_intervals=8)
    tables = axis_tables(target, prior, part, "q_mass")
    words = jax.random.bits(jax.random.key(0), (partition_lib.draw_words(2, 8), 40000), jnp.uint32)
    bins = np.asarray(jax.jit(sample_bins)(tables, words))
    for d, j in enumerate([8, 3]):
        observed = np.bincount(bins[d], minlength=j)
        assert observed.size == j
        expected = np.exp(np.asarray(tables.log_weight[d, :j], np.float64)) * bins.shape[1]
        assert stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue > 1e-3


