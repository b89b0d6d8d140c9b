"""The Poisson-process coders: PFR (exact), ORC and MRC (fixed budget), sharing one candidate stream."""

from jaxrec.coders.poisson._mrc import mrc
from jaxrec.coders.poisson._orc import orc
from jaxrec.coders.poisson._pfr import pfr

__all__ = ["mrc", "orc", "pfr"]
