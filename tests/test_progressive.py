"""Progressive coding (the codec's optional ``refine``): a toy codec with a closed-form conditional.

The latent holds ``K`` independent bivariate Gaussian pairs ``(a_k, b_k)`` with correlation
``RHO``; the plan puts all ``a`` in one block and all ``b`` in another.  ``target(x)`` is the
factorized product of the marginals; ``refine`` replaces the marginal of every coordinate whose
partner is fixed by its exact conditional ``b | a ~ N(mu_b + RHO s_b / s_a (a - mu_a), s_b^2 (1 - RHO^2))``.
Whatever block the encoder codes first (largest KL first, which differs between items), the decoded
pair is then an exact sample of the correlated joint, although the coder only ever sees diagonal
Gaussians.  Coding both blocks in one step (``group_size=2``) never calls ``refine`` and gives
uncorrelated pairs: the test can tell.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxrec
from jaxrec import codec as jcodec
from jaxrec.core.errors import InvalidArgumentError

K = 2
RHO = 0.8
NUM_ITEMS = 5000  # the KS run (slow tier)
NUM_SMALL = 256  # the order and bit-exactness checks (fast tier)


class PairCodec:
    """Items ``x`` are ``(2K,)`` posterior means; fixed posterior scales; ``reconstruct`` = identity."""

    def __init__(self):
        self.scale = jnp.concatenate([jnp.full(K, 0.3), jnp.full(K, 0.5)]).astype(jnp.float32)
        self.refine_calls = 0

    def prior(self):
        return jaxrec.DiagGaussian(jnp.zeros(2 * K), jnp.ones(2 * K))

    def target(self, x):
        return jaxrec.DiagGaussian(x, self.scale)

    def reconstruct(self, z):
        return z

    def refine(self, x, target, z, fixed):
        self.refine_calls += 1  # counts traces (vmapped calls), not items
        mu_a, mu_b = x[:K], x[K:]
        s_a, s_b = self.scale[:K], self.scale[K:]
        a, b = z[:K], z[K:]
        fa, fb = fixed[:K], fixed[K:]
        cond_s = jnp.sqrt(1.0 - RHO**2)
        loc_b = jnp.where(fa & ~fb, mu_b + RHO * s_b / s_a * (a - mu_a), target.loc[K:])
        scale_b = jnp.where(fa & ~fb, s_b * cond_s, target.scale[K:])
        loc_a = jnp.where(fb & ~fa, mu_a + RHO * s_a / s_b * (b - mu_b), target.loc[:K])
        scale_a = jnp.where(fb & ~fa, s_a * cond_s, target.scale[:K])
        return jaxrec.DiagGaussian(jnp.concatenate([loc_a, loc_b]), jnp.concatenate([scale_a, scale_b]))


PLAN = jaxrec.BlockPlan(order=np.arange(2 * K), sizes=np.array([K, K]))


def items(num, seed=0):
    """Posterior means drawn so that the prior is the marginal; their spread makes block a the larger
    KL for some items and block b for others."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num, 2 * K)) * np.sqrt(1 - np.concatenate([np.full(K, 0.09), np.full(K, 0.25)]))
    return jnp.asarray(x, jnp.float32)


def _run(num):
    model = PairCodec()
    xs = items(num)
    report = jcodec.compress_report(model, xs, key=3, coder=jaxrec.pfr(), plan=PLAN, group_size=1)
    calls = model.refine_calls
    decoded = jaxrec.decompress_batch(model, report.archive, plan=PLAN)
    return model, xs, report, np.asarray(decoded), calls


@pytest.fixture(scope="module")
def small_run():
    return _run(NUM_SMALL)


def test_blocks_are_coded_largest_kl_first_and_decoded_bit_exact(small_run):
    model, xs, report, decoded, calls = small_run
    n = len(xs)
    assert calls >= 1 and model.refine_calls == calls  # decompression never calls refine
    # decoding needs no refine and gives the encoder's latent: decode with a codec without refine
    plain = jaxrec.decompress_batch(_WithoutRefine(model), report.archive, plan=PLAN)
    np.testing.assert_array_equal(np.asarray(plain), decoded)
    # the first block coded was the one of larger initial KL; its KL is the marginal one
    initial = np.asarray(jaxrec.kl(*PLAN.split(jaxrec.DiagGaussian(xs, model.scale), model.prior())))
    first = np.argmax(initial, axis=1)
    np.testing.assert_allclose(report.block_kl[np.arange(n), first], initial[np.arange(n), first], rtol=1e-5)
    assert 0.02 < first.mean() < 0.98  # both orders occur
    # the block coded second was coded from the conditional given the *decoded* first block
    x, s, z = np.asarray(xs, np.float64), np.asarray(model.scale, np.float64), decoded.astype(np.float64)
    lo, hi = np.where(first[:, None] == 0, 0, K) + np.arange(K), np.where(first[:, None] == 0, K, 0) + np.arange(K)
    rows = np.arange(n)[:, None]
    mean = x[rows, hi] + RHO * s[hi] / s[lo] * (z[rows, lo] - x[rows, lo])
    std = s[hi] * np.sqrt(1 - RHO**2)
    conditional_kl = np.sum(-np.log(std) + (std**2 + mean**2 - 1) / 2, axis=1) / np.log(2)
    np.testing.assert_allclose(report.block_kl[np.arange(n), 1 - first], conditional_kl, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_decoded_pairs_are_exact_samples_of_the_correlated_joint():
    model, xs, _, decoded, _ = _run(NUM_ITEMS)
    x = np.asarray(xs)
    s = np.asarray(model.scale)
    za = (decoded[:, :K] - x[:, :K]) / s[:K]
    zb = (decoded[:, K:] - x[:, K:]) / s[K:]
    for k in range(K):
        assert stats.kstest(za[:, k], "norm").pvalue > 1e-3
        assert stats.kstest(zb[:, k], "norm").pvalue > 1e-3
        residual = (zb[:, k] - RHO * za[:, k]) / np.sqrt(1 - RHO**2)
        assert stats.kstest(residual, "norm").pvalue > 1e-3, k
        assert abs(np.corrcoef(za[:, k], zb[:, k])[0, 1] - RHO) < 4 / np.sqrt(NUM_ITEMS)


@pytest.mark.slow
def test_one_step_never_refines_and_loses_the_correlation():
    model = PairCodec()
    xs = items(2000, seed=1)
    archive = jaxrec.compress_batch(model, xs, key=4, coder=jaxrec.pfr(), plan=PLAN, group_size=2)
    assert model.refine_calls == 0
    decoded = np.asarray(jaxrec.decompress_batch(model, archive, plan=PLAN))
    s, x = np.asarray(model.scale), np.asarray(xs)
    corr = np.corrcoef((decoded[:, 0] - x[:, 0]) / s[0], (decoded[:, K] - x[:, K]) / s[K])[0, 1]
    assert abs(corr) < 4 / np.sqrt(2000)


def test_group_size_is_validated():
    model = PairCodec()
    with pytest.raises(InvalidArgumentError, match="group_size"):
        jaxrec.compress_batch(model, items(2), key=0, coder=jaxrec.pfr(), plan=PLAN, group_size=3)
    with pytest.raises(InvalidArgumentError, match="group_size"):
        jaxrec.compress_batch(model, items(2), key=0, coder=jaxrec.pfr(), plan=PLAN, group_size=0)


class _WithoutRefine:
    """The decoder's side: neither refine nor target."""

    def __init__(self, model):
        self.model = model

    def prior(self):
        return self.model.prior()

    def reconstruct(self, z):
        return z


@pytest.mark.slow  # compiles the progressive encoder for 1 and 4 devices
def test_progressive_codes_do_not_depend_on_the_device_count():
    model = PairCodec()
    xs = items(8, seed=2)
    many = jcodec.compress_report(model, xs, key=1, coder=jaxrec.pfr(), plan=PLAN)
    one = jcodec.compress_report(model, xs, key=1, coder=jaxrec.pfr(), plan=PLAN, devices=jax.devices()[:1])
    assert many.archive == one.archive
