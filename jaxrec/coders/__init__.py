"""REC coders: one module per algorithm, each a factory returning a :class:`Coder`."""

from jaxrec.coders.agrs import AGRSCode, agrs
from jaxrec.coders.astar import adstar, astar, dadstar
from jaxrec.coders.base import Code, Coder, CoderSpec
from jaxrec.coders.factorized import factorized
from jaxrec.coders.gprs import gprs
from jaxrec.coders.gprs_bnb import gprs_bnb
from jaxrec.coders.grs import grs
from jaxrec.coders.irec import IrecCode, irec
from jaxrec.coders.mrc import mrc
from jaxrec.coders.orc import orc
from jaxrec.coders.pfr import pfr
from jaxrec.coders.sp_orc import sp_orc
from jaxrec.coders.sp_pfr import SPCode, sp_pfr

__all__ = [
    "AGRSCode", "Code", "Coder", "CoderSpec", "IrecCode", "SPCode", "adstar", "agrs", "astar", "dadstar", "factorized",
    "gprs", "gprs_bnb", "grs", "irec", "mrc", "orc", "pfr", "sp_orc", "sp_pfr",
]
