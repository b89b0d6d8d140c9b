"""Writing IDX files (the MNIST format) for tests of the loaders, the CLI and the benchmarks."""

import gzip
import struct
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """``array`` as an IDX file: magic ``0 0 type ndim``, big-endian ``uint32`` sizes, big-endian data."""
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    """Writes ``array`` to ``path`` as an IDX file, gzip-compressed if ``compress``."""
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if compress else raw)


def write_split(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, compress: bool) -> None:
    """An MNIST split ``<prefix>-images-idx3-ubyte[.gz]`` and ``<prefix>-labels-idx1-ubyte[.gz]`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        write_idx(folder / (f"{name}.gz" if compress else name), array, compress)
