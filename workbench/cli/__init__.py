"""The ``workbench`` command line (top layer: nothing in the package imports it)."""

from __future__ import annotations

from .commands import app, main

__all__ = ["app", "main"]
