"""Tests for iREC (auxiliary variables + beam search; approximate, fixed budget)."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sampler_helpers import compiled
from scipy import stats

import jaxrec
from jaxrec.coders.auxiliary import _irec as irec_mod
from jaxrec.coders.registry import REGISTRY
from jaxrec.core import prng
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.entropy.models import UniformModel

N = 5000
P1 = jaxrec.DiagGaussian(0.0, 1.0)
MU, S = 1.5, 0.2  # D_KL = 3.25 bits
# (num_samples, beam_width) with K = 2 auxiliary variables: budgets of 4 to 12 bits.
BUDGETS = [(4, 1), (16, 1), (64, 1), (16, 4)]


def _run(coder, target, prior, seed):
    keys = jax.random.split(jax.random.key(seed), N)
    codes = jax.jit(jax.vmap(coder.encode, in_axes=(0, None, None)))(keys, target, prior)
    xs = jax.jit(jax.vmap(coder.decode, in_axes=(0, 0, None)))(keys, codes, prior)
    return keys, codes, np.asarray(xs)


@pytest.fixture(scope="module")
def budget_runs():
    target = jaxrec.DiagGaussian(MU, S)
    return {(n, b): _run(jaxrec.irec(n, 2, b), target, P1, seed=1) for n, b in BUDGETS}


def _ks(xs):
    return stats.kstest(xs[:, 0], stats.norm(MU, S).cdf).statistic


@pytest.mark.slow
def test_bias_falls_with_num_samples(budget_runs):
    d = {n: _ks(budget_runs[(n, 1)][2]) for n in (4, 16, 64)}
    assert d[4] > 0.3  # 4 bits of budget for 3.25 bits of KL: far from Q
    assert d[4] > 2 * d[16] > 2 * 2 * d[64] > 0


@pytest.mark.slow
def test_bias_falls_with_beam_width(budget_runs):
    assert _ks(budget_runs[(16, 1)][2]) > 2 * _ks(budget_runs[(16, 4)][2])


@pytest.mark.slow
def test_codes_are_in_range_and_steps_count_the_candidates(budget_runs):
    for (n, b), (_, codes, xs) in budget_runs.items():
        idx = np.asarray(codes.indices)
        assert idx.shape == (N, 2) and idx.dtype == np.int32
        assert idx.min() >= 0 and idx.max() < n
        assert len(np.unique(idx[:, 0])) == n  # every candidate gets chosen sometimes
        assert (np.asarray(codes.steps) == n + min(b, n) * n).all()
        assert not np.asarray(codes.exhausted).any()
        assert np.isfinite(xs).all()


@pytest.mark.slow
def test_decode_sums_the_chosen_candidates(budget_runs):
    keys, codes, xs = budget_runs[(16, 4)]
    fractions = np.full(2, 0.5)
    for i in range(3):
        total = 0.0
        for k in range(2):
            aux = jaxrec.DiagGaussian(0.0, np.sqrt(fractions[k]))
            total += float(prng.candidates(keys[i], codes.indices[i, k : k + 1], aux, stream=k)[0, 0])
        np.testing.assert_allclose(xs[i, 0], total, rtol=1e-6, atol=1e-6)


def test_single_step_single_beam_is_gumbel_max_over_the_density_ratio():
    """K = 1, B = 1: the index is argmax_n [ln r(X_n) + G_n] (MRC), with X_n the prior candidates."""
    target = jaxrec.DiagGaussian(jnp.array([0.4, -1.0]), jnp.array([0.3, 0.5]))
    prior = jaxrec.DiagGaussian(jnp.array([0.0, -0.5]), jnp.array([1.0, 2.0]))
    coder = jaxrec.irec(32, 1)
    encode, decode = jax.jit(coder.encode), jax.jit(coder.decode)
    for seed in range(3):
        key = jax.random.key(seed)
        code = encode(key, target, prior)
        xs = prior.loc + prng.candidates(key, jnp.arange(32), irec_mod._aux_prior(prior, 1.0), stream=0)
        gumbel = jax.random.gumbel(prng.arrival_key(key, 0), (32,))
        expected = int(jnp.argmax(jaxrec.log_ratio(target, prior, xs) + gumbel))
        assert int(code.indices[0]) == expected
        np.testing.assert_allclose(decode(key, code, prior), xs[expected], rtol=1e-6)


def test_partial_sum_weights_match_the_density_ratio_at_the_end():
    target = jaxrec.DiagGaussian(jnp.array([0.7, 2.0]), jnp.array([0.2, 1.5]))
    prior = jaxrec.DiagGaussian(jnp.array([0.5, 1.0]), jnp.array([1.0, 0.8]))
    b = jnp.array([[0.3, -0.2], [1.1, 2.0]])
    got = irec_mod._log_partial_ratio(target, prior, 1.0, 0.0, b)
    np.testing.assert_allclose(got, jaxrec.log_ratio(target, prior, prior.loc + b), rtol=1e-5)
    # Monte Carlo: the target marginal of b_k (cumulative fraction L) is N(L dmu, L(1-L) s_p^2 + L^2 s_q^2)
    # (b_k given z ~ Q is the prior's conditional N(L (z - mu_p), L (1 - L) s_p^2)); the prior marginal
    # is N(0, L s_p^2).  Checked here for one coordinate, then the library's weights at intermediate L
    # against those densities (scipy), coordinate by coordinate.
    done = 0.3
    rng = np.random.default_rng(0)
    z = rng.normal(0.7, 0.2, 200_000)
    bk = done * (z - 0.5) + np.sqrt(done * (1 - done)) * rng.normal(size=z.shape)  # prior conditional given z
    mean_q = done * 0.2
    var_q = done * (1 - done) + done**2 * 0.04
    assert abs(bk.mean() - mean_q) < 0.005 and abs(bk.var() - var_q) < 0.005
    dmu = np.asarray(target.loc - prior.loc, np.float64)
    var_p, var_t = np.asarray(prior.scale, np.float64) ** 2, np.asarray(target.scale, np.float64) ** 2
    for done in (0.1, 0.3, 0.75):
        got = irec_mod._log_partial_ratio(target, prior, done, 1.0 - done, b)
        expected = np.sum(
            stats.norm.logpdf(np.asarray(b), done * dmu, np.sqrt(done * (1 - done) * var_p + done**2 * var_t))
            - stats.norm.logpdf(np.asarray(b), 0.0, np.sqrt(done * var_p)),
            axis=-1,
        )
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"L = {done}")


@pytest.mark.slow
def test_block_of_several_dimensions():
    loc, scale = jnp.array([0.5, -0.3, 1.0]), jnp.array([0.5, 0.6, 0.4])  # 2.4 bits in all
    target = jaxrec.DiagGaussian(loc, scale)
    prior = jaxrec.DiagGaussian(jnp.zeros(3), jnp.ones(3))
    coder = jaxrec.irec(64, 2, 4, variance_fractions=[2.0, 1.0])  # 12 bits of budget
    _, _, xs = _run(coder, target, prior, seed=2)
    assert xs.shape == (N, 3)
    for d in range(3):
        assert stats.kstest(xs[:, d], stats.norm(loc[d], scale[d]).cdf).pvalue > 1e-3
    assert dict(coder.spec.params)["variance_fractions"] == pytest.approx((2 / 3, 1 / 3))


@pytest.mark.slow
def test_determinism_and_vmap_invariance(budget_runs):
    keys, codes, _ = budget_runs[(16, 4)]
    coder = jaxrec.irec(16, 2, 4)
    single = jax.jit(coder.encode)
    target = jaxrec.DiagGaussian(MU, S)
    for i in range(3):
        np.testing.assert_array_equal(single(keys[i], target, P1).indices, codes.indices[i])
        np.testing.assert_array_equal(single(keys[i], target, P1).indices, codes.indices[i])


def test_bad_inputs_raise():
    for kwargs, argument in [
        ({"num_samples": 0, "num_aux": 2}, "num_samples"),
        ({"num_samples": 4, "num_aux": 0}, "num_aux"),
        ({"num_samples": 4, "num_aux": 2, "beam_width": 0}, "beam_width"),
        ({"num_samples": 4.0, "num_aux": 2}, "num_samples"),
        ({"num_samples": 4, "num_aux": 2, "variance_fractions": [1.0]}, "variance_fractions"),
        ({"num_samples": 4, "num_aux": 2, "variance_fractions": [1.0, -1.0]}, "variance_fractions"),
        ({"num_samples": 4, "num_aux": 2, "variance_fractions": [1.0, float("nan")]}, "variance_fractions"),
    ]:
        with pytest.raises(InvalidArgumentError, match=f"{argument} must be"):
            jaxrec.irec(**kwargs)
    coder = jaxrec.irec(8, 2)
    with pytest.raises(InvalidArgumentError, match="DiagGaussian"):
        coder.encode(0, jaxrec.Uniform(0.0, 1.0), P1)
    with pytest.raises(InvalidArgumentError, match="vmap"):
        coder.encode(0, jaxrec.DiagGaussian(jnp.zeros((2, 1)), jnp.ones((2, 1))), P1)
    with pytest.raises(InvalidArgumentError, match="event sizes"):
        coder.encode(0, jaxrec.DiagGaussian(jnp.zeros(2), jnp.ones(2)), P1)
    code = irec_mod.IrecCode(jnp.zeros(3, jnp.int32), jnp.int32(0), jnp.int32(0), coder="irec", event_size=1)
    with pytest.raises(InvalidArgumentError, match="shape"):
        coder.decode(0, code, P1)
    with pytest.raises(InvalidArgumentError, match="prior"):
        coder.decode(0, code.replace(indices=jnp.zeros(2, jnp.int32)), jaxrec.Uniform(0.0, 1.0))


def _irec_reference(key, target, prior, num_samples, fractions, beam_width):
    """iREC's beam search (module docstring) in float64 from its equations: the partial sums'
    marginals ``q_k = N(L_k dmu, L_k (1 - L_k) s_p^2 + L_k^2 s_q^2)`` and ``p_k = N(0, L_k s_p^2)`` by
    scipy, particle weights ``w * (q_k / p_k)(b_k) / (q_{k-1} / p_{k-1})(b_{k-1})``, Gumbel-top-``B``
    selection and the weight divided by ``1 - exp(-w / e^kappa)`` (``kappa`` the ``(B+1)``-th perturbed
    score).  Only the candidates ``a_k`` and the Gumbels come from the library.  Returns the top
    path's indices and ``steps = N sum_k (live beams)``."""
    loc_p, scale_p = np.asarray(prior.loc, np.float64), np.asarray(prior.scale, np.float64)
    dmu, scale_q = np.asarray(target.loc, np.float64) - loc_p, np.asarray(target.scale, np.float64)
    done = np.cumsum(fractions)
    done[-1] = 1.0

    def log_ratio(b, cum):
        q = stats.norm.logpdf(b, cum * dmu, np.sqrt(cum * (1 - cum) * scale_p**2 + cum**2 * scale_q**2))
        return np.sum(q - stats.norm.logpdf(b, 0.0, np.sqrt(cum) * scale_p), axis=-1)

    beams = [(np.zeros_like(loc_p), 0.0, 0.0, [])]  # (partial sum, ln q_k/p_k, ln weight, indices)
    steps = 0
    for k, fraction in enumerate(fractions):
        aux = jaxrec.DiagGaussian(jnp.zeros_like(prior.loc), prior.scale * jnp.sqrt(jnp.float32(fraction)))
        a = np.asarray(prng.candidates(key, jnp.arange(num_samples), aux, stream=k), np.float64)
        gumbel = np.asarray(jax.random.gumbel(prng.arrival_key(key, k), (beam_width * num_samples,)), np.float64)
        steps += num_samples * len(beams)
        extensions = []
        for j, (partial, ratio, weight, indices) in enumerate(beams):
            for n in range(num_samples):
                b = partial + a[n]
                new_ratio = log_ratio(b, done[k])
                log_w = weight + new_ratio - ratio
                extensions.append((log_w + gumbel[j * num_samples + n], b, new_ratio, log_w, indices + [n]))
        extensions.sort(key=lambda ext: -ext[0])
        threshold = extensions[beam_width][0] if len(extensions) > beam_width else -np.inf
        beams = [(b, ratio, log_w - np.log(-np.expm1(-np.exp(log_w - threshold))), indices)
                 for _, b, ratio, log_w, indices in extensions[:beam_width]]
    return beams[0][3], steps


@pytest.mark.slow  # 5 s cold in the fast tier
@pytest.mark.mutation
def test_beam_search_chooses_the_path_a_float64_reference_chooses():
    """K = 3 auxiliary variables of unequal variance fractions, N = 6 candidates, B = 4 beams, a 2-D
    block against a shifted prior of non-unit scales: the indices and ``steps`` equal the reference's on
    8 keys, and the decoder returns the prior mean plus the chosen candidates (coders/auxiliary/_irec
    mutation survivors: only K = 1, B = 1 and the weights' formula were fast-tested)."""
    target = jaxrec.DiagGaussian(jnp.array([0.8, -0.9]), jnp.array([0.3, 0.6]))
    prior = jaxrec.DiagGaussian(jnp.array([0.2, -0.5]), jnp.array([1.2, 2.0]))
    fractions = np.array([3.0, 2.0, 1.0]) / 6.0
    coder = jaxrec.irec(6, 3, 4, variance_fractions=[3.0, 2.0, 1.0])
    keys = jax.random.split(jax.random.key(61), 8)
    enc, dec = compiled(coder)
    codes = enc(keys, target, prior)
    xs = np.asarray(dec(keys, codes, prior), np.float64)
    for i in range(len(keys)):
        indices, steps = _irec_reference(keys[i], target, prior, 6, fractions, 4)
        assert np.asarray(codes.indices[i]).tolist() == indices and int(codes.steps[i]) == steps, i
        chosen = sum(
            np.asarray(prng.candidates(keys[i], jnp.array([n]), jaxrec.DiagGaussian(
                jnp.zeros(2), prior.scale * jnp.sqrt(jnp.float32(f))), stream=k)[0], np.float64)
            for k, (n, f) in enumerate(zip(indices, fractions)))
        np.testing.assert_allclose(xs[i], np.asarray(prior.loc) + chosen, rtol=1e-5, atol=1e-5)
    assert int(codes.steps[0]) == 6 * (1 + 4 + 4) and (np.asarray(codes.status) == 0).all()
    # more beams than candidates (B = 5 > N = 3): the first steps keep dead beams, which must neither
    # count as scored nor win a later step
    few = jaxrec.irec(3, 3, 5, variance_fractions=[3.0, 2.0, 1.0])
    codes = compiled(few)[0](keys[:4], target, prior)
    for i in range(4):
        indices, steps = _irec_reference(keys[i], target, prior, 3, fractions, 5)
        assert np.asarray(codes.indices[i]).tolist() == indices and int(codes.steps[i]) == steps == 3 * (1 + 3 + 5), i


@pytest.mark.slow  # 4 s cold: two compiles
@pytest.mark.mutation
def test_irec_float32_codes_do_not_depend_on_the_x64_flag():
    """A float32 problem is searched in float32 (Gumbels, partial sums, weights) with or without x64:
    the same indices (coders/auxiliary/_irec mutant ``dtype = None``, the default float)."""
    target = jaxrec.DiagGaussian(jnp.array([0.8, -0.9]), jnp.array([0.3, 0.6]))
    prior = jaxrec.DiagGaussian(jnp.array([0.2, -0.5]), jnp.array([1.2, 2.0]))
    keys = jax.random.split(jax.random.key(62), 16)
    encode = lambda: jax.jit(jax.vmap(jaxrec.irec(6, 3, 4).encode, in_axes=(0, None, None)))(keys, target, prior)
    plain = encode()
    with jax.enable_x64(True):
        wide = encode()
    for field in ("indices", "steps", "status"):
        np.testing.assert_array_equal(getattr(wide, field), getattr(plain, field), field)


def test_irec_factory_limits_defaults_cache_and_message():
    """The factory's limits at and one past each end, the default beam width, the factory cache, the
    header message (``K`` indices uniform on ``[0, N)``), the fraction check naming its argument, and
    ``log(1 - e^x)`` accurate next to 0 (coders/auxiliary/_irec mutation survivors; no compile)."""
    for kwargs, argument in (({"num_samples": 2**31 - 1, "num_aux": 1}, None), ({"num_samples": 2**31, "num_aux": 1}, "num_samples"),
                             ({"num_samples": 2, "num_aux": 4096}, None), ({"num_samples": 2, "num_aux": 4097}, "num_aux"),
                             ({"num_samples": 2, "num_aux": 1, "beam_width": 2**16}, None),
                             ({"num_samples": 2, "num_aux": 1, "beam_width": 2**16 + 1}, "beam_width")):
        if argument is None:
            assert isinstance(jaxrec.irec(**kwargs), jaxrec.Coder), kwargs
        else:
            with pytest.raises(InvalidArgumentError, match=f"^{argument} must be"):
                jaxrec.irec(**kwargs)
    assert irec_mod.MAX_SAMPLES == 2**31 - 1 and irec_mod.MAX_AUX == 4096 and irec_mod.MAX_BEAMS == 2**16
    coder = jaxrec.irec(8, 2)
    assert coder is jaxrec.irec(8, 2) and dict(coder.spec.params)["beam_width"] == 1
    entry = REGISTRY["irec"]
    assert entry.message(coder.spec, 6.0, None) == (("indices", UniformModel(8)),)
    for bad in ("ab", [1.0, 0.0]):
        with pytest.raises(InvalidArgumentError, match="^variance_fractions must be"):
            jaxrec.irec(8, 2, variance_fractions=bad)
    x = jnp.array([-1e-8, -1e-3, -0.6931471805599453, -0.7, -3.0, -40.0], jnp.float32)
    exact = np.log(-np.expm1(np.asarray(x, np.float64)))
    np.testing.assert_allclose(np.asarray(irec_mod._log1mexp(x), np.float64), exact, rtol=2e-6, atol=1e-12)
