"""Tree-search coders on a binary partition of a 1-D prior: A* coding (AS*, AD*, DAD*) and
branch-and-bound GPRS."""

from jaxrec.coders.tree._astar import adstar, astar, dadstar
from jaxrec.coders.tree._gprs_bnb import gprs_bnb
from jaxrec.coders.tree.paths import TreeCode

__all__ = ["TreeCode", "adstar", "astar", "dadstar", "gprs_bnb"]
