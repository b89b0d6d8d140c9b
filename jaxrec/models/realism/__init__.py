"""Lossy compression with realism constraints: REC against quantization on the rate-distortion-perception bound.

When the reconstruction must follow the source's distribution (perfect realism), an encoder that
sends a sample of a well-chosen channel with common randomness beats any scheme without it (Theis &
Agustsson, "On the advantages of stochastic encoders", 2021; Wagner, "The rate-distortion-perception
trade-off: the role of common randomness", 2022).  This package holds the pieces to measure that:

* bounds for a Gaussian source (:mod:`~jaxrec.models.realism._bounds`): Shannon's
  :func:`distortion_rate`, :func:`perfect_realism_distortion` with and without common randomness,
  their inverses, and the optimal channel's :func:`channel_correlation`;
* :class:`GaussianChannel` -- the codec whose latent is the channel's output, for any REC coder;
* :class:`ScalarQuantizer` -- entropy-coded uniform scalar quantization with centroid, posterior-
  sampling and moment-matching-noise decoders (the baselines without common randomness);
* :class:`LossyVAE` -- the MNIST VAE as a lossy, latent-only codec whose decoder samples ``p(x|z)``
  with shared randomness or returns the mean;
* realism statistics: :func:`ks_gaussian`, :func:`projection_ks`, :func:`two_sample_test`.

Experiments: ``experiments/realism_gaussian.py`` and ``experiments/realism_mnist.py``.
"""

from jaxrec.models.realism._bounds import (
    channel_correlation,
    channel_noise_scale,
    channel_rate,
    distortion_rate,
    perfect_realism_distortion,
    perfect_realism_rate,
    rate_distortion,
)
from jaxrec.models.realism._gaussian import GaussianChannel
from jaxrec.models.realism._quantization import DECODERS, MAX_CELLS, ScalarQuantizer
from jaxrec.models.realism._statistics import (
    KERNELS,
    TestResult,
    ks_gaussian,
    median_bandwidth,
    projection_ks,
    two_sample_test,
)
from jaxrec.models.realism._vae import (
    RECONSTRUCTIONS,
    LossyVAE,
    latent_key,
    sample_likelihood,
)

__all__ = [
    "DECODERS",
    "KERNELS",
    "MAX_CELLS",
    "RECONSTRUCTIONS",
    "GaussianChannel",
    "LossyVAE",
    "ScalarQuantizer",
    "TestResult",
    "channel_correlation",
    "channel_noise_scale",
    "channel_rate",
    "distortion_rate",
    "ks_gaussian",
    "latent_key",
    "median_bandwidth",
    "perfect_realism_distortion",
    "perfect_realism_rate",
    "projection_ks",
    "rate_distortion",
    "sample_likelihood",
    "two_sample_test",
]
