"""Adaptive greedy rejection sampling for 1-D Gaussians (after Flamich & Theis, ISIT 2023), exact.

AGRS shrinks GRS's proposal after every rejection to a *bound* ``B_k`` that contains all the
target mass not yet accepted (Flamich & Theis, ISIT 2023).  The paper's exact bound schedule was not
available to us; this module implements the following variant and proves it exact.

**Ladder with bounds.**  Let ``S(L) = {r > L}`` (for a Gaussian pair an interval
``|z - nu| < rho(L)`` around the mode).  Step ``k`` proposes ``X_k ~ P|_{B_k}`` for any interval
``B_k ⊇ S(L_{k-1})`` and accepts iff ``L_{k-1} + U_k (L_k - L_{k-1}) < r(X_k)`` with

    L_0 = 0,    L_k = L_{k-1} + (1 - W(L_{k-1})) / P(B_k).

By induction the accepted mass after step ``k`` is exactly ``min(q, L_k p)``: the residual target
``(q - L_{k-1} p)_+`` lives on ``S(L_{k-1}) ⊆ B_k``, the step is reached with probability
``1 - W(L_{k-1})`` and proposes with density ``p / P(B_k)`` there, so it accepts
``p (min(r, L_k) - min(r, L_{k-1}))``.  Hence ``X_K ~ Q`` exactly, for *any* admissible choice of
bounds -- in particular for random ones; and ``L_k <= r*`` automatically.  With ``B_k = R`` this is
GRS (:func:`jaxrec.grs`); a small ``P(B_k)`` makes the steps larger.

**Bounds by dithered quantization, in prior-CDF coordinates.**  The decoder must rebuild
``B_K``, which depends on ``Q``.  Bounds live in ``y = Phi(z')``, where ``z'`` is the prior's
standard coordinate reflected (``z' = -z``) when the mode ``nu`` of ``r`` is positive, so that the
residual's support ``S = [nu' - rho, nu' + rho]`` has its centre ``c`` (in ``y``) in the accurate
lower half (``c <= 1/2``).  Step ``k >= 2`` picks ``M = 2^m`` with
``m = floor(-log2 P(S) - 0.1)`` (so ``1/M >= P(S)``, the width of ``S`` in ``y``; ``m`` is capped so
that ``n`` stays exact in the float type and in ``int32``, which only widens the bound), draws a
shared dither ``D_k ~ U(0, 1)`` and sends ``n = floor(M c + D_k)``.  The bound is

    B_k = Phi^{-1}([chat - 1/M, chat + 1/M] ∩ [0, 1]),    chat = (n - D_k + 1/2) / M,

and ``|chat - c| <= 1/(2M)`` (the subtractive-dither identity, Schuchman, IEEE Trans. Commun. Technol. 1964:
``floor(x + D) - D`` is ``x`` plus a uniform offset), so ``B_k ⊇ S``; its prior mass is at most
``2/M < 4.3 P(S)``.  Step 1 uses ``B_1 = R``.  (Bounds in ``z`` itself would be useless when ``nu``
lies far out in a tail: their prior mass would be dominated by the side facing the bulk.)  A
residual support beyond about 13 prior standard deviations (float32; 37 in float64) has CDF values
below the smallest normal float: the bound then stops shrinking, which keeps the sampler exact but
slower -- use float64 there.

**Message**: ``K`` (the number of rejections, :attr:`AGRSCode.index`) and, for ``K >= 1``,
``(m, n)`` of ``B_{K+1}`` (:attr:`AGRSCode.bound_level`, :attr:`AGRSCode.bound_index`; a reflected
bound is sent as ``-1 - n < 0``).  The decoder needs neither ``Q`` nor the ladder: ``X`` is the
quantile of ``P|_B`` at the shared uniform of step ``K``.  The runtime (steps) against ``D_KL`` is
measured in ``experiments/samplers_1d.py``.

Randomness: candidate uniform ``candidate_key(key, k)``, dither ``candidate_key(key, k, stream=1)``
(both shared), acceptance uniform ``arrival_key(key, k)`` (encoder-only).  ``1 - W`` comes from the
pair's stretch table (:func:`jaxrec.coders.greedy.widths.log_residual_at_gap`), as in :func:`jaxrec.grs`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import log_ndtr, ndtri

from jaxrec import search
from jaxrec.coders import registry
from jaxrec.coders.base import (
    CodeBase,
    Coder,
    CoderSpec,
    check_bounded_ratio,
    check_positive_int,
    code_type,
    coder_factory,
    static_field,
)
from jaxrec.coders.greedy import widths
from jaxrec.coders.greedy._gprs import WidthTables, width_tables
from jaxrec.coders.greedy._grs import Ladder, ladder_start, ladder_step, threshold_gap
from jaxrec.coders.scan import scan_coder
from jaxrec.core import prng, truncated
from jaxrec.core.distributions import DiagGaussian, Distribution
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array

DITHER_STREAM = 1
LN2 = math.log(2.0)
_MARGIN = 0.1  # bits of slack in the resolution choice (1/M >= 2^0.1 P(S))

__all__ = ["AGRSCode", "agrs"]


@code_type
class AGRSCode(CodeBase):
    """What AGRS sends, plus diagnostics.

    Attributes:
      index: ``int32``, ``K``, rejections before the accepted step (0-based step index).
      bound_level: ``int32``, ``m`` of the accepted step's bound (width ``2/M = 2^{1-m}`` in prior
        CDF units, ``m >= -1``); 0 and unused when ``index == 0`` (the bound is then ``R``).
      bound_index: ``int32``, ``n``, the dithered-quantization index of the bound's centre,
        ``-1 - n`` when the bound is in reflected coordinates (0 when ``index == 0``).
      steps: ``int32``, ``K + 1``.
      status: ``int32``; ``EXHAUSTED`` if no step was accepted within ``max_steps``.
    """

    MESSAGE: ClassVar[tuple[str, ...]] = ("index", "bound_level", "bound_index")
    SIGNED: ClassVar[tuple[str, ...]] = ("bound_level", "bound_index")
    index: Array
    bound_level: Array
    bound_index: Array
    steps: Array
    status: Array
    coder: str = static_field()
    event_size: int = static_field()


def _level_cap(log_centre: Array, dtype: jnp.dtype) -> Array:
    """Largest ``m`` with ``n ~ 2^m c`` exact in ``dtype`` and in ``int32``, and ``2^{-m}`` a normal
    float (bounds deeper in the tail than ``dtype`` resolves are not representable)."""
    info = jnp.finfo(dtype)
    bits = min(info.nmant - 2, 29)
    return jnp.minimum(jnp.floor(bits - log_centre / LN2), float(-info.minexp - 2))


def _bound(level: Array, index: Array, dither: Array, dtype: jnp.dtype) -> tuple[Array, Array, Array]:
    """``(lo, hi, side)`` of the bound ``(m, n)`` under dither ``D``, in reflected standard
    coordinates ``z' = side * z`` (the same arithmetic in encoder and decoder)."""
    side = jnp.where(index < 0, -1.0, 1.0).astype(dtype)
    n = jnp.where(index < 0, -1 - index, index).astype(dtype)
    inv_m = jnp.exp2(-level.astype(dtype))
    centre = (n - dither + 0.5) * inv_m
    lo = jnp.where(centre - inv_m <= 0, -jnp.inf, ndtri(jnp.clip(centre - inv_m, 0.0, 1.0)))
    hi = jnp.where(centre + inv_m >= 1, jnp.inf, ndtri(jnp.clip(centre + inv_m, 0.0, 1.0)))
    return lo, hi, side


def _dither(key: Array, n: Array, dtype: jnp.dtype) -> Array:
    return jax.random.uniform(prng.candidate_key(key, n, stream=DITHER_STREAM), (), dtype)


def _location_uniform(key: Array, n: Array, dtype: jnp.dtype) -> Array:
    return jax.random.uniform(prng.candidate_key(key, n), (), dtype)


def agrs_chunk_fn(key: Array, model: widths.GaussianWidths, table: widths.StretchTable) -> search.ChunkFn:
    """The AGRS chunk function: state :class:`~jaxrec.coders.grs.Ladder`; payload ``(m, n)``."""
    dtype = table.log_sigma.dtype
    valid = jnp.isfinite(model.log_r_star)
    reflect = model.nu > 0
    nu = jnp.where(reflect, -model.nu, model.nu)  # <= 0: S's centre sits in the lower half

    def step(prev: Ladder, n: Array) -> tuple[Ladder, tuple[Any, ...]]:
        first = prev.log_level == -jnp.inf
        rho = model.radius(jnp.where(first, 1.0, prev.gap))
        log_width = truncated.log_mass_around(nu, rho)  # ln P(S)
        log_centre = jnp.logaddexp(log_ndtr(nu - rho), log_width - LN2)  # ln c, c = Phi(nu - rho) + P(S)/2
        level = jnp.clip(jnp.floor(-log_width / LN2 - _MARGIN), -1.0, _level_cap(log_centre, dtype))
        dither = _dither(key, n, dtype)
        index = jnp.floor(jnp.exp(level * LN2 + log_centre) + dither).astype(jnp.int32)
        index = jnp.where(reflect, -1 - index, index)
        # step 1 has no bound (the whole line, unreflected): send zeros
        level = jnp.where(first, 0, level.astype(jnp.int32))
        index = jnp.where(first, 0, index)
        lo, hi, side = _bound(level, index, dither, dtype)
        lo, hi = jnp.where(first, -jnp.inf, lo), jnp.where(first, jnp.inf, hi)
        log_step = widths.log_residual_at_gap(table, prev.gap) - truncated.log_mass(lo, hi)
        return ladder_step(model, prev, log_step), (prev, log_step, lo, hi, side, (level, index))

    def chunk_fn(state: Ladder, ns: Array) -> tuple[Array, Array, tuple[Array, Array], Ladder]:
        state, (prev, log_step, lo, hi, side, payload) = lax.scan(step, state, ns)
        u = jax.vmap(lambda n: _location_uniform(key, n, dtype))(ns)
        z = side * truncated.quantile(lo, hi, u)
        v = jax.vmap(lambda n: jax.random.uniform(prng.arrival_key(key, n), (), dtype))(ns)
        accepted = model.gap_of_z(z) < threshold_gap(model, prev, log_step, v)
        scores = jnp.where(accepted & valid, 0.0, -jnp.inf).astype(dtype)
        bounds = jnp.where(valid, jnp.zeros_like(scores), -jnp.inf)
        return scores, bounds, payload, state

    return chunk_fn


def _check_gaussian(prior: Any) -> None:
    if not isinstance(prior, DiagGaussian):
        raise InvalidArgumentError(f"agrs supports DiagGaussian pairs only, got prior {type(prior).__name__}")


@coder_factory
def agrs(chunk_size: int = 4, max_steps: int = 2**20) -> Coder:
    """Exact adaptive greedy rejection sampling for a 1-D Gaussian pair (``scale_q < scale_p``).

    Args:
      chunk_size: steps per ``while_loop`` iteration (the ladder is a ``lax.scan`` within each);
        does not change the code.
      max_steps: steps at most; the status is ``EXHAUSTED`` if none was accepted.

    Returns:
      A :class:`~jaxrec.Coder`: ``encode(key, target, prior) -> AGRSCode``;
      ``decode(key, code, prior) -> (1,)``; ``encode_batch`` for many problems.  For ``D > 1`` use
      :func:`jaxrec.factorized`.
    """
    check_positive_int("max_steps", max_steps, search.MAX_CANDIDATES)

    def prepare(key: Array, tables: WidthTables, prior: Distribution) -> tuple[search.ChunkFn, Ladder]:
        return agrs_chunk_fn(key, tables.model, tables.table), ladder_start(prior.dtype)

    def finish(res: search.SearchResult, key: Array, tables: WidthTables) -> dict[str, Array]:
        level, index = res.payload
        return {"index": res.index, "bound_level": level, "bound_index": index}

    def decode(key: Any, code: AGRSCode, prior: Distribution) -> Array:
        _check_gaussian(prior)
        key = prng.as_key(key)
        dtype = prior.dtype
        k = jnp.asarray(code.index, jnp.int32)
        dither = _dither(key, k, dtype)
        lo, hi, side = _bound(jnp.asarray(code.bound_level), jnp.asarray(code.bound_index), dither, dtype)
        first = k == 0
        z = side * truncated.quantile(
            jnp.where(first, -jnp.inf, lo), jnp.where(first, jnp.inf, hi), _location_uniform(key, k, dtype)
        )
        return prior.loc + prior.scale * z

    coder = scan_coder(
        CoderSpec("agrs", (("chunk_size", chunk_size), ("max_steps", max_steps))),
        prepare=prepare, finish=finish, decode=decode, chunk_size=chunk_size, max_candidates=max_steps,
        exact=True, code_class=AGRSCode, validate=widths.check_pair, precompute=width_tables,
        expected_log2_steps=lambda target, prior: jnp.zeros(()),  # runtime ~ D_KL, never 2^D_inf
    )

    def encode(key: Any, target: Distribution, prior: Distribution) -> AGRSCode:
        _check_gaussian(prior)
        return coder.encode(key, target, prior)

    def encode_batch(keys: Any, targets: Distribution, prior: Distribution, **options: Any) -> AGRSCode:
        _check_gaussian(prior)
        return coder.encode_batch(keys, targets, prior, **options)

    return coder._replace(encode=encode, encode_batch=encode_batch)


def _zigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v < 0, -2 * v - 1, 2 * v)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    return np.where(u % 2 == 1, -(u + 1) // 2, u // 2)


def agrs_pack(spec: CoderSpec, fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``(K, m + 1, zigzag(n))``: non-negative symbols (``m >= -1``; ``n`` signed by reflection)."""
    index = np.asarray(fields["index"], np.int64)
    level = np.asarray(fields["bound_level"], np.int64)
    bound = np.asarray(fields["bound_index"], np.int64)
    first = index == 0
    return {"index": index, "bound_level": np.where(first, 0, level + 1), "bound_index": np.where(first, 0, _zigzag(bound))}


def agrs_unpack(spec: CoderSpec, symbols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of :func:`agrs_pack`."""
    index = symbols["index"]
    first = index == 0
    return {
        "index": index,
        "bound_level": np.where(first, 0, symbols["bound_level"] - 1),
        "bound_index": np.where(first, 0, _unzigzag(symbols["bound_index"])),
    }


def agrs_message(spec: CoderSpec, budget_bits: float, plan: Any) -> registry.Message:
    """``K`` under the PFR Zipf model of the budget; the bound's level ``m + 1`` (about ``log2`` of
    the inverse prior mass of the accepted step's bound, a few bits) and its zigzagged index (about
    ``m`` bits) under Zipf models too: a universal code, as in Flamich & Theis (ICML 2023, Sec. 3)."""
    return (
        ("index", registry.zipf_model(budget_bits)),
        ("bound_level", registry.zipf_model(math.log2(budget_bits + 2.0))),
        ("bound_index", registry.zipf_model(budget_bits)),
    )


registry.register_coder(
    "agrs", agrs, params=("chunk_size", "max_steps"), message=agrs_message, check=check_bounded_ratio,
    pack=agrs_pack, unpack=agrs_unpack,
)
