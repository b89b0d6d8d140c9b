"""jaxrec: relative entropy coding (one-shot channel simulation) in JAX.

    import jaxrec
    coder = jaxrec.pfr(chunk_size=1024)
    code = coder.encode(key, target, prior)     # an integer index (plus diagnostics)
    x = coder.decode(key, code, prior)          # an exact sample of target

See the README for the list of coders and their guarantees.
"""

from jaxrec import coding, distributions, errors, prng, search, treesearch
from jaxrec.treesearch import TreeCode
from jaxrec.coders import Code, Coder, CoderSpec, IrecCode, adstar, astar, dadstar, irec, mrc, orc, pfr
from jaxrec.coders import SPCode, sp_orc, sp_pfr
from jaxrec.coders import AGRSCode, agrs, factorized, gprs, gprs_bnb, grs
from jaxrec import truncated, widths
from jaxrec import partition
from jaxrec.partition import Partition, partition_from_mi
from jaxrec.coders.scan import encode_batch
from jaxrec.distributions import DiagGaussian, Uniform, dinf, kl, log_ratio, log_sup_ratio
from jaxrec.errors import FormatError, InvalidArgumentError, JaxrecError
from jaxrec import blocks, codec, container  # noqa: E402  (codec imports the coders above)
from jaxrec.blocks import BlockPlan, plan_blocks
from jaxrec.codec import Codec, LosslessCodec, compress, compress_batch, decompress, decompress_batch, register_coder
from jaxrec import data, lossless  # noqa: E402  (jaxrec.models is imported on demand: it needs flax)

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
