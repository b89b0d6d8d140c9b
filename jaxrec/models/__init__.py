"""Models that implement the codec protocol, and model files by name.

``jaxrec.models.load("mnist-vae")`` returns the bundle of a packaged model (the MNIST and
Fashion-MNIST lossless VAEs ship with jaxrec): ``bundle.codec``, ``bundle.item_shape``,
``bundle.item_dtype`` and ``bundle.setup(coder, blocks) -> (coder, plan)``. Model families
register a loader for their file format with :func:`register_format`.
"""

from jaxrec.models import bnn, inr, vae
from jaxrec.models._registry import available, load, register_format, resolve
from jaxrec.models.vae import (
    VAE,
    VAEBundle,
    VAEConfig,
    load_checkpoint,
    save_checkpoint,
)

register_format(vae.CHECKPOINT_FORMAT, vae.load_bundle)
register_format(bnn.COMPRESSED_FORMAT, bnn.load_bundle)

__all__ = [
    "VAE",
    "VAEBundle",
    "VAEConfig",
    "available",
    "bnn",
    "inr",
    "load",
    "load_checkpoint",
    "register_format",
    "resolve",
    "save_checkpoint",
    "vae",
]
