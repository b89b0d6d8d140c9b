"""Exceptions raised at jaxrec's API boundary.

Inside ``jit`` nothing can be raised, so searches report trouble through status
fields on their results (``Code.exhausted``); outside ``jit`` bad arguments raise
:class:`InvalidArgumentError` and malformed bytes raise :class:`FormatError`.
"""


class JaxrecError(Exception):
    """Base class of every exception jaxrec raises on purpose."""


class InvalidArgumentError(JaxrecError, ValueError):
    """Bad argument at the API boundary; the message names the value."""


class FormatError(JaxrecError, ValueError):
    """Malformed, truncated or corrupt compressed data."""
