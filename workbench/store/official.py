"""Checkpoints in the official ``llm2vec-gen`` 0.1.3 layout: open them on the workbench model, write them.

An official checkpoint is a folder holding the tokenizer (with ``<question1>`` … ``<questionN>`` added),
``run_config.yml`` (base model, special tokens, dtype, …), ``encoder_decoder_config.json``
(``encoding_mode`` ``last_<n>_tokens``), ``encoder/`` (a PEFT adapter whose ``trainable_tokens_delta``
holds the N trained rows: they *replace* those embedding rows) and the heads ``reconstruction_mlp`` /
``alignment_mlp``, each a ``torch.save`` of ``{"state_dict", "config"}``. The first N − n special tokens
are the thought tokens, the last n the compression tokens. Nothing here needs peft; the heads are
read with ``torch.load(weights_only=True)`` and anything that needs a full unpickler is refused.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from ..core.config import DTYPES, GenConfig
from ..core.errors import WorkbenchError

if TYPE_CHECKING:
    from ..core.backbone import BackboneInfo
    from ..core.model import LLM2VecGen

log = logging.getLogger("workbench")

RUN_CONFIG = "run_config.yml"
ENC_DEC_CONFIG = "encoder_decoder_config.json"
ENCODER_DIR = "encoder"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_WEIGHTS_BIN = "adapter_model.bin"
HEAD_FILES = {"reconstruction": "reconstruction_mlp", "alignment": "alignment_mlp"}
DELTA = "trainable_tokens_delta"
DELTA_KEY = f"base_model.model.embed_tokens.{DELTA}"
TOKEN_FORMAT = "<question{i}>"
ENCODING_MODE = re.compile(r"last_(\d+)_tokens")
HUB_FILES = ["*.json", "*.yml", "*.yaml", "*.txt", "*.model", "*.jinja", "encoder/*", *HEAD_FILES.values()]


@dataclass
class OfficialConfig(GenConfig):
    """A :class:`GenConfig` whose special token strings are given as a list (the official names)."""

    special_tokens: list[str] = field(default_factory=list)
    """The N special token strings in input order (thought first); empty: use the formats."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.special_tokens and len(self.special_tokens) != self.num_special:
            raise WorkbenchError(
                f"{len(self.special_tokens)} special token strings for {self.num_special} special tokens",
                "give one string per thought and compression token",
            )

    def token_strings(self) -> list[str]:
        return list(self.special_tokens) if self.special_tokens else super().token_strings()


def config_from_dict(data: dict[str, Any]) -> GenConfig:
    """The config class a checkpoint's dict needs (an explicit token list makes it official-named)."""
    return OfficialConfig.from_dict(data) if data.get("special_tokens") else GenConfig.from_dict(data)


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
        return len(self.special_tokens) - self.num_compress


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
    mode = run.get("encoding_mode", "last_10_tokens")
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
        max_length=int(run.get("max_input_length") or 512),
        dtype=dtype if dtype in DTYPES else None,
        teacher=str(teacher),
        run_config=run,
    )


def _load_base(ck: OfficialCheckpoint, backbone: str | None, dtype: str, **kwargs: Any) -> Any:
    from ..core.backbone import load_backbone
    from ..core.registry import BACKBONES

    name = backbone or ck.base_model
    if backbone is None and ck.base_model not in BACKBONES and not Path(ck.base_model).expanduser().exists():
        plain = str(ck.run_config.get("model_name_or_path"))
        if plain != ck.base_model and Path(plain).expanduser().exists():
            name = plain  # an export made elsewhere: its registry name is unknown here, its folder is not
    try:
        return load_backbone(name, dtype=DTYPES[dtype], **kwargs)
    except WorkbenchError as err:
        raise WorkbenchError(
            f"official checkpoint {ck.path} needs its base model {name!r}, which could not be loaded "
            f"({err.problem})",
            f"connect to the Hugging Face hub, or pass backbone= a local copy of {name} "
            "(a transformers folder or a registry name)",
        ) from err


def load_official(
    path: str | Path,
    *,
    backbone: str | None = None,
    dtype: str = "float32",
    max_length: int | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> LLM2VecGen:
    """Open an official checkpoint folder as an :class:`LLM2VecGen` (T = N − n, C = n, both heads).

    The base model is ``run_config.yml``'s ``model_name_or_path`` (a hub id needs the network) unless
    ``backbone`` names a local folder or registry backbone holding the same weights.
    """
    from ..core.model import LLM2VecGen

    if dtype not in DTYPES:
        raise WorkbenchError(f"unknown dtype {dtype!r}", f"use one of {', '.join(DTYPES)}")
    ck = read_official(path)
    loaded = _load_base(ck, backbone, dtype, revision=revision, trust_remote_code=trust_remote_code)
    hidden = ck.tensors["special"].shape[1]
    if loaded.info.hidden_size != hidden:
        raise WorkbenchError(
            f"official checkpoint {ck.path} has {hidden}-d rows but backbone {loaded.info.name} has "
            f"hidden size {loaded.info.hidden_size}",
            f"load it on its base model {ck.base_model}",
        )
    config = OfficialConfig(
        num_thought=ck.num_thought,
        num_compress=ck.num_compress,
        max_length=max_length or ck.max_length,
        teacher=ck.teacher,
        teacher_dim=int(ck.tensors["alignment.weight"].shape[0]),
        dtype=dtype,
        special_tokens=ck.special_tokens,
    )
    gen = LLM2VecGen(loaded, config)
    gen.load_weights(ck.tensors)
    gen.trained = bool(ck.run_config.get("workbench_trained", True))
    if list(gen.special_ids) != list(ck.token_ids):
        log.warning(
            "special token ids differ from the official tokenizer's (%s vs %s): the backbone's tokenizer "
            "is not the base model's; embeddings are unaffected (the rows are written by position)",
            gen.special_ids[:3],
            ck.token_ids[:3],
        )
    return gen


# --------------------------------------------------------------------------------------------- export
def backbone_folder(info: BackboneInfo) -> str:
    """A path or hub id the official code can load the backbone from (dequantised cache for GGUFs)."""
    from ..core.paths import cache_dir
    from ..core.registry import BACKBONES

    if info.source == "registry":
        spec = BACKBONES[info.name]
        return str(cache_dir() / "backbones" / f"{spec.name}-{spec.sha256[:16]}")
    if info.source == "gguf" and info.sha256:
        return str(cache_dir() / "backbones" / f"{Path(info.name).stem}-{info.sha256[:16]}")
    return info.name


def v4_config(config: dict[str, Any]) -> dict[str, Any]:
    """A transformers-5 model config dict that transformers 4.x reads the same (RoPE keys, dtype)."""
    out = dict(config)
    rope = out.get("rope_parameters")
    if isinstance(rope, dict):
        if "rope_theta" in rope:
            out.setdefault("rope_theta", rope["rope_theta"])
        if rope.get("rope_type", "default") != "default":
            out.setdefault("rope_scaling", {k: v for k, v in rope.items() if k != "rope_theta"})
    if "dtype" in out:
        out.setdefault("torch_dtype", out["dtype"])
    return out


def _v4_tokenizer_config(folder: Path, strings: list[str]) -> None:
    """Make the saved tokenizer config one that transformers 4.56 reads as the official code expects."""
    file = folder / "tokenizer_config.json"
    data = json.loads(file.read_text(encoding="utf-8"))
    data.pop("backend", None)
    data["extra_special_tokens"] = {}
    data["additional_special_tokens"] = list(strings)
    data["padding_side"] = "left"  # the encoder reads the last positions: left padding is required
    data["tokenizer_class"] = "PreTrainedTokenizerFast"
    file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _fresh_tokenizer(source: str, strings: list[str]) -> Any:
    from transformers import AutoTokenizer

    from ..core.backbone import prepare_tokenizer

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(source))
    before = len(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": strings})
    ids = tokenizer.convert_tokens_to_ids(strings)
    if ids != list(range(before, before + len(strings))):
        raise WorkbenchError(
            f"the tokenizer of {source} did not give the special tokens fresh ids",
            "export from a backbone whose vocabulary lacks the <questionK> strings",
        )
    return tokenizer


def _save_head(file: Path, weight: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype) -> None:
    """The official ``ProjectionModel.save`` format: tensors and plain config values only."""
    state = {
        "projection.weight": weight.detach().to(dtype).cpu(),
        "projection.bias": bias.detach().to(dtype).cpu(),
    }
    config = {
        "input_dim": int(weight.shape[1]),
        "output_dim": int(weight.shape[0]),
        "dtype": str(dtype),
        "size": 1,
        "pooling_mode": "linear",
    }
    torch.save({"state_dict": state, "config": config}, file)


def _run_config_text(values: dict[str, Any]) -> str:
    return yaml.safe_dump(values, sort_keys=False, allow_unicode=True)


def copy_base_v4(source: str | Path, dest: Path) -> Path:
    """Copy a transformers-5 model folder so transformers 4.x reads it the same (config and tokenizer)."""
    source = Path(source).expanduser()
    if not (source / "config.json").is_file():
        raise WorkbenchError(
            f"cannot copy the base model: {source} is not a local model folder",
            "drop --copy-base (a hub id needs no copy) or pass a local backbone",
        )
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("workbench_source.json"))
    config = json.loads((dest / "config.json").read_text(encoding="utf-8"))
    (dest / "config.json").write_text(json.dumps(v4_config(config), indent=2) + "\n")
    tok_file = dest / "tokenizer_config.json"
    if tok_file.is_file():
        tok = json.loads(tok_file.read_text(encoding="utf-8"))
        if tok.pop("backend", None) is not None or tok.get("tokenizer_class") == "TokenizersBackend":
            tok["tokenizer_class"] = "PreTrainedTokenizerFast"
        if isinstance(tok.get("extra_special_tokens"), list):
            tok["extra_special_tokens"] = {}
        tok_file.write_text(json.dumps(tok, indent=2, ensure_ascii=False) + "\n")
    return dest


def export_official(
    gen: LLM2VecGen,
    out: str | Path,
    *,
    base_model: str | None = None,
    copy_base: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``gen`` in the official layout (loadable by ``llm2vec-gen`` 0.1.3 and by ``workbench.load``).

    ``base_model`` is what ``run_config.yml`` names as ``model_name_or_path``; by default the backbone's
    folder (for a registry backbone its dequantised cache folder, which must stay where it is) or hub id.
    ``copy_base`` copies the backbone folder into ``OUT/base`` in a form transformers 4.56 reads the
    same (a transformers-5 config keeps RoPE settings where 4.56 does not look) and names that.
    """
    from safetensors.torch import save_file

    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise WorkbenchError(
            f"{out} already exists and is not empty", "choose a new folder or pass --overwrite"
        )
    info, config = gen.backbone.info, gen.config
    source = backbone_folder(info)
    base = str(out.resolve() / "base") if copy_base else base_model or source
    n, c = config.num_special, config.num_compress
    strings = (
        config.token_strings()
        if isinstance(config, OfficialConfig)
        else [TOKEN_FORMAT.format(i=i + 1) for i in range(n)]
    )
    dtype = config.torch_dtype
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        if copy_base:
            copy_base_v4(source, build / "base")
        tokenizer = _fresh_tokenizer(source, strings)
        tokenizer.save_pretrained(build)
        _v4_tokenizer_config(build, strings)
        ids = tokenizer.convert_tokens_to_ids(strings)
        enc = build / ENCODER_DIR
        enc.mkdir()
        save_file(
            {DELTA_KEY: gen.special.detach().to(dtype).cpu().contiguous()},
            str(enc / ADAPTER_WEIGHTS),
            metadata={"format": "pt"},
        )
        base_cls = type(getattr(gen.backbone.model, "base_model", gen.backbone.model))
        adapter = {
            "auto_mapping": {"base_model_class": base_cls.__name__, "parent_library": base_cls.__module__},
            "base_model_name_or_path": base,
            "inference_mode": True,
            "init_weights": True,
            "peft_type": "TRAINABLE_TOKENS",
            "peft_version": "0.18.0",
            "revision": None,
            "target_modules": "embed_tokens",
            "task_type": None,
            "token_indices": ids,
        }
        (enc / ADAPTER_CONFIG).write_text(json.dumps(adapter, indent=2) + "\n")
        model_cfg = v4_config(gen.backbone.model.config.to_dict())
        model_cfg.update(num_special_tokens=n, special_tokens_ids=ids, vocab_size=len(tokenizer))
        (enc / "config.json").write_text(json.dumps(model_cfg, indent=2, default=str) + "\n")
        _save_head(
            build / HEAD_FILES["reconstruction"], gen.reconstruction.weight, gen.reconstruction.bias, dtype
        )
        _save_head(build / HEAD_FILES["alignment"], gen.alignment.weight, gen.alignment.bias, dtype)
        (build / ENC_DEC_CONFIG).write_text(
            json.dumps({"encoding_mode": f"last_{c}_tokens", "save_decoder": False}, indent=2)
        )
        run = {
            "model_name_or_path": base,
            "tokenizer_padding_side": "left",
            "torch_dtype": config.dtype,
            "special_tokens": strings,
            "special_token_config_name": f"total_{n}",
            "max_input_length": config.max_length,
            "add_reconstruction_mlp": True,
            "add_alignment_mlp": True,
            "encoding_mode": f"last_{c}_tokens",
            "pretrained_teacher_path": None,
            "workbench_backbone": info.name if info.source == "registry" else None,
            "workbench_teacher": config.teacher,
            "workbench_trained": bool(gen.trained),
        }
        (build / RUN_CONFIG).write_text(_run_config_text(run), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(build, out)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return out
