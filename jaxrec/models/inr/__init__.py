"""Bayesian implicit neural representations as an image codec: COMBINER and RECOMBINER.

An image is compressed by fitting a Gaussian posterior over the latent of a small SIREN (with
RECOMBINER's latent positional encodings and linear reparameterization, or without them:
COMBINER) and sending one posterior sample with REC, block by block, re-fitting the blocks not yet
sent after each (Guo et al., NeurIPS 2023; He et al., ICLR 2024). Space-partitioning coders
(He, Flamich & Hernandez-Lobato, NeurIPS 2024) let each block carry more KL.

* :class:`InrConfig`, :func:`combiner`, :func:`recombiner` -- architectures and the latent layout;
* :class:`InrNetwork` -- the INR renderer and its learned shared parts;
* :func:`learn_prior` -- the EM-like prior learning on training images;
* :func:`fit_posterior`, :func:`adjust_beta` -- the posterior fit and its per-block beta controller;
* :class:`InrCodec` -- the progressive codec (``prior``, ``target``, ``refine``, ``reconstruct``);
* :func:`save_prior`, :func:`load_bundle`, :class:`InrBundle` -- prior files (``"jaxrec-inr-1"``),
  registered with :func:`jaxrec.models.register_format`, so ``jaxrec.models.load(path)`` and the
  command line (``jaxrec compress --model PRIOR_FILE image.png -o x.jxr``) read them.

::

    bundle = jaxrec.models.load("inr-cifar10")        # or inr.load_bundle(path)
    coder, plan = bundle.setup("orc")
    data = jaxrec.compress(bundle.codec, image, key=0, coder=coder, plan=plan)
    image_hat = jaxrec.decompress(bundle.codec, data, plan=plan)      # uint8 (32, 32, 3)
"""

from jaxrec.models._registry import register_format
from jaxrec.models.inr._bundle import (
    FORMAT,
    CoderSetting,
    InrBundle,
    load_bundle,
    make_plan,
    save_prior,
)
from jaxrec.models.inr._codec import InrCodec, groups_of_plan
from jaxrec.models.inr._config import InrConfig, combiner, recombiner
from jaxrec.models.inr._network import InrNetwork, conv_same, fourier_features
from jaxrec.models.inr._posterior import (
    Band,
    FitSettings,
    Groups,
    adjust_beta,
    capped_scale,
    fit_posterior,
    group_kl_bits,
    image_distortion,
    inverse_scale,
    posterior_scale,
)
from jaxrec.models.inr._prior import (
    PriorFit,
    PriorSchedule,
    closed_form_prior,
    initial_posteriors,
    learn_prior,
)

register_format(FORMAT, load_bundle)

__all__ = [
    "FORMAT",
    "Band",
    "CoderSetting",
    "FitSettings",
    "Groups",
    "InrBundle",
    "InrCodec",
    "InrConfig",
    "InrNetwork",
    "PriorFit",
    "PriorSchedule",
    "adjust_beta",
    "capped_scale",
    "closed_form_prior",
    "combiner",
    "conv_same",
    "fit_posterior",
    "fourier_features",
    "group_kl_bits",
    "groups_of_plan",
    "image_distortion",
    "initial_posteriors",
    "inverse_scale",
    "learn_prior",
    "load_bundle",
    "make_plan",
    "posterior_scale",
    "recombiner",
    "save_prior",
]
