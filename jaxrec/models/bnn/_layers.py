"""Bayesian dense and convolution layers (Flax NNX) with a factorized Gaussian weight posterior.

Each weight tensor is a :class:`VariationalTensor`: ``n`` *variables*, each with a posterior
``q = N(mu, sigma^2)`` described by two parameters, ``loc`` and ``spread``, and a coding prior
``N(0, sigma_p^2)`` whose scale is one learned number per tensor (``log_prior_scale``, MIRACLE's
per-layer prior scales; Havasi, Peharz & Hernandez-Lobato, ICLR 2019). What ``spread``
means is the network's *parameterization* (:mod:`jaxrec.models.bnn._network`):

* **Mean-Var**: ``spread = log sigma`` (MIRACLE initializes it at -10);
* **Mean-KL** (Lin, Flamich & Hernandez-Lobato, ICML 2023 NC workshop): ``spread`` is the logit of
  the variable's share of its block's KL budget, and ``loc`` the unconstrained mean parameter ``m``
  of :func:`~jaxrec.models.bnn.mean_kl_gaussian`.

The shares are normalized over coding blocks, and MIRACLE's blocks are a random permutation of all
variables of the network, so the map from parameters to ``q`` is the network's job; a layer only
stores the parameters and turns sampled variables into weights (:meth:`VariationalTensor.expand`).

**Hashing trick** (Chen et al., "Compressing neural networks with the hashing trick", ICML 2015,
as used by MIRACLE): with ``hash_group = g > 1`` a tensor of ``n_w`` weights has ``ceil(n_w / g)``
variables; weight ``k`` is ``xi_k z[h(k)]`` with ``h(k) = pi(k) // g`` for a random permutation
``pi`` (every variable is shared by ``g`` weights) and random signs ``xi_k in {-1, +1}``, both
drawn with threefry from the tensor's ``hash_key`` (integer work: the same on every backend), so
a decoder rebuilds them from the architecture's seed.

Layouts: conv kernels ``(k, k, C_in, C_out)`` (HWIO) on NHWC inputs, dense kernels ``(F_in, F_out)``.
The layers take the sampled variables as arguments (``layer(x, z_kernel, z_bias)``), so one
network evaluates any weight sample: a posterior draw, a decoded one, a pruned one.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

__all__ = ["BayesianConv", "BayesianDense", "HashTable", "VariationalTensor"]

PRIOR_LOG_SCALE_INIT = -2.0
"""MIRACLE's initial ``log sigma_p`` of every tensor."""


class HashTable(nnx.Variable):
    """Hashing-trick tables (variable index and sign of each weight): rebuilt from the seed, never trained or saved."""


class VariationalTensor(nnx.Module):
    """A weight tensor of ``shape`` whose ``num_variables`` variables carry a Gaussian posterior.

    Attributes:
      loc: ``float32[n]`` nnx.Param, the mean (Mean-Var) or mean parameter ``m`` (Mean-KL).
      spread: ``float32[n]`` nnx.Param, ``log sigma`` (Mean-Var) or the KL-share logit (Mean-KL).
      log_prior_scale: ``float32[]`` nnx.Param, ``log sigma_p`` of the tensor's coding prior.
      hash_index, hash_sign: :class:`HashTable` ``int32[n_w]``, ``float32[n_w]`` when ``hash_group > 1``.
    """

    def __init__(
        self, shape: tuple[int, ...], *, hash_group: int, hash_key: Array, init_std: float, spread_init: float,
        rngs: nnx.Rngs,
    ):
        self.shape = tuple(int(d) for d in shape)
        self.hash_group = int(hash_group)
        num_weights = math.prod(self.shape)
        self.num_variables = -(-num_weights // self.hash_group)
        self.loc = nnx.Param(init_std * jax.random.normal(rngs.params(), (self.num_variables,), jnp.float32))
        self.spread = nnx.Param(jnp.full((self.num_variables,), spread_init, jnp.float32))
        self.log_prior_scale = nnx.Param(jnp.asarray(PRIOR_LOG_SCALE_INIT, jnp.float32))
        if self.hash_group > 1:
            perm = jax.random.permutation(jax.random.fold_in(hash_key, 0), num_weights)
            self.hash_index = HashTable((perm // self.hash_group).astype(jnp.int32))
            self.hash_sign = HashTable(jax.random.rademacher(jax.random.fold_in(hash_key, 1), (num_weights,), jnp.float32))

    def expand(self, z: Array) -> Array:
        """Weights of ``shape`` from the variables ``z`` ``(n,)`` (``z[h(k)] * xi_k`` when hashed)."""
        if self.hash_group > 1:
            z = z[self.hash_index.get_value()] * self.hash_sign.get_value()
        return z.reshape(self.shape)


def _fan_in_std(fan_in: int) -> float:
    return 1.0 / math.sqrt(fan_in)


class BayesianDense(nnx.Module):
    """``y = x W + b`` with ``W`` ``(F_in, F_out)`` and ``b`` ``(F_out,)`` Bayesian (means ~ N(0, 1/F_in))."""

    def __init__(
        self, in_features: int, out_features: int, *, hash_group: int = 1, hash_key: Array, spread_init: float,
        rngs: nnx.Rngs,
    ):
        std = _fan_in_std(in_features)
        self.kernel = VariationalTensor(
            (in_features, out_features), hash_group=hash_group, hash_key=jax.random.fold_in(hash_key, 0),
            init_std=std, spread_init=spread_init, rngs=rngs,
        )
        self.bias = VariationalTensor(
            (out_features,), hash_group=1, hash_key=jax.random.fold_in(hash_key, 1), init_std=std,
            spread_init=spread_init, rngs=rngs,
        )

    def __call__(self, x: Array, kernel: Array, bias: Array) -> Array:
        """``x`` ``(N, F_in)`` and the sampled variables of the kernel and bias -> ``(N, F_out)``."""
        return x @ self.kernel.expand(kernel) + self.bias.expand(bias)


class BayesianConv(nnx.Module):
    """``VALID`` 2-D convolution, stride 1, kernel ``(k, k, C_in, C_out)`` and bias ``(C_out,)`` Bayesian."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, hash_group: int = 1, hash_key: Array,
        spread_init: float, rngs: nnx.Rngs,
    ):
        std = _fan_in_std(kernel_size * kernel_size * in_channels)
        self.kernel = VariationalTensor(
            (kernel_size, kernel_size, in_channels, out_channels), hash_group=hash_group,
            hash_key=jax.random.fold_in(hash_key, 0), init_std=std, spread_init=spread_init, rngs=rngs,
        )
        self.bias = VariationalTensor(
            (out_channels,), hash_group=1, hash_key=jax.random.fold_in(hash_key, 1), init_std=std,
            spread_init=spread_init, rngs=rngs,
        )

    def __call__(self, x: Array, kernel: Array, bias: Array) -> Array:
        """``x`` ``(N, H, W, C_in)`` -> ``(N, H - k + 1, W - k + 1, C_out)``.

        Computed as patches times the kernel matrix (``(N, H', W', k k C_in) @ (k k C_in, C_out)``):
        XLA:CPU runs ``lax.conv_general_dilated`` inside a while loop (the retraining's
        ``fori_loop``) about ten times slower than outside one; the matmul form is fast in both.
        """
        w = self.kernel.expand(kernel)
        k, _, c_in, c_out = w.shape
        h, wd = x.shape[1] - k + 1, x.shape[2] - k + 1
        patches = jnp.concatenate([x[:, i : i + h, j : j + wd, :] for i in range(k) for j in range(k)], axis=-1)
        return patches @ w.reshape(k * k * c_in, c_out) + self.bias.expand(bias)
