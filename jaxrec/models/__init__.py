"""Models that implement the codec protocol."""

from jaxrec.models import bnn
from jaxrec.models import inr
from jaxrec.models.vae import VAE, VAEConfig, load_checkpoint, save_checkpoint

__all__ = ["VAE", "VAEConfig", "inr", "load_checkpoint", "save_checkpoint"]
