"""Jupyter display for result objects of the layers below ``report``, which draws them.

A lens reading, an evaluation report or a map is data; in a notebook it should show itself (tables
and a chart) without the user knowing which plotting helper to call. Their classes inherit
:class:`Displayable`, whose IPython hooks call the ``display`` and ``display_html`` extension points
(:mod:`workbench.core.extensions`), provided by :mod:`workbench.report.notebook`.
"""

from __future__ import annotations

from .extensions import extension


class Displayable:
    """Shows itself in Jupyter: ``_ipython_display_`` (tables, then interactive figures with a PNG
    for viewers without JavaScript) and ``_repr_html_`` (the same as one HTML page) for other tools."""

    __slots__ = ()

    def _ipython_display_(self) -> None:
        extension("display")(self)

    def _repr_html_(self) -> str:
        return extension("display_html")(self)
