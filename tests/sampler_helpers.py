"""Helpers shared by the 1-D sampler tests (GPRS, GRS/AGRS): compiled batch calls, reused across tests.

A row is ``(target loc, target scale, prior loc, prior scale)`` of a pair of 1-D Gaussians.
"""

import jax
import numpy as np

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
