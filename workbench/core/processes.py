"""One process, or many under ``accelerate launch``: which one this is, and what it shares with the others.

Without a launcher there is one process and nothing here waits or communicates. Under ``accelerate
launch --num_processes N`` the processes meet over NCCL on GPUs, or over gloo on the CPU (no
accelerator, or ``accelerate launch --cpu``).
"""

from __future__ import annotations

import os
from typing import Any

import torch


def cpu_only() -> bool:
    """True when the processes run on the CPU: no accelerator, or ``accelerate launch --cpu``."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return True
    return not (torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()))


def process_state() -> Any:
    """accelerate's ``PartialState`` (one shared state per process, as the trainer's)."""
    from accelerate import PartialState

    return PartialState(cpu=cpu_only())


def process_device(module: torch.nn.Module, state: Any) -> torch.device | None:
    """Where ``module`` should run under a multi-GPU launch: this process's own GPU when the module
    was loaded on another one, else None (leave it where it is)."""
    params = list(module.parameters())
    device = params[0].device if params else torch.device("cpu")
    if state.num_processes < 2 or device.type != "cuda" or state.device.type != "cuda":
        return None
    return None if device == state.device else state.device


def gather_lists(items: list[Any], state: Any) -> list[Any]:
    """Every process's list, joined in process order (one process: its own list)."""
    if state.num_processes < 2:
        return list(items)
    from accelerate.utils import gather_object

    return list(gather_object(list(items)))


def owner(key: str, num_processes: int) -> int:
    """The process that takes ``key`` (a stable hash: the same split in every run with ``num_processes``)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % num_processes
