"""ORC: ordered random coding, i.e. PFR truncated at ``N`` candidates (approximate, fixed budget).

This is the "standard ORC" of COMBINER/RECOMBINER (and global-bound depth-limited A* coding):
candidates and Poisson arrival times exactly as in :mod:`jaxrec.coders.pfr`, the winner is the
argmax of ``log r(X_n) - log T_n`` over ``n < N``, and the index costs at most ``log2 N`` bits.
Its output law tends to Q as N grows; the bias is governed by ``D_KL[Q||P]`` (TV about
``E[ln N*] / ln N``; Flamich & Wells 2024).  The PFR stop rule still ends the scan early when no
later candidate can win, which leaves the result unchanged.
"""

from __future__ import annotations

from jaxrec.coders import registry
from jaxrec.coders.base import Coder, coder_factory
from jaxrec.coders.poisson._pfr import prepare_pfr
from jaxrec.coders.scan import fixed_budget_coder


@coder_factory
def orc(num_samples: int, chunk_size: int | None = None) -> Coder:
    """ORC coder with a budget of ``num_samples`` candidates (index in ``[0, num_samples)``).

    Args:
      num_samples: ``N``, the number of candidates (e.g. ``2**16`` for a 16-bit block).
      chunk_size: candidates per loop iteration; defaults to ``min(N, 1024)``.

    The status is always ``OK`` for valid inputs (running out of candidates is the design).
    """
    return fixed_budget_coder("orc", num_samples, chunk_size, prepare_pfr)


registry.register_coder("orc", orc, params=("num_samples", "chunk_size"), message=registry.uniform_index_message)
