"""Write a workbench model in the official ``llm2vec-gen`` 0.1.3 layout (and a base model 4.56 reads)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from ...core.backbone import BackboneInfo, prepare_tokenizer
from ...core.errors import WorkbenchError
from ...core.model import LLM2VecGen
from ...core.paths import dequantised_path, plain_permissions
from ...core.registry import BACKBONES
from ..atomic import refuse_non_empty
from .layout import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    DELTA_KEY,
    ENC_DEC_CONFIG,
    ENCODER_DIR,
    HEAD_FILES,
    RUN_CONFIG,
    TOKEN_FORMAT,
    OfficialConfig,
    encoding_mode,
)


def backbone_folder(info: BackboneInfo) -> str:
    """A path or hub id the official code can load the backbone from (dequantised cache for GGUFs)."""
    if info.source == "registry":
        spec = BACKBONES[info.name]
        return str(dequantised_path(spec.name, spec.sha256))
    if info.source == "gguf" and info.sha256:
        return str(dequantised_path(Path(info.name).stem, info.sha256))
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
    refuse_non_empty(out, overwrite)
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
        plain_permissions(build)  # mkdtemp's 0700 would become the exported folder's mode
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
        plain_permissions(enc / ADAPTER_WEIGHTS)  # safetensors creates its files 0600
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
            json.dumps({"encoding_mode": encoding_mode(c), "save_decoder": False}, indent=2)
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
            "encoding_mode": encoding_mode(c),
            "pretrained_teacher_path": None,
            "workbench_backbone": info.name if info.source == "registry" else None,
            "workbench_teacher": config.teacher,
            "workbench_trained": bool(gen.trained),
        }
        (build / RUN_CONFIG).write_text(_run_config_text(run), encoding="utf-8")
        replace_folder(build, out)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return out


def replace_folder(build: Path, out: Path) -> None:
    """Rename the finished folder ``build`` to ``out``. An ``out`` that is there (``--overwrite``)
    is moved aside first and put back if the rename fails, so a failed export leaves it whole."""
    if not os.path.lexists(out):
        os.replace(build, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out, old)
    try:
        os.replace(build, out)
    except BaseException:
        os.replace(old, out)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
