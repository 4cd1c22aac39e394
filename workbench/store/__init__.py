"""Artefact layer: what the workbench reads and writes on disk, and ``load()``.

Checkpoint folders (and :mod:`.describe`, what one holds), the official llm2vec-gen layout (a
package: read, load, export) and its zoo, :mod:`.convert` (``workbench export``), embedding and
answer caches, atomic writes and text files. Imports only :mod:`workbench.core`.
"""
