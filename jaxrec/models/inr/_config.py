"""Architecture of the Bayesian INR (COMBINER / RECOMBINER) and the layout of its flat latent.

The coded latent ``h`` of one image is a flat vector of ``D`` floats, laid out as

* for each SIREN layer ``l`` (inputs ``d_in``, outputs ``d_out``), ``P_l = d_out (d_in + 1)``
  entries: first the ``d_out`` biases, then the ``d_in x d_out`` weight matrix, row-major
  (RECOMBINER's layout; He et al., ICLR 2024);
* then, with latent positional encodings, the ``g_h x g_w x C`` latent grid in ``(row, column,
  channel)`` order (``g = image size / upsample factor``; 2 x 2 x 128 for CIFAR-10).

With the linear reparameterization the layer parameters are ``w_l = h_l A_l`` (``A_l``:
``P_l x P_l``, learned with the prior); without it ``w_l = h_l``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxrec.core.errors import InvalidArgumentError

__all__ = ["InrConfig", "combiner", "recombiner"]


@dataclasses.dataclass(frozen=True)
class InrConfig:
    """Architecture and latent layout of :class:`~jaxrec.models.inr.InrNetwork`.

    Attributes:
      image_shape: ``(H, W, C)`` of one item (uint8 pixels).
      hidden: widths of the SIREN's hidden layers (sine activations).
      fourier_dim: Fourier features of the pixel coordinates, ``4 K`` for ``K`` frequencies per axis
        (cosine and sine of ``pi w_k x_j``, ``w_k`` log-spaced from 1 to ``max_frequency``).
      max_frequency: the largest ``w_k``.
      w0: the SIREN frequency ``omega_0`` of ``sin(omega_0 (x W + b))``.
      positional: latent positional encodings (RECOMBINER): a variational grid of
        ``positional_channels`` channels at ``1 / upsample_factor`` of the image resolution,
        upsampled by a learned conv net to ``positional_dim`` channels per pixel.
      positional_channels: channels of the latent grid (128).
      positional_dim: channels per pixel after upsampling (16).
      upsampler_hidden: channels of the upsampler's hidden conv layers (64).
      upsample_factors: nearest-neighbour factors before each of the three convs (4, 2, 2).
      linear_reparam: RECOMBINER's linear reparameterization ``w_l = h_l A_l``.
      max_group_size: cap on the dimensions of a group in the plans (COMBINER's Kodak code: 25; ``None``: no cap).
    """

    image_shape: tuple[int, int, int] = (32, 32, 3)
    hidden: tuple[int, ...] = (32, 32, 32)
    fourier_dim: int = 16
    max_frequency: float = 1024.0
    w0: float = 30.0
    positional: bool = True
    positional_channels: int = 128
    positional_dim: int = 16
    upsampler_hidden: int = 64
    upsample_factors: tuple[int, int, int] = (4, 2, 2)
    linear_reparam: bool = True
    max_group_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("image_shape", "hidden", "upsample_factors"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        ints = {
            "image_shape": self.image_shape,
            "hidden": self.hidden,
            "fourier_dim": (self.fourier_dim,),
            "positional_channels": (self.positional_channels,),
            "positional_dim": (self.positional_dim,),
            "upsampler_hidden": (self.upsampler_hidden,),
            "upsample_factors": self.upsample_factors,
        }
        for name, values in ints.items():
            if not values or any(isinstance(v, bool) or v < 1 for v in values):
                raise InvalidArgumentError(f"{name} must hold ints >= 1, got {getattr(self, name)!r}")
        if len(self.image_shape) != 3:
            raise InvalidArgumentError(f"image_shape must be (H, W, C), got {self.image_shape!r}")
        if self.fourier_dim % 4:
            raise InvalidArgumentError(f"fourier_dim must be a multiple of 4 (cos/sin x 2 axes), got {self.fourier_dim}")
        if len(self.upsample_factors) != 3:
            raise InvalidArgumentError(f"upsample_factors must have 3 entries, got {self.upsample_factors!r}")
        if self.positional and any(s % self.upsample for s in self.image_shape[:2]):
            raise InvalidArgumentError(
                f"image size {self.image_shape[:2]} must be a multiple of the upsampling factor {self.upsample}"
            )
        if not (math.isfinite(self.w0) and self.w0 > 0 and math.isfinite(self.max_frequency) and self.max_frequency >= 1):
            raise InvalidArgumentError(f"w0 must be > 0 and max_frequency >= 1, got {self.w0}, {self.max_frequency}")
        if self.max_group_size is not None and (isinstance(self.max_group_size, bool) or self.max_group_size < 1):
            raise InvalidArgumentError(f"max_group_size must be an int >= 1 or None, got {self.max_group_size!r}")

    # -- sizes -------------------------------------------------------------------------------------

    @property
    def upsample(self) -> int:
        """Total upsampling factor of the positional grid (16)."""
        return math.prod(self.upsample_factors)

    @property
    def num_pixels(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    @property
    def layer_dims(self) -> tuple[int, ...]:
        """``(d_0, ..., d_L)``: SIREN input width, hidden widths, output channels."""
        d_in = self.fourier_dim + (self.positional_dim if self.positional else 0)
        return (d_in, *self.hidden, self.image_shape[2])

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """``P_l = d_{l+1} (d_l + 1)`` per layer."""
        dims = self.layer_dims
        return tuple(dims[i + 1] * (dims[i] + 1) for i in range(len(dims) - 1))

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """Shape of the latent positional grid ``(g_h, g_w, C)`` (``(0, 0, 0)`` without one)."""
        if not self.positional:
            return (0, 0, 0)
        h, w = (s // self.upsample for s in self.image_shape[:2])
        return (h, w, self.positional_channels)

    @property
    def num_weights(self) -> int:
        """Latent entries that parameterize the SIREN (``sum_l P_l``)."""
        return sum(self.layer_sizes)

    @property
    def latent_size(self) -> int:
        """``D``: SIREN latents plus the positional grid."""
        return self.num_weights + math.prod(self.grid_shape)

    # -- serialization ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in ("image_shape", "hidden", "upsample_factors"):
            out[name] = list(out[name])
        if out["max_group_size"] is None:
            del out["max_group_size"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InrConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise InvalidArgumentError(f"unknown InrConfig fields {sorted(unknown)}")
        return cls(**data)


def recombiner(**overrides: Any) -> InrConfig:
    """RECOMBINER's CIFAR-10 model (He et al., ICLR 2024): SIREN 32-32-32-32-3 on 16 Fourier
    features plus 16 upsampled positional channels, linear reparameterization; 3,779 latents."""
    return InrConfig(**overrides)


def combiner(**overrides: Any) -> InrConfig:
    """COMBINER (Guo et al., NeurIPS 2023) at RECOMBINER's CIFAR-10 width: the same SIREN on the 16
    Fourier features alone, no positional encodings, no linear reparameterization; 2,755 latents.

    The cap of 25 parameters per group of COMBINER's Kodak code is not used (``max_group_size``
    None): on 2,755 latents it would force at least 111 blocks, i.e. >= 1.73 bpp with 16-bit blocks.
    """
    return InrConfig(**{"positional": False, "linear_reparam": False, **overrides})
