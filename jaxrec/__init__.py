"""jaxrec: relative entropy coding (one-shot channel simulation) in JAX.

    import jaxrec
    coder = jaxrec.pfr(chunk_size=1024)
    code = coder.encode(key, target, prior)     # an integer index (plus diagnostics)
    x = coder.decode(key, code, prior)          # an exact sample of target

Subpackages: :mod:`jaxrec.core` (distributions, shared randomness), :mod:`jaxrec.search` (search
cores), :mod:`jaxrec.coders` (the algorithms by family), :mod:`jaxrec.entropy` (entropy models and
streams), :mod:`jaxrec.codec` (protocol, block plans, file format, compress/decompress),
:mod:`jaxrec.models` (Flax models; imported on demand), :mod:`jaxrec.data` (dataset readers).
See the README for the list of coders and their guarantees.
"""

from jaxrec import codec, coders, core, entropy, search

# Codecs and files
from jaxrec.codec import (
    BlockPlan,
    Codec,
    LosslessCodec,
    ProgressiveCodec,
    compress,
    compress_batch,
    decompress,
    decompress_batch,
    plan_blocks,
)

# Coders: factories returning Coder(encode, decode, spec, encode_batch), and their codes
from jaxrec.coders import (
    AGRSCode,
    Code,
    Coder,
    CoderSpec,
    IrecCode,
    SPCode,
    TreeCode,
    adstar,
    agrs,
    astar,
    dadstar,
    encode_batch,
    factorized,
    gprs,
    gprs_bnb,
    grs,
    irec,
    mrc,
    orc,
    pfr,
    sp_orc,
    sp_pfr,
)
from jaxrec.coders.registry import register_coder
from jaxrec.coders.sp.partition import Partition, partition_from_mi

# Distributions and pair quantities
from jaxrec.core.distributions import (
    DiagGaussian,
    Uniform,
    dinf,
    kl,
    log_ratio,
    log_sup_ratio,
)

# Errors
from jaxrec.core.errors import FormatError, InvalidArgumentError, JaxrecError

__version__ = "0.5.0"

__all__ = [
    "AGRSCode",
    "BlockPlan",
    "Code",
    "Codec",
    "Coder",
    "CoderSpec",
    "DiagGaussian",
    "FormatError",
    "InvalidArgumentError",
    "IrecCode",
    "JaxrecError",
    "LosslessCodec",
    "Partition",
    "ProgressiveCodec",
    "SPCode",
    "TreeCode",
    "Uniform",
    "adstar",
    "agrs",
    "astar",
    "codec",
    "coders",
    "compress",
    "compress_batch",
    "core",
    "dadstar",
    "decompress",
    "decompress_batch",
    "dinf",
    "encode_batch",
    "entropy",
    "factorized",
    "gprs",
    "gprs_bnb",
    "grs",
    "irec",
    "kl",
    "log_ratio",
    "log_sup_ratio",
    "mrc",
    "orc",
    "partition_from_mi",
    "pfr",
    "plan_blocks",
    "register_coder",
    "search",
    "sp_orc",
    "sp_pfr",
]
