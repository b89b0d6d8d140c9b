"""Auxiliary-variable coding: iREC (Flamich, Havasi & Hernandez-Lobato, NeurIPS 2020)."""

from jaxrec.coders.auxiliary._irec import IrecCode, irec

__all__ = ["IrecCode", "irec"]
