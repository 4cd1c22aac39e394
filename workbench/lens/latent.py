"""The latent lens: describe a compression state by the nearest response tokens, read in context.

An index holds one entry per token of the frozen LLM's own responses: the hidden state of that
token when the LLM reads the response as plain text, after the final norm, unit-normalised. A
compression position is then described by the response tokens whose in-context states are closest
to it (cosine), each shown with a snippet of its response, e.g. ``"… the polar [bear] lives on sea ice …"``.

The public names live here; the code in three modules: the index and its lookup
(:mod:`~workbench.lens.latent_index`), its files (:mod:`~workbench.lens.latent_files`) and building
it from a model (:mod:`~workbench.lens.latent_build`). ``workbench latent-lens build`` makes one.
:mod:`~workbench.lens.latentlens_format` reads and writes the ``latentlens`` package's layout.
"""

from __future__ import annotations

from .latent_build import build_latent_index
from .latent_files import FORMAT, FORMAT_VERSION, INDEX_FILE, STATES_FILE
from .latent_index import SNIPPET_CHARS, LatentIndex, default_index_path, index_summary, load_latent_index
from .latentlens_format import (
    is_latentlens_index,
    latentlens_summary,
    open_latent_index,
    read_latentlens,
    write_latentlens,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "SNIPPET_CHARS",
    "STATES_FILE",
    "LatentIndex",
    "build_latent_index",
    "default_index_path",
    "index_summary",
    "is_latentlens_index",
    "latentlens_summary",
    "load_latent_index",
    "open_latent_index",
    "read_latentlens",
    "write_latentlens",
]
