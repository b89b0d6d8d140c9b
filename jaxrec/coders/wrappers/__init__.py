"""Coders built from other coders: the per-dimension wrapper."""

from jaxrec.coders.wrappers._factorized import factorized

__all__ = ["factorized"]
