"""Factorized distributions as pytrees, and the (target, prior) pair quantities REC needs.

A distribution has an *event* axis, the last one, of size ``D``; any leading axes are batch
axes, so a ``DiagGaussian`` with ``loc.shape == (B, D)`` is ``B`` independent D-dimensional
Gaussians and ``jax.vmap`` over it works as over any pytree.

Elementwise methods (``cdf``, ``log_cdf``, ``log_sf``, ``icdf``, ``isf``, ``log_prob_per_dim``)
act per coordinate and return ``(..., D)``; ``log_prob`` sums over the event axis.

Pair quantities for a target ``Q`` and a coding distribution (prior) ``P``, with
``r = dQ/dP``:

* :func:`log_ratio` -- ``log r(x)`` in nats, shape ``(...,)``;
* :func:`kl` -- ``D_KL[Q||P] = E_Q log2 r`` in **bits** (``per_dim=True`` for ``(..., D)``);
* :func:`log_sup_ratio` -- ``log ess sup r`` in nats (``+inf`` when unbounded);
* :func:`dinf` -- the same in bits, ``D_inf[Q||P]``.

The elementwise methods, ``log_prob``, ``valid``, the log ratios and the pair quantities are
compiled functions (``jax.jit``; inside another ``jit`` they are inlined): called eagerly, each is
one program instead of one per operation (a first call for new shapes about 3 times faster on CPU),
and it computes as compiled code does (XLA may contract a multiply and an add into one FMA inside a
program, never across eager operations, so the last ulp can differ from an op-by-op evaluation).

Parameters are validated at construction when they are concrete (outside ``jit``):
non-finite values or non-positive scales raise :class:`~jaxrec.core.errors.InvalidArgumentError`.
Under ``jit``/``vmap`` the pytree is rebuilt without validation.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import log_ndtr, ndtr, ndtri

from jaxrec.core.checks import as_bool, as_float, describe
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.core.normal_quantile import ndtri_lower_tail

Array = jax.Array
LN2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

__all__ = [
    "DiagGaussian",
    "Distribution",
    "Uniform",
    "check_pair",
    "columns",
    "dinf",
    "interval_log_sup_ratio",
    "kl",
    "log_ratio",
    "log_ratio_by_axis",
    "log_ratio_per_dim",
    "log_sup_ratio",
    "mmd2_to_gaussian",
    "open_unit",
]


def _affine(shift: Array, scale: Array, z: Array) -> Array:
    """``shift + scale * z`` with ``z`` behind an optimization barrier.

    Without it XLA fuses the random draw with the affine map and may contract ``scale * z + shift``
    into an FMA in one program (e.g. a vectorised encoder chunk) and not in another (a one-item
    decoder), so the decoder's candidate could differ from the encoder's in the last ulp.
    """
    return shift + scale * lax.optimization_barrier(z)


def open_unit(words: Array) -> Array:
    """``U = (m + 1/2) 2^-24`` in float32 from the top 24 bits ``m`` of ``uint32`` words, at most
    ``1 - 2^-24``: in ``(0, 1)`` for every word.

    Exact for ``m < 2^23`` (``U < 1/2``); above, float32 holds multiples of ``2^-24`` only, and
    ``m + 1/2`` rounds to the even neighbour (``U`` on the grid ``2^-23 Z``, each point twice as
    likely: still uniform on that grid).  For the top word, ``(2^24 - 1/2) 2^-24`` would round to
    ``1.0``, which would make a Gumbel ``-log(-log U)`` infinite (MRC picked such a candidate,
    whatever its weight, with probability ``N 2^-24``) and a uniform point fall on the excluded upper
    end; it is clamped to ``1 - 2^-24``."""
    u = ((words >> 8).astype(jnp.float32) + 0.5) * jnp.float32(2.0**-24)
    return jnp.minimum(u, jnp.float32(1.0 - 2.0**-24))


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _as_float_array(name: str, value: Any) -> Array:
    try:
        arr = jnp.asarray(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a real number or array, got {describe(value)}") from None
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise InvalidArgumentError(f"{name} must be real, got {describe(value)}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    if _is_concrete(arr) and not bool(np.all(np.isfinite(np.asarray(arr)))):
        raise InvalidArgumentError(f"{name} must be finite, got {np.asarray(arr)!r}")
    return arr


# The compiled methods' arguments that are points or probabilities (not words, not branch flags):
# integer and bool values of these become the distribution's float dtype.
_REAL_VALUED = frozenset({"x", "u", "v", "t"})


def _as_real_array(name: str, value: Any, dtype: Any = None) -> Any:
    """``value`` unchanged if it is a JAX array or tracer or a Python number (weakly typed: it takes the
    distribution's dtype), else as a numpy array of numbers (a list of floats is an array, as in
    numpy); :class:`InvalidArgumentError` naming ``name`` otherwise.  With a float ``dtype`` (a
    point or probability argument), integer and bool values become ``dtype``: the quantiles'
    ``ndtri`` refuses them."""
    if isinstance(value, (bool, int, float)):
        return value if dtype is None else float(value)
    if isinstance(value, jax.Array):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):
            arr = None
        if arr is None or not (arr.dtype == np.bool_ or jnp.issubdtype(arr.dtype, jnp.integer) or jnp.issubdtype(arr.dtype, jnp.floating)):
            raise InvalidArgumentError(f"{name} must be a real number or array, got {describe(value)}")
    return arr if dtype is None or jnp.issubdtype(arr.dtype, jnp.floating) else arr.astype(dtype)


def _compiled_method(method: Callable) -> Callable:
    """``method(self, *arrays)`` compiled with ``jax.jit`` (the distribution is a pytree argument),
    each array argument checked by :func:`_as_real_array` under its parameter name first."""
    compiled = jax.jit(method)
    signature = inspect.signature(method)

    @functools.wraps(method)
    def checked(self: Distribution, *args: Any, **kwargs: Any) -> Array:
        arrays = list(signature.bind(self, *args, **kwargs).arguments.items())[1:]
        return compiled(self, *(_as_real_array(name, value, self.dtype if name in _REAL_VALUED else None) for name, value in arrays))

    return checked


class Distribution:
    """Base class: a factorized distribution whose parameters are the pytree leaves.

    Subclasses list their parameter names in ``_params``, implement the per-coordinate
    methods, and get pytree registration, ``event_size``/``batch_shape``/``dtype`` and
    ``log_prob`` from here.
    """

    _params: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, cls._flatten, cls._unflatten)

    def _flatten(self) -> tuple[tuple[Array, ...], None]:
        return tuple(getattr(self, p) for p in self._params), None

    @classmethod
    def _unflatten(cls, _aux: None, leaves: tuple[Array, ...]) -> Distribution:
        obj = object.__new__(cls)
        for name, leaf in zip(cls._params, leaves):
            object.__setattr__(obj, name, leaf)
        return obj

    def _set_params(self, **params: Any) -> None:
        arrays = [_as_float_array(k, v) for k, v in params.items()]
        dtype = jnp.result_type(*arrays)
        try:
            shape = jnp.broadcast_shapes(*(a.shape for a in arrays))
        except ValueError:
            shapes = " and ".join(f"{k} {tuple(a.shape)}" for k, a in zip(params, arrays))
            raise InvalidArgumentError(f"{type(self).__name__} parameters must broadcast together, got {shapes}") from None
        if shape == ():
            shape = (1,)
        for name, arr in zip(params, arrays):
            object.__setattr__(self, name, jnp.broadcast_to(arr.astype(dtype), shape))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        fields = ", ".join(f"{p}={getattr(self, p)!r}" for p in self._params)
        return f"{type(self).__name__}({fields})"

    @property
    def event_size(self) -> int:
        """``D``, the size of the last axis."""
        return getattr(self, self._params[0]).shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return getattr(self, self._params[0]).shape[:-1]

    @property
    def dtype(self) -> jnp.dtype:
        return getattr(self, self._params[0]).dtype

    @jax.jit
    def valid(self) -> Array:
        """``bool`` with the batch shape: every parameter finite and the family's constraints met
        (traceable; the constructor raises on concrete bad parameters, this flags traced ones)."""
        finite = [jnp.all(jnp.isfinite(getattr(self, p)), axis=-1) for p in self._params]
        return jnp.logical_and(functools.reduce(jnp.logical_and, finite), jnp.all(self._constraint(), axis=-1))

    def _constraint(self) -> Array:
        return jnp.ones(getattr(self, self._params[0]).shape, bool)

    @_compiled_method
    def log_prob(self, x: Array) -> Array:
        """``sum_d log p_d(x_d)``; ``x`` is ``(..., D)``, the result ``(...,)``."""
        return jnp.sum(self.log_prob_per_dim(x), axis=-1)

    # Per-coordinate interface, implemented by subclasses.
    def log_prob_per_dim(self, x: Array) -> Array:
        raise NotImplementedError

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        raise NotImplementedError

    @_compiled_method
    def from_words(self, words: Array) -> Array:
        """A sample from 32 random bits per coordinate (``uint32``, broadcast against the
        parameters): ``F^{-1}(U)`` with ``U = (m + 1/2) 2^-24``, ``m`` the top 24 bits.

        The candidate streams of :mod:`jaxrec.core.prng` go through this map, so the encoder and
        the decoder turn the same words into the same point.
        """
        return self.icdf(open_unit(words).astype(self.dtype))

    @_compiled_method
    def tail_quantile(self, t: Array, lower: Array) -> Array:
        """``icdf(t)`` where ``lower``, else ``isf(t)``, for a tail mass ``t in [0, 1/2]`` (so both
        are accurate). Space partitioning draws every candidate coordinate through it; a family may
        evaluate it faster than :meth:`icdf`/:meth:`isf` to its dtype's accuracy
        (:class:`DiagGaussian` in float32)."""
        return jnp.where(lower, self.icdf(t), self.isf(t))


class DiagGaussian(Distribution):
    """Factorized Gaussian ``N(loc, diag(scale^2))``.

    Args:
      loc: ``(..., D)`` means (a scalar is ``D = 1``).
      scale: ``(..., D)`` standard deviations, > 0; broadcast against ``loc``.
    """

    _params = ("loc", "scale")

    def __init__(self, loc: Any, scale: Any):
        self._set_params(loc=loc, scale=scale)
        if _is_concrete(self.scale) and not bool(np.all(np.asarray(self.scale) > 0)):
            raise InvalidArgumentError(f"scale must be > 0, got {np.asarray(self.scale)!r}")

    def _constraint(self) -> Array:
        return self.scale > 0

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        """Draws ``(*sample_shape, *batch_shape, D)`` samples from ``key``."""
        shape = tuple(sample_shape) + self.loc.shape
        return _affine(self.loc, self.scale, jax.random.normal(key, shape, self.dtype))

    @_compiled_method
    def from_words(self, words: Array) -> Array:
        """``loc + scale * sqrt(2) erfinv(2U - 1)`` with ``U`` as in :meth:`Distribution.from_words`
        (``2U - 1 = (2m + 1 - 2^24) 2^-24``, formed exactly): the inverse CDF of ``jax.random.normal``."""
        v = (2 * (words >> 8).astype(jnp.int32) + (1 - 2**24)).astype(jnp.float32) * jnp.float32(2.0**-24)
        z = jnp.asarray(math.sqrt(2.0), self.dtype) * lax.erf_inv(v.astype(self.dtype))
        return _affine(self.loc, self.scale, z)

    @_compiled_method
    def standardize(self, x: Array) -> Array:
        return (x - self.loc) / self.scale

    @_compiled_method
    def log_prob_per_dim(self, x: Array) -> Array:
        z = self.standardize(x)
        return -0.5 * z * z - jnp.log(self.scale) - _HALF_LOG_2PI

    @_compiled_method
    def cdf(self, x: Array) -> Array:
        return ndtr(self.standardize(x))

    @_compiled_method
    def log_cdf(self, x: Array) -> Array:
        return log_ndtr(self.standardize(x))

    @_compiled_method
    def log_sf(self, x: Array) -> Array:
        """``log(1 - cdf(x))``, accurate in the upper tail (by symmetry)."""
        return log_ndtr(-self.standardize(x))

    @_compiled_method
    def icdf(self, u: Array) -> Array:
        """Quantile ``F^{-1}(u)``; accurate in the lower tail (small ``u``)."""
        return self.loc + self.scale * ndtri(u)

    @_compiled_method
    def isf(self, v: Array) -> Array:
        """Inverse survival ``F^{-1}(1 - v)``; accurate in the upper tail (small ``v``)."""
        return self.loc - self.scale * ndtri(v)

    @_compiled_method
    def tail_quantile(self, t: Array, lower: Array) -> Array:
        """:meth:`Distribution.tail_quantile` with one quantile instead of two,
        ``loc + (+-scale) Phi^{-1}(t)``: in float32 the polynomial
        :func:`~jaxrec.core.normal_quantile.ndtri_lower_tail` (within ``4e-7`` relative of ``Phi^{-1}``,
        a third of ``ndtri``'s cost; not bit-identical to :meth:`icdf`/:meth:`isf`), in other dtypes
        ``ndtri``, which equals ``where(lower, icdf, isf)`` bit for bit (negation is exact, so
        ``loc + (-scale) n == loc - scale n``)."""
        return self.loc + jnp.where(lower, self.scale, -self.scale) * ndtri_lower_tail(t)


class Uniform(Distribution):
    """Factorized uniform on the box ``[low, high)``.

    Args:
      low, high: ``(..., D)`` bounds with ``high > low``.
    """

    _params = ("low", "high")

    def __init__(self, low: Any, high: Any):
        self._set_params(low=low, high=high)
        if _is_concrete(self.low) and not bool(np.all(np.asarray(self.high) > np.asarray(self.low))):
            raise InvalidArgumentError(
                f"need high > low, got low={np.asarray(self.low)!r}, high={np.asarray(self.high)!r}"
            )

    @property
    def width(self) -> Array:
        return self.high - self.low

    def _constraint(self) -> Array:
        return self.high > self.low

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        shape = tuple(sample_shape) + self.low.shape
        return _affine(self.low, self.width, jax.random.uniform(key, shape, self.dtype))

    @_compiled_method
    def from_words(self, words: Array) -> Array:
        return _affine(self.low, self.width, open_unit(words).astype(self.dtype))

    @_compiled_method
    def log_prob_per_dim(self, x: Array) -> Array:
        inside = (x >= self.low) & (x < self.high)
        return jnp.where(inside, -jnp.log(self.width), -jnp.inf)

    @_compiled_method
    def cdf(self, x: Array) -> Array:
        return jnp.clip((x - self.low) / self.width, 0.0, 1.0)

    @_compiled_method
    def log_cdf(self, x: Array) -> Array:
        return jnp.log(self.cdf(x))

    @_compiled_method
    def log_sf(self, x: Array) -> Array:
        return jnp.log(jnp.clip((self.high - x) / self.width, 0.0, 1.0))

    @_compiled_method
    def icdf(self, u: Array) -> Array:
        return self.low + self.width * u

    @_compiled_method
    def isf(self, v: Array) -> Array:
        return self.high - self.width * v

    @_compiled_method
    def tail_quantile(self, t: Array, lower: Array) -> Array:
        """:meth:`Distribution.tail_quantile` as one multiply-add, ``low + width t`` or
        ``high + (-width) t``: the form of :meth:`icdf` and :meth:`isf`, so that the compiled
        programs agree bit for bit whether or not XLA contracts them into an FMA."""
        return jnp.where(lower, self.low, self.high) + jnp.where(lower, self.width, -self.width) * t


# ---------------------------------------------------------------------------------------------
# Pair quantities. Each (target type, prior type) pair registers closed forms per coordinate.


def check_pair(target: Any, prior: Any) -> None:
    """Raises :class:`InvalidArgumentError` unless ``target`` and ``prior`` are distributions of one
    event size whose batch shapes broadcast (static checks: they also run under ``jit``)."""
    for name, dist in (("target", target), ("prior", prior)):
        if not isinstance(dist, Distribution):
            raise InvalidArgumentError(
                f"{name} must be a jaxrec distribution (jaxrec.DiagGaussian or jaxrec.Uniform), got {describe(dist)}"
            )
    if target.event_size != prior.event_size:
        raise InvalidArgumentError(
            f"target and prior event sizes differ: {target.event_size} != {prior.event_size} (target "
            f"{type(target).__name__} of shape {target.batch_shape + (target.event_size,)}, prior "
            f"{type(prior).__name__} of shape {prior.batch_shape + (prior.event_size,)})"
        )
    try:
        jnp.broadcast_shapes(target.batch_shape, prior.batch_shape)
    except ValueError:
        raise InvalidArgumentError(
            f"target and prior batch shapes do not broadcast: {target.batch_shape} and {prior.batch_shape}"
        ) from None


def _check_points(target: Distribution, prior: Distribution, x: Any) -> Array:
    """``x`` as an array of points ``(..., D)`` for the pair; :class:`InvalidArgumentError` otherwise."""
    check_pair(target, prior)
    try:
        x = jnp.asarray(x)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"x must be an array of points (..., {target.event_size}), got {describe(x)}") from None
    if x.ndim == 0 or x.shape[-1] != target.event_size or not jnp.issubdtype(x.dtype, jnp.number):
        raise InvalidArgumentError(
            f"x must be real points of shape (..., {target.event_size}) (the event size), got {describe(x)}"
        )
    try:
        jnp.broadcast_shapes(x.shape[:-1], target.batch_shape, prior.batch_shape)
    except ValueError:
        raise InvalidArgumentError(
            f"x's batch shape {x.shape[:-1]} does not broadcast with the target's {target.batch_shape} and the "
            f"prior's {prior.batch_shape}"
        ) from None
    return x


@jax.jit
def log_ratio_per_dim(target: Distribution, prior: Distribution, x: Array) -> Array:
    """``log q_d(x_d) - log p_d(x_d)`` in nats, ``(..., D)``; elementwise with numpy broadcasting
    and no checks (the search kernels call it on reshaped parameters; :func:`log_ratio` checks)."""
    return target.log_prob_per_dim(x) - prior.log_prob_per_dim(x)


def log_ratio(target: Distribution, prior: Distribution, x: Array) -> Array:
    """``log dQ/dP (x)`` in nats; ``x`` is ``(..., D)``, the result ``(...,)``.

    Raises :class:`InvalidArgumentError` unless ``x`` is a real array whose last axis is the event
    size and whose batch shape broadcasts with the pair's (static checks, also under ``jit``).
    """
    return _summed_log_ratio(target, prior, _check_points(target, prior, x))


@jax.jit
def _summed_log_ratio(target: Distribution, prior: Distribution, x: Array) -> Array:
    return jnp.sum(log_ratio_per_dim(target, prior, x), axis=-1)


def columns(dist: Distribution) -> Distribution:
    """``dist`` with every parameter ``(..., D)`` reshaped to ``(..., D, 1)``: its elementwise
    methods then act on axis-major ``(D, K)`` arrays of ``K`` points (the layout of the candidate
    streams, :mod:`jaxrec.core.prng`)."""
    return jax.tree.map(lambda a: a[..., None], dist)


@jax.jit
def log_ratio_by_axis(target: Distribution, prior: Distribution, xs: Array) -> Array:
    """``log dQ/dP`` in nats at axis-major points ``xs`` ``(D, K)``: ``(K,)``."""
    return jnp.sum(log_ratio_per_dim(columns(target), columns(prior), xs), axis=-2)


def _gaussian_standardized(target: DiagGaussian, prior: DiagGaussian) -> tuple[Array, Array]:
    """Target in the prior's standard coordinates: ``Q = N(mu, s^2)`` against ``P = N(0, 1)``."""
    return (target.loc - prior.loc) / prior.scale, target.scale / prior.scale


def _kl_gauss_gauss(target: DiagGaussian, prior: DiagGaussian) -> Array:
    # KL[N(mu,s^2)||N(0,1)] = -ln s + (s^2 + mu^2 - 1)/2; (s^2 - 1)/2 - ln s via expm1/log1p-free
    # form 0.5*(s^2 - 1 - 2 ln s) which is accurate for s near 1 when written with log.
    mu, s = _gaussian_standardized(target, prior)
    log_s = jnp.log(s)
    return 0.5 * (jnp.expm1(2.0 * log_s) - 2.0 * log_s) + 0.5 * mu * mu


def _log_sup_gauss_gauss(target: DiagGaussian, prior: DiagGaussian) -> Array:
    # s < 1: ln r* = -ln s + mu^2 / (2 (1 - s^2))
    # s = 1, mu = 0: r = 1; otherwise r is unbounded.
    mu, s = _gaussian_standardized(target, prior)
    one_minus_s2 = -jnp.expm1(2.0 * jnp.log(s))
    bounded = -jnp.log(s) + 0.5 * mu * mu / jnp.where(s < 1, one_minus_s2, 1.0)
    identical = (s == 1) & (mu == 0)
    return jnp.where(s < 1, bounded, jnp.where(identical, 0.0, jnp.inf))


def _contained(target: Uniform, prior: Uniform) -> Array:
    return (target.low >= prior.low) & (target.high <= prior.high)


def _kl_unif_unif(target: Uniform, prior: Uniform) -> Array:
    return jnp.where(_contained(target, prior), jnp.log(prior.width / target.width), jnp.inf)


def _kl_unif_gauss(target: Uniform, prior: DiagGaussian) -> Array:
    # KL = -ln w_q - E_U[log N(x)] with E_U[z^2] = (a^2 + ab + b^2)/3 in standard coordinates.
    a, b = prior.standardize(target.low), prior.standardize(target.high)
    mean_sq = (a * a + a * b + b * b) / 3.0
    return -jnp.log(target.width) + jnp.log(prior.scale) + _HALF_LOG_2PI + 0.5 * mean_sq


def _log_sup_unif_gauss(target: Uniform, prior: DiagGaussian) -> Array:
    a, b = prior.standardize(target.low), prior.standardize(target.high)
    far_sq = jnp.maximum(a * a, b * b)
    return -jnp.log(target.width) + jnp.log(prior.scale) + _HALF_LOG_2PI + 0.5 * far_sq


def _infinite(target: Distribution, prior: Distribution) -> Array:
    return jnp.full(jnp.broadcast_shapes(target.batch_shape, prior.batch_shape) + (target.event_size,), jnp.inf)


# (target type, prior type) -> (KL per dim in nats, log sup ratio per dim in nats)
_PAIRS: dict[tuple[type, type], tuple[Callable, Callable]] = {
    (DiagGaussian, DiagGaussian): (_kl_gauss_gauss, _log_sup_gauss_gauss),
    (Uniform, Uniform): (_kl_unif_unif, _kl_unif_unif),
    (Uniform, DiagGaussian): (_kl_unif_gauss, _log_sup_unif_gauss),
    (DiagGaussian, Uniform): (_infinite, _infinite),
}


def _check_closed_forms(target: Distribution, prior: Distribution) -> None:
    check_pair(target, prior)
    if (type(target), type(prior)) not in _PAIRS:
        raise InvalidArgumentError(
            f"no closed forms for target {type(target).__name__} against prior {type(prior).__name__}"
        )


def kl(target: Distribution, prior: Distribution, per_dim: bool = False) -> Array:
    """``D_KL[Q||P]`` in bits: ``(...,)``, or ``(..., D)`` with ``per_dim=True``.

    ``+inf`` where ``Q`` has mass outside ``P``'s support (a Gaussian target against a uniform
    prior, a uniform target not inside a uniform prior).  Raises :class:`InvalidArgumentError` for
    arguments that are not distributions, event sizes that differ or batch shapes that do not
    broadcast (as do :func:`log_sup_ratio`, :func:`dinf` and :func:`log_ratio`).
    """
    return _checked_pair_quantity(target, prior, "kl", per_dim)


def log_sup_ratio(target: Distribution, prior: Distribution, per_dim: bool = False) -> Array:
    """``log ess sup dQ/dP`` in nats (``+inf`` where unbounded, e.g. a target wider than the prior).

    For factorized pairs the supremum factorizes, so the total is the sum over coordinates.
    """
    return _checked_pair_quantity(target, prior, "log_sup_ratio", per_dim)


def dinf(target: Distribution, prior: Distribution, per_dim: bool = False) -> Array:
    """``D_inf[Q||P]`` in bits (see :func:`log_sup_ratio`)."""
    return _checked_pair_quantity(target, prior, "dinf", per_dim)


def _checked_pair_quantity(target: Distribution, prior: Distribution, quantity: str, per_dim: Any) -> Array:
    """:func:`_pair_quantity` after the checks shared by :func:`kl`, :func:`log_sup_ratio` and :func:`dinf`."""
    as_bool("per_dim", per_dim)
    _check_closed_forms(target, prior)
    return _pair_quantity(target, prior, quantity=quantity, per_dim=bool(per_dim))


@functools.partial(jax.jit, static_argnames=("quantity", "per_dim"))
def _pair_quantity(target: Distribution, prior: Distribution, *, quantity: str, per_dim: bool) -> Array:
    """The checked pair's ``kl`` (bits: per coordinate, then summed), ``log_sup_ratio`` (nats) or
    ``dinf`` (the nats total / ln 2), as one compiled program (each eager operation would be one)."""
    kl_form, sup_form = _PAIRS[(type(target), type(prior))]
    if quantity == "kl":
        per = kl_form(target, prior) / LN2
        return per if per_dim else jnp.sum(per, axis=-1)
    per = sup_form(target, prior)
    total = per if per_dim else jnp.sum(per, axis=-1)
    return total / LN2 if quantity == "dinf" else total


# ---------------------------------------------------------------------------------------------
# Per-axis interval quantities for space partitioning (:mod:`jaxrec.partition`; interval masses
# are :func:`jaxrec.core.truncated.interval_log_mass`).
#
# An interval is ``[lo, hi)`` per coordinate; ``lo``/``hi`` broadcast against the distributions'
# ``(..., D)`` parameters and may be infinite.


def _interval_sup_gauss_gauss(target: DiagGaussian, prior: DiagGaussian, lo: Array, hi: Array) -> Array:
    # In the prior's standard coordinates log r(z) = -ln s - (z - mu)^2 / (2 s^2) + z^2 / 2, a quadratic.
    # s < 1: concave, peak at z* = mu / (1 - s^2), so the sup is at clip(z*, zl, zh).
    # s >= 1: convex (or linear), so the sup is at an endpoint; at an infinite endpoint it is the limit.
    mu, s = _gaussian_standardized(target, prior)
    zl, zh = prior.standardize(lo), prior.standardize(hi)
    log_s = jnp.log(s)
    concave = s < 1
    peak = mu / jnp.where(concave, -jnp.expm1(2.0 * log_s), 1.0)

    def value(z: Array) -> Array:
        return -log_s - 0.5 * jnp.square((z - mu) / s) + 0.5 * z * z

    def limit(direction: float) -> Array:  # log r(z) as z -> direction * inf, for s >= 1
        slope = mu * direction
        linear = jnp.where(slope > 0, jnp.inf, jnp.where(slope < 0, -jnp.inf, -log_s))
        return jnp.where(s > 1, jnp.inf, linear)

    def endpoint(z: Array, direction: float) -> Array:
        return jnp.where(jnp.isinf(z), limit(direction), value(jnp.where(jnp.isinf(z), 0.0, z)))

    sup_concave = value(jnp.clip(peak, zl, zh))
    sup_convex = jnp.maximum(endpoint(zl, -1.0), endpoint(zh, 1.0))
    return jnp.where(hi <= lo, -jnp.inf, jnp.where(concave, sup_concave, sup_convex))


def _clip_to_support(target: Uniform, lo: Array, hi: Array) -> tuple[Array, Array]:
    return jnp.maximum(lo, target.low), jnp.minimum(hi, target.high)


def _interval_sup_unif_gauss(target: Uniform, prior: DiagGaussian, lo: Array, hi: Array) -> Array:
    # On the support log r = -ln w_q - log p(x), convex: the sup is at the end farther from the prior mean.
    a, b = _clip_to_support(target, lo, hi)
    far_sq = jnp.maximum(jnp.square(prior.standardize(a)), jnp.square(prior.standardize(b)))
    value = -jnp.log(target.width) + jnp.log(prior.scale) + _HALF_LOG_2PI + 0.5 * far_sq
    return jnp.where(a < b, value, -jnp.inf)


def _interval_sup_unif_unif(target: Uniform, prior: Uniform, lo: Array, hi: Array) -> Array:
    a, b = _clip_to_support(target, lo, hi)
    return jnp.where(a < b, _kl_unif_unif(target, prior), -jnp.inf)


# compiled: one program per call outside jit, not one per operation
_INTERVAL_SUPS: dict[tuple[type, type], Callable] = {
    (DiagGaussian, DiagGaussian): jax.jit(_interval_sup_gauss_gauss),
    (Uniform, DiagGaussian): jax.jit(_interval_sup_unif_gauss),
    (Uniform, Uniform): jax.jit(_interval_sup_unif_unif),
}


def interval_log_sup_ratio(target: Distribution, prior: Distribution, lo: Array, hi: Array) -> Array:
    """``log sup_{x in [lo_d, hi_d)} q_d(x) / p_d(x)`` per coordinate, in nats.

    ``-inf`` where the interval misses the target's support (or is empty), ``+inf`` where the
    ratio is unbounded on it.  Closed forms for (Gauss, Gauss), (Uniform, Gauss), (Uniform, Uniform).
    """
    check_pair(target, prior)
    try:
        fn = _INTERVAL_SUPS[(type(target), type(prior))]
    except KeyError:
        raise InvalidArgumentError(
            f"no interval closed forms for target {type(target).__name__} against prior {type(prior).__name__}"
        ) from None
    return fn(target, prior, jnp.asarray(lo, prior.dtype), jnp.asarray(hi, prior.dtype))


def mmd2_to_gaussian(samples: Array, target: DiagGaussian, lengthscale: float = 1.0) -> Array:
    """Unbiased squared MMD between ``samples`` ``(R, D)`` and a ``DiagGaussian`` target.

    RBF kernel ``k(z, z') = exp(-|z - z'|^2 / (2 l^2))`` in the target's standard coordinates
    ``z = (x - loc) / scale``, where the target is ``N(0, I)``, so the target-side expectations are
    closed forms: ``E_{z'} k(z, z') = c1^{D/2} exp(-|z|^2 / (2 (l^2 + 1)))`` with
    ``c1 = l^2 / (l^2 + 1)`` and ``E k(z', z'') = (l^2 / (l^2 + 2))^{D/2}``.  The sample-sample term
    is the U-statistic (diagonal excluded), so the estimate is unbiased (it can be < 0).
    O(R^2 D) time and O(R^2) memory.

    Raises :class:`InvalidArgumentError` unless ``target`` is one ``DiagGaussian`` (batch shape
    ``()``), ``samples`` has shape ``(R, D)`` with ``R >= 2`` and a concrete ``lengthscale`` is > 0.
    """
    if not isinstance(target, DiagGaussian) or target.batch_shape:
        raise InvalidArgumentError(f"target must be one DiagGaussian (batch shape ()), got {describe(target)}")
    try:
        samples = jnp.asarray(samples)
    except (TypeError, ValueError):
        samples = None
    if samples is None or samples.ndim != 2 or samples.shape[0] < 2 or samples.shape[1] != target.event_size:
        raise InvalidArgumentError(
            f"samples must be a real array (R, {target.event_size}) with R >= 2, got {describe(samples)}"
        )
    if not isinstance(lengthscale, jax.core.Tracer):
        as_float("lengthscale", lengthscale, low=0, low_open=True)
    z = target.standardize(samples)
    num, dim = z.shape
    l2 = jnp.asarray(lengthscale, z.dtype) ** 2
    sq = jnp.sum(z * z, axis=-1)
    dist2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    gram = jnp.exp(-dist2 / (2.0 * l2))
    xx = (jnp.sum(gram) - jnp.sum(jnp.diagonal(gram))) / (num * (num - 1))
    xy = jnp.mean((l2 / (l2 + 1.0)) ** (dim / 2) * jnp.exp(-sq / (2.0 * (l2 + 1.0))))
    yy = (l2 / (l2 + 2.0)) ** (dim / 2)
    return xx - 2.0 * xy + yy
