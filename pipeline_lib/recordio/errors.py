"""The two RecordIO error types, apart so that the format, the reader and the converter can
all raise them without importing each other."""

from __future__ import annotations


class RecordIOError(ValueError):
    """A malformed ``.rec``/``.idx``/``.lst``: the message names the file and record."""


class ConversionError(ValueError):
    """A dataset that cannot be converted: the message names the offending file."""
