"""MRC: minimal random coding (Havasi, Peharz & Hernandez-Lobato, ICLR 2019, "MIRACLE").

Draw ``N`` candidates ``X_n ~ P`` from the shared key and send ``n ~ Cat(w / sum w)`` with
importance weights ``w_n = r(X_n)``, i.e. ``argmax_n [log r(X_n) + G_n]`` with iid standard
Gumbels ``G_n`` (Gumbel-max, streamed over chunks).  The index costs ``log2 N`` bits; the output
law is the self-normalised importance-sampling law, close to Q once ``N >~ 2^{D_KL + t}``
(Chatterjee & Diaconis 2018).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec import search
from jaxrec.coders import registry
from jaxrec.coders.base import Coder, coder_factory
from jaxrec.coders.scan import fixed_budget_coder
from jaxrec.core import prng
from jaxrec.core.distributions import Distribution, open_unit

Array = jax.Array


def prepare_mrc(key: Array, target: Distribution, prior: Distribution) -> tuple[search.ChunkFn, None]:
    """``(chunk_fn, None)``: ``score_n = log r(X_n) + G_n``, no bound (``+inf``); the Gumbel
    ``G_n = -log(-log U_n)`` takes ``U_n`` from index ``n``'s encoder-only word."""
    dtype = prior.dtype
    candidates, private = prng.candidate_stream(key), prng.private_stream(key)

    def chunk_fn(state: None, ns: Array) -> tuple[Array, Array, None, None]:
        log_r = prng.stream_log_ratio(candidates, ns, target, prior)
        gumbels = -jnp.log(-jnp.log(open_unit(prng.counter_words(private, ns, 1)[0]).astype(dtype)))
        return log_r + gumbels, jnp.full(ns.shape, jnp.inf, dtype), None, state

    return chunk_fn, None


@coder_factory
def mrc(num_samples: int, chunk_size: int | None = None) -> Coder:
    """MRC coder over ``num_samples`` candidates (index in ``[0, num_samples)``).

    Args:
      num_samples: ``N`` (MIRACLE uses ``N = 2^{KL budget}`` per block).
      chunk_size: candidates per loop iteration; defaults to ``min(N, 1024)``.
    """
    return fixed_budget_coder("mrc", num_samples, chunk_size, prepare_mrc)


registry.register_coder("mrc", mrc, params=("num_samples", "chunk_size"), message=registry.uniform_index_message)
