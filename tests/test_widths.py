"""Tests for width functions, the GPRS stretch function and D_CS (jaxrec.widths)."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import jaxrec
from jaxrec.coders.greedy import widths
from jaxrec.core.errors import InvalidArgumentError

# Reference values for 1-D Gaussian pairs (copied into the repository so a clean clone needs nothing outside it).
GOLDEN = json.loads((Path(__file__).parent / "data" / "golden_gaussian_1d.json").read_text())
PAIRS = GOLDEN["pairs"]
LN2 = np.log(2.0)


def _pair(p, dtype):
    target = jaxrec.DiagGaussian(jnp.asarray(p["target"]["loc"], dtype), jnp.asarray(p["target"]["scale"], dtype))
    prior = jaxrec.DiagGaussian(jnp.asarray(p["prior"]["loc"], dtype), jnp.asarray(p["prior"]["scale"], dtype))
    return target, prior


@jax.jit
def _everything(target, prior, h, t):
    """All width quantities of one pair at levels ``h`` and stretch values ``t`` (one compile per dtype)."""
    model = widths.pair_widths(target, prior)
    table = widths.stretch_table(model)
    return dict(
        log_r_star=model.log_r_star, w_p=widths.w_p(model, h), w_q=widths.w_q(model, h),
        one_minus_w=widths.one_minus_w(model, h), w=widths.w(model, h), sigma=widths.sigma(table, h),
        sigma_inv=widths.sigma_inv(table, t), d_cs=widths.d_cs(model),
        kl=jaxrec.kl(target, prior), dinf=jaxrec.dinf(target, prior),
    )


def _golden_run(p, dtype):
    target, prior = _pair(p, dtype)
    rows = p["width_functions"]
    h = jnp.asarray([r["h"] for r in rows], dtype)
    t = jnp.asarray([r["sigma"] for r in rows], dtype)
    return {k: np.asarray(v, np.float64) for k, v in _everything(target, prior, h, t).items()}, rows


# float64: the closed forms are exact to ~1e-14; sigma is a cubic Hermite interpolation of a
# quadrature table (relative error below 1e-6).  float32: rounding h to float32 moves the gap
# ln(r*/h) by ~1e-7, i.e. by ~1e-5 relative at the last golden level (gap 0.01).
TOLERANCES = {
    True: dict(w=1e-12, residual=1e-10, sigma=1e-6, scalar=1e-12, d_cs=1e-8),
    False: dict(w=1e-5, residual=3e-5, sigma=3e-5, scalar=2e-6, d_cs=2e-6),
}


@pytest.mark.parametrize("x64", [pytest.param(True, marks=pytest.mark.slow), False])
@pytest.mark.parametrize("index", range(len(PAIRS)))
def test_golden_gaussian_pairs(index, x64):
    p = PAIRS[index]
    tol = TOLERANCES[x64]
    with jax.enable_x64(x64):
        got, rows = _golden_run(p, jnp.float64 if x64 else jnp.float32)
    want = lambda key: np.asarray([r[key] for r in rows])
    np.testing.assert_allclose(got["w_p"], want("w_P"), rtol=tol["w"])
    np.testing.assert_allclose(got["w_q"], want("w_Q"), rtol=tol["w"])
    np.testing.assert_allclose(got["one_minus_w"], want("one_minus_W"), rtol=tol["residual"])
    np.testing.assert_allclose(got["w"], 1.0 - want("one_minus_W"), rtol=tol["residual"])
    np.testing.assert_allclose(got["sigma"], want("sigma"), rtol=tol["sigma"])
    np.testing.assert_allclose(got["sigma_inv"], want("h"), rtol=tol["sigma"])
    np.testing.assert_allclose(np.exp(got["log_r_star"]), p["r_star"], rtol=tol["scalar"])
    np.testing.assert_allclose(got["log_r_star"], p["dinf_nats"], rtol=tol["scalar"])
    np.testing.assert_allclose(got["dinf"], p["dinf_bits"], rtol=tol["scalar"])
    np.testing.assert_allclose(got["kl"], p["kl_bits"], rtol=tol["scalar"])
    np.testing.assert_allclose(got["d_cs"], p["d_cs_bits"], rtol=tol["d_cs"])


def test_kl_identity_and_d_cs_sandwich():
    """D_KL = log2 e + int w_P log2 h dh (§1), and D_KL <= D_CS <= D_KL + log2(D_KL + 1) + 1 (§8)."""
    with jax.enable_x64(True):
        for p in PAIRS:
            model = widths.pair_widths(*_pair(p, jnp.float64))
            r_star = float(np.exp(model.log_r_star))
            w_p = jax.jit(lambda h: widths.w_p(model, h))
            kl = 1 / LN2 + integrate.quad(lambda h: float(w_p(h)) * np.log2(h), 0, r_star, limit=200)[0]
            assert kl == pytest.approx(p["kl_bits"], rel=1e-6)
            d_cs = float(jax.jit(widths.d_cs)(model))
            assert kl <= d_cs <= kl + np.log2(kl + 1) + 1


def test_residual_is_the_tail_integral_of_w_p_near_the_mode():
    """1 - W(h) = int_h^{r*} w_P without cancellation, down to h within 1e-9 of r* (float64)."""
    with jax.enable_x64(True):
        model = widths.pair_widths(*_pair(PAIRS[0], jnp.float64))
        r_star = float(np.exp(model.log_r_star))
        w_p = jax.jit(lambda h: widths.w_p(model, h))
        gaps = np.asarray([1e-9, 1e-5, 1e-2, 0.3, 0.7, 3.0])
        hs = r_star * np.exp(-gaps)
        got = np.asarray(jax.jit(lambda h: widths.one_minus_w(model, h))(jnp.asarray(hs)))
        interpolated = np.exp(np.asarray(jax.jit(
            lambda u: widths.log_residual_at_gap(widths.stretch_table(model), u))(jnp.asarray(gaps))))
        for i, h in enumerate(hs):
            ref = integrate.quad(lambda e: float(w_p(e)), h, r_star, epsrel=1e-12, epsabs=0)[0]
            assert got[i] == pytest.approx(ref, rel=1e-8), gaps[i]
            assert interpolated[i] == pytest.approx(ref, rel=5e-6), gaps[i]


@jax.jit
def _table_functions(model, h, t):
    tab = widths.stretch_table(model)
    return (widths.sigma(tab, h), widths.sigma_inv(tab, t), widths.one_minus_w(model, h), widths.w_p(model, h),
            widths.d_cs(model))


def test_closed_form_stretch_functions():
    """Triangular target on U(0, 1): sigma(h) = 2h / (2 - l h); uniform pair: sigma = -r* ln(1 - h/r*)."""
    with jax.enable_x64(True):
        base = 0.3
        tri = widths.TriangularWidths.create(base)
        r_star = 2 / base
        h = jnp.asarray(np.linspace(0.01, 0.999, 25) * r_star)
        t = jnp.asarray(np.geomspace(1e-6, 1e6, 25))
        sig, sig_inv, residual, _, d_cs = _table_functions(tri, h, t)
        np.testing.assert_allclose(np.asarray(sig), 2 * h / (2 - base * h), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(sig_inv), 2 * t / (2 + base * t), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(residual), (1 - base * h / 2) ** 2, rtol=1e-12)
        # D_CS = -int w_P log2 w_P with w_P = l (1 - l h / 2): log2(1 / l) + 1 / (2 ln 2)
        assert float(d_cs) == pytest.approx(np.log2(1 / base) + 0.5 / LN2, rel=1e-6)

        uni = widths.pair_widths(jaxrec.Uniform(0.2, 0.6), jaxrec.Uniform(0.0, 1.0))
        r_star = 2.5
        h = jnp.asarray(np.linspace(0.01, 0.999, 25) * r_star)
        sig, _, _, w_p, d_cs = _table_functions(uni, h, t)
        np.testing.assert_allclose(np.asarray(sig), -r_star * np.log1p(-h / r_star), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(w_p), 0.4, rtol=1e-12)
        assert float(d_cs) == pytest.approx(np.log2(2.5), rel=1e-6)  # w_P = 1/r* on [0, r*]


@jax.jit
def _limits(target, prior, xs, gaps):
    model = widths.pair_widths(target, prior)
    tab = widths.stretch_table(model)
    return (model.log_r_star, model.level_gap(xs), widths.log_stretch_at_gap(tab, gaps), widths.sigma(tab, 0.0),
            widths.sigma_inv(tab, 0.0), widths.w_p(model, 1e9), widths.one_minus_w(model, 0.0))


def test_level_gap_and_stretch_limits():
    target, prior = jaxrec.DiagGaussian(3.0, 0.5), jaxrec.DiagGaussian(1.0, 2.0)
    xs = jnp.asarray([[-2.0], [0.5], [1.7], [4.0]])
    gaps = jnp.asarray([0.0, 1e-20, 1e-3, 1.0, 30.0, 200.0, np.inf])
    log_r_star, gap, ls, sigma0, sigma_inv0, w_p_big, residual0 = _limits(target, prior, xs, gaps)
    want = float(log_r_star) - np.asarray(jaxrec.log_ratio(target, prior, xs))
    np.testing.assert_allclose(np.asarray(gap), want, rtol=1e-5, atol=1e-5)
    ls = np.asarray(ls)
    assert ls[0] == np.inf and ls[-1] == -np.inf and np.all(np.diff(ls) < 0)
    assert float(sigma0) == 0.0 and float(sigma_inv0) == 0.0
    assert float(w_p_big) == 0.0 and float(residual0) == 1.0


def test_vmapped_tables_match_single():
    locs, scales = jnp.asarray([[0.5], [-1.0], [2.0]]), jnp.asarray([[0.5], [0.1], [0.05]])
    prior = jaxrec.DiagGaussian(0.0, 1.0)
    build = jax.jit(lambda t: widths.stretch_table(widths.pair_widths(t, prior)).log_sigma)
    batched = jax.jit(jax.vmap(build))(jaxrec.DiagGaussian(locs, scales))
    for i in range(3):
        # float32 rounding differs between the vmapped and the single compilation
        np.testing.assert_allclose(batched[i], build(jaxrec.DiagGaussian(locs[i], scales[i])), rtol=1e-5)


def test_bad_pairs_raise():
    p = jaxrec.DiagGaussian(0.0, 1.0)
    with pytest.raises(InvalidArgumentError, match="unbounded"):
        widths.pair_widths(jaxrec.DiagGaussian(0.0, 1.0), p)
    with pytest.raises(InvalidArgumentError, match="factorized"):
        widths.pair_widths(jaxrec.DiagGaussian(jnp.zeros(2), 0.5), jaxrec.DiagGaussian(jnp.zeros(2), 1.0))
    with pytest.raises(InvalidArgumentError, match="inside"):
        widths.pair_widths(jaxrec.Uniform(-0.5, 0.5), jaxrec.Uniform(0.0, 1.0))
    with pytest.raises(InvalidArgumentError, match=r"^no width functions for target Uniform against prior DiagGaussian "
                       r"\(supported: 1-D DiagGaussian pairs and Uniform pairs\)$"):
        widths.pair_widths(jaxrec.Uniform(-0.5, 0.5), p)
    with pytest.raises(InvalidArgumentError, match="batch"):
        widths.pair_widths(jaxrec.DiagGaussian(jnp.zeros((2, 1)), 0.5), p)
    # under jit an unbounded pair is NaN, not an exception
    log_r = jax.jit(lambda s: widths.pair_widths(jaxrec.DiagGaussian(0.0, s), p).log_r_star)(jnp.float32(1.5))
    assert np.isnan(float(log_r))
    # equal scales too (1 - s^2 = 0), shifted or not: NaN, not +inf or a finite bound
    shifted = jax.jit(lambda m, s: widths.pair_widths(jaxrec.DiagGaussian(m, s), p).log_r_star)
    assert np.isnan(float(shifted(jnp.float32(0.5), jnp.float32(1.0))))
    assert np.isnan(float(shifted(jnp.float32(0.0), jnp.float32(1.0))))


def test_uniform_targets_may_share_the_priors_ends_and_traced_pairs_pass_the_static_checks():
    """The box is half-open, so a uniform target sharing an end with its prior lies inside it; under
    ``jit`` (traced bounds) only the static checks run and the model is built, NaN if the target is not inside."""
    prior = jaxrec.Uniform(0.0, 1.0)
    for low, high in ((0.0, 0.5), (0.5, 1.0), (0.0, 1.0)):
        model = widths.pair_widths(jaxrec.Uniform(low, high), prior)
        np.testing.assert_allclose(float(model.log_r_star), -np.log(high - low), rtol=1e-6)
    # r = r* = 2 on the whole support of Q = U[0, 1/2): at h = r* (ln 2 - ln h = 0 exactly) w_P is P[r >= 2] = 1/2
    # and w_Q is 1; above r* both are 0; at h = 0 both are 1
    half = widths.pair_widths(jaxrec.Uniform(0.0, 0.5), prior)
    np.testing.assert_allclose(widths.w_p(half, jnp.float32([0.0, 2.0, 2.001])), [1.0, 0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(widths.w_q(half, jnp.float32([0.0, 2.0, 2.001])), [1.0, 1.0, 0.0], rtol=1e-6)
    # 1 - W(h) = w_Q - h w_P: 1 at h = 0, exactly 0 at and above r* (W = 1 there)
    np.testing.assert_array_equal(widths.one_minus_w(half, jnp.float32([0.0, 2.0, 2.001])), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(widths.one_minus_w(half, jnp.float32(1.0)), 0.5, rtol=1e-6)
    traced = jax.jit(lambda low, high: widths.pair_widths(jaxrec.Uniform(low, high), prior).log_r_star)
    for low, high in ((0.2, 0.6), (0.0, 0.5), (0.5, 1.0)):
        np.testing.assert_allclose(float(traced(jnp.float32(low), jnp.float32(high))), -np.log(high - low), rtol=1e-6)
    # a traced target sticking out at either end is flagged NaN (the coders then report exhausted)
    for low, high in ((-0.5, 0.5), (0.5, 1.5)):
        assert np.isnan(float(traced(jnp.float32(low), jnp.float32(high))))


@pytest.mark.slow  # 5 s cold (float64 stretch tables compiled); kills widths mutants, hence `mutation`
@pytest.mark.mutation
def test_stretch_table_residuals_tail_node_and_dtype():
    """The table's ``ln(1 - W)`` at its nodes is the model's own (quadrature near the mode, closed form
    beyond: within 1e-12 of ``log_residual``'s choice in float64; the quadrature alone is off by up to 1e-8
    at the far nodes), its last ``ln sigma~`` is the tail ``ln r* - u_max`` exactly, the interpolants
    pass through the nodes, and a float32 pair gets a float32 table under x64."""
    with jax.enable_x64(True):
        for (tm, ts), (pm, ps) in (((0.3, 0.5), (0.0, 1.0)), ((-1.0, 0.2), (0.5, 2.0))):
            model = widths.pair_widths(jaxrec.DiagGaussian(jnp.float64(tm), jnp.float64(ts)),
                                       jaxrec.DiagGaussian(jnp.float64(pm), jnp.float64(ps)))
            table = jax.jit(widths.stretch_table)(model)
            direct = jax.jit(lambda m: m.log_residual(jnp.asarray(widths._U)))(model)
            np.testing.assert_allclose(table.log_residual, direct, rtol=0, atol=1e-12)
            assert float(table.log_sigma[-1]) == float(model.log_r_star) - widths._U[-1]
            # the Hermite interpolants pass through the nodes, the first and the last included
            at_nodes = jax.jit(lambda t, u: (widths.log_stretch_at_gap(t, u), widths.log_residual_at_gap(t, u)))
            stretch, residual = at_nodes(table, jnp.asarray(widths._U))
            np.testing.assert_allclose(stretch, table.log_sigma, rtol=1e-12)
            np.testing.assert_allclose(residual, table.log_residual, rtol=1e-12)
        single = widths.pair_widths(jaxrec.DiagGaussian(jnp.float32(0.3), jnp.float32(0.5)),
                                    jaxrec.DiagGaussian(jnp.float32(0.0), jnp.float32(1.0)))
        assert all(leaf.dtype == jnp.float32 for leaf in jax.jit(widths.stretch_table)(single))


@pytest.mark.slow  # 8 s cold (float64 stretch tables compiled); kills widths mutants, hence `mutation`
@pytest.mark.mutation
def test_interpolants_continue_below_and_above_the_grid():
    """Below the first node (``u < 1e-12``) both interpolants continue as power laws in ``u`` and above
    the last (``u > 41``) as ``sigma~ ~ h = r* e^-u`` and ``ln(1 - W) ~ -c h``: the residual matches the
    model's direct ``log_residual`` there (float64), the stretch is ``ln r* - u`` above the grid and
    linear in ``ln u`` below it."""
    with jax.enable_x64(True):
        model = widths.pair_widths(jaxrec.DiagGaussian(jnp.float64(0.3), jnp.float64(0.5)),
                                   jaxrec.DiagGaussian(jnp.float64(0.0), jnp.float64(1.0)))
        table = jax.jit(widths.stretch_table)(model)
        below, above = jnp.asarray([1e-15, 1e-14, 1e-13, 5e-13]), jnp.asarray([45.0, 60.0, 100.0])
        at_gaps = jax.jit(lambda t, u: (widths.log_stretch_at_gap(t, u), widths.log_residual_at_gap(t, u)))
        stretch, residual = at_gaps(table, below)
        np.testing.assert_allclose(residual, model.log_residual(below), rtol=1e-12)
        stretch = np.asarray(stretch)  # a decade apart: equal steps
        np.testing.assert_allclose(stretch[1] - stretch[0], stretch[2] - stretch[1], rtol=1e-12)
        assert np.all(np.asarray(stretch) > float(table.log_sigma[0]))
        stretch, residual = at_gaps(table, above)
        np.testing.assert_allclose(residual, model.log_residual(above), rtol=1e-5)
        np.testing.assert_allclose(stretch, float(model.log_r_star) - np.asarray(above), rtol=1e-12)


@pytest.mark.slow  # 8 s cold (float64 stretch tables compiled); kills widths mutants, hence `mutation`
@pytest.mark.mutation
def test_inverse_stretch_round_trips_in_every_panel_and_the_ends_are_exact():
    """``_gap_of_log_stretch`` inverts ``log_stretch_at_gap`` to 1e-12 in the first and last panels of the grid,
    below and above it (float64); at ``u = 0`` and ``u = inf`` the interpolants take their limits exactly,
    and ``sigma`` and ``sigma_inv`` are 0 at 0; ``sigma_inv`` and ``d_cs`` keep float32 under x64."""
    with jax.enable_x64(True):
        model = widths.pair_widths(jaxrec.DiagGaussian(jnp.float64(0.3), jnp.float64(0.5)),
                                   jaxrec.DiagGaussian(jnp.float64(0.0), jnp.float64(1.0)))
        table = jax.jit(widths.stretch_table)(model)
        mids = np.sqrt(widths._U[:-1] * widths._U[1:])  # a point inside each panel
        u = np.concatenate([mids[:3], mids[-3:], [1e-14, 1e-13, 50.0]])
        back = jax.jit(lambda t, u: widths._gap_of_log_stretch(t, widths.log_stretch_at_gap(t, u)))(table, jnp.asarray(u))
        np.testing.assert_allclose(back, u, rtol=1e-12)
        ends = jnp.asarray([0.0, jnp.inf])
        np.testing.assert_array_equal(widths.log_stretch_at_gap(table, ends), [np.inf, -np.inf])
        np.testing.assert_array_equal(widths.log_residual_at_gap(table, ends), [-np.inf, 0.0])
        single = widths.pair_widths(jaxrec.DiagGaussian(jnp.float32(0.3), jnp.float32(0.5)),
                                    jaxrec.DiagGaussian(jnp.float32(0.0), jnp.float32(1.0)))
        assert widths.sigma_inv(jax.jit(widths.stretch_table)(single), jnp.float32(0.5)).dtype == jnp.float32
        # JAX 0.10 keeps the float32 conversion of a numpy constant that a jit traced with x64 off and
        # hands it back to an eager jnp.asarray(constant) under x64: an earlier test's float32 d_cs would
        # otherwise hide a d_cs that forgets its dtype (widths mutant 588 survived the module's run)
        jax.clear_caches()
        assert widths.d_cs(single).dtype == jnp.float32
        # sigma(0) = sigma^-1(0) = 0 exactly (not the value at the 1e-38 floor)
        np.testing.assert_array_equal(widths.sigma_inv(table, jnp.asarray([0.0, -1.0])), [0.0, 0.0])
        np.testing.assert_array_equal(widths.sigma(table, jnp.asarray([0.0, -1.0])), [0.0, 0.0])


def test_stretch_grid_is_the_documented_one():
    """The stretch table's nodes in ``zeta = ln u + u``: ``zeta(1e-12)`` (in place of -27.5), then step 1/2 up to -8, 1/4 on
    ``[-8, 10)``, 1 up to ``zeta(_GAP_MAX)`` (the last node), as its docstring says."""
    zeta = widths._ZETA
    zeta0, zeta_max = np.log(1e-12) + 1e-12, np.log(widths._GAP_MAX) + widths._GAP_MAX
    assert zeta[0] == zeta0 and zeta[-1] == zeta_max
    steps = np.diff(zeta[1:-1])
    np.testing.assert_array_equal(zeta[1:np.searchsorted(zeta, -8.0) + 1], np.arange(-27.0, -7.5, 0.5))
    np.testing.assert_array_equal(zeta[np.searchsorted(zeta, -8.0):np.searchsorted(zeta, 10.0)], np.arange(-8.0, 10.0, 0.25))
    np.testing.assert_array_equal(zeta[np.searchsorted(zeta, 10.0):-1], np.arange(10.0, np.floor(zeta_max) + 1.0))
    assert 0 < zeta[1] - zeta0 < 1.0 and 0 < zeta_max - zeta[-2] < 1.0 and np.all(steps > 0)
    np.testing.assert_allclose(np.log(widths._U) + widths._U, zeta, rtol=1e-12, atol=1e-12)


def test_gaussian_level_gap_and_mode_match_the_density_ratio():
    """``GaussianWidths``' level gap ``ln r* - ln r(x)`` against the log density ratio of the pair
    computed directly (scipy), in original and standard coordinates, and ``mode`` is where the ratio
    peaks (gap 0), on a shifted prior of scale 2."""
    target, prior = jaxrec.DiagGaussian(1.3, 0.7), jaxrec.DiagGaussian(0.5, 2.0)
    pair = widths.pair_widths(target, prior)
    x = np.linspace(-4.0, 6.0, 41)
    log_r = stats.norm.logpdf(x, 1.3, 0.7) - stats.norm.logpdf(x, 0.5, 2.0)
    z_mode = (1.3 - 0.5) / 2.0 / (1 - (0.7 / 2.0) ** 2)
    log_r_star = (stats.norm.logpdf(0.5 + 2.0 * z_mode, 1.3, 0.7) - stats.norm.logpdf(0.5 + 2.0 * z_mode, 0.5, 2.0))
    np.testing.assert_allclose(float(pair.mode), 0.5 + 2.0 * z_mode, rtol=1e-6)
    np.testing.assert_allclose(float(pair.log_r_star), log_r_star, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(pair.level_gap(jnp.asarray(x)[:, None])), log_r_star - log_r, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(pair.gap_of_z(jnp.asarray((x - 0.5) / 2.0))), log_r_star - log_r, rtol=1e-4, atol=1e-5)


def _mp_residual(mu, s, u):
    """``1 - W`` at gap ``u`` of ``Q = N(mu, s^2)`` against ``P = N(0, 1)``: ``w_Q - h w_P`` with both masses
    taken on the superlevel interval ``|z - nu| <= sqrt(2 kappa u)``, in 50-digit arithmetic (no cancellation)."""
    import mpmath as mp

    with mp.workdps(50):
        mu, s, u = mp.mpf(mu), mp.mpf(s), mp.mpf(u)
        nu, kappa = mu / (1 - s * s), s * s / (1 - s * s)
        rho = mp.sqrt(2 * kappa * u)
        h = mp.exp(-mp.log(s) + mu * mu / (2 * (1 - s * s)) - u)
        w_q = mp.ncdf((nu + rho - mu) / s) - mp.ncdf((nu - rho - mu) / s)
        w_p = mp.ncdf(nu + rho) - mp.ncdf(nu - rho)
        return float(w_q - h * w_p)


@jax.jit
def _residuals(target, u):
    """``nu`` and ``ln(1 - W)`` at gaps ``u`` with ``near`` unknown, True and False, against ``N(0, 1)``."""
    model = widths.pair_widths(target, jaxrec.DiagGaussian(jnp.zeros(1, target.dtype), jnp.ones(1, target.dtype)))
    return model.nu, model.log_residual(u), model.log_residual(u, near=True), model.log_residual(u, near=False)


def test_gaussian_log_residual_off_centre_and_far_from_the_mode():
    """``GaussianWidths.log_residual`` against 50-digit ``w_Q - h w_P``: near the mode of a pair whose ratio
    peaks 12 prior standard deviations out (``s = 0.995``: the superlevel interval is wider than where ``p``
    is not negligible), with ``near=True`` and unknown, in float64 and float32, and ``-inf`` at gap 0;
    far from the mode (gaps 0.7 to 40) with ``near=False`` and unknown, where the closed form is accurate
    to a few ulp (float64)."""
    near_gaps = np.asarray([0.0, 0.01, 0.1, 0.3, 0.49])
    want = [_mp_residual(0.12, 0.995, u) for u in near_gaps[1:]]
    for dtype, rtol in ((jnp.float64, 1e-10), (jnp.float32, 5e-4)):
        with jax.enable_x64(dtype == jnp.float64):
            nu, unknown, near, _ = _residuals(jaxrec.DiagGaussian(jnp.asarray(0.12, dtype), jnp.asarray(0.995, dtype)),
                                              jnp.asarray(near_gaps, dtype))
            assert float(nu) == pytest.approx(12.03, abs=0.01)
            assert float(unknown[0]) == -np.inf
            np.testing.assert_allclose(np.exp(np.asarray(unknown[1:], np.float64)), want, rtol=rtol)
            np.testing.assert_allclose(np.exp(np.asarray(near[1:], np.float64)), want, rtol=rtol)
    far_gaps = np.asarray([0.7, 3.0, 10.0, 20.0, 40.0])
    with jax.enable_x64(True):
        _, unknown, _, far = _residuals(jaxrec.DiagGaussian(jnp.float64(0.0), jnp.float64(0.5)), jnp.asarray(far_gaps))
    want = [_mp_residual(0.0, 0.5, u) for u in far_gaps]
    np.testing.assert_allclose(np.exp(np.asarray(unknown)), want, rtol=1e-12)
    np.testing.assert_allclose(np.exp(np.asarray(far)), want, rtol=1e-12)


def test_uniform_and_triangular_level_gaps_and_width_functions():
    """``UniformWidths.level_gap`` is 0 on the half-open target box and ``+inf`` elsewhere (every coordinate
    counts); ``TriangularWidths`` (default centre 1/2) against ``scipy.stats.triang`` on ``U(0, 1)``:
    the gap ``ln(r* / r(x))`` with ``r = q``, and ``w_P``/``w_Q``, the prior and target masses of the
    superlevel interval ``|x - c| <= (l / 2) (1 - e^{-u})``."""
    uni = widths.pair_widths(jaxrec.Uniform([0.2, -1.0], [0.6, 0.0]), jaxrec.Uniform([0.0, -2.0], [1.0, 2.0]))
    xs = jnp.asarray([[0.2, -1.0], [0.4, -0.01], [0.6, -0.5], [0.3, 0.0], [0.1, -0.5], [0.3, -3.0]])
    np.testing.assert_array_equal(np.asarray(uni.level_gap(xs)), [0.0, 0.0, np.inf, np.inf, np.inf, np.inf])
    assert uni.level_gap(xs[0]).shape == ()

    base, center = 0.3, 0.5
    tri = widths.TriangularWidths.create(base)
    ref = stats.triang(0.5, loc=center - base / 2, scale=base)
    x = np.asarray([0.36, 0.4, 0.5, 0.55, 0.64, 0.3, 0.7, 0.9])
    with np.errstate(divide="ignore"):
        want = np.log(2 / base) - ref.logpdf(x)
    np.testing.assert_allclose(np.asarray(tri.level_gap(jnp.asarray(x)[:, None])), want, rtol=1e-5, atol=1e-6)
    assert np.all(np.isinf(want[-3:]))
    for x64 in (False, True):  # the ends of the support, where q = 0 exactly (float64: no flush of tiny floats)
        with jax.enable_x64(x64):
            edges = widths.TriangularWidths.create(0.5).level_gap(jnp.asarray([[0.25], [0.75]]))
            np.testing.assert_array_equal(np.asarray(edges), [np.inf, np.inf])
    u = np.asarray([0.01, 0.5, 2.0, 10.0])
    half = base / 2 * (1 - np.exp(-u))
    np.testing.assert_allclose(np.exp(np.asarray(tri.log_w_p(jnp.asarray(u)))), 2 * half, rtol=1e-6)
    np.testing.assert_allclose(np.exp(np.asarray(tri.log_w_q(jnp.asarray(u)))), ref.cdf(center + half) - ref.cdf(center - half),
                               rtol=1e-6)


def test_gaussian_pairs_must_both_be_one_dimensional():
    """A Gaussian pair is refused unless the target and the prior both have event size 1."""
    one, two = jaxrec.DiagGaussian(0.0, 1.0), jaxrec.DiagGaussian(jnp.zeros(2), 1.0)
    for target, prior in ((jaxrec.DiagGaussian(jnp.zeros(2), 0.5), one), (jaxrec.DiagGaussian(0.0, 0.5), two)):
        with pytest.raises(InvalidArgumentError, match="Gaussian width functions are 1-D"):
            widths.pair_widths(target, prior)
