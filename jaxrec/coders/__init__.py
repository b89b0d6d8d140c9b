"""REC coders: one module per algorithm, each a factory returning a :class:`Coder`."""

from jaxrec.coders.base import Code, Coder, CoderSpec
from jaxrec.coders.mrc import mrc
from jaxrec.coders.orc import orc
from jaxrec.coders.pfr import pfr

__all__ = ["Code", "Coder", "CoderSpec", "mrc", "orc", "pfr"]
