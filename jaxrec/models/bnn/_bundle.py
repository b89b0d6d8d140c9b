"""The compressed network: one file holding a standard jaxrec REC container and the side information.

File (msgpack, ``flax.serialization``): a dict

    {"format": "jaxrec-bnn-1",
     "config": [the NetworkConfig fields in order],       # architecture, block plan and hash seeds
     "prior": float32 little-endian bytes,                  # log sigma_p of every tensor (learned)
     "rec":   bytes}                                        # the container of jaxrec.compress

The container (:mod:`jaxrec.codec.container`) is an ordinary one-item file of the codec
:class:`~jaxrec.models.bnn.MiracleCodec` (item 0, a dummy index), so any decoder of the library
reads it; the config rebuilds the architecture, the hashing tables and the block plan (all from
seeds), and the prior log-scales are stored exactly (float32). The overhead over the container is
the format tag and field names (44 bytes), the config (45 bytes for LeNet-5) and ``4 T`` bytes of
scales (``T`` tensors, 8 for LeNet-5): about 120 bytes for LeNet-5, next to the container's 43-45
header bytes and its payload of ``ceil(B log2 N / 32)`` 32-bit words (1,108 bytes for 886 blocks
of 10 bits).

:func:`load_bundle` returns a :class:`CompressedNetwork`, the model bundle of ``jaxrec.models``
(``name``, ``codec``, ``item_shape``, ``item_dtype``, ``setup``) with the decoded network on top:
``weights()``, ``logits(images)``, ``error(images, labels)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx, serialization

import jaxrec
from jaxrec.codec import BlockPlan
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.models.bnn._codec import MiracleCodec
from jaxrec.models.bnn._network import BayesianNetwork, NetworkConfig
from jaxrec.models.bnn._train import evaluate

Array = jax.Array

__all__ = ["CODERS", "COMPRESSED_FORMAT", "PFR_MAX_STEPS", "CompressedNetwork", "load_bundle", "save_compressed"]

COMPRESSED_FORMAT = "jaxrec-bnn-1"
CODERS = ("mrc", "orc", "pfr", "sp_orc")
"""Coder names :meth:`CompressedNetwork.setup` knows; ``"mrc"`` (MIRACLE's) is the default."""
PFR_MAX_STEPS = 2**20
"""The candidates PFR may examine per block (see :meth:`CompressedNetwork.setup`)."""


def save_compressed(path: str | os.PathLike, network: BayesianNetwork, container: bytes) -> int:
    """Writes the compressed network (see the module docstring); returns its size in bytes.

    Args:
      path: the file to write.
      network: the encoder's network (config and prior scales are taken from it).
      container: the file of ``jaxrec.compress(MiracleCodec(network, ...), 0, ..., plan=network.plan)``.
    """
    if not isinstance(container, (bytes, bytearray)):
        raise InvalidArgumentError(f"container must be bytes, got {type(container).__name__}")
    blob = {
        "format": COMPRESSED_FORMAT,
        "config": list(network.config.to_dict().values()),
        "prior": np.asarray(network.log_prior_scales(), "<f4").tobytes(),
        "rec": bytes(container),
    }
    data = serialization.msgpack_serialize(blob)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


class CompressedNetwork:
    """A compressed network loaded by :func:`load_bundle` (a ``jaxrec.models`` bundle).

    Attributes:
      name: the file's stem.
      codec: the decode-only :class:`MiracleCodec` (prior with the stored scales).
      network: the :class:`BayesianNetwork` architecture (its posterior parameters are unused).
      container: the REC container (bytes).
      item_shape, item_dtype: ``()`` and int32: the item is a dummy index.
    """

    item_shape: tuple[int, ...] = ()
    item_dtype = np.dtype(np.int32)

    def __init__(self, name: str, network: BayesianNetwork, container: bytes):
        self.name = name
        self.network = network
        self.codec = MiracleCodec(network)
        self.container = container
        self._weights: Array | None = None

    @property
    def config(self) -> NetworkConfig:
        return self.network.config

    def setup(self, coder: str | None = None, blocks: int | None = None) -> tuple[Any, BlockPlan]:
        """``(coder, plan)`` for a coder name (:data:`CODERS`; None = ``"mrc"``) and the block count.

        MRC and ORC use ``N = 2^ceil(bits_per_block)`` candidates. PFR is exact but examines about
        ``2^{D_inf}`` candidates per block and needs a bounded density ratio: a Mean-Var posterior
        wider than its prior is refused, and a Mean-KL weight whose KL is all in its mean (at the
        edge of the feasible ball, ``sigma -> sigma_p``) makes ``D_inf`` unbounded, so its search is
        capped at :data:`PFR_MAX_STEPS` candidates (a capped block is flagged and warned about by
        ``jaxrec.compress`` and holds the best candidate found). SP-ORC partitions
        ``floor(bits / 2)`` bits of each block evenly over its variables and searches
        ``2^ceil(bits - floor(bits / 2))`` candidates. ``blocks`` must be None or the plan's
        count: the block size is part of the network's config.
        """
        plan = self.network.plan
        if blocks is not None and blocks != plan.num_blocks:
            raise InvalidArgumentError(f"this network is coded in {plan.num_blocks} blocks, got blocks={blocks!r}")
        bits = self.config.bits_per_block
        name = "mrc" if coder is None else coder
        if name == "mrc":
            return jaxrec.mrc(2 ** math.ceil(bits)), plan
        if name == "orc":
            return jaxrec.orc(2 ** math.ceil(bits)), plan
        if name == "pfr":
            return jaxrec.pfr(max_steps=PFR_MAX_STEPS), plan
        if name == "sp_orc":
            bin_bits = int(bits // 2)

            def build(dims: np.ndarray, size: int) -> Any:
                mi = np.zeros(size)
                mi[: dims.size] = bits / dims.size
                return jaxrec.partition_from_mi(mi, bin_bits, max_intervals=2**bin_bits)

            return functools.partial(jaxrec.sp_orc, num_samples=2 ** math.ceil(bits - bin_bits)), plan.with_partitions(build)
        raise InvalidArgumentError(f"coder must be one of {CODERS} or None, got {coder!r}")

    def weights(self) -> Array:
        """The decoded variables ``z`` ``(D,)`` (decoded on first use, then kept).

        Raises:
          FormatError: a malformed container, or one whose coder or plan does not fit the network.
        """
        if self._weights is None:
            coder = jaxrec.codec.describe(self.container)["coder"]
            if coder not in CODERS:
                raise FormatError(f"{self.name}: the container's coder {coder!r} is not one of {CODERS}")
            self._weights = jaxrec.decompress(self.codec, self.container, plan=self.setup(coder)[1])
        return self._weights

    def logits(self, images: Any) -> Array:
        """Class logits ``(N, num_classes)`` of the decoded network on uint8 ``images``."""
        return self.network.logits(self.weights(), images)

    def error(self, images: Any, labels: Any) -> float:
        """Test error rate of the decoded network."""
        return evaluate(self.network, images, labels, self.weights())


def load_bundle(path: str | os.PathLike) -> CompressedNetwork:
    """Reads a file written by :func:`save_compressed` (the ``"jaxrec-bnn-1"`` loader of ``jaxrec.models``).

    Raises:
      FileNotFoundError: no such file.
      FormatError: not a compressed network, or inconsistent contents (config, prior scales).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"compressed network not found: {path}")
    try:
        blob = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # msgpack raises several unrelated types on garbage
        raise FormatError(f"{path}: not a msgpack file ({err})") from err
    if not isinstance(blob, dict) or blob.get("format") != COMPRESSED_FORMAT or set(blob) != {"format", "config", "prior", "rec"}:
        raise FormatError(f"{path}: not a {COMPRESSED_FORMAT} file")
    names = [f.name for f in dataclasses.fields(NetworkConfig)]
    if not isinstance(blob["config"], (list, tuple)) or len(blob["config"]) != len(names):
        raise FormatError(f"{path}: the config must list {len(names)} fields")
    try:
        config = NetworkConfig.from_dict(dict(zip(names, blob["config"])))
    except (InvalidArgumentError, TypeError) as err:
        raise FormatError(f"{path}: invalid network config ({err})") from err
    network = BayesianNetwork(config, rngs=nnx.Rngs(0))
    prior, rec = blob["prior"], blob["rec"]
    if not isinstance(prior, bytes) or len(prior) != 4 * len(network.tensor_sizes) or not isinstance(rec, bytes):
        raise FormatError(f"{path}: expected {len(network.tensor_sizes)} float32 prior log-scales and a container")
    scales = np.frombuffer(prior, "<f4")
    if not np.all(np.isfinite(scales)):
        raise FormatError(f"{path}: non-finite prior log-scales")
    network.set_log_prior_scales(scales)
    return CompressedNetwork(path.stem, network, rec)
