"""Helpers shared by the 1-D sampler tests (GPRS, GRS/AGRS): compiled batch calls, reused across tests.

A row is ``(target loc, target scale, prior loc, prior scale)`` of a pair of 1-D Gaussians.
"""

import jax
import numpy as np
from scipy.special import ndtr

import jaxrec

_COMPILED = {}


def compiled(coder):
    """Jitted ``vmap`` over keys of ``encode`` and ``decode`` (target and prior shared), built once per spec."""
    if coder.spec not in _COMPILED:
        _COMPILED[coder.spec] = (
            jax.jit(jax.vmap(coder.encode, in_axes=(0, None, None))),
            jax.jit(jax.vmap(coder.decode, in_axes=(0, 0, None))),
        )
    return _COMPILED[coder.spec]


def gaussian_pair(row):
    """``(target, prior)`` from a row ``(loc_q, scale_q, loc_p, scale_p)``."""
    return jaxrec.DiagGaussian(row[0], row[1]), jaxrec.DiagGaussian(row[2], row[3])


def encode_decode(coder, row, n, seed):
    """``(keys, codes, samples)`` for ``n`` keys split from ``seed``; samples as float64 ``(n,)``."""
    target, prior = gaussian_pair(row)
    enc, dec = compiled(coder)
    keys = jax.random.split(jax.random.key(seed), n)
    codes = enc(keys, target, prior)
    return keys, codes, np.asarray(dec(keys, codes, prior)[:, 0], np.float64)


def gaussian_log_ratio(row):
    """``(quad, lin, const)`` with ``log r(x) = quad x^2 + lin x + const``, ``r = q / p`` of a row."""
    mq, sq, mp, sp = row
    return (1 / (2 * sp**2) - 1 / (2 * sq**2), mq / sq**2 - mp / sp**2,
            -(mq**2) / (2 * sq**2) + mp**2 / (2 * sp**2) + np.log(sp / sq))


def gaussian_width(row):
    """``W(h) = int min(q, h p) = 1 - Q(r > h) + h P(r > h)`` of a row with ``scale_q < scale_p``, in
    float64 and closed form, independent of :mod:`jaxrec.coders.greedy.widths`: ``{r > h}`` is the
    interval between the roots of the quadratic ``log r(x) = log h`` (empty for ``h >= r*``)."""
    mq, sq, mp, sp = row
    quad, lin, const = gaussian_log_ratio(row)

    def w(h):
        if h == 0.0:
            return 0.0
        disc = lin**2 - 4 * quad * (const - np.log(h))
        if disc <= 0:  # h >= r*: min(q, h p) = q everywhere
            return 1.0
        lo, hi = sorted((-lin + s * np.sqrt(disc)) / (2 * quad) for s in (-1.0, 1.0))
        q_in = ndtr((hi - mq) / sq) - ndtr((lo - mq) / sq)
        p_in = ndtr((hi - mp) / sp) - ndtr((lo - mp) / sp)
        return 1.0 - q_in + h * p_in

    return w
