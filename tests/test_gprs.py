"""Tests for greedy Poisson rejection sampling: global, parallel and branch-and-bound (jaxrec.gprs, gprs_bnb)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sampler_helpers import compiled, encode_decode, gaussian_pair
from scipy import stats

import jaxrec
from jaxrec.coders.base import UNBOUNDED_RATIO
from jaxrec.coders.greedy import widths
from jaxrec.core import prng
from jaxrec.core.errors import InvalidArgumentError

N = 5000
# (target loc, target scale, prior loc, prior scale): D_inf from 0.3 to 5 bits, a non-standard prior.
KS_PAIRS = [(1.0, 0.25, 0.0, 1.0), (3.0, 0.3, 1.0, 2.0), (-1.5, 0.1, 0.0, 1.0), (0.0, 0.8, 0.0, 1.0)]
CODERS = {
    "gprs": jaxrec.gprs(chunk_size=32),
    "parallel": jaxrec.gprs(num_streams=4, chunk_size=8),
    "sac": jaxrec.gprs_bnb("sample"),
    "dyadic": jaxrec.gprs_bnb("dyadic"),
}
@pytest.fixture(scope="module")
def ks_runs():
    """Every coder on every KS pair: ``{(name, pair index): (keys, codes, xs)}``."""
    return {
        (name, i): encode_decode(coder, row, N, seed=10 + i) for name, coder in CODERS.items() for i, row in enumerate(KS_PAIRS)
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CODERS))
def test_exact_ks(ks_runs, name):
    for i, row in enumerate(KS_PAIRS):
        _, codes, xs = ks_runs[name, i]
        assert not bool(np.any(codes.exhausted))
        p = stats.kstest(xs, stats.norm(row[0], row[1]).cdf).pvalue
        assert p > 1e-3, (name, row, p)


@pytest.mark.slow
def test_uniform_pair_ks_and_steps():
    target, prior = jaxrec.Uniform(0.2, 0.45), jaxrec.Uniform(0.0, 1.0)
    enc, dec = compiled(CODERS["gprs"])
    keys = jax.random.split(jax.random.key(5), N)
    codes = enc(keys, target, prior)
    xs = np.asarray(dec(keys, codes, prior)[:, 0])
    assert stats.kstest(xs, stats.uniform(0.2, 0.25).cdf).pvalue > 1e-3
    steps = np.asarray(codes.steps, np.float64)  # geometric: accept the first candidate inside
    assert abs(steps.mean() - 4.0) < 4 * steps.std() / np.sqrt(N)


@pytest.fixture(scope="module")
def global_run():
    """Global GPRS on Q = N(1, 1/16), P = N(0, 1): r* = 6.82, D_CS = 2.568 bits (reference §12)."""
    return encode_decode(CODERS["gprs"], KS_PAIRS[0], N, seed=3)


@pytest.mark.slow
def test_mean_steps_is_r_star(global_run):
    _, codes, _ = global_run
    steps = np.asarray(codes.steps, np.float64)
    r_star = float(np.exp(jaxrec.log_sup_ratio(*gaussian_pair(KS_PAIRS[0]))))
    assert abs(steps.mean() - r_star) < 4 * steps.std() / np.sqrt(steps.size)
    np.testing.assert_array_equal(np.asarray(codes.index) + 1, np.asarray(codes.steps))  # J = 1: steps = N


@pytest.mark.slow
def test_index_entropy_within_d_cs_bounds(global_run):
    """D_CS <= H[N] <= D_CS + log2(e + 1) (Goc & Flamich 2024), plug-in entropy of 5000 indices
    (its downward bias is about (support size) / (2 N ln 2) = 0.01 bits here)."""
    _, codes, _ = global_run
    _, counts = np.unique(np.asarray(codes.index), return_counts=True)
    p = counts / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    d_cs = float(widths.d_cs(widths.pair_widths(*gaussian_pair(KS_PAIRS[0]))))
    assert d_cs <= entropy <= d_cs + np.log2(np.e + 1), (d_cs, entropy)


@pytest.mark.slow
def test_decoder_rebuilds_the_chosen_candidate(ks_runs):
    _, prior = gaussian_pair(KS_PAIRS[1])
    for name, streams in (("gprs", 1), ("parallel", 4)):
        keys, codes, xs = ks_runs[name, 1]
        index = np.asarray(codes.index)
        candidates = jax.jit(prng.candidates)  # the encoder generates candidates compiled, too
        for i in range(0, N, 997):
            want = candidates(keys[i], jnp.asarray([index[i] // streams]), prior, int(index[i] % streams))
            assert xs[i] == float(want[0, 0])
        assert np.all(index < np.asarray(codes.steps) * streams)


@pytest.mark.slow
def test_parallel_streams_cut_the_steps():
    row = KS_PAIRS[2]  # r* = 31
    r_star = float(np.exp(jaxrec.log_sup_ratio(*gaussian_pair(row))))
    _, codes, _ = encode_decode(CODERS["parallel"], row, N, seed=21)
    steps = np.asarray(codes.steps, np.float64)
    assert steps.mean() < 0.4 * r_star  # about r*/J + 1 with J = 4
    streams = np.bincount(np.asarray(codes.index) % 4, minlength=4) / steps.size
    np.testing.assert_allclose(streams, 0.25, atol=0.03)  # the winning stream is uniform


@pytest.mark.slow
def test_chunk_size_jit_and_batch_invariance(ks_runs):
    target, prior = gaussian_pair(KS_PAIRS[0])
    keys, reference, _ = ks_runs["gprs", 0]  # chunk size 32
    parallel = [jax.jit(jax.vmap(jaxrec.gprs(num_streams=3, chunk_size=k).encode, in_axes=(0, None, None)))(
        keys, target, prior) for k in (1, 16)]
    for a, b in zip(*(jax.tree.leaves(c) for c in parallel)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    coder = CODERS["gprs"]
    targets = jaxrec.DiagGaussian(jnp.full((N, 1), KS_PAIRS[0][0]), jnp.full((N, 1), KS_PAIRS[0][1]))
    batched = jax.jit(lambda k, t: coder.encode_batch(k, t, prior, num_lanes=64))(keys, targets)
    for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(batched)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_bnb_steps_grow_linearly_in_kl_not_exponentially_in_dinf():
    prior = jaxrec.DiagGaussian(0.0, 1.0)
    enc, _ = compiled(CODERS["sac"])
    keys = jax.random.split(jax.random.key(9), N)

    def mean_steps(loc, scale):
        target = jaxrec.DiagGaussian(loc, scale)
        codes = enc(keys, target, prior)
        assert not bool(np.any(codes.exhausted))
        return float(np.mean(codes.steps)), float(jaxrec.kl(target, prior)), float(jaxrec.dinf(target, prior))

    # KL 3.3 and 11.3 bits: about 1.4 steps per bit (reference: sac about 1.4 steps per bit)
    runs = [mean_steps(0.0, 2.0**-k) for k in (4, 12)]
    slope = (runs[1][0] - runs[0][0]) / (runs[1][1] - runs[0][1])
    assert 0.7 < slope < 2.0, runs
    assert runs[-1][0] < 2.0 * runs[-1][1] + 3
    # same KL (2.6 bits), D_inf 3.3 vs 13.8 bits: 2^{D_inf} grows 1400-fold, BnB steps do not
    a, b = mean_steps(0.0, 0.1), mean_steps(1.897, 0.9)
    assert abs(a[1] - b[1]) < 0.05 and b[2] - a[2] > 10
    assert b[0] < 2 * a[0] + 2, (a, b)
    dyadic = compiled(CODERS["dyadic"])[0](keys, jaxrec.DiagGaussian(1.897, 0.9), prior)
    assert float(np.mean(dyadic.steps)) < 2 * a[0] + 2


@pytest.mark.slow  # 23 s in the fast tier (2 shared cores, load ~6)
def test_bnb_depth_beyond_31():
    """KL = 39 bits: paths deeper than 31 levels (no int32 heap index) decode exactly.  The target
    sits at 0, where float32 resolves its scale 2^-40 (elsewhere use float64)."""
    prior = jaxrec.DiagGaussian(0.0, 1.0)
    enc, dec = compiled(CODERS["sac"])
    keys = jax.random.split(jax.random.key(2), N)
    codes = enc(keys, jaxrec.DiagGaussian(0.0, 2.0**-40), prior)
    xs = np.asarray(dec(keys, codes, prior)[:, 0], np.float64)
    assert int(np.max(codes.depth)) > 40 and codes.path.shape == (N, 4)
    assert not bool(np.any(codes.exhausted))
    assert stats.kstest(xs / 2.0**-40, stats.norm().cdf).pvalue > 1e-3


@pytest.mark.slow  # 18 s in the fast tier (2 idle cores)
def test_limits_and_invalid_problems_are_flagged():
    target, prior = gaussian_pair(KS_PAIRS[2])
    keys = jax.random.split(jax.random.key(0), N)
    limited = jaxrec.gprs(chunk_size=4, max_steps=4)
    codes = jax.jit(jax.vmap(limited.encode, in_axes=(0, None, None)))(keys, target, prior)
    assert bool(np.any(codes.exhausted)) and np.all(np.asarray(codes.steps) <= 4)
    assert not bool(np.any(codes.exhausted & (np.asarray(codes.steps) < 4)))
    # an unbounded ratio inside jit (scale 1.5 > 1): no exception, every code flagged at once
    for name in ("gprs", "sac"):
        codes = compiled(CODERS[name])[0](keys, jaxrec.DiagGaussian(0.0, 1.5), prior)
        assert np.all(np.asarray(codes.status) == UNBOUNDED_RATIO) and int(np.max(codes.steps)) == 0


def test_bad_inputs_raise():
    prior = jaxrec.DiagGaussian(0.0, 1.0)
    with pytest.raises(InvalidArgumentError, match="num_streams"):
        jaxrec.gprs(num_streams=0)
    with pytest.raises(InvalidArgumentError, match="int32"):
        jaxrec.gprs(num_streams=1024, max_steps=2**22)
    with pytest.raises(InvalidArgumentError, match="split"):
        jaxrec.gprs_bnb("median")
    with pytest.raises(InvalidArgumentError, match="unbounded"):
        CODERS["gprs"].encode(0, jaxrec.DiagGaussian(0.0, 2.0), prior)
    with pytest.raises(InvalidArgumentError, match="factorized"):
        CODERS["gprs"].encode(0, jaxrec.DiagGaussian(jnp.zeros(2), 0.5), jaxrec.DiagGaussian(jnp.zeros(2), 1.0))
    with pytest.raises(InvalidArgumentError, match="DiagGaussian"):
        CODERS["sac"].encode(0, jaxrec.Uniform(0.2, 0.4), jaxrec.Uniform(0.0, 1.0))
    with pytest.raises(InvalidArgumentError, match="made by"):
        CODERS["sac"].decode(0, jaxrec.Code(0, 1, 0, coder="pfr", event_size=1), prior)
    with pytest.raises(InvalidArgumentError, match="seed must be in"):
        CODERS["gprs"].encode(2**40, jaxrec.DiagGaussian(0.0, 0.5), prior)
