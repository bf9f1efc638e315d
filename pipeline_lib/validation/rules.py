"""Every named validation rule: the gate's rule table (:mod:`pipeline_lib.gate.rules`)."""

from __future__ import annotations

from ..gate.rules import ERROR, RULES, WARNING, Rule

__all__ = ["ERROR", "RULES", "WARNING", "Rule"]
