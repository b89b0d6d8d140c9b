"""A small Flax NNX VAE for 8-bit grey images (MNIST-sized), with a beta-binomial pixel likelihood.

Model (the BB-ANS / A*-coding MNIST setup, Townsend et al. 2019; Flamich et al. 2022):

* prior ``p(z) = N(0, I_L)``;
* posterior ``q(z|x) = N(mu(x), diag sigma(x)^2)`` from an MLP encoder on ``x / 255``, with
  ``sigma = (1 - 2^-8) * sigmoid(.) < 1`` so that every posterior is narrower than the prior and
  ``D_inf[q||p]`` is finite (exact REC coders such as PFR need a bounded density ratio; a collapsed
  dimension then costs at most ``~1.5e-5`` nats of KL);
* likelihood ``p(x|z) = prod_i BetaBinomial(x_i; n=255, alpha_i(z), beta_i(z))`` from an MLP
  decoder whose head outputs ``log2 alpha`` and ``log2 beta``, clipped to ``[-LOG2_PARAM_MAX,
  LOG2_PARAM_MAX]``.  The beta-binomial is U-shaped for ``alpha, beta < 1``, which suits the
  mostly-0-or-255 pixels of MNIST:

  ``log p(k) = log C(n, k) + log B(k + alpha, n - k + beta) - log B(alpha, beta)``.

As a codec (:mod:`jaxrec.codec`) the VAE is lossless: ``prior()``, ``target(x)`` (the posterior of one
image), ``reconstruct(z)`` (the likelihood's mean) and ``likelihood(z)`` (integer weights of
``p(x|z)`` over the 256 levels of every pixel, from :mod:`jaxrec.lossless`), so::

    files = jaxrec.compress_batch(model, images, key=0, coder=jaxrec.orc(2**16), plan=plan)
    assert (jaxrec.decompress_batch(model, files, plan=plan) == images).all()

Training maximises the ELBO ``E_q log p(x|z) - KL[q||p]`` (one reparameterised sample) with optax;
progress is logged in bits per dimension (``-ELBO / (D ln 2)``, ``D = 784``).  The float decoder
defines the "theoretical optimum"; lossless coding uses its integer twin (:mod:`jaxrec.lossless`).

Checkpoints are one msgpack file (flax serialization): the config, the float32 parameters and any
metadata (:func:`save_checkpoint`, :func:`load_checkpoint`). A checkpoint whose metadata holds the
training-set statistics (:func:`latent_statistics`: per-dimension KL and mutual information) is a
*model bundle* (:func:`load_bundle`, :class:`VAEBundle`, ``jaxrec.models.load("mnist-vae")``): it
rebuilds the block plans and partitions of every coder deterministically, so that a file needs
only the coder name and block count to be decoded.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, serialization

import jaxrec
from jaxrec.coders.sp import partition
from jaxrec.core import prng
from jaxrec.core.distributions import DiagGaussian, kl
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.models import lossless

Array = jax.Array

__all__ = [
    "CHECKPOINT_FORMAT",
    "LOG2_PARAM_MAX",
    "SIGMA_MAX",
    "VAE",
    "ElboTerms",
    "VAEBundle",
    "VAEConfig",
    "beta_binomial_log_prob",
    "elbo_terms",
    "evaluate",
    "latent_statistics",
    "load_bundle",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]

NUM_LEVELS = lossless.NUM_LEVELS
LOG2_PARAM_MAX = float(lossless.LOG2_PARAM_MAX)
"""``log2 alpha`` and ``log2 beta`` are clipped to ``[-8, 8]`` (the integer tables' range)."""
SIGMA_MAX = 1.0 - 2.0**-8
"""Posterior standard deviations lie in ``(0, SIGMA_MAX)``."""
CHECKPOINT_FORMAT = "jaxrec-vae-1"


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Architecture of :class:`VAE`.

    Attributes:
      image_shape: shape of one item, e.g. ``(28, 28)``; ``D = prod(image_shape)`` pixels.
      latent_dim: ``L``.
      hidden: widths of the hidden ReLU layers of the encoder; the decoder uses them reversed.
    """

    image_shape: tuple[int, ...] = (28, 28)
    latent_dim: int = 20
    hidden: tuple[int, ...] = (200,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for name, value in (
            *(("image_shape", v) for v in self.image_shape),
            ("latent_dim", self.latent_dim),
            *(("hidden", h) for h in self.hidden),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must hold positive ints, got {value!r}")
        if not self.image_shape:
            raise InvalidArgumentError("image_shape must have at least one axis")

    @property
    def num_pixels(self) -> int:
        """``D``."""
        return math.prod(self.image_shape)

    def to_dict(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape), "latent_dim": self.latent_dim, "hidden": list(self.hidden)}


class MLP(nnx.Module):
    """ReLU MLP: ``Linear -> relu -> ... -> Linear`` (no activation on the output)."""

    def __init__(self, sizes: tuple[int, ...], *, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])

    def __call__(self, h: Array) -> Array:
        for layer in self.layers[:-1]:
            h = jax.nn.relu(layer(h))
        return self.layers[-1](h)


class VAE(nnx.Module):
    """The VAE of the module docstring; implements the lossless codec protocol of :mod:`jaxrec.codec`.

    Protocol methods (one item each; jaxrec vmaps them): :meth:`prior`, :meth:`target`,
    :meth:`reconstruct` and :meth:`likelihood` (integer weights from :mod:`jaxrec.lossless`).
    Batch helpers for training: :meth:`posterior`, :meth:`likelihood_params`,
    :meth:`log_likelihood` on flat images ``(..., D)``.
    """

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        self.config = config
        d, l = config.num_pixels, config.latent_dim
        self.encoder = MLP((d, *config.hidden, 2 * l), rngs=rngs)
        self.decoder = MLP((l, *reversed(config.hidden), 2 * d), rngs=rngs)

    @property
    def item_shape(self) -> tuple[int, ...]:
        """The shape of one image (``compress`` refuses others)."""
        return self.config.image_shape

    @property
    def latent_step(self) -> float:
        """``2^-10``: :meth:`likelihood` sees ``z`` only through ``rint(z * 2^10)``
        (:func:`jaxrec.models.lossless.quantize_latent`), so archives snap the coordinates near a
        rounding boundary (see :mod:`jaxrec.codec.protocol`)."""
        return 2.0**-lossless.LATENT_FRAC_BITS

    # -- codec protocol ---------------------------------------------------------------------------

    def prior(self) -> DiagGaussian:
        """``N(0, I_L)``, float32."""
        return DiagGaussian(jnp.zeros(self.config.latent_dim), jnp.ones(self.config.latent_dim))

    def target(self, x: Array) -> DiagGaussian:
        """``q(z|x)`` for one image ``x`` of ``image_shape`` (integers in ``[0, 255]``)."""
        return self.posterior(jnp.reshape(x, (self.config.num_pixels,)))

    def reconstruct(self, z: Array) -> Array:
        """The likelihood's mean ``255 alpha / (alpha + beta)`` for ``z`` ``(L,)``: float ``image_shape``."""
        log2_a, log2_b = self.likelihood_params(z)
        mean = (NUM_LEVELS - 1) * jax.nn.sigmoid((log2_a - log2_b) * math.log(2.0))
        return mean.reshape(self.config.image_shape)

    def likelihood(self, z: Array) -> Array:
        """Integer weights of ``p(x|z)`` for ``z`` ``(L,)``: int32 ``(*image_shape, 256)``, all ``>= 1``.

        The integer twin of the decoder (:func:`jaxrec.models.lossless.integer_mlp`) and an integer-only
        beta-binomial (:func:`jaxrec.models.lossless.beta_binomial_weights`): the same bits on every
        machine for the same ``z`` (see :mod:`jaxrec.lossless` for what that rests on).
        """
        layers = [(layer.kernel.get_value(), layer.bias.get_value()) for layer in self.decoder.layers]
        j = lossless.integer_mlp(layers, z)
        d = self.config.num_pixels
        weights = lossless.beta_binomial_weights(j[..., :d], j[..., d:])
        return weights.reshape(*j.shape[:-1], *self.config.image_shape, NUM_LEVELS)

    # -- batch helpers ----------------------------------------------------------------------------

    def posterior(self, x: Array) -> DiagGaussian:
        """``q(z|x)`` for flat images ``x`` ``(..., D)``: loc/scale ``(..., L)``."""
        h = self.encoder(jnp.asarray(x, jnp.float32) / (NUM_LEVELS - 1))
        loc, raw = jnp.split(h, 2, axis=-1)
        return DiagGaussian(loc, SIGMA_MAX * jax.nn.sigmoid(raw))

    def likelihood_params(self, z: Array) -> tuple[Array, Array]:
        """``(log2 alpha, log2 beta)``, each ``(..., D)``, clipped to ``[-LOG2_PARAM_MAX, LOG2_PARAM_MAX]``."""
        h = jnp.clip(self.decoder(z), -LOG2_PARAM_MAX, LOG2_PARAM_MAX)
        return h[..., : self.config.num_pixels], h[..., self.config.num_pixels :]

    def log_likelihood(self, x: Array, z: Array) -> Array:
        """``log p(x|z)`` in nats for flat images ``x`` ``(..., D)``, summed over pixels: ``(...,)``."""
        return jnp.sum(beta_binomial_log_prob(x, *self.likelihood_params(z)), axis=-1)


def beta_binomial_log_prob(k: Array, log2_alpha: Array, log2_beta: Array, n: int = NUM_LEVELS - 1) -> Array:
    """Elementwise ``log BetaBinomial(k; n, alpha, beta)`` in nats."""
    k = jnp.asarray(k, jnp.float32)
    a, b = jnp.exp2(log2_alpha), jnp.exp2(log2_beta)
    lg = jax.scipy.special.gammaln
    log_choose = lg(n + 1.0) - lg(k + 1.0) - lg(n - k + 1.0)
    return log_choose + lg(k + a) + lg(n - k + b) - lg(n + a + b) - (lg(a) + lg(b) - lg(a + b))


class ElboTerms(NamedTuple):
    """Per-image ELBO terms in bits: ``kl_bits`` (closed form) and ``nll_bits`` (one z ~ q)."""

    kl_bits: Array
    nll_bits: Array

    @property
    def neg_elbo_bits(self) -> Array:
        return self.kl_bits + self.nll_bits


def elbo_terms(model: VAE, key: Array, x: Array) -> ElboTerms:
    """``KL[q(z|x)||p(z)]`` and ``-log2 p(x|z)`` with one reparameterised ``z ~ q``; ``x`` is ``(B, D)``."""
    q = model.posterior(x)
    z = q.sample(key)
    return ElboTerms(kl(q, model.prior()), -model.log_likelihood(x, z) / math.log(2.0))


def _flatten_images(images: Any, num_pixels: int) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise InvalidArgumentError(f"images must be uint8, got {arr.dtype}")
    arr = arr.reshape(arr.shape[0], -1)
    if arr.shape[1] != num_pixels:
        raise InvalidArgumentError(f"images have {arr.shape[1]} pixels, the model expects {num_pixels}")
    return arr


def train(
    model: VAE,
    images: Any,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[float]:
    """Trains ``model`` in place with Adam on uint8 ``images`` ``(N, ...)``; returns the per-epoch mean -ELBO in bpd.

    A tqdm bar per epoch shows the running -ELBO in bits per dimension.  The learning rate follows
    a cosine decay to 10% over all steps.  Deterministic given ``seed`` (on one machine).
    """
    from tqdm.auto import tqdm

    x_all = _flatten_images(images, model.config.num_pixels)
    num_batches = x_all.shape[0] // batch_size
    if num_batches < 1:
        raise InvalidArgumentError(f"need at least batch_size={batch_size} images, got {x_all.shape[0]}")
    schedule = optax.cosine_decay_schedule(learning_rate, epochs * num_batches, alpha=0.1)
    optimizer = nnx.Optimizer(model, optax.adam(schedule), wrt=nnx.Param)
    scale = 1.0 / model.config.num_pixels

    @nnx.jit
    def step(model: VAE, optimizer: nnx.Optimizer, key: Array, x: Array) -> Array:
        def loss_fn(model: VAE) -> Array:
            return jnp.mean(elbo_terms(model, key, x).neg_elbo_bits) * scale

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    history = []
    for epoch in range(epochs):
        order = rng.permutation(x_all.shape[0])[: num_batches * batch_size].reshape(num_batches, batch_size)
        total = 0.0
        bar = tqdm(order, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for i, idx in enumerate(bar):
            key, sub = jax.random.split(key)
            total += float(step(model, optimizer, sub, x_all[idx]))
            if i % 50 == 0:
                bar.set_postfix(neg_elbo_bpd=f"{total / (i + 1):.4f}")
        history.append(total / num_batches)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: train -ELBO {history[-1]:.4f} bpd")
    return history


@nnx.jit(static_argnums=3)
def _elbo_batch(model: VAE, key: Array, x: Array, num_samples: int) -> ElboTerms:
    terms = jax.vmap(lambda k: elbo_terms(model, k, x))(jax.random.split(key, num_samples))
    return ElboTerms(terms.kl_bits[0], jnp.mean(terms.nll_bits, axis=0))


def evaluate(model: VAE, images: Any, *, seed: int = 0, num_samples: int = 1, batch_size: int = 500) -> ElboTerms:
    """Per-image ``KL`` and ``-log2 p(x|z)`` (averaged over ``num_samples`` draws z ~ q), numpy ``(N,)`` each."""
    x_all = _flatten_images(images, model.config.num_pixels)
    key = jax.random.key(seed)
    parts = []
    for start in range(0, x_all.shape[0], batch_size):
        key, sub = jax.random.split(key)
        parts.append(_elbo_batch(model, sub, x_all[start : start + batch_size], num_samples))
    return ElboTerms(*(np.concatenate([np.asarray(getattr(p, f)) for p in parts]) for f in ElboTerms._fields))


def save_checkpoint(path: str | os.PathLike, model: VAE, metadata: dict[str, Any] | None = None) -> None:
    """Writes the config, float32 parameters and ``metadata`` (msgpack-able) to one file."""
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    blob = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "params": params,
        "metadata": metadata or {},
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(serialization.msgpack_serialize(blob))


def load_checkpoint(path: str | os.PathLike) -> tuple[VAE, dict[str, Any]]:
    """Reads a file written by :func:`save_checkpoint`: ``(model, metadata)``.

    Raises:
      FileNotFoundError: no such file (the message names it).
      FormatError: not a jaxrec VAE checkpoint, or parameters that do not fit the config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VAE checkpoint not found: {path}")
    try:
        blob = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # msgpack raises several unrelated types on garbage
        raise FormatError(f"{path}: not a msgpack checkpoint ({err})") from err
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise FormatError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    config = VAEConfig(**blob["config"])
    # the layers' shapes only: no initializer runs (each would compile a random-number program)
    model = nnx.eval_shape(lambda: VAE(config, rngs=nnx.Rngs(0)))
    state = nnx.state(model, nnx.Param)
    expected = jax.tree.map(np.shape, nnx.to_pure_dict(state))
    if jax.tree.map(np.shape, blob["params"]) != expected:
        raise FormatError(f"{path}: parameter shapes do not match the config {config}")
    nnx.replace_by_pure_dict(state, blob["params"])
    nnx.update(model, state)
    return model, blob["metadata"]


# --------------------------------------------------------------------------------------------------
# Shared statistics and the model bundle


def latent_statistics(model: VAE, images: Any, *, grid_size: int = 2048, batch_size: int = 2000) -> dict[str, Any]:
    """Per-dimension statistics of the posterior over a training set, in bits (shared side information).

    * ``kl_per_dim``: ``E_x KL[q(z_d|x) || p(z_d)]``, the mean posterior KL (what a block of
      dimensions costs on average; block plans are packed to it);
    * ``mi_per_dim``: the mutual information ``I(x; z_d) = E_x KL[q(z_d|x) || p] - KL[q(z_d) || p]``
      with ``q(z_d)`` the aggregate posterior (Hoffman & Johnson, NeurIPS 2016 workshop, "ELBO
      surgery"), evaluated on a grid of ``grid_size`` points over ``[-8, 8]`` (the mixture density
      of all posteriors, trapezoidal integration); space-partitioning grids spread their bins over
      the axes in proportion to it (He, Flamich & Hernandez-Lobato, NeurIPS 2024, Sec. 4).

    Returns:
      ``{"kl_per_dim": [L floats], "mi_per_dim": [L floats], "num_images": N}`` (msgpack-able).
    """
    x_all = _flatten_images(images, model.config.num_pixels)
    grid = np.linspace(-8.0, 8.0, grid_size)
    kl_sum = np.zeros(model.config.latent_dim)
    density = np.zeros((model.config.latent_dim, grid_size))
    posterior = nnx.jit(lambda m, x: m.posterior(x))
    for start in range(0, x_all.shape[0], batch_size):
        q = posterior(model, x_all[start : start + batch_size])
        loc, scale = np.asarray(q.loc, np.float64), np.asarray(q.scale, np.float64)
        kl_sum += np.asarray(kl(q, model.prior(), per_dim=True), np.float64).sum(axis=0)
        standard = (grid[None, None, :] - loc[:, :, None]) / scale[:, :, None]  # (n, L, G)
        density += (np.exp(-0.5 * standard**2) / (scale[:, :, None] * math.sqrt(2 * math.pi))).sum(axis=0)
    n = x_all.shape[0]
    density /= n
    log_p = -0.5 * grid**2 - 0.5 * math.log(2 * math.pi)
    integrand = np.where(density > 0, density * (np.log(np.maximum(density, 1e-300)) - log_p), 0.0)
    aggregate_kl = np.trapezoid(integrand, grid, axis=1) / math.log(2.0)
    kl_per_dim = kl_sum / n
    mi = np.clip(kl_per_dim - aggregate_kl, 0.0, None)
    return {"kl_per_dim": kl_per_dim.tolist(), "mi_per_dim": mi.tolist(), "num_images": int(n)}


_CODERS: dict[str, Callable[[], Any]] = {
    "sp_pfr": lambda: functools.partial(jaxrec.sp_pfr, max_steps=2**20),
    "sp_orc": lambda: functools.partial(jaxrec.sp_orc, num_samples=2**8),
    "pfr": lambda: jaxrec.pfr(max_steps=2**20),
    "orc": lambda: jaxrec.orc(2**16),
    "gprs": lambda: jaxrec.gprs(max_steps=2**20),
}
"""The coders a VAE bundle sets up (exact coders capped at 2^20 steps per block)."""


class VAEBundle:
    """A packaged VAE (a ``jaxrec.models`` bundle): the lossless codec and its shared statistics.

    Attributes:
      name: the model's name (e.g. ``"mnist-vae"``).
      codec: the :class:`VAE`.
      item_shape: ``(28, 28)``; item_dtype: ``uint8``.
      kl_per_dim, mi_per_dim: ``float64[L]`` training-set statistics (:func:`latent_statistics`).
      default_coder, default_blocks: what :meth:`setup` uses for ``None``.
      plan_seed: the key of the plans' shuffle; sp_bits_offset: ``log2 J = floor(block KL) + offset``.
      metadata: the checkpoint's metadata.
    """

    item_dtype = np.dtype(np.uint8)
    coders = tuple(_CODERS)

    def __init__(self, name: str, codec: VAE, metadata: dict[str, Any]):
        self.name = name
        self.codec = codec
        self.item_shape = codec.config.image_shape
        self.metadata = metadata
        stats, settings = metadata["stats"], metadata.get("bundle", {})
        self.kl_per_dim = np.asarray(stats["kl_per_dim"], np.float64)
        self.mi_per_dim = np.asarray(stats["mi_per_dim"], np.float64)
        self.default_coder = settings.get("coder", "sp_pfr")
        self.default_blocks = int(settings.get("blocks", 4))
        self.plan_seed = int(settings.get("plan_seed", 0))
        self.sp_bits_offset = int(settings.get("sp_bits_offset", 0))

    def setup(self, coder: str | None = None, blocks: int | None = None) -> tuple[Any, jaxrec.BlockPlan]:
        """``(coder, plan)`` for a coder name (``"sp_pfr"``, ``"sp_orc"``, ``"pfr"``, ``"orc"``,
        ``"gprs"``; None = the default) and a block count (None = the default; GPRS codes one
        dimension per block, so its count is the latent size).

        The plan splits the latent dimensions at random (shared key ``plan_seed``) into equal blocks;
        the Zipf budget of exact coders is the largest training-mean block KL; a space-partitioning
        coder gets per-block grids of ``floor(block KL) + sp_bits_offset`` bits spread over the axes
        in proportion to their mutual information. Deterministic: the decoder rebuilds the same plan.
        """
        name = self.default_coder if coder is None else coder
        if name not in _CODERS:
            raise InvalidArgumentError(f"coder must be one of {sorted(_CODERS)} for {self.name}, got {coder!r}")
        dim = self.kl_per_dim.size
        count = dim if name == "gprs" else (self.default_blocks if blocks is None else blocks)
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= dim:
            raise InvalidArgumentError(f"blocks must be an int in [1, {dim}], got {blocks!r}")
        if name == "gprs" and blocks not in (None, dim):
            raise InvalidArgumentError(f"gprs codes one dimension per block: blocks must be {dim} or None, got {blocks!r}")
        plan = _equal_plan(self.kl_per_dim, int(count), self.plan_seed)
        if name.startswith("sp_"):
            plan = _with_partitions(plan, self.kl_per_dim, self.mi_per_dim, self.sp_bits_offset)
        return _CODERS[name](), plan


def _equal_plan(kl_per_dim: np.ndarray, num_blocks: int, seed: int) -> jaxrec.BlockPlan:
    """A random split into ``num_blocks`` blocks of equal size (the first ``D mod B`` one larger)."""
    dim = kl_per_dim.size
    order = np.asarray(jax.random.permutation(prng.as_key(seed), dim))
    sizes = np.full(num_blocks, dim // num_blocks)
    sizes[: dim % num_blocks] += 1
    block_kl = np.array([kl_per_dim[idx].sum() for idx in np.split(order, np.cumsum(sizes)[:-1])])
    return jaxrec.BlockPlan(order=order, sizes=sizes, budget_bits=float(block_kl.max()), block_kl=block_kl)


def _with_partitions(plan: jaxrec.BlockPlan, kl_per_dim: np.ndarray, mi_per_dim: np.ndarray, offset: int) -> jaxrec.BlockPlan:
    def bits_for(dims: np.ndarray) -> np.ndarray:
        total = int(np.clip(math.floor(kl_per_dim[dims].sum()) + offset, 0, partition.MAX_PACKED_BITS))
        return partition.allocate_bits(mi_per_dim[dims], total, "mi")

    max_bits = max(int(bits_for(plan.index[b, : plan.sizes[b]]).max()) for b in range(plan.num_blocks))

    def build(dims: np.ndarray, size: int) -> partition.Partition:
        bits = np.zeros(size, np.int64)
        bits[: dims.size] = bits_for(dims)
        return partition.Partition.from_bits(bits, 2**max_bits)

    return plan.with_partitions(build)


def load_bundle(path: str | os.PathLike) -> VAEBundle:
    """Reads a VAE checkpoint with training statistics (the ``"jaxrec-vae-1"`` loader of ``jaxrec.models``).

    Raises:
      FileNotFoundError: no such file.
      FormatError: not a VAE checkpoint, or one without the statistics a bundle needs.
    """
    model, metadata = load_checkpoint(path)
    stats = metadata.get("stats") if isinstance(metadata, dict) else None
    dim = model.config.latent_dim
    if not isinstance(stats, dict) or any(np.shape(stats.get(k)) != (dim,) for k in ("kl_per_dim", "mi_per_dim")):
        raise FormatError(f"{path}: the checkpoint has no training statistics (kl_per_dim, mi_per_dim) of size {dim}")
    return VAEBundle(Path(path).name.split(".")[0], model, metadata)
