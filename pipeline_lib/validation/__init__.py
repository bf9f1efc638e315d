"""Dataset validation: every image and annotation checked before any GPU time.

``validate(data, options, report_dir)`` accepts an image+JSON root, a RecordIO ``.rec`` (or a
folder with ``train/*.rec``) or an augmented manifest, and returns a
:class:`ValidationReport` whose findings each name the file, record, field, rule, code,
expected and actual value. Rules and codes are listed in :mod:`.rules`.
"""

from __future__ import annotations

from .options import UnusableInputError, ValidationOptions
from .report import Finding, ValidationReport
from .rules import RULES, Rule
from .validator import detect_format, validate

__all__ = [
    "RULES",
    "Finding",
    "Rule",
    "UnusableInputError",
    "ValidationOptions",
    "ValidationReport",
    "detect_format",
    "validate",
]
