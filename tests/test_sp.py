"""Space-partitioning coders: SP-PFR exactness, steps, code length, chunk invariance; SP-ORC."""

import functools
import re
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxrec
from jaxrec import entropy
from jaxrec.coders.base import INVALID_INPUT, OK
from jaxrec.coders.registry import REGISTRY
from jaxrec.coders.sp._sp_orc import numbered_log_ratios, sp_orc_message
from jaxrec.coders.sp._sp_pfr import (
    SPCode,
    VisitCounts,
    _fmix32,
    batch_reweighted_dinf,
    bin_candidate,
    bin_log_ratios,
    check_weights,
    count_by_histograms,
    count_by_sort,
    count_in_blocks,
    counter_slots,
    fitted_table_size,
    in_bin_dtype,
    labelled_streams,
    sort_by_group,
    sp_chunk_fn,
)
from jaxrec.coders.sp.message import sp_ideal_bits, sp_index_budget_bits
from jaxrec.coders.sp.partition import (
    Partition,
    axis_tables,
    bin_dtype,
    draw_words,
    log_scaled_bin_weights,
    partition_from_mi,
    reweighted_dinf,
    sample_bins,
)
from jaxrec.core import arrivals, prng
from jaxrec.core.errors import InvalidArgumentError

NUM = 5000  # decoded samples per exactness test
LN2 = np.log(2.0)


def std_normal(d, dtype=jnp.float32):
    return jaxrec.DiagGaussian(jnp.zeros(d, dtype), jnp.ones(d, dtype))


@functools.lru_cache(maxsize=None)
def jitted(coder, target_axis):
    """``(encode, decode)`` vmapped over keys (and targets when ``target_axis == 0``), jitted once."""
    enc = jax.jit(jax.vmap(coder.encode, in_axes=(0, target_axis, None)))
    dec = jax.jit(jax.vmap(coder.decode, in_axes=(0, 0, None)))
    return enc, dec


def run(coder, targets, prior, num=NUM, seed=0, target_axis=0, keys=None):
    keys = jax.random.split(jax.random.key(seed), num) if keys is None else keys
    enc, dec = jitted(coder, target_axis)
    codes = enc(keys, targets, prior)
    return codes, np.asarray(dec(keys, codes, prior), np.float64)


def uniforms(xs, targets):
    """Q's CDF applied per coordinate: Uniform(0, 1) iid if the samples are exact."""
    return stats.norm.cdf(xs, np.asarray(targets.loc, np.float64), np.asarray(targets.scale, np.float64))


def assert_exact(xs, targets):
    u = uniforms(xs, targets)
    for d in range(u.shape[1]):
        assert stats.kstest(u[:, d], "uniform").pvalue > 1e-4, f"axis {d}"
    # Joint check: sum of squared standardized coordinates is chi2(D).
    z2 = np.sum(stats.norm.ppf(np.clip(u, 1e-12, 1 - 1e-12)) ** 2, axis=1)
    assert stats.kstest(z2, stats.chi2(u.shape[1]).cdf).pvalue > 1e-3


_dinf_prime = jax.jit(jax.vmap(reweighted_dinf, in_axes=(0, None, None, None)), static_argnums=3)


def expected_steps(targets, prior, part, weights):
    return float(np.mean(2.0 ** np.asarray(_dinf_prime(targets, prior, part, weights), np.float64)))


def broadcast_target(target, num):
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (num,) + leaf.shape), target)


# ------------------------------------------------------------------------------------------------
# SP-PFR: exactness and E[steps] = 2^{D_inf[Q||P']}, several Q, D = 1, 5, 16, both policies.


def target_rows(sigma, z, repeat):
    """Several targets ``mu = sqrt(1 - sigma^2) z`` (one per row of ``z``), each repeated ``repeat`` times."""
    sigma = np.asarray(sigma, np.float32)
    mu = np.repeat(np.sqrt(1.0 - sigma**2) * np.asarray(z, np.float32), repeat, axis=0)
    return jaxrec.DiagGaussian(jnp.asarray(mu), jnp.broadcast_to(jnp.asarray(sigma), mu.shape))


def _z(seed, rows, dim, scale):
    return np.clip(scale * np.random.default_rng(seed).normal(size=(rows, dim)), -1.5, 1.5)


SIGMA5 = [0.3, 0.5, 0.15, 1.0, 0.7]
SIGMA5Q = [0.5, 0.6, 0.4, 1.0, 0.7]
SIGMA16 = np.full(16, 0.8)
CASES = {
    # name: (targets: 5 distinct Q per multi-dimensional case, partition, weights); E[steps] 2 to 150
    "d1_sharp_sup": (target_rows([0.05], [[2.0 / np.sqrt(1 - 0.05**2)]], NUM), Partition(np.array([64])), "sup_ratio"),
    "d5_sup": (target_rows(SIGMA5, _z(0, 5, 5, 1.0), NUM // 5), partition_from_mi(-np.log2(SIGMA5), 6), "sup_ratio"),
    "d5_qmass": (target_rows(SIGMA5Q, _z(1, 5, 5, 0.5), NUM // 5), partition_from_mi(-np.log2(SIGMA5Q), 3), "q_mass"),
    "d16_sup": (target_rows(SIGMA16, _z(2, 5, 16, 0.5), NUM // 5), partition_from_mi(-np.log2(SIGMA16), 6), "sup_ratio"),
}


@functools.lru_cache(maxsize=None)
def case_run(name):
    targets, part, weights = CASES[name]
    prior = std_normal(targets.event_size)
    codes, xs = run(jaxrec.sp_pfr(part, weights=weights, chunk_size=64), targets, prior, seed=11)
    return name, targets, prior, part, weights, codes, xs


@pytest.fixture(scope="module", params=sorted(CASES))
def sp_pfr_run(request):
    return case_run(request.param)


@pytest.mark.slow
def test_sp_pfr_is_exact(sp_pfr_run):
    _, targets, _, part, _, codes, xs = sp_pfr_run
    assert not np.any(codes.exhausted)
    counts = np.asarray(part.num_intervals)
    assert np.all((np.asarray(codes.bin) >= 0) & (np.asarray(codes.bin) < counts))
    assert np.all((np.asarray(codes.index) >= 0) & (np.asarray(codes.index) < np.asarray(codes.steps)))
    assert_exact(xs, targets)


@pytest.mark.slow
def test_sp_pfr_mean_steps_is_two_to_the_reweighted_dinf(sp_pfr_run):
    name, targets, prior, part, weights, codes, _ = sp_pfr_run
    want = expected_steps(targets, prior, part, weights)
    got = float(np.mean(codes.steps))
    assert abs(got / want - 1.0) < 0.1, (name, got, want)
    plain = float(np.mean(2.0 ** np.asarray(jax.vmap(jaxrec.dinf, in_axes=(0, None))(targets, prior))))
    if weights == "sup_ratio":  # q_mass weights can search longer than PFR (reference §5.2 caveat)
        assert got < plain


@pytest.mark.slow
def test_sp_pfr_decoded_samples_lie_in_their_bins(sp_pfr_run):
    _, _, prior, part, _, codes, xs = sp_pfr_run
    edges = np.asarray(part.edges(prior), np.float64)
    bins = np.asarray(codes.bin)
    lo = np.take_along_axis(edges, bins.T, axis=1).T
    hi = np.take_along_axis(edges, bins.T + 1, axis=1).T
    assert np.all(xs >= lo - 1e-5) and np.all(xs <= hi + 1e-5)


@pytest.mark.slow
def test_sp_pfr_codelength_bound():
    """E[log2 J + zipf(index)] <= KL + log2(KL + 1) + 4 + E[(log2 J - log2 r)_+] (issue 3), and
    E log2(index + 1) <= E_Q log2(1 + r / J) (reference §5.4)."""
    _, targets, prior, part, _, codes, _ = case_run("d5_sup")
    log2_j = float(part.log2_num_bins)
    kl = np.asarray(jax.vmap(jaxrec.kl, in_axes=(0, None))(targets, prior), np.float64)
    samples = jax.vmap(lambda k, q: q.sample(k, (256,)))(jax.random.split(jax.random.key(5), NUM), targets)
    log2_r = np.asarray(jax.vmap(jaxrec.log_ratio, in_axes=(0, None, 0))(targets, prior, samples), np.float64) / LN2
    excess = np.mean(np.maximum(log2_j - log2_r, 0.0))
    alpha = entropy.zipf_exponent(np.maximum(kl - log2_j, 0.0))
    bits = log2_j + np.asarray(entropy.zipf_bits(np.asarray(codes.index), alpha), np.float64)
    bound = kl.mean() + np.log2(kl.mean() + 1.0) + 4.0 + excess
    assert bits.mean() <= bound, (bits.mean(), bound)
    assert bits.mean() >= kl.mean() - 1.0  # not suspiciously short: about KL, not KL - log2 J
    index_bits = np.mean(np.log2(np.asarray(codes.index, np.float64) + 1.0))
    assert index_bits <= np.mean(np.log2(1.0 + 2.0 ** (log2_r - log2_j))) + 0.05


@pytest.mark.slow  # 10 s in the fast tier (2 idle cores)
def test_codes_round_trip_through_bytes():
    """SP codes -> bytes (uniform bins per axis, Zipf index) -> codes -> the same samples."""
    _, targets, prior, part, _, codes, xs = case_run("d5_sup")
    counts = np.asarray(part.num_intervals)
    log2_j = float(part.log2_num_bins)
    model = entropy.ZipfModel(entropy.zipf_exponent(sp_index_budget_bits(np.log2(1 / 0.3 / 0.5 / 0.15 / 0.7), log2_j)))
    bins, index = np.asarray(codes.bin), np.asarray(codes.index)
    models = [entropy.UniformModel(int(j)) for j in counts] + [model]
    data = entropy.encode_streams([(bins[:, d], m) for d, m in enumerate(models[:-1])] + [(index, model)])
    ideal = float(np.sum(sp_ideal_bits(index, counts, model.alpha)))
    assert ideal <= 8 * len(data) <= ideal + 64 + 1e-3 * ideal
    streams = entropy.decode_streams(data, [(m, NUM) for m in models])
    got_bins, got_index = np.stack(streams[:-1], axis=-1), streams[-1]
    np.testing.assert_array_equal(got_bins, bins)
    np.testing.assert_array_equal(got_index, index)
    decoded = codes.replace(bin=jnp.asarray(got_bins, jnp.int32), index=jnp.asarray(got_index, jnp.int32))
    _, dec = jitted(jaxrec.sp_pfr(part, chunk_size=64), 0)
    np.testing.assert_array_equal(np.asarray(dec(jax.random.split(jax.random.key(11), NUM), decoded, prior)), xs)
    with pytest.raises(jaxrec.FormatError):
        entropy.decode_streams(data[:-4], [(m, NUM) for m in models])


# ------------------------------------------------------------------------------------------------
# Codes: chunk-size invariance (also when the visit table overflows), SP-ORC = truncated SP-PFR.


def uniform_weights(log_q_mass, log_sup, log_p_mass):
    """pi_j = 1/J: plain PFR's exploration order, which visits many distinct bins."""
    return jnp.zeros_like(log_q_mass)


def sequential_visit_indices(slots):
    """The visit-counter rule one candidate at a time, in Python (reference for VisitCounts): a
    candidate's index is the number of earlier candidates in its slot."""
    counts, out = {}, []
    for slot in slots:
        out.append(counts.get(slot, 0))
        counts[slot] = counts.get(slot, 0) + 1
    return np.array(out)


def assign_with(counting):
    """``VisitCounts.assign`` built on one counting implementation (``None``: the method itself)."""
    if counting is None:
        return VisitCounts.assign

    def assign(counts, slots, ns):
        index, updated = counting(counts.counts, slots)
        return index, VisitCounts(updated)

    return assign


@pytest.mark.parametrize("counting", [None, count_in_blocks, count_by_histograms, count_by_sort], ids=["assign", "blocks", "histograms", "sort"])
@pytest.mark.parametrize("table_size", [16, 64, 128, 4096])
def test_visit_counts_match_the_sequential_rule_for_any_chunking(table_size, counting):
    rng = np.random.default_rng(table_size)
    slots = rng.choice(rng.integers(0, table_size, 120), 600)  # up to 120 distinct slots, revisited
    want = sequential_visit_indices(slots.tolist())
    assign = jax.jit(assign_with(counting))
    for chunk in (1, 40, 100, 600):  # 100: four rank blocks of 32 per chunk, the last one padded
        counts, got = VisitCounts.empty(table_size), []
        for start in range(0, 600, chunk):
            ns = jnp.arange(start, min(start + chunk, 600), dtype=jnp.int32)
            index, counts = assign(counts, jnp.asarray(slots[start:start + chunk], jnp.int32), ns)
            got.append(np.asarray(index))
        np.testing.assert_array_equal(np.concatenate(got), want)
        np.testing.assert_array_equal(counts.counts, np.bincount(slots, minlength=table_size))


def test_sort_keys_split_exactly_above_float32_precision():
    """The sort key group * K + position is split exactly (integer division) even above 2^24, where
    a float32 quotient puts all four positions of group 10^9 + 63 into group 10^9 + 64."""
    groups, positions = sort_by_group(jnp.full(4, 10**9 + 63, jnp.int32))
    assert np.asarray(groups).tolist() == [10**9 + 63] * 4 and np.asarray(positions).tolist() == [0, 1, 2, 3]


def test_visit_counts_compile_to_blocks_without_a_conditional_on_cpu():
    """``platform_dependent`` picks the implementation when lowering: the CPU program scans the
    blocks, with no sort and no conditional left (XLA copies a conditional's operands, the whole
    table, at every chunk).  The accelerators' implementations are checked by the rule tests above."""
    counts, slots = jnp.zeros(4096, jnp.int32), jnp.zeros(1024, jnp.int32)
    cpu = jax.jit(lambda c, s: VisitCounts(c).assign(s, s)).lower(counts, slots).compile().as_text()
    assert " sort(" not in cpu and "conditional(" not in cpu and " while(" in cpu


@pytest.mark.parametrize(("table_size", "sorts"), [(64, False), (128, True)])
def test_visit_counts_lower_for_accelerators_to_histograms_or_one_sort(table_size, sorts):
    """The accelerators' branch, exported for CUDA and TPU without either: per-block histograms up to
    64 counters (no sort anywhere in the program), one sort of the chunk's slots above."""
    counts, slots = jnp.zeros(table_size, jnp.int32), jnp.zeros(256, jnp.int32)
    assign = jax.jit(lambda c, s: VisitCounts(c).assign(s, s))
    program = jax.export.export(assign, platforms=["cuda", "tpu"])(counts, slots).mlir_module()
    assert ("stablehlo.sort" in program) == sorts


@pytest.mark.parametrize("counting", [None, count_in_blocks, count_by_histograms, count_by_sort], ids=["assign", "blocks", "histograms", "sort"])
def test_batched_visit_counts_match_the_sequential_rule(counting):
    """Under vmap (encode_batch's lanes) each lane's indices and counts are its own sequential rule's."""
    lanes, table_size = 8, 128
    rng = np.random.default_rng(lanes)
    slots = rng.integers(0, 24, (lanes, 300))  # many revisits per chunk
    assign = jax.jit(jax.vmap(assign_with(counting)))
    for chunk in (1, 300):  # one candidate per step, and the whole sequence at once
        counts, got = VisitCounts(jnp.zeros((lanes, table_size), jnp.int32)), []
        for start in range(0, 300, chunk):
            part = jnp.asarray(slots[:, start:start + chunk], jnp.int32)
            index, counts = assign(counts, part, jnp.zeros_like(part))
            got.append(np.asarray(index))
        got = np.concatenate(got, axis=1)
        for lane in range(lanes):
            np.testing.assert_array_equal(got[lane], sequential_visit_indices(slots[lane].tolist()), err_msg=f"{lane=}")
            np.testing.assert_array_equal(counts.counts[lane], np.bincount(slots[lane], minlength=table_size))


def test_counter_slots_are_the_bins_when_the_grid_fits_else_hashed():
    bins = jnp.array([[0, 0], [3, 1], [15, 15], [7, 9]], jnp.int32)
    small = Partition(np.array([16, 16]))
    packed = small.stream_words(bins)
    np.testing.assert_array_equal(counter_slots(small, packed, 256), [0, 3 + 16, 255, 7 + 16 * 9])
    hashed = np.asarray(counter_slots(small, packed, 16))
    want = np.asarray(_fmix32(packed[1] ^ (packed[0] * jnp.uint32(0x9E3779B9)))) & 15
    np.testing.assert_array_equal(hashed, want)
    # A 40-bit grid uses the high word too; the slots are pinned as numbers (the multiplier and the
    # finalizer decide which bins share a counter, so they are part of the code: stored files).
    big = Partition(np.array([16] * 10))
    bins = jnp.array([[0] * 10, [3, 1, 4, 1, 5, 9, 2, 6, 5, 3], [15] * 10, [7, 9, 0, 0, 0, 0, 0, 0, 0, 1]], jnp.int32)
    packed = big.stream_words(bins)
    assert np.asarray(packed[0]).tolist() == [0, 0x35, 0xFF, 0x10]
    assert np.asarray(counter_slots(big, packed, 4096)).tolist() == [0, 455, 882, 3983]
    # At the boundary: 5 intervals pack into 3 bits (largest word 4), which fit 8 counters, not 4.
    five = Partition(np.array([5]))
    packed = five.stream_words(jnp.arange(5, dtype=jnp.int32)[:, None])
    assert np.asarray(counter_slots(five, packed, 8)).tolist() == [0, 1, 2, 3, 4]
    assert np.asarray(counter_slots(five, packed, 4)).tolist() == [0, 3, 2, 3, 1]


def test_a_concrete_grid_that_fits_carries_only_its_counters():
    """A concrete partition whose packed grid fits in fewer than ``table_size`` counters carries
    only those (smaller search state)."""
    for counts, want in (([2] * 5, 32), ([3, 5, 1], 32), ([1], 1), ([16, 16], 256), ([2] * 13, 4096)):
        assert fitted_table_size(Partition(np.array(counts)), 4096) == want, counts
    assert fitted_table_size(Partition(np.array([16, 16])), 64) == 64
    assert [fitted_table_size(Partition(np.array([5])), t) for t in (4, 8, 16)] == [4, 8, 8]  # largest word 4


# ``X^{(j_k)}_{n_k}`` of K (bin, index) pairs: bins ``int32[K, D]``, indices ``int32[K]`` -> ``(K, D)``;
# ``labelled``: the bin streams of format version 5 (else versions 2-4's per-bin keys).
def bin_candidates(key, prior, part, bins, index, labelled):
    return _bin_candidates(labelled)(key, prior, part, bins, index)


@functools.cache
def _bin_candidates(labelled):
    return jax.jit(jax.vmap(functools.partial(bin_candidate, labelled=labelled), in_axes=(None, None, None, 0, 0)))


@pytest.mark.parametrize("labelled", [True, False])
def test_bin_candidates_are_pinned_and_score_as_the_fused_log_ratio(labelled):
    """A bin's candidate ``X^{(j)}_n`` (what the decoder returns) is pinned (stored files) in both
    stream layouts (version 5's labelled streams; versions 2-4's per-bin keys), lies in its bin, and
    its log ratio is the one the search scores without materializing it."""
    part = Partition(np.array([4, 2, 3]))
    key = prng.as_key(9)
    prior = jaxrec.DiagGaussian(jnp.array([0.5, -1.0, 0.0]), jnp.array([2.0, 0.5, 1.0]))
    target = jaxrec.DiagGaussian(jnp.array([0.9, -1.2, 0.3]), jnp.array([0.7, 0.2, 0.4]))
    bins, index = jnp.array([[0, 1, 2], [3, 0, 1]], jnp.int32), jnp.array([0, 5], jnp.int32)  # (K, D), (K,)
    xs = bin_candidates(key, prior, part, bins, index, labelled)
    # (to float32 rounding: the in-bin quantile of a bin at the prior's mode loses a few ulps
    # relative to x near 0, and XLA compiles it differently eagerly, jitted and vmapped)
    golden = {
        True: [[-3.1212115, -0.7839765, 0.60498118], [3.3087914, -1.6542649, 0.13140325]],
        False: [[-1.4274535, -0.78507036, 2.1414299], [1.9384848, -1.3155258, -0.07432814]],
    }[labelled]
    np.testing.assert_allclose(xs, golden, rtol=1e-6, atol=1e-7)
    edges = np.asarray(part.edges(prior))
    for x, b in zip(np.asarray(xs), np.asarray(bins)):
        assert np.all((edges[np.arange(3), b] < x) & (x < edges[np.arange(3), b + 1]))
    packed = part.pack_columns(bins.T)
    fused = jax.jit(functools.partial(bin_log_ratios, labelled=labelled))(key, target, prior, part, bins.T, packed, index)
    np.testing.assert_allclose(fused, jaxrec.log_ratio(target, prior, xs), rtol=1e-6)


@pytest.mark.parametrize("dim, narrow", [(3, False), (5, False), (14, False), (16, True), (17, True), (20, False), (25, True)])
def test_in_bin_points_read_narrow_bins_only_where_all_hash_rows_loop(dim, narrow):
    """``uint8`` bins for the in-bin points where every hash row of the sum runs in its loop (measured
    faster there, several times slower where rows are unrolled); ``uint16`` above 256 intervals."""
    for max_intervals, dtype in ((2, np.uint8), (300, np.uint16)):
        part = Partition(np.full(dim, 2), max_intervals=max_intervals)
        assert in_bin_dtype(part) == (dtype if narrow else np.int32)


@pytest.mark.parametrize("dim", [5, 25])
def test_the_chunk_hands_its_points_the_bins_in_the_in_bin_type(dim):
    """The chunk function converts its bins to :func:`in_bin_dtype` for the in-bin points (``uint8`` at
    D = 25, none at D = 5, where the bins stay ``int32``): the wiring of the measured speed rule."""
    part = Partition(np.full(dim, 2))
    prior = std_normal(dim)
    target = jaxrec.DiagGaussian(jnp.full(dim, 0.3), jnp.full(dim, 0.6))
    chunk = sp_chunk_fn(prng.as_key(4), target, prior, part, lambda counter, packed, ns: (ns, counter),
                        functools.partial(bin_log_ratios, labelled=True))
    state = (arrivals.zero_time(), None, axis_tables(target, prior, part, "sup_ratio"))
    program = str(jax.make_jaxpr(chunk)(state, jnp.arange(64, dtype=jnp.int32)))
    assert ("u8[" in program) == (dim == 25)


@pytest.mark.parametrize("counts, dtype", [([256, 200, 3], np.uint8), ([300, 2, 30_000], np.uint16)])
def test_narrow_bins_read_as_their_int32_values(counts, dtype):
    """The search may hand its bins to the in-bin points in the narrowest unsigned type (:func:`bin_dtype`);
    every reader of a chunk's bins (the in-bin points' log ratios, the packed index, the bin weights) gives
    what it gives for the same bins as ``int32``, including indices past 127 (``2 k + 1`` would wrap in
    ``uint8``)."""
    part = Partition(np.array(counts))
    assert bin_dtype(part.max_intervals) == dtype
    key = prng.as_key(4)
    prior = jaxrec.DiagGaussian(jnp.array([0.5, -1.0, 0.0]), jnp.array([2.0, 0.5, 1.0]))
    target = jaxrec.DiagGaussian(jnp.array([0.9, -1.2, 0.3]), jnp.array([0.7, 0.2, 0.4]))
    wide = jnp.array([[c - 1 for c in counts], [c // 2 for c in counts], [0, 1, 2], [c * 2 // 3 for c in counts]], jnp.int32).T
    narrow = wide.astype(dtype)
    index = jnp.array([0, 3, 7, 1], jnp.int32)
    tables = axis_tables(target, prior, part, "q_mass")

    def readers(bins):
        packed = part.pack_columns(bins)
        log_r = bin_log_ratios(key, target, prior, part, bins, packed, index, labelled=False)
        return packed, log_r, log_scaled_bin_weights(tables, part, bins)

    for got, want in zip(jax.tree.leaves(jax.jit(readers)(narrow)), jax.tree.leaves(jax.jit(readers)(wide))):
        np.testing.assert_array_equal(got, want)
    points = bin_candidates(key, prior, part, wide.T, index, False)
    np.testing.assert_allclose(jax.jit(readers)(narrow)[1], jaxrec.log_ratio(target, prior, points), rtol=1e-5)


def test_sp_orc_points_come_from_the_candidate_stream_and_score_as_the_fused_log_ratio():
    """SP-ORC's candidate ``m`` is drawn in its bins from item ``m`` of the key's candidate stream
    (the words plain ORC turns into ``X_m ~ P``), not from a stream per bin: the decoder returns
    exactly that point (in its bins), and the search scores its log ratio. (That the encoder's winner
    is what the decoder returns is the contract suite's check.)"""
    part = Partition(np.array([4, 2, 3]))
    key = prng.as_key(9)
    prior = jaxrec.DiagGaussian(jnp.array([0.5, -1.0, 0.0]), jnp.array([2.0, 0.5, 1.0]))
    target = jaxrec.DiagGaussian(jnp.array([0.9, -1.2, 0.3]), jnp.array([0.7, 0.2, 0.4]))
    bins, index = jnp.array([[0, 1, 2], [3, 0, 1]], jnp.int32), jnp.array([0, 5], jnp.int32)
    coder = jaxrec.sp_orc(part, 64)

    @jax.jit
    def points(bins, index):
        def one(b, n):
            code = SPCode(bin=b, index=n, steps=jnp.int32(1), status=jnp.int32(OK), coder="sp_orc", event_size=3)
            words = prng.counter_words(prng.candidate_stream(key), n[None], 3)[:, 0]
            return coder.decode(key, code, prior), part.sample_in_bin(prior, b, words), bin_candidate(key, prior, part, b, n, labelled=True)
        return jax.vmap(one)(bins, index)

    decoded, from_stream, from_bin_streams = (np.asarray(a) for a in points(bins, index))
    np.testing.assert_array_equal(decoded, from_stream)
    assert not np.any(np.isclose(decoded, from_bin_streams))
    edges = np.asarray(part.edges(prior))
    for x, b in zip(decoded, np.asarray(bins)):
        assert np.all((edges[np.arange(3), b] < x) & (x < edges[np.arange(3), b + 1]))
    fused = jax.jit(numbered_log_ratios)(key, target, prior, part, bins.T, part.stream_words(bins), index)
    np.testing.assert_allclose(fused, jaxrec.log_ratio(target, prior, decoded), rtol=1e-6)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _sp_pfr_draws(keys, tables, part, num):
    """The documented draws of candidates ``0..num-1`` for each key: private word 0 is the arrival
    increment, words ``1..W`` the bins (:func:`sample_bins`).  Returns ``(bins int32[B, num, D], increments [B, num])``."""
    width = 1 + draw_words(part.event_size, part.max_intervals)

    def draws(key):
        words = prng.counter_words(prng.private_stream(key), jnp.arange(num, dtype=jnp.int32), width)
        return sample_bins(tables, words[1:]).T, arrivals.increments_from_words(words[0])
    return jax.vmap(draws)(keys)


def sp_pfr_sequential(key, bins, increments, target, prior, part, tables, shared_keys=True):
    """SP-PFR one candidate at a time in float64 (He, Flamich & Hernandez-Lobato, NeurIPS 2024, Alg. 2):
    ``(bin, index, steps)``.  It shares with the coder only the documented draws (:func:`_sp_pfr_draws`,
    the bin tables and the in-bin candidate, each tested on its own); the arrival times, the visit
    counts, the log ratios, the scores ``log r - log(J pi) - log T_n`` and the stop rule
    ``best >= log_bound - log T_n`` are its own."""
    bins, num = np.asarray(bins), len(bins)
    log_t = np.log(np.cumsum(np.asarray(increments, np.float64)) / 2**24)
    visits, index = {}, np.zeros(num, np.int32)
    for n, b in enumerate(map(tuple, bins)):
        index[n] = visits.get(b, 0)
        visits[b] = index[n] + 1
    xs = np.asarray(bin_candidates(key, prior, part, bins, index, labelled_streams(part, shared_keys)), np.float64)
    (mq, sq), (mp, sp) = ((np.asarray(d.loc, np.float64), np.asarray(d.scale, np.float64)) for d in (target, prior))
    log_r = np.sum(np.log(sp / sq) - 0.5 * ((xs - mq) / sq) ** 2 + 0.5 * ((xs - mp) / sp) ** 2, axis=1)
    log_pi = np.asarray(tables.log_weight, np.float64)[np.arange(part.event_size), bins]
    scores = log_r - np.sum(np.log(np.asarray(part.num_intervals, np.float64)) + log_pi, axis=1) - log_t
    log_bound, best, winner = float(tables.log_bound), -np.inf, 0
    for n in range(num):
        if best >= log_bound - log_t[n]:
            return bins[winner].tolist(), int(index[winner]), n
        if scores[n] > best:
            best, winner = scores[n], n
    raise AssertionError(f"the reference did not stop within {num} candidates")


@pytest.mark.slow  # one SP-PFR search program (5 s cold)
@pytest.mark.mutation
@pytest.mark.parametrize("weights", ["sup_ratio", "q_mass"])
@pytest.mark.parametrize("shared_keys", [True, False])
def test_sp_pfr_codes_equal_a_sequential_float64_reference(weights, shared_keys):
    """32 codes of shifted, scaled Gaussian pairs equal :func:`sp_pfr_sequential`'s; the first four are
    pinned, in both stream layouts (``shared_keys=False``: the codes of format versions 2-4)."""
    part = Partition(np.array([4, 2, 3]))
    prior = jaxrec.DiagGaussian(jnp.array([0.5, -1.0, 0.0]), jnp.array([2.0, 0.5, 1.0]))
    target = jaxrec.DiagGaussian(jnp.array([0.9, -1.2, 0.3]), jnp.array([0.7, 0.2, 0.4]))
    keys = jax.random.split(prng.as_key(21), 32)
    coder = jaxrec.sp_pfr(part, weights, chunk_size=16, shared_keys=shared_keys)
    codes = jax.jit(jax.vmap(coder.encode, in_axes=(0, None, None)))(keys, target, prior)
    assert np.all(np.asarray(codes.status) == OK)
    golden = {  # the first four codes as numbers: the encoder's choices (bin draws, weights, scores);
        # the decoder does not read them, so a change here keeps stored files decodable
        ("sup_ratio", False): ([[3, 0, 2], [3, 0, 2], [2, 1, 1], [2, 0, 2]], [0, 0, 0, 0], [8, 12, 2, 6]),
        ("q_mass", False): ([[2, 1, 1], [3, 0, 2], [2, 0, 1], [3, 0, 1]], [0, 0, 3, 0], [9, 117, 1053, 145]),
        ("sup_ratio", True): ([[3, 0, 2], [1, 1, 0], [2, 0, 1], [2, 0, 1]], [0, 0, 3, 0], [34, 16, 15, 30]),
        ("q_mass", True): ([[3, 0, 2], [2, 0, 2], [2, 0, 1], [3, 0, 1]], [0, 0, 0, 0], [395, 150, 339, 84]),
    }[weights, shared_keys]
    assert tuple(np.asarray(f[:4]).tolist() for f in (codes.bin, codes.index, codes.steps)) == golden
    num = 1 << int(np.max(np.asarray(codes.steps)) + 16).bit_length()
    tables = axis_tables(target, prior, part, weights)
    bins, increments = _sp_pfr_draws(keys, tables, part, num)
    for i, key in enumerate(keys):
        want = sp_pfr_sequential(key, bins[i], increments[i], target, prior, part, tables, shared_keys)
        assert (np.asarray(codes.bin[i]).tolist(), int(codes.index[i]), int(codes.steps[i])) == want, (weights, i)


@pytest.mark.slow  # 10 s cold in the fast tier (two SP-PFR programs)
@pytest.mark.mutation
@pytest.mark.parametrize("make", [lambda p: jaxrec.sp_pfr(p, chunk_size=16), lambda p: jaxrec.sp_orc(p, 64, chunk_size=16)])
def test_concrete_and_traced_partitions_give_the_same_codes(make):
    """A traced partition carries ``table_size`` counters and draws bins on every axis; a concrete one
    carries only the counters its grid fills (:func:`fitted_table_size`) and draws no bins past its
    last split axis (:meth:`Partition.drawn_axes`): same slots and bins, so the same codes (SP-PFR,
    SP-ORC)."""
    part = Partition(np.array([4, 2, 1]))
    target = jaxrec.DiagGaussian(jnp.array([0.5, -0.4, 0.0]), jnp.array([0.4, 0.6, 1.0]))
    keys = jax.random.split(jax.random.key(5), 16)
    concrete = jax.jit(jax.vmap(lambda k: make(part).encode(k, target, std_normal(3))))(keys)
    traced = jax.jit(jax.vmap(lambda k, p: make(p).encode(k, target, std_normal(3)), in_axes=(0, None)))(keys, part)
    for field in ("bin", "index", "steps", "status"):
        np.testing.assert_array_equal(np.asarray(getattr(concrete, field)), np.asarray(getattr(traced, field)), field)


@pytest.mark.slow
def test_shared_visit_counters_keep_samples_exact_and_codes_chunk_invariant():
    """Uniform weights visit many distinct bins; in a 16-slot table the 256 bins share counters
    (indices count the visits to a slot, not to a bin). Samples stay exact and codes do not depend
    on the chunk size."""
    targets = target_rows([0.3, 0.4], _z(3, 4, 2, 1.0), NUM // 4)
    part = Partition(np.array([16, 16]))
    codes, xs = run(jaxrec.sp_pfr(part, uniform_weights, 64, table_size=16), targets, std_normal(2), seed=3)
    assert_exact(xs, targets)
    other, other_xs = run(jaxrec.sp_pfr(part, uniform_weights, 7, table_size=16), targets, std_normal(2), seed=3)
    for field in ("bin", "index", "steps"):
        np.testing.assert_array_equal(np.asarray(getattr(codes, field)), np.asarray(getattr(other, field)))
    np.testing.assert_array_equal(xs, other_xs)


@pytest.mark.slow  # 13 s in the fast tier (2 idle cores)
def test_padding_with_dead_axes_keeps_the_codes():
    """A block padded with coordinates where target == prior (one interval each) gives the code of
    the unpadded block: candidate words do not depend on the width (the codec pads blocks)."""
    target = jaxrec.DiagGaussian(jnp.array([0.4, -0.3, 0.9]), jnp.array([0.3, 0.5, 0.4]))
    padded = jaxrec.DiagGaussian(jnp.array([0.4, -0.3, 0.9, 0.0, 0.0]), jnp.array([0.3, 0.5, 0.4, 1.0, 1.0]))
    keys = jax.random.split(jax.random.key(2), 16)
    makers = (lambda counts: jaxrec.sp_pfr(Partition(np.array(counts), max_intervals=4), chunk_size=32),
              lambda counts: jaxrec.pfr(chunk_size=32))
    for make in makers:
        codes = []
        for q, counts in ((target, [4, 2, 4]), (padded, [4, 2, 4, 1, 1])):
            coder = make(counts)
            codes.append(jax.jit(jax.vmap(coder.encode, in_axes=(0, None, None)))(keys, q, std_normal(len(counts))))
        for field in ("index", "steps"):
            np.testing.assert_array_equal(np.asarray(getattr(codes[0], field)), np.asarray(getattr(codes[1], field)))
        if hasattr(codes[0], "bin"):
            np.testing.assert_array_equal(np.asarray(codes[0].bin), np.asarray(codes[1].bin)[:, :3])


@pytest.mark.slow  # 12 s cold in the fast tier
@pytest.mark.mutation  # the only test of a coder's own input status combined with input_status's (coders/scan)
def test_traced_counts_above_the_table_width_are_invalid_input():
    """A partition built inside jit cannot be checked at construction: counts outside
    [1, max_intervals] give status INVALID_INPUT (no search: no winner, so bins and index 0, not a
    candidate's bins drawn again), valid ones status OK."""
    target = jaxrec.DiagGaussian(jnp.array([0.3, -0.2]), jnp.array([0.5, 0.6]))

    def encode(counts):
        part = Partition(counts, max_intervals=4)
        return jaxrec.sp_pfr(part, chunk_size=16).encode(0, target, std_normal(2)), jaxrec.sp_orc(part, 16).encode(
            0, target, std_normal(2)
        )

    codes = jax.jit(jax.vmap(encode))(jnp.array([[4, 2], [4, 9], [0, 2]], jnp.int32))
    for code in codes:
        np.testing.assert_array_equal(np.asarray(code.status), [OK, INVALID_INPUT, INVALID_INPUT])
        np.testing.assert_array_equal(np.asarray(code.steps)[1:], 0)
        np.testing.assert_array_equal(np.asarray(code.bin)[1:], 0)
        np.testing.assert_array_equal(np.asarray(code.index)[1:], 0)


@pytest.mark.slow  # 24 s in the fast tier (2 idle cores)
def test_sp_orc_encode_batch_equals_vmapped_encode():
    """SP-ORC on refilling lanes gives the codes of vmap(encode); indices are candidate numbers < N."""
    targets = target_rows(SIGMA5Q, _z(1, 5, 5, 0.5), 8)
    part = partition_from_mi(-np.log2(SIGMA5Q), 3)
    prior = std_normal(5)
    keys = jax.random.split(jax.random.key(5), 40)
    coder = jaxrec.sp_orc(part, 300, chunk_size=64)
    plain = jax.jit(jax.vmap(coder.encode, in_axes=(0, 0, None)))(keys, targets, prior)
    # one widening level: the widened path runs at half the compile time (SP-PFR's batch test
    # below keeps the default three)
    batch = jax.jit(
        lambda k, q: jaxrec.encode_batch(coder, k, q, prior, lane_chunk_size=32, num_lanes=8, max_widening=1)
    )(keys, targets)
    for field in ("bin", "index", "steps", "status"):
        np.testing.assert_array_equal(np.asarray(getattr(batch, field)), np.asarray(getattr(plain, field)))
    assert np.all(np.asarray(plain.index) < 300) and np.all(np.asarray(plain.steps) <= 300)


@pytest.mark.slow  # 17 s in the fast tier (2 idle cores)
def test_encode_batch_equals_vmapped_encode():
    _, targets, prior, part, weights, codes, _ = case_run("d5_sup")
    every = slice(None, None, 25)  # 200 problems
    keys = jax.random.split(jax.random.key(11), NUM)[every]
    coder = jaxrec.sp_pfr(part, weights=weights, chunk_size=64)
    batch = jax.jit(lambda k, q: jaxrec.encode_batch(coder, k, q, prior, lane_chunk_size=16, num_lanes=8))(
        keys, jax.tree.map(lambda leaf: leaf[every], targets)
    )
    for field in ("bin", "index", "steps", "exhausted"):
        np.testing.assert_array_equal(np.asarray(getattr(batch, field)), np.asarray(getattr(codes, field))[every])


@pytest.mark.slow
def test_vmap_over_stacked_partitions_matches_single_partitions():
    prior = std_normal(3)
    target = jaxrec.DiagGaussian(jnp.array([0.5, -0.2, 1.0]), jnp.array([0.2, 0.5, 0.3]))
    parts = [Partition(np.array([8, 2, 4]), max_intervals=8), Partition(np.array([1, 4, 8]), max_intervals=8)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *parts)
    key = jax.random.key(3)
    encode = lambda p: jaxrec.sp_pfr(p, chunk_size=32).encode(key, target, prior)  # noqa: E731
    both = jax.jit(jax.vmap(encode))(stacked)
    for i, part in enumerate(parts):
        single = jax.jit(encode)(part)
        np.testing.assert_array_equal(both.bin[i], single.bin)
        assert int(both.index[i]) == int(single.index) and int(both.steps[i]) == int(single.steps)
    assert jaxrec.sp_pfr(parts[0]).spec.kwargs["num_intervals"] == (8, 2, 4)


# ------------------------------------------------------------------------------------------------
# SP-ORC against ORC at equal budgets; float64; limits and errors.


@pytest.mark.slow
def test_sp_orc_is_closer_to_q_than_orc_at_equal_budget():
    sigma = np.full(5, 2.0**-2)  # KL about 10 bits
    target = jaxrec.DiagGaussian(jnp.array([0.9, -0.3, 0.5, 0.0, -1.1]), jnp.asarray(sigma, jnp.float32))
    prior = std_normal(5)
    part = partition_from_mi(-np.log2(sigma), 10)
    num = 2000
    mmd = {}
    for name, coder in [("orc", jaxrec.orc(64)), ("sp_orc", jaxrec.sp_orc(part, 64))]:
        keys = jax.random.split(jax.random.key(9), num)
        enc, dec = jitted(coder, None)
        codes = enc(keys, target, prior)
        mmd[name] = float(jaxrec.core.distributions.mmd2_to_gaussian(dec(keys, codes, prior), target))
    exact = float(jaxrec.core.distributions.mmd2_to_gaussian(target.sample(jax.random.key(1), (num,)), target))
    assert mmd["sp_orc"] < 0.25 * mmd["orc"], mmd
    assert mmd["sp_orc"] < abs(exact) + 0.02, (mmd, exact)


@pytest.mark.slow
def test_sp_pfr_float64_is_exact():
    with jax.enable_x64(True):
        prior = std_normal(1, jnp.float64)
        target = jaxrec.DiagGaussian(jnp.array([-2.5], jnp.float64), jnp.array([0.02], jnp.float64))
        coder = jaxrec.sp_pfr(Partition(np.array([256])), chunk_size=32)
        keys = jax.random.split(jax.random.key(4), NUM)
        codes = jax.jit(jax.vmap(coder.encode, in_axes=(0, None, None)))(keys, target, prior)
        xs = jax.jit(jax.vmap(coder.decode, in_axes=(0, 0, None)))(keys, codes, prior)
        assert xs.dtype == jnp.float64
    u = stats.norm.cdf(np.asarray(xs)[:, 0], -2.5, 0.02)
    assert stats.kstest(u, "uniform").pvalue > 1e-3


@pytest.mark.slow  # three chunk programs, 7 s
@pytest.mark.mutation
def test_search_bounds_carry_arrival_times_in_the_problems_dtype():
    """Each candidate's bound ``log M' - log T_n`` uses an arrival time of the problem's dtype: in
    float64, ``T_n`` to float64 precision (against ``log(cumsum(increments) / 2^24)``); in float32, the
    same float32 bounds whether x64 is on or off (float64 times would move near ties with the flag)."""
    part = Partition(np.array([4, 2, 3]))
    key, ns = prng.as_key(4), jnp.arange(256, dtype=jnp.int32)

    def bounds_and_log_t(dtype):
        prior = jaxrec.DiagGaussian(jnp.array([0.5, -1.0, 0.0], dtype), jnp.array([2.0, 0.5, 1.0], dtype))
        target = jaxrec.DiagGaussian(jnp.array([0.9, -1.2, 0.3], dtype), jnp.array([0.7, 0.2, 0.4], dtype))
        tables = axis_tables(target, prior, part, "sup_ratio")
        chunk = sp_chunk_fn(key, target, prior, part, lambda counter, packed, ns: (ns, counter),
                            functools.partial(bin_log_ratios, labelled=True))
        _, bounds, _, _ = jax.jit(chunk)((arrivals.zero_time(), None, tables), ns)
        _, increments = _sp_pfr_draws(key[None], tables, part, 256)
        return bounds, float(tables.log_bound) - np.log(np.cumsum(np.asarray(increments[0], np.float64)) / 2**24)

    with jax.enable_x64(True):
        bounds, want = bounds_and_log_t(jnp.float64)
        assert bounds.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(bounds), want, rtol=0, atol=1e-12)
        bounds_x64, _ = bounds_and_log_t(jnp.float32)
    bounds_32, want = bounds_and_log_t(jnp.float32)
    assert bounds_x64.dtype == bounds_32.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(bounds_x64), np.asarray(bounds_32))
    np.testing.assert_allclose(np.asarray(bounds_32), want, rtol=1e-6)


@pytest.mark.slow  # 10 s in the fast tier (2 idle cores)
@pytest.mark.mutation
def test_max_steps_sets_exhausted():
    """SP-PFR is exact, so a search stopped by the step limit is ``exhausted``; an eager encode warns
    beforehand when ``D_inf[Q || P'] = 4.2`` bits exceeds ``log2(max_steps) + 1`` (the bins far from
    ``Q`` keep weight ``2^-16`` each, :func:`~jaxrec.coders.sp.partition.quantized_weights`: with
    their float ``Q`` masses of ``e^-200`` and less it was 9.6 bits)."""
    target = jaxrec.DiagGaussian(jnp.array([2.0]), jnp.array([0.05]))
    coder = jaxrec.sp_pfr(Partition(np.array([8])), "q_mass", chunk_size=4, max_steps=8)
    keys = jax.random.split(jax.random.key(0), 64)
    hopeless = r"^sp_pfr: the expected number of steps, 2\^4\.2, exceeds the limit of 8 "
    with pytest.warns(RuntimeWarning, match=hopeless):  # the target is not traced by this vmap
        codes = jax.vmap(coder.encode, in_axes=(0, None, None))(keys, target, std_normal(1))
    steps, exhausted = np.asarray(codes.steps), np.asarray(codes.exhausted)
    assert np.all(steps <= 8) and np.any(exhausted)
    # exhausted only at the limit; a search that stopped before it stopped by its rule
    assert np.all(steps[exhausted] == 8) and not np.any(exhausted[steps < 8])
    with pytest.warns(RuntimeWarning, match=r"^\{'exhausted': 1\} of 1 code\(s\) are not ok"), \
            pytest.warns(RuntimeWarning, match=hopeless):
        code = coder.encode(keys[int(np.flatnonzero(exhausted)[0])], target, std_normal(1))
    assert bool(code.exhausted) and int(code.steps) == 8


def test_errors_at_the_api_boundary():
    part = Partition(np.array([4, 4]))
    prior = std_normal(2)
    wide = jaxrec.DiagGaussian(jnp.zeros(2), jnp.array([1.5, 0.5]))
    with pytest.raises(InvalidArgumentError, match="Partition"):
        jaxrec.sp_pfr(np.array([4, 4]))
    with pytest.raises(InvalidArgumentError, match="event size"):
        jaxrec.sp_pfr(part).encode(0, jaxrec.DiagGaussian(jnp.zeros(3), jnp.ones(3)), std_normal(3))
    with pytest.raises(InvalidArgumentError, match="bounded"):
        jaxrec.sp_pfr(part).encode(0, wide, prior)
    with pytest.raises(InvalidArgumentError, match=r"^max_steps must be an int in \[1, 1073741824\], got 1073741825$"):
        jaxrec.sp_pfr(part, max_steps=2**30 + 1)
    with pytest.raises(InvalidArgumentError, match="table_size"):
        jaxrec.sp_pfr(part, table_size=0)
    with pytest.raises(InvalidArgumentError, match=r"^table_size must be an int in \[1, 65536\], got 131072$"):
        jaxrec.sp_pfr(part, table_size=2**17)  # above MAX_TABLE_SIZE = 2^16, a power of two
    with pytest.raises(InvalidArgumentError, match="^table_size must be a power of two, got 48$"):
        jaxrec.sp_pfr(part, table_size=48)
    assert [jaxrec.sp_pfr(part, table_size=t).spec.kwargs["table_size"] for t in (1, 2, 2**16)] == [1, 2, 2**16]
    with pytest.raises(InvalidArgumentError, match="weights"):
        jaxrec.sp_orc(part, 16, weights="sup_ratio").encode(0, wide, prior)
    with pytest.raises(InvalidArgumentError, match="num_samples"):
        jaxrec.sp_orc(part, 0)
    too_wide = r"^a space-partitioning search draws bins from axes of at most 32768 intervals, got max_intervals=32769$"
    for make in (jaxrec.sp_pfr, functools.partial(jaxrec.sp_orc, num_samples=16)):
        with pytest.raises(InvalidArgumentError, match=too_wide):
            make(Partition(np.array([2, 2]), max_intervals=2**15 + 1))
    assert jaxrec.sp_orc(Partition(np.array([2**15])), 16).spec.kwargs["max_intervals"] == 2**15


@pytest.mark.slow  # 6.5 s cold in the fast tier (eight compiled table builds)
@pytest.mark.mutation
def test_weight_check_is_compiled_batched_and_silent_inside_jit():
    """The boundary check of the bin weights runs one compiled program over a batch (one NaN bound
    among good ones is found) and stays silent inside a trace, also when the target is a constant
    of the traced function (the coder's in-search status flags it there)."""
    part = Partition(np.array([4, 4]))
    prior = std_normal(2)
    batch = jaxrec.DiagGaussian(jnp.zeros((3, 2)), jnp.array([[0.5, 0.5], [1.5, 0.5], [0.3, 0.9]]))
    bits = np.asarray(batch_reweighted_dinf(batch, prior, part, "sup_ratio"))
    assert np.isnan(bits[1]) and np.isfinite(bits[[0, 2]]).all()
    single = jax.jit(reweighted_dinf, static_argnums=3)
    item = lambda tree, i: jax.tree.map(lambda a: a[i], tree)
    for i in (0, 2):
        np.testing.assert_allclose(bits[i], single(item(batch, i), prior, part, "sup_ratio"), rtol=1e-6)
    message = ("the bin weights are undefined for this target (e.g. 'sup_ratio' with an unbounded density "
               "ratio); use weights='q_mass'")
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message)}$"):
        check_weights(batch, prior, part, "sup_ratio")
    priors = jaxrec.DiagGaussian(jnp.zeros((3, 2)), jnp.array([[1.0, 1.0], [2.0, 1.0], [1.0, 0.2]]))  # one per problem
    per_item = [float(single(item(batch, i), item(priors, i), part, "q_mass")) for i in range(3)]
    np.testing.assert_allclose(batch_reweighted_dinf(batch, priors, part, "q_mass"), per_item, rtol=1e-6)
    check_weights(batch, prior, part, "q_mass")
    jax.jit(lambda: check_weights(batch, prior, part, "sup_ratio"))()  # constants inside a trace
    jax.jit(lambda loc: check_weights(jaxrec.DiagGaussian(loc, batch.scale), prior, part, "sup_ratio"))(batch.loc)


def test_sp_pfr_factory_spec_header_message_and_code_message():
    """One coder per configuration with its documented defaults; the header message is the bin (plan
    alphabet) and the within-bin index under the Zipf model of ``KL - mean_b log2 J_b`` (He, Flamich &
    Hernandez-Lobato, NeurIPS 2024, Sec. 3); a code's own message carries the same two fields. No
    search compiles here (coders/sp/_sp_pfr mutation survivors)."""
    part = Partition(np.array([2, 2]))
    assert jaxrec.sp_pfr(part) is jaxrec.sp_pfr(part)
    assert jaxrec.sp_pfr(part).spec.kwargs == {"num_intervals": (2, 2), "max_intervals": 2, "chunk_size": 256,
                                               "max_steps": 2**26, "table_size": 4096, "shared_keys": True}
    for bad in (1, None, "yes"):
        with pytest.raises(InvalidArgumentError, match=f"^shared_keys must be a bool, got {bad!r}$"):
            jaxrec.sp_pfr(part, shared_keys=bad)
    # labelled streams exactly when every bin of the shape packs into 32 bits: 16 axes of 4 intervals, not 17
    assert [labelled_streams(Partition(np.full(d, 4)), True) for d in (16, 17)] == [True, False]
    assert [labelled_streams(Partition(np.full(d, 8)), True) for d in (10, 11)] == [True, False]  # 30 and 33 bits
    # the file format's contract: float32 codes decode from version 3 on, and a header before version 5
    # stores no shared_keys and was drawn with per-bin keys (tests/data/digits_format{3,4}.jxr, slow)
    entry = REGISTRY["sp_pfr"]
    assert entry.oldest_format == {"float32": 3}
    assert entry.header_params(4) == (("chunk_size", "max_steps", "table_size"), {"shared_keys": False})
    assert entry.header_params(5) == (("chunk_size", "max_steps", "table_size", "shared_keys"), {})
    assert not labelled_streams(Partition(np.array([2, 2])), False)
    assert labelled_streams(Partition(np.array([1, 1]), 2**16), True) and not labelled_streams(Partition(np.array([1, 1, 1]), 2**16), True)
    counts = np.array([[2, 2], [4, 2], [8, 8]])  # three blocks of two axes: log2 J = 2, 3, 6
    plan = types.SimpleNamespace(partitions=types.SimpleNamespace(num_intervals=counts))
    names, models = zip(*REGISTRY["sp_pfr"].message(jaxrec.sp_pfr(part).spec, 7.5, plan))
    assert names == ("bin", "index") and isinstance(models[0], entropy.PlanAlphabetModel)
    assert models[1] == jaxrec.entropy.ZipfModel(float(np.float32(jaxrec.entropy.zipf_exponent(7.5 - 11 / 3))))
    assert REGISTRY["sp_pfr"].alphabet(plan, "bin").tolist() == counts.tolist()
    code = SPCode(bin=jnp.array([1, 0], jnp.int32), index=jnp.int32(3), steps=jnp.int32(9), status=jnp.int32(OK),
                  coder="sp_pfr", event_size=2)
    assert {k: np.asarray(v).tolist() for k, v in code.message.items()} == {"bin": [1, 0], "index": 3}


@pytest.mark.slow  # 4.3 s cold in the fast tier
@pytest.mark.mutation
def test_sp_orc_factory_spec_message_and_status():
    """One coder per configuration; the spec records the resolved chunk size (default min(N, 1024));
    the header message is the bin (plan alphabet) and the index (uniform on [0, N)); SP-ORC is
    not exact, so a search that scans all N candidates is ``ok``, not ``exhausted``, and no
    warning says the expected steps exceed N (coders/sp/_sp_orc mutation survivors)."""
    part = Partition(np.array([2, 2]))
    assert jaxrec.sp_orc(part, 4096) is jaxrec.sp_orc(part, 4096)
    assert jaxrec.sp_orc(part, 4096).spec.kwargs["chunk_size"] == 1024
    assert jaxrec.sp_orc(part, 16).spec.kwargs["chunk_size"] == 16
    spec = jaxrec.sp_orc(part, 16).spec
    (bin_name, bin_model), (index_name, index_model) = sp_orc_message(spec, 5.0, None)
    assert (bin_name, index_name) == ("bin", "index")
    assert isinstance(bin_model, entropy.PlanAlphabetModel) and index_model == entropy.UniformModel(16)
    narrow = jaxrec.DiagGaussian(jnp.array([0.5, -0.4]), jnp.array([0.02, 0.03]))  # D_inf about 11 bits > log2 16 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = jaxrec.sp_orc(part, 16).encode(0, narrow, std_normal(2))
    assert int(code.status) == OK and int(code.steps) == 16


@pytest.mark.slow  # 13 s cold in the fast tier (SP-ORC's encoder and decoder)
def test_sp_orc_takes_a_target_wider_than_the_prior():
    part = Partition(np.array([4, 4]))
    prior = std_normal(2)
    wide = jaxrec.DiagGaussian(jnp.zeros(2), jnp.array([1.5, 0.5]))
    code = jaxrec.sp_orc(part, 16).encode(0, wide, prior)  # ORC needs no bounded ratio
    assert 0 <= int(code.index) < 16 and np.all(np.isfinite(jaxrec.sp_orc(part, 16).decode(0, code, prior)))


# ------------------------------------------------------------------------------------------------
# Uniform priors (issue 17): a uniform target inside a shifted, scaled uniform prior box.

UNIFORM_PRIOR = jaxrec.Uniform(jnp.array([-2.0, 0.5]), jnp.array([1.0, 4.5]))  # widths 3 and 4
UNIFORM_TARGET = jaxrec.Uniform(jnp.array([-1.0, 1.0]), jnp.array([-0.2, 1.5]))  # D_inf = log2(3/0.8 * 4/0.5) bits
UNIFORM_PART = Partition(np.array([2, 4]))


def _inside(xs, box):
    return np.all((xs >= np.asarray(box.low) - 1e-6) & (xs <= np.asarray(box.high) + 1e-6), axis=1)


@pytest.mark.slow  # 10 s cold per weighting
@pytest.mark.parametrize("weights", ["sup_ratio", "q_mass"])
def test_sp_coders_take_a_uniform_prior(weights):
    num = 256
    targets = broadcast_target(UNIFORM_TARGET, num)
    codes, xs = run(jaxrec.sp_pfr(UNIFORM_PART, weights, chunk_size=32), targets, UNIFORM_PRIOR, num=num, seed=5)
    assert np.all(np.asarray(codes.status) == OK)
    assert np.all(_inside(xs, UNIFORM_TARGET))  # an exact coder returns only points of Q's support
    codes, xs = run(jaxrec.sp_orc(UNIFORM_PART, 64, weights=weights), targets, UNIFORM_PRIOR, num=num, seed=5)
    assert np.all(np.asarray(codes.status) == OK) and np.all(_inside(xs, UNIFORM_PRIOR))
    assert np.mean(_inside(xs, UNIFORM_TARGET)) > 0.99  # 64 candidates from bins that meet Q's box


@pytest.mark.slow
def test_sp_pfr_with_a_uniform_prior_is_exact_and_takes_two_to_the_reweighted_dinf_steps():
    targets = broadcast_target(UNIFORM_TARGET, NUM)
    codes, xs = run(jaxrec.sp_pfr(UNIFORM_PART, chunk_size=64), targets, UNIFORM_PRIOR, seed=7)
    low, high = np.asarray(UNIFORM_TARGET.low, np.float64), np.asarray(UNIFORM_TARGET.high, np.float64)
    for d in range(2):
        assert stats.kstest(xs[:, d], stats.uniform(low[d], high[d] - low[d]).cdf).pvalue > 1e-3, f"axis {d}"
    steps = np.asarray(codes.steps, np.float64)
    want = 2.0 ** float(reweighted_dinf(UNIFORM_TARGET, UNIFORM_PRIOR, UNIFORM_PART, "sup_ratio"))
    assert abs(steps.mean() - want) < 4 * steps.std() / np.sqrt(NUM), (steps.mean(), want)
    assert want < 2.0 ** float(jaxrec.dinf(UNIFORM_TARGET, UNIFORM_PRIOR))  # the partition shortens the search


def test_message_lengths_and_index_budget_are_pinned():
    """The ideal SP code length is ``log2 J + zipf_bits(n, alpha)`` per item (``J = prod_d J_d``
    over the last axis) and the index budget ``max(KL - log2 J, 0)``, in float64."""
    budget = sp_index_budget_bits(np.array([5.0, 2.0, 7.5]), np.array([3.0, 4.0, 7.5]))
    assert budget.dtype == np.float64
    np.testing.assert_array_equal(budget, [2.0, 0.0, 0.0])
    counts = np.array([[2, 4, 1], [8, 2, 1]])  # log2 J = 3 and 4
    index, alpha = jnp.array([0, 5]), 1.7
    want = np.array([3.0, 4.0]) + np.asarray(entropy.zipf_bits(index, alpha), np.float64)
    np.testing.assert_allclose(np.asarray(sp_ideal_bits(index, counts, alpha)), want, rtol=1e-6)
