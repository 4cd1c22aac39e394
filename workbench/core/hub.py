"""The workbench's one offline switch for the Hugging Face hub.

``HF_HUB_OFFLINE`` (or, when it is unset or empty, ``TRANSFORMERS_OFFLINE``) means offline when its
value is 1, true, yes or on in any case, as huggingface_hub and transformers read it; any other
value (0, false, no, off, empty) or none means online. Read at each call, so a change of the
environment takes effect at once.
"""

from __future__ import annotations

import os

TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})
"""huggingface_hub's ``ENV_VARS_TRUE_VALUES``: the values that switch a flag on."""


def hub_offline() -> bool:
    """Whether the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE``, huggingface_hub's reading)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return value is not None and value.upper() in TRUE_VALUES
