"""The input gate every reader of a dataset goes through: rule codes, contained paths, images.

Validation reports what the gate finds as findings; convert, training, import and the
manifest tools refuse the first problem with the same rule code (:class:`GateError`).
Standard library only at import time (the RecordIO converter starts through it).
"""

from __future__ import annotations

from .rules import RULES, GateError, Rule

__all__ = ["RULES", "GateError", "Rule"]
