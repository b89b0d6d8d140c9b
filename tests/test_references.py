"""Coders and pair quantities against references that share nothing with the library but its randomness.

Each reference takes the shared random numbers from :mod:`jaxrec.core.prng` (candidates, arrival
increments, tree-node keys: the part encoder and decoder must agree on) and does everything else --
densities, bounds, stop rules, arrival times, argmaxes -- with its own float64 numpy/scipy arithmetic:

* PFR (Li & El Gamal 2018) run sequentially, candidate by candidate: the index **and the step count**
  must match exactly (the stop rule fires at the first ``n`` with ``T_n / M >= min_{m<n} T_m / r(X_m)``);
* A* coding on the dyadic tree (Flamich, Markou & Hernandez-Lobato 2022) by exhaustive enumeration
  of a shallow tree: DAD*'s node must be the argmax over all nodes; AD*'s and AS*'s wherever the
  enumeration certifies that no deeper node can win; the tree's node bounds against closed forms;
* ``log_sup_ratio`` / ``kl`` of a Uniform target against a shifted, non-unit-scale Gaussian prior
  against a dense grid and quadrature; ``mmd2_to_gaussian`` against quadrature; the law of
  ``sample_interval`` by KS.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

import jaxrec
from jaxrec import search
from jaxrec.coders.tree import partition_tree as tree
from jaxrec.core import arrivals, prng, truncated
from jaxrec.core.distributions import mmd2_to_gaussian

# ------------------------------------------------------------------------------------------------
# Densities with our own arithmetic


def log_density(dist, x: np.ndarray) -> np.ndarray:
    """``log p(x)`` summed over the last axis, float64, for DiagGaussian / Uniform parameters."""
    x = np.asarray(x, np.float64)
    if isinstance(dist, jaxrec.DiagGaussian):
        loc, scale = np.asarray(dist.loc, np.float64), np.asarray(dist.scale, np.float64)
        return np.sum(stats.norm.logpdf(x, loc, scale), axis=-1)
    low, high = np.asarray(dist.low, np.float64), np.asarray(dist.high, np.float64)
    inside = np.all((x >= low) & (x < high), axis=-1)
    return np.where(inside, -np.sum(np.log(high - low)), -np.inf)


def log_sup_ratio_reference(target, prior) -> float:
    """``ln sup q/p`` by hand: Gaussian target (``s_q < s_p``) or Uniform target, Gaussian prior."""
    mp, sp = np.asarray(prior.loc, np.float64), np.asarray(prior.scale, np.float64)
    if isinstance(target, jaxrec.DiagGaussian):
        mq, sq = np.asarray(target.loc, np.float64), np.asarray(target.scale, np.float64)
        # the maximiser of the concave quadratic log q - log p
        x = (mq / sq**2 - mp / sp**2) / (1 / sq**2 - 1 / sp**2)
    else:
        low, high = np.asarray(target.low, np.float64), np.asarray(target.high, np.float64)
        x = np.where(np.abs(low - mp) > np.abs(high - mp), low, high)  # the end farthest from the prior mean
        x = np.where(x == high, np.nextafter(high, -np.inf), x)
    return float(log_density(target, x) - log_density(prior, x))


# ------------------------------------------------------------------------------------------------
# PFR, sequentially


@functools.cache
def _shared_draws(max_n: int):
    """Jitted ``keys (P,) -> (candidates (P, max_n, D), arrival increments (P, max_n))``."""
    ns = jnp.arange(max_n, dtype=jnp.int32)
    return jax.jit(
        lambda keys, prior: jax.vmap(lambda k: (prng.candidates(k, ns, prior), arrivals.exponential_increments(k, ns)))(keys)
    )


def pfr_sequential(xs: np.ndarray, increments: np.ndarray, target, prior) -> tuple[int, int]:
    """``(index, steps)`` of PFR run candidate by candidate on one problem's shared draws
    (``xs (n, D)``, grid increments ``(n,)``) with float64 arithmetic of our own; ``steps`` is the
    first ``n`` at which the stop rule fires (the number of candidates examined)."""
    log_t = np.log(np.cumsum(increments.astype(np.int64)).astype(np.float64) * 2.0**-24)  # exact sums of 2^-24 units
    log_r = log_density(target, xs) - log_density(prior, xs)
    log_m = log_sup_ratio_reference(target, prior)
    best, index = -np.inf, 0
    for n in range(len(log_t)):
        if best >= log_m - log_t[n]:
            return index, n
        score = log_r[n] - log_t[n]
        if score > best:
            best, index = score, n
    raise AssertionError(f"the reference did not stop within {len(log_t)} candidates")


PFR_PAIRS = {
    "gauss-2d": (
        jaxrec.DiagGaussian(jnp.array([0.8, -0.4]), jnp.array([0.6, 0.9])),
        jaxrec.DiagGaussian(jnp.array([0.3, 0.2]), jnp.array([1.7, 1.3])),
    ),
    "uniform-in-gauss-2d": (
        jaxrec.Uniform(jnp.array([-0.9, 0.4]), jnp.array([0.1, 1.9])),
        jaxrec.DiagGaussian(jnp.array([-0.4, 0.5]), jnp.array([1.7, 0.8])),
    ),
}


@functools.cache
def _pfr_many():
    coder = jaxrec.pfr(chunk_size=32)
    return jax.jit(jax.vmap(coder.encode, in_axes=(0, None, None)))


@pytest.mark.parametrize("name", sorted(PFR_PAIRS))
def test_pfr_index_and_steps_equal_a_sequential_reference(name):
    target, prior = PFR_PAIRS[name]
    keys = jax.random.split(prng.as_key(7), 48)
    codes = _pfr_many()(keys, target, prior)
    steps = np.asarray(codes.steps)
    assert np.all(np.asarray(codes.status) == 0)
    # both sides must agree on the bound the stop rule uses
    assert float(jaxrec.log_sup_ratio(target, prior)) == pytest.approx(log_sup_ratio_reference(target, prior), rel=1e-5)
    max_n = 1 << int(np.max(steps) + 64).bit_length()
    xs, increments = (np.asarray(a) for a in _shared_draws(max_n)(keys, prior))
    for i in range(len(keys)):
        index, ref_steps = pfr_sequential(xs[i].astype(np.float64), increments[i], target, prior)
        assert (int(codes.index[i]), int(steps[i])) == (index, ref_steps), (name, i)


# ------------------------------------------------------------------------------------------------
# Uniform target, Gaussian prior with a shift and a non-unit scale


UNIFORM_PAIRS = [
    (jaxrec.Uniform([-0.9], [0.1]), jaxrec.DiagGaussian([-0.4], [1.7])),
    (jaxrec.Uniform([0.5], [2.5]), jaxrec.DiagGaussian([0.3], [0.6])),
    (jaxrec.Uniform([-3.0, 0.2], [-2.0, 0.3]), jaxrec.DiagGaussian([1.0, 0.0], [2.5, 0.05])),
]


@pytest.mark.parametrize("i", range(len(UNIFORM_PAIRS)))
def test_uniform_against_gaussian_sup_ratio_and_kl_match_numerics(i):
    target, prior = UNIFORM_PAIRS[i]
    low, high = np.asarray(target.low, np.float64), np.asarray(target.high, np.float64)
    per_dim_sup, per_dim_kl = [], []
    for d in range(target.event_size):
        q = stats.uniform(low[d], high[d] - low[d])
        p = stats.norm(float(prior.loc[d]), float(prior.scale[d]))
        grid = np.linspace(low[d], high[d], 200001)[:-1]
        per_dim_sup.append(np.max(q.logpdf(grid) - p.logpdf(grid)))
        per_dim_kl.append(integrate.quad(lambda x, q=q, p=p: q.pdf(x) * (q.logpdf(x) - p.logpdf(x)), low[d], high[d])[0])
    np.testing.assert_allclose(jaxrec.log_sup_ratio(target, prior, per_dim=True), per_dim_sup, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(jaxrec.dinf(target, prior), np.sum(per_dim_sup) / np.log(2), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(jaxrec.kl(target, prior, per_dim=True), np.array(per_dim_kl) / np.log(2), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_pfr_is_exact_for_a_uniform_target_in_a_scaled_shifted_gaussian_prior():
    target, prior = UNIFORM_PAIRS[0]
    keys = jax.random.split(prng.as_key(3), 5000)
    codes = _pfr_many()(keys, target, prior)
    xs = np.asarray(jax.jit(jax.vmap(jaxrec.pfr(chunk_size=32).decode, in_axes=(0, 0, None)))(keys, codes, prior))
    assert stats.kstest(xs[:, 0], stats.uniform(-0.9, 1.0).cdf).pvalue > 1e-3


# ------------------------------------------------------------------------------------------------
# A* coding on a shallow tree, exhaustively


@functools.cache
def _node_randomness_fn(num_words: int):
    def one(key, depth, word):
        path = jnp.zeros((num_words,), jnp.uint32).at[0].set(word)
        node = prng.tree_node_key(key, depth, path)
        return (
            jax.random.uniform(prng.node_location_key(node), (), jnp.float32),
            jax.random.exponential(prng.node_private_key(node), (), jnp.float32),
        )

    return jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0, 0)), in_axes=(0, None, None)))


def _node_randomness(keys, depths: np.ndarray, words: np.ndarray, num_words: int):
    """``(U, E)`` ``float64[P, M]`` of the nodes ``(depths[M], words[M])`` of every key: the shared randomness."""
    u, e = _node_randomness_fn(num_words)(keys, jnp.asarray(depths, jnp.int32), jnp.asarray(words, jnp.uint32))
    return np.asarray(u, np.float64), np.asarray(e, np.float64)


def _all_words(depth: int) -> list[np.ndarray]:
    """Per level ``k``, the path words of its ``2^k`` nodes in left-to-right order (bit ``l - 1`` = branch at level ``l``)."""
    levels = [np.zeros(1, np.int64)]
    for k in range(depth):
        levels.append(np.stack([levels[-1], levels[-1] | (1 << k)], axis=-1).reshape(-1))
    return levels


def exhaustive_tree(keys, target, prior, depth: int, split: str, num_words: int):
    """Enumerates every node of depth ``<= depth`` for each key; float64 arithmetic of our own.

    A node is a CDF interval ``[a, b)`` of the prior with mass ``m``; its sample is the prior's
    quantile at ``a + U (b - a)``; its arrival ``T = T_parent + E / m`` (root: ``E``).  ``dyadic``
    splits at the midpoint of ``[a, b)``, ``sample`` at the sample (masses ``U m``, ``(1 - U) m``).

    Returns ``(best_depth, best_word, best_score, deeper_bound)`` per key, where ``deeper_bound`` bounds
    the score of every node deeper than ``depth`` (``sup_B ln r - ln T_B`` over the deepest nodes).
    """
    mq, sq = float(target.loc[0]), float(target.scale[0])
    mp, sp = float(prior.loc[0]), float(prior.scale[0])
    mode = (mq / sq**2 - mp / sp**2) / (1 / sq**2 - 1 / sp**2)

    def log_r(x):
        return stats.norm.logpdf(x, mq, sq) - stats.norm.logpdf(x, mp, sp)

    def quantile(c):
        return mp + sp * special.ndtri(c)

    num = len(keys)
    a, b = np.zeros((num, 1)), np.ones((num, 1))
    t = np.zeros((num, 1))
    mass = np.ones((num, 1))
    levels = _all_words(depth)
    flat_u, flat_e = _node_randomness(
        keys, np.concatenate([np.full(w.size, k) for k, w in enumerate(levels)]), np.concatenate(levels), num_words
    )
    offsets = np.cumsum([0] + [w.size for w in levels])
    best = np.full(num, -np.inf)
    best_depth, best_word = np.zeros(num, np.int64), np.zeros(num, np.int64)
    for k in range(depth + 1):
        words = levels[k]
        u, e = flat_u[:, offsets[k] : offsets[k + 1]], flat_e[:, offsets[k] : offsets[k + 1]]
        t = t + e / mass
        c = a + u * (b - a)
        score = log_r(quantile(c)) - np.log(t)
        j = np.argmax(score, axis=1)
        better = score[np.arange(num), j] > best
        best = np.where(better, score[np.arange(num), j], best)
        best_depth = np.where(better, k, best_depth)
        best_word = np.where(better, words[j], best_word)
        if k == depth:
            lo, hi = quantile(a), quantile(b)
            sup = log_r(np.clip(mode, lo, hi))
            return best_depth, best_word, best, np.max(sup - np.log(t), axis=1)
        cut = (a + b) / 2 if split == tree.DYADIC_SPLIT else c
        child_mass = np.stack([mass / 2, mass / 2] if split == tree.DYADIC_SPLIT else [u * mass, (1 - u) * mass])
        # children in order (left, right) per node; the right child sets branch bit k (position k)
        a = np.stack([a, cut], axis=-1).reshape(num, -1)
        b = np.stack([cut, b], axis=-1).reshape(num, -1)
        mass = np.moveaxis(child_mass, 0, -1).reshape(num, -1)
        t = np.repeat(t, 2, axis=1)
    raise AssertionError("unreachable")


TREE_TARGET = jaxrec.DiagGaussian(0.9, 0.35)
TREE_PRIOR = jaxrec.DiagGaussian(0.4, 1.5)


def _tree_keys(n: int, seed: int):
    return jax.random.split(prng.as_key(seed), n)


@pytest.mark.slow  # 9 s in the fast tier (2 idle cores)
def test_dadstar_returns_the_argmax_over_every_node_of_its_tree():
    depth, keys = 5, _tree_keys(400, 21)
    codes = jax.jit(jax.vmap(jaxrec.dadstar(depth).encode, in_axes=(0, None, None)))(keys, TREE_TARGET, TREE_PRIOR)
    ref_depth, ref_word, _, _ = exhaustive_tree(keys, TREE_TARGET, TREE_PRIOR, depth, tree.DYADIC_SPLIT, 1)
    np.testing.assert_array_equal(np.asarray(codes.depth), ref_depth)
    np.testing.assert_array_equal(np.asarray(codes.path)[:, 0], ref_word)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adstar", "astar"])
def test_exact_astar_returns_the_global_argmax_where_a_shallow_tree_certifies_it(name):
    coder = {"adstar": jaxrec.adstar(), "astar": jaxrec.astar()}[name]
    split = tree.DYADIC_SPLIT if name == "adstar" else tree.SAMPLE_SPLIT
    depth, keys = 9, _tree_keys(1000, 22)
    codes = jax.jit(jax.vmap(coder.encode, in_axes=(0, None, None)))(keys, TREE_TARGET, TREE_PRIOR)
    words = int(np.asarray(codes.path).shape[-1])
    ref_depth, ref_word, best, deeper = exhaustive_tree(keys, TREE_TARGET, TREE_PRIOR, depth, split, words)
    certified = best > deeper + 1e-6  # no node below depth 9 can beat the best one above
    assert certified.mean() > 0.9
    np.testing.assert_array_equal(np.asarray(codes.depth)[certified], ref_depth[certified])
    np.testing.assert_array_equal(np.asarray(codes.path)[certified, 0], ref_word[certified])


@pytest.mark.slow  # 6 s cold in the fast tier for both splits
@pytest.mark.mutation
@pytest.mark.parametrize("split", [tree.DYADIC_SPLIT, tree.SAMPLE_SPLIT])
def test_tree_children_bounds_and_arrivals_match_closed_forms(split):
    """``child_nodes``: for random nodes, each child's bound is ``sup_C ln r - ln T_C`` and its score
    ``ln r(X_C) - ln T_C``, computed here from the node's interval (a bound 0.1 nats off fails)."""
    ratio = tree.gaussian_ratio(TREE_TARGET, TREE_PRIOR)
    mq, sq, mp, sp = 0.9, 0.35, 0.4, 1.5
    mode_z = ((mq / sq**2 - mp / sp**2) / (1 / sq**2 - 1 / sp**2) - mp) / sp
    rng = np.random.default_rng(5)
    children = jax.jit(lambda key, node: tree.child_nodes(key, ratio, node, split))
    for trial in range(12):
        lo_c, hi_c = np.sort(rng.uniform(0.02, 0.98, 2))
        lo, hi = special.ndtri(lo_c), special.ndtri(hi_c)
        u = rng.uniform(0.1, 0.9)
        cut = special.ndtri(lo_c + u * (hi_c - lo_c)) if split == tree.SAMPLE_SPLIT else special.ndtri((lo_c + hi_c) / 2)
        log_mass = np.log(hi_c - lo_c)
        log_t = rng.normal()
        node = tree.Node(
            jnp.int32(3), jnp.zeros((1,), jnp.uint32).at[0].set(0b101), jnp.float32(lo), jnp.float32(hi),
            jnp.float32(log_mass), jnp.float32(log_t), jnp.float32(u), jnp.float32(cut),
        )
        key = prng.as_key(trial)
        kids, scores, bounds = children(key, node)
        u_kids, e_kids = _node_randomness(key[None], np.array([4, 4]), np.array([0b101, 0b1101]), 1)
        if split == tree.SAMPLE_SPLIT:
            masses = np.array([u * (hi_c - lo_c), (1 - u) * (hi_c - lo_c)])
            cdf_lo, cdf_hi = np.array([lo_c, lo_c + u * (hi_c - lo_c)]), np.array([lo_c + u * (hi_c - lo_c), hi_c])
        else:
            masses = np.full(2, (hi_c - lo_c) / 2)
            cdf_lo, cdf_hi = np.array([lo_c, (lo_c + hi_c) / 2]), np.array([(lo_c + hi_c) / 2, hi_c])
        t_kids = np.exp(log_t) + e_kids[0] / masses
        z_kids = special.ndtri(cdf_lo + u_kids[0] * (cdf_hi - cdf_lo))

        def log_r(z):
            x = mp + sp * z
            return stats.norm.logpdf(x, mq, sq) - stats.norm.logpdf(x, mp, sp)  # a ratio needs no Jacobian

        sup = log_r(np.clip(mode_z, special.ndtri(cdf_lo), special.ndtri(cdf_hi)))
        np.testing.assert_allclose(np.asarray(kids.log_t), np.log(t_kids), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(bounds), sup - np.log(t_kids), rtol=1e-4, atol=2e-3)
        np.testing.assert_allclose(np.asarray(scores), log_r(z_kids) - np.log(t_kids), rtol=1e-4, atol=2e-3)


# ------------------------------------------------------------------------------------------------
# mmd2_to_gaussian and sample_interval


def test_mmd2_to_gaussian_matches_quadrature():
    rng = np.random.default_rng(0)
    target = jaxrec.DiagGaussian(jnp.array([0.5, -1.0]), jnp.array([2.0, 0.5]))
    samples = np.asarray(target.loc) + np.asarray(target.scale) * rng.normal(size=(40, 2)) * 1.3 + 0.2
    ell = 0.8
    z = (samples - np.asarray(target.loc)) / np.asarray(target.scale)
    kern = lambda a, b: np.exp(-((a - b) ** 2) / (2 * ell**2))
    # expectations over y ~ N(0, 1) by 120-point Gauss-Hermite quadrature; the kernel factorizes over coordinates
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    weights = weights / np.sqrt(2 * np.pi)
    xy = np.mean(np.prod(kern(z[:, :, None], nodes) @ weights[:, None], axis=(1, 2)))
    yy_1d = weights @ kern(nodes[:, None], nodes[None, :]) @ weights
    diff = z[:, None, :] - z[None, :, :]
    gram = np.exp(-np.sum(diff**2, axis=-1) / (2 * ell**2))
    xx = (gram.sum() - np.trace(gram)) / (len(z) * (len(z) - 1))
    expected = xx - 2 * xy + yy_1d**2
    got = float(mmd2_to_gaussian(jnp.asarray(samples, jnp.float32), target, lengthscale=ell))
    assert got == pytest.approx(expected, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize(("lo", "hi"), [(-0.5, 1.2), (2.0, 4.0), (-9.0, -7.5)])
def test_sample_interval_follows_the_truncated_prior(lo, hi):
    prior = jaxrec.DiagGaussian(jnp.array([0.3]), jnp.array([1.6]))
    keys = jax.random.split(prng.as_key(4), 5000)
    draws = np.asarray(jax.jit(jax.vmap(lambda k: truncated.sample_interval(k, prior, lo, hi)))(keys), np.float64)[:, 0]
    assert np.all((draws >= lo) & (draws <= hi))
    law = stats.truncnorm((lo - 0.3) / 1.6, (hi - 0.3) / 1.6, loc=0.3, scale=1.6)
    assert stats.kstest(draws, law.cdf).pvalue > 1e-3


def test_grs_steps_are_the_number_of_rejections_plus_one():
    """GRS defines its step count exactly: ``K`` rejections, then the accepted candidate ``K``."""
    keys = jax.random.split(prng.as_key(9), 64)
    codes = jax.jit(jax.vmap(jaxrec.grs(chunk_size=8).encode, in_axes=(0, None, None)))(keys, TREE_TARGET, TREE_PRIOR)
    assert np.all(np.asarray(codes.status) == 0)
    np.testing.assert_array_equal(np.asarray(codes.steps), np.asarray(codes.index) + 1)


def test_arrival_sums_are_exact_for_the_largest_chunk_and_larger_chunks_are_refused():
    """A chunk holds at most 2^15 candidates, the most for which the limb sums fit in uint32: the running
    times of 2^15 maximal increments equal Python's integer sums, and a larger chunk is refused."""
    size = 2**15
    rng = np.random.default_rng(1)
    increments = np.concatenate([np.full(size // 2, 2**32 - 256), rng.integers(1, 2**32 - 256, size // 2)]).astype(np.uint32)
    base_int = 3 * 2**40 + 12345
    base = jnp.asarray([(base_int >> (16 * i)) & 0xFFFF for i in range(4)], jnp.uint32)
    limbs, last = jax.jit(arrivals.accumulate)(base, jnp.asarray(increments))
    limbs = np.asarray(limbs, np.uint64)
    got = sum(limbs[:, i].astype(object) << (16 * i) for i in range(4))
    expected = base_int + np.cumsum(increments.astype(object))
    assert list(got[-8:]) == list(expected[-8:]) and got[size // 2] == expected[size // 2]
    np.testing.assert_array_equal(np.asarray(last), np.asarray(limbs[-1], np.uint32))
    jaxrec.pfr(chunk_size=size)
    with pytest.raises(jaxrec.InvalidArgumentError, match="chunk_size must be an int in"):
        jaxrec.pfr(chunk_size=size + 1)


# ------------------------------------------------------------------------------------------------
# ORC and MRC: argmaxes over a fixed budget of candidates


@functools.cache
def _private_words(max_n: int):
    """Jitted ``keys (P,) -> uint32 (P, max_n)``: word 0 of each index's encoder-only words."""
    ns = jnp.arange(max_n, dtype=jnp.int32)
    return jax.jit(jax.vmap(lambda k: prng.counter_words(prng.private_stream(k), ns, 1)[0]))


def test_orc_and_mrc_equal_argmax_references_over_their_budget():
    """ORC (Theis & Yosri 2022) is PFR cut at ``N`` candidates: the PFR reference's index and steps
    while its stop rule fires within the budget, else the argmax of ``log r(X_n) - log T_n`` over
    ``n < N`` and ``N`` steps.  MRC (Havasi et al. 2019) is ``argmax_{n<N} log r(X_n) + G_n`` with
    ``G_n = -log(-log U_n)``, ``U_n = (m_n + 1/2) 2^-24`` from the top 24 bits of index ``n``'s
    encoder-only word, always ``N`` steps.  Scores in float64 here, float32 in the library: the
    seeds are fixed, and no winner of these problems is within rounding of the runner-up."""
    target, prior = PFR_PAIRS["gauss-2d"]
    keys = jax.random.split(prng.as_key(12), 48)
    budget = 8
    xs, increments = (np.asarray(a) for a in _shared_draws(1024)(keys, prior))
    u = ((np.asarray(_private_words(budget)(keys)) >> 8) + 0.5) * 2.0**-24
    gumbels = -np.log(-np.log(u))
    for factory in (jaxrec.orc, jaxrec.mrc):
        codes = jax.jit(jax.vmap(factory(budget, chunk_size=4).encode, in_axes=(0, None, None)))(keys, target, prior)
        assert np.all(np.asarray(codes.status) == 0)
        got = np.stack([np.asarray(codes.index), np.asarray(codes.steps)], axis=1)
        want = []
        for i in range(len(keys)):
            log_r = log_density(target, xs[i, :budget].astype(np.float64)) - log_density(prior, xs[i, :budget].astype(np.float64))
            if factory is jaxrec.mrc:
                want.append((int(np.argmax(log_r + gumbels[i])), budget))
                continue
            index, steps = pfr_sequential(xs[i].astype(np.float64), increments[i], target, prior)
            if steps > budget:
                log_t = np.log(np.cumsum(increments[i, :budget].astype(np.int64)).astype(np.float64) * 2.0**-24)
                index, steps = int(np.argmax(log_r - log_t)), budget
            want.append((index, steps))
        want = np.array(want)
        np.testing.assert_array_equal(got, want, err_msg=factory.__name__)
        if factory is jaxrec.orc:  # both branches of the reference are exercised
            assert np.any(want[:, 1] == budget) and np.any(want[:, 1] < budget)


# ------------------------------------------------------------------------------------------------
# The chunked search core against the sequential scan it implements


def _sequential_search(scores, bounds, max_candidates):
    """The one-candidate-at-a-time rule of :func:`jaxrec.search.search`: before candidate ``n`` the
    search stops if the best score so far reaches ``bounds[n]`` (``stopped``, also at the limit)
    or ``n`` reaches the limit; a NaN score counts as ``-inf``; ties keep the earlier candidate.  Returns
    ``(index, score, steps, stopped)``."""
    best, index = -np.inf, 0
    for n in range(max_candidates + 1):
        if best >= bounds[min(n, len(bounds) - 1)]:  # past the table: its last bound (the chunk function clips)
            return index, best, n, True
        if n == max_candidates:
            return index, best, n, False
        s = -np.inf if np.isnan(scores[n]) else scores[n]
        if s > best:
            best, index = s, n


def _table_chunk_fn(scores, bounds):
    """A chunk function reading candidate ``n``'s score and bound from tables (clipped past the
    end), with payloads ``3 n + 1`` and ``(n, -n)`` and a state counting the chunks."""
    scores, bounds = jnp.asarray(scores, jnp.float32), jnp.asarray(bounds, jnp.float32)

    def chunk_fn(state, ns):
        payload = (3 * ns + 1, jnp.stack([ns, -ns], axis=-1))  # a scalar and a vector per candidate
        return jnp.take(scores, ns, mode="clip"), jnp.take(bounds, ns, mode="clip"), payload, state + 1

    return chunk_fn


@functools.partial(jax.jit, static_argnums=(2, 3))
def _search_table(scores, bounds, chunk_size, max_candidates):
    """:func:`jaxrec.search.search` over tables passed as arguments: one program per chunk size and
    limit, whatever the tables."""
    return search.search(_table_chunk_fn(scores, bounds), jnp.int32(0), chunk_size=chunk_size, max_candidates=max_candidates)


def _search_tables(seed, size=300):
    """Scores with NaNs (one of them where the largest score would be) and falling bounds, so that
    the stop rule fires somewhere inside the table."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=size).astype(np.float32)
    scores[rng.choice(size, 20, replace=False)] = np.nan
    scores[int(rng.integers(0, 40))] = np.nan
    bounds = (4.0 - 0.02 * np.arange(size) + 0.1 * rng.normal(size=size)).astype(np.float32)
    return scores, bounds


def test_search_equals_the_sequential_rule_for_any_chunking_and_limit():
    """Index, score, payload, steps and ``stopped`` of :func:`jaxrec.search.search` equal the
    sequential rule's for chunk sizes 1 to 64 and limits below, at and past the stopping point;
    NaN scores never win; the size checks accept their ends and refuse one past them
    (search/chunked mutation survivors: nothing tested the core with its own tables)."""
    for seed in range(3):
        scores, bounds = _search_tables(seed)
        stop = _sequential_search(scores, bounds, len(scores))[2]
        cases = [(7, 1), (7, 13), (7, 20), (1, 300), (7, 300), (64, 300)]  # 13, 20: one short of a 7-chunk
        cases += [(1, stop), (7, stop), (7, stop + 1)] if seed == 0 else []
        for chunk_size, max_candidates in cases:
            want = _sequential_search(scores, bounds, max_candidates)
            res = _search_table(scores, bounds, chunk_size, max_candidates)
            got = (int(res.index), float(res.score), int(res.steps), bool(res.stopped))
            assert got == want, (seed, max_candidates, chunk_size)
            assert int(res.payload[0]) == 3 * want[0] + 1 and res.payload[1].tolist() == [want[0], -want[0]]
    # ties keep the earlier candidate, within a chunk and across chunks; no finite score: index 0
    tied, never = np.tile(np.float32([0.0, 2.0, 1.0, 2.0, 2.0]), 60), np.full(300, np.inf, np.float32)
    for chunk_size in (1, 7):
        res = _search_table(tied, never, chunk_size, 300)
        assert (int(res.index), int(res.steps), bool(res.stopped)) == (1, 300, False), chunk_size
    res = _search_table(np.full(300, -np.inf, np.float32), never, 7, 300)
    assert (int(res.index), float(res.score), int(res.steps)) == (0, -np.inf, 300)
    search.validate_sizes(1, 1)
    search.validate_sizes(arrivals.MAX_CHUNK, search.MAX_CANDIDATES)
    assert search.MAX_CANDIDATES + arrivals.MAX_CHUNK == 2**31 - 1  # a last chunk's numbers fit int32
    for bad in (0, arrivals.MAX_CHUNK + 1, True, 2.0):
        with pytest.raises(jaxrec.InvalidArgumentError, match=r"chunk_size must be an int in \[1, 32768\]"):
            search.validate_sizes(bad, 10)
    for bad in (0, search.MAX_CANDIDATES + 1, True, 3.0):
        with pytest.raises(jaxrec.InvalidArgumentError, match=r"the candidate limit must be an int in \[1, 2147450879\]"):
            search.validate_sizes(8, bad)


def test_widening_levels_are_the_most_doublings_the_lanes_and_the_chunk_limit_allow():
    """``search_batch``'s tail widening: the largest ``j <= max_widening`` with ``L >> j >= 1`` and
    ``K << j <= 2^15`` (``arrivals.MAX_CHUNK``), each limit reached exactly; a negative or non-int
    ``max_widening`` is refused.  Widening never changes codes, so only this table can see a wrong
    level count (search/chunked mutants of ``_widening_levels``)."""
    assert arrivals.MAX_CHUNK == 2**15
    cases = {  # (num_lanes, chunk_size, max_widening): levels
        (8, 4, 3): 3, (8, 4, 2): 2, (8, 4, 0): 0, (8, 4, 5): 3, (7, 4, 5): 2, (1, 4, 3): 0,
        (8, 2**14, 3): 1, (8, 2**13, 3): 2, (8, 2**15, 3): 0, (2**20, 1, 40): 15,
    }
    for args, levels in cases.items():
        assert search.chunked._widening_levels(*args) == levels, args
    for bad in (-1, 1.5, None):
        with pytest.raises(jaxrec.InvalidArgumentError, match=f"max_widening must be a non-negative int, got {bad!r}"):
            search.chunked._widening_levels(8, 4, bad)


def test_search_batch_equals_the_sequential_rule_with_its_default_widening():
    """:func:`jaxrec.search.search_batch` with its defaults (three widening levels) gives every
    problem the sequential rule's result, whatever the lanes and their order."""
    tables = [_search_tables(seed, size=300) for seed in range(10, 19)]
    scores = jnp.asarray(np.stack([t[0] for t in tables]))
    bounds = jnp.asarray(np.stack([t[1] for t in tables]))
    limits = jnp.asarray([300, 5, 300, 120, 300, 1, 300, 300, 64], jnp.int32)

    def problem_fn(problem):
        s, b, limit = problem
        base = _table_chunk_fn(s, b)

        def chunk_fn(state, ns):  # a per-problem limit through the bounds: past it nothing is searched
            got_s, got_b, payload, state = base(state, ns)
            return jnp.where(ns < limit, got_s, -jnp.inf), jnp.where(ns < limit, got_b, -jnp.inf), payload, state

        return chunk_fn, jnp.int32(0)

    res = jax.jit(lambda p: search.search_batch(problem_fn, p, chunk_size=4, max_candidates=300, num_lanes=8))(
        (scores, bounds, limits))
    for i, (s, b) in enumerate(tables):
        searched = np.arange(300) < int(limits[i])
        index, score, steps, stopped = _sequential_search(np.where(searched, s, -np.inf), np.where(searched, b, -np.inf), 300)
        assert (int(res.index[i]), float(res.score[i]), int(res.steps[i]), bool(res.stopped[i])) == (index, score, steps, stopped), i
    # problems given as one leaf (their numbers, some repeated), the tables looked up by the problem
    # function; 3 lanes that refill 3 at once (three 1-candidate problems), then 1 (a 5-candidate one):
    # each refill must take the next problems in order, whatever the count that stopped before
    ids = jnp.asarray([5, 5, 5, 1, 0, 2, 3, 4, 6, 7, 8, 1], jnp.int32)
    by_number = jax.jit(lambda ids: search.search_batch(
        lambda i: problem_fn((scores[i], bounds[i], limits[i])), ids, chunk_size=4, max_candidates=300, num_lanes=3))(ids)
    for field in ("index", "score", "steps", "stopped"):
        np.testing.assert_array_equal(getattr(by_number, field), np.asarray(getattr(res, field))[ids], field)
