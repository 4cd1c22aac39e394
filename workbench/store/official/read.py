"""Read an official ``llm2vec-gen`` 0.1.3 folder and map it onto the workbench's tensors (no model)."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ...core.config import DTYPES, GenConfig, thought_count
from ...core.errors import WorkbenchError
from .layout import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    ADAPTER_WEIGHTS_BIN,
    DELTA,
    ENC_DEC_CONFIG,
    ENCODER_DIR,
    ENCODING_MODE,
    HEAD_FILES,
    RUN_CONFIG,
    encoding_mode,
)


@dataclass
class OfficialCheckpoint:
    """What an official folder holds, validated and mapped onto the workbench's tensors."""

    path: Path
    base_model: str
    special_tokens: list[str]
    num_compress: int
    token_ids: list[int]
    tensors: dict[str, torch.Tensor]  # special, reconstruction.{weight,bias}, alignment.{weight,bias}
    max_length: int
    dtype: str | None
    teacher: str
    run_config: dict[str, Any]

    @property
    def num_thought(self) -> int:
        return thought_count(self.special_tokens, self.num_compress)


def is_official(path: str | Path) -> bool:
    """Whether ``path`` is a folder in the official layout."""
    p = Path(path).expanduser()
    return (p / RUN_CONFIG).is_file() and (p / ENCODER_DIR / ADAPTER_CONFIG).is_file()


def _bad(path: Path, what: str) -> WorkbenchError:
    return WorkbenchError(
        f"official checkpoint {path} is not usable: {what}",
        "re-download or re-export the whole folder (llm2vec-gen 0.1.3 layout)",
    )


class _RunConfigLoader(yaml.SafeLoader):
    """Safe YAML that reads ``!!python/...`` tags as their plain value instead of building objects."""


def _plain(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        values = loader.construct_sequence(node)
        return values[0] if values else None
    return None


_RunConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", _plain)


def read_run_config(path: Path) -> dict[str, Any]:
    """``run_config.yml`` as a dict (the official writer prints ``key: value`` lines; ``None`` is null)."""
    try:
        data = yaml.load((path / RUN_CONFIG).read_text(encoding="utf-8"), Loader=_RunConfigLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise _bad(path, f"{RUN_CONFIG} is not valid YAML ({type(err).__name__})") from err
    if not isinstance(data, dict):
        raise _bad(path, f"{RUN_CONFIG} is not a mapping")
    return {k: (None if v in ("None", "null") else v) for k, v in data.items()}


def load_head(file: Path, role: str, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One official head as ``(weight, bias)`` of a linear map on each compression state.

    The file is a pickle: it is read with ``weights_only=True`` and refused if it needs more.
    """
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as err:
        raise WorkbenchError(
            f"{file} is not a weights-only file: it holds pickled objects that a safe load refuses "
            f"({type(err).__name__}); it was not unpickled",
            "use a head file of plain tensors and config values (torch.save of state_dict and config), "
            "or re-export the checkpoint from a source you trust",
        ) from err
    except (OSError, EOFError, ValueError) as err:
        raise _bad(file.parent, f"{file.name} is unreadable ({type(err).__name__})") from err
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        raise _bad(file.parent, f"{file.name} has no state_dict")
    config = data.get("config") or {}
    mode, size = config.get("pooling_mode", "linear"), config.get("size", 1)
    # mean_C(W h + b) = W mean_C(h) + b: a mean-pooled alignment head is the same linear map
    if size != 1 or mode not in (("linear", "mean_linear") if role == "alignment" else ("linear",)):
        raise WorkbenchError(
            f"{file} is a {role} head with pooling_mode {mode!r} and size {size}, which the workbench "
            "does not map",
            "use a checkpoint with single linear heads (the paper's recipe)",
        )
    state = data["state_dict"]
    weight, bias = state.get("projection.weight"), state.get("projection.bias")
    if not isinstance(weight, torch.Tensor) or not isinstance(bias, torch.Tensor) or weight.dim() != 2:
        raise _bad(file.parent, f"{file.name} lacks projection.weight / projection.bias")
    if weight.shape[1] != hidden or bias.shape != (weight.shape[0],):
        raise _bad(file.parent, f"{file.name} maps {weight.shape[1]} to {weight.shape[0]}, not from {hidden}")
    return weight.float(), bias.float()


def _adapter_indices(path: Path, cfg: dict[str, Any]) -> list[int]:
    kind = str(cfg.get("peft_type", "")).upper()
    if kind == "TRAINABLE_TOKENS":
        indices = cfg.get("token_indices")
    elif kind == "LORA":
        indices = cfg.get("trainable_token_indices")
        if isinstance(indices, dict):
            indices = indices.get("embed_tokens", next(iter(indices.values()), None))
    else:
        raise _bad(path, f"the encoder adapter has peft_type {kind or 'missing'}, not TRAINABLE_TOKENS")
    if not isinstance(indices, list) or not indices or not all(isinstance(i, int) for i in indices):
        raise _bad(path, f"{ENCODER_DIR}/{ADAPTER_CONFIG} lists no trainable token indices")
    return indices


def _adapter_tensors(path: Path) -> dict[str, torch.Tensor]:
    enc = path / ENCODER_DIR
    if (enc / ADAPTER_WEIGHTS).is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(enc / ADAPTER_WEIGHTS))
        except (SafetensorError, OSError, ValueError) as err:
            raise _bad(path, f"{ENCODER_DIR}/{ADAPTER_WEIGHTS} is unreadable ({err})") from err
    if (enc / ADAPTER_WEIGHTS_BIN).is_file():
        try:
            data = torch.load(enc / ADAPTER_WEIGHTS_BIN, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as err:
            raise WorkbenchError(
                f"{enc / ADAPTER_WEIGHTS_BIN} is not a weights-only file; it was not unpickled",
                "save the adapter as safetensors",
            ) from err
        return dict(data)
    raise _bad(path, f"{ENCODER_DIR}/ has neither {ADAPTER_WEIGHTS} nor {ADAPTER_WEIGHTS_BIN}")


def _special_rows(path: Path, indices: list[int], hidden: int | None) -> torch.Tensor:
    """The trained rows in ``indices`` order: the delta (replacement values), else the saved embedding."""
    tensors = _adapter_tensors(path)
    rows = None
    for key, value in tensors.items():
        if "lora_B" in key and value.abs().max() > 0:
            raise WorkbenchError(
                f"official checkpoint {path} changes the backbone itself (trained LoRA weights in {key})",
                "the workbench keeps the backbone frozen: use a checkpoint that trains only its tokens",
            )
        if key.endswith(DELTA) and "embed_tokens" in key:
            rows = value
        elif key.endswith(DELTA) or "modules_to_save" in key:
            raise _bad(path, f"the adapter trains {key}, which the workbench does not map")
    if rows is None:  # no delta: the rows are those of a saved, resized embedding matrix
        full = next((v for k, v in tensors.items() if k.endswith("embed_tokens.base_layer.weight")), None)
        if full is None or full.shape[0] <= max(indices):
            raise _bad(path, f"the adapter holds no {DELTA} for the special tokens")
        rows = full[torch.tensor(indices)]
    if rows.dim() != 2 or rows.shape[0] != len(indices) or (hidden is not None and rows.shape[1] != hidden):
        raise _bad(path, f"{DELTA} has shape {list(rows.shape)} for {len(indices)} tokens")
    return rows.float()


def _tokenizer_ids(path: Path, strings: list[str]) -> list[int] | None:
    """Ids of ``strings`` in the folder's ``tokenizer.json`` (None where the file does not say)."""
    try:
        added = json.loads((path / "tokenizer.json").read_text(encoding="utf-8")).get("added_tokens", [])
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    by_text = {t.get("content"): t.get("id") for t in added if isinstance(t, dict)}
    ids = [by_text.get(s) for s in strings]
    return None if any(i is None for i in ids) else [int(i) for i in ids]  # type: ignore[arg-type]


def read_official(path: str | Path) -> OfficialCheckpoint:
    """Read and validate an official folder (no model is loaded)."""
    path = Path(path).expanduser()
    if not is_official(path):
        raise WorkbenchError(
            f"{path} is not an official llm2vec-gen checkpoint ({RUN_CONFIG} or "
            f"{ENCODER_DIR}/{ADAPTER_CONFIG} is missing)",
            "point at the folder that holds run_config.yml, encoder/ and the tokenizer",
        )
    run = read_run_config(path)
    base, tokens = run.get("model_name_or_path"), run.get("special_tokens")
    if not isinstance(base, str) or not base:
        raise _bad(path, f"{RUN_CONFIG} names no model_name_or_path")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise _bad(path, f"{RUN_CONFIG} lists no special_tokens")
    mode = run.get("encoding_mode", encoding_mode(GenConfig.num_compress))
    if (path / ENC_DEC_CONFIG).is_file():
        try:
            enc_dec = json.loads((path / ENC_DEC_CONFIG).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise _bad(path, f"{ENC_DEC_CONFIG} is not JSON") from err
        mode = enc_dec.get("encoding_mode", mode)
        if enc_dec.get("save_decoder"):
            raise WorkbenchError(
                f"official checkpoint {path} ships its own decoder adapter (save_decoder: true)",
                "the workbench decodes with the frozen backbone: use a checkpoint with a frozen decoder",
            )
    match = ENCODING_MODE.fullmatch(str(mode))
    if match is None or not 1 <= int(match.group(1)) <= len(tokens):
        raise _bad(path, f"encoding_mode {mode!r} is not last_<n>_tokens with n ≤ {len(tokens)}")
    try:
        adapter_cfg = json.loads((path / ENCODER_DIR / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _bad(path, f"{ENCODER_DIR}/{ADAPTER_CONFIG} is not JSON") from err
    indices = _adapter_indices(path, adapter_cfg)
    if len(indices) != len(tokens):
        raise _bad(path, f"{len(indices)} trainable token indices for {len(tokens)} special tokens")
    rows = _special_rows(path, indices, None)
    hidden = rows.shape[1]
    ids = _tokenizer_ids(path, tokens) or indices
    if sorted(ids) != sorted(indices):
        raise _bad(path, "the tokenizer's special token ids differ from the adapter's token indices")
    special = rows[torch.tensor([indices.index(i) for i in ids])]  # rows in input (token list) order
    tensors = {"special": special}
    for role, name in HEAD_FILES.items():
        if (path / name).is_file():
            weight, bias = load_head(path / name, role, hidden)
        else:  # no head: the official code passes the states through unchanged
            weight, bias = torch.eye(hidden), torch.zeros(hidden)
        tensors[f"{role}.weight"], tensors[f"{role}.bias"] = weight, bias
    if tensors["reconstruction.weight"].shape[0] != hidden:
        raise _bad(path, "the reconstruction head does not map back to the hidden size")
    teacher = run.get("workbench_teacher") or run.get("pretrained_teacher_path_2")
    teacher = teacher or run.get("pretrained_teacher_path") or "official"
    dtype = str(run.get("torch_dtype") or "").replace("torch.", "") or None
    return OfficialCheckpoint(
        path=path,
        base_model=str(run.get("workbench_backbone") or base),
        special_tokens=list(tokens),
        num_compress=int(match.group(1)),
        token_ids=ids,
        tensors=tensors,
        max_length=int(run.get("max_input_length") or GenConfig.max_length),
        dtype=dtype if dtype in DTYPES else None,
        teacher=str(teacher),
        run_config=run,
    )
