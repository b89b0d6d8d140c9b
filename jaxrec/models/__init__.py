"""Models that implement the codec protocol."""

from jaxrec.models.vae import VAE, VAEConfig, load_checkpoint, save_checkpoint

__all__ = ["VAE", "VAEConfig", "load_checkpoint", "save_checkpoint"]
