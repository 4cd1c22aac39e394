"""Artefact layer: what the workbench reads and writes on disk, and ``load()``.

Checkpoint folders, the official llm2vec-gen layout and its zoo, embedding and answer caches, atomic
writes and text files. Imports only :mod:`workbench.core`.
"""
