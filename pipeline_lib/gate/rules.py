"""The rule table and :class:`GateError`, as the gate's readers import them (the table itself
lives in :mod:`pipeline_lib.rules`, the lowest layer, so that image decoding refuses by the
same rule codes)."""

from __future__ import annotations

from ..rules import ERROR, RULES, WARNING, GateError, Rule

__all__ = ["ERROR", "RULES", "WARNING", "GateError", "Rule"]
