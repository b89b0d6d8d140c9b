"""Width functions of a (target Q, prior P) pair and the GPRS stretch function (Flamich, NeurIPS 2023).

With ``r = dQ/dP`` and ``r* = ess sup r``:

* ``w_P(h) = P[r(Z) >= h]``, ``w_Q(h) = Q[r(Z) >= h]``;
* ``W(h) = int min(q, h p) = 1 - w_Q(h) + h w_P(h)``, the mass accepted below level ``h``;
  ``1 - W(h) = w_Q(h) - h w_P(h) = int_h^{r*} w_P`` (the *residual* mass);
* the GPRS stretch function ``sigma(h) = int_0^h d eta / (1 - W(eta))``, increasing from 0 to
  ``+inf`` on ``[0, r*)``; greedy Poisson rejection sampling accepts ``(T_n, X_n)`` iff
  ``T_n <= sigma(r(X_n))`` (Flamich 2023);
* ``D_CS[Q||P] = -int w_P log2 w_P`` (Goc & Flamich 2024), a lower bound on the index entropy of
  any causal rejection sampler (test oracle).

**Gap coordinates.**  Everything is parameterized by the *level gap* ``u = ln(r*/h) >= 0``
(``u = 0`` at the mode, ``u -> inf`` as ``h -> 0``): a candidate's gap ``u(x) = ln r* - ln r(x)``
is computed without the ``ln r*`` cancellation (for Gaussians ``(z - nu)^2 / (2 kappa)``), and the
residual mass, which vanishes like ``u^{3/2}`` at the mode, is computed

* for ``u < 1/2`` as the positive integral ``1 - W = h int_{r >= h} p(x) expm1(ln r(x) - ln h) dx``
  (32-point Gauss-Legendre over the superlevel interval, clipped to where ``p`` is not negligible),
* for ``u >= 1/2`` as ``w_Q - h w_P`` (relative cancellation error at most ``~3 eps``),

both in log space with tail-accurate interval masses (:mod:`jaxrec.truncated`).

**Stretch table.**  ``sigma~(u) = sigma(r* e^{-u}) = int_u^inf h(v) / (1 - W(h(v))) dv`` has no
closed form for Gaussians.  :func:`stretch_table` tabulates ``log sigma~`` on a fixed grid in
``zeta = ln u + u`` (log-spaced near the mode, linear in the far tail; ``u`` from ``1e-12``
to ``40``, 145 panels) by 4-point Gauss-Legendre panels and a reverse cumulative log-sum, together
with its exact derivative ``d sigma~/du = -h / (1 - W)``; :func:`log_stretch_at_gap` is then a cubic
Hermite interpolation (relative error below 1e-6), extended by the asymptotes ``sigma~ ~ u^{slope}``
at the mode (``-1/2`` for Gaussians) and ``sigma~ ~ h`` past ``u = 40`` (relative error
``r* e^{-40}``).  Everything is jit/vmap-able; a table takes about 730 evaluations of ``1 - W``
(each branch only where it is needed) and is built once per problem.

Supported pairs (:func:`pair_widths`): a 1-D Gaussian target narrower than a 1-D Gaussian prior
(bounded, unimodal ratio; ``nu = mu / (1 - s^2)``, ``kappa = s^2 / (1 - s^2)`` in the prior's
standard coordinates), and a uniform target inside a uniform prior (any ``D``).
:class:`TriangularWidths` (triangular target on a uniform prior, closed-form ``sigma``) exists for
tests.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.core import truncated
from jaxrec.core.distributions import DiagGaussian, Distribution, Uniform
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array
LN2 = math.log(2.0)

__all__ = [
    "GaussianWidths",
    "StretchTable",
    "TriangularWidths",
    "UniformWidths",
    "Widths",
    "check_pair",
    "d_cs",
    "log_residual_at_gap",
    "log_stretch_at_gap",
    "one_minus_w",
    "pair_widths",
    "sigma",
    "sigma_inv",
    "stretch_table",
    "w",
    "w_p",
    "w_q",
]

_QUAD_GAP = 0.5  # below this gap, 1 - W comes from the positive integral
_GAP_MAX = 40.0  # last table node; beyond it sigma~ = h (1 + O(h)), h = r* e^{-u} <= r* e^{-40}
_X_NODES, _X_WEIGHTS = np.polynomial.legendre.leggauss(32)
_PANEL_NODES, _PANEL_WEIGHTS = np.polynomial.legendre.leggauss(4)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Widths(Protocol):
    """What the width-function machinery needs from a pair (all in gap coordinates ``u >= 0``)."""

    log_r_star: Array

    def level_gap(self, x: Array) -> Array:
        """``ln r* - ln r(x)`` for ``x (..., D)``: ``(...,)``, ``+inf`` outside the target's support."""

    def log_w_p(self, u: Array) -> Array:
        """``ln w_P(r* e^{-u})``."""

    def log_w_q(self, u: Array) -> Array:
        """``ln w_Q(r* e^{-u})``."""

    def log_residual(self, u: Array, near: bool | None = None) -> Array:
        """``ln(1 - W(r* e^{-u}))``, accurate near the mode.

        ``near`` is a static promise about every ``u``: True if all ``u < 1/2``, False if all
        ``u >= 1/2`` (lets a model skip the branch it does not need), None if unknown.
        """


# ---------------------------------------------------------------------------------------------
# Pairs


class GaussianWidths(NamedTuple):
    """``Q = N(loc + scale mu, (scale s)^2)`` against ``P = N(loc, scale^2)`` in 1-D, ``s < 1``.

    Attributes (scalars): ``loc``, ``scale`` (the prior), ``mu``, ``s`` (the target in the prior's
    standard coordinates ``z``), ``nu = mu / (1 - s^2)`` (the mode of ``r`` in ``z``),
    ``kappa = s^2 / (1 - s^2)`` and ``log_r_star = -ln s + mu^2 / (2 (1 - s^2))`` (nats).
    The superlevel set ``{r >= r* e^{-u}}`` is ``|z - nu| <= sqrt(2 kappa u)``.
    """

    loc: Array
    scale: Array
    mu: Array
    s: Array
    nu: Array
    kappa: Array
    log_r_star: Array

    @property
    def mode(self) -> Array:
        """The mode of ``r`` in the original coordinates."""
        return self.loc + self.scale * self.nu

    def level_gap(self, x: Array) -> Array:
        d = (x[..., 0] - self.loc) / self.scale - self.nu
        return d * d / (2.0 * self.kappa)

    def gap_of_z(self, z: Array) -> Array:
        """The level gap of standard coordinates ``z`` (no event axis)."""
        d = z - self.nu
        return d * d / (2.0 * self.kappa)

    def radius(self, u: Array) -> Array:
        """Half-width ``rho = sqrt(2 kappa u)`` of the superlevel interval, in ``z``."""
        return jnp.sqrt(2.0 * self.kappa * u)

    def log_w_p(self, u: Array) -> Array:
        return truncated.log_mass_around(self.nu, self.radius(u))

    def log_w_q(self, u: Array) -> Array:
        return truncated.log_mass_around((self.nu - self.mu) / self.s, self.radius(u) / self.s)

    def log_residual(self, u: Array, near: bool | None = None) -> Array:
        u = jnp.asarray(u, self.nu.dtype)
        if near is True:
            return self._log_residual_integral(u)
        if near is False:
            return self._log_residual_closed(u)
        is_near = u < _QUAD_GAP
        quad = self._log_residual_integral(jnp.where(is_near, u, _QUAD_GAP))
        closed = self._log_residual_closed(jnp.where(is_near, _QUAD_GAP, u))
        return jnp.where(u <= 0, -jnp.inf, jnp.where(is_near, quad, closed))

    def _log_residual_closed(self, u: Array) -> Array:
        """``ln(w_Q - h w_P)``: relative cancellation error about ``eps / u`` (used for ``u >= 1/2``)."""
        log_wq = self.log_w_q(u)
        return log_wq + truncated.log1mexp(jnp.minimum(self.log_r_star - u + self.log_w_p(u) - log_wq, 0.0))

    def _log_residual_integral(self, u: Array) -> Array:
        """``ln int_{|z-nu|<=rho} h phi(z) expm1(u - (z-nu)^2/(2 kappa)) dz`` by Gauss-Legendre.

        The window is clipped to ``z* +- L`` around the point ``z*`` of the interval nearest 0,
        with ``L = min(9, 30/|z*|)``: outside it ``phi`` is below ``e^{-30}`` of its value at ``z*``.
        Nodes are placed in the offset ``d = z - nu``, so a window below the float spacing of ``nu``
        is still resolved.
        """
        rho = self.radius(u)
        d_star = jnp.clip(-self.nu, -rho, rho)  # offset of the point nearest z = 0
        reach = jnp.minimum(9.0, 30.0 / jnp.maximum(jnp.abs(self.nu + d_star), 1e-3))
        a, b = jnp.maximum(-rho, d_star - reach), jnp.minimum(rho, d_star + reach)
        half, mid = 0.5 * (b - a), 0.5 * (a + b)
        d = mid[..., None] + half[..., None] * jnp.asarray(_X_NODES, half.dtype)
        z = self.nu[..., None] + d
        arg = u[..., None] - d * d / (2.0 * self.kappa[..., None])
        # phi factored at the window point nearest 0: the remaining exponents stay above -70
        z0 = (self.nu + jnp.clip(d_star, a, b))[..., None]
        terms = jnp.exp(-0.5 * (z - z0) * (z + z0)) * jnp.expm1(jnp.maximum(arg, 0.0))
        total = jnp.sum(terms * jnp.asarray(_X_WEIGHTS, half.dtype), axis=-1)
        return self.log_r_star - u + jnp.log(half) - 0.5 * z0[..., 0] ** 2 - _HALF_LOG_2PI + jnp.log(total)


class UniformWidths(NamedTuple):
    """A uniform target on ``[low, high)`` inside a uniform prior: ``r = r*`` on the target.

    ``w_P = 1 / r*``, ``w_Q = 1`` and ``1 - W(h) = 1 - h / r* = -expm1(-u)`` for ``h <= r*``.
    """

    low: Array
    high: Array
    log_r_star: Array

    def level_gap(self, x: Array) -> Array:
        inside = jnp.all((x >= self.low) & (x < self.high), axis=-1)
        return jnp.where(inside, 0.0, jnp.inf).astype(self.low.dtype)

    def log_w_p(self, u: Array) -> Array:
        return jnp.broadcast_to(-self.log_r_star, jnp.shape(u))

    def log_w_q(self, u: Array) -> Array:
        return jnp.zeros_like(u)

    def log_residual(self, u: Array, near: bool | None = None) -> Array:
        return truncated.log1mexp(-jnp.asarray(u))


class TriangularWidths(NamedTuple):
    """Symmetric triangular target of base ``base`` centred at ``center`` on the prior ``U(0, 1)``.

    ``r* = 2 / base``; with ``e = e^{-u}``: ``w_P = base (1 - e)``, ``w_Q = 1 - e^2``,
    ``1 - W = (1 - e)^2`` and ``sigma(h) = 2h / (2 - base h)`` (Flamich, NeurIPS 2023).  For tests.
    """

    base: Array
    center: Array
    log_r_star: Array

    @classmethod
    def create(cls, base: float, center: float = 0.5) -> "TriangularWidths":
        base, center = jnp.asarray(base, jnp.result_type(float)), jnp.asarray(center, jnp.result_type(float))
        return cls(base, center, jnp.log(2.0 / base))

    def level_gap(self, x: Array) -> Array:
        frac = 1.0 - jnp.abs(x[..., 0] - self.center) / (0.5 * self.base)
        return jnp.where(frac > 0, -jnp.log(jnp.maximum(frac, 1e-38)), jnp.inf)

    def log_w_p(self, u: Array) -> Array:
        return jnp.log(self.base) + truncated.log1mexp(-u)

    def log_w_q(self, u: Array) -> Array:
        return truncated.log1mexp(-2.0 * jnp.asarray(u))

    def log_residual(self, u: Array, near: bool | None = None) -> Array:
        return 2.0 * truncated.log1mexp(-jnp.asarray(u))


def _first(a: Array) -> Array:
    return a[..., 0]


def _concrete(*arrays: Any) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def check_pair(target: Distribution, prior: Distribution) -> None:
    """Raises :class:`InvalidArgumentError` unless width functions exist for the pair.

    Accepts batch axes (checks every problem): Gaussian pairs need event size 1 and, when the
    parameters are concrete, ``target.scale < prior.scale``; uniform pairs need the target box
    inside the prior box.  Under ``jit`` only the static checks run.
    """
    if isinstance(target, DiagGaussian) and isinstance(prior, DiagGaussian):
        if target.event_size != 1 or prior.event_size != 1:
            raise InvalidArgumentError(
                f"Gaussian width functions are 1-D (event size 1), got {target.event_size}; use the "
                "per-dimension wrapper jaxrec.factorized for D > 1"
            )
        concrete = _concrete(target.scale, prior.scale)
        if concrete and not bool(np.all(np.asarray(target.scale) < np.asarray(prior.scale))):
            raise InvalidArgumentError(
                f"the density ratio is unbounded: target scale {np.asarray(target.scale)!r} must be < prior scale "
                f"{np.asarray(prior.scale)!r}"
            )
        return
    if isinstance(target, Uniform) and isinstance(prior, Uniform):
        leaves = (target.low, target.high, prior.low, prior.high)
        if _concrete(*leaves):
            t_low, t_high, p_low, p_high = (np.asarray(a) for a in leaves)
            inside = bool(np.all((t_low >= p_low) & (t_high <= p_high)))
        else:
            inside = True
        if not inside:
            raise InvalidArgumentError(
                f"the uniform target [{np.asarray(target.low)!r}, {np.asarray(target.high)!r}) must lie inside the "
                f"prior [{np.asarray(prior.low)!r}, {np.asarray(prior.high)!r})"
            )
        return
    raise InvalidArgumentError(
        f"no width functions for target {type(target).__name__} against prior {type(prior).__name__} "
        "(supported: 1-D DiagGaussian pairs and Uniform pairs)"
    )


def pair_widths(target: Distribution, prior: Distribution) -> Widths:
    """The width model of one pair (no batch axes): :class:`GaussianWidths` or :class:`UniformWidths`.

    Raises as :func:`check_pair`, and for batch axes (``jax.vmap`` over problems instead).
    Under ``jit`` an unbounded pair gives ``log_r_star = NaN`` (coders then report ``exhausted``).
    """
    check_pair(target, prior)
    if target.batch_shape or prior.batch_shape:
        raise InvalidArgumentError(
            f"pair_widths takes one problem without batch axes, got batch shapes {target.batch_shape} and "
            f"{prior.batch_shape}; use jax.vmap"
        )
    if isinstance(target, DiagGaussian):
        mu = _first((target.loc - prior.loc) / prior.scale)
        log_s = _first(jnp.log(target.scale / prior.scale))
        one_minus_s2 = -jnp.expm1(2.0 * log_s)
        one_minus_s2 = jnp.where(one_minus_s2 > 0, one_minus_s2, jnp.nan)
        s = jnp.exp(log_s)
        return GaussianWidths(
            loc=_first(prior.loc),
            scale=_first(prior.scale),
            mu=mu,
            s=s,
            nu=mu / one_minus_s2,
            kappa=s * s / one_minus_s2,
            log_r_star=-log_s + 0.5 * mu * mu / one_minus_s2,
        )
    inside = jnp.all((target.low >= prior.low) & (target.high <= prior.high))
    log_r_star = jnp.sum(jnp.log(prior.width) - jnp.log(target.width))
    return UniformWidths(target.low, target.high, jnp.where(inside, log_r_star, jnp.nan))


# ---------------------------------------------------------------------------------------------
# Width functions of the level h


def _gap(model: Widths, h: Array) -> Array:
    h = jnp.asarray(h, jnp.result_type(model.log_r_star))
    return model.log_r_star - jnp.log(h)


def w_p(model: Widths, h: Array) -> Array:
    """``w_P(h) = P[r >= h]`` (1 for ``h <= 0``, 0 above ``r*``)."""
    u = _gap(model, h)
    return jnp.where(u < 0, 0.0, jnp.where(jnp.isinf(u), 1.0, jnp.exp(model.log_w_p(jnp.maximum(u, 0.0)))))


def w_q(model: Widths, h: Array) -> Array:
    """``w_Q(h) = Q[r >= h]`` (1 for ``h <= 0``, 0 above ``r*``)."""
    u = _gap(model, h)
    return jnp.where(u < 0, 0.0, jnp.where(jnp.isinf(u), 1.0, jnp.exp(model.log_w_q(jnp.maximum(u, 0.0)))))


def one_minus_w(model: Widths, h: Array) -> Array:
    """``1 - W(h) = w_Q(h) - h w_P(h)``, accurate near ``r*`` (0 at and above ``r*``, 1 at 0)."""
    u = _gap(model, h)
    return jnp.where(u <= 0, 0.0, jnp.where(jnp.isinf(u), 1.0, jnp.exp(model.log_residual(jnp.maximum(u, 1e-30)))))


def w(model: Widths, h: Array) -> Array:
    """``W(h) = int min(q, h p) = 1 - w_Q(h) + h w_P(h)``."""
    return 1.0 - one_minus_w(model, h)


# ---------------------------------------------------------------------------------------------
# The stretch function


def _grid() -> np.ndarray:
    """Static nodes in ``zeta = ln u + u`` for ``u`` in ``[1e-12, 40]``: step 1/2 near the mode, 1/4
    on ``zeta in [-8, 10]`` (``u`` from 3e-4 to 8, where ``ln(1 - W)`` bends most), 1 beyond (where
    ``sigma~ ~ h`` and ``1 - W ~ 1``)."""
    zeta0 = math.log(1e-12) + 1e-12
    zeta_max = math.log(_GAP_MAX) + _GAP_MAX
    pieces = [
        np.arange(-8.0, zeta0, -0.5)[::-1][:-1],  # -27.5, -27, ..., -8.5 (the first becomes zeta0)
        np.arange(-8.0, 10.0, 0.25),
        np.arange(10.0, zeta_max + 1.0, 1.0),
    ]
    zeta = np.concatenate(pieces)
    zeta[0], zeta[-1] = zeta0, zeta_max
    return zeta


def _u_of_zeta(zeta: np.ndarray) -> np.ndarray:
    """Solves ``ln u + u = zeta`` (Newton in ``ln u``, float64, host side)."""
    log_u = np.where(zeta < 0, zeta, np.log(np.maximum(zeta, 1e-300)))
    for _ in range(60):
        u = np.exp(log_u)
        log_u = log_u - (log_u + u - zeta) / (1.0 + u)
    return np.exp(log_u)


_ZETA = _grid()
_U = _u_of_zeta(_ZETA)
_DZ = np.diff(_ZETA)
_PANEL_ZETA = (_ZETA[:-1, None] + 0.5 * _DZ[:, None] * (1.0 + _PANEL_NODES[None, :])).reshape(-1)
_PANEL_U = _u_of_zeta(_PANEL_ZETA)
_LOG_PANEL_W = np.log(0.5 * _DZ[:, None] * _PANEL_WEIGHTS[None, :]).reshape(-1)


def _log_residual_static(model: Widths, u: np.ndarray, dtype: Any) -> Array:
    """``model.log_residual`` at static gaps, each branch evaluated only where it is needed."""
    near = u < _QUAD_GAP
    out = jnp.concatenate([
        model.log_residual(jnp.asarray(u[near], dtype), near=True),
        model.log_residual(jnp.asarray(u[~near], dtype), near=False),
    ])
    order = np.argsort(np.concatenate([np.flatnonzero(near), np.flatnonzero(~near)]))
    return out[order]


class StretchTable(NamedTuple):
    """Tabulated ``ln sigma~`` and ``ln(1 - W)`` of one pair at the static grid nodes; a pytree.

    Attributes:
      log_r_star: ``ln r*`` of the pair.
      log_sigma: ``float[K]``, ``ln sigma~(u_k)`` (decreasing in ``k``).
      sigma_slope: ``float[K]``, ``d ln sigma~ / d zeta`` at the nodes (negative).
      log_residual: ``float[K]``, ``ln(1 - W)`` at the nodes (increasing to 0).
      residual_slope: ``float[K]``, ``d ln(1 - W) / d zeta = h w_P / (1 - W) * u / (1 + u)``.
    """

    log_r_star: Array
    log_sigma: Array
    sigma_slope: Array
    log_residual: Array
    residual_slope: Array


def stretch_table(model: Widths) -> StretchTable:
    """Tabulates the GPRS stretch function and the residual mass of ``model`` (module docstring)."""
    dtype = jnp.result_type(model.log_r_star)
    u_nodes = jnp.asarray(_U, dtype)
    u_panel = jnp.asarray(_PANEL_U, dtype)
    # integrand of sigma~ in zeta: h(u) / (1 - W) * du/dzeta, du/dzeta = u / (1 + u)
    log_f = model.log_r_star - u_panel - _log_residual_static(model, _PANEL_U, dtype)
    log_f = log_f + jnp.log(u_panel) - jnp.log1p(u_panel) + jnp.asarray(_LOG_PANEL_W, dtype)
    log_panels = jax.nn.logsumexp(log_f.reshape(len(_ZETA) - 1, -1), axis=-1)
    # beyond u_max: 1 - W ~ 1 so sigma~ ~ h = r* e^{-u}
    log_tail = model.log_r_star - u_nodes[-1]
    log_sigma = jax.lax.cumlogsumexp(jnp.concatenate([log_panels, log_tail[None]]), reverse=True)
    log_jac = jnp.log(u_nodes) - jnp.log1p(u_nodes)
    log_g = _log_residual_static(model, _U, dtype)
    log_h = model.log_r_star - u_nodes
    sigma_slope = -jnp.exp(log_h - log_g - log_sigma + log_jac)
    residual_slope = jnp.exp(log_h + model.log_w_p(u_nodes) - log_g + log_jac)
    return StretchTable(model.log_r_star, log_sigma, sigma_slope, log_g, residual_slope)


def _hermite_at_gap(values: Array, slopes: Array, u: Array) -> tuple[Array, Array, Array]:
    """Cubic Hermite interpolation in ``zeta`` of node ``values``/``slopes`` at gaps ``u``.

    Returns ``(inside, below, above)``: the interpolant (valid on the grid), and masks for gaps
    below the first and above the last node (callers add their asymptotes there).
    """
    safe_u = jnp.clip(u, 1e-30, 1e30)
    zeta = jnp.log(safe_u) + safe_u
    nodes = jnp.asarray(_ZETA, u.dtype)
    k = jnp.clip(jnp.searchsorted(nodes, zeta, side="right") - 1, 0, len(_ZETA) - 2)
    dz = jnp.asarray(_DZ, u.dtype)[k]
    t = (zeta - nodes[k]) / dz
    y0, y1 = values[k], values[k + 1]
    m0, m1 = dz * slopes[k], dz * slopes[k + 1]
    t2, t3 = t * t, t * t * t
    inside = (2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * m0 + (-2 * t3 + 3 * t2) * y1 + (t3 - t2) * m1
    return inside, zeta < _ZETA[0], zeta > _ZETA[-1]


def _below_grid(values: Array, slopes: Array, u: Array) -> Array:
    """Power-law continuation below ``u_0``, with the first node's log-log slope (``d ln u / d zeta = 1/(1 + u)``)."""
    u0 = float(_U[0])
    return values[0] + slopes[0] * (1.0 + u0) * (jnp.log(jnp.maximum(u, 0.0)) - math.log(u0))


def log_stretch_at_gap(table: StretchTable, u: Array) -> Array:
    """``ln sigma~(u) = ln sigma(r* e^{-u})`` (``+inf`` at ``u = 0``, ``-inf`` at ``u = inf``)."""
    u = jnp.asarray(u, table.log_sigma.dtype)
    inside, below, above = _hermite_at_gap(table.log_sigma, table.sigma_slope, u)
    near = _below_grid(table.log_sigma, table.sigma_slope, u)
    far = table.log_sigma[-1] - (u - float(_U[-1]))  # sigma~ ~ h
    out = jnp.where(below, near, jnp.where(above, far, inside))
    return jnp.where(u <= 0, jnp.inf, jnp.where(jnp.isinf(u), -jnp.inf, out))


def log_residual_at_gap(table: StretchTable, u: Array) -> Array:
    """``ln(1 - W(r* e^{-u}))`` interpolated from the table (``-inf`` at ``u = 0``, 0 at ``inf``).

    Relative error of ``1 - W`` below about 1e-6; cheap (no special functions), for ladders
    that need ``1 - W`` at many levels (:func:`jaxrec.grs`).
    """
    u = jnp.asarray(u, table.log_residual.dtype)
    inside, below, above = _hermite_at_gap(table.log_residual, table.residual_slope, u)
    near = _below_grid(table.log_residual, table.residual_slope, u)
    far = table.log_residual[-1] * jnp.exp(-(u - float(_U[-1])))  # ln(1 - W) ~ -c h
    out = jnp.where(below, near, jnp.where(above, far, inside))
    return jnp.where(u <= 0, -jnp.inf, jnp.where(jnp.isinf(u), 0.0, jnp.minimum(out, 0.0)))


def _gap_of_log_stretch(table: StretchTable, log_t: Array) -> Array:
    """Inverse of :func:`log_stretch_at_gap`: the gap ``u`` with ``ln sigma~(u) = log_t``."""
    dtype = table.log_sigma.dtype
    log_t = jnp.asarray(log_t, dtype)
    # log_sigma decreases: segment k has log_sigma[k] >= log_t > log_sigma[k+1]
    k = jnp.clip(jnp.searchsorted(-table.log_sigma, -log_t, side="right") - 1, 0, len(_ZETA) - 2)
    dz = jnp.asarray(_DZ, dtype)[k]
    y0, y1 = table.log_sigma[k], table.log_sigma[k + 1]
    m0, m1 = dz * table.sigma_slope[k], dz * table.sigma_slope[k + 1]
    t = jnp.clip((y0 - log_t) / jnp.maximum(y0 - y1, 1e-30), 0.0, 1.0)
    for _ in range(4):
        t2, t3 = t * t, t * t * t
        val = (2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * m0 + (-2 * t3 + 3 * t2) * y1 + (t3 - t2) * m1
        der = (6 * t2 - 6 * t) * y0 + (3 * t2 - 4 * t + 1) * m0 + (-6 * t2 + 6 * t) * y1 + (3 * t2 - 2 * t) * m1
        t = jnp.clip(t - (val - log_t) / jnp.minimum(der, -1e-30), 0.0, 1.0)
    zeta = jnp.asarray(_ZETA, dtype)[k] + dz * t
    # ln u + u = zeta, Newton in ln u from the bracketing nodes' interpolation
    u_nodes = jnp.asarray(_U, dtype)
    log_u = jnp.log(u_nodes[k] + t * (u_nodes[k + 1] - u_nodes[k]))
    for _ in range(3):
        log_u = log_u - (log_u + jnp.exp(log_u) - zeta) / (1.0 + jnp.exp(log_u))
    inside = jnp.exp(log_u)
    u0 = float(_U[0])
    near = u0 * jnp.exp((log_t - table.log_sigma[0]) / (table.sigma_slope[0] * (1.0 + u0)))
    far = float(_U[-1]) + (table.log_sigma[-1] - log_t)
    return jnp.where(log_t > table.log_sigma[0], near, jnp.where(log_t < table.log_sigma[-1], far, inside))


def sigma(table: StretchTable, h: Array) -> Array:
    """The stretch function ``sigma(h) = int_0^h d eta / (1 - W(eta))`` (``+inf`` for ``h >= r*``)."""
    h = jnp.asarray(h, table.log_sigma.dtype)
    u = table.log_r_star - jnp.log(h)
    out = jnp.exp(log_stretch_at_gap(table, jnp.maximum(u, 0.0)))
    return jnp.where(h <= 0, 0.0, out)


def sigma_inv(table: StretchTable, t: Array) -> Array:
    """``sigma^{-1}(t)``, increasing from 0 to ``r*`` (0 for ``t <= 0``)."""
    t = jnp.asarray(t, table.log_sigma.dtype)
    u = _gap_of_log_stretch(table, jnp.log(jnp.maximum(t, 1e-38)))
    return jnp.where(t <= 0, 0.0, jnp.exp(table.log_r_star - u))


# ---------------------------------------------------------------------------------------------
# D_CS


def d_cs(model: Widths) -> Array:
    """``D_CS[Q||P] = -int_0^{r*} w_P(h) log2 w_P(h) dh`` in bits (quadrature on the stretch grid)."""
    dtype = jnp.result_type(model.log_r_star)
    u = jnp.asarray(_PANEL_U, dtype)
    log_wp = model.log_w_p(u)
    integrand = jnp.where(log_wp > -jnp.inf, -jnp.exp(log_wp) * log_wp / LN2, 0.0)
    log_weight = model.log_r_star - u + jnp.log(u) - jnp.log1p(u) + jnp.asarray(_LOG_PANEL_W, dtype)
    return jnp.sum(jnp.exp(log_weight) * integrand)
