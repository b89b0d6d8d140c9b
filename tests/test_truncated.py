"""Tests for tail-accurate interval masses and truncated sampling (jaxrec.truncated)."""

import runpy
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

import jaxrec
from jaxrec.core import normal_quantile, truncated
from jaxrec.core.errors import InvalidArgumentError

LOG_MASS = jax.jit(truncated.log_mass)
QUANTILE = jax.jit(truncated.quantile)

# (lo, hi): the whole line, half-lines, both tails far out, narrow intervals anywhere.
INTERVALS = [
    (-np.inf, np.inf), (-1.0, 2.0), (2.0, np.inf), (10.0, np.inf), (-np.inf, -38.0), (30.0, 31.0),
    (-40.0, -39.9), (-8.0, -7.9), (-3.0, 3.0), (0.5, 0.6), (-0.01, 0.02), (0.3, 0.3001), (5.0, 5.001),
]


def _reference_log_mass(lo: float, hi: float) -> float:
    """log P(lo < Z < hi) in float64: tail differences via log_ndtr, narrow intervals by quadrature."""
    if np.isfinite(lo) and np.isfinite(hi) and hi - lo < 0.05:
        mid = 0.5 * (lo + hi)
        val, _ = integrate.quad(lambda z: np.exp(-0.5 * (z * z - mid * mid)), lo, hi, epsabs=0, epsrel=1e-13)
        return float(np.log(val) - 0.5 * mid * mid - 0.5 * np.log(2 * np.pi))
    if np.isfinite(lo) and (not np.isfinite(hi) or lo + hi > 0):  # upper tail: reflect
        lo, hi = -hi, -lo
    la, lb = special.log_ndtr(lo), special.log_ndtr(hi)
    return float(lb + np.log1p(-np.exp(la - lb)))


def test_log_mass_matches_reference_float64():
    with jax.enable_x64(True):
        lo, hi = (jnp.asarray([iv[i] for iv in INTERVALS], jnp.float64) for i in (0, 1))
        got = np.asarray(LOG_MASS(lo, hi))
    want = np.array([_reference_log_mass(*iv) for iv in INTERVALS])
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


def test_log_mass_float32_is_accurate_in_far_tails():
    lo, hi = (jnp.asarray([iv[i] for iv in INTERVALS], jnp.float32) for i in (0, 1))
    got = np.asarray(LOG_MASS(lo, hi), np.float64)
    # reference at the float32-rounded endpoints
    want = np.array([_reference_log_mass(float(np.float32(a)), float(np.float32(b))) for a, b in INTERVALS])
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=3e-7)
    assert np.all(np.isfinite(got))


def test_log_mass_around_resolves_sub_ulp_widths():
    # half-width 1e-9 around 2 is below float32's spacing there (2.4e-7): still the right mass
    got = np.asarray(jax.jit(truncated.log_mass_around)(jnp.float32([2.0, 1.0]), jnp.float32([1e-9, 0.0])))
    assert abs(got[0] - (np.log(2e-9) + stats.norm.logpdf(2.0))) < 1e-6
    assert got[1] == -np.inf


@pytest.mark.parametrize("x64", [False, True])
def test_quantile_inverts_the_interval_cdf(x64):
    """F(quantile(u)) = u with F the interval CDF from the float64 mass (the tested reference)."""
    us = np.array([1e-6, 0.1, 0.5, 0.9, 1 - 1e-6])
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        lo = jnp.asarray([iv[0] for iv in INTERVALS], dtype)[:, None]
        hi = jnp.asarray([iv[1] for iv in INTERVALS], dtype)[:, None]
        u = jnp.asarray(us, dtype)[None, :]
        x = np.asarray(QUANTILE(lo, hi, u), np.float64)
        lo64, hi64, u64 = np.asarray(lo, np.float64), np.asarray(hi, np.float64), np.asarray(u, np.float64)
    assert np.all((x >= lo64) & (x <= hi64))
    with jax.enable_x64(True):
        cdf = np.exp(np.asarray(LOG_MASS(jnp.asarray(lo64), jnp.asarray(x))) - np.asarray(
            LOG_MASS(jnp.asarray(lo64), jnp.asarray(hi64))))
    # the error in x, in units of the interval width (or of 1 for unbounded intervals)
    width = np.minimum(hi64 - lo64, 1.0)
    dens = np.exp(stats.norm.logpdf(x) - np.asarray(
        [[_reference_log_mass(a, b)] for a, b in zip(lo64[:, 0], hi64[:, 0])]))
    err = np.abs(cdf - u64) / np.maximum(dens * width, 1e-300)
    tol = 1e-9 if x64 else 3e-4  # float32: a few ulps of the location, relative to the width
    assert np.max(err) < tol, np.max(err)


@pytest.mark.slow
def test_far_tail_samples_follow_the_truncated_law():
    """KS of float32 samples on (30, 31) and (-40, -39.9) against the float64 interval CDF;
    ``jax.random.truncated_normal`` returns the interval's edge or NaN there."""
    n = 5000
    u = jax.random.uniform(jax.random.key(3), (n,), jnp.float32)
    for lo, hi in [(30.0, 31.0), (-40.0, -39.9), (5.0, 5.001)]:
        x = np.asarray(QUANTILE(jnp.full((n,), lo, jnp.float32), jnp.full((n,), hi, jnp.float32), u), np.float64)
        lo32, hi32 = float(np.float32(lo)), float(np.float32(hi))
        with jax.enable_x64(True):
            total = LOG_MASS(jnp.float64(lo32), jnp.float64(hi32))
            def cdf(v):
                return np.exp(np.asarray(LOG_MASS(jnp.full(np.shape(v), lo32), jnp.asarray(v, jnp.float64)) - total))

            assert stats.kstest(x, cdf).pvalue > 1e-3


@jax.jit
def _helpers(key):
    g = jaxrec.DiagGaussian(jnp.asarray([1.0, -2.0]), jnp.asarray([2.0, 0.5]))
    lo, hi = jnp.asarray([0.0, -2.5]), jnp.asarray([3.0, -1.0])
    u = jaxrec.Uniform(jnp.zeros(1), jnp.ones(1) * 4.0)
    return (truncated.interval_log_mass(g, lo, hi), truncated.sample_interval(key, g, lo, hi),
            truncated.interval_log_mass(u, 1.0, 2.0), truncated.interval_quantile(u, -1.0, 2.0, 0.5))


def test_distribution_helpers():
    lo, hi = jnp.asarray([0.0, -2.5]), jnp.asarray([3.0, -1.0])
    want = np.log(stats.norm.cdf([1.0, 2.0]) - stats.norm.cdf([-0.5, -1.0]))
    log_mass, x, log_mass_u, median_u = _helpers(jax.random.key(0))
    np.testing.assert_allclose(np.asarray(log_mass), want, rtol=1e-5)
    assert x.shape == (2,) and np.all((np.asarray(x) >= np.asarray(lo)) & (np.asarray(x) <= np.asarray(hi)))
    np.testing.assert_allclose(float(log_mass_u[0]), np.log(0.25), rtol=1e-6)
    assert float(median_u[0]) == pytest.approx(1.0)
    with pytest.raises(InvalidArgumentError, match="supports DiagGaussian and Uniform"):
        truncated.interval_log_mass(object(), 0.0, 1.0)


def test_log1mexp_is_accurate_near_zero_and_far_below():
    """``log(1 - e^x)`` in float32 against float64 (Maechler 2012): near 0 it needs ``expm1``
    (``1 - e^x`` rounds to 0), far below it needs ``log1p`` (``1 - e^x`` rounds to 1), and between the
    two the value stays finite (``log(-expm1(x))`` with ``-expm1(x) > 0``)."""
    x = np.array([-1e-30, -1e-10, -1e-4, -0.3, -0.69, -0.7, -1.5, -20.0, -80.0])
    near = x > -np.log(2.0)
    want = np.empty_like(x)  # float64: exact to 1e-16
    want[near], want[~near] = np.log(-np.expm1(x[near])), np.log1p(-np.exp(x[~near]))
    got = np.asarray(jax.jit(truncated.log1mexp)(jnp.asarray(x, jnp.float32)), np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_ndtri_log_inverts_log_ndtr_down_past_the_float_tiny():
    """``log Phi(ndtri_log(l)) = l`` (scipy's float64 ``log_ndtr``) from ``log(1/2)`` down to ``-1000``,
    in float32 and float64, across the switch from ``ndtri(exp(l))`` to the asymptote just above the
    float ``tiny`` (``exp(l)`` subnormal or flushed to 0 below it)."""
    for dtype, rtol in ((np.float32, 2e-6), (np.float64, 1e-12)):
        log_tiny = np.log(np.finfo(dtype).tiny)
        log_p = np.array([np.log(0.5), -3.0, -40.0, log_tiny + 2.5, log_tiny + 1.0, log_tiny - 1.0,
                          log_tiny - 3.0, -1000.0], dtype)
        with jax.enable_x64(dtype == np.float64):
            z = np.asarray(jax.jit(truncated.ndtri_log)(jnp.asarray(log_p)), np.float64)
        np.testing.assert_allclose(special.log_ndtr(z), log_p.astype(np.float64), rtol=rtol)


def test_upper_tail_quantiles_keep_their_relative_accuracy():
    """Quantiles at ``u`` near 1 on intervals reaching into the upper tail (``(-inf, inf)``, ``(-6, 6)``)
    against scipy's ``isf(1 - u)``: solved from the upper tail (``1 - F``), not from ``F`` near 1,
    where float32 holds the tail probability to 6e-8 absolute (an error of 1e-2 at ``x = 5``).  Reuses
    the compiled float32 quantile of ``test_quantile_inverts_the_interval_cdf`` (same shapes)."""
    tails = np.array([2.0**-23, 2.0**-20, 1e-5, 1e-4, 1e-3])
    u = np.float32(1.0) - tails.astype(np.float32)  # exact in float32
    lo = np.where(np.arange(len(INTERVALS)) % 2 == 0, -np.inf, -6.0).astype(np.float32)[:, None]
    hi = -lo
    x = np.asarray(QUANTILE(jnp.asarray(lo), jnp.asarray(hi), jnp.asarray(u)[None, :]), np.float64)
    tail = 1.0 - u.astype(np.float64)
    mass = np.where(np.isinf(lo), 1.0, 1.0 - 2.0 * stats.norm.sf(6.0))
    outside = np.where(np.isinf(lo), 0.0, stats.norm.sf(6.0))
    want = stats.norm.isf(tail[None, :] * mass + outside)
    np.testing.assert_allclose(x, want, rtol=2e-5)


def test_quantiles_at_u_0_and_1_are_the_interval_ends():
    """``u = 0`` gives ``lo`` and ``u = 1`` gives ``hi``, infinite ends included (``ndtri_log(-inf) =
    -inf``, not NaN), in both orientations of the reflection; same shapes as
    ``test_quantile_inverts_the_interval_cdf``, so the compiled float32 quantile is reused."""
    lo = jnp.asarray([iv[0] for iv in INTERVALS], jnp.float32)[:, None]
    hi = jnp.asarray([iv[1] for iv in INTERVALS], jnp.float32)[:, None]
    x = np.asarray(QUANTILE(lo, hi, jnp.asarray([[0.0, 1.0, 0.0, 1.0, 0.0]], jnp.float32)), np.float64)
    lo, hi = np.asarray(lo, np.float64)[:, 0], np.asarray(hi, np.float64)[:, 0]
    np.testing.assert_allclose(x[:, 0], lo, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(x[:, 1], hi, rtol=1e-6, atol=1e-6)


def test_results_keep_a_float_input_dtype_and_integers_become_the_default_float():
    """float32 stays float32 under ``jax.enable_x64`` (no silent promotion), float64 stays float64,
    integer ends become the default float (shapes and dtypes by tracing, nothing is compiled)."""
    for x64 in (False, True):
        with jax.enable_x64(x64):
            default = jnp.float64 if x64 else jnp.float32
            f32, i32 = jax.ShapeDtypeStruct((3,), jnp.float32), jax.ShapeDtypeStruct((3,), jnp.int32)
            assert jax.eval_shape(truncated.log_mass, f32, f32).dtype == jnp.float32
            assert jax.eval_shape(truncated.log_mass_around, f32, f32).dtype == jnp.float32
            assert jax.eval_shape(truncated.quantile, f32, f32, f32).dtype == jnp.float32
            assert jax.eval_shape(truncated.log_mass, i32, i32).dtype == default
            assert jax.eval_shape(truncated.quantile, i32, i32, f32).dtype == jnp.float32  # int with float32
            if x64:
                f64 = jax.ShapeDtypeStruct((3,), jnp.float64)
                assert jax.eval_shape(truncated.quantile, f64, f64, f32).dtype == jnp.float64


def test_log_mass_around_matches_the_reference_in_the_tails_and_wide_and_narrow():
    """``log_mass_around(c, h) = log P(c - h < Z < c + h)`` in float64 against the float64 reference,
    for wide intervals (in the upper tail, where ``log Phi`` near 0 would cancel, and wider than the
    Gauss-Legendre rule can integrate) and narrow ones above the float spacing (where
    ``Phi(b) - Phi(a)`` would cancel)."""
    center = np.array([30.0, -30.0, 7.0, -1.0, 0.0, 0.25, 5.0])
    half = np.array([1.0, 1.0, 0.5, 10.0, 3.0, 2.0**-30, 2.0**-23])  # c +- h exact in float64
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(truncated.log_mass_around)(jnp.asarray(center), jnp.asarray(half)))
    want = np.array([_reference_log_mass(c - h, c + h) for c, h in zip(center, half)])
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_uniform_helpers_on_partial_empty_and_shifted_intervals():
    """Uniform on ``[1, 5)``: the mass of an interval clipped to the support (width below 1, where
    ``log`` is negative), ``-inf`` for an interval outside it, and quantiles of an interval that
    does not start at 0 (eager, elementwise; nothing is compiled)."""
    u = jaxrec.Uniform(jnp.ones(1), jnp.full(1, 5.0))
    lo, hi = jnp.asarray([2.0, 0.0, 6.0]), jnp.asarray([2.5, 1.5, 7.0])
    got = np.asarray(truncated.interval_log_mass(u, lo, hi))
    np.testing.assert_allclose(got[:2], np.log([0.125, 0.125]), rtol=1e-6)
    assert got[2] == -np.inf
    quantiles = truncated.interval_quantile(u, jnp.asarray([2.0, 0.0]), jnp.asarray([3.0, 3.0]), jnp.asarray([0.25, 0.5]))
    np.testing.assert_allclose(np.asarray(quantiles), [2.25, 2.0], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# jaxrec.core.normal_quantile: the float32 polynomial quantile of space partitioning's draws.

NDTRI_LOWER_TAIL = jax.jit(normal_quantile.ndtri_lower_tail)


def _float32_runs(centers: list[float], width: int) -> np.ndarray:
    """``width`` consecutive float32 values on each side of every centre (every bit pattern there)."""
    runs = [np.arange(-width, width, dtype=np.int64) + np.float32(c).view(np.int32) for c in centers]
    values = np.concatenate(runs).astype(np.int32).view(np.float32)
    return values[(values > 0) & (values <= 0.5)]


def test_ndtri_lower_tail_is_within_4e_7_of_the_normal_quantile_in_every_binade_of_float32():
    """Log-uniform ``t`` over every binade from float32's smallest normal to 1/2, uniform ``t``, and
    every bit pattern next to 1/2, the branch split ``w = 8`` (``t = 8.4e-5``), the fitted ends and
    the smallest tail mass space partitioning draws (``2^-33`` of a ``2^-30`` bin)."""
    rng = np.random.default_rng(11)
    tiny = np.finfo(np.float32).tiny
    split = (1 - np.sqrt(-np.expm1(-8.0))) / 2
    t = np.concatenate([
        np.exp(rng.uniform(np.log(tiny), np.log(0.5), 400_000)), rng.uniform(0.0, 0.5, 200_000),
        _float32_runs([0.5, split, 0.25, 2.0**-63, 4 * tiny], 20_000), [tiny, 0.5],
    ]).astype(np.float32)
    got = np.asarray(NDTRI_LOWER_TAIL(jnp.asarray(t)), np.float64)
    want = special.ndtri(t.astype(np.float64))
    nonzero = want != 0
    assert np.all(got[~nonzero] == 0)  # t = 1/2 exactly
    relative = np.abs(got[nonzero] - want[nonzero]) / np.abs(want[nonzero])
    assert relative.max() < 4e-7, (relative.max(), t[nonzero][np.argmax(relative)])
    assert np.all(np.diff(got[np.argsort(t)][:: 64]) >= 0)  # increasing at a coarser grain than its error


def test_ndtri_lower_tail_ends_dtypes_and_shapes():
    t = jnp.asarray([[0.0, 0.5], [1e-30, 0.3]], jnp.float32)
    got = np.asarray(NDTRI_LOWER_TAIL(t))
    assert got.shape == (2, 2) and got.dtype == np.float32
    assert got[0, 0] == -np.inf and got[0, 1] == 0.0
    np.testing.assert_allclose(got[1], special.ndtri([1e-30, 0.3]), rtol=4e-7)
    with jax.enable_x64(True):  # float64 is ndtri itself, bit for bit
        t64 = jnp.asarray(np.geomspace(1e-300, 0.5, 101))
        out = normal_quantile.ndtri_lower_tail(t64)
        assert out.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(out), np.asarray(jax.scipy.special.ndtri(t64)))


def test_ndtri_lower_tail_coefficients_are_the_documented_fits():
    """``tools/fit_normal_quantile.py`` refits both branches; the module's float32 constants must give
    the same polynomials (to float32 rounding of the coefficients) on each branch's range."""
    tool = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "fit_normal_quantile.py"))
    stored = [
        (normal_quantile._CENTER_W, normal_quantile._COEFFICIENTS_W),
        (normal_quantile._CENTER_V, normal_quantile._COEFFICIENTS_V),
    ]
    assert len(tool["BRANCHES"]) == len(stored)
    for (lo, hi, variable, degree), (center, coefficients) in zip(tool["BRANCHES"], stored):
        fit_center, fit_coefficients, fit_error = tool["fit_branch"](lo, hi, variable, degree)
        assert fit_error < 1e-7 and fit_center == center and len(coefficients) == degree + 1
        w = np.linspace(max(lo, 1e-6), hi, 1001)
        x = (w if variable == "w" else 1 / np.sqrt(w)) - center
        np.testing.assert_allclose(np.polyval(coefficients, x), np.polyval(fit_coefficients, x), rtol=1e-7)
        # each constant, too (the leading one moves the function by less than a float32 ulp)
        np.testing.assert_allclose(coefficients, fit_coefficients, rtol=1e-4)
    assert tool["BRANCHES"][0][1] == normal_quantile._SPLIT_W
