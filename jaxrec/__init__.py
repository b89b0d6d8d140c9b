"""jaxrec: relative entropy coding (one-shot channel simulation) in JAX.

    import jaxrec
    coder = jaxrec.pfr(chunk_size=1024)
    code = coder.encode(key, target, prior)     # an integer index (plus diagnostics)
    x = coder.decode(key, code, prior)          # an exact sample of target

See the README for the list of coders and their guarantees.
"""

from jaxrec import coding, distributions, errors, prng, search
from jaxrec.coders import Code, Coder, CoderSpec, mrc, orc, pfr
from jaxrec.coders.scan import encode_batch
from jaxrec.distributions import DiagGaussian, Uniform, dinf, kl, log_ratio, log_sup_ratio
from jaxrec.errors import FormatError, InvalidArgumentError, JaxrecError
from jaxrec import blocks, codec, container  # noqa: E402  (codec imports the coders above)
from jaxrec.blocks import BlockPlan, plan_blocks
from jaxrec.codec import Codec, LosslessCodec, compress, compress_batch, decompress, decompress_batch, register_coder

__version__ = "0.1.0"

__all__ = [
    "BlockPlan",
    "Code",
    "Codec",
    "Coder",
    "CoderSpec",
    "DiagGaussian",
    "FormatError",
    "InvalidArgumentError",
    "JaxrecError",
    "LosslessCodec",
    "Uniform",
    "blocks",
    "codec",
    "coding",
    "compress",
    "compress_batch",
    "container",
    "decompress",
    "decompress_batch",
    "dinf",
    "distributions",
    "encode_batch",
    "errors",
    "kl",
    "log_ratio",
    "log_sup_ratio",
    "mrc",
    "orc",
    "pfr",
    "plan_blocks",
    "prng",
    "register_coder",
    "search",
]
