"""Dataset readers: IDX files (MNIST, Fashion-MNIST) and the CIFAR-10 extracts from a directory; never downloads.

IDX format (LeCun et al.): two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B``
int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of axes ``k``, then ``k``
big-endian ``uint32`` sizes and the big-endian data in C order.  Files may be gzip-compressed
(``name.gz``) or raw (``name``); the gzip form is tried first.

Where a dataset is looked for, in order (the first directory holding the file wins):

1. ``directory=...`` when given -- only there;
2. otherwise ``$JAXREC_DATA/<folder>`` when ``$JAXREC_DATA`` is set, else
   ``<repo>/../shared/data/<folder>`` (``<repo>`` is the checkout holding the ``jaxrec`` package);
3. then the dataset's system folders (Fashion-MNIST: ``/usr/share/datasets/fashion-mnist``, where
   the Debian package ``dataset-fashion-mnist`` installs it).

A missing file raises :class:`FileNotFoundError` naming every path tried; a malformed one raises
:class:`~jaxrec.core.errors.FormatError`; an unknown split or dataset, or a directory that is not a
path, raises :class:`~jaxrec.core.errors.InvalidArgumentError`.

    images, labels = jaxrec.data.load_mnist("test")                    # uint8 (10000, 28, 28), (10000,)
    images, labels = jaxrec.data.load_mnist("train", dataset="fashion-mnist")
    images, labels = jaxrec.data.load_cifar10("test")                  # uint8 (1000, 32, 32, 3), (1000,)
"""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxrec.core.checks import describe
from jaxrec.core.errors import FormatError, InvalidArgumentError

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "data_root",
    "dataset_dirs",
    "find_file",
    "load_cifar10",
    "load_mnist",
    "mnist_paths",
    "read_idx",
]

ENV_VAR = "JAXREC_DATA"

_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DatasetInfo(NamedTuple):
    """Where an IDX dataset lives: its folder under the data root and any system folders."""

    folder: str
    system_dirs: tuple[str, ...] = ()


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist"),
    "fashion-mnist": DatasetInfo("fashion-mnist", ("/usr/share/datasets/fashion-mnist",)),
    "cifar10": DatasetInfo("cifar10"),
}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def data_root() -> Path:
    """``$JAXREC_DATA`` if set, else ``<repo>/../shared/data`` (resolved from this file's location)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


def _as_path(name: str, value: Any) -> Path:
    """``value`` as a :class:`~pathlib.Path` (a ``str`` or an ``os.PathLike``)."""
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise InvalidArgumentError(f"{name} must be a path (str or os.PathLike), got {describe(value)}")


def _choice(name: str, value: Any, choices: Any) -> str:
    """``value`` if it is one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(f"{name} must be one of {sorted(choices)}, got {describe(value)}")
    return value


def dataset_dirs(dataset: str, directory: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for ``dataset``, in order (see the module docstring)."""
    _choice("dataset", dataset, DATASETS)
    if directory is not None:
        return [_as_path("directory", directory)]
    info = DATASETS[dataset]
    return [data_root() / info.folder, *(Path(d) for d in info.system_dirs)]


def find_file(name: str, dirs: list[Path]) -> Path:
    """The first of ``d/name.gz``, ``d/name`` over ``dirs`` that exists.

    Raises:
      FileNotFoundError: none exists; the message lists every path tried.
    """
    tried = [d / f"{name}{suffix}" for d in dirs for suffix in (".gz", "")]
    for path in tried:
        if path.is_file():
            return path
    where = "\n  ".join(str(p) for p in tried)
    raise FileNotFoundError(
        f"{name} not found; looked in:\n  {where}\n"
        f"(pass directory=..., or set ${ENV_VAR} to the folder holding '<dataset>/{name}[.gz]')"
    )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (gzip-compressed if it starts with the gzip magic), in native byte order.

    Raises:
      FormatError: bad magic, unknown type code, or a data size that does not match the header.
    """
    path = _as_path("path", path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise FormatError(f"{path}: corrupt gzip data ({err})") from err
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise FormatError(f"{path}: not an IDX file (header {raw[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise FormatError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} axes)")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise FormatError(f"{path}: IDX shape {shape} needs {expected} data bytes, found {len(raw) - offset}")
    return np.frombuffer(raw, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def mnist_paths(
    split: str = "train",
    *,
    dataset: str = "mnist",
    directory: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """``(images, labels)``: the files :func:`load_mnist` reads for a split, found but not read.

    Raises:
      FileNotFoundError: a file is missing; the message lists every path tried.
    """
    _choice("split", split, _SPLIT_PREFIX)
    dirs = dataset_dirs(dataset, directory)
    prefix = _SPLIT_PREFIX[split]
    return find_file(f"{prefix}-images-idx3-ubyte", dirs), find_file(f"{prefix}-labels-idx1-ubyte", dirs)


def load_mnist(
    split: str = "train",
    *,
    dataset: str = "mnist",
    directory: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads an MNIST-format dataset split.

    Args:
      split: ``"train"`` (60000 images) or ``"test"`` (10000).
      dataset: ``"mnist"`` or ``"fashion-mnist"``.
      directory: folder holding the four standard files; overrides ``$JAXREC_DATA`` and the defaults.

    Returns:
      ``(images, labels)``: ``uint8 (N, 28, 28)`` with 0 background and 255 ink (MNIST), and
      ``uint8 (N,)``.
    """
    images_path, labels_path = mnist_paths(split, dataset=dataset, directory=directory)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise FormatError(f"{dataset} {split}: images {images.shape} and labels {labels.shape} do not match")
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise FormatError(f"{dataset} {split}: expected uint8 data, got {images.dtype} / {labels.dtype}")
    return images, labels


_CIFAR10_FILES = {"test": "test_first1000.npz", "train": "train_batch_3.npz"}


def load_cifar10(split: str = "test", directory: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loads one of the two lossless CIFAR-10 extracts (Krizhevsky, 2009) in ``<data>/cifar10``.

    Args:
      split: ``"test"`` -- the first 1000 images of the CIFAR-10 test set (``test_first1000.npz``);
        ``"train"`` -- training images 3000-3999 (``train_batch_3.npz``), for training per-image
        codecs' priors, never for reporting test numbers.
      directory: folder holding the ``.npz`` file; overrides ``$JAXREC_DATA`` and the default.

    Returns:
      ``(images, labels)``: ``uint8 (1000, 32, 32, 3)`` RGB in HWC order, and ``uint8 (1000,)``
      class ids.

    Raises:
      FileNotFoundError: the file is in none of the folders (the message lists the paths tried).
      FormatError: not an ``npz`` archive with ``images`` and ``labels`` of those shapes and dtypes.
    """
    _choice("split", split, _CIFAR10_FILES)
    path = find_file(_CIFAR10_FILES[split], dataset_dirs("cifar10", directory))
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise FormatError(f"{path}: not a CIFAR-10 npz archive with 'images' and 'labels' ({err})") from err
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise FormatError(f"{path}: images must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise FormatError(f"{path}: labels must be uint8 ({images.shape[0]},), got {labels.dtype} {labels.shape}")
    return images, labels
