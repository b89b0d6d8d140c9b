"""REC coders: one folder per family, each factory returning a :class:`Coder`.

* :mod:`~jaxrec.coders.poisson` -- PFR, ORC, MRC;
* :mod:`~jaxrec.coders.sp` -- SP-PFR, SP-ORC and their partitions;
* :mod:`~jaxrec.coders.greedy` -- GPRS, GRS, AGRS;
* :mod:`~jaxrec.coders.tree` -- AS*, AD*, DAD*, branch-and-bound GPRS;
* :mod:`~jaxrec.coders.auxiliary` -- iREC;
* :mod:`~jaxrec.coders.wrappers` -- the per-dimension wrapper.
"""

from jaxrec.coders.auxiliary import IrecCode, irec
from jaxrec.coders.base import Code, Coder, CoderSpec
from jaxrec.coders.greedy import AGRSCode, agrs, gprs, grs
from jaxrec.coders.poisson import mrc, orc, pfr
from jaxrec.coders.scan import encode_batch
from jaxrec.coders.sp import SPCode, sp_orc, sp_pfr
from jaxrec.coders.tree import TreeCode, adstar, astar, dadstar, gprs_bnb
from jaxrec.coders.wrappers import factorized

__all__ = [
    "AGRSCode", "Code", "Coder", "CoderSpec", "IrecCode", "SPCode", "TreeCode", "adstar", "agrs", "astar",
    "dadstar", "encode_batch", "factorized", "gprs", "gprs_bnb", "grs", "irec", "mrc", "orc", "pfr", "sp_orc",
    "sp_pfr",
]
