"""A Bayesian classifier (LeNet-5 by default) whose weight posterior is coded block by block (MIRACLE).

MIRACLE (Havasi, Peharz & Hernandez-Lobato, "Minimal Random Code Learning: Getting Bits Back from
Compressed Model Parameters", ICLR 2019) trains a factorized Gaussian posterior ``q(w)`` over the
network's (hashed) weights against a coding prior ``p(w) = prod_l N(0, sigma_l^2)`` with one
learned scale per tensor, and sends one sample of ``q`` per block of variables with relative
entropy coding. The ``D`` variables of all tensors, concatenated in layer order (kernel, then bias),
form the flat latent ``z`` of the codec. :func:`block_plan` permutes them with a seeded threefry
permutation and cuts them into blocks of ``block_size`` (the last block may be smaller), each with
a budget of ``bits_per_block`` bits (MIRACLE: 30 variables at 10 bits for LeNet-5).

Two parameterizations of ``q`` (:data:`PARAMETERIZATIONS`):

* ``"mean_var"``: ``q_i = N(loc_i, exp(spread_i)^2)``; the block KLs are driven to the budget by
  MIRACLE's per-block multiplicative penalty (:mod:`jaxrec.models.bnn._train`).
* ``"mean_kl"`` (Lin, Flamich & Hernandez-Lobato, ICML 2023 Neural Compression Workshop): variable
  ``i`` of block ``b`` gets the KL ``kappa_i = K softmax_b(spread)_i`` with ``K = bits_per_block ln 2``
  nats, and ``q_i = mean_kl_gaussian(loc_i, kappa_i, p_i)`` (:mod:`jaxrec.models.bnn._mean_kl`), so
  every block's KL equals the budget by construction. (The allocation rule within a block, a
  softmax over learned logits, is this library's choice.)

Architecture (:class:`NetworkConfig`): convolutions (``VALID``, each followed by ReLU and 2x2 max
pooling), then dense layers with ReLU between them; inputs are uint8 images scaled to
``x / 255 - 0.5``. The default is MIRACLE's LeNet-5 (Caffe variant, 431,080 weights): conv 5x5x20,
conv 5x5x50, dense 800-500, dense 500-10, hashed in groups of 2 (conv2) and 50 (dense 1), which
leaves ``D = 26,580`` variables, 886 blocks of 30.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrec.codec import BlockPlan
from jaxrec.core.distributions import DiagGaussian, kl
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.models.bnn._layers import BayesianConv, BayesianDense, VariationalTensor
from jaxrec.models.bnn._mean_kl import mean_kl_gaussian, mean_kl_inverse

Array = jax.Array

__all__ = [
    "MEAN_VAR_LOG_STD_INIT",
    "PARAMETERIZATIONS",
    "BayesianNetwork",
    "BlockLayout",
    "KLPenalty",
    "NetworkConfig",
    "block_plan",
    "lenet5",
    "preprocess",
]

PARAMETERIZATIONS = ("mean_var", "mean_kl")
MEAN_VAR_LOG_STD_INIT = -10.0
"""MIRACLE's initial ``log sigma`` of every variable (Mean-Var)."""
_LN2 = math.log(2.0)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgumentError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _seed(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**32:
        raise InvalidArgumentError(f"{name} must be an int in [0, 2**32), got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Architecture and coding setup; everything a decoder needs besides the prior scales.

    Attributes:
      input_shape: ``(H, W, C)`` of one image.
      conv: per convolution ``(C_out, kernel_size, hash_group)``; each is followed by ReLU and a
        2x2 max pool.
      dense: per dense layer ``(F_out, hash_group)``; ReLU between them, none after the last, whose
        width is the number of classes.
      parameterization: ``"mean_var"`` or ``"mean_kl"`` (encoder side only).
      bits_per_block: the KL budget of a block in bits (MIRACLE: 10).
      block_size: variables per block (MIRACLE: 30 for LeNet-5).
      plan_seed: seed of the block permutation (:func:`block_plan`).
      hash_seed: seed of the hashing-trick tables.
    """

    input_shape: tuple[int, int, int] = (28, 28, 1)
    conv: tuple[tuple[int, int, int], ...] = ((20, 5, 1), (50, 5, 2))
    dense: tuple[tuple[int, int], ...] = ((500, 50), (10, 1))
    parameterization: str = "mean_kl"
    bits_per_block: float = 10.0
    block_size: int = 30
    plan_seed: int = 420
    hash_seed: int = 0

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("input_shape", tuple(_positive_int("input_shape", d) for d in self.input_shape))
        if len(self.input_shape) != 3:
            raise InvalidArgumentError(f"input_shape must be (H, W, C), got {self.input_shape}")
        set_("conv", tuple(tuple(_positive_int("conv", v) for v in layer) for layer in self.conv))
        set_("dense", tuple(tuple(_positive_int("dense", v) for v in layer) for layer in self.dense))
        if any(len(layer) != 3 for layer in self.conv) or any(len(layer) != 2 for layer in self.dense):
            raise InvalidArgumentError("conv layers are (C_out, kernel_size, hash_group), dense layers (F_out, hash_group)")
        if not self.dense:
            raise InvalidArgumentError("the network needs at least one dense layer (the classifier)")
        if self.parameterization not in PARAMETERIZATIONS:
            raise InvalidArgumentError(f"parameterization must be one of {PARAMETERIZATIONS}, got {self.parameterization!r}")
        bits = self.bits_per_block
        if isinstance(bits, bool) or not isinstance(bits, (int, float, np.number)) or not 0 < bits <= 64:
            raise InvalidArgumentError(f"bits_per_block must be a number in (0, 64], got {bits!r}")
        set_("bits_per_block", float(bits))
        set_("block_size", _positive_int("block_size", self.block_size))
        set_("plan_seed", _seed("plan_seed", self.plan_seed))
        set_("hash_seed", _seed("hash_seed", self.hash_seed))
        h, w, _ = self.input_shape
        for _, k, _ in self.conv:
            if h < k or w < k:
                raise InvalidArgumentError(f"input {self.input_shape} too small for the convolutions {self.conv}")
            h, w = (h - k + 1) // 2, (w - k + 1) // 2

    @property
    def num_classes(self) -> int:
        return self.dense[-1][0]

    @property
    def budget_nats(self) -> float:
        """``K = bits_per_block ln 2``."""
        return self.bits_per_block * _LN2

    def to_dict(self) -> dict[str, Any]:
        """Plain msgpack-able values; :meth:`from_dict` inverts it."""
        return {
            "input_shape": list(self.input_shape),
            "conv": [list(layer) for layer in self.conv],
            "dense": [list(layer) for layer in self.dense],
            "parameterization": self.parameterization,
            "bits_per_block": self.bits_per_block,
            "block_size": self.block_size,
            "plan_seed": self.plan_seed,
            "hash_seed": self.hash_seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        if not isinstance(data, dict) or set(data) != {f.name for f in dataclasses.fields(cls)}:
            raise InvalidArgumentError(f"a network config needs exactly the fields of NetworkConfig, got {data!r}")
        return cls(**data)


def lenet5(**overrides: Any) -> NetworkConfig:
    """MIRACLE's LeNet-5 with hashing (``NetworkConfig()``); keyword arguments override fields,
    e.g. ``lenet5(conv=((20, 5, 1), (50, 5, 1)), dense=((500, 1), (10, 1)))`` for no hashing."""
    return NetworkConfig(**overrides)


def block_plan(config: NetworkConfig, num_variables: int) -> BlockPlan:
    """MIRACLE's blocks: a threefry permutation of the ``D`` variables from ``plan_seed`` cut into
    blocks of ``block_size`` (the last one holds the remainder), budget ``bits_per_block``."""
    d = _positive_int("num_variables", num_variables)
    order = np.asarray(jax.random.permutation(jax.random.key(config.plan_seed, impl="threefry2x32"), d))
    full, rest = divmod(d, config.block_size)
    sizes = [config.block_size] * full + ([rest] if rest else [])
    return BlockPlan(order=order, sizes=np.asarray(sizes), budget_bits=config.bits_per_block)


@functools.lru_cache(maxsize=64)
def _shared_plan(config: NetworkConfig, num_variables: int) -> BlockPlan:
    return block_plan(config, num_variables)


def preprocess(images: Any, input_shape: tuple[int, int, int]) -> Array:
    """uint8 images ``(N, H, W)`` or ``(N, H, W, C)`` -> float32 ``(N, H, W, C)`` in ``[-0.5, 0.5]``."""
    x = jnp.asarray(images)
    if x.dtype != jnp.uint8:
        raise InvalidArgumentError(f"images must be uint8, got {x.dtype}")
    if x.shape[1:] != input_shape and x.shape[1:] + (1,) != input_shape:
        raise InvalidArgumentError(f"images must have shape (N, *{input_shape}), got {x.shape}")
    return x.reshape(x.shape[0], *input_shape).astype(jnp.float32) / 255.0 - 0.5


def _max_pool(x: Array) -> Array:
    """2x2 max pooling, stride 2, of NHWC ``x`` (odd trailing rows/columns dropped)."""
    n, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class BlockLayout(nnx.Variable):
    """The block plan as arrays (``index``/``mask`` ``(B, S)``, ``positions`` ``(D,)``): fixed by the config."""


class KLPenalty(nnx.Variable):
    """MIRACLE's per-block KL penalty coefficients ``lambda_b`` (Mean-Var), adapted during training."""


class BayesianNetwork(nnx.Module):
    """The network of the module docstring.

    Attributes:
      config: the :class:`NetworkConfig`.
      convs, denses: the :class:`~jaxrec.models.bnn.BayesianConv` / ``BayesianDense`` layers.
      block_index, block_mask, block_positions: :class:`BlockLayout` arrays of the plan.
      kl_penalty: :class:`KLPenalty` ``float32[B]`` (used by Mean-Var training and retraining).
    """

    def __init__(self, config: NetworkConfig, *, rngs: nnx.Rngs, kl_penalty_init: float = 1e-8):
        self.config = config
        spread = MEAN_VAR_LOG_STD_INIT if config.parameterization == "mean_var" else 0.0
        hash_key = jax.random.key(config.hash_seed, impl="threefry2x32")
        h, w, c = config.input_shape
        convs = []
        for i, (out, k, group) in enumerate(config.conv):
            key = jax.random.fold_in(hash_key, i)
            convs.append(BayesianConv(c, out, k, hash_group=group, hash_key=key, spread_init=spread, rngs=rngs))
            h, w, c = (h - k + 1) // 2, (w - k + 1) // 2, out
        features, denses = h * w * c, []
        for i, (out, group) in enumerate(config.dense):
            key = jax.random.fold_in(hash_key, len(config.conv) + i)
            denses.append(BayesianDense(features, out, hash_group=group, hash_key=key, spread_init=spread, rngs=rngs))
            features = out
        self.convs = nnx.List(convs)
        self.denses = nnx.List(denses)
        sizes = [t.num_variables for t in self.tensors]
        self.tensor_sizes = tuple(sizes)
        self.num_variables = sum(sizes)
        plan = self.plan
        self.block_index = BlockLayout(jnp.asarray(plan.index))
        self.block_mask = BlockLayout(jnp.asarray(plan.mask))
        self.block_positions = BlockLayout(jnp.asarray(plan.positions))
        self.kl_penalty = KLPenalty(jnp.full((plan.num_blocks,), kl_penalty_init, jnp.float32))

    @property
    def plan(self) -> BlockPlan:
        """The shared :class:`~jaxrec.BlockPlan` (:func:`block_plan`; one object per config, so
        that networks of one config have equal NNX graph definitions and share compiled code)."""
        return _shared_plan(self.config, self.num_variables)

    # -- parameters -------------------------------------------------------------------------------

    @property
    def tensors(self) -> list[VariationalTensor]:
        """The variational tensors in flat-latent order: per layer, kernel then bias."""
        return [t for layer in (*self.convs, *self.denses) for t in (layer.kernel, layer.bias)]

    def flat_params(self) -> tuple[Array, Array]:
        """``(loc, spread)``, each ``float32[D]``."""
        tensors = self.tensors
        return (jnp.concatenate([t.loc.get_value() for t in tensors]),
                jnp.concatenate([t.spread.get_value() for t in tensors]))

    def set_flat_params(self, loc: Array, spread: Array) -> None:
        """Writes ``(loc, spread)`` (``float32[D]`` each) back into the tensors."""
        bounds = np.cumsum((0, *self.tensor_sizes))
        for t, a, b in zip(self.tensors, bounds[:-1], bounds[1:]):
            t.loc.set_value(jnp.asarray(loc[a:b], jnp.float32))
            t.spread.set_value(jnp.asarray(spread[a:b], jnp.float32))

    def log_prior_scales(self) -> Array:
        """``float32[T]``, ``log sigma_p`` of each tensor."""
        return jnp.stack([t.log_prior_scale.get_value() for t in self.tensors])

    def set_log_prior_scales(self, values: Any) -> None:
        values = jnp.asarray(values, jnp.float32)
        if values.shape != (len(self.tensor_sizes),):
            raise InvalidArgumentError(f"need {len(self.tensor_sizes)} prior log-scales, got shape {values.shape}")
        for t, v in zip(self.tensors, values):
            t.log_prior_scale.set_value(v)

    # -- distributions ----------------------------------------------------------------------------

    def prior(self) -> DiagGaussian:
        """The coding prior ``N(0, sigma_l^2)`` over the ``D`` variables."""
        scale = jnp.repeat(jnp.exp(self.log_prior_scales()), np.asarray(self.tensor_sizes), total_repeat_length=self.num_variables)
        return DiagGaussian(jnp.zeros(self.num_variables, jnp.float32), scale)

    def kl_shares(self, spread: Array) -> Array:
        """Mean-KL: ``kappa = K softmax_b(spread)`` in nats, ``float32[D]`` (each block sums to ``K``)."""
        index, mask = self.block_index.get_value(), self.block_mask.get_value()
        logits = jnp.where(mask, spread[index], -jnp.inf)
        shares = jax.nn.softmax(logits, axis=-1) * self.config.budget_nats
        return shares.reshape(-1)[self.block_positions.get_value()]

    def posterior_from(self, loc: Array, spread: Array, prior: DiagGaussian | None = None) -> DiagGaussian:
        """``q`` over the ``D`` variables from flat ``(loc, spread)`` under the configured parameterization."""
        if self.config.parameterization == "mean_var":
            return DiagGaussian(loc, jnp.exp(spread))
        return mean_kl_gaussian(loc, self.kl_shares(spread), self.prior() if prior is None else prior)

    def posterior(self) -> DiagGaussian:
        """The current ``q`` over the ``D`` variables."""
        return self.posterior_from(*self.flat_params())

    def params_from(self, q: DiagGaussian, prior: DiagGaussian | None = None) -> tuple[Array, Array]:
        """Inverse of :meth:`posterior_from`: ``(loc, spread)`` that give ``q`` (Mean-KL: the logits
        ``log kappa``, floored at ``log`` of the smallest normal float, so softmax recovers the shares)."""
        if self.config.parameterization == "mean_var":
            return q.loc, jnp.log(q.scale)
        mean_param, kappa = mean_kl_inverse(q, self.prior() if prior is None else prior)
        return mean_param, jnp.log(jnp.maximum(kappa, jnp.finfo(kappa.dtype).tiny))

    def block_kl(self, q: DiagGaussian, prior: DiagGaussian | None = None) -> Array:
        """``KL[q_b || p_b]`` of every block in bits, ``float32[B]``."""
        per_dim = kl(q, self.prior() if prior is None else prior, per_dim=True)
        return jnp.sum(jnp.where(self.block_mask.get_value(), per_dim[self.block_index.get_value()], 0.0), axis=-1)

    # -- the network ------------------------------------------------------------------------------

    def logits(self, z: Array, images: Any) -> Array:
        """Class logits ``(N, num_classes)`` of uint8 ``images`` with the variables ``z`` ``(D,)``."""
        x = preprocess(images, self.config.input_shape)
        bounds = np.cumsum((0, *self.tensor_sizes))
        parts = [z[a:b] for a, b in itertools.pairwise(bounds)]
        for i, layer in enumerate(self.convs):
            x = _max_pool(jax.nn.relu(layer(x, parts[2 * i], parts[2 * i + 1])))
        x = x.reshape(x.shape[0], -1)
        offset = 2 * len(self.convs)
        for i, layer in enumerate(self.denses):
            x = layer(x, parts[offset + 2 * i], parts[offset + 2 * i + 1])
            if i + 1 < len(self.denses):
                x = jax.nn.relu(x)
        return x
