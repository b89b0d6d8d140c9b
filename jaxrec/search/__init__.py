"""Search cores shared by the coders.

* :mod:`jaxrec.search.chunked` -- the chunked ``lax.while_loop`` scan with a running argmax and a
  stop rule, for one problem (:func:`search`) and for many on refilling lanes (:func:`search_batch`);
* :mod:`jaxrec.search.heap` -- the bounded priority queue of the tree searches.
"""

from jaxrec.search.chunked import (
    MAX_CANDIDATES,
    MAX_CHUNK,
    MAX_WIDENING,
    ChunkFn,
    SearchResult,
    search,
    search_batch,
    validate_sizes,
)

__all__ = ["MAX_CANDIDATES", "MAX_CHUNK", "MAX_WIDENING", "ChunkFn", "SearchResult", "search", "search_batch", "validate_sizes"]
