"""Prior files of the INR codec (format ``"jaxrec-inr-1"``) and the bundle jaxrec.models loads.

A prior file is one msgpack dict (flax serialization) holding everything both sides share:

| key | content |
|---|---|
| ``format`` | ``"jaxrec-inr-1"`` |
| ``config`` | :class:`~jaxrec.models.inr.InrConfig` as a dict |
| ``network`` | the learned upsampler and matrices ``A_l`` (float32, or float16 to save space) |
| ``prior_loc``, ``prior_scale`` | the learned prior, float32 ``(D,)`` |
| ``init_rho`` | the training images' mean posterior ``rho``, float32 ``(D,)`` |
| ``beta`` | the trained beta |
| ``kl_per_dim`` | the training-mean KL per latent in bits, float64 ``(D,)`` (plans, partitions) |
| ``encoder`` | the posterior optimization: ``fit``/``refine`` steps, learning rate, samples; the band |
| ``coders`` | per setting name: :class:`CoderSetting` (coder, KL band, candidates, partition offset, ...) |
| ``plans`` | per setting name: the default plan (``order``, ``sizes``, partition bits) |
| ``default_coder``, ``plan_seed``, ``metadata`` | |

The block plan of a coder packs the latents to ``kappa`` bits of training KL per block
(:func:`jaxrec.plan_blocks`, shuffled with ``plan_seed``, COMBINER's cap of 25 per group when the
config sets one). Space-partitioning coders get one grid per block: ``log2 J = floor(kappa) +
partition_offset`` bits spread over the block's axes in proportion to their training KL
(:func:`jaxrec.partition_from_mi`; He, Flamich & Hernandez-Lobato, NeurIPS 2024).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx, serialization

import jaxrec
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.models.inr._codec import InrCodec, groups_of_plan
from jaxrec.models.inr._config import InrConfig
from jaxrec.models.inr._network import InrNetwork
from jaxrec.models.inr._posterior import Band, FitSettings
from jaxrec.models.inr._prior import PriorFit

__all__ = ["FORMAT", "CoderSetting", "InrBundle", "load_bundle", "make_plan", "save_prior"]

FORMAT = "jaxrec-inr-1"
CODERS = ("orc", "sp_orc", "sp_pfr")


@dataclasses.dataclass(frozen=True)
class CoderSetting:
    """How one coder is used with the INR (a prior file offers several, by name).

    Attributes:
      kind: the coder: ``"orc"`` (standard ORC, COMBINER/RECOMBINER), ``"sp_orc"`` or ``"sp_pfr"``.
      kappa: the KL band of every block in bits (the plan packs ``kappa`` bits of training KL per
        block; the encoder's controller keeps each block in ``[kappa - 0.4, kappa]``).
      num_samples: candidates of ORC / SP-ORC (the papers: ``2^16`` at ``kappa = 16``).
      max_steps: SP-PFR's candidate limit.
      partition_offset: SP coders: ``log2 J = floor(kappa) + partition_offset`` per block.
      max_scale_ratio: cap of posterior scale / prior scale (SP-PFR needs a bounded ratio).
    """

    kind: str
    kappa: float
    num_samples: int | None = None
    max_steps: int | None = None
    partition_offset: int = 0
    max_scale_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in CODERS:
            raise InvalidArgumentError(f"kind must be one of {CODERS}, got {self.kind!r}")
        if not (math.isfinite(self.kappa) and self.kappa > 0):
            raise InvalidArgumentError(f"kappa must be finite and > 0, got {self.kappa!r}")
        if self.kind in ("orc", "sp_orc") and not (isinstance(self.num_samples, int) and self.num_samples >= 1):
            raise InvalidArgumentError(f"{self.kind} needs num_samples >= 1, got {self.num_samples!r}")
        if self.kind == "sp_pfr" and not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            raise InvalidArgumentError(f"sp_pfr needs max_steps >= 1, got {self.max_steps!r}")
        if self.max_scale_ratio is not None and not 0 < self.max_scale_ratio < 1:
            raise InvalidArgumentError(f"max_scale_ratio must lie in (0, 1) or be None, got {self.max_scale_ratio!r}")

    @property
    def partitioned(self) -> bool:
        return self.kind.startswith("sp_")

    def coder(self) -> jaxrec.Coder | Callable[[jaxrec.Partition], jaxrec.Coder]:
        """The coder, or for SP coders the ``partition -> Coder`` callable ``compress`` takes."""
        if self.kind == "orc":
            return jaxrec.orc(self.num_samples)
        if self.kind == "sp_orc":
            return functools.partial(jaxrec.sp_orc, num_samples=self.num_samples)
        return functools.partial(jaxrec.sp_pfr, max_steps=self.max_steps)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _partition_bits(kl_per_dim: np.ndarray, plan: jaxrec.BlockPlan, setting: CoderSetting) -> np.ndarray:
    """``int (B, S)``: ``log2 J_d`` of every block coordinate (0 on padding)."""
    from jaxrec.coders.sp.partition import MAX_PACKED_BITS, allocate_bits

    bits = np.zeros((plan.num_blocks, plan.max_size), np.int64)
    for b in range(plan.num_blocks):
        dims = plan.index[b, : plan.sizes[b]]
        informative = int(np.sum(kl_per_dim[dims] > 0.05))
        total = int(np.clip(math.floor(setting.kappa) + setting.partition_offset, 0, min(MAX_PACKED_BITS, 30 * informative)))
        bits[b, : dims.size] = allocate_bits(kl_per_dim[dims], total, "mi")
    return bits


def _with_partitions(plan: jaxrec.BlockPlan, bits: np.ndarray) -> jaxrec.BlockPlan:
    max_intervals = 2 ** int(bits.max())
    rows = {tuple(plan.index[b, : plan.sizes[b]].tolist()): bits[b] for b in range(plan.num_blocks)}
    return plan.with_partitions(lambda dims, size: jaxrec.Partition.from_bits(rows[tuple(dims.tolist())], max_intervals))


def make_plan(
    kl_per_dim: np.ndarray, setting: CoderSetting, config: InrConfig, plan_seed: int, blocks: int | None = None
) -> jaxrec.BlockPlan:
    """The block plan of ``setting`` (module docstring); with ``blocks``, the plan of exactly that
    many blocks (the packing budget found by bisection) when one exists, else the nearest above.

    Deterministic (float64 sums, a threefry shuffle), so encoder and decoder rebuild the same plan.
    """
    kl = np.asarray(kl_per_dim, np.float64)
    pack = lambda budget: jaxrec.plan_blocks(kl, budget, key=plan_seed, max_block_size=config.max_group_size)
    if blocks is None:
        plan = pack(setting.kappa)
    else:
        if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 1:
            raise InvalidArgumentError(f"blocks must be an int >= 1 or None, got {blocks!r}")
        lo, hi = 1e-9, float(kl.sum()) + 1.0  # pack(hi) has the fewest blocks
        if pack(hi).num_blocks > blocks:
            raise InvalidArgumentError(f"this model needs at least {pack(hi).num_blocks} blocks, got blocks={blocks}")
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if pack(mid).num_blocks > blocks else (lo, mid)
        plan = pack(hi)
        plan = jaxrec.BlockPlan(plan.order, plan.sizes, setting.kappa, plan.block_kl)
    if setting.partitioned:
        plan = _with_partitions(plan, _partition_bits(kl, plan, setting))
    return plan


def _plan_record(plan: jaxrec.BlockPlan) -> dict[str, Any]:
    record = {"order": plan.order, "sizes": plan.sizes, "budget_bits": plan.budget_bits}
    if plan.partitions is not None:
        record["partition_bits"] = np.log2(np.asarray(plan.partitions.num_intervals)).astype(np.uint8)
    return record


def _plan_from_record(record: dict[str, Any]) -> jaxrec.BlockPlan:
    plan = jaxrec.BlockPlan(np.asarray(record["order"]), np.asarray(record["sizes"]), float(record["budget_bits"]))
    if "partition_bits" in record:
        bits = np.asarray(record["partition_bits"]).astype(np.int64)
        if bits.shape != (plan.num_blocks, plan.max_size):
            raise FormatError(f"partition_bits must have shape {(plan.num_blocks, plan.max_size)}, got {bits.shape}")
        plan = _with_partitions(plan, bits)
    return plan


def save_prior(
    path: str | os.PathLike,
    fit: PriorFit,
    coders: dict[str, CoderSetting],
    *,
    default_coder: str = "orc",
    fit_settings: FitSettings,
    refine_settings: FitSettings,
    band: Band | None = None,
    plan_seed: int = 0,
    weights_dtype: str = "float32",
    metadata: dict[str, Any] | None = None,
) -> int:
    """Writes a prior file (module docstring) from a learned prior; returns its size in bytes.

    Args:
      path: the file to write.
      fit: the result of :func:`~jaxrec.models.inr.learn_prior`.
      coders: the coder settings the file offers, by name (``bundle.setup(name)``; conventionally
        the coder's kind, e.g. ``"orc"``); ``default_coder`` must be one of them.
      fit_settings, refine_settings: the encoder's posterior optimization (``target``, ``refine``).
      band: the controller's band (default :class:`Band`; ``kappa`` is replaced by each coder's).
      plan_seed: the shuffle of the block plans.
      weights_dtype: ``"float32"``, or ``"float16"`` to halve the network's share of the file
        (the codec then uses the rounded weights on both sides).
      metadata: msgpack-able extras (training settings, history).
    """
    if default_coder not in coders or not all(isinstance(s, CoderSetting) for s in coders.values()):
        raise InvalidArgumentError(f"coders must map names to CoderSettings and hold {default_coder!r}")
    if weights_dtype not in ("float32", "float16"):
        raise InvalidArgumentError(f"weights_dtype must be 'float32' or 'float16', got {weights_dtype!r}")
    config = fit.network.config
    params = jax.tree.map(lambda a: np.asarray(a, weights_dtype), nnx.to_pure_dict(nnx.state(fit.network, nnx.Param)))
    blob = {
        "format": FORMAT,
        "config": config.to_dict(),
        "network": params,
        "prior_loc": np.asarray(fit.prior.loc, np.float32),
        "prior_scale": np.asarray(fit.prior.scale, np.float32),
        "init_rho": np.asarray(fit.init_rho, np.float32),
        "beta": float(fit.beta),
        "kl_per_dim": np.asarray(fit.kl_per_dim, np.float64),
        "encoder": {"fit": fit_settings._asdict(), "refine": refine_settings._asdict(), "band": (band or Band())._asdict()},
        "coders": {name: s.to_dict() for name, s in coders.items()},
        "plans": {name: _plan_record(make_plan(fit.kl_per_dim, s, config, plan_seed)) for name, s in coders.items()},
        "default_coder": default_coder,
        "plan_seed": plan_seed,
        "metadata": metadata or {},
    }
    data = serialization.msgpack_serialize(_drop_none(blob))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    return len(data)


def _drop_none(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _drop_none(v) for k, v in tree.items() if v is not None}
    return tree


class InrBundle:
    """A loaded prior file: the codec and everything to compress 32x32 RGB images with it.

    Attributes:
      name: the file's stem.
      codec: the :class:`InrCodec`, bound to the plan of the last :meth:`setup` (at first the
        default coder's): its encoder keeps every block of that plan in the coder's KL band.
      item_shape: ``(H, W, C)``; item_dtype: ``uint8``.
      coders: the :class:`CoderSetting` of each setting name the file offers; default_coder.
      kl_per_dim: the training statistics the plans are built from.
      metadata: the file's metadata.
    """

    item_dtype = np.dtype(np.uint8)

    def __init__(self, name: str, codec: InrCodec, coders: dict[str, CoderSetting], default_coder: str,
                 plans: dict[str, jaxrec.BlockPlan], kl_per_dim: np.ndarray, plan_seed: int, metadata: dict[str, Any]):
        self.name = name
        self.item_shape = codec.network.config.image_shape
        self.coders = coders
        self.default_coder = default_coder
        self.kl_per_dim = kl_per_dim
        self.plan_seed = plan_seed
        self.metadata = metadata
        self._unbound = codec
        self._plans = plans
        self.codec = codec
        self.setup()

    def setup(self, coder: str | None = None, blocks: int | None = None) -> tuple[Any, jaxrec.BlockPlan]:
        """``(coder, plan)`` for a setting name (None: the default; e.g. ``"orc"``) and a block count
        (None: the stored plan, packed to the setting's ``kappa``); binds :attr:`codec` to the plan.

        The coder is a :class:`~jaxrec.Coder` (ORC) or a ``partition -> Coder`` callable (SP
        coders, whose plan carries the partitions). Deterministic: the decoder gets the same plan.
        """
        name = self.default_coder if coder is None else coder
        if name not in self.coders:
            raise InvalidArgumentError(f"coder must be one of {sorted(self.coders)} for {self.name}, got {coder!r}")
        setting = self.coders[name]
        if blocks is None:
            plan = self._plans[name]
        else:
            plan = make_plan(self.kl_per_dim, setting, self._unbound.network.config, self.plan_seed, blocks)
        base = self._unbound
        self.codec = base.bind(
            plan,
            band=base.band._replace(kappa=setting.kappa),
            fit=base.fit_settings._replace(max_scale_ratio=setting.max_scale_ratio),
            refine=base.refine_settings._replace(max_scale_ratio=setting.max_scale_ratio),
        )
        return setting.coder(), plan


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"INR prior file not found: {path}")
    try:
        blob = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # msgpack raises several unrelated types on garbage
        raise FormatError(f"{path}: not a msgpack prior file ({err})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise FormatError(f"{path}: not a {FORMAT} prior file")
    return blob


def load_bundle(path: str | os.PathLike) -> InrBundle:
    """Reads a prior file written by :func:`save_prior` into an :class:`InrBundle`.

    Raises:
      FileNotFoundError: no such file.
      FormatError: not a ``jaxrec-inr-1`` file, or contents that do not fit its config.
    """
    path = Path(path)
    blob = _read(path)
    try:
        config = InrConfig.from_dict(blob["config"])
        network = nnx.eval_shape(lambda: InrNetwork(config, rngs=nnx.Rngs(0)))  # shapes only, no initializer runs
        state = nnx.state(network, nnx.Param)
        expected = jax.tree.map(np.shape, nnx.to_pure_dict(state))
        if jax.tree.map(np.shape, blob["network"]) != expected:
            raise FormatError(f"network parameters do not match the config {config}")
        nnx.replace_by_pure_dict(state, jax.tree.map(lambda a: np.asarray(a, np.float32), blob["network"]))
        nnx.update(network, state)
        dim = config.latent_size
        arrays = {k: np.asarray(blob[k]) for k in ("prior_loc", "prior_scale", "init_rho", "kl_per_dim")}
        if any(a.shape != (dim,) for a in arrays.values()):
            raise FormatError(f"prior arrays must have shape ({dim},), got {[a.shape for a in arrays.values()]}")
        if not (np.all(np.isfinite(arrays["prior_scale"])) and np.all(arrays["prior_scale"] > 0)):
            raise FormatError("prior_scale must be finite and > 0")
        encoder = blob["encoder"]
        coders = {name: CoderSetting(**s) for name, s in blob["coders"].items()}
        plans = {name: _plan_from_record(blob["plans"][name]) for name in coders}
        if any(plan.dim != dim for plan in plans.values()):
            raise FormatError(f"the stored plans must cover the {dim} latents")
        default = blob["default_coder"]
        if default not in coders:
            raise FormatError(f"default_coder {default!r} is not among the coders {sorted(coders)}")
        codec = InrCodec(
            network,
            jaxrec.DiagGaussian(arrays["prior_loc"], arrays["prior_scale"]),
            arrays["init_rho"],
            float(blob["beta"]),
            groups_of_plan(plans[default]),
            Band(**encoder["band"]),
            FitSettings(**encoder["fit"]),
            FitSettings(**encoder["refine"]),
        )
        return InrBundle(path.stem, codec, coders, default, plans, arrays["kl_per_dim"], int(blob["plan_seed"]),
                         blob.get("metadata", {}))
    except FormatError as err:
        raise FormatError(f"{path}: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:  # missing fields, wrong types, bad values
        raise FormatError(f"{path}: malformed {FORMAT} prior file ({type(err).__name__}: {err})") from err
