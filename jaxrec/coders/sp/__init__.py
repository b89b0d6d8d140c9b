"""Space-partitioning coders (He, Flamich & Hernandez-Lobato, NeurIPS 2024): SP-PFR and SP-ORC,
their partitions and bin weights."""

from jaxrec.coders.sp._sp_orc import sp_orc
from jaxrec.coders.sp._sp_pfr import SPCode, sp_pfr
from jaxrec.coders.sp.partition import Partition, partition_from_mi

__all__ = ["Partition", "SPCode", "partition_from_mi", "sp_orc", "sp_pfr"]
