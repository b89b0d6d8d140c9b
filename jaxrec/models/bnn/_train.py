"""Training a :class:`~jaxrec.models.bnn.BayesianNetwork` with optax, checkpoints and progress bars.

MIRACLE's schedule (Havasi, Peharz & Hernandez-Lobato, ICLR 2019, and its official code): first
train without the KL term (:func:`pretrain`; 200k steps for LeNet-5), then train the variational
posterior (:func:`train`; another 200k), with Adam at ``1e-3``, batch 256 and one reparameterized
weight sample ``z ~ q`` per minibatch:

* **Mean-Var**: ``loss = CE(z; batch) + sum_b lambda_b KL_b`` (nats), and after every step
  ``lambda_b <- lambda_b * gamma`` if ``KL_b > K`` else ``lambda_b / gamma`` (MIRACLE's per-block
  multiplicative penalty, ``lambda_b`` starting at ``1e-8``, ``gamma = 1.0001`` for LeNet-5), so
  every block's KL is driven to the budget ``K = bits_per_block ln 2``. ``lambda`` can only change
  by a factor ``gamma^steps``: a shortened schedule needs a larger ``gamma``.
* **Mean-KL** (Lin, Flamich & Hernandez-Lobato, ICML 2023 NC workshop): ``loss = CE(z; batch)``;
  every block's KL is ``K`` by construction, nothing is annealed.

Minibatch ``s`` is drawn with replacement from ``fold_in(key(seed), s)`` and the weight sample from
a second fold, so a run resumed from a checkpoint (which stores the parameters, the KL penalties,
the optimizer state, the step and the history) continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, serialization

from jaxrec.core.distributions import DiagGaussian
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.models.bnn._network import BayesianNetwork, NetworkConfig

Array = jax.Array

__all__ = [
    "CHECKPOINT_FORMAT",
    "History",
    "cross_entropy",
    "evaluate",
    "load_checkpoint",
    "minibatch",
    "pretrain",
    "save_checkpoint",
    "train",
    "updated_penalty",
    "variational_loss",
]

CHECKPOINT_FORMAT = "jaxrec-bnn-checkpoint-1"
_LN2 = math.log(2.0)


@dataclasses.dataclass
class History:
    """Training curves.

    Attributes:
      step: logged steps (every ``log_every``, and the last).
      loss, cross_entropy: means over the steps since the previous log (nats).
      kl_mean_bits, kl_max_bits: mean and largest block KL at the logged step (bits).
      seconds: training wall time up to the logged step (evaluations excluded).
      eval_step, eval_error: test error of one posterior sample (fixed key) every ``eval_every``.
    """

    step: list[int] = dataclasses.field(default_factory=list)
    loss: list[float] = dataclasses.field(default_factory=list)
    cross_entropy: list[float] = dataclasses.field(default_factory=list)
    kl_mean_bits: list[float] = dataclasses.field(default_factory=list)
    kl_max_bits: list[float] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)
    eval_step: list[int] = dataclasses.field(default_factory=list)
    eval_error: list[float] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, list]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(**{f.name: list(data.get(f.name, [])) for f in dataclasses.fields(cls)})


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy in nats of ``logits`` ``(N, K)`` against int ``labels`` ``(N,)``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _check_data(images: Any, labels: Any, config: NetworkConfig, batch_size: int) -> tuple[Array, Array]:
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    if images.dtype != jnp.uint8 or images.ndim not in (3, 4):
        raise InvalidArgumentError(f"images must be uint8 (N, H, W[, C]), got {images.dtype} {images.shape}")
    if labels.shape != images.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise InvalidArgumentError(f"labels must be ints of shape ({images.shape[0]},), got {labels.dtype} {labels.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be an int >= 1, got {batch_size!r}")
    return images, labels.astype(jnp.int32)


def minibatch(images: Array, labels: Array, key: Array, batch_size: int) -> tuple[Array, Array]:
    """``batch_size`` examples drawn uniformly with replacement with ``key``."""
    idx = jax.random.randint(key, (batch_size,), 0, images.shape[0])
    return images[idx], labels[idx]


@nnx.jit(static_argnames="batch_size")
def _pretrain_step(net: BayesianNetwork, optimizer: nnx.Optimizer, images: Array, labels: Array, key: Array,
                   batch_size: int) -> Array:
    x, y = minibatch(images, labels, key, batch_size)

    def loss_fn(net: BayesianNetwork) -> Array:
        return cross_entropy(net.logits(net.flat_params()[0], x), y)

    loss, grads = nnx.value_and_grad(loss_fn)(net)
    optimizer.update(net, grads)
    return loss


def variational_loss(
    net: BayesianNetwork, q: DiagGaussian, prior: DiagGaussian, z: Array, x: Array, y: Array, penalty: Array,
    active: Array | bool = True,
) -> tuple[Array, tuple[Array, Array]]:
    """MIRACLE's objective for the weight sample ``z`` of ``q``: ``CE(z; x, y)``, plus under Mean-Var
    ``sum_b lambda_b KL_b`` (nats) over the ``active`` blocks (``bool[B]``; retraining leaves out
    the sent ones).

    Returns:
      ``(loss, (cross_entropy, block_kl_bits))``.
    """
    ce = cross_entropy(net.logits(z, x), y)
    block_kl = net.block_kl(q, prior)
    if net.config.parameterization != "mean_var":
        return ce, (ce, block_kl)
    return ce + jnp.sum(jnp.where(active, penalty * block_kl * _LN2, 0.0)), (ce, block_kl)


def updated_penalty(net: BayesianNetwork, penalty: Array, block_kl: Array, gamma: Array | float,
                    active: Array | bool = True) -> Array:
    """MIRACLE's update of the active blocks' penalties: ``lambda_b gamma`` where ``KL_b`` exceeds
    the budget, ``lambda_b / gamma`` elsewhere (Mean-KL: unchanged, it has no penalty)."""
    if net.config.parameterization != "mean_var":
        return penalty
    changed = jnp.where(block_kl > net.config.bits_per_block, penalty * gamma, penalty / gamma)
    return jnp.where(active, changed, penalty)


@nnx.jit(static_argnames="batch_size")
def _train_step(net: BayesianNetwork, optimizer: nnx.Optimizer, images: Array, labels: Array, key: Array,
                penalty_step: Array, batch_size: int) -> tuple[Array, Array, Array]:
    x, y = minibatch(images, labels, jax.random.fold_in(key, 0), batch_size)

    def loss_fn(net: BayesianNetwork) -> tuple[Array, tuple[Array, Array]]:
        prior = net.prior()
        q = net.posterior_from(*net.flat_params(), prior)
        return variational_loss(net, q, prior, q.sample(jax.random.fold_in(key, 1)), x, y, net.kl_penalty.get_value())

    (loss, (ce, block_kl)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(net)
    optimizer.update(net, grads)
    net.kl_penalty.set_value(updated_penalty(net, net.kl_penalty.get_value(), block_kl, penalty_step))
    return loss, ce, block_kl


def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=False)


def pretrain(
    net: BayesianNetwork,
    images: Any,
    labels: Any,
    *,
    steps: int,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Trains the means (``loc``) in place as a deterministic network (``z = loc``), no KL term.

    Returns:
      The mean cross-entropy (nats) of every block of 100 steps.
    """
    images, labels = _check_data(images, labels, net.config, batch_size)
    wrt = nnx.All(nnx.Param, nnx.PathContains("loc"))
    optimizer = nnx.Optimizer(net, optax.adam(learning_rate), wrt=wrt)
    key = jax.random.key(seed)
    losses, window = [], []
    with _progress(steps, 0, "pretrain", progress) as bar:
        for step in range(steps):
            window.append(_pretrain_step(net, optimizer, images, labels, jax.random.fold_in(key, step), batch_size))
            if len(window) == 100 or step + 1 == steps:
                losses.append(float(jnp.mean(jnp.stack(window))))
                window = []
                bar.set_postfix(ce=f"{losses[-1]:.4f}")
            bar.update(1)
    return losses


def train(
    net: BayesianNetwork,
    images: Any,
    labels: Any,
    *,
    steps: int,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    penalty_step: float = 1.0001,
    seed: int = 0,
    eval_data: tuple[Any, Any] | None = None,
    eval_every: int = 1000,
    log_every: int = 50,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    progress: bool = True,
) -> History:
    """Variational training (Mean-Var with MIRACLE's KL penalty, or Mean-KL) in place.

    Args:
      net: the network (its config's parameterization decides the loss).
      images, labels: training data, uint8 ``(N, H, W[, C])`` and ints ``(N,)``.
      steps: total number of steps (a resumed run continues up to it).
      batch_size, learning_rate: Adam on all parameters (means, spreads, prior log-scales).
      penalty_step: ``gamma`` of the Mean-Var penalty update (ignored by Mean-KL).
      seed: seed of the minibatches and weight samples.
      eval_data: ``(images, labels)`` for the error curve, or None.
      eval_every, log_every: curve resolution in steps.
      checkpoint: file written every ``checkpoint_every`` steps and at the end; when it exists at
        the start, training resumes from it (its network config and its batch size, learning rate,
        penalty step and seed must match, else :class:`InvalidArgumentError`).
      progress: show a tqdm bar.

    Returns:
      The :class:`History` (including the part before a resume).
    """
    images, labels = _check_data(images, labels, net.config, batch_size)
    if not (isinstance(penalty_step, (int, float)) and penalty_step >= 1.0):
        raise InvalidArgumentError(f"penalty_step must be a number >= 1, got {penalty_step!r}")
    optimizer = nnx.Optimizer(net, optax.adam(learning_rate), wrt=nnx.Param)
    history, start = History(), 0
    settings = {"batch_size": batch_size, "learning_rate": float(learning_rate), "penalty_step": float(penalty_step),
                "seed": int(seed)}
    if checkpoint is not None and Path(checkpoint).is_file():
        start, history = _restore(Path(checkpoint), net, optimizer, settings)
    key = jax.random.key(seed)
    gamma = jnp.float32(penalty_step)
    eval_key = jax.random.key(seed + 1)
    elapsed = history.seconds[-1] if history.seconds else 0.0
    losses, ces = [], []
    with _progress(steps, start, net.config.parameterization, progress) as bar:
        for step in range(start, steps):
            tic = time.perf_counter()
            loss, ce, block_kl = _train_step(net, optimizer, images, labels, jax.random.fold_in(key, step), gamma,
                                             batch_size)
            losses.append(loss.block_until_ready())
            ces.append(ce)
            done = step + 1
            if done % log_every == 0 or done == steps:
                history.step.append(done)
                history.loss.append(float(jnp.mean(jnp.stack(losses))))
                history.cross_entropy.append(float(jnp.mean(jnp.stack(ces))))
                history.kl_mean_bits.append(float(block_kl.mean()))
                history.kl_max_bits.append(float(block_kl.max()))
                losses, ces = [], []
            elapsed += time.perf_counter() - tic
            if history.step and history.step[-1] == done:
                history.seconds.append(elapsed)
                bar.set_postfix(ce=f"{history.cross_entropy[-1]:.3f}", kl=f"{history.kl_mean_bits[-1]:.2f}b")
            if eval_data is not None and (done % eval_every == 0 or done == steps):
                z = net.posterior().sample(eval_key)
                history.eval_step.append(done)
                history.eval_error.append(evaluate(net, *eval_data, z))
            if checkpoint is not None and (done % checkpoint_every == 0 or done == steps):
                save_checkpoint(checkpoint, net, optimizer=optimizer, step=done, history=history,
                                metadata={"train_settings": settings})
            bar.update(1)
    return history


@nnx.jit
def _predict(net: BayesianNetwork, z: Array, images: Array) -> Array:
    return jnp.argmax(net.logits(z, images), axis=-1)


def evaluate(net: BayesianNetwork, images: Any, labels: Any, z: Any, *, batch_size: int = 1000) -> float:
    """Error rate of the network with the variables ``z`` ``(D,)`` on uint8 ``images``, int ``labels``."""
    images, labels = _check_data(images, labels, net.config, batch_size)
    z = jnp.asarray(z, jnp.float32)
    if z.shape != (net.num_variables,):
        raise InvalidArgumentError(f"z must have shape ({net.num_variables},), got {z.shape}")
    wrong = 0
    for a in range(0, images.shape[0], batch_size):
        wrong += int(jnp.sum(_predict(net, z, images[a : a + batch_size]) != labels[a : a + batch_size]))
    return wrong / images.shape[0]


# ------------------------------------------------------------------------------------------------
# Checkpoints


def _pure(state: Any) -> Any:
    return jax.tree.map(np.asarray, nnx.to_pure_dict(state))


def save_checkpoint(
    path: str | os.PathLike,
    net: BayesianNetwork,
    *,
    optimizer: nnx.Optimizer | None = None,
    step: int = 0,
    history: History | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Writes one msgpack file: config, parameters, KL penalties, optimizer state, step, history, metadata."""
    blob = {
        "format": CHECKPOINT_FORMAT,
        "config": net.config.to_dict(),
        "params": _pure(nnx.state(net, nnx.Param)),
        "kl_penalty": np.asarray(net.kl_penalty.get_value()),
        "optimizer": _pure(nnx.state(optimizer)) if optimizer is not None else {},
        "step": int(step),
        "history": (history or History()).to_dict(),
        "metadata": metadata or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(serialization.msgpack_serialize(blob))
    tmp.replace(path)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"BNN checkpoint not found: {path}")
    try:
        blob = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # msgpack raises several unrelated types on garbage
        raise FormatError(f"{path}: not a msgpack checkpoint ({err})") from err
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise FormatError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    return blob


def _replace(target: Any, pure: Any, path: Path, what: str) -> None:
    state = nnx.state(target, nnx.Param) if isinstance(target, BayesianNetwork) else nnx.state(target)
    if jax.tree.map(np.shape, nnx.to_pure_dict(state)) != jax.tree.map(np.shape, pure):
        raise FormatError(f"{path}: the stored {what} do not fit the network")
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(target, state)


def _restore(path: Path, net: BayesianNetwork, optimizer: nnx.Optimizer, settings: dict[str, Any]) -> tuple[int, History]:
    blob = _read(path)
    if blob["config"] != net.config.to_dict():
        raise InvalidArgumentError(f"{path} was written for another network config: {blob['config']}")
    stored = blob["metadata"].get("train_settings")
    if stored != settings:
        raise InvalidArgumentError(f"{path} was written with other training settings: {stored} (now {settings})")
    _replace(net, blob["params"], path, "parameters")
    net.kl_penalty.set_value(jnp.asarray(blob["kl_penalty"], jnp.float32))
    if blob["optimizer"]:
        _replace(optimizer, blob["optimizer"], path, "optimizer state")
    return int(blob["step"]), History.from_dict(blob["history"])


def load_checkpoint(path: str | os.PathLike) -> tuple[BayesianNetwork, dict[str, Any]]:
    """Reads a :func:`save_checkpoint` file: ``(network, info)`` with ``info`` holding ``step``,
    ``history`` (a :class:`History`) and ``metadata``.

    Raises:
      FileNotFoundError: no such file.
      FormatError: not a BNN checkpoint, or parameters that do not fit its config.
    """
    path = Path(path)
    blob = _read(path)
    try:
        config = NetworkConfig.from_dict(blob["config"])
    except InvalidArgumentError as err:
        raise FormatError(f"{path}: invalid network config ({err})") from err
    net = BayesianNetwork(config, rngs=nnx.Rngs(0))
    _replace(net, blob["params"], path, "parameters")
    net.kl_penalty.set_value(jnp.asarray(blob["kl_penalty"], jnp.float32))
    info = {"step": int(blob["step"]), "history": History.from_dict(blob["history"]), "metadata": blob["metadata"]}
    return net, info
