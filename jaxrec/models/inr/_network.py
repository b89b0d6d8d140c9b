"""The INR: a SIREN on Fourier features (COMBINER) plus latent positional encodings and a linear
reparameterization (RECOMBINER), rendered from one flat latent vector ``h`` (layout: ``_config``).

For a pixel with coordinates ``x in [-1, 1]^2`` (pixel centres, ``(i + 1/2) / H`` rescaled):

* Fourier features ``[cos(pi w_k x_j), sin(pi w_k x_j)]`` with ``K`` log-spaced frequencies
  ``w_k = exp(linspace(0, log max_frequency, K))`` per axis (Guo et al., NeurIPS 2023);
* with positional encodings, the latent grid ``(g_h, g_w, 128)`` is upsampled by nearest x4 -> conv
  5x5 (128 -> 64) -> LeakyReLU -> x2 -> conv 3x3 (64 -> 64) -> LeakyReLU -> x2 -> conv 3x3
  (64 -> 16), and the 16 channels at each pixel are appended to its Fourier features
  (He et al., ICLR 2024, Sec. 3.2);
* SIREN (Sitzmann et al., NeurIPS 2020): ``a_{l+1} = sin(w0 (a_l W_l + b_l))`` on the hidden
  layers and a linear last layer, ``W_l, b_l`` read from ``w_l = h_l A_l`` (linear
  reparameterization, He et al., ICLR 2024, Sec. 3.1) or ``w_l = h_l``.

The upsampler and the matrices ``A_l`` are learned with the prior and frozen at test time.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrec.models.inr._config import InrConfig

Array = jax.Array

__all__ = ["InrNetwork", "fourier_features"]

LEAKY_SLOPE = 0.01
"""Negative slope of the upsampler's LeakyReLU (PyTorch's default, as RECOMBINER)."""


@functools.lru_cache(maxsize=8)
def fourier_features(config: InrConfig) -> np.ndarray:
    """``float32 (H * W, fourier_dim)``: the Fourier features of every pixel, row-major.

    Feature order: for each axis ``j`` and frequency ``k`` the products ``w_k x_j`` (axis-major),
    first all cosines, then all sines.
    """
    h, w = config.image_shape[:2]
    axes = [-1.0 + 2.0 * (np.arange(n) + 0.5) / n for n in (h, w)]
    coords = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    freqs = np.exp(np.linspace(0.0, math.log(config.max_frequency), config.fourier_dim // 4))
    phases = (coords[:, :, None] * freqs[None, None, :]).reshape(coords.shape[0], -1)
    out = np.concatenate([np.cos(np.pi * phases), np.sin(np.pi * phases)], axis=-1).astype(np.float32)
    out.setflags(write=False)  # cached: shared by every caller
    return out


def _upsample_nearest(x: Array, factor: int) -> Array:
    """``(H, W, C) -> (factor H, factor W, C)``."""
    return jnp.repeat(jnp.repeat(x, factor, axis=0), factor, axis=1)


def conv_same(x: Array, kernel: Array, bias: Array) -> Array:
    """2-D convolution with zero "same" padding, as one matrix product over image patches.

    ``x`` ``(H, W, C_in)``, ``kernel`` ``(k, k, C_in, C_out)`` (odd ``k``), ``bias`` ``(C_out,)``
    -> ``(H, W, C_out)``: ``y[i, j] = sum_{a, b, c} x[i + a - k//2, j + b - k//2, c] kernel[a, b, c] + bias``.
    Written as patches @ kernel because XLA:CPU runs convolutions inside loops (the posterior
    optimization's ``lax.scan``) about four times slower than the equivalent matrix product.
    """
    k = kernel.shape[0]
    h, w, c = x.shape
    pad = k // 2
    xp = jnp.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    patches = jnp.stack([xp[a : a + h, b : b + w] for a in range(k) for b in range(k)], axis=2)
    return patches.reshape(h * w, k * k * c) @ kernel.reshape(k * k * c, -1) + bias


class Upsampler(nnx.Module):
    """RECOMBINER's upsampling conv net: latent grid ``(g_h, g_w, C)`` -> ``(H, W, positional_dim)``."""

    def __init__(self, config: InrConfig, *, rngs: nnx.Rngs):
        c, hid, out = config.positional_channels, config.upsampler_hidden, config.positional_dim
        self.factors = config.upsample_factors
        shapes = [(5, c, hid), (3, hid, hid), (3, hid, out)]
        # PyTorch's default conv initialization, U(+-1/sqrt(fan_in)) for kernel and bias, as the reference code.
        self.kernels = nnx.List()
        self.biases = nnx.List()
        for k, c_in, c_out in shapes:
            bound = 1.0 / math.sqrt(k * k * c_in)
            self.kernels.append(nnx.Param(jax.random.uniform(rngs.params(), (k, k, c_in, c_out), jnp.float32, -bound, bound)))
            self.biases.append(nnx.Param(jax.random.uniform(rngs.params(), (c_out,), jnp.float32, -bound, bound)))

    def __call__(self, grid: Array) -> Array:
        x = grid
        last = len(self.factors) - 1
        for i, factor in enumerate(self.factors):
            x = _upsample_nearest(x, factor)
            x = conv_same(x, self.kernels[i].get_value(), self.biases[i].get_value()).reshape(*x.shape[:2], -1)
            if i < last:
                x = jax.nn.leaky_relu(x, LEAKY_SLOPE)
        return x


class InrNetwork(nnx.Module):
    """The shared, learned part of the INR codec and its renderer.

    Holds the upsampler (with positional encodings) and the matrices ``A_l`` (with the linear
    reparameterization) as ``nnx.Param``; :meth:`render` maps one latent ``h`` ``(D,)`` to an
    image ``(H, W, C)`` with values on the ``[0, 1]`` scale.
    """

    def __init__(self, config: InrConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.upsampler = Upsampler(config, rngs=rngs) if config.positional else None
        if config.linear_reparam:
            # A_l ~ U(-1, 1) / P_l (RECOMBINER's initialization).
            self.mixing = nnx.List([
                nnx.Param(jax.random.uniform(rngs.params(), (p, p), jnp.float32, -1.0, 1.0) / p)
                for p in config.layer_sizes
            ])
        else:
            self.mixing = None

    def layer_params(self, h: Array) -> list[tuple[Array, Array]]:
        """``[(W_l (d_l, d_{l+1}), b_l (d_{l+1},))]`` from the SIREN part of ``h`` ``(D,)``."""
        dims = self.config.layer_dims
        out, offset = [], 0
        for i, size in enumerate(self.config.layer_sizes):
            w = h[offset : offset + size]
            if self.mixing is not None:
                w = w @ self.mixing[i].get_value()
            out.append((w[dims[i + 1] :].reshape(dims[i], dims[i + 1]), w[: dims[i + 1]]))
            offset += size
        return out

    def inputs(self, h: Array) -> Array:
        """SIREN inputs ``(H * W, d_0)``: Fourier features, then the upsampled positional channels."""
        feats = jnp.asarray(fourier_features(self.config))
        if self.upsampler is None:
            return feats
        grid = h[self.config.num_weights :].reshape(self.config.grid_shape)
        pe = self.upsampler(grid).reshape(self.config.num_pixels, self.config.positional_dim)
        return jnp.concatenate([feats, pe], axis=-1)

    def render(self, h: Array) -> Array:
        """The image of one latent ``h`` ``(D,)``: ``(H, W, C)`` float, on the ``[0, 1]`` scale."""
        a = self.inputs(h)
        params = self.layer_params(h)
        for w, b in params[:-1]:
            a = jnp.sin(self.config.w0 * (a @ w + b))
        w, b = params[-1]
        return (a @ w + b).reshape(self.config.image_shape)
