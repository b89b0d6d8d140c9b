"""Entropy coding of REC messages: ideal codelengths, entropy models and byte streams.

* :mod:`jaxrec.entropy.bits` -- ideal codelengths in bits (``jax.numpy``, jit-compatible);
* :mod:`jaxrec.entropy.models` -- the models a header carries (Zipf, uniform, categorical, plan alphabet);
* :mod:`jaxrec.entropy.streams` -- index arrays to bytes and back through constriction's range coder.
"""

from jaxrec.entropy.bits import (
    elias_delta_bits,
    elias_gamma_bits,
    uniform_bits,
    zipf_bits,
    zipf_exponent,
)
from jaxrec.entropy.models import (
    MAX_ZIPF_INDEX,
    CategoricalModel,
    IndexModel,
    PlanAlphabetModel,
    UniformModel,
    ZipfModel,
)
from jaxrec.entropy.streams import (
    decode_indices,
    decode_streams,
    encode_indices,
    encode_streams,
    ideal_bits,
)

__all__ = [
    "MAX_ZIPF_INDEX",
    "CategoricalModel",
    "IndexModel",
    "PlanAlphabetModel",
    "UniformModel",
    "ZipfModel",
    "decode_indices",
    "decode_streams",
    "elias_delta_bits",
    "elias_gamma_bits",
    "encode_indices",
    "encode_streams",
    "ideal_bits",
    "uniform_bits",
    "zipf_bits",
    "zipf_exponent",
]
