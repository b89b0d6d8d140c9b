"""jaxrec: relative entropy coding (one-shot channel simulation) in JAX.

    import jaxrec
    coder = jaxrec.pfr(chunk_size=1024)
    code = coder.encode(key, target, prior)     # an integer index (plus diagnostics)
    x = coder.decode(key, code, prior)          # an exact sample of target

See the README for the list of coders and their guarantees.
"""

# Modules, then the public names, grouped by what they are for.  ``jaxrec.models`` is imported on
# demand (it needs flax).
from jaxrec import (
    blocks, codec, coding, container, data, distributions, errors, lossless, partition, prng, search, treesearch,
    truncated, widths,
)

# Distributions and pair quantities
from jaxrec.distributions import DiagGaussian, Uniform, dinf, kl, log_ratio, log_sup_ratio

# Coders: factories returning Coder(encode, decode, spec, encode_batch), and their codes
from jaxrec.coders import (
    AGRSCode, Code, Coder, CoderSpec, IrecCode, SPCode, adstar, agrs, astar, dadstar, factorized, gprs, gprs_bnb,
    grs, irec, mrc, orc, pfr, sp_orc, sp_pfr,
)
from jaxrec.coders.scan import encode_batch
from jaxrec.partition import Partition, partition_from_mi
from jaxrec.treesearch import TreeCode

# Codecs and files
from jaxrec.blocks import BlockPlan, plan_blocks
from jaxrec.codec import Codec, LosslessCodec, compress, compress_batch, decompress, decompress_batch, register_coder

# Errors
from jaxrec.errors import FormatError, InvalidArgumentError, JaxrecError

__version__ = "0.1.0"

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
    "SPCode",
    "TreeCode",
    "Uniform",
    "adstar",
    "agrs",
    "astar",
    "blocks",
    "codec",
    "coding",
    "compress",
    "compress_batch",
    "container",
    "dadstar",
    "data",
    "decompress",
    "decompress_batch",
    "dinf",
    "distributions",
    "encode_batch",
    "errors",
    "factorized",
    "gprs",
    "gprs_bnb",
    "grs",
    "irec",
    "kl",
    "log_ratio",
    "log_sup_ratio",
    "lossless",
    "mrc",
    "orc",
    "partition",
    "partition_from_mi",
    "pfr",
    "plan_blocks",
    "prng",
    "register_coder",
    "search",
    "sp_orc",
    "sp_pfr",
    "treesearch",
    "truncated",
    "widths",
]
