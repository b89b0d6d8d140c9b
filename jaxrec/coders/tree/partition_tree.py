"""The binary space-partition tree of A* coding, shared by A* (:mod:`jaxrec.coders.astar`) and
branch-and-bound GPRS (:mod:`jaxrec.coders.gprs_bnb`): nodes, their randomness, children and decoders.

A node ``B = (lo, hi)`` lives in the prior's standard coordinates; its sample is the ``U``-quantile
of ``P|_B`` and its arrival ``T_B`` is the first point of a unit-rate Poisson process restricted to
``B`` (A* sampling, Maddison, Tarlow & Minka 2014; A* coding, Flamich, Markou &
Hernandez-Lobato 2022).  Two split rules: :data:`SAMPLE_SPLIT` (at the node's sample, AS*) and
:data:`DYADIC_SPLIT` (at the ``P``-median, AD*).  A node's randomness depends only on the shared
key and its ``(depth, path)`` (:func:`jaxrec.core.prng.tree_node_key`), so the decoder walks the path
from the root and rebuilds the chosen node's sample bit for bit.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import ndtri

from jaxrec.coders import registry
from jaxrec.coders.base import CoderSpec, check_code
from jaxrec.coders.tree import paths
from jaxrec.coders.tree.paths import TreeCode
from jaxrec.core import prng, truncated
from jaxrec.core.distributions import DiagGaussian, Distribution
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array

SAMPLE_SPLIT = "sample"
DYADIC_SPLIT = "dyadic"


class Ratio(NamedTuple):
    """``ln r(z) = log_m - curvature (z - mode)^2`` in the prior's standard coordinates."""

    log_m: Array
    mode: Array
    curvature: Array
    bounded: Array

    def log_r(self, z: Array) -> Array:
        d = z - self.mode
        return self.log_m - self.curvature * d * d

    def log_sup(self, lo: Array, hi: Array) -> Array:
        return self.log_r(jnp.clip(self.mode, lo, hi))


def gaussian_ratio(target: DiagGaussian, prior: DiagGaussian) -> Ratio:
    """The ratio of 1-D Gaussians in the prior's standard coordinates: ``Q = N(mu, s^2)`` against
    ``N(0, 1)`` gives ``mode = mu / (1 - s^2)``, ``curvature = (1 - s^2) / (2 s^2)`` and
    ``log_m = -ln s + mu^2 / (2 (1 - s^2))``; ``bounded`` is False when ``s >= 1``."""
    mu = ((target.loc - prior.loc) / prior.scale)[0]
    log_s = jnp.log(target.scale / prior.scale)[0]
    one_minus_s2 = -jnp.expm1(2.0 * log_s)  # 1 - s^2 without cancellation near s = 1
    bounded = one_minus_s2 > 0
    safe = jnp.where(bounded, one_minus_s2, 1.0)
    return Ratio(
        log_m=-log_s + 0.5 * mu * mu / safe,
        mode=mu / safe,
        curvature=0.5 * safe / jnp.exp(2.0 * log_s),
        bounded=bounded,
    )


class Node(NamedTuple):
    """One tree node (scalars; ``path`` is ``uint32[W]``), in the prior's standard coordinates."""

    depth: Array
    path: Array
    lo: Array
    hi: Array
    log_mass: Array  # ln P(B)
    log_t: Array  # ln T_B, the node's arrival time (= -G_B)
    u: Array  # the uniform that placed the node's sample x = quantile of P|_B at u
    cut: Array  # where the node splits: x (AS*) or the median of P|_B (AD*)


def node_randomness(key: Array, depth: Array, path: Array, dtype: jnp.dtype) -> tuple[Array, Array]:
    """``(U, E)``: the node's shared uniform (its sample) and its private ``Exp(1)`` (its arrival)."""
    node = prng.tree_node_key(key, depth, path)
    u = jax.random.uniform(prng.node_location_key(node), (), dtype)
    return u, jax.random.exponential(prng.node_private_key(node), (), dtype)


def sample_and_cut(lo: Array, hi: Array, u: Array, split: str) -> tuple[Array, Array]:
    """The node sample ``x`` (``u``-quantile of ``P|_(lo, hi)``) and the node's split point."""
    if split == SAMPLE_SPLIT:
        x = truncated.quantile(lo, hi, u)
        return x, x
    both = truncated.quantile(lo[..., None], hi[..., None], jnp.stack([u, jnp.full_like(u, 0.5)], axis=-1))
    return both[..., 0], both[..., 1]


def root_sample_and_cut(u: Array, split: str) -> tuple[Array, Array]:
    """The root (the whole line) samples ``P`` directly: ``x = Phi^{-1}(u)``; its median is 0."""
    x = ndtri(u)
    return x, (x if split == SAMPLE_SPLIT else jnp.zeros_like(x))


def root_node(key: Array, ratio: Ratio, words: int, dtype: jnp.dtype, split: str) -> tuple[Node, Array, Array]:
    """The root (the whole line, ``P(B) = 1``, path of ``words`` zero words), its score and its bound."""
    depth, path = jnp.int32(0), jnp.zeros((words,), jnp.uint32)
    u, e = node_randomness(key, depth, path, dtype)
    x, cut = root_sample_and_cut(u, split)
    log_t = jnp.log(e)
    inf = jnp.asarray(jnp.inf, dtype)
    node = Node(depth, path, -inf, inf, jnp.zeros((), dtype), log_t, u, cut)
    return node, ratio.log_r(x) - log_t, ratio.log_m - log_t


def child_nodes(key: Array, ratio: Ratio, node: Node, split: str) -> tuple[Node, Array, Array]:
    """The two children of ``node`` (leaves ``[2, ...]``), their scores and their bounds."""
    dtype = node.lo.dtype
    lo = jnp.stack([node.lo, node.cut])
    hi = jnp.stack([node.cut, node.hi])
    if split == SAMPLE_SPLIT:
        log_mass = node.log_mass + jnp.stack([jnp.log(node.u), jnp.log1p(-node.u)])
    else:
        log_mass = jnp.broadcast_to(node.log_mass - jnp.asarray(math.log(2.0), dtype), (2,))
    depth = node.depth + 1
    path = jnp.stack([node.path, paths.with_bit(node.path, depth, 1)])
    u, e = jax.vmap(lambda p: node_randomness(key, depth, p, dtype))(path)
    x, cut = sample_and_cut(lo, hi, u, split)
    log_t = jnp.logaddexp(node.log_t, jnp.log(e) - log_mass)
    nonempty = log_mass > -jnp.inf
    scores = jnp.where(nonempty, ratio.log_r(x) - log_t, -jnp.inf)
    bounds = jnp.where(nonempty, ratio.log_sup(lo, hi) - log_t, -jnp.inf)
    children = Node(jnp.broadcast_to(depth, (2,)), path, lo, hi, log_mass, log_t, u, cut)
    return children, scores, bounds


def check_prior(prior: Any) -> None:
    """Raises :class:`InvalidArgumentError` unless ``prior`` is one 1-D ``DiagGaussian``."""
    if not isinstance(prior, DiagGaussian) or prior.event_size != 1 or prior.batch_shape:
        raise InvalidArgumentError(f"prior must be a 1-D DiagGaussian without batch axes, got {prior!r}")


def check_tree_code(code: Any, name: str, prior: Any) -> None:
    """Raises :class:`InvalidArgumentError` unless ``code`` is one :class:`TreeCode` of coder ``name``
    (no batch axes) and ``prior`` one 1-D ``DiagGaussian``."""
    check_code(code, TreeCode, name, prior)
    check_prior(prior)
    if jnp.ndim(code.path) != 1 or jnp.ndim(code.depth) != 0:
        raise InvalidArgumentError(
            f"code.path must be uint32[W] and code.depth a scalar (vmap for batches), got shapes "
            f"{jnp.shape(code.path)} and {jnp.shape(code.depth)}"
        )


def decode_path(key: Array, code: TreeCode, prior: DiagGaussian, split: str) -> Array:
    """Walks from the root to ``(code.depth, code.path)`` and returns that node's sample, ``(1,)``.

    Level ``l`` rebuilds the node at depth ``l`` on the path exactly as the encoder made it (same
    uniform, same quantile), so the result is the encoder's sample bit for bit.
    """
    dtype = prior.dtype
    depth = jnp.asarray(code.depth, jnp.int32)  # codes with numpy leaves (read from a file) too
    path = jnp.asarray(code.path, jnp.uint32)
    max_level = path.shape[0] * paths.WORD_BITS

    def child(lo: Array, hi: Array, cut: Array, level: Array) -> tuple[Array, Array]:
        right = paths.path_bit(path, jnp.clip(level, 1, max_level)) == 1
        return jnp.where(right, cut, lo), jnp.where(right, hi, cut)

    def descend(level: Array, carry: tuple[Array, Array, Array, Array]) -> tuple[Array, Array, Array, Array]:
        lo, hi, cut, _ = carry
        lo, hi = child(lo, hi, cut, level)
        u, _ = node_randomness(key, level, paths.prefix(path, level), dtype)
        x, cut = sample_and_cut(lo, hi, u, split)
        return lo, hi, cut, x

    u, _ = node_randomness(key, jnp.int32(0), jnp.zeros_like(path), dtype)
    x, cut = root_sample_and_cut(u, split)
    inf = jnp.asarray(jnp.inf, dtype)
    _, _, _, z = lax.fori_loop(jnp.int32(1), depth + 1, descend, (-inf, inf, cut, x))
    return prior.loc + prior.scale * z


def make_decoder(split: str, name: str) -> Callable[[Any, TreeCode, Distribution], Array]:
    """The decoder of coder ``name`` on this tree with split rule ``split``: checks, then
    :func:`decode_path` (decoding depends only on the split rule, not on capacity, limits or ``W``)."""

    compiled = jax.jit(functools.partial(decode_path, split=split))  # once per decoder and shapes

    def decode(key: Any, code: TreeCode, prior: Distribution) -> Array:
        check_tree_code(code, name, prior)
        return compiled(prng.as_key(key), code, prior)

    return decode


def tree_message(spec: CoderSpec, budget_bits: float, plan: Any) -> registry.Message:
    """The node's 0-based heap index under the PFR Zipf model of the budget: its depth is about
    ``D_KL`` (Flamich, Markou & Hernandez-Lobato, ICML 2022, Sec. 3), so ``log2(index + 1)`` is too."""
    return (("heap_index", registry.zipf_model(budget_bits)),)


def tree_pack(spec: CoderSpec, fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{heap_index}`` from ``{depth, path}`` (:func:`~jaxrec.coders.tree.paths.pack_heap_index`)."""
    return {"heap_index": paths.pack_heap_index(fields["depth"], fields["path"])}


def tree_unpack(depth_param: str) -> Callable[[CoderSpec, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The inverse of :func:`tree_pack` for a coder whose largest depth is the spec parameter ``depth_param``."""

    def unpack(spec: CoderSpec, symbols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        depth, path = paths.unpack_heap_index(symbols["heap_index"], spec.kwargs[depth_param])
        return {"depth": depth, "path": path}

    return unpack
