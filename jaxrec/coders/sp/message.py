"""The message of the space-partitioning coders: a bin multi-index and a within-bin index.

Ideal codelengths and the within-bin index's Zipf budget (He, Flamich & Hernandez-Lobato,
NeurIPS 2024, Sec. 3): the bin costs ``log2 J`` bits, the index about ``KL - log2 J`` more.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.entropy.bits import zipf_bits

__all__ = ["sp_ideal_bits", "sp_index_budget_bits"]

def sp_index_budget_bits(kl_budget_bits: Any, log2_num_bins: Any) -> Any:
    r"""KL budget for the within-bin index of a space-partitioning code: ``max(KL - log2 J, 0)``.

    The winner's within-bin index has :math:`\mathbb E\log_2(n^*+1) \le \mathbb E_Q\log_2(1 + r/J)
    \le (\mathrm{KL} - \log_2 J) + \mathbb E_Q[(\log_2 J - \log_2 r)_+] + 1` (He, Flamich & Hernández-Lobato, NeurIPS 2024), so ``zipf_exponent(sp_index_budget_bits(KL, log2 J))`` (``eta = budget + 1``) fits when
    ``log2 J`` stays below the typical ``log2 r``.  Both sides derive it from shared statistics
    (e.g. the block's MI and its partition), never from the item's own KL.  Works on floats or arrays.
    """
    return np.maximum(np.asarray(kl_budget_bits, np.float64) - np.asarray(log2_num_bins, np.float64), 0.0)


def sp_ideal_bits(index: Any, num_intervals: Any, alpha: Any) -> jax.Array:
    r"""Ideal length of a space-partitioning code: :math:`\log_2 J + \text{zipf\_bits}(n, \alpha)`.

    The bin costs :math:`\sum_d \log_2 J_d = \log_2 J` (uniform per axis: optimal when the prior is
    the marginal, since then the winner's bin is marginally uniform), the within-bin index its Zipf
    code.

    Args:
      index: within-bin indices, any shape ``S``.
      num_intervals: ``J_d``, ``(..., D)`` broadcastable against ``S``.
      alpha: Zipf exponent (e.g. ``zipf_exponent(sp_index_budget_bits(KL, log2 J))``).
    """
    log2_j = jnp.sum(jnp.log2(jnp.asarray(num_intervals, dtype=float)), axis=-1)
    return log2_j + zipf_bits(index, alpha)


