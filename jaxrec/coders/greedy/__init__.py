"""Greedy rejection samplers on width functions: GPRS (Flamich 2023), GRS (Harsha et al. 2007)
and adaptive GRS (Flamich & Theis 2023)."""

from jaxrec.coders.greedy._agrs import AGRSCode, agrs
from jaxrec.coders.greedy._gprs import gprs
from jaxrec.coders.greedy._grs import grs

__all__ = ["AGRSCode", "agrs", "gprs", "grs"]
