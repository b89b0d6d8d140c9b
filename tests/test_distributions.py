"""Distributions: validation, closed forms against Monte Carlo / grids, tails, pytree behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxrec
from jaxrec import InvalidArgumentError
from jaxrec.core.distributions import (
    interval_log_sup_ratio,
    log_ratio_by_axis,
    mmd2_to_gaussian,
    open_unit,
)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: jaxrec.DiagGaussian(0.0, 0.0), "scale must be > 0"),
        (lambda: jaxrec.DiagGaussian(0.0, -1.0), "scale must be > 0"),
        (lambda: jaxrec.DiagGaussian(jnp.nan, 1.0), "loc must be finite"),
        (lambda: jaxrec.DiagGaussian(0.0, jnp.inf), "scale must be finite"),
        (lambda: jaxrec.Uniform(1.0, 1.0), "need high > low"),
        (lambda: jaxrec.Uniform(0.0, jnp.nan), "high must be finite"),
    ],
)
def test_bad_parameters_raise_naming_the_value(make, match):
    with pytest.raises(InvalidArgumentError, match=match):
        make()


def test_no_validation_under_jit_and_pytree_roundtrip():
    f = jax.jit(lambda s: jaxrec.DiagGaussian(0.0, s).scale)
    assert float(f(1.5)[0]) == 1.5
    q = jaxrec.DiagGaussian(jnp.zeros((4, 3)), jnp.ones((4, 3)))
    leaves, tree = jax.tree.flatten(q)
    assert len(leaves) == 2 and jax.tree.unflatten(tree, leaves).event_size == 3
    assert q.batch_shape == (4,)
    per_item = jax.vmap(lambda d: d.loc.sum())(q)
    assert per_item.shape == (4,)
    with pytest.raises(AttributeError):
        q.loc = 1.0


def _monte_carlo_kl_bits(target, prior, n=400_000, seed=0):
    x = target.sample(jax.random.key(seed), (n,))
    return float(jnp.mean(jaxrec.log_ratio(target, prior, x))) / np.log(2)


@pytest.mark.parametrize(
    "target, prior",
    [
        (jaxrec.DiagGaussian([1.0, -0.5], [0.3, 1.7]), jaxrec.DiagGaussian([0.0, 0.2], [1.0, 2.0])),
        (jaxrec.Uniform([0.2], [0.5]), jaxrec.Uniform([0.0], [1.0])),
        (jaxrec.Uniform([0.5, -3.0], [1.5, -2.0]), jaxrec.DiagGaussian([0.0, 0.0], [1.0, 2.0])),
    ],
)
def test_kl_matches_monte_carlo(target, prior):
    exact = float(jaxrec.kl(target, prior))
    assert exact == pytest.approx(float(jnp.sum(jaxrec.kl(target, prior, per_dim=True))))
    assert _monte_carlo_kl_bits(target, prior) == pytest.approx(exact, abs=0.02)


def test_log_sup_ratio_matches_grid_maximum():
    target = jaxrec.DiagGaussian(1.3, 0.4)
    prior = jaxrec.DiagGaussian(0.2, 1.5)
    grid = jnp.linspace(-10.0, 10.0, 400_001)[:, None]
    grid_max = float(jnp.max(jaxrec.log_ratio(target, prior, grid)))
    assert float(jaxrec.log_sup_ratio(target, prior)) == pytest.approx(grid_max, abs=1e-5)
    assert float(jaxrec.dinf(target, prior)) == pytest.approx(grid_max / np.log(2), abs=1e-5)
    u_target, g_prior = jaxrec.Uniform(0.5, 2.0), jaxrec.DiagGaussian(0.0, 1.0)
    u_grid = jnp.linspace(0.5, 2.0, 10_001, endpoint=False)[:, None]
    assert float(jaxrec.log_sup_ratio(u_target, g_prior)) == pytest.approx(
        float(jnp.max(jaxrec.log_ratio(u_target, g_prior, u_grid))), abs=1e-3
    )


def test_unbounded_ratios_are_infinite():
    prior = jaxrec.DiagGaussian(0.0, 1.0)
    assert jnp.isinf(jaxrec.log_sup_ratio(jaxrec.DiagGaussian(0.0, 1.2), prior))
    assert jnp.isinf(jaxrec.log_sup_ratio(jaxrec.DiagGaussian(0.5, 1.0), prior))
    assert float(jaxrec.log_sup_ratio(jaxrec.DiagGaussian(0.0, 1.0), prior)) == 0.0
    assert jnp.isinf(jaxrec.kl(jaxrec.Uniform(-1.0, 2.0), jaxrec.Uniform(0.0, 1.0)))
    assert jnp.isinf(jaxrec.kl(jaxrec.DiagGaussian(0.0, 1.0), jaxrec.Uniform(0.0, 1.0)))


def test_kl_is_accurate_for_nearly_equal_gaussians():
    prior = jaxrec.DiagGaussian(0.0, 1.0)
    target = jaxrec.DiagGaussian(0.0, 1.0 + 1e-4)
    expected = (1e-4) ** 2 / np.log(2)  # 0.5 (s^2 - 1 - 2 ln s) ~ (s - 1)^2 nats
    assert float(jaxrec.kl(target, prior)) == pytest.approx(expected, rel=2e-2)


def test_quantiles_are_accurate_in_both_tails():
    g = jaxrec.DiagGaussian(1.0, 2.0)
    for u in [1e-30, 1e-10, 0.3]:
        assert float(g.icdf(jnp.float32(u))[0]) == pytest.approx(stats.norm(1, 2).ppf(u), rel=1e-5)
        assert float(g.isf(jnp.float32(u))[0]) == pytest.approx(stats.norm(1, 2).isf(u), rel=1e-5)
    for x in [-30.0, -5.0, 12.0, 40.0]:
        assert float(g.log_cdf(jnp.float32(x))[0]) == pytest.approx(stats.norm(1, 2).logcdf(x), rel=1e-5, abs=1e-7)
        assert float(g.log_sf(jnp.float32(x))[0]) == pytest.approx(stats.norm(1, 2).logsf(x), rel=1e-5, abs=1e-7)


def test_float64_path():
    with jax.enable_x64(True):
        prior = jaxrec.DiagGaussian(jnp.zeros(2, jnp.float64), jnp.ones(2, jnp.float64))
        target = jaxrec.DiagGaussian(jnp.array([0.5, 1.0]), jnp.array([0.2, 0.9]))
        assert prior.dtype == jnp.float64 and target.dtype == jnp.float64
        assert prior.sample(jax.random.key(0)).dtype == jnp.float64
        expected = sum(-np.log(s) + (s * s + m * m - 1) / 2 for m, s in [(0.5, 0.2), (1.0, 0.9)]) / np.log(2)
        assert float(jaxrec.kl(target, prior)) == pytest.approx(expected, rel=1e-12)
        assert float(prior.icdf(jnp.float64(1e-300))[0]) == pytest.approx(stats.norm.ppf(1e-300), rel=1e-10)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_tail_quantile_is_icdf_or_isf(dtype):
    """Space partitioning samples within bins with ``tail_quantile`` (the decoder rebuilds the same
    points through the same method). The uniform's one multiply-add equals ``where(lower, icdf, isf)``
    bit for bit in both dtypes (the methods are compiled programs: the form of each decides whether XLA
    contracts it into an FMA), and so does the float64 Gaussian's one ``ndtri``; the float32 Gaussian's
    polynomial quantile is within ``4e-7`` relative of ``Phi^{-1}`` before ``loc + scale z`` rounds."""
    with jax.enable_x64(dtype == jnp.float64):
        rng = np.random.default_rng(3)
        t = jnp.asarray(np.concatenate([rng.uniform(0, 0.5, 500), 2.0 ** -rng.uniform(1, 120, 500), [0.5]]), dtype)
        lower = jnp.asarray(rng.integers(0, 2, t.shape).astype(bool))
        gaussian = jaxrec.DiagGaussian(jnp.asarray(0.7, dtype), jnp.asarray(1.9, dtype))
        for dist in (gaussian, jaxrec.Uniform(jnp.asarray(-1.0, dtype), jnp.asarray(2.5, dtype))):
            want = jnp.where(lower, dist.icdf(t), dist.isf(t))
            got = dist.tail_quantile(t, lower)
            assert got.dtype == dtype
            if dist is gaussian and dtype == jnp.float32:
                z = stats.norm.ppf(np.asarray(t, np.float64)) * np.where(np.asarray(lower), 1.0, -1.0)
                exact = 0.7 + 1.9 * z
                tolerance = 4e-7 * 1.9 * np.abs(z) + 2 * np.spacing(np.abs(exact).astype(np.float32))
                assert np.all(np.abs(np.asarray(got, np.float64) - exact) <= tolerance)
                assert not np.array_equal(np.asarray(got), np.asarray(want))  # the polynomial, not ndtri
            else:
                np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_parameters_share_one_shape_and_their_common_float_dtype():
    """The constructor broadcasts the parameters to one shape (``(1,)`` for scalars) and casts them to
    their common float type (``jnp.result_type``): float32 stays float32 under x64, float32 with float64
    is float64, float16 stays float16, integers become the default float."""
    with jax.enable_x64(True):
        g = jaxrec.DiagGaussian(jnp.zeros((2, 1), jnp.float32), jnp.ones(3, jnp.float32))
        assert g.loc.dtype == g.scale.dtype == g.dtype == jnp.float32
        assert g.loc.shape == g.scale.shape == (2, 3) and g.batch_shape == (2,) and g.event_size == 3
        u = jaxrec.Uniform(jnp.float32(0.0), jnp.float64(1.0))
        assert u.low.dtype == u.high.dtype == jnp.float64 and u.low.shape == u.high.shape == (1,)
        assert jaxrec.DiagGaussian(0, 1).dtype == jnp.float64
    assert jaxrec.DiagGaussian(0, 1).dtype == jnp.float32
    half = jaxrec.Uniform(jnp.zeros(2, jnp.float16), jnp.ones(2, jnp.float16))
    assert half.low.dtype == half.high.dtype == jnp.float16


def test_repr_and_the_broadcast_error_name_each_parameter():
    """``repr`` lists the parameters in order, comma separated; shapes that do not broadcast are named
    parameter by parameter."""
    assert repr(jaxrec.DiagGaussian(0.0, 2.0)) == (
        "DiagGaussian(loc=Array([0.], dtype=float32), scale=Array([2.], dtype=float32))"
    )
    assert repr(jaxrec.Uniform([0.0, 1.0], 2.0)) == (
        "Uniform(low=Array([0., 1.], dtype=float32), high=Array([2., 2.], dtype=float32))"
    )
    with pytest.raises(InvalidArgumentError, match=r"must broadcast together, got loc \(3,\) and scale \(4,\)$"):
        jaxrec.DiagGaussian(jnp.zeros(3), jnp.ones(4))


def test_valid_flags_each_problem_of_traced_parameters():
    """``valid()`` has the batch shape and is True iff every parameter of the problem is finite and
    every scale > 0 (Gaussian) or high > low (uniform): checked under ``jit``, where the constructor
    cannot check, for one problem and for a batch of five."""
    gauss_valid = jax.jit(lambda loc, scale: jaxrec.DiagGaussian(loc, scale).valid())
    loc = jnp.array([[0.0, 1.0], [jnp.nan, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    scale = jnp.array([[1.0, 0.5], [1.0, 1.0], [0.0, 1.0], [1.0, -2.0], [1.0, jnp.inf]])
    np.testing.assert_array_equal(gauss_valid(loc, scale), [True, False, False, False, False])
    assert gauss_valid(loc[0], scale[0]).shape == () and bool(gauss_valid(loc[0], scale[0]))
    assert not bool(gauss_valid(loc[2], scale[2]))
    unif_valid = jax.jit(lambda low, high: jaxrec.Uniform(low, high).valid())
    low = jnp.array([[0.0, -1.0], [0.0, 0.0], [0.0, 0.0], [jnp.inf, 0.0]])
    high = jnp.array([[0.5, 1.0], [1.0, 0.0], [1.0, jnp.nan], [1.0, 1.0]])
    np.testing.assert_array_equal(unif_valid(low, high), [True, False, False, False])
    assert unif_valid(low[0], high[0]).shape == () and bool(unif_valid(low[0], high[0]))
    assert not bool(unif_valid(low[1], high[1]))


def test_log_prob_sums_the_coordinates_log_densities():
    """``log_prob`` is the sum over the event axis of the coordinates' log densities (scipy), for
    points with two batch axes and for one point; the uniform box is half-open ``[low, high)``."""
    g = jaxrec.DiagGaussian(jnp.array([0.5, -1.0]), jnp.array([2.0, 0.3]))
    x = np.random.default_rng(0).normal(size=(4, 3, 2)).astype(np.float32)
    want = stats.norm.logpdf(x, [0.5, -1.0], [2.0, 0.3]).sum(-1)
    np.testing.assert_allclose(np.asarray(g.log_prob(jnp.asarray(x))), want, rtol=1e-5)
    assert g.log_prob(jnp.asarray(x[0, 0])).shape == ()
    assert float(g.log_prob(jnp.asarray(x[0, 0]))) == pytest.approx(want[0, 0], rel=1e-5)
    u = jaxrec.Uniform(jnp.array([0.0, -1.0]), jnp.array([0.5, 3.0]))
    pts = jnp.array([[0.0, -1.0], [0.25, 2.9], [0.5, 0.0], [0.1, 3.0], [-0.1, 0.0]])
    np.testing.assert_allclose(np.asarray(u.log_prob(pts))[:2], np.log(1 / (0.5 * 4.0)), rtol=1e-6)
    assert np.all(np.asarray(u.log_prob(pts))[2:] == -np.inf)


def test_uniform_elementwise_methods_match_scipy():
    """The uniform's ``cdf``, ``log_cdf``, ``log_sf``, ``icdf`` and ``isf`` against ``scipy.stats.uniform``
    on ``[-1, 3)`` and ``[2, 2.5)``, at points inside, at the ends and outside the box."""
    low, high = np.array([-1.0, 2.0]), np.array([3.0, 2.5])
    u = jaxrec.Uniform(jnp.asarray(low), jnp.asarray(high))
    ref = stats.uniform(low, high - low)
    x = np.array([[-2.0, 1.0], [-1.0, 2.0], [0.0, 2.1], [2.5, 2.4], [3.0, 2.5], [4.0, 3.0]], np.float32)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(np.asarray(u.cdf(jnp.asarray(x))), ref.cdf(x), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.asarray(u.log_cdf(jnp.asarray(x))), ref.logcdf(x), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(u.log_sf(jnp.asarray(x))), ref.logsf(x), rtol=1e-5)
    t = np.array([[0.1, 0.3], [0.75, 1e-3]], np.float32)
    np.testing.assert_allclose(np.asarray(u.icdf(jnp.asarray(t))), ref.ppf(t), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(u.isf(jnp.asarray(t))), ref.isf(t), rtol=1e-6)


def test_pair_functions_name_the_argument_that_is_not_a_distribution():
    """``kl`` (through ``check_pair``) names the target or the prior, whichever is not a distribution."""
    g = jaxrec.DiagGaussian(0.0, 1.0)
    with pytest.raises(InvalidArgumentError, match="^target must be a jaxrec distribution"):
        jaxrec.kl(None, g)
    with pytest.raises(InvalidArgumentError, match="^prior must be a jaxrec distribution"):
        jaxrec.kl(g, "normal")


def test_log_ratio_of_one_point_of_many_points_and_by_axis():
    """``log_ratio`` against scipy's log densities for one point ``(D,)`` and for points with two batch
    axes, one of them broadcast against the pair's batch; ``log_ratio_by_axis`` of axis-major points
    ``(D, K)`` is ``log_ratio`` of their transpose, with and without a batch axis."""
    locs, scales = np.array([[0.3, -1.0, 2.0], [0.0, 0.5, -0.5]]), np.array([[0.5, 1.5, 0.2], [1.0, 0.7, 0.3]])
    target = jaxrec.DiagGaussian(jnp.asarray(locs), jnp.asarray(scales))
    prior = jaxrec.DiagGaussian(jnp.asarray([0.1, 0.0, 1.0]), jnp.asarray([1.0, 2.0, 1.5]))

    def reference(x, batch):
        return (stats.norm.logpdf(x, locs[batch], scales[batch]) - stats.norm.logpdf(x, [0.1, 0.0, 1.0], [1.0, 2.0, 1.5])).sum(-1)

    x = np.random.default_rng(1).normal(size=(4, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(jaxrec.log_ratio(target, prior, jnp.asarray(x))), reference(x, slice(None)), rtol=1e-4)
    one = jaxrec.DiagGaussian(jnp.asarray(locs[1]), jnp.asarray(scales[1]))
    single = jaxrec.log_ratio(one, prior, jnp.asarray(x[0, 0]))
    assert single.shape == () and float(single) == pytest.approx(reference(x[0, 0], 1), rel=1e-4)
    xs = jnp.asarray(x.reshape(8, 3).T)  # (D, K)
    np.testing.assert_allclose(np.asarray(log_ratio_by_axis(one, prior, xs)), reference(x.reshape(8, 3), 1), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(log_ratio_by_axis(target, prior, xs)),
                               np.stack([reference(x.reshape(8, 3), b) for b in range(2)]), rtol=1e-4)


@pytest.mark.parametrize("method", ["cdf", "log_cdf", "log_sf", "icdf", "isf", "log_prob", "log_prob_per_dim"])
def test_methods_take_lists_and_name_a_bad_argument(method):
    """The compiled methods take what numpy takes (a list of numbers is an array; a Python float keeps
    the distribution's dtype) and refuse anything else with InvalidArgumentError naming the argument."""
    arg = {"icdf": "u", "isf": "v"}.get(method, "x")
    for dist in (jaxrec.DiagGaussian([0.5, -1.0], [2.0, 0.5]), jaxrec.Uniform([0.0, -2.0], [1.0, 0.0])):
        fn = getattr(dist, method)
        assert fn.__name__ == method  # the checking wrapper keeps the method's name (and docs)
        np.testing.assert_array_equal(fn([0.25, -0.5]), fn(jnp.array([0.25, -0.5])))
        for numbers in (np.array([True, False]), np.array([1, 0]), jnp.array([1, 0]), [1, 0]):  # as floats, even for ndtri
            np.testing.assert_array_equal(fn(numbers), fn(jnp.array([1.0, 0.0])))
        assert fn(1).dtype == fn(True).dtype == jnp.float32
        np.testing.assert_array_equal(fn(**{arg: [0.25, -0.5]}), fn(jnp.array([0.25, -0.5])))
        if arg == "x":  # (icdf and isf go through ndtri, which promotes a Python float to float64 under x64)
            with jax.enable_x64(True):
                assert fn(0.25).dtype == jnp.float32
        for bad in ("a", None, [0.1, "b"], {"x": 1}, 1j, [[0.1], [0.2, 0.3]]):  # the last: numpy raises
            with pytest.raises(InvalidArgumentError, match=f"^{arg} must be a real number or array, got "):
                fn(bad)
    with pytest.raises(InvalidArgumentError, match="^lower must be a real number or array, got 'yes'$"):
        jaxrec.DiagGaussian(0.0, 1.0).tail_quantile(0.1, "yes")
    gauss = jaxrec.DiagGaussian([0.5, -1.0], [2.0, 0.5])  # standardize (Gaussians only) is checked the same way
    np.testing.assert_array_equal(gauss.standardize([0.25, -0.5]), gauss.standardize(jnp.array([0.25, -0.5])))
    with pytest.raises(InvalidArgumentError, match="^x must be a real number or array, got "):
        gauss.standardize("a")


def test_open_unit_is_the_midpoint_grid_of_the_top_24_bits_inside_0_1():
    """``U = (m + 1/2) 2^-24`` for the top 24 bits ``m`` (the low 8 bits ignored), exact below 1/2,
    rounded to float32's even neighbour above, and below 1 for every word: the top word's
    ``1 - 2^-25`` rounds to 1.0 in float32 and is clamped to ``1 - 2^-24`` (a Gumbel ``-log(-log U)``
    stays finite; a uniform point stays below the excluded upper end)."""
    words = jnp.array([0, 0xFF, 0x100, 0x7FFFFF00, 0x80000000, 0x80000100, 0xFFFFFEFF, 0xFFFFFF00, 0xFFFFFFFF], jnp.uint32)
    u = np.asarray(open_unit(words))
    assert u.dtype == np.float32
    half, top = 2.0**-25, 1.0 - 2.0**-24
    want = [half, half, 3 * half, 0.5 - half, 0.5, 0.5 + 2.0**-23, top - 2.0**-24, top, top]
    np.testing.assert_array_equal(u, np.array(want, np.float32))
    assert np.all((0 < u) & (u < 1)) and np.all(np.isfinite(-np.log(-np.log(u))))
    uniform = jaxrec.Uniform(jnp.array([0.0]), jnp.array([1.0]))
    assert float(uniform.from_words(jnp.array([0xFFFFFFFF], jnp.uint32))[0]) < 1.0


def test_log_ratio_refuses_scalars_and_points_whose_batch_does_not_broadcast():
    """A scalar ``x`` and points whose batch shape does not broadcast with the pair's are refused, the
    latter naming the points' whole batch shape."""
    target, prior = jaxrec.DiagGaussian(jnp.zeros((4, 2)), 0.5), jaxrec.DiagGaussian(0.0, jnp.ones(2))
    with pytest.raises(InvalidArgumentError, match=r"x must be real points of shape \(\.\.\., 2\)"):
        jaxrec.log_ratio(target, prior, 0.5)
    with pytest.raises(InvalidArgumentError, match=r"x's batch shape \(3,\) does not broadcast with the target's \(4,\)"):
        jaxrec.log_ratio(target, prior, jnp.zeros((3, 2)))
    with pytest.raises(InvalidArgumentError, match=r"x's batch shape \(4, 3\) does not broadcast with the target's \(4,\)"):
        jaxrec.log_ratio(target, prior, jnp.zeros((4, 3, 2)))


def test_uniform_pairs_share_an_end_or_stick_out_on_one_side():
    """``D_KL = D_inf = log2(w_P / w_Q)`` bits for a uniform target inside a uniform prior, its ends included
    (the box is half-open, so a shared end is inside), and ``+inf`` when the target sticks out at either end."""
    prior = jaxrec.Uniform(jnp.zeros(4), jnp.ones(4))
    target = jaxrec.Uniform(jnp.array([0.0, 0.75, -0.5, 0.5]), jnp.array([0.5, 1.0, 0.5, 1.5]))
    want = [1.0, 2.0, np.inf, np.inf]
    np.testing.assert_allclose(np.asarray(jaxrec.kl(target, prior, per_dim=True)), want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jaxrec.dinf(target, prior, per_dim=True)), want, rtol=1e-6)
    assert float(jaxrec.kl(jaxrec.Uniform(0.0, 1.0), jaxrec.Uniform(0.0, 1.0))) == 0.0


@pytest.mark.parametrize("fn", [jaxrec.kl, jaxrec.log_sup_ratio, jaxrec.dinf])
def test_per_dim_must_be_a_bool_and_is_named(fn):
    """``per_dim`` other than True/False is refused by a message that starts with the argument's name."""
    g = jaxrec.DiagGaussian(0.0, 1.0)
    with pytest.raises(InvalidArgumentError, match=r"^per_dim must be True or False, got 'yes'$"):
        fn(g, g, per_dim="yes")


def test_interval_sup_of_equal_scales_on_unbounded_intervals():
    """With equal scales ``log r`` is linear (constant 0 when the pair is identical): on an interval
    unbounded on the side where it decreases, the sup is at the finite end (scipy log densities);
    unbounded on the side where it increases, ``+inf``; for identical distributions 0 on any interval,
    the whole line included."""
    prior = jaxrec.DiagGaussian(jnp.full(4, 0.5), jnp.full(4, 2.0))
    lo, hi = jnp.array([-jnp.inf, -1.0, -jnp.inf, 3.0]), jnp.array([0.5, jnp.inf, jnp.inf, 4.0])
    np.testing.assert_array_equal(np.asarray(interval_log_sup_ratio(prior, prior, lo, hi)), [0.0, 0.0, 0.0, 0.0])
    target = jaxrec.DiagGaussian(jnp.full(4, 1.5), jnp.full(4, 2.0))  # log r increases
    got = np.asarray(interval_log_sup_ratio(target, prior, lo, hi))
    log_r = lambda x: stats.norm.logpdf(x, 1.5, 2.0) - stats.norm.logpdf(x, 0.5, 2.0)
    np.testing.assert_allclose(got[[0, 3]], [log_r(0.5), log_r(4.0)], rtol=1e-6)
    assert got[1] == got[2] == np.inf


def test_interval_sups_of_empty_intervals_and_intervals_touching_the_support():
    """An empty interval (``hi <= lo``), or one that meets a uniform target's support ``[low, high)``
    in a single end point only, has sup ``-inf``: there is no point of it where the target has mass."""
    prior_g, prior_u = jaxrec.DiagGaussian(0.0, 1.0), jaxrec.Uniform(-2.0, 2.0)
    empty = interval_log_sup_ratio(jaxrec.DiagGaussian(0.3, 0.5), prior_g, jnp.array([1.0, 2.0]), jnp.array([1.0, 0.5]))
    np.testing.assert_array_equal(np.asarray(empty), [-np.inf, -np.inf])
    target = jaxrec.Uniform(-1.0, 1.0)
    lo, hi = jnp.array([1.0, -3.0, 0.0]), jnp.array([2.0, -1.0, 0.5])
    want = [-np.inf, -np.inf]
    np.testing.assert_array_equal(np.asarray(interval_log_sup_ratio(target, prior_g, lo, hi))[:2], want)
    np.testing.assert_array_equal(np.asarray(interval_log_sup_ratio(target, prior_u, lo, hi))[:2], want)
    assert float(interval_log_sup_ratio(target, prior_u, lo, hi)[2]) == pytest.approx(np.log(2.0))


def test_mmd2_default_lengthscale_and_target_checks():
    """``mmd2_to_gaussian``'s default lengthscale is 1; a batched Gaussian or a uniform target is refused."""
    samples = jnp.asarray(np.random.default_rng(2).normal(size=(6, 2)), jnp.float32)
    target = jaxrec.DiagGaussian(jnp.array([0.2, -0.1]), jnp.array([1.0, 1.5]))
    assert float(mmd2_to_gaussian(samples, target)) == float(mmd2_to_gaussian(samples, target, lengthscale=1.0))
    assert float(mmd2_to_gaussian(samples, target)) != float(mmd2_to_gaussian(samples, target, lengthscale=2.0))
    for bad in (jaxrec.DiagGaussian(jnp.zeros((3, 2)), 1.0), jaxrec.Uniform(jnp.zeros(2), 1.0)):
        with pytest.raises(InvalidArgumentError, match=r"target must be one DiagGaussian \(batch shape \(\)\)"):
            mmd2_to_gaussian(samples, bad)


def test_mmd2_sample_checks():
    """``samples`` must be a real ``(R, D)`` array with ``R >= 2``: two samples are accepted (the U-statistic
    is defined), one sample and a string are refused by message."""
    target = jaxrec.DiagGaussian(jnp.zeros(2), 1.0)
    assert np.isfinite(float(mmd2_to_gaussian(jnp.array([[0.5, 0.0], [-0.3, 1.0]]), target)))
    for bad in (jnp.zeros((1, 2)), "abc"):
        with pytest.raises(InvalidArgumentError, match=r"samples must be a real array \(R, 2\) with R >= 2"):
            mmd2_to_gaussian(bad, target)


def test_mmd2_lengthscale_is_checked_when_concrete_and_traced_under_jit():
    """A concrete lengthscale must be > 0 (0 is refused, message starting with the name); under ``jit`` a
    traced lengthscale is not checked and gives the same value as the concrete one."""
    samples, target = jnp.array([[0.5, 0.0], [-0.3, 1.0], [1.2, -0.4]]), jaxrec.DiagGaussian(jnp.zeros(2), 1.0)
    for bad in (0.0, -1.0):
        with pytest.raises(InvalidArgumentError, match=r"^lengthscale must be a finite real number > 0"):
            mmd2_to_gaussian(samples, target, lengthscale=bad)
    traced = jax.jit(lambda ell: mmd2_to_gaussian(samples, target, lengthscale=ell))(0.7)
    assert float(traced) == pytest.approx(float(mmd2_to_gaussian(samples, target, lengthscale=0.7)), rel=1e-6)


@pytest.mark.parametrize("dim", [1, 3])
def test_mmd2_matches_quadrature_in_one_and_three_dimensions(dim):
    """``mmd2_to_gaussian`` against the U-statistic with the target-side expectations by 80-point
    Gauss-Hermite quadrature (the RBF kernel factorizes over coordinates), for event sizes other than 2."""
    rng = np.random.default_rng(5)
    loc, scale = rng.normal(size=dim), rng.uniform(0.5, 2.0, dim)
    samples = loc + scale * (1.2 * rng.normal(size=(12, dim)) + 0.3)
    ell = 0.9
    z = (samples - loc) / scale
    kern = lambda a, b: np.exp(-((a - b) ** 2) / (2 * ell**2))
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / np.sqrt(2 * np.pi)
    xy = np.mean(np.prod(kern(z[:, :, None], nodes) @ weights, axis=1))
    yy = (weights @ kern(nodes[:, None], nodes[None, :]) @ weights) ** dim
    gram = np.exp(-np.sum((z[:, None, :] - z[None, :, :]) ** 2, axis=-1) / (2 * ell**2))
    xx = (gram.sum() - np.trace(gram)) / (len(z) * (len(z) - 1))
    got = mmd2_to_gaussian(jnp.asarray(samples, jnp.float32), jaxrec.DiagGaussian(jnp.asarray(loc), jnp.asarray(scale)), ell)
    assert float(got) == pytest.approx(xx - 2 * xy + yy, rel=1e-3, abs=1e-5)
