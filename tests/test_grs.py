"""Tests for greedy rejection sampling, adaptive GRS and the per-dimension wrapper (jaxrec.grs, agrs, factorized)."""


import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
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
from jaxrec.coders.greedy import _grs as grs_mod
from jaxrec.coders.greedy import widths
from jaxrec.coders.registry import REGISTRY
from jaxrec.coders.wrappers import _factorized as factorized_mod
from jaxrec.core import prng
from jaxrec.core.distributions import open_unit
from jaxrec.core.errors import InvalidArgumentError

N = 5000
# (target loc, target scale, prior loc, prior scale)
KS_PAIRS = [(1.0, 0.25, 0.0, 1.0), (3.0, 0.3, 1.0, 2.0), (-1.5, 0.1, 0.0, 1.0), (0.0, 0.8, 0.0, 1.0)]
# AGRS also far beyond where GRS is practical: D_inf = 13 and 25 bits
AGRS_PAIRS = KS_PAIRS[:3] + [(-3.0, 0.01, 0.0, 1.0), (4.0, 1e-4, 0.0, 1.0)]
CODERS = {"grs": jaxrec.grs(chunk_size=32), "agrs": jaxrec.agrs()}
@pytest.fixture(scope="module")
def runs():
    pairs = {"grs": KS_PAIRS, "agrs": AGRS_PAIRS}
    return {(name, i): encode_decode(CODERS[name], row, N, 30 + i) for name in CODERS for i, row in enumerate(pairs[name])}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CODERS))
def test_exact_ks(runs, name):
    pairs = KS_PAIRS if name == "grs" else AGRS_PAIRS
    for i, row in enumerate(pairs):
        _, codes, xs = runs[name, i]
        assert not bool(np.any(codes.exhausted))
        p = stats.kstest(xs, stats.norm(row[0], row[1]).cdf).pvalue
        assert p > 1e-3, (name, row, p)


@pytest.mark.slow
def test_grs_mean_steps_is_r_star(runs):
    for i in (0, 2):  # r* = 6.8 and 31
        _, codes, _ = runs["grs", i]
        steps = np.asarray(codes.steps, np.float64)
        r_star = float(np.exp(jaxrec.log_sup_ratio(*gaussian_pair(KS_PAIRS[i]))))
        assert abs(steps.mean() - r_star) < 4 * steps.std() / np.sqrt(N), (steps.mean(), r_star)
        np.testing.assert_array_equal(np.asarray(codes.index) + 1, np.asarray(codes.steps))


def test_grs_ladder_matches_reference():
    """Q = N(1, 1/16), P = N(0, 1): the ladder starts 0, 1, 1.720, 2.288, 2.752 and tends to r* (§12)."""

    @jax.jit
    def ladder(target, prior):
        model = widths.pair_widths(target, prior)
        table = widths.stretch_table(model)

        def step(prev, _):
            new = grs_mod.ladder_step(model, prev, widths.log_residual_at_gap(table, prev.gap))
            return new, new.log_level

        return jax.lax.scan(step, grs_mod.ladder_start(jnp.float32), None, length=400)[1], model.log_r_star

    log_levels, log_r_star = ladder(*gaussian_pair(KS_PAIRS[0]))
    levels = np.exp(np.asarray(log_levels))
    np.testing.assert_allclose(levels[:4], [1.0, 1.720, 2.288, 2.752], atol=1e-3)
    assert np.all(np.diff(levels) > 0) and 6.5 < levels[-1] < float(np.exp(log_r_star))


@jax.jit
def _grs_randomness(keys, prior):
    """The library's randomness a GRS search of each key reads: candidates ``(P, 400)`` of the shared
    stream and the top 24 bits of private word ``i`` as ``U_i`` (float32 and exact)."""
    ns = jnp.arange(400, dtype=jnp.int32)
    draw = lambda key: (prng.candidates(key, ns, prior)[:, 0],
                        open_unit(prng.counter_words(prng.private_stream(key), ns, 1)[0]))
    return jax.vmap(draw)(keys)


def _grs_reference(xs, us, row):
    """Sequential GRS (Harsha et al. 2007) in float64 for a 1-D Gaussian pair ``row``, with its own
    ladder from the closed-form ``W`` (:func:`sampler_helpers.gaussian_width`):
    ``L_i = L_{i-1} + 1 - W(L_{i-1})``, and step ``i`` accepts iff ``L_{i-1} + U_i (L_i - L_{i-1}) < r(X_i)``.
    Only the randomness comes from the library (:func:`_grs_randomness`).  Returns ``(index, steps)``
    (``(None, len(xs))`` if no candidate is accepted)."""
    quad, lin, const = gaussian_log_ratio(row)
    w = gaussian_width(row)
    xs, us = np.asarray(xs, np.float64), np.asarray(us, np.float64)
    ratios = np.exp(quad * xs**2 + lin * xs + const)
    level = 0.0
    for i in range(len(xs)):
        new = level + 1.0 - w(level)
        if level + us[i] * (new - level) < ratios[i]:
            return i, i + 1
        level = new
    return None, len(xs)


@pytest.mark.slow  # 7 s cold in the fast tier (2 idle cores)
@pytest.mark.mutation
@pytest.mark.parametrize("row", [KS_PAIRS[0], KS_PAIRS[1]])  # r* = 6.8; a shifted prior of scale 2
def test_grs_accepts_the_candidate_a_sequential_float64_reference_accepts(row):
    """Index and steps equal the reference's on 24 keys; with ``max_steps = 8`` a key the reference
    needs more steps for is ``EXHAUSTED`` at 8 steps, the others ``OK`` with the same index."""
    target, prior = gaussian_pair(row)
    keys = jax.random.split(jax.random.key(41), 24)
    codes = compiled(CODERS["grs"])[0](keys, target, prior)
    short = compiled(jaxrec.grs(chunk_size=4, max_steps=8))[0](keys, target, prior)
    xs, us = _grs_randomness(keys, prior)
    for i in range(len(keys)):
        index, steps = _grs_reference(xs[i], us[i], row)
        assert (int(codes.index[i]), int(codes.steps[i]), int(codes.status[i])) == (index, steps, OK), i
        if steps <= 8:
            assert (int(short.index[i]), int(short.steps[i]), int(short.status[i])) == (index, steps, OK), i
        else:
            assert (int(short.steps[i]), int(short.status[i])) == (8, EXHAUSTED), i
    assert (np.asarray(short.status) == EXHAUSTED).any() and (np.asarray(short.status) == OK).any()


def test_grs_factory_defaults():
    assert jaxrec.grs() is jaxrec.grs()  # one coder per configuration
    assert jaxrec.grs().spec.kwargs == {"chunk_size": 64, "max_steps": 2**24}


@pytest.mark.slow
def test_chunk_size_invariance(runs):
    for name, other in (("grs", jaxrec.grs(chunk_size=5)), ("agrs", jaxrec.agrs(chunk_size=1))):
        keys, reference, _ = runs[name, 2]
        target, prior = gaussian_pair(KS_PAIRS[2])
        codes = jax.jit(jax.vmap(other.encode, in_axes=(0, None, None)))(keys, target, prior)
        for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(codes)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # encode_batch (lanes refilled from a queue) is checked for gprs, on the same table_scan_coder,
    # and here through the per-dimension wrapper (test_factorized_wrapper)


@pytest.mark.slow
def test_agrs_runtime_stays_small_as_kl_grows(runs):
    """Mean steps at D_KL = 24 bits stay within a few of those at 2 bits (GRS would need 2^25)."""
    means = [float(np.mean(runs["agrs", i][1].steps)) for i in range(len(AGRS_PAIRS))]
    kls = [float(jaxrec.kl(*gaussian_pair(row))) for row in AGRS_PAIRS]
    assert kls[-1] > 20 and means[-1] < 10 and means[-1] < means[0] + 4, (kls, means)
    # the bound carries the information: its resolution 2^m grows with D_KL (about 2^{-m} ~ s)
    levels = []
    for i in (0, 3, 4):
        codes = runs["agrs", i][1]
        levels.append(float(np.median(np.asarray(codes.bound_level)[np.asarray(codes.index) > 0])))
    assert levels[0] < levels[1] < levels[2] and levels[2] > levels[0] + 8, levels


@pytest.mark.slow
def test_agrs_decoder_uses_only_the_message(runs):
    keys, codes, xs = runs["agrs", 3]
    _, prior = gaussian_pair(AGRS_PAIRS[3])
    dec = compiled(CODERS["agrs"])[1]
    again = np.asarray(dec(keys, codes, prior)[:, 0], np.float64)
    np.testing.assert_array_equal(xs, again)
    moved = codes.replace(bound_index=codes.bound_index + 1)  # a different bound, a different sample
    assert np.mean(np.asarray(dec(keys, moved, prior)[:, 0]) != xs) > 0.9


@pytest.mark.slow  # 90 s in the fast tier (2 shared cores, load ~6)
def test_factorized_wrapper():
    d = 3
    prior = jaxrec.DiagGaussian(jnp.asarray([0.0, 1.0, 0.0]), jnp.asarray([1.0, 2.0, 1.0]))
    loc, scale = np.asarray([1.0, 3.0, -1.5]), np.asarray([0.25, 0.3, 0.1])
    target = jaxrec.DiagGaussian(jnp.asarray(loc), jnp.asarray(scale))
    coder = jaxrec.factorized(CODERS["agrs"])
    keys = jax.random.split(jax.random.key(12), N)
    codes = jax.jit(jax.vmap(coder.encode, in_axes=(0, None, None)))(keys, target, prior)
    assert codes.index.shape == (N, d) and not bool(np.any(codes.exhausted))
    xs = np.asarray(jax.jit(jax.vmap(coder.decode, in_axes=(0, 0, None)))(keys, codes, prior))
    for j in range(d):
        assert stats.kstest(xs[:, j], stats.norm(loc[j], scale[j]).cdf).pvalue > 1e-3
    assert abs(np.corrcoef(xs[:, 0], xs[:, 2])[0, 1]) < 0.06  # independent shared randomness per dimension
    # dimension j's code is the 1-D coder's code under the dimension key
    keys_1 = jax.jit(jax.vmap(lambda k: factorized_mod.dimension_keys(k, d)[1]))(keys)
    single = compiled(CODERS["agrs"])[0](keys_1, jaxrec.DiagGaussian(3.0, 0.3), jaxrec.DiagGaussian(1.0, 2.0))
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(codes)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[:, 1])
    targets = jaxrec.DiagGaussian(jnp.tile(loc, (N, 1)), jnp.tile(scale, (N, 1)))
    # one widening level (half the compile time of the default three; the lanes are tested in test_coders_core)
    batched = jax.jit(lambda k, t: jaxrec.encode_batch(coder, k, t, prior, num_lanes=256, max_widening=1))(keys, targets)
    for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(codes)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_uniform_pair_grs():
    target, prior = jaxrec.Uniform(0.2, 0.45), jaxrec.Uniform(0.0, 1.0)
    enc, dec = compiled(CODERS["grs"])
    keys = jax.random.split(jax.random.key(6), N)
    codes = enc(keys, target, prior)
    xs = np.asarray(dec(keys, codes, prior)[:, 0])
    assert stats.kstest(xs, stats.uniform(0.2, 0.25).cdf).pvalue > 1e-3
    steps = np.asarray(codes.steps, np.float64)
    assert abs(steps.mean() - 4.0) < 4 * steps.std() / np.sqrt(N)


@pytest.mark.slow  # 11 s in the fast tier (2 idle cores)
def test_invalid_problems_and_bad_inputs():
    prior = jaxrec.DiagGaussian(0.0, 1.0)
    keys = jax.random.split(jax.random.key(0), N)
    for name in CODERS:  # an unbounded ratio inside jit: flagged at once
        codes = compiled(CODERS[name])[0](keys, jaxrec.DiagGaussian(0.0, 1.5), prior)
        assert np.all(np.asarray(codes.status) == UNBOUNDED_RATIO) and int(np.max(codes.steps)) == 0
    with pytest.raises(InvalidArgumentError, match="max_steps"):
        jaxrec.grs(max_steps=0)
    with pytest.raises(InvalidArgumentError, match="unbounded"):
        CODERS["grs"].encode(0, jaxrec.DiagGaussian(0.0, 1.0), prior)
    with pytest.raises(InvalidArgumentError, match="DiagGaussian"):
        CODERS["agrs"].encode(0, jaxrec.Uniform(0.2, 0.4), jaxrec.Uniform(0.0, 1.0))
    with pytest.raises(InvalidArgumentError, match="AGRSCode"):
        CODERS["agrs"].decode(0, jaxrec.Code(0, 1, 0, coder="agrs", event_size=1), prior)
    with pytest.raises(InvalidArgumentError, match="unbounded"):
        wide = jaxrec.DiagGaussian(jnp.asarray([0.0, 0.0]), jnp.asarray([0.5, 2.0]))
        jaxrec.factorized(CODERS["grs"]).encode(0, wide, jaxrec.DiagGaussian(jnp.zeros(2), 1.0))
    with pytest.raises(InvalidArgumentError, match="Coder"):
        jaxrec.factorized(lambda key: key)


@functools.partial(jax.jit, static_argnums=1)
def _agrs_randomness(keys, dtype):
    """The library's randomness an AGRS search of each key reads at steps ``0..39`` (in ``dtype``):
    the candidate's uniform ``candidate_key(key, k)``, the dither ``candidate_key(key, k, stream=1)``
    and the acceptance uniform ``arrival_key(key, k)``, ``(P, 40)`` each."""
    ns = jnp.arange(40, dtype=jnp.int32)
    uniform = lambda key: jax.random.uniform(key, (), dtype)
    draw = lambda key, n: (uniform(prng.candidate_key(key, n)), uniform(prng.candidate_key(key, n, stream=1)),
                           uniform(prng.arrival_key(key, n)))
    return jax.vmap(lambda key: jax.vmap(lambda n: draw(key, n))(ns))(keys)


def _agrs_reference(us, dithers, vs, row, bits=21):
    """Sequential AGRS (the module's variant of Flamich & Theis, ISIT 2023) in float64 for a 1-D
    Gaussian pair ``row``, from the equations of the ``jaxrec.coders.greedy._agrs`` docstring with
    its own geometry: in the prior's standard coordinate ``z`` the target is ``N(m, s^2)``,
    ``r = q/p`` peaks at ``nu = m / (1 - s^2)``, ``S(L) = {r > L} = |z - nu| < rho(L)`` with
    ``rho(L)^2 = 2 ln(r*/L) / (1/s^2 - 1)`` and ``W(L) = 1 - Q(S(L)) + L P(S(L))`` (prior masses of
    narrow intervals by quadrature).  Step 1 proposes from ``P``; step ``k >= 2`` reflects
    (``nu' = -|nu|``), takes ``M = 2^m``, ``m = floor(-log2 P(S) - 0.1)`` clipped to
    ``[-1, bits - log2 c]`` (21 bits for float32, 29 for float64: ``n`` exact in the float and in
    ``int32``), ``n = floor(M c + D)`` and the bound ``[chat - 1/M, chat + 1/M] ∩ [0, 1]`` in prior CDF
    units, ``chat = (n - D + 1/2)/M``; ``L_k = L_{k-1} + (1 - W(L_{k-1})) / P(B_k)``; step ``k`` accepts iff
    ``L_{k-1} + V (L_k - L_{k-1}) < r(z)`` for the prior quantile ``z`` at ``U`` within the bound.
    Returns ``(K, m, n_sent, steps, z)`` of the accepted step (``n_sent = -1 - n`` when reflected),
    or ``None`` if no step of ``us`` accepts."""
    mq, sq, mp, sp = row
    m, s = (mq - mp) / sp, sq / sp
    nu = m / (1.0 - s**2)
    log_r = lambda z: stats.norm.logpdf(z, m, s) - stats.norm.logpdf(z)
    log_r_star = log_r(nu)
    rho = lambda level: np.sqrt(max(2.0 * (log_r_star - np.log(level)), 0.0) / (1.0 / s**2 - 1.0))

    def prior_mass(a, b):
        if b - a > 1e-3:
            return stats.norm.cdf(b) - stats.norm.cdf(a)
        return integrate.quad(stats.norm.pdf, a, b, epsabs=0.0, epsrel=1e-13)[0]

    def w(level):
        if level == 0.0:
            return 0.0
        half = rho(level)
        q_in = stats.norm.cdf((nu + half - m) / s) - stats.norm.cdf((nu - half - m) / s)
        return 1.0 - q_in + level * prior_mass(nu - half, nu + half)

    reflect, nu_r = nu > 0, -abs(nu)
    level = 0.0
    for k in range(len(us)):
        u, d, v = (float(a) for a in (us[k], dithers[k], vs[k]))
        if k == 0:
            cdf_lo, cdf_hi, side, bound_level, sent = 0.0, 1.0, 1.0, 0, 0
        else:
            half = rho(level)
            p_s = prior_mass(nu_r - half, nu_r + half)
            c = stats.norm.cdf(nu_r - half) + p_s / 2.0
            bound_level = int(np.clip(np.floor(-np.log2(p_s) - 0.1), -1.0, np.floor(bits - np.log2(c))))
            n = int(np.floor(2.0**bound_level * c + d))
            centre, width = (n - d + 0.5) / 2.0**bound_level, 2.0**-bound_level
            cdf_lo, cdf_hi = max(centre - width, 0.0), min(centre + width, 1.0)
            side, sent = (-1.0, -1 - n) if reflect else (1.0, n)
        z = side * stats.norm.ppf(cdf_lo + u * (cdf_hi - cdf_lo))
        new = level + (1.0 - w(level)) / (cdf_hi - cdf_lo)
        if level + v * (new - level) < np.exp(log_r(z)):
            return k, bound_level, sent, k + 1, z
        level = new
    return None


def _agrs_message(codes, i):
    """``(index, bound_level, bound_index, steps, status)`` of problem ``i`` of a batch of AGRS codes."""
    return tuple(int(getattr(codes, f)[i]) for f in ("index", "bound_level", "bound_index", "steps", "status"))


# KS_PAIRS[1] (a shifted scale-2 prior, reflected bounds), a mode below the prior's (unreflected), D_KL = 8 bits,
# the mode at the prior's mean (nu = 0: not reflected), and a wide target (P(S) > 1/2 at step 2: level 0)
AGRS_REFERENCE_PAIRS = [KS_PAIRS[1], KS_PAIRS[2], (-3.0, 0.01, 0.0, 1.0), (1.0, 0.3, 1.0, 2.0), (1.5, 1.6, 1.0, 2.0)]


@pytest.mark.slow  # 22 s cold in the fast tier (2 cores)
@pytest.mark.mutation
@pytest.mark.parametrize("row", AGRS_REFERENCE_PAIRS)
def test_agrs_accepts_the_step_a_sequential_float64_reference_accepts(row):
    """Index, bound level and index, steps and status equal the reference's on 16 keys, and the decoder
    returns the reference's point; with ``max_steps = 2`` a key the reference needs more steps for is
    ``EXHAUSTED`` at 2, the others ``OK`` with the same message (coders/greedy/_agrs mutation survivors:
    the fast tier had no AGRS test of its own)."""
    target, prior = gaussian_pair(row)
    keys = jax.random.split(jax.random.key(47), 16)
    enc, dec = compiled(jaxrec.agrs(max_steps=2**10))  # the reference accepts within 40 steps
    codes = enc(keys, target, prior)
    short = compiled(jaxrec.agrs(chunk_size=2, max_steps=2))[0](keys, target, prior)
    decoded = np.asarray(dec(keys, codes, prior)[:, 0], np.float64)
    us, dithers, vs = (np.asarray(a, np.float64) for a in _agrs_randomness(keys, jnp.float32))
    for i in range(len(keys)):
        k, level, sent, steps, z = _agrs_reference(us[i], dithers[i], vs[i], row)
        assert _agrs_message(codes, i) == (k, level, sent, steps, OK), i
        assert abs(decoded[i] - (row[2] + row[3] * z)) <= 1e-3 * row[1] + 1e-6 * abs(decoded[i]), i
        if steps <= 2:
            assert _agrs_message(short, i) == (k, level, sent, steps, OK), i
        else:
            assert (int(short.steps[i]), int(short.status[i])) == (2, EXHAUSTED), i


@pytest.mark.slow  # 13 s cold in the fast tier (float64 programs)
@pytest.mark.mutation
def test_agrs_float64_codes_match_the_reference_where_the_level_cap_binds():
    """With x64 a float64 pair is searched in float64: the reference's codes, with the level cap of
    float64 (29 bits) binding for a target of scale 1e-10 near the prior's centre (``m`` stops at
    ``floor(29 - log2 c)``), and on a shifted scale-2 prior; the codes are ``int32``."""
    keys = jax.random.split(jax.random.key(48), 8)
    with jax.enable_x64(True):
        us, dithers, vs = (np.asarray(a) for a in _agrs_randomness(keys, jnp.float64))
        enc, dec = compiled(jaxrec.agrs(max_steps=2**10))
        for row in (KS_PAIRS[1], (0.1, 1e-10, 0.0, 1.0)):
            target, prior = (jaxrec.DiagGaussian(jnp.float64(d.loc), jnp.float64(d.scale)) for d in gaussian_pair(row))
            codes = enc(keys, target, prior)
            decoded = np.asarray(dec(keys, codes, prior)[:, 0])
            assert decoded.dtype == np.float64 and all(
                getattr(codes, f).dtype == jnp.int32 for f in ("index", "bound_level", "bound_index"))
            for i in range(len(keys)):
                k, level, sent, steps, z = _agrs_reference(us[i], dithers[i], vs[i], row, bits=29)
                assert _agrs_message(codes, i) == (k, level, sent, steps, OK), (row, i)
                assert abs(decoded[i] - (row[2] + row[3] * z)) <= 1e-4 * row[1], (row, i)
            if row[1] < 1e-9:
                levels = np.asarray(codes.bound_level)[np.asarray(codes.index) > 0]
                assert levels.size and np.all(levels == 30), levels  # the cap: floor(29 - log2 c), c ~ Phi(0.1)


def test_agrs_factory_message_and_packing():
    """Factory defaults and cache, the step limit, the header message written out (``K`` and the bound's
    zigzagged index under the PFR Zipf model of the budget, the level ``m + 1`` under the model of
    ``log2(budget + 2)``), the symbols of a step-1 code and of reflected and unreflected bounds, and
    ``DiagGaussian`` required by every entry point."""
    assert jaxrec.agrs() is jaxrec.agrs()  # one coder per configuration
    assert jaxrec.agrs().spec.kwargs == {"chunk_size": 4, "max_steps": 2**20}
    jaxrec.agrs(max_steps=search.MAX_CANDIDATES)
    with pytest.raises(InvalidArgumentError, match="max_steps"):
        jaxrec.agrs(max_steps=search.MAX_CANDIDATES + 1)
    entry = REGISTRY["agrs"]
    zipf = lambda bits: jaxrec.entropy.ZipfModel(float(np.float32(jaxrec.entropy.zipf_exponent(bits))))
    assert entry.params == ("chunk_size", "max_steps") and entry.check is not None
    assert entry.message(jaxrec.agrs().spec, 6.0, None) == (
        ("index", zipf(6.0)), ("bound_level", zipf(3.0)), ("bound_index", zipf(6.0)))
    fields = {"index": np.array([0, 3, 5, 1]), "bound_level": np.array([0, -1, 7, 2]),
              "bound_index": np.array([0, -3, 4, 0])}
    symbols = entry.pack(jaxrec.agrs().spec, fields)
    want = {"index": [0, 3, 5, 1], "bound_level": [0, 0, 8, 3], "bound_index": [0, 5, 8, 0]}
    assert {k: v.tolist() for k, v in symbols.items()} == want
    back = entry.unpack(jaxrec.agrs().spec, {k: np.asarray(v, np.int64) for k, v in want.items()})
    assert {k: np.asarray(v).tolist() for k, v in back.items()} == {k: v.tolist() for k, v in fields.items()}
    uniform, coder = (jaxrec.Uniform(0.2, 0.4), jaxrec.Uniform(0.0, 1.0)), jaxrec.agrs()
    for call in (lambda: coder.encode(0, *uniform), lambda: coder.encode_batch(jnp.zeros((2, 2), jnp.uint32), *uniform),
                 lambda: coder.decode(0, jaxrec.AGRSCode(*(jnp.int32(v) for v in (0, 0, 0, 1, 0)), coder="agrs", event_size=1),
                                      uniform[1])):  # a code built by hand: no encoder compiles here
        with pytest.raises(InvalidArgumentError, match="agrs supports DiagGaussian pairs only, got prior Uniform"):
            call()


@pytest.mark.slow  # 5 s in the fast tier
@pytest.mark.mutation
def test_agrs_float32_bound_levels_stop_at_the_float32_caps():
    """In float32 the bound's level ``m`` stops at ``floor(21 - log2 c)`` (``n`` exact in the float) for a
    target of scale 2e-8 near the prior's centre (``c ~ Phi(-0.1)``: 22), and at 124 (``2^-m`` a normal
    float: ``-minexp - 2``) for a target 13.5 prior standard deviations out, where the prior CDF
    underflows (the bound then stops shrinking: sent as ``n = 0``, ``-1 - n`` when reflected); every
    search still ends ``OK`` (coders/greedy/_agrs mutation survivors: neither cap was reached)."""
    keys = jax.random.split(jax.random.key(47), 16)
    enc = compiled(jaxrec.agrs())[0]
    for row, level in (((0.1, 2e-8, 0.0, 1.0), 22), ((28.0, 0.1, 1.0, 2.0), 124), ((-26.0, 0.1, 1.0, 2.0), 124)):
        codes = enc(keys, *gaussian_pair(row))
        assert (np.asarray(codes.status) == OK).all() and (np.asarray(codes.index) > 0).all(), row
        assert (np.asarray(codes.bound_level) == level).all(), (row, np.asarray(codes.bound_level))
        if level == 124:
            assert (np.asarray(codes.bound_index) == (-1 if row[0] > row[2] else 0)).all(), row


def test_agrs_decodes_concrete_codes_with_negative_bound_fields():
    """``bound_level = -1`` (the widest bound, ``M = 1/2``) and a reflected ``bound_index < 0`` are valid
    message values: an eager ``decode`` of such concrete codes checks their signs and returns what the
    jitted decoder returns."""
    coder = jaxrec.agrs()
    prior = jaxrec.DiagGaussian(1.0, 2.0)
    code = jaxrec.AGRSCode(jnp.int32(3), jnp.int32(-1), jnp.int32(-2), jnp.int32(4), jnp.int32(OK), coder="agrs", event_size=1)
    eager = np.asarray(coder.decode(7, code, prior))
    assert np.isfinite(eager).all()
    np.testing.assert_array_equal(eager, np.asarray(jax.jit(coder.decode)(prng.as_key(7), code, prior)))


@pytest.mark.slow  # 15 s cold in the fast tier
@pytest.mark.mutation
def test_factorized_codes_each_dimension_with_its_own_key_and_the_inner_coders_header():
    """Dimension ``d`` of ``factorized(grs)`` is the 1-D coder's code under ``fold_in(fold_in(key, 'DIMS'),
    d)`` on ``(Q_d, P_d)`` (written out here, shifted priors of non-unit scale), decoded to ``(D,)``;
    ``encode_batch`` gives ``(B, D)`` leaves equal to ``encode``'s; the header (spec, message with the
    block budget shared by ``S`` dimensions, pack/unpack) is the inner coder's, rebuilt from
    ``(name, *args)`` (coders/wrappers/_factorized mutation survivors: the wrapper was only tested in
    the slow tier)."""
    inner = jaxrec.grs(chunk_size=16, max_steps=2**10)
    coder = jaxrec.factorized(inner)
    assert coder is jaxrec.factorized(inner) and coder.spec.params == (("coder", ("grs", 16, 2**10)),)
    loc, scale = np.array([1.0, 3.0, -1.5]), np.array([0.25, 0.3, 0.1])
    prior_loc, prior_scale = np.array([0.0, 1.0, 0.5]), np.array([1.0, 2.0, 1.5])
    target, prior = jaxrec.DiagGaussian(loc, scale), jaxrec.DiagGaussian(prior_loc, prior_scale)
    key = jax.random.key(13)
    code = coder.encode(key, target, prior)
    assert (code.coder, code.event_size, code.index.shape) == ("factorized(grs)", 3, (3,))
    xs = np.asarray(coder.decode(key, code, prior))
    assert xs.shape == (3,)
    dims = jax.random.fold_in(key, int.from_bytes(b"DIMS", "big"))
    for d in range(3):
        key_d = jax.random.fold_in(dims, d)
        pair = jaxrec.DiagGaussian(loc[d], scale[d]), jaxrec.DiagGaussian(prior_loc[d], prior_scale[d])
        single = inner.encode(key_d, *pair)
        assert [int(getattr(single, f)) for f in ("index", "steps", "status")] == [
            int(getattr(code, f)[d]) for f in ("index", "steps", "status")], d
        np.testing.assert_array_equal(xs[d], np.asarray(inner.decode(key_d, single, pair[1]))[0])
    keys = jax.random.split(key, 2)
    targets = jaxrec.DiagGaussian(np.stack([loc, loc[::-1]]), np.stack([scale, scale[::-1]]))
    batch = coder.encode_batch(keys, targets, prior, num_lanes=2, max_widening=0)
    assert (batch.coder, batch.event_size, batch.index.shape) == ("factorized(grs)", 3, (2, 3))
    for b in range(2):
        one = coder.encode(keys[b], jaxrec.DiagGaussian(targets.loc[b], targets.scale[b]), prior)
        for f in ("index", "steps", "status"):
            np.testing.assert_array_equal(np.asarray(getattr(batch, f))[b], np.asarray(getattr(one, f)), f)
    entry, grs_entry = REGISTRY["factorized"], REGISTRY["grs"]
    assert entry.params == ("coder",) and entry.factory(("grs", 16, 2**10)) is coder
    plan = type("Plan", (), {"max_size": 3})()
    assert entry.message(coder.spec, 6.0, plan) == grs_entry.message(inner.spec, 2.0, plan)
    fields = {"index": np.array([[0, 5, 2]])}
    assert entry.pack(coder.spec, fields)["index"].tolist() == grs_entry.symbols(inner.spec, fields)["index"].tolist()
    assert entry.unpack(coder.spec, fields)["index"].tolist() == grs_entry.fields(inner.spec, fields)["index"].tolist()
    for bad, message in ((("grs", 16), "cannot rebuild the wrapped coder"), ("grs", "must be given as \\(name, \\*args\\)"),
                         ((), "must be given as"), ((3,), "must be given as")):
        with pytest.raises(InvalidArgumentError, match=message):
            entry.factory(bad)
    wide = jaxrec.DiagGaussian(jnp.array([0.0, 0.0, 0.0]), jnp.array([0.5, 2.5, 0.5]))
    for call, where in ((lambda: coder.encode(0, wide, prior), "\\(1,\\)"), (lambda: entry.check(wide, prior), "\\(1,\\)"),
                        (lambda: coder.encode_batch(keys, jaxrec.DiagGaussian(jnp.zeros((2, 3)), jnp.full((2, 3), 2.5)), prior),
                         "\\(0, 0\\)")):
        with pytest.raises(InvalidArgumentError, match=f"unbounded at index {where}"):  # per dimension
            call()


@pytest.mark.slow  # 11 s cold: two tree-search programs
@pytest.mark.mutation
def test_factorized_batch_encodes_a_tree_coder_with_its_path_words():
    """``factorized(astar)``'s ``encode_batch`` keeps the trailing axis of per-problem code arrays:
    ``TreeCode.path`` is ``(B, D, W)``, leaf for leaf the codes of ``vmap(encode)`` (coders/wrappers/_factorized
    mutant ``a.shape[2:]`` in the reshape: the scalar fields of the GRS test above cannot see it)."""
    coder = jaxrec.factorized(jaxrec.astar(capacity=8, max_steps=64, max_depth=8))
    prior = jaxrec.DiagGaussian(jnp.array([0.0, 0.5]), jnp.array([1.0, 1.5]))
    targets = jaxrec.DiagGaussian(jnp.array([[0.3, 1.0], [-0.5, 0.2]]), jnp.array([[0.4, 0.6], [0.5, 0.3]]))
    keys = jax.random.split(jax.random.key(3), 2)
    batch = coder.encode_batch(keys, targets, prior)
    assert batch.path.shape == (2, 2, 1) and (batch.coder, batch.event_size) == ("factorized(astar)", 2)
    mapped = jax.vmap(coder.encode, in_axes=(0, 0, None))(keys, targets, prior)
    for a, b in zip(jax.tree.leaves(batch), jax.tree.leaves(mapped), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.all(np.asarray(batch.status) == OK)  # the comparison is of real codes


@pytest.mark.slow  # 14 s cold in the fast tier (x64 programs)
@pytest.mark.mutation
def test_agrs_decodes_float32_codes_the_same_with_x64_on():
    """The decoder draws its uniforms in the prior's dtype: float32 codes decode to the same float32
    samples with x64 on (coders/greedy/_agrs mutation survivor: ``dtype = None`` in ``decode`` draws
    float64 uniforms under x64)."""
    target, prior = gaussian_pair(KS_PAIRS[1])
    keys = jax.random.split(jax.random.key(47), 16)
    enc, dec = compiled(jaxrec.agrs(max_steps=2**10))
    codes = enc(keys, target, prior)
    want = np.asarray(dec(keys, codes, prior))
    with jax.enable_x64(True):
        f32 = jaxrec.DiagGaussian(jnp.float32(prior.loc), jnp.float32(prior.scale))
        got = np.asarray(jax.jit(jax.vmap(jaxrec.agrs(max_steps=2**10).decode, in_axes=(0, 0, None)))(keys, codes, f32))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_agrs_packed_symbols_and_unpacked_fields_are_integers():
    """``pack``/``unpack`` keep integer dtypes (a float field would be refused by the decoder's code
    check: coders/greedy/_agrs mutation survivor ``-(u + 1) / 2`` in the zigzag inverse)."""
    entry, spec = REGISTRY["agrs"], jaxrec.agrs().spec
    fields = {"index": np.array([0, 3, 5]), "bound_level": np.array([0, -1, 7]), "bound_index": np.array([0, -3, 4])}
    symbols = entry.pack(spec, fields)
    back = entry.unpack(spec, symbols)
    assert all(v.dtype.kind == "i" for v in (*symbols.values(), *back.values())), (symbols, back)
    assert {k: v.tolist() for k, v in back.items()} == {k: v.tolist() for k, v in fields.items()}
