"""Model files by name: the registry of file formats and the packaged weights.

A trained model is one msgpack file (flax serialization) whose dict has a ``"format"`` tag. Each
model family registers a loader for its tag; :func:`load` reads a packaged file by name (a file
``jaxrec/models/weights/<name>.msgpack``) or any file by path and returns the loader's *bundle*:
``name``, ``codec``, ``item_shape``, ``item_dtype`` and ``setup(coder, blocks) -> (coder, plan)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flax import serialization

from jaxrec.core.errors import FormatError, InvalidArgumentError

__all__ = ["WEIGHTS", "available", "load", "register_format", "resolve"]

WEIGHTS = Path(__file__).resolve().parent / "weights"
"""The folder of packaged model files."""

_LOADERS: dict[str, Callable[[Path], Any]] = {}


def register_format(tag: str, loader: Callable[[Path], Any]) -> None:
    """Makes :func:`load` read files whose ``"format"`` is ``tag`` with ``loader(path) -> bundle``."""
    if not isinstance(tag, str) or not tag:
        raise InvalidArgumentError(f"tag must be a non-empty str, got {tag!r}")
    if not callable(loader):
        raise InvalidArgumentError(f"loader must be callable, got {loader!r}")
    _LOADERS[tag] = loader


def available() -> list[str]:
    """Names of the packaged models (``load(name)`` reads them)."""
    return sorted(path.name.removesuffix(".msgpack") for path in WEIGHTS.glob("*.msgpack"))


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The file of a packaged model name, or an existing path.

    Raises:
      InvalidArgumentError: neither a packaged name nor an existing file (the message lists the names).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InvalidArgumentError(f"name_or_path must be a str or a path, got {type(name_or_path).__name__}")
    packaged = WEIGHTS / f"{os.fspath(name_or_path)}.msgpack"
    if isinstance(name_or_path, str) and os.sep not in name_or_path and packaged.is_file():
        return packaged
    path = Path(name_or_path)
    if path.is_file():
        return path
    raise InvalidArgumentError(
        f"unknown model {os.fspath(name_or_path)!r}: not a packaged model ({', '.join(available()) or 'none'}) "
        "and not a file"
    )


def load(name_or_path: str | os.PathLike) -> Any:
    """The bundle of a packaged model (``"mnist-vae"``) or of a model file.

    Raises:
      InvalidArgumentError: an unknown name and no such file.
      FormatError: the file is not a msgpack model file, or its format has no registered loader.
    """
    path = resolve(name_or_path)
    try:
        blob = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # noqa: BLE001 -- msgpack raises several unrelated types on garbage
        raise FormatError(f"{path}: not a jaxrec model file ({type(err).__name__})") from None
    tag = blob.get("format") if isinstance(blob, dict) else None
    loader = _LOADERS.get(tag) if isinstance(tag, str) else None
    if loader is None:
        raise FormatError(f"{path}: unknown model format {tag!r} (known: {sorted(_LOADERS)})")
    return loader(path)
