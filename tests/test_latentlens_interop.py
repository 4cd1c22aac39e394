"""The latent lens and the ``latentlens`` package (PyPI 0.1.0) read each other's index folders.

With the package installed (CI installs it without its dependencies, which would replace torch), an
index built by ``latentlens.build_index`` on a tiny model opens in the workbench with the same
states as the workbench's own index of the same texts, and a workbench index opens in
``latentlens.ContextualIndex`` with the same neighbours. The format round trip and the refusals run
without the package.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_gen

from workbench.core.errors import WorkbenchError
from workbench.lens.latent import (
    build_latent_index,
    is_latentlens_index,
    latentlens_summary,
    open_latent_index,
    read_latentlens,
    write_latentlens,
)

CACHE = "embeddings_cache.pt"
TEXTS = [
    "Polar bears live on the sea ice of the Arctic.",
    "Bread is made from flour, water, yeast and salt.",
    "The capital of Norway is Oslo.",
]


@pytest.fixture(scope="module")
def gen(tiny_dirs):
    return tiny_gen(tiny_dirs)


def by_context(index) -> dict[tuple[str, int], torch.Tensor]:
    return {
        (index.texts[t], p): index.states[i].float()
        for i, (t, p) in enumerate(zip(index.text_ids, index.positions, strict=True))
    }


def test_round_trip_without_the_package(gen, tmp_path: Path) -> None:
    ours = build_latent_index(gen, TEXTS)
    folder = write_latentlens(ours, tmp_path / "ll")
    assert is_latentlens_index(folder) and (folder / f"layer_{ours.layer}" / "embeddings_cache.pt").is_file()
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["layers"] == [ours.layer] and meta["hidden_dim"] == 64
    back = read_latentlens(folder)  # a folder the workbench wrote records its backbone
    assert torch.equal(back.states, ours.states) and back.tokens == ours.tokens and back.texts == ours.texts
    assert back.context(3) == ours.context(3) and back.layer == ours.layer
    assert open_latent_index(gen, folder).nearest(ours.states[:2].float(), k=3) == ours.nearest(
        ours.states[:2].float(), k=3
    )
    assert latentlens_summary(folder)["entries"] == {str(ours.layer): len(ours)}


def test_foreign_folders_are_checked(gen, tmp_path: Path) -> None:
    ours = build_latent_index(gen, TEXTS)
    folder = write_latentlens(ours, tmp_path / "ll")
    (folder / "metadata.json").unlink()  # now it looks like a folder latentlens wrote
    with pytest.raises(WorkbenchError, match="does not record its model"):
        read_latentlens(folder)
    opened = read_latentlens(folder, gen)  # spans come from re-tokenizing the captions
    assert opened.context(0) == ours.context(0) and opened.meta["source"] == "latentlens"
    data = torch.load(folder / "layer_2" / CACHE, weights_only=True)
    for row in data["metadata"]:
        row.pop("span")
        row["token_id"] = (row["token_id"] + 7) % 200  # another tokenizer's ids
    torch.save(data, folder / "layer_2" / CACHE)
    with pytest.raises(WorkbenchError, match="another tokenizer"):
        read_latentlens(folder, gen)
    torch.save({"embeddings": torch.zeros(1, 64), "metadata": [object()]}, folder / "layer_2" / CACHE)
    with pytest.raises(WorkbenchError, match="not a readable latentlens layer"):
        read_latentlens(folder, gen)  # weights_only: no arbitrary objects are unpickled


def test_index_built_by_latentlens_opens_in_the_workbench(gen, tmp_path: Path) -> None:
    latentlens = pytest.importorskip("latentlens")
    tokenizer = copy.deepcopy(gen.tokenizer)
    tokenizer.padding_side = "right"  # latentlens reads positions 0..len-1 of each row
    last = gen.backbone.info.num_layers
    built = latentlens.build_index(
        "tiny", TEXTS, layers=[1, last], model=gen.backbone.model, tokenizer=tokenizer, show_progress=False
    )
    built.save(tmp_path / "ll")
    theirs = read_latentlens(tmp_path / "ll", gen)  # default: the model's last layer
    assert theirs.layer == last and theirs.meta["latentlens_layers"] == [1, last]
    mine = by_context(build_latent_index(gen, TEXTS))
    shared = {k: v for k, v in by_context(theirs).items() if k in mine}
    others = [theirs.tokens[i] for i in range(len(theirs)) if (theirs.texts[theirs.text_ids[i]],
              theirs.positions[i]) not in mine]  # fmt: skip
    assert len(shared) > 40 and all(not t.strip() for t in others)  # the workbench skips whitespace
    for key, state in shared.items():
        assert torch.allclose(state, mine[key], atol=2e-3), key
    assert read_latentlens(tmp_path / "ll", gen, layer=1).meta["read"].startswith("raw residual")


def test_workbench_index_opens_in_latentlens(gen, tmp_path: Path) -> None:
    latentlens = pytest.importorskip("latentlens")
    ours = build_latent_index(gen, TEXTS)
    write_latentlens(ours, tmp_path / "ll")
    theirs = latentlens.ContextualIndex.from_directory(tmp_path / "ll")
    assert theirs.available_layers == [ours.layer] and len(theirs) == len(ours)
    query = gen.compression_states(["where do polar bears live?"])[0]
    hits = theirs.search(query, top_k=4)
    nearest = ours.nearest(query, k=4)
    for found, expected in zip(hits, nearest, strict=True):
        assert [n.token_str for n in found] == [e["token"] for e in expected]
        assert [n.similarity for n in found] == pytest.approx([e["score"] for e in expected], abs=1e-3)
