"""Lossy compression with realism constraints: the Gaussian bounds and channel, the quantization
baselines, the realism statistics and the lossy VAE codec (jaxrec.models.realism)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import optimize, stats
from scipy.special import logsumexp

import jaxrec
from jaxrec.models import vae
from jaxrec.models.realism import (
    GaussianChannel,
    LossyVAE,
    ScalarQuantizer,
    channel_correlation,
    channel_noise_scale,
    channel_rate,
    distortion_rate,
    ks_gaussian,
    latent_key,
    perfect_realism_distortion,
    perfect_realism_rate,
    projection_ks,
    rate_distortion,
    sample_likelihood,
    two_sample_test,
)

RATES = np.array([0.05, 0.25, 0.5, 1.0, 2.0, 3.0, 6.0, 12.0])

# ------------------------------------------------------------------------------------------------
# Bounds


def test_channel_parameters_match_the_rate():
    rho = channel_correlation(RATES)
    np.testing.assert_allclose(channel_rate(rho), RATES, rtol=1e-12)
    np.testing.assert_allclose(channel_noise_scale(RATES, 2.0), 2.0 * np.sqrt(1.0 - rho**2), rtol=1e-12)
    # the channel's MSE 2 sigma^2 (1 - rho) is the bound with common randomness
    np.testing.assert_allclose(
        perfect_realism_distortion(RATES, 3.0, common_randomness=True), 2 * 3.0 * (1 - rho), rtol=1e-9
    )


def test_bounds_are_ordered_with_the_documented_limits():
    shannon = distortion_rate(RATES)
    with_cr = perfect_realism_distortion(RATES, common_randomness=True)
    without = perfect_realism_distortion(RATES, common_randomness=False)
    assert np.all(shannon < with_cr) and np.all(with_cr < without)
    np.testing.assert_allclose(without / shannon, 2.0)  # 3 dB without common randomness
    assert with_cr[-1] / shannon[-1] == pytest.approx(1.0, abs=1e-6)  # common randomness: Shannon at high rate
    assert perfect_realism_distortion(0.0, common_randomness=True) == pytest.approx(2.0)  # zero rate: independent
    assert perfect_realism_distortion(0.0, common_randomness=False) == pytest.approx(2.0)


@pytest.mark.parametrize("common_randomness", [True, False])
def test_rate_functions_invert_the_distortion_functions(common_randomness):
    distortion = perfect_realism_distortion(RATES, 1.7, common_randomness=common_randomness)
    np.testing.assert_allclose(
        perfect_realism_rate(distortion, 1.7, common_randomness=common_randomness), RATES, rtol=1e-9
    )
    np.testing.assert_allclose(rate_distortion(distortion_rate(RATES, 1.7), 1.7), RATES, rtol=1e-12)
    assert perfect_realism_rate(2.5, common_randomness=common_randomness) == 0.0


def _entropic_coupling(grid_points: int, strength: float) -> tuple[float, float]:
    """The coupling of a discretized N(0, 1) with itself minimizing ``E (X - Xh)^2 + strength I(X; Xh)``
    (entropic optimal transport, log-domain Sinkhorn): returns ``(I in bits, E (X - Xh)^2)``.

    With both marginals fixed this is exactly the perfect-realism rate-distortion problem with common
    randomness (Blau & Michaeli 2019), solved with no Gaussian assumption.
    """
    x = np.linspace(-7.0, 7.0, grid_points)
    log_p = -0.5 * x**2
    log_p -= logsumexp(log_p)
    cost = (x[:, None] - x[None, :]) ** 2
    log_kernel = -cost / strength
    f = np.zeros(grid_points)
    g = np.zeros(grid_points)
    for _ in range(200):
        f = log_p - logsumexp(log_kernel + g[None, :], axis=1)
        g = log_p - logsumexp(log_kernel + f[:, None], axis=0)
    log_pi = f[:, None] + log_kernel + g[None, :]
    pi = np.exp(log_pi)
    np.testing.assert_allclose(pi.sum(axis=0), np.exp(log_p), atol=1e-9)  # converged: both marginals hold
    info = np.sum(pi * (log_pi - log_p[:, None] - log_p[None, :])) / math.log(2.0)
    return float(info), float(np.sum(pi * cost))


@pytest.mark.parametrize("strength", [8.0, 2.0, 0.5, 0.15])
def test_perfect_realism_bound_with_common_randomness_matches_optimal_transport(strength):
    info, distortion = _entropic_coupling(161, strength)
    bound = float(perfect_realism_distortion(info, common_randomness=True))
    assert distortion == pytest.approx(bound, rel=1e-6)


def test_bound_without_common_randomness_is_the_gaussian_auxiliary_optimum():
    # min over jointly Gaussian X - U - Xh (correlations a, b to U) of 2 (1 - a b) s.t. I(X;U), I(Xh;U) <= R
    for rate in (0.25, 1.0, 3.0):
        cap = channel_correlation(rate)

        def distortion(ab):
            return 2.0 * (1.0 - ab[0] * ab[1])

        best = optimize.minimize(distortion, x0=[0.3 * cap, 0.5 * cap], bounds=[(0, cap), (0, cap)]).fun
        assert best == pytest.approx(float(perfect_realism_distortion(rate, common_randomness=False)), rel=1e-6)


def test_quantization_with_posterior_sampling_never_beats_the_bound_without_common_randomness():
    for step in np.geomspace(0.02, 8.0, 40):
        q = ScalarQuantizer(float(step))
        rate = q.entropy_bits()
        assert q.mse("sample") >= float(perfect_realism_distortion(rate, common_randomness=False))
        assert q.mse("centroid") >= float(distortion_rate(rate))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: channel_correlation(-0.1), r"rate_bits must be finite and >= 0, got -0\.1"),
        (lambda: channel_correlation(float("nan")), "rate_bits must be finite and >= 0, got nan"),
        (lambda: distortion_rate(1.0, variance=0.0), "variance must be finite and > 0"),
        (lambda: perfect_realism_rate(0.0, common_randomness=True), "distortion must be > 0"),
        (lambda: channel_rate(1.0), r"rho must lie in \[0, 1\)"),
    ],
)
def test_bounds_reject_bad_arguments(call, match):
    with pytest.raises(jaxrec.InvalidArgumentError, match=match):
        call()


# ------------------------------------------------------------------------------------------------
# The Gaussian channel as a codec


def test_gaussian_channel_target_and_statistics():
    channel = GaussianChannel(dim=6, rate_bits=1.5, sigma=2.0)
    x = channel.sample_source(jax.random.key(0), 20000)
    targets = jax.vmap(channel.target)(x)
    assert targets.loc.shape == (20000, 6)
    np.testing.assert_allclose(np.asarray(targets.scale), channel.noise_scale, rtol=1e-6)
    kl = np.asarray(jaxrec.kl(targets, channel.prior(), per_dim=True))
    assert kl.mean(axis=0) == pytest.approx(channel.kl_statistics(), abs=0.03)  # E_x KL = I(X; Xh) = R
    # D_inf = R + x^2 / (2 sigma^2 ln 2) per coordinate
    dinf = np.asarray(jaxrec.dinf(targets, channel.prior(), per_dim=True))
    np.testing.assert_allclose(dinf, 1.5 + np.asarray(x) ** 2 / (2 * 4.0 * math.log(2)), rtol=1e-4, atol=1e-4)
    with pytest.raises(jaxrec.InvalidArgumentError, match=r"an item must have shape \(6,\), got \(5,\)"):
        channel.target(jnp.zeros(5))
    for bad, match in (
        ({"dim": 0, "rate_bits": 1.0}, "dim must be a positive int"),
        ({"dim": 3, "rate_bits": 0.0}, "rate_bits must be a finite float > 0"),
        ({"dim": 3, "rate_bits": 1.0, "sigma": -1.0}, "sigma must be a finite float > 0"),
    ):
        with pytest.raises(jaxrec.InvalidArgumentError, match=match):
            GaussianChannel(**bad)


@pytest.mark.slow  # 13 s in the fast tier (2 idle cores)
def test_rec_through_an_archive_samples_the_channel_exactly():
    """PFR on blocks of 4 coordinates: the decoded Xh is N(0, 1) (KS over 5120 coordinates and on
    projections), has correlation rho with X and the bound's MSE."""
    channel = GaussianChannel(dim=64, rate_bits=1.0)
    plan = jaxrec.plan_blocks(channel.kl_statistics(), budget_bits=4.0, key=0)
    assert plan.num_blocks == 16
    x = channel.sample_source(jax.random.key(3), 80)
    data = jaxrec.compress_batch(channel, x, key=11, coder=jaxrec.pfr(), plan=plan)
    x_hat = np.asarray(jaxrec.decompress_batch(channel, data, plan=plan))
    assert x_hat.shape == (80, 64)
    assert ks_gaussian(x_hat).pvalue > 1e-3
    assert projection_ks(x_hat.reshape(-1, 4), num_projections=8).pvalue > 1e-3
    rho = float(np.corrcoef(np.asarray(x).reshape(-1), x_hat.reshape(-1))[0, 1])
    assert rho == pytest.approx(channel.rho, abs=0.02)
    mse = float(np.mean((x_hat - np.asarray(x)) ** 2))
    assert mse == pytest.approx(float(perfect_realism_distortion(1.0, common_randomness=True)), rel=0.08)


# ------------------------------------------------------------------------------------------------
# Quantization baselines


@pytest.mark.parametrize("rate", [0.3, 1.0, 4.0])
def test_quantizer_tables(rate):
    q = ScalarQuantizer.at_rate(rate, sigma=1.5)
    p = np.exp(q.log_probs)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert q.entropy_bits() == pytest.approx(rate, abs=1e-9)
    assert np.sum(p * q.centroids) == pytest.approx(0.0, abs=1e-12)
    # law of total variance: E Var(X|k) + Var E[X|k] = sigma^2
    assert np.sum(p * (q.variances + q.centroids**2)) == pytest.approx(1.5**2, rel=1e-9)
    assert q.mse("sample") == pytest.approx(2 * q.mse("centroid"))


def test_quantizer_high_rate_limits():
    """At high rate ECSQ is 1.53 dB (a factor pi e / 6) above Shannon's D(R) and its entropy is
    h(X) - log2(step) (Gish & Pierce, IEEE Trans. IT 1968): checks the cell tables far from the
    low-rate regime the other tests use."""
    q = ScalarQuantizer.at_rate(8.0, sigma=0.7)
    assert q.mse("centroid") / float(distortion_rate(8.0, 0.49)) == pytest.approx(math.pi * math.e / 6, rel=2e-3)
    assert q.mse("centroid") == pytest.approx(q.step**2 / 12, rel=1e-3)
    differential_entropy = 0.5 * math.log2(2 * math.pi * math.e * 0.49)
    assert q.entropy_bits() == pytest.approx(differential_entropy - math.log2(q.step), abs=1e-3)
    # posterior sampling doubles it: 3 dB + 1.53 dB above Shannon, 1.53 dB above the bound without common randomness
    gap = q.mse("sample") / float(perfect_realism_distortion(8.0, 0.49, common_randomness=False))
    assert gap == pytest.approx(math.pi * math.e / 6, rel=2e-3)


def test_quantizer_round_trip_mse_and_realism():
    q = ScalarQuantizer.at_rate(0.75)
    x = np.asarray(jax.random.normal(jax.random.key(5), (40000,)))
    cells = q.quantize(x)
    data = q.encode(cells)
    np.testing.assert_array_equal(q.decode(data, cells.size), cells)
    assert 8 * len(data) / cells.size == pytest.approx(q.entropy_bits(), abs=0.02)
    results = {}
    for decoder in ("centroid", "sample", "noise"):
        x_hat = q.reconstruct(cells, decoder, key=jax.random.key(6))
        assert np.mean((x - x_hat) ** 2) == pytest.approx(q.mse(decoder), rel=0.03)
        results[decoder] = ks_gaussian(x_hat[:20000]).pvalue
    assert results["sample"] > 1e-3  # posterior sampling: exactly N(0, 1)
    assert results["noise"] < 1e-6  # moment matching only: a Gaussian mixture
    assert results["centroid"] < 1e-6  # discrete


def test_quantizer_rejects_bad_arguments():
    q = ScalarQuantizer(1.0)
    for call, match in (
        (lambda: ScalarQuantizer(0.0), "step must be a finite number > 0"),
        (lambda: ScalarQuantizer(1e-6), "cells over .* more than 65536"),  # too many cells
        (lambda: q.reconstruct(np.array([q.num_cells]), "centroid"), "cells must be ints in"),
        (lambda: q.reconstruct(np.array([0]), "sample"), "decoder 'sample' needs a key"),  # no key
        (lambda: q.reconstruct(np.array([0]), "median"), "decoder must be one of"),
        (lambda: q.quantize(np.array([np.nan])), "x must be finite"),
        (lambda: ScalarQuantizer.at_rate(0.0), "rate_bits must lie in"),
    ):
        with pytest.raises(jaxrec.InvalidArgumentError, match=match):
            call()


# ------------------------------------------------------------------------------------------------
# Realism statistics


def test_ks_and_projection_tests():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5000, 2))
    assert ks_gaussian(z).pvalue > 1e-3 and projection_ks(z).pvalue > 1e-3
    assert ks_gaussian(1.1 * z).pvalue < 1e-3
    # every coordinate is N(0, 1), the pair is not N(0, I): only projections see it
    twins = np.repeat(z[:, :1], 2, axis=1)
    assert ks_gaussian(twins).pvalue > 1e-3
    assert projection_ks(twins).pvalue < 1e-6


@pytest.mark.parametrize("kernel", ["gaussian", "energy"])
def test_two_sample_test(kernel):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((300, 5)), rng.standard_normal((250, 5))
    bandwidth = 3.0 if kernel == "gaussian" else None
    same = two_sample_test(x, y, kernel=kernel, bandwidth=bandwidth, num_permutations=100)
    shifted = two_sample_test(x, y + 0.4, kernel=kernel, bandwidth=bandwidth, num_permutations=100)
    assert same.pvalue > 1e-2 and abs(same.statistic) < shifted.statistic
    assert shifted.pvalue == pytest.approx(1 / 101)
    with pytest.raises(jaxrec.InvalidArgumentError, match="x and y must have the same dimension"):
        two_sample_test(x, y[:, :4], kernel=kernel, bandwidth=bandwidth)
    with pytest.raises(jaxrec.InvalidArgumentError, match="kernel must be one of"):
        two_sample_test(x, y, kernel="laplace")


def test_unbiased_mmd_matches_a_direct_computation():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((20, 3)), rng.standard_normal((15, 3)) + 0.5

    def k(a, b):
        return np.exp(-np.sum((a[:, None] - b[None]) ** 2, axis=-1) / (2 * 1.3**2))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    direct = (
        (kxx.sum() - np.trace(kxx)) / (20 * 19) + (kyy.sum() - np.trace(kyy)) / (15 * 14) - 2 * kxy.mean()
    )
    assert two_sample_test(x, y, bandwidth=1.3, num_permutations=5).statistic == pytest.approx(direct, rel=1e-10)


# ------------------------------------------------------------------------------------------------
# Lossy VAE


@pytest.fixture(scope="module")
def small_vae():
    return vae.VAE(vae.VAEConfig(image_shape=(4, 3), latent_dim=3, hidden=(8,)), rngs=nnx.Rngs(0))


@pytest.mark.slow  # statistical, 7 s cold in the fast tier
def test_likelihood_samples_follow_the_beta_binomial(small_vae):
    z = jnp.array([0.3, -1.0, 0.5])
    draw = jax.jit(jax.vmap(lambda k: sample_likelihood(small_vae, k, z)))
    draws = draw(jax.random.split(jax.random.key(0), 6000))
    log2_a, log2_b = (np.asarray(v, np.float64) for v in small_vae.likelihood_params(z))
    assert draws.shape == (6000, 4, 3)
    for pixel in (0, 7):
        pmf = stats.betabinom(255, 2.0 ** log2_a[pixel], 2.0 ** log2_b[pixel]).pmf(np.arange(256))
        observed = np.bincount(np.asarray(draws).reshape(6000, -1)[:, pixel].astype(int), minlength=256)
        # pool the 256 levels into 16 bands so that every expected count is large
        assert stats.chisquare(observed.reshape(16, 16).sum(1), 6000 * pmf.reshape(16, 16).sum(1)).pvalue > 1e-3


@pytest.mark.slow  # 3.5 s cold in the fast tier
def test_lossy_vae_reconstructions(small_vae):
    sample = LossyVAE(small_vae, reconstruction="sample", seed=3)
    mean = LossyVAE(small_vae, reconstruction="mean")
    z = jnp.array([0.3, -1.0, 0.5])
    reconstruct = jax.jit(lambda z: sample.reconstruct(z))
    x_hat = np.asarray(reconstruct(z))
    np.testing.assert_array_equal(x_hat, np.asarray(reconstruct(z + 0.0)))  # a function of (seed, z) only
    assert x_hat.shape == (4, 3) and x_hat.dtype == np.float32
    assert np.all(x_hat == np.round(x_hat)) and x_hat.min() >= 0 and x_hat.max() <= 255
    np.testing.assert_array_equal(np.asarray(mean.reconstruct(z)), np.asarray(small_vae.reconstruct(z)))
    # one flipped bit of z, or another seed, gives another key
    nudged = z.at[1].set(jnp.nextafter(z[1], jnp.inf))
    keys = [latent_key(3, z), latent_key(3, nudged), latent_key(4, z)]
    words = {tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in keys}
    assert len(words) == 3


@pytest.mark.slow  # 9 s in the fast tier (2 idle cores)
def test_lossy_vae_round_trip_through_an_archive(small_vae):
    codec = LossyVAE(small_vae, reconstruction="sample", seed=1)
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    data = jaxrec.compress_batch(codec, images, key=2, coder=jaxrec.orc(2**8))
    samples = np.asarray(jaxrec.decompress_batch(codec, data))
    means = np.asarray(jaxrec.decompress_batch(LossyVAE(small_vae, reconstruction="mean"), data))
    assert samples.shape == means.shape == (5, 4, 3)
    assert np.all(samples == np.round(samples)) and not np.array_equal(samples, means)
    assert means.min() >= 0 and means.max() <= 255


def test_lossy_vae_rejects_bad_arguments(small_vae):
    for kwargs, match in (
        ({"reconstruction": "mode"}, "reconstruction must be one of"),
        ({"seed": -1}, "seed must be an int in"),
        ({"seed": True}, "seed must be an int in"),
    ):
        with pytest.raises(jaxrec.InvalidArgumentError, match=match):
            LossyVAE(small_vae, **kwargs)
    with pytest.raises(jaxrec.InvalidArgumentError, match="vae must be a jaxrec.models.vae.VAE"):
        LossyVAE(object())
