"""An independent float64 model of the A* partition tree, for the tree coders' reference tests.

Only the randomness comes from the library: node ``(depth, path)`` draws its uniform ``U`` and its
``Exp(1)`` ``E`` from :func:`jaxrec.core.prng.tree_node_key` (location and private keys).  Everything
else is computed here, in float64 and in prior-CDF coordinates (Maddison, Tarlow & Minka 2014;
Flamich, Markou & Hernandez-Lobato, ICML 2022): node ``B`` is a CDF interval ``[a, b)`` of prior mass
``m = b - a``; its sample is the prior quantile at ``a + U m``; its arrival is ``T_B = T_parent + E / m``
(root: ``T = E``, ``m = 1``); the sample split cuts at the sample (child masses ``U m``, ``(1 - U) m``),
the dyadic split at the midpoint (``m / 2`` each).

Nodes are listed in heap order: position ``i`` holds the node of heap index ``i + 1`` (root 1, children
of ``h`` are ``2h`` and ``2h + 1``, the right child taking branch bit 1), so level ``k`` is
``[2^k - 1, 2^{k+1} - 1)``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from jaxrec.core import prng

SAMPLE, DYADIC = "sample", "dyadic"


def heap_words(depth: int) -> tuple[np.ndarray, np.ndarray]:
    """``(depths, words)`` of every node of depth ``<= depth`` in heap order; bit ``l - 1`` of a
    node's path word is its branch at level ``l`` (the layout of :mod:`jaxrec.coders.tree.paths`)."""
    depths, words = [0], [0]
    for h in range(2, 2 ** (depth + 1)):
        d = h.bit_length() - 1
        branches = [(h >> (d - level)) & 1 for level in range(1, d + 1)]  # levels 1..d, from the top
        depths.append(d)
        words.append(sum(bit << (level - 1) for level, bit in enumerate(branches, start=1)))
    return np.array(depths), np.array(words, dtype=np.int64)


@functools.cache
def _randomness_fn(num_words: int, dtype):
    def one(key, depth, word):
        node = prng.tree_node_key(key, depth, jnp.zeros((num_words,), jnp.uint32).at[0].set(word))
        return (jax.random.uniform(prng.node_location_key(node), (), dtype),
                jax.random.exponential(prng.node_private_key(node), (), dtype))

    return jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0, 0)), in_axes=(0, None, None)))


def node_randomness(keys, depth: int, num_words: int, dtype=jnp.float32) -> tuple[np.ndarray, np.ndarray]:
    """``(U, E)``, ``float64[P, 2^{depth+1} - 1]``: the library's draws for every node of every key."""
    depths, words = heap_words(depth)
    u, e = _randomness_fn(num_words, dtype)(keys, jnp.asarray(depths, jnp.int32), jnp.asarray(words, jnp.uint32))
    return np.asarray(u, np.float64), np.asarray(e, np.float64)


def code_fields(codes) -> np.ndarray:
    """``int[P, 4]``: each tree code's ``(depth, first path word, steps, status)``, as a reference's
    ``(Tree.depth[best], Tree.word[best], steps, status)`` lists them."""
    return np.stack([np.asarray(codes.depth), np.asarray(codes.path)[:, 0], np.asarray(codes.steps), np.asarray(codes.status)], 1)


class Tree:
    """The tree of one key's draws ``u, e`` (``float64[2^{D+1} - 1]``, heap order) for a 1-D Gaussian
    pair ``row = (loc_q, scale_q, loc_p, scale_p)`` and a split rule.

    Attributes (heap order): ``depth``, ``word``, ``a``/``b`` (the CDF interval), ``t`` (arrival),
    ``z`` (the sample, prior standard coordinates), ``log_r`` (``ln r`` at the sample), ``log_sup``
    (``sup_B ln r``), ``score = log_r - ln t``, ``bound = log_sup - ln t``.
    """

    def __init__(self, u: np.ndarray, e: np.ndarray, row, split: str):
        mq, sq, mp, sp = row
        self.m, self.s = (mq - mp) / sp, sq / sp  # the target in the prior's standard coordinates
        self.mode = self.m / (1.0 - self.s**2)
        self.log_r_star = self.log_ratio(self.mode)
        n = u.size
        self.depth, self.word = (a[:n] for a in heap_words(int(n).bit_length() - 1))
        a, b, t = np.zeros(n), np.ones(n), np.zeros(n)
        t[0] = e[0]
        for h in range(2, n + 1):  # children after their parents
            parent, right = h // 2 - 1, h % 2
            pa, pb = a[parent], b[parent]
            cut = pa + u[parent] * (pb - pa) if split == SAMPLE else (pa + pb) / 2
            a[h - 1], b[h - 1] = (cut, pb) if right else (pa, cut)
            t[h - 1] = t[parent] + e[h - 1] / (b[h - 1] - a[h - 1])
        self.a, self.b, self.t = a, b, t
        self.z = special.ndtri(a + u * (b - a))
        self.log_r = self.log_ratio(self.z)
        self.log_sup = self.log_ratio(np.clip(self.mode, special.ndtri(a), special.ndtri(b)))
        self.score = self.log_r - np.log(t)
        self.bound = self.log_sup - np.log(t)

    def log_ratio(self, z):
        """``ln q/p`` at standard coordinate ``z`` (a ratio of densities needs no Jacobian)."""
        return stats.norm.logpdf(z, self.m, self.s) - stats.norm.logpdf(z)

    def levels(self, k: int) -> slice:
        """The heap positions of the nodes of depth ``k``."""
        return slice(2**k - 1, 2 ** (k + 1) - 1)
