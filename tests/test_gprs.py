"""Tests for greedy Poisson rejection sampling: global, parallel and branch-and-bound (jaxrec.gprs, gprs_bnb)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tree_reference
from sampler_helpers import (
    compiled,
    encode_decode,
    gaussian_log_ratio,
    gaussian_pair,
    gaussian_width,
)
from scipy import integrate, stats

import jaxrec
from jaxrec import search
from jaxrec.coders.base import EXHAUSTED, OK, UNBOUNDED_RATIO
from jaxrec.coders.greedy import widths
from jaxrec.core import arrivals, prng
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


@functools.partial(jax.jit, static_argnums=(2, 3))
def _gprs_randomness(keys, prior, num_streams, positions):
    """The library's randomness a GPRS search of each key reads, per stream ``j``: candidates
    ``X^j_n`` of shared stream ``j`` and the integer arrival increments (``Exp(1)`` on the 2^-24
    grid), ``(P, J, positions)`` each."""
    ns = jnp.arange(positions, dtype=jnp.int32)
    streams = jnp.arange(num_streams, dtype=jnp.int32)
    draw = lambda key, j: (prng.candidates(key, ns, prior, stream=j)[:, 0], arrivals.exponential_increments(key, ns, stream=j))
    return jax.vmap(lambda key: jax.vmap(lambda j: draw(key, j))(streams))(keys)


def _gprs_reference(xs, increments, row, num_streams):
    """Sequential (parallel) GPRS (Flamich, NeurIPS 2023, Alg. 3 and 4) in float64 for a 1-D
    Gaussian pair, with its own stretch function ``sigma(h) = int_0^h d eta / (1 - W(eta))`` (``W``
    in closed form, :func:`sampler_helpers.gaussian_width`, integrated by quadrature): stream ``j``'s
    times are ``T^j_n = J (E^j_1 + ... + E^j_n)`` (exact integer sums), point ``(j, n)`` is accepted
    iff ``T^j_n <= sigma(r(X^j_n))``, and the streams advance in lockstep until the best accepted
    time is at most every stream's current time.  Returns ``(index J n + j, positions examined)``,
    ``(None, positions)`` without an acceptance."""
    quad, lin, const = gaussian_log_ratio(row)
    w = gaussian_width(row)
    sigma = lambda h: integrate.quad(lambda eta: 1.0 / (1.0 - w(eta)), 0.0, h, epsrel=1e-10, limit=200)[0]
    times = num_streams * np.cumsum(np.asarray(increments, np.float64), axis=1) / 2.0**24  # (J, positions)
    xs = np.asarray(xs, np.float64)
    ratios = np.exp(quad * xs**2 + lin * xs + const)
    best, index = np.inf, None
    for n in range(times.shape[1]):
        if best <= times[:, n].min():
            return index, n
        for j in range(num_streams):
            if times[j, n] < best and times[j, n] <= sigma(ratios[j, n]):
                best, index = times[j, n], num_streams * n + j
    return index, times.shape[1]


@pytest.mark.slow  # 8 s cold per case in the fast tier (2 idle cores)
@pytest.mark.mutation
@pytest.mark.parametrize("num_streams", [1, 3])
def test_gprs_accepts_the_point_a_sequential_float64_reference_accepts(num_streams):
    """Index, steps and status equal the reference's on 16 keys of a shifted, scale-2 prior (global
    and 3 parallel streams); with ``max_steps = 4`` a key the reference needs more positions for is
    ``EXHAUSTED`` at 4 (coders/greedy/_gprs mutation survivors: only bad inputs were fast-tested)."""
    row = KS_PAIRS[1]
    target, prior = gaussian_pair(row)
    keys = jax.random.split(jax.random.key(43), 16)
    codes = compiled(jaxrec.gprs(num_streams=num_streams, chunk_size=4))[0](keys, target, prior)
    short = compiled(jaxrec.gprs(num_streams=num_streams, chunk_size=4, max_steps=4))[0](keys, target, prior)
    xs, increments = _gprs_randomness(keys, prior, num_streams, 64)
    for i in range(len(keys)):
        index, steps = _gprs_reference(xs[i], increments[i], row, num_streams)
        assert (int(codes.index[i]), int(codes.steps[i]), int(codes.status[i])) == (index, steps, OK), i
        if steps <= 4:
            assert (int(short.index[i]), int(short.steps[i]), int(short.status[i])) == (index, steps, OK), i
        else:
            assert (int(short.steps[i]), int(short.status[i])) == (4, EXHAUSTED), i
    # the decoder rebuilds the accepted point: candidate n of stream j for index J n + j
    decoded = np.asarray(compiled(jaxrec.gprs(num_streams=num_streams, chunk_size=4))[1](keys, codes, prior))[:, 0]
    stream, position = np.asarray(codes.index) % num_streams, np.asarray(codes.index) // num_streams
    np.testing.assert_array_equal(decoded, np.asarray(xs)[np.arange(len(keys)), stream, position])


def test_gprs_factory_defaults():
    assert jaxrec.gprs() is jaxrec.gprs()  # one coder per configuration
    assert jaxrec.gprs().spec.kwargs == {"num_streams": 1, "chunk_size": 256, "max_steps": 2**24}
    jaxrec.gprs(max_steps=search.MAX_CANDIDATES)  # J * max_steps at the limit: the largest index fits
    with pytest.raises(InvalidArgumentError, match="num_streams \\* max_steps must be"):
        jaxrec.gprs(num_streams=2, max_steps=search.MAX_CANDIDATES // 2 + 1)
    with pytest.raises(InvalidArgumentError, match="num_streams must be"):
        jaxrec.gprs(num_streams=2**16 + 1, max_steps=1)


@pytest.mark.slow  # 8 s cold in the fast tier (two programs)
@pytest.mark.mutation
def test_gprs_float32_codes_do_not_depend_on_the_x64_flag():
    """A float32 pair gives the same codes with x64 on (the arrival times follow the prior's dtype)."""
    target, prior = gaussian_pair(KS_PAIRS[1])
    keys = jax.random.split(jax.random.key(44), 8)
    want = compiled(jaxrec.gprs(num_streams=3, chunk_size=4))[0](keys, target, prior)
    with jax.enable_x64(True):
        f32 = lambda d: jaxrec.DiagGaussian(jnp.float32(d.loc), jnp.float32(d.scale))
        got = jax.jit(jax.vmap(jaxrec.gprs(num_streams=3, chunk_size=4).encode, in_axes=(0, None, None)))(
            keys, f32(target), f32(prior))
    for field in ("index", "steps", "status"):
        np.testing.assert_array_equal(np.asarray(getattr(got, field)), np.asarray(getattr(want, field)), field)


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
    # one Gaussian of the two is not enough (coders/tree/_gprs_bnb mutation survivor: the type check's ``and``)
    with pytest.raises(InvalidArgumentError, match="^gprs_bnb supports DiagGaussian pairs, got Uniform and DiagGaussian$"):
        CODERS["sac"].encode(0, jaxrec.Uniform(-0.5, 0.5), prior)
    with pytest.raises(InvalidArgumentError, match="made by"):
        CODERS["sac"].decode(0, jaxrec.Code(0, 1, 0, coder="pfr", event_size=1), prior)
    with pytest.raises(InvalidArgumentError, match="seed must be in"):
        CODERS["gprs"].encode(2**40, jaxrec.DiagGaussian(0.0, 0.5), prior)


def _bnb_reference(tree, row):
    """Branch-and-bound GPRS (Flamich, NeurIPS 2023, Alg. 5) replayed on the float64 tree of
    :mod:`tree_reference` without a queue: the nodes are visited in increasing arrival time ``T_B``;
    a node is popped iff its parent was popped (and not accepted) and, below the root, it is alive,
    ``sigma(sup_B r) >= T_B``; the first popped node with ``T_B <= sigma(r(X_B))`` is accepted.
    ``sigma(h) = int_0^h d eta / (1 - W(eta))`` by quadrature of the closed-form ``W``.  Returns
    ``(accepted position, steps, largest queue)``: steps count the popped nodes, the queue holds the
    alive children of popped nodes not yet popped."""
    w = gaussian_width(row)
    r_star = np.exp(tree.log_r_star)

    def sigma(h):
        if h >= r_star * (1.0 - 1e-9):  # the mode's node: sigma(r*) is infinite
            return np.inf
        return integrate.quad(lambda eta: 1.0 / (1.0 - w(eta)), 0.0, h, epsrel=1e-10, limit=200)[0]

    def alive(pos):
        return sigma(np.exp(tree.log_sup[pos])) >= tree.t[pos]

    popped, queue, largest, steps = np.zeros(tree.t.size, bool), 1, 1, 0
    for pos in np.argsort(tree.t):
        if pos > 0 and not (popped[(pos + 1) // 2 - 1] and alive(pos)):
            continue
        assert 2 * pos + 2 < tree.t.size, "the reference tree is too shallow"
        popped[pos], steps, queue = True, steps + 1, queue - 1
        if tree.t[pos] <= sigma(np.exp(tree.log_r[pos])):
            return pos, steps, largest
        queue += int(alive(2 * pos + 1)) + int(alive(2 * pos + 2))
        largest = max(largest, queue)
    raise AssertionError("unreachable: the tree is too shallow")


@pytest.mark.slow  # 8-10 s cold per split in the fast tier
@pytest.mark.mutation
@pytest.mark.parametrize("split", ["sample", "dyadic"])
def test_bnb_accepts_the_node_a_float64_tree_reference_accepts(split):
    """Split-on-sample and dyadic branch-and-bound GPRS against :func:`_bnb_reference` on 16 keys of a
    shifted, scale-2 prior (the tree to depth 10 computed independently in float64, only the node
    draws from the library): the accepted node (depth and path), ``steps`` and ``OK`` exactly, and the
    decoder's sample is that node's; with ``max_steps = 2`` a key the reference needs more pops for is
    ``EXHAUSTED`` at 2, and with ``capacity = 1`` (dyadic) ``EXHAUSTED`` exactly where its queue holds 2
    (coders/tree/_gprs_bnb mutation survivors: only bad inputs were fast-tested)."""
    row, depth = KS_PAIRS[1], 10
    target, prior = gaussian_pair(row)
    keys = jax.random.split(jax.random.key(54), 16)  # the searches stay above depth 8
    enc, dec = compiled(CODERS["sac" if split == "sample" else "dyadic"])
    codes = enc(keys, target, prior)
    xs = np.asarray(dec(keys, codes, prior)[:, 0], np.float64)
    limited = jaxrec.gprs_bnb(split, max_steps=2) if split == "sample" else jaxrec.gprs_bnb(split, capacity=1)
    short = compiled(limited)[0](keys, target, prior)
    got, got_short = tree_reference.code_fields(codes), tree_reference.code_fields(short)
    u, e = tree_reference.node_randomness(keys, depth, np.asarray(codes.path).shape[-1])
    for i in range(len(keys)):
        nodes = tree_reference.Tree(u[i], e[i], row, split)
        best, steps, queue = _bnb_reference(nodes, row)
        assert got[i].tolist() == [nodes.depth[best], nodes.word[best], steps, OK], i
        np.testing.assert_allclose(xs[i], row[2] + row[3] * nodes.z[best], rtol=1e-5, atol=1e-5 * row[1])
        fits = steps <= 2 if split == "sample" else queue <= 1
        if fits:
            assert got_short[i].tolist() == got[i].tolist(), i
        else:
            assert got_short[i, 3] == EXHAUSTED and (split == "dyadic" or got_short[i, 2] == 2), i
    assert (got_short[:, 3] == EXHAUSTED).any() and (got_short[:, 3] == OK).any()


@pytest.mark.slow  # 8-18 s cold (one more program)
@pytest.mark.mutation
def test_bnb_depth_limit_stops_the_search_when_the_queue_empties():
    """With ``max_depth = 1`` at most the root and its two children are popped: a search whose queue
    empties without an acceptance stops there ``EXHAUSTED`` instead of popping an empty queue up to
    ``max_steps``; a node at depth 1 can still be accepted (coders/tree/_gprs_bnb mutation survivors
    ``heap.size >= 0`` and ``depth >= max_depth``)."""
    target, prior = gaussian_pair(KS_PAIRS[1])
    keys = jax.random.split(jax.random.key(54), 16)
    codes = compiled(jaxrec.gprs_bnb("sample", max_depth=1))[0](keys, target, prior)
    steps, status = np.asarray(codes.steps), np.asarray(codes.status)
    assert steps.max() <= 3 and (status == EXHAUSTED).any() and (status == OK).any(), (steps, status)
    assert ((np.asarray(codes.depth) == 1) & (status == OK)).any()  # depth 1 itself is allowed


@pytest.mark.slow  # 9 s cold (two more programs)
def test_bnb_under_a_depth_limit_is_ok_only_where_it_equals_the_unlimited_search():
    """A node cut by the depth limit might have been accepted before the node the limited search
    accepts, so a limited search that cut one ends ``EXHAUSTED`` even if it then accepts a node;
    where it ends ``OK`` its node is the unlimited search's (with one path word, so the same tree).
    Written for the mutation survivor ``depth_cut & ...`` (the cut not remembered), which it does not
    kill: no search here accepts a node after a cut."""
    target, prior = gaussian_pair(KS_PAIRS[1])
    keys = jax.random.split(jax.random.key(55), 64)
    limited = tree_reference.code_fields(compiled(jaxrec.gprs_bnb("sample", max_depth=1))[0](keys, target, prior))
    # the same tree: node keys fold in the path words, one word up to depth 32
    full = tree_reference.code_fields(compiled(jaxrec.gprs_bnb("sample", max_depth=32))[0](keys, target, prior))
    ok = limited[:, 3] == OK
    assert ok.any() and (~ok).any() and (full[:, 3] == OK).all()
    np.testing.assert_array_equal(limited[ok, :2], full[ok, :2])
