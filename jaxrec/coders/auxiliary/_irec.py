"""iREC: REC for VAEs with auxiliary variables and beam search (Flamich, Havasi & Hernandez-Lobato,
NeurIPS 2020).  Approximate, fixed budget.

The prior ``P = N(m, diag(s_p^2))`` of a block is split into ``K`` independent auxiliary variables
``z = m + a_1 + ... + a_K`` with ``a_k ~ N(0, f_k s_p^2)`` and ``sum_k f_k = 1`` (shared
``variance_fractions``).  The target joint is ``Q(z) P(a_{1:K} | z)``: a sample of it has ``z ~ Q``,
and the partial sum ``b_k = a_1 + ... + a_k`` (cumulative fraction ``L_k``) has the closed-form
marginals (per coordinate; ``dmu = loc_q - loc_p``)::

    prior:  b_k ~ N(0, L_k s_p^2)
    target: b_k ~ N(L_k dmu, L_k (1 - L_k) s_p^2 + L_k^2 s_q^2)

Because the joint importance weight factorises, ``q(a_{1:k}) / p(a_{1:k}) = q_k(b_k) / p_k(b_k)``:
the weight of a partial path depends only on its partial sum, and at ``k = K`` it is ``r(z)``.

Encoding, step ``k = 1..K``: candidates ``a_k^(n) = sqrt(f_k) s_p eps_n``, ``n < N``, from the shared
key (stream ``k - 1``, shared by all beams).  The ``B`` beams are weighted particles: beam ``b``
extended by candidate ``n`` gets the weight ``w_b * q(a_k | a_<k) / p(a_k)`` (the incremental
factor is ``(q_k / p_k)(b_k) / (q_{k-1} / p_{k-1})(b_{k-1})``), the ``B`` extensions with the largest
``ln weight + Gumbel`` (encoder-private Gumbels) are kept -- Gumbel-top-``B`` sampling without
replacement (Kool, van Hoof & Welling 2019) -- and each kept weight is divided by its inclusion
probability ``1 - exp(-weight / e^kappa)``, ``kappa`` the ``(B+1)``-th perturbed score, so the kept
set stays an importance-weighted sample (priority sampling).  After step ``K`` the top extension's
index list ``(n_1, ..., n_K)`` is sent: ``K log2 N`` bits.  Limits: ``B = 1`` is Gumbel-max
importance sampling (MRC) of each ``a_k`` given the chosen past; ``B >= N^{K-1}`` keeps every path,
so the choice is MRC over all ``N^K`` joint paths with weight ``r(z)``.  The output law tends to
``Q`` as ``N`` and ``B`` grow; the bias is governed by ``D_KL[Q||P]`` against ``K ln N``.

Difference from the 2020 code: there the beams keep the top ``B`` *unperturbed* cumulative weights
and send the best (a greedy argmax, whose limit for large ``N`` is the mode of ``r``, not ``Q``);
the Gumbel perturbation and the weight correction here make the bias vanish as the budget grows
(keeping beams by perturbed cumulative weight instead double-counts earlier weights and biases
towards the mode).  The official code also fits the variance fractions so that each auxiliary
variable carries about the same KL (about 3 nats); here they are a shared argument, by default
equal (``f_k = 1/K``, that code's initialisation).  Pick them to spread the block's expected KL
evenly: with a narrow target most information sits in the last steps unless the fractions decrease.

Decoding is O(K D): ``z = m + sum_k sqrt(f_k) s_p eps(n_k)``, the same operations in the encoder's
order, so it rebuilds the encoder's sample.  Any event size ``D`` (a block); vmap for batches.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxrec.coders import registry
from jaxrec.coders.base import (
    OK,
    CodeBase,
    Coder,
    CoderSpec,
    check_code,
    check_pair,
    check_positive_int,
    code_type,
    coder_factory,
    compiled_encoder,
    input_status,
    origin,
    static_field,
)
from jaxrec.core import prng
from jaxrec.core.checks import as_real_array
from jaxrec.core.distributions import DiagGaussian, Distribution
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.entropy import UniformModel

Array = jax.Array

MAX_SAMPLES = 2**31 - 1
MAX_AUX = 4096
MAX_BEAMS = 2**16

__all__ = ["IrecCode", "irec"]


@code_type
class IrecCode(CodeBase):
    """What :func:`irec` sends (``indices``) plus diagnostics.

    Attributes:
      indices: ``int32[K]``, the chosen candidate of each auxiliary variable, each ``< N``.
      steps: ``int32``, candidate extensions scored, ``N sum_k min(B, N^(k-1))`` (0 for invalid input).
      status: ``int32`` (:mod:`jaxrec.coders.base`): ``OK``, or ``INVALID_INPUT`` for a non-finite
        parameter or a non-positive scale (running out of candidates is the design, never ``EXHAUSTED``).
    """

    MESSAGE: ClassVar[tuple[str, ...]] = ("indices",)
    indices: Array
    steps: Array
    status: Array
    coder: str = static_field()
    event_size: int = static_field()


def _fractions(variance_fractions: Sequence[float] | None, num_aux: int) -> np.ndarray:
    if variance_fractions is None:
        return np.full(num_aux, 1.0 / num_aux)
    f = as_real_array("variance_fractions", variance_fractions)
    if f.shape != (num_aux,) or not np.all(np.isfinite(f)) or not np.all(f > 0):
        raise InvalidArgumentError(
            f"variance_fractions must be {num_aux} positive finite numbers, got {variance_fractions!r}"
        )
    return f / f.sum()


def _aux_prior(prior: DiagGaussian, fraction: Array) -> DiagGaussian:
    """``N(0, fraction s_p^2)``: the law of one auxiliary variable."""
    return DiagGaussian(jnp.zeros_like(prior.loc), prior.scale * jnp.sqrt(fraction))


def _log_partial_ratio(target: DiagGaussian, prior: DiagGaussian, done: Array, left: Array, b: Array) -> Array:
    """``ln q_k(b) - ln p_k(b)`` summed over the event axis; ``done = L_k``, ``left = 1 - L_k``."""
    var_p = prior.scale**2
    var_q = done * left * var_p + done * done * target.scale**2
    mean_q = done * (target.loc - prior.loc)
    log_q = -0.5 * (b - mean_q) ** 2 / var_q - 0.5 * jnp.log(var_q)
    log_p = -0.5 * b * b / (done * var_p) - 0.5 * jnp.log(done * var_p)
    return jnp.sum(log_q - log_p, axis=-1)


def _log1mexp(x: Array) -> Array:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate near 0 and far below it."""
    return jnp.where(x > -0.6931471805599453, jnp.log(-jnp.expm1(x)), jnp.log1p(-jnp.exp(x)))


class _Beams(NamedTuple):
    partial: Array  # [B, D] partial sums b_k
    log_ratio: Array  # [B] ln q_k(b_k) - ln p_k(b_k)
    log_weight: Array  # [B] the particle's importance weight
    history: Array  # [B, K] chosen indices
    live: Array  # [B] bool


@coder_factory
def irec(
    num_samples: int, num_aux: int, beam_width: int = 1, variance_fractions: Sequence[float] | None = None
) -> Coder:
    """iREC coder: ``num_aux`` auxiliary variables, ``num_samples`` candidates each, ``beam_width`` beams.

    Args:
      num_samples: ``N``, candidates per auxiliary variable (iREC: ``exp(3 nats x 1.2) ~ 36``).
      num_aux: ``K``; iREC takes ``ceil(KL / Omega)`` with ``Omega ~ 3`` nats per variable.
      beam_width: ``B``, partial paths kept between steps (iREC: 20 lossless, 10 lossy).
      variance_fractions: ``K`` positive weights (normalised to sum 1): the share of the prior
        variance given to each auxiliary variable, first to last; default equal.  Shared: the
        decoder must use the same.

    Returns:
      A :class:`~jaxrec.Coder`: ``encode(key, target, prior) -> IrecCode`` for DiagGaussian
      target and prior of one event size ``D`` (no batch axes; vmap for batches), and
      ``decode(key, code, prior) -> (D,)``.
    """
    check_positive_int("num_samples", num_samples, MAX_SAMPLES)
    check_positive_int("num_aux", num_aux, MAX_AUX)
    check_positive_int("beam_width", beam_width, MAX_BEAMS)
    f = _fractions(variance_fractions, num_aux)
    left_np = np.concatenate([np.cumsum(f[::-1])[::-1][1:], [0.0]])  # 1 - L_k without cancellation
    done_np = np.cumsum(f)
    done_np[-1] = 1.0

    def _steps(dtype: jnp.dtype) -> tuple[Array, Array, Array, Array]:
        return (
            jnp.arange(num_aux, dtype=jnp.int32),
            jnp.asarray(f, dtype),
            jnp.asarray(done_np, dtype),
            jnp.asarray(left_np, dtype),
        )

    def search_beams(key: Array, target: Distribution, prior: Distribution) -> IrecCode:
        dtype = prior.dtype
        ns = jnp.arange(num_samples, dtype=jnp.int32)
        width = beam_width
        kept = min(width + 1, width * num_samples)  # the (B+1)-th score is the selection threshold

        def step(beams: _Beams, per_step: tuple[Array, Array, Array, Array]) -> tuple[_Beams, Array]:
            k, fraction, done, left = per_step
            a = prng.candidates(key, ns, _aux_prior(prior, fraction), stream=k)  # [N, D]
            partial = beams.partial[:, None, :] + a[None, :, :]  # [B, N, D]
            log_ratio = _log_partial_ratio(target, prior, done, left, partial)  # [B, N]
            # Particle weight times the incremental weight q(a_k | a_<k) / p(a_k).
            log_w = beams.log_weight[:, None] + log_ratio - beams.log_ratio[:, None]
            log_w = jnp.where(beams.live[:, None], log_w, -jnp.inf).reshape(-1)
            gumbel = jax.random.gumbel(prng.arrival_key(key, k), (width * num_samples,), dtype)
            top, flat = lax.top_k(log_w + gumbel, kept)
            threshold = top[width] if kept > width else jnp.asarray(-jnp.inf, dtype)
            top, flat = top[:width], flat[:width]
            parent, n = flat // num_samples, flat % num_samples
            history = beams.history[parent].at[:, k].set(n)
            # Inclusion-probability correction: the kept particles stay an importance-weighted set.
            live = top > -jnp.inf  # fewer than B extensions exist at the first steps
            log_w = jnp.where(live, log_w[flat] - _log1mexp(-jnp.exp(log_w[flat] - threshold)), -jnp.inf)
            new = _Beams(partial[parent, n], log_ratio[parent, n], log_w, history, live)
            return new, jnp.sum(beams.live).astype(jnp.int32) * num_samples

        init = _Beams(
            jnp.zeros((width, target.event_size), dtype),
            jnp.zeros((width,), dtype),
            jnp.zeros((width,), dtype),
            jnp.zeros((width, num_aux), jnp.int32),
            jnp.arange(width) == 0,
        )
        def run() -> tuple[Array, Array]:
            final, scored = lax.scan(step, init, _steps(dtype))
            return final.history[0], jnp.sum(scored, dtype=jnp.int32)

        status = input_status(target, prior, bounded=False)  # invalid input: no step runs
        indices, steps = lax.cond(status == OK, run, lambda: (init.history[0], jnp.int32(0)))
        return IrecCode(indices, steps, status, **origin("irec", prior))

    encode = compiled_encoder(search_beams, _check_problem)

    def decode(key: Any, code: IrecCode, prior: Distribution) -> Array:
        check_code(code, IrecCode, "irec", prior)
        if not isinstance(prior, DiagGaussian) or prior.batch_shape:
            raise InvalidArgumentError(f"prior must be a DiagGaussian without batch axes, got {prior!r}")
        indices = jnp.asarray(code.indices)
        if indices.shape != (num_aux,):
            raise InvalidArgumentError(f"code.indices must have shape ({num_aux},), got {indices.shape}")
        return sum_indexed_candidates(prng.as_key(key), indices, prior)

    @jax.jit
    def sum_indexed_candidates(key: Array, indices: Array, prior: DiagGaussian) -> Array:
        """``mu_P + sum_k a_k``: the auxiliary candidates the indices name, ``(D,)``."""

        def add(partial: Array, per_step: tuple[Array, Array, Array, Array, Array]) -> tuple[Array, None]:
            k, fraction, _, _, n = per_step
            a = prng.candidates(key, n[None], _aux_prior(prior, fraction), stream=k)[0]
            return partial + a, None

        partial, _ = lax.scan(add, jnp.zeros_like(prior.loc), _steps(prior.dtype) + (indices.astype(jnp.int32),))
        return prior.loc + partial

    params = (
        ("num_samples", num_samples),
        ("num_aux", num_aux),
        ("beam_width", beam_width),
        ("variance_fractions", tuple(float(x) for x in f)),
    )
    return Coder(encode, decode, CoderSpec("irec", params))


def _check_problem(target: Any, prior: Any) -> None:
    check_pair(target, prior)
    if not (isinstance(target, DiagGaussian) and isinstance(prior, DiagGaussian)):
        raise InvalidArgumentError(
            f"irec supports DiagGaussian target and prior, got {type(target).__name__} and {type(prior).__name__}"
        )
    if target.batch_shape or prior.batch_shape:
        raise InvalidArgumentError(
            f"irec encodes one block (no batch axes); got target loc shape {tuple(target.loc.shape)}, prior loc "
            f"shape {tuple(prior.loc.shape)}. Use jax.vmap for batches."
        )


def irec_message(spec: CoderSpec, budget_bits: float, plan: Any) -> registry.Message:
    """``K`` indices, each uniform on ``[0, N)``: ``K log2 N`` bits."""
    return (("indices", UniformModel(spec.kwargs["num_samples"])),)


registry.register_coder(
    "irec", irec, params=("num_samples", "num_aux", "beam_width", "variance_fractions"), message=irec_message
)
