"""The refusal detector, where evaluations import it from (it lives in :mod:`workbench.core.refusals`,
so that training can count refusals in its data mix)."""

from __future__ import annotations

from ..core.refusals import HEAD_CHARS, REFUSAL_PATTERNS, is_refusal

__all__ = ["HEAD_CHARS", "REFUSAL_PATTERNS", "is_refusal"]
